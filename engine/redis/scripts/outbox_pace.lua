-- OUTBOX_PACE: on a Redis Cluster, where a sender's pace lives in a slot of its own
-- (engine/redis/outbox.py), the pace half of OUTBOX_BEGIN, called before it (which is then
-- called without a pace): for each request, whether it may go now within its sender's pace.
-- A request let go here whose BEGIN then finds the claim gone counts in the pace until its
-- time-out (`inflight_ms`): a slot lost, never one too many. A repeat of a request (its member
-- is the same) goes at once and counts once, while it still counts; after that it takes the
-- pace anew.
-- Each request names its sender's `pace` and `last` keys (KEYS, two per request, in order)
-- and three ARGV: rate gap_ms member.
-- Returns, per request, 0: go; a positive number: milliseconds to wait for the pace.
-- include: pace.lua
-- KEYS: paces...
-- ARGV: window_ms inflight_ms requests...
local paces = 1  -- KEYS[paces...]: pace and last of each request's sender
local window_ms = ARGV[1]
local inflight_ms = ARGV[2]
local requests = 3  -- ARGV[requests...]: three per request

local window = tonumber(window_ms)
local inflight = tonumber(inflight_ms)
local waits = {}
for i = 0, (#ARGV - requests + 1) / 3 - 1 do
  local a = requests + i * 3
  local k = paces + i * 2
  if counted(KEYS[k], ARGV[a + 2], window) then
    waits[#waits + 1] = 0  -- a repeat of a request let go (the answer to its call was lost): it goes
  else
    waits[#waits + 1] = take_pace(KEYS[k], KEYS[k + 1], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2],
      window, inflight)
  end
end
return waits
