-- The marks of a stored conversation (engine/redis/store.py, cv:{T}:r): "<revision>|<record>",
-- then, after RS (\30), one mark per commit, MARK characters each, newest first. Included by
-- the scripts that read them.
local MARK = 11  -- store.MARK_LENGTH
local SID_MARK = 8  -- store.SID_MARK_LENGTH: the part of a mark that names its MessageSid

-- (record with its revision, or false; marks) of a stored value, or of false
local function parts_of(stored)
  if not stored then return false, '' end
  local cut = string.find(stored, '\30', 1, true)
  if not cut then return stored, '' end
  return string.sub(stored, 1, cut - 1), string.sub(stored, cut + 1)
end

-- the mark among `marks` that starts with `prefix` (its MessageSid's part), or false
local function mark_of(marks, prefix)
  local last = #prefix - 1
  for at = 1, #marks, MARK do
    if string.sub(marks, at, at + last) == prefix then return string.sub(marks, at, at + MARK - 1) end
  end
  return false
end

-- the replies of a dedupe record of the layout before (cv:{T}:in), without its tag
local function legacy_replies(stored)
  if stored and string.sub(stored, -5, -5) == '\31' then return string.sub(stored, 1, -6) end
  return stored
end
