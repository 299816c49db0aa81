-- A sender address's pace (engine/redis/outbox.py): at most `rate` requests in any window of
-- arrivals at Twilio, across every worker and server. Included by the scripts that keep it:
-- OUTBOX_BEGIN (one Redis: in the same call that marks the part as being sent), and on a
-- Redis Cluster, where the pace lives in a slot of its own, OUTBOX_PACE and OUTBOX_PACED.
-- A request counts from the moment it is let go until a window after Twilio's answer came
-- (answered() moves its score to then; until then it is scored `inflight` ahead, which bounds
-- what a sender that died holds). A request is let go only while fewer than `rate` are
-- counted, so of any `rate` + 1 requests, one was answered (had arrived) a whole window
-- before the last one was even let go: however late a request leaves, no window of arrivals
-- at Twilio holds more than `rate`. Requests of one sender are also kept `gap` ms apart
-- (`last`), so that they do not leave in bursts.
local pace_clock = nil  -- Redis's clock in ms, read once: a call's requests go in the same moment

local function pace_now()
  if not pace_clock then
    local time = redis.call('TIME')
    pace_clock = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  return pace_clock
end

-- 0: the request may go, and is counted from now; > 0: milliseconds to wait first
local function take_pace(pace, last, rate, gap, member, window, inflight)
  local now = pace_now()
  redis.call('ZREMRANGEBYSCORE', pace, '-inf', now - window)
  local newest = tonumber(redis.call('GET', last))
  if newest and now - newest < gap then return gap - (now - newest) end
  if redis.call('ZCARD', pace) >= rate then
    local oldest = tonumber(redis.call('ZRANGE', pace, 0, 0, 'WITHSCORES')[2])
    local wait = oldest + window - now
    if oldest > now then wait = math.min(wait, 100) end  -- still waiting for its answer: look again soon
    return math.max(1, wait)
  end
  redis.call('ZADD', pace, now + inflight, member)
  redis.call('PEXPIRE', pace, window + inflight)
  redis.call('SET', last, now, 'PX', window)
  return 0
end

-- whether the request `member` still counts (let go, and not yet a window past its answer or,
-- unanswered, its time-out): a repeat of a request that no longer counts must take the pace anew
local function counted(pace, member, window)
  local score = redis.call('ZSCORE', pace, member)
  return score ~= false and score ~= nil and tonumber(score) > pace_now() - window
end

-- Twilio answered the request `member`: it counts for a window from now
local function answered(pace, member)
  local time = redis.call('TIME')
  redis.call('ZADD', pace, 'XX', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), member)
end
