-- OUTBOX_CLAIM: hands outbound messages to one sender with a lease: the due ones (score <=
-- now), or the ids given (a start's own messages, which its commit held back for it). A
-- claimed message's score moves to now + lease, so another sender sees it again only if
-- this one dies first. A message found in the `s` phase was being sent when its sender
-- died (or held it past its lease: that sender, asking BEGIN again, finds its claim gone and
-- does not send it): whether Twilio took it is unknown, so it is never sent again on its own. It moves to
-- the unknown hash (an operator may resend it), and a distribution's invitation reports it
-- on the deliveries stream.
-- The ids a sender claimed and has not begun are kept (`claimed`): each claim adds those it
-- claims, BEGIN drops a part it marks as being sent, FINISH adds a message whose next part
-- the sender keeps. When the answers to claims were lost (several may be, run one after the
-- other before the sender learns of it), its next claim says `recover`, and gets back every
-- one still claimed by it (the sender skips those it still works on). A claim looks through
-- `claimed` only then, or when it holds more ids than the sender says it holds there
-- (`held`): then it drops those no longer claimed by it (another sender's after the lease,
-- or let go).
-- Returns {id, message JSON, state} for each claimed message, then {id, '', 'unknown'} for
-- each one found unknown.
-- include: gathered.lua
-- KEYS: due messages state unknown deliveries claimed
-- ARGV: now lease limit tag recover held ids...
local due = KEYS[1]
local messages = KEYS[2]
local state = KEYS[3]
local unknown = KEYS[4]
local deliveries = KEYS[5]
local claimed = KEYS[6]
local now = ARGV[1]
local lease = ARGV[2]
local limit = ARGV[3]
local tag = ARGV[4]
local recover = ARGV[5]
local held = ARGV[6]
local ids = 7  -- ARGV[ids...]: the messages to claim, when given

local taken = {}
local seen = {}  -- the ids met so far
local marks, leases, held_ids = gathering(), gathering(), gathering()  -- state, due, claimed
local until_ = tonumber(now) + tonumber(lease)
if recover == '1' or redis.call('SCARD', claimed) > tonumber(held) then
  for _, id in ipairs(redis.call('SMEMBERS', claimed)) do
    local current = redis.call('HGET', state, id)
    if current and string.match(current, '^c|%d+|%d+|([^|]*)|') == tag then
      local message = recover == '1' and redis.call('HGET', messages, id)
      if message then
        redis.call('ZADD', due, tostring(until_), id)
        taken[#taken + 1] = {id, message, current}
        seen[id] = true
      end
    else
      redis.call('SREM', claimed, id)
    end
  end
end
local wanted
local explicit = #ARGV >= ids
if explicit then
  wanted = {}
  for i = ids, #ARGV do wanted[#wanted + 1] = ARGV[i] end
else
  wanted = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(limit))
end
for _, id in ipairs(wanted) do
  if not seen[id] then  -- (an id given twice is claimed once)
    seen[id] = true
    local message = redis.call('HGET', messages, id)
    local current = redis.call('HGET', state, id) or 'q|0|0||'
    local phase, part, tries, _, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
    if not message then
      redis.call('ZREM', due, id)
      redis.call('HDEL', state, id)
    elseif phase == 's' then
      if not explicit then
        local found = cjson.decode(message)
        redis.call('HSET', unknown, id, cjson.encode({message = message, part = tonumber(part), sids = sids,
          reason = 'its sender stopped while sending it', at = tonumber(now)}))
        redis.call('ZREM', due, id)
        redis.call('HDEL', messages, id)
        redis.call('HDEL', state, id)
        if found['distribution'] then
          redis.call('XADD', deliveries, '*', 'r', cjson.encode({distribution = found['distribution'],
            channel = found['channel'], phone = found['to'], state = 'unknown', sid = string.match(sids, '^[^,]+') or '',
            reason = 'sender_stopped', at = tonumber(now)}))
        end
        taken[#taken + 1] = {id, '', 'unknown'}
      end
    elseif not explicit or phase == 'q' then
      local mark = 'c|' .. part .. '|' .. tries .. '|' .. tag .. '|' .. sids
      gather(marks, id, mark)
      gather(leases, id, tostring(until_))
      taken[#taken + 1] = {id, message, mark}
    end
  end
end
for _, found in ipairs(taken) do
  if found[2] ~= '' then gather(held_ids, found[1], true) end
end
write_gathered(marks, state, 'hash')
write_gathered(leases, due, 'zset')
write_gathered(held_ids, claimed, 'set')
redis.call('EXPIRE', claimed, math.ceil(tonumber(lease)))
return taken
