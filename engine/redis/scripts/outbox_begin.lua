-- OUTBOX_BEGIN: a sender is about to ask Twilio for one part of a message it claimed. Within
-- the pace of the message's sender address (at most `rate` requests in any `window_ms`, by
-- Redis's clock, across every worker and server), it marks the part as being sent (phase
-- `s`) and renews the claim's lease: from here on, the sender's death leaves the message unknown, never sent twice.
-- A repeat of the call (its answer was lost) answers 0 again, without counting twice.
-- Returns 0: go; a positive number: milliseconds to wait for the pace; -1: the claim is
-- gone (the lease ran out and another sender has it).
-- Requests of one sender are also kept gap_ms apart, so they do not leave in bursts (a burst
-- reaches Twilio spread out by its own sending, which could bring two bursts closer than
-- the window).
-- KEYS: due state pace
-- ARGV: id tag part rate window_ms gap_ms lease_until
local due = KEYS[1]
local state = KEYS[2]
local pace = KEYS[3]
local id = ARGV[1]
local tag = ARGV[2]
local part = ARGV[3]
local rate = ARGV[4]
local window_ms = ARGV[5]
local gap_ms = ARGV[6]
local lease_until = ARGV[7]

local current = redis.call('HGET', state, id)
if not current then return -1 end
local phase, at, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
if holder ~= tag or at ~= part then return -1 end
if phase == 's' then return 0 end  -- a repeat of this call, whose answer was lost: it went
if phase ~= 'c' then return -1 end
local limit = tonumber(rate)
if limit > 0 then
  local window = tonumber(window_ms)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local newest = tonumber(redis.call('LINDEX', pace, 0))
  local gap = tonumber(gap_ms)
  if newest and now - newest < gap then return gap - (now - newest) end
  if redis.call('LLEN', pace) >= limit then
    local oldest = tonumber(redis.call('LINDEX', pace, limit - 1))
    if now - oldest < window then return window - (now - oldest) end
  end
  redis.call('LPUSH', pace, now)
  redis.call('LTRIM', pace, 0, limit - 1)
  redis.call('PEXPIRE', pace, window * 2)
end
redis.call('ZADD', due, lease_until, id)
redis.call('HSET', state, id, 's|' .. part .. '|' .. tries .. '|' .. tag .. '|' .. sids)
return 0
