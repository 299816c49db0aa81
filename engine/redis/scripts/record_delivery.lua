-- RECORD_DELIVERY: notes a message's delivery status. Twilio's status callbacks may arrive
-- out of order: a late `sent` must not overwrite `delivered`, so the record is left alone
-- when its status is one of the statuses that outrank the new one (Python's DELIVERY_RANKS
-- decides which). Returns 1 when written, 0 when left alone.
-- KEYS: deliveries
-- ARGV: sid record ttl outranking...
local deliveries = KEYS[1]
local sid = ARGV[1]
local record = ARGV[2]
local ttl = ARGV[3]
local outranking = 4  -- ARGV[outranking...]: the first such status's index

local old = redis.call('HGET', deliveries, sid)
if old then
  local status = cjson.decode(old)['status']
  for i = outranking, #ARGV do
    if ARGV[i] == status then return 0 end
  end
end
redis.call('HSET', deliveries, sid, record)
redis.call('EXPIRE', deliveries, ttl)
return 1
