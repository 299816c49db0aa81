-- CLAIM: who delivers the replies committed for an inbound MessageSid whose webhook answered
-- without them: the first to claim (a redelivery's READ claims "twiml:<tag>"; a sender
-- claims "rest:<tag>", its own tag, before it sends them through the REST API).
-- Returns the claim that holds: `by` when this one won.
-- KEYS: claims
-- ARGV: sid by ttl
local claims = KEYS[1]
local sid = ARGV[1]
local by = ARGV[2]
local ttl = ARGV[3]

if redis.call('HSETNX', claims, sid, by) == 1 then
  redis.call('EXPIRE', claims, ttl)
  return by
end
return redis.call('HGET', claims, sid)
