-- ANNOUNCE: makes a set of flow versions the live set of every worker sharing this Redis:
-- bumps the live hash's generation, notes who announced it and when (Redis time), and
-- publishes the generation on the reloads channel.
-- Returns {generation, the ids of the workers alive now (beat within worker_ttl)}.
-- KEYS: live workers
-- ARGV: flows by worker_ttl channel
local live = KEYS[1]
local workers = KEYS[2]
local flows = ARGV[1]
local by = ARGV[2]
local worker_ttl = ARGV[3]
local channel = ARGV[4]

local now = tonumber(redis.call('TIME')[1])
local generation = redis.call('HINCRBY', live, 'generation', 1)
redis.call('HSET', live, 'flows', flows, 'by', by, 'at', now)
local alive = {}
local entries = redis.call('HGETALL', workers)
for i = 1, #entries, 2 do
  if cjson.decode(entries[i + 1])['beat'] >= now - tonumber(worker_ttl) then table.insert(alive, entries[i]) end
end
redis.call('PUBLISH', channel, generation)
return {generation, alive}
