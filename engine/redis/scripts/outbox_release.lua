-- OUTBOX_RELEASE: a sender that stops gives back messages it claimed and has not begun: each
-- is queued again, due now, for any sender (its part, tries and sent parts kept), rather than
-- waiting out its lease. So is a part it began (`begun`: that part, unpaced: none counts in a
-- pace) and has not asked Twilio for, which the sender alone can know (engine.runtime.outbox's
-- AHEAD). One it no longer holds (begun otherwise, ended, or another sender's after the lease)
-- is left as it is.
-- Returns how many were given back.
-- KEYS: due state claimed
-- ARGV: tag now begun ids...
local due = KEYS[1]
local state = KEYS[2]
local claimed = KEYS[3]
local tag = ARGV[1]
local now = ARGV[2]
-- begun: the part begun and not asked for, '' when none was begun
local begun = ARGV[3]
local ids = 4  -- ARGV[ids...]: the messages given back

local given = 0
for i = ids, #ARGV do
  local id = ARGV[i]
  local current = redis.call('HGET', state, id)
  if current then
    local phase, part, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
    if holder == tag and (phase == 'c' or (phase == 's' and part == begun)) then
      redis.call('HSET', state, id, 'q|' .. part .. '|' .. tries .. '||' .. sids)
      redis.call('ZADD', due, now, id)
      given = given + 1
    end
  end
  redis.call('SREM', claimed, id)
end
return given
