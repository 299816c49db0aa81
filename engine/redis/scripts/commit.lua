-- COMMIT: the compare-and-set of one step. It checks the revision is unchanged and the
-- inbound MessageSid unseen, then writes the respondent record with the step's mark (and,
-- for an inbound message, its replies, kept for a redelivery), the records for the archiver (closed responses,
-- opt-out and opt-in events: one stream key per record), the flow-version TTL, the timer
-- entry and the messages the step sends on its own initiative (a start's, a reminder's: into
-- the outbox), all or nothing.
-- A commit repeated after its answer was lost knows whether it already landed by its mark:
-- the nonce of one without a MessageSid (a start, a timer); for one with a MessageSid, the
-- MessageSid's mark and the attempt's tag (another delivery of the same message has another).
-- Returns {the new revision, 1 when the pinned flow's source is missing}; {0, 0}: refused.
-- include: conversation.lua
-- KEYS: respondent replies timers flow outbox_due outbox_messages dedupe dedupe_before streams...
-- ARGV: revision record record_ttl sid mark sent member legacy_member due flow_ttl marks_kept replies_kept replies_ttl outbox pin responses...
local respondent = KEYS[1]
local replies = KEYS[2]
local timers = KEYS[3]
local flow = KEYS[4]
local outbox_due = KEYS[5]
local outbox_messages = KEYS[6]
local dedupe = KEYS[7]
local dedupe_before = KEYS[8]
local revision = ARGV[1]
local record = ARGV[2]
local record_ttl = ARGV[3]
local sid = ARGV[4]
local mark = ARGV[5]
local sent = ARGV[6]
local member = ARGV[7]
local legacy_member = ARGV[8]
local due = ARGV[9]
local flow_ttl = ARGV[10]
local marks_kept = ARGV[11]
local replies_kept = ARGV[12]
local replies_ttl = ARGV[13]
-- outbox: JSON [[id, due, message JSON]...], or '' (the usual case)
local outbox = ARGV[14]
-- pin: on a Redis Cluster, "<survey>\31<version>": `flow` is then the shard's pins, where the
-- version is noted until when its session may live (a worker extends the source key from there)
local pin = ARGV[15]
local streams = 9  -- KEYS[streams...]: the first stream's index (no table: this runs per message)
local responses = 16  -- ARGV[responses...]: the first response's index

local stored, marks = parts_of(redis.call('GET', respondent))
local current = stored and string.match(stored, '^(%d+)|') or '0'
if current ~= revision then
  if mark_of(marks, mark) then
    -- it landed; its flow_missing answer was lost with the reply, so work it out again
    local gone = flow_ttl ~= '' and pin == '' and redis.call('EXISTS', flow) == 0
    return {tonumber(current), gone and 1 or 0}
  end
  return {0, 0}
end
if sid ~= '' and (mark_of(marks, string.sub(mark, 1, SID_MARK))
    or redis.call('HEXISTS', dedupe, sid) == 1 or redis.call('HEXISTS', dedupe_before, sid) == 1) then
  return {0, 0}
end
local written = tonumber(current) + 1
marks = string.sub(mark .. marks, 1, MARK * tonumber(marks_kept))
if record_ttl == '0' then
  redis.call('SET', respondent, written .. '|' .. record .. '\30' .. marks)
else
  redis.call('SET', respondent, written .. '|' .. record .. '\30' .. marks, 'EX', record_ttl)
end
if sid ~= '' then
  redis.call('HSET', replies, mark, sent)
  redis.call('EXPIRE', replies, replies_ttl)
end
-- the replies of the newest replies_kept marks at most: drop those of the one that went past
local past = MARK * tonumber(replies_kept)
if #marks > past then redis.call('HDEL', replies, string.sub(marks, past + 1, past + MARK)) end
if due == '' then redis.call('ZREM', timers, member) else redis.call('ZADD', timers, due, member) end
if legacy_member ~= '' then redis.call('ZREM', timers, legacy_member) end
local flow_missing = 0
if flow_ttl ~= '' and pin ~= '' then
  redis.call('ZADD', flow, 'GT', tonumber(redis.call('TIME')[1]) + tonumber(flow_ttl), pin)
elseif flow_ttl ~= '' and redis.call('EXPIRE', flow, flow_ttl, 'GT') == 0 and redis.call('EXISTS', flow) == 0 then
  flow_missing = 1
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
