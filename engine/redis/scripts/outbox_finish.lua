-- OUTBOX_FINISH: what Twilio answered for the part being sent (phase `s`, this sender's).
-- `sent`: the next part is claimed by the same sender, or after the last part the message
-- leaves the outbox; `retry` (Twilio did not take it: 429, 5xx, unreachable): queued again
-- at retry_at; `failed` (refused for good) and `unknown` (the request went, the answer did
-- not come) end it, an unknown one kept in the unknown hash. A distribution's invitation
-- reports its end (sent, failed, unknown) on the deliveries stream.
-- Returns 1 when noted, 0 when this sender no longer held the part.
-- The request's entry in its sender's pace (`member`, '' when unpaced) is scored with the
-- time of the answer (Redis's clock): it counts for a window from then (OUTBOX_BEGIN).
-- KEYS: due messages state unknown deliveries pace
-- ARGV: id tag part parts outcome sid error_code reason retry_at now member
local due = KEYS[1]
local messages = KEYS[2]
local state = KEYS[3]
local unknown = KEYS[4]
local deliveries = KEYS[5]
local pace = KEYS[6]
local id = ARGV[1]
local tag = ARGV[2]
local part = ARGV[3]
local parts = ARGV[4]
local outcome = ARGV[5]
local sid = ARGV[6]
local error_code = ARGV[7]
local reason = ARGV[8]
local retry_at = ARGV[9]
local now = ARGV[10]
local member = ARGV[11]

local current = redis.call('HGET', state, id)
if not current then return 0 end
local phase, at, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
if phase ~= 's' or holder ~= tag or at ~= part then return 0 end
if member ~= '' then
  local time = redis.call('TIME')
  redis.call('ZADD', pace, 'XX', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), member)
end
if sid ~= '' then sids = (sids == '' and sid) or (sids .. ',' .. sid) end
if outcome == 'sent' and tonumber(part) + 1 < tonumber(parts) then
  redis.call('HSET', state, id, 'c|' .. (tonumber(part) + 1) .. '|0|' .. tag .. '|' .. sids)
  return 1
end
if outcome == 'retry' then
  redis.call('HSET', state, id, 'q|' .. part .. '|' .. (tonumber(tries) + 1) .. '||' .. sids)
  redis.call('ZADD', due, retry_at, id)
  return 1
end
local message = redis.call('HGET', messages, id)
if outcome == 'unknown' and message then
  redis.call('HSET', unknown, id, cjson.encode({message = message, part = tonumber(part), sids = sids,
    reason = reason, at = tonumber(now)}))
end
redis.call('ZREM', due, id)
redis.call('HDEL', messages, id)
redis.call('HDEL', state, id)
if message then
  local found = cjson.decode(message)
  if found['distribution'] then
    redis.call('XADD', deliveries, '*', 'r', cjson.encode({distribution = found['distribution'],
      channel = found['channel'], phone = found['to'], state = outcome, sid = string.match(sids, '^[^,]+') or '',
      error_code = tonumber(error_code), reason = reason, at = tonumber(now)}))
  end
end
return 1
