-- RESCHEDULE: puts a timer back when a tick changed nothing (and drops it when the record
-- is gone). Returns 1, or 0 when the record changed since it was read.
-- include: revision.lua
-- KEYS: respondent timers
-- ARGV: revision member legacy_member due
local respondent = KEYS[1]
local timers = KEYS[2]
local revision = ARGV[1]
local member = ARGV[2]
local legacy_member = ARGV[3]
local due = ARGV[4]

if revision_of(respondent) ~= revision then return 0 end
if due == '' or redis.call('EXISTS', respondent) == 0 then
  redis.call('ZREM', timers, member)
else
  redis.call('ZADD', timers, due, member)
end
if legacy_member ~= '' then redis.call('ZREM', timers, legacy_member) end
return 1
