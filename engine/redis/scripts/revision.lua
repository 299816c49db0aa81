-- revision_of(key): the revision of a stored respondent record, the number before its '|'
-- ('0' when there is none). Included by the scripts that compare revisions.
local function revision_of(key)
  return string.match(redis.call('GETRANGE', key, 0, 20), '^(%d+)|') or '0'
end
