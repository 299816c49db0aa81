-- OUTBOX_RELEASE: a sender that stops gives back messages it claimed and has not begun: each
-- is queued again, due now, for any sender (its part, tries and sent parts kept), rather than
-- waiting out its lease. One it no longer holds (begun, ended, or another sender's after the
-- lease) is left as it is.
-- Returns how many were given back.
-- KEYS: due state claimed
-- ARGV: tag now ids...
local due = KEYS[1]
local state = KEYS[2]
local claimed = KEYS[3]
local tag = ARGV[1]
local now = ARGV[2]
local ids = 3  -- ARGV[ids...]: the messages given back

local given = 0
for i = ids, #ARGV do
  local id = ARGV[i]
  local current = redis.call('HGET', state, id)
  if current then
    local phase, part, tries, holder, sids = string.match(current, '^(%a)|(%d+)|(%d+)|([^|]*)|(.*)$')
    if phase == 'c' and holder == tag then
      redis.call('HSET', state, id, 'q|' .. part .. '|' .. tries .. '||' .. sids)
      redis.call('ZADD', due, now, id)
      given = given + 1
    end
  end
  redis.call('SREM', claimed, id)
end
return given
