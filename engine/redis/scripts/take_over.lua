-- TAKE_OVER: the delivery a redelivery claimed for its TwiML answer ("twiml:" and its read's
-- claimer tag), handed to the REST API because that read's answer never reached its request
-- (which answered 503, without the replies). Only that claim is taken over: one another
-- delivery holds, or the REST API's, stays.
-- Returns the committed replies (as stored) when the claim was taken over (it is then
-- 'rest:' and the same tag), else false.
-- KEYS: claims dedupe dedupe_before
-- ARGV: sid claimer
local claims = KEYS[1]
local dedupe = KEYS[2]
local dedupe_before = KEYS[3]
local sid = ARGV[1]
local claimer = ARGV[2]

if redis.call('HGET', claims, sid) ~= 'twiml:' .. claimer then
  return false
end
redis.call('HSET', claims, sid, 'rest:' .. claimer)
return redis.call('HGET', dedupe, sid) or redis.call('HGET', dedupe_before, sid)
