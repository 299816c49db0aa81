-- OUTBOX_RESEND: an operator asks for a message whose outcome was unknown to be sent again,
-- from the part that was unknown on. Returns 1 when it is queued again, 0 when no such
-- unknown message is kept.
-- KEYS: due messages state unknown
-- ARGV: id now
local due = KEYS[1]
local messages = KEYS[2]
local state = KEYS[3]
local unknown = KEYS[4]
local id = ARGV[1]
local now = ARGV[2]

local kept = redis.call('HGET', unknown, id)
if not kept then return 0 end
local found = cjson.decode(kept)
redis.call('HSET', messages, id, found['message'])
redis.call('HSET', state, id, 'q|' .. found['part'] .. '|0||' .. found['sids'])
redis.call('ZADD', due, now, id)
redis.call('HDEL', unknown, id)
return 1
