-- CLAIM: who delivers the replies committed for an inbound MessageSid whose webhook answered
-- without them: the first to claim (a redelivery's READ claims "twiml:<tag>"; a sender
-- claims "rest:<tag>", its own tag, before it sends them through the REST API). The claim
-- that wins queues the sender's message of them (`id`, '' for none) in the outbox in the same
-- step: so a claim repeated after its answer was lost knows itself by its tag and queues
-- nothing twice, and a claim that won never leaves the replies unsent.
-- Returns the claim that holds: `by` when this one won.
-- KEYS: claims outbox_due outbox_messages
-- ARGV: sid by ttl id due message
local claims = KEYS[1]
local outbox_due = KEYS[2]
local outbox_messages = KEYS[3]
local sid = ARGV[1]
local by = ARGV[2]
local ttl = ARGV[3]
local id = ARGV[4]
local due = ARGV[5]
local message = ARGV[6]

if redis.call('HSETNX', claims, sid, by) == 1 then
  redis.call('EXPIRE', claims, ttl)
  if id ~= '' then
    redis.call('HSET', outbox_messages, id, message)
    redis.call('ZADD', outbox_due, due, id)
  end
  return by
end
return redis.call('HGET', claims, sid)
