-- OUTBOX_BEGIN: a sender is about to ask Twilio for parts of messages it claimed (one or
-- more requests, taken in order: a sender's requests made in the same moment go in one
-- call). Within the pace of each message's sender address (at most `rate` requests in any
-- `window_ms`, across every worker and server), it marks the part as being sent (phase `s`)
-- and renews the claim's lease: from here on, the sender's death leaves the message unknown,
-- never sent twice. A repeat of a request (the answer to its call was lost) answers 0 again,
-- without counting twice.
-- The pace counts each request from the moment it is let go until a window after Twilio's
-- answer came (OUTBOX_FINISH moves its score to then; until then it is scored `inflight_ms`
-- ahead, which bounds what a sender that died holds). A request is let go only while fewer
-- than `rate` are counted, so of any `rate` + 1 requests, one was answered (had arrived)
-- a whole window before the last one was even let go: however late a request leaves, no
-- window of arrivals at Twilio holds more than `rate`. Requests of one sender are also
-- kept gap_ms apart (`last`), so that they do not leave in bursts.
-- Each request names its sender's `pace` and `last` keys (KEYS, two per request, in order)
-- and six ARGV: id part rate ('0': no pace) gap_ms member lease_until.
-- Returns, per request, 0: go; a positive number: milliseconds to wait for the pace; -1:
-- the claim is gone (the lease ran out and another sender has it).
-- KEYS: due state paces...
-- ARGV: tag window_ms inflight_ms requests...
local due = KEYS[1]
local state = KEYS[2]
local paces = 3  -- KEYS[paces...]: pace and last of each request's sender
local tag = ARGV[1]
local window_ms = ARGV[2]
local inflight_ms = ARGV[3]
local requests = 4  -- ARGV[requests...]: six per request

local window = tonumber(window_ms)
local inflight = tonumber(inflight_ms)
local now = nil  -- Redis's clock in ms, read once: the requests go in the same moment

local function begin(pace, last, id, part, rate, gap_ms, member, lease_until)
  local current = redis.call('HGET', state, id)
  if not current then return -1 end
  local phase, at, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
  if holder ~= tag or at ~= part then return -1 end
  if phase == 's' then return 0 end  -- a repeat of this request, whose answer was lost: it went
  if phase ~= 'c' then return -1 end
  local limit = tonumber(rate)
  if limit > 0 then
    if not now then
      local time = redis.call('TIME')
      now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    end
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
    redis.call('ZADD', pace, now + inflight, member)
    redis.call('PEXPIRE', pace, window + inflight)
    redis.call('SET', last, now, 'PX', window)
  end
  redis.call('ZADD', due, lease_until, id)
  redis.call('HSET', state, id, 's|' .. part .. '|' .. tries .. '|' .. tag .. '|' .. sids)
  return 0
end

local answers = {}
for i = 0, (#ARGV - requests + 1) / 6 - 1 do
  local a = requests + i * 6
  local k = paces + i * 2
  answers[#answers + 1] = begin(KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5])
end
return answers
