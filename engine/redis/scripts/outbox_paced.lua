-- OUTBOX_PACED: on a Redis Cluster, the pace half of OUTBOX_FINISH (called after it, which is
-- then called without one): Twilio answered these requests, each counts in its sender's pace
-- for a window from now. A request not counted (gone after its time-out) stays uncounted.
-- Returns the number of requests.
-- include: pace.lua
-- KEYS: paces...
-- ARGV: members...
local paces = 1  -- KEYS[paces...]: the pace of each request's sender
local members = 1  -- ARGV[members...]: each request's member

for i = 0, #ARGV - members do
  answered(KEYS[paces + i], ARGV[members + i])
end
return #ARGV
