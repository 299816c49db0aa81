-- OUTBOX_BEGIN: a sender is about to ask Twilio for parts of messages it claimed (one or
-- more requests, taken in order: a sender's requests made in the same moment go in one
-- call). Within the pace of each message's sender address (at most `rate` requests in any
-- `window_ms`, across every worker and server), it marks the part as being sent (phase `s`)
-- and renews the claim's lease: from here on, the sender's death leaves the message unknown,
-- never sent twice. A request the pace holds back renews the lease too: a sender still asking
-- holds its message however long the pace keeps it waiting. A repeat of a request (the answer
-- to its call was lost, or, unpaced, the part waited long for a request slot: its request
-- has not gone, and goes when a repeat answers) renews the lease and answers 0 again, without
-- counting twice, while its first try still counts in the pace; after that it takes the pace
-- anew. On a Redis Cluster the pace is kept apart
-- (outbox_pace.lua); a request it held back comes here with rate '-1' to renew the lease
-- alone (answering 1; 0 for a repeat's part, marked already; -1 when the claim is gone).
-- The pace: pace.lua.
-- Each request names its sender's `pace` and `last` keys (KEYS, two per request, in order;
-- unpaced, the due key twice: unused)
-- and six ARGV: id part rate ('0': no pace) gap_ms member lease_until.
-- Returns, per request, 0: go; a positive number: milliseconds to wait for the pace; -1:
-- the claim is gone (the lease ran out, and another sender has it or, the part being sent,
-- another claim kept it as unknown).
-- include: pace.lua
-- include: gathered.lua
-- KEYS: due state claimed paces...
-- ARGV: tag window_ms inflight_ms requests...
local due = KEYS[1]
local state = KEYS[2]
-- claimed: the ids this sender claimed and has not begun (outbox_claim.lua)
local claimed = KEYS[3]
local paces = 4  -- KEYS[paces...]: pace and last of each request's sender
local tag = ARGV[1]
local window_ms = ARGV[2]
local inflight_ms = ARGV[3]
local requests = 4  -- ARGV[requests...]: six per request

local window = tonumber(window_ms)
local inflight = tonumber(inflight_ms)

-- (written at the end, gathered.lua; a request whose message an earlier one of this call
-- marked sees that mark)
local marks, leases, begun = gathering(), gathering(), gathering()  -- state, due, claimed

local function begin(pace, last, id, part, rate, gap_ms, member, lease_until)
  local current = marks.value[id]
  if current == nil then current = redis.call('HGET', state, id) end
  if not current then return -1 end
  local phase, at, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
  if holder ~= tag or at ~= part or (phase ~= 'c' and phase ~= 's') then return -1 end
  gather(leases, id, lease_until)  -- its sender still asks: the lease runs from now
  local limit = tonumber(rate)
  if phase == 's' then  -- a repeat of this request, whose answer was lost: its request has not gone
    if limit > 0 and not counted(pace, member, window) then
      return take_pace(pace, last, limit, tonumber(gap_ms), member, window, inflight)
    end
    return 0
  end
  if limit < 0 then return 1 end
  if limit > 0 then
    local wait = take_pace(pace, last, limit, tonumber(gap_ms), member, window, inflight)
    if wait > 0 then return wait end
  end
  gather(marks, id, 's|' .. part .. '|' .. tries .. '|' .. tag .. '|' .. sids)
  gather(begun, id, false)
  return 0
end

local answers = {}
for i = 0, (#ARGV - requests + 1) / 6 - 1 do
  local a = requests + i * 6
  local k = paces + i * 2
  answers[#answers + 1] = begin(KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5])
end
write_gathered(marks, state, 'hash')
write_gathered(leases, due, 'zset')
write_gathered(begun, claimed, 'set')
return answers
