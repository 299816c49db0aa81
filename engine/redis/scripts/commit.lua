-- COMMIT: the compare-and-set of one step. It checks the revision is unchanged and the
-- inbound MessageSid unseen, then writes the respondent record, the dedupe record, the
-- records for the archiver (closed responses, opt-out and opt-in events: one stream key
-- per record), the flow-version TTL, the timer entry and the messages the step sends on its
-- own initiative (a start's, a reminder's: into the outbox), all or nothing.
-- A commit repeated after its answer was lost knows whether it already landed: one without
-- a MessageSid (a start, a timer) by its nonce, one with a MessageSid by its dedupe record,
-- which carries the attempt's tag (another delivery of the same message has another).
-- Returns {the new revision, 1 when the pinned flow's source is missing}; {0, 0}: refused.
-- include: revision.lua
-- KEYS: respondent dedupe dedupe_before timers flow nonces outbox_due outbox_messages streams...
-- ARGV: revision record record_ttl sid replies member due flow_ttl nonce dedupe_ttl dedupe_keep nonce_ttl nonces_kept outbox responses...
local respondent = KEYS[1]
local dedupe = KEYS[2]
local dedupe_before = KEYS[3]
local timers = KEYS[4]
local flow = KEYS[5]
local nonces = KEYS[6]
local outbox_due = KEYS[7]
local outbox_messages = KEYS[8]
local revision = ARGV[1]
local record = ARGV[2]
local record_ttl = ARGV[3]
local sid = ARGV[4]
local replies = ARGV[5]
local member = ARGV[6]
local due = ARGV[7]
local flow_ttl = ARGV[8]
local nonce = ARGV[9]
local dedupe_ttl = ARGV[10]
local dedupe_keep = ARGV[11]
local nonce_ttl = ARGV[12]
local nonces_kept = ARGV[13]
-- outbox: JSON [[id, due, message JSON]...], or '' (the usual case)
local outbox = ARGV[14]
local streams = 9  -- KEYS[streams...]: the first stream's index (no table: this runs per message)
local responses = 15  -- ARGV[responses...]: the first response's index

local current = revision_of(respondent)
if current ~= revision then
  if (nonce ~= '' and redis.call('LPOS', nonces, nonce)) or (sid ~= '' and (redis.call('HGET', dedupe, sid) == replies
      or redis.call('HGET', dedupe_before, sid) == replies)) then
    -- it landed; its flow_missing answer was lost with the reply, so work it out again
    local gone = flow_ttl ~= '' and redis.call('EXISTS', flow) == 0
    return {tonumber(current), gone and 1 or 0}
  end
  return {0, 0}
end
if sid ~= '' and (redis.call('HEXISTS', dedupe, sid) == 1 or redis.call('HEXISTS', dedupe_before, sid) == 1) then
  return {0, 0}
end
local written = tonumber(current) + 1
if record_ttl == '0' then
  redis.call('SET', respondent, written .. '|' .. record)
else
  redis.call('SET', respondent, written .. '|' .. record, 'EX', record_ttl)
end
if sid ~= '' then
  redis.call('HSET', dedupe, sid, replies)
  redis.call('EXPIRE', dedupe, dedupe_ttl)
  if redis.call('HLEN', dedupe) >= tonumber(dedupe_keep) then redis.call('RENAME', dedupe, dedupe_before) end
end
if due == '' then redis.call('ZREM', timers, member) else redis.call('ZADD', timers, due, member) end
local flow_missing = 0
if flow_ttl ~= '' and redis.call('EXPIRE', flow, flow_ttl, 'GT') == 0 and redis.call('EXISTS', flow) == 0 then
  flow_missing = 1
end
if nonce ~= '' then
  redis.call('LPUSH', nonces, nonce)
  redis.call('LTRIM', nonces, 0, tonumber(nonces_kept) - 1)
  redis.call('EXPIRE', nonces, nonce_ttl)
end
if outbox ~= '' then
  for _, message in ipairs(cjson.decode(outbox)) do
    redis.call('HSET', outbox_messages, message[1], message[3])
    redis.call('ZADD', outbox_due, message[2], message[1])
  end
end
for i = 0, #KEYS - streams do
  -- never trimmed here: the archiver trims a stream below what it has archived
  redis.call('XADD', KEYS[streams + i], '*', 'r', ARGV[responses + i])
end
return {written, flow_missing}
