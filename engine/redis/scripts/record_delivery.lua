-- RECORD_DELIVERY: notes a message's delivery status. Twilio's status callbacks may arrive
-- out of order: a late `sent` must not overwrite `delivered`, so the record is left alone
-- when its status is one of the statuses that outrank the new one (Python's DELIVERY_RANKS
-- decides which). A message of a distribution (its first record names it, later ones
-- inherit it as "d") also reports the status on the deliveries stream, for its recipient;
-- a status that came before the record naming the distribution is reported when it comes.
-- Returns 1 when written, 0 when left alone.
-- KEYS: deliveries stream
-- ARGV: sid record ttl distribution event outranking...
local deliveries = KEYS[1]
local stream = KEYS[2]
local sid = ARGV[1]
local record = ARGV[2]
local ttl = ARGV[3]
local distribution = ARGV[4]
local event = ARGV[5]
local outranking = 6  -- ARGV[outranking...]: the first such status's index

local old = redis.call('HGET', deliveries, sid)
if old then
  local found = cjson.decode(old)
  for i = outranking, #ARGV do
    if ARGV[i] == found['status'] then
      if distribution ~= '' and type(found['d']) ~= 'string' then
        -- Twilio's callback came before the sender noted the message's distribution: note
        -- it now, and report the status the callback gave for the recipient
        redis.call('HSET', deliveries, sid, string.sub(old, 1, -2) .. ',"d":' .. cjson.encode(distribution) .. '}')
        local reported = cjson.decode(event)
        reported['state'], reported['error_code'], reported['at'] = found['status'], found['error_code'], found['at']
        redis.call('XADD', stream, '*', 'r', '{"distribution":' .. cjson.encode(distribution) .. ','
          .. string.sub(cjson.encode(reported), 2))
      end
      return 0
    end
  end
  if distribution == '' and type(found['d']) == 'string' then
    distribution = found['d']
    record = string.sub(record, 1, -2) .. ',"d":' .. cjson.encode(distribution) .. '}'
  end
end
redis.call('HSET', deliveries, sid, record)
redis.call('EXPIRE', deliveries, ttl)
if distribution ~= '' then
  redis.call('XADD', stream, '*', 'r', '{"distribution":' .. cjson.encode(distribution) .. ',' .. string.sub(event, 2))
end
return 1
