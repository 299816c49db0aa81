-- TRIM_ARCHIVED: trims a record stream below the oldest entry the archiver's group has not
-- acknowledged (the oldest pending one, else the one after the last delivered), in one
-- step, so no entry read or acknowledged meanwhile is miscounted. Without the group nothing
-- was archived: nothing goes.
-- Returns how many entries went.
-- KEYS: stream
-- ARGV: group
local stream = KEYS[1]
local group = ARGV[1]

local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
if not ok then return 0 end
local last
for _, entry in ipairs(groups) do
  local info = {}
  for i = 1, #entry, 2 do info[entry[i]] = entry[i + 1] end
  if info['name'] == group then last = info['last-delivered-id'] end
end
if not last then return 0 end
local pending = redis.call('XPENDING', stream, group)
local below
if pending[1] > 0 then
  below = pending[2]
else
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  below = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end
return redis.call('XTRIM', stream, 'MINID', below)
