-- note_delivery: notes a message's delivery status in its recipient's deliveries hash.
-- Twilio's status callbacks may arrive out of order: a late `sent` must not overwrite
-- `delivered`, so the record is left alone when its status is one of `outranking` (a set:
-- status -> true; Python's DELIVERY_RANKS decides which). A message of a distribution (its
-- first record names it, later ones inherit it as "d") also reports the status on the
-- deliveries stream, for its recipient; a status that came before the record naming the
-- distribution is reported when it comes. `record` and `event` are JSON objects (record:
-- status error_code at; event: channel phone state sid error_code at; or a function that makes
-- it, when it is told only to the stream). With `once` (a status:
-- the sender's own note, whose repeat after a lost answer must change nothing), a record that
-- already has that status (and distribution) is left alone too.
-- Returns 1 when written, 0 when left alone.
local function note_delivery(deliveries, stream, sid, record, ttl, distribution, event, outranking, once)
  local old = redis.call('HGET', deliveries, sid)
  if old then
    local found = cjson.decode(old)
    if once and found['status'] == once and (distribution == '' or found['d'] == distribution) then
      return 0
    end
    if outranking[found['status']] then
      if distribution ~= '' and type(found['d']) ~= 'string' then
        -- Twilio's callback came before the sender noted the message's distribution: note
        -- it now, and report the status the callback gave for the recipient
        redis.call('HSET', deliveries, sid, string.sub(old, 1, -2) .. ',"d":' .. cjson.encode(distribution) .. '}')
        local reported = cjson.decode(type(event) == 'function' and event() or event)
        reported['state'], reported['error_code'], reported['at'] = found['status'], found['error_code'], found['at']
        redis.call('XADD', stream, '*', 'r', '{"distribution":' .. cjson.encode(distribution) .. ','
          .. string.sub(cjson.encode(reported), 2))
      end
      return 0
    end
    if distribution == '' and type(found['d']) == 'string' then
      distribution = found['d']
      record = string.sub(record, 1, -2) .. ',"d":' .. cjson.encode(distribution) .. '}'
    end
  end
  redis.call('HSET', deliveries, sid, record)
  redis.call('EXPIRE', deliveries, ttl)
  if distribution ~= '' then
    if type(event) == 'function' then event = event() end
    redis.call('XADD', stream, '*', 'r', '{"distribution":' .. cjson.encode(distribution) .. ',' .. string.sub(event, 2))
  end
  return 1
end

