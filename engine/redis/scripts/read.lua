-- READ: a respondent record (with its revision) and the dedupe record of the inbound
-- MessageSid, in one round trip. A MessageSid already committed is a redelivery: it claims
-- the delivery of the committed replies ("twiml:" and this read's claimer tag) unless the
-- REST API already has ("rest:" and its sender's tag). The tag lets a read whose answer never reached its request
-- (which then could not answer with the replies) hand the delivery over to the REST API.
-- Returns {stored record or false, replies or false, the claim that holds or false}.
-- KEYS: respondent dedupe dedupe_before claims
-- ARGV: sid claimer claims_ttl
local respondent = KEYS[1]
local dedupe = KEYS[2]
local dedupe_before = KEYS[3]
local claims = KEYS[4]
local sid = ARGV[1]
local claimer = ARGV[2]
local claims_ttl = ARGV[3]

local seen, claim = false, false
if sid ~= '' then
  seen = redis.call('HGET', dedupe, sid) or redis.call('HGET', dedupe_before, sid)
  if seen then
    if redis.call('HSETNX', claims, sid, 'twiml:' .. claimer) == 1 then
      redis.call('EXPIRE', claims, claims_ttl)
      claim = 'twiml:' .. claimer
    else
      claim = redis.call('HGET', claims, sid)
    end
  end
end
return {redis.call('GET', respondent), seen, claim}
