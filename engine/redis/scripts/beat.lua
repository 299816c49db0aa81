-- BEAT: a worker's heartbeat: notes that it is alive (Redis time), the generation it runs,
-- the latest generation it refused and why; drops the entries of workers silent for longer
-- than worker_ttl.
-- Returns the live generation (0 when none was announced).
-- KEYS: workers live
-- ARGV: worker generation refused error worker_ttl
local workers = KEYS[1]
local live = KEYS[2]
local worker = ARGV[1]
local generation = ARGV[2]
local refused = ARGV[3]
local error = ARGV[4]
local worker_ttl = ARGV[5]

local now = tonumber(redis.call('TIME')[1])
redis.call('HSET', workers, worker, cjson.encode({beat = now, generation = tonumber(generation),
                                                  refused = tonumber(refused), error = error}))
local entries = redis.call('HGETALL', workers)
for i = 1, #entries, 2 do
  if cjson.decode(entries[i + 1])['beat'] < now - tonumber(worker_ttl) then redis.call('HDEL', workers, entries[i]) end
end
redis.call('EXPIRE', workers, 86400)
return tonumber(redis.call('HGET', live, 'generation') or '0')
