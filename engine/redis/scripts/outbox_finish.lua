-- OUTBOX_FINISH: what Twilio answered for parts being sent (phase `s`, this sender's); one
-- or more answers, taken in order (a sender's answers that came in the same moment go in one
-- call). `sent`: the next part is claimed by the same sender, or after the last part the
-- message leaves the outbox; `retry` (Twilio did not take it: 429, 5xx, unreachable): queued
-- again at retry_at; `failed` (refused for good) and `unknown` (the request went, the answer
-- did not come) end it, an unknown one kept in the unknown hash. A distribution's invitation
-- reports its end (sent, failed, unknown) on the deliveries stream.
-- A part Twilio took (its sid given) is noted `queued` in its recipient's deliveries hash, as
-- RECORD_DELIVERY notes a status callback (note_delivery, unless a callback that came first
-- outranks it), even when this sender no longer held the part: the message went; a
-- repeat of the call finds it noted and notes nothing.
-- The request's entry in its sender's pace (`member`, '' when unpaced) is scored with the
-- time of the answer (Redis's clock): it counts for a window from then (pace.lua). On a
-- Redis Cluster it is '', and OUTBOX_PACED does that in the pace's own slot.
-- Each answer names two KEYS (its sender's pace, its recipient's deliveries hash: in the
-- outbox's slot on a cluster) and twelve ARGV: id part parts outcome sid error_code reason
-- retry_at member channel to distribution.
-- Returns, per answer, 1 when noted, 0 when this sender no longer held the part.
-- include: pace.lua
-- include: delivery.lua
-- include: gathered.lua
-- KEYS: due messages state unknown deliveries claimed per_answer...
-- ARGV: tag now ttl lease queued_outranking answers...
local due = KEYS[1]
local messages = KEYS[2]
local state = KEYS[3]
local unknown = KEYS[4]
local deliveries = KEYS[5]
-- claimed: the ids this sender claimed and has not begun (outbox_claim.lua)
local claimed = KEYS[6]
local per_answer = 7  -- KEYS[per_answer...]: two per answer
local tag = ARGV[1]
local now = ARGV[2]
local ttl = ARGV[3]
-- lease: seconds the claimed ids are kept after the sender last added one (as CLAIM does)
local lease = ARGV[4]
-- queued_outranking: the statuses that outrank `queued`, comma-separated
local queued_outranking = ARGV[5]
local answers = 6  -- ARGV[answers...]: twelve per answer

local outranks_queued = {}
for status in string.gmatch(queued_outranking, '[^,]+') do outranks_queued[status] = true end

local function queued(recipient, sid, channel, to, distribution)
  local record = '{"status":"queued","error_code":null,"at":' .. now
    .. ((distribution ~= '' and ',"d":' .. cjson.encode(distribution)) or '') .. '}'
  local function event()  -- (made only when the deliveries stream is told: a distribution's message)
    return '{"channel":' .. cjson.encode(channel) .. ',"phone":' .. cjson.encode(to)
      .. ',"state":"queued","sid":' .. cjson.encode(sid) .. ',"error_code":null,"at":' .. now .. '}'
  end
  -- once: a repeat of this call whose answer was lost finds its own note, and notes nothing
  note_delivery(recipient, deliveries, sid, record, ttl, distribution, event, outranks_queued, 'queued')
end

-- (written at the end, gathered.lua; an answer whose message an earlier one of this call
-- changed sees that change)
local marks, dues, ended, held_ids = gathering(), gathering(), gathering(), gathering()  -- state, due, messages, claimed

local function finish(pace, id, part, parts, outcome, sid, error_code, reason, retry_at, member, channel, to,
                      distribution)
  local current = marks.value[id]
  if current == nil then current = redis.call('HGET', state, id) end
  if not current then return 0 end
  local phase, at, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
  if phase ~= 's' or holder ~= tag or at ~= part then return 0 end
  if member ~= '' then answered(pace, member) end
  if sid ~= '' then sids = (sids == '' and sid) or (sids .. ',' .. sid) end
  if outcome == 'sent' and tonumber(part) + 1 < tonumber(parts) then
    gather(marks, id, 'c|' .. (tonumber(part) + 1) .. '|0|' .. tag .. '|' .. sids)
    gather(held_ids, id, true)
    return 1
  end
  if outcome == 'retry' then
    gather(marks, id, 'q|' .. part .. '|' .. (tonumber(tries) + 1) .. '||' .. sids)
    gather(dues, id, retry_at)
    return 1
  end
  -- the message itself: kept when unknown, and read for a distribution's report (its end,
  -- once: a repeat found the part no longer being sent above)
  local message = (outcome == 'unknown' or distribution ~= '') and redis.call('HGET', messages, id)
  if outcome == 'unknown' and message then
    redis.call('HSET', unknown, id, cjson.encode({message = message, part = tonumber(part), sids = sids,
      reason = reason, at = tonumber(now)}))
  end
  gather(dues, id, false)
  gather(ended, id, false)
  gather(marks, id, false)
  if message and distribution ~= '' then  -- (the message's own, as its sender read it)
    redis.call('XADD', deliveries, '*', 'r', cjson.encode({distribution = distribution, channel = channel,
      phone = to, state = outcome, sid = string.match(sids, '^[^,]+') or '', error_code = tonumber(error_code),
      reason = reason, at = tonumber(now)}))
  end
  return 1
end

local noted = {}
for i = 0, (#ARGV - answers + 1) / 12 - 1 do
  local a = answers + i * 12
  local sid = ARGV[a + 4]
  if ARGV[a + 3] == 'sent' and sid ~= '' then
    queued(KEYS[per_answer + 2 * i + 1], sid, ARGV[a + 9], ARGV[a + 10], ARGV[a + 11])
  end
  noted[#noted + 1] = finish(KEYS[per_answer + 2 * i], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], sid,
    ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9], ARGV[a + 10], ARGV[a + 11])
end
write_gathered(marks, state, 'hash')
write_gathered(dues, due, 'zset')
write_gathered(ended, messages, 'hash')
write_gathered(held_ids, claimed, 'set')
if #held_ids.order > 0 then redis.call('EXPIRE', claimed, lease) end
return noted
