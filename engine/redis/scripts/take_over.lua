-- TAKE_OVER: the delivery a redelivery claimed for its TwiML answer ("twiml:" and its read's
-- claimer tag), handed to the REST API because that read's answer never reached its request
-- (which answered 503, without the replies). Only that claim is taken over: one another
-- delivery holds, or the REST API's, stays; and only while the replies are kept.
-- Returns the committed replies (as stored) when the claim was taken over (it is then
-- 'rest:' and the same tag), else false.
-- include: conversation.lua
-- KEYS: claims respondent replies dedupe dedupe_before
-- ARGV: sid mark claimer
local claims = KEYS[1]
local respondent = KEYS[2]
local replies = KEYS[3]
local dedupe = KEYS[4]
local dedupe_before = KEYS[5]
local sid = ARGV[1]
local mark = ARGV[2]
local claimer = ARGV[3]

if redis.call('HGET', claims, sid) ~= 'twiml:' .. claimer then
  return false
end
local _, marks = parts_of(redis.call('GET', respondent))
local found = mark_of(marks, mark)
local kept = found and redis.call('HGET', replies, found)
if not kept then
  kept = legacy_replies(redis.call('HGET', dedupe, sid) or redis.call('HGET', dedupe_before, sid))
end
if kept then redis.call('HSET', claims, sid, 'rest:' .. claimer) end
return kept
