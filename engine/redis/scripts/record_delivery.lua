-- RECORD_DELIVERY: notes a message's delivery status (a status callback's), unless the one
-- noted outranks it: note_delivery (delivery.lua). The sender notes `queued` itself, in
-- OUTBOX_FINISH.
-- Returns 1 when written, 0 when left alone.
-- include: delivery.lua
-- KEYS: deliveries stream
-- ARGV: sid record ttl distribution event outranking...
local deliveries = KEYS[1]
local stream = KEYS[2]
local sid = ARGV[1]
local record = ARGV[2]
local ttl = ARGV[3]
local distribution = ARGV[4]
local event = ARGV[5]
local outranking = 6  -- ARGV[outranking...]: the statuses that outrank this one

local outranks = {}
for i = outranking, #ARGV do outranks[ARGV[i]] = true end
return note_delivery(deliveries, stream, sid, record, ttl, distribution, event, outranks)
