-- READ: a respondent record (with its revision) and the dedupe record of the inbound
-- MessageSid, in one round trip. Returns {stored record or false, replies or false}.
-- KEYS: respondent dedupe dedupe_before
-- ARGV: sid
local respondent = KEYS[1]
local dedupe = KEYS[2]
local dedupe_before = KEYS[3]
local sid = ARGV[1]

local seen = false
if sid ~= '' then
  seen = redis.call('HGET', dedupe, sid) or redis.call('HGET', dedupe_before, sid)
end
return {redis.call('GET', respondent), seen}
