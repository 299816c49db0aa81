-- OUTBOX_BEGIN: a sender is about to ask Twilio for one part of a message it claimed. Within
-- the pace of the message's sender address (at most `rate` requests in any `window_ms`,
-- across every worker and server), it marks the part as being sent (phase `s`) and renews
-- the claim's lease: from here on, the sender's death leaves the message unknown, never
-- sent twice. A repeat of the call (its answer was lost) answers 0 again, without counting
-- twice.
-- The pace counts each request from the moment it is let go until a window after Twilio's
-- answer came (OUTBOX_FINISH moves its score to then; until then it is scored `inflight_ms`
-- ahead, which bounds what a sender that died holds). A request is let go only while fewer
-- than `rate` are counted, so of any `rate` + 1 requests, one was answered (had arrived)
-- a whole window before the last one was even let go: however late a request leaves, no
-- window of arrivals at Twilio holds more than `rate`. Requests of one sender are also
-- kept gap_ms apart (`last`), so that they do not leave in bursts.
-- Returns 0: go; a positive number: milliseconds to wait for the pace; -1: the claim is
-- gone (the lease ran out and another sender has it).
-- KEYS: due state pace last
-- ARGV: id tag part rate window_ms gap_ms inflight_ms member lease_until
local due = KEYS[1]
local state = KEYS[2]
local pace = KEYS[3]
local last = KEYS[4]
local id = ARGV[1]
local tag = ARGV[2]
local part = ARGV[3]
local rate = ARGV[4]
local window_ms = ARGV[5]
local gap_ms = ARGV[6]
local inflight_ms = ARGV[7]
local member = ARGV[8]
local lease_until = ARGV[9]

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
  redis.call('ZREMRANGEBYSCORE', pace, '-inf', now - window)
  local newest = tonumber(redis.call('GET', last))
  local gap = tonumber(gap_ms)
  if newest and now - newest < gap then return gap - (now - newest) end
  if redis.call('ZCARD', pace) >= limit then
    local oldest = tonumber(redis.call('ZRANGE', pace, 0, 0, 'WITHSCORES')[2])
    local wait = oldest + window - now
    if oldest > now then wait = math.min(wait, 100) end  -- still waiting for its answer: look again soon
    return math.max(1, wait)
  end
  local inflight = tonumber(inflight_ms)
  redis.call('ZADD', pace, now + inflight, member)
  redis.call('PEXPIRE', pace, window + inflight)
  redis.call('SET', last, now, 'PX', window)
end
redis.call('ZADD', due, lease_until, id)
redis.call('HSET', state, id, 's|' .. part .. '|' .. tries .. '|' .. tag .. '|' .. sids)
return 0
