-- OUTBOX_FINISH: what Twilio answered for parts being sent (phase `s`, this sender's); one
-- or more answers, taken in order (a sender's answers that came in the same moment go in one
-- call). `sent`: the next part is claimed by the same sender, or after the last part the
-- message leaves the outbox; `retry` (Twilio did not take it: 429, 5xx, unreachable): queued
-- again at retry_at; `failed` (refused for good) and `unknown` (the request went, the answer
-- did not come) end it, an unknown one kept in the unknown hash. A distribution's invitation
-- reports its end (sent, failed, unknown) on the deliveries stream.
-- The request's entry in its sender's pace (`member`, '' when unpaced) is scored with the
-- time of the answer (Redis's clock): it counts for a window from then (pace.lua). On a
-- Redis Cluster it is '', and OUTBOX_PACED does that in the pace's own slot.
-- Each answer names its sender's `pace` key (KEYS, one per answer, in order) and nine ARGV:
-- id part parts outcome sid error_code reason retry_at member.
-- Returns, per answer, 1 when noted, 0 when this sender no longer held the part.
-- include: pace.lua
-- KEYS: due messages state unknown deliveries paces...
-- ARGV: tag now answers...
local due = KEYS[1]
local messages = KEYS[2]
local state = KEYS[3]
local unknown = KEYS[4]
local deliveries = KEYS[5]
local paces = 6  -- KEYS[paces...]: the pace of each answer's sender
local tag = ARGV[1]
local now = ARGV[2]
local answers = 3  -- ARGV[answers...]: nine per answer

local function finish(pace, id, part, parts, outcome, sid, error_code, reason, retry_at, member)
  local current = redis.call('HGET', state, id)
  if not current then return 0 end
  local phase, at, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
  if phase ~= 's' or holder ~= tag or at ~= part then return 0 end
  if member ~= '' then answered(pace, member) end
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
end

local noted = {}
for i = 0, (#ARGV - answers + 1) / 9 - 1 do
  local a = answers + i * 9
  noted[#noted + 1] = finish(KEYS[paces + i], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
    ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8])
end
return noted
