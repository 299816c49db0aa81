-- CLAIM_DUE: hands due timers to one worker with a lease: their score moves to now + lease,
-- so another worker sees them again only if this one dies before committing.
-- Returns the claimed members.
-- KEYS: timers
-- ARGV: now lease limit
local timers = KEYS[1]
local now = ARGV[1]
local lease = ARGV[2]
local limit = ARGV[3]

local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, tonumber(limit))
for _, member in ipairs(due) do
  redis.call('ZADD', timers, 'XX', tonumber(now) + tonumber(lease), member)
end
return due
