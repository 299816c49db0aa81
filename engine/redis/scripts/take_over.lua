-- TAKE_OVER: the delivery a redelivery claimed for its TwiML answer ("twiml:" and its read's
-- claimer tag), handed to the REST API because that read's answer never reached its request
-- (which answered 503, without the replies). Only that claim is taken over: one another
-- delivery holds, or the REST API's, stays; and only when its replies were found kept.
-- Called twice. Without a message (`id` ''), it only gives the replies the read's claim holds,
-- for the sender to make its message of them. With that message, it takes the claim over
-- ('rest:' and the same tag) and queues the message in the outbox in the same step, so a
-- reply taken over is never left unsent; a take over repeated after its answer was lost knows
-- itself by that claim and queues nothing twice.
-- Returns, without a message: the committed replies (as stored) while the read's claim holds,
-- else false; with one: 1 when the claim is the REST API's with this tag (taken over now or by
-- an earlier call), else 0.
-- include: conversation.lua
-- KEYS: claims respondent replies dedupe dedupe_before outbox_due outbox_messages
-- ARGV: sid mark claimer id due message
local claims = KEYS[1]
local respondent = KEYS[2]
local replies = KEYS[3]
local dedupe = KEYS[4]
local dedupe_before = KEYS[5]
local outbox_due = KEYS[6]
local outbox_messages = KEYS[7]
local sid = ARGV[1]
local mark = ARGV[2]
local claimer = ARGV[3]
local id = ARGV[4]
local due = ARGV[5]
local message = ARGV[6]

local claim = redis.call('HGET', claims, sid)
if id ~= '' then
  if claim == 'rest:' .. claimer then return 1 end  -- a repeat: it landed already
  if claim ~= 'twiml:' .. claimer then return 0 end
  redis.call('HSET', claims, sid, 'rest:' .. claimer)
  redis.call('HSET', outbox_messages, id, message)
  redis.call('ZADD', outbox_due, due, id)
  return 1
end
if claim ~= 'twiml:' .. claimer then
  return false
end
local _, marks = parts_of(redis.call('GET', respondent))
local found = mark_of(marks, mark)
local kept = found and redis.call('HGET', replies, found)
if not kept then
  kept = legacy_replies(redis.call('HGET', dedupe, sid) or redis.call('HGET', dedupe_before, sid))
end
return kept
