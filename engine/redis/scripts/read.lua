-- READ: a respondent record (with its revision) and whether the inbound MessageSid was
-- committed, in one round trip. A MessageSid already committed is a redelivery: while its
-- replies are kept (cv:{T}:replies), it claims their delivery ("twiml:" and this read's
-- claimer tag) unless the REST API already has ("rest:" and its sender's tag). The tag lets a
-- read whose answer never reached its request (which then could not answer with the replies)
-- hand the delivery over to the REST API (TAKE_OVER). A TwiML claim an earlier read made
-- becomes this one's: Twilio delivers again only when the earlier delivery got no answer, so
-- this read's request is the one that answers, and the earlier read, if its answer was lost,
-- takes nothing over (it would send the reply twice).
-- Returns {record or false, 1 when the MessageSid was committed else 0, its replies or false
-- (no longer kept), the claim that holds or false}.
-- include: conversation.lua
-- KEYS: respondent replies claims dedupe dedupe_before
-- ARGV: sid mark claimer claims_ttl
local respondent = KEYS[1]
local replies = KEYS[2]
local claims = KEYS[3]
local dedupe = KEYS[4]
local dedupe_before = KEYS[5]
local sid = ARGV[1]
local mark = ARGV[2]
local claimer = ARGV[3]
local claims_ttl = ARGV[4]

local record, marks = parts_of(redis.call('GET', respondent))
local seen, kept, claim = 0, false, false
if sid ~= '' then
  local found = mark_of(marks, mark)
  if found then
    seen, kept = 1, redis.call('HGET', replies, found)
  else
    -- a dedupe record of the layout before, until it expires
    kept = legacy_replies(redis.call('HGET', dedupe, sid) or redis.call('HGET', dedupe_before, sid))
    seen = kept and 1 or 0
  end
  if kept then
    claim = redis.call('HGET', claims, sid)
    if not claim or string.sub(claim, 1, 6) == 'twiml:' then
      claim = 'twiml:' .. claimer
      redis.call('HSET', claims, sid, claim)
      redis.call('EXPIRE', claims, claims_ttl)
    end
  end
end
return {record, seen, kept, claim}
