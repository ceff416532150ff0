-- asyncio.http's response headers (a part of http.lua, compiled in):
-- the case-insensitive table, get_all and items over the raw head.
local I = ...
local http = I.http
local type = type
local concat = table.concat
local find, byte, sub = string.find, string.byte, string.sub

-- resp.headers: lower-case name -> value; repeated headers are joined with
-- ", ".  Lookup is case-insensitive (headers["Content-Type"]).
-- headers:get_all(name) -> list of every value of that header, in order
-- (Set-Cookie); headers:items() iterates (name, value) as received.
local raw_of = setmetatable({}, {__mode = "k"})
local hmethods = {}
local Headers = {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    local v = rawget(t, k:lower())
    if v ~= nil then return v end
    return hmethods[k]
  end,
}

-- One header line at a time, split with plain finds and trimmed by byte
-- loops: a pattern such as "[ \t]*(.-)[ \t]*\r?\n" backtracks over every
-- run of blanks once per position, which made a header of 100 KB of blanks
-- take minutes.  Here each byte is looked at a bounded number of times.
-- Lines without a colon are skipped; an obsolete folded line (one that
-- starts with a blank) continues the value before it, joined by a space
-- (RFC 9112 5.2).

local function is_blank(b) return b == 32 or b == 9 end

-- raw[i..j] without blanks at either end.
local function trimmed(raw, i, j)
  while i <= j and is_blank(byte(raw, i)) do i = i + 1 end
  while j >= i and is_blank(byte(raw, j)) do j = j - 1 end
  return sub(raw, i, j)
end

function hmethods:items()
  local raw = raw_of[self] or ""
  local pos = (find(raw, "\n", 1, true) or #raw) + 1 -- after the status line
  local colon = 0 -- the next ":" at or after pos (found once per colon)
  return function()
    while pos <= #raw do
      local nl = find(raw, "\n", pos, true) or #raw + 1
      local s, e = pos, nl - 1
      pos = nl + 1
      if e >= s and byte(raw, e) == 13 then e = e - 1 end
      if colon and colon < s then colon = find(raw, ":", s, true) end
      if colon and colon <= e and colon > s and not is_blank(byte(raw, s)) then
        local value = trimmed(raw, colon + 1, e)
        local parts -- folded lines, joined once (a concatenation per line
                    -- would copy the value again for each)
        while pos <= #raw and is_blank(byte(raw, pos)) do
          nl = find(raw, "\n", pos, true) or #raw + 1
          local fe = nl - 1
          if fe >= pos and byte(raw, fe) == 13 then fe = fe - 1 end
          local more = trimmed(raw, pos, fe)
          if more ~= "" then
            parts = parts or {value ~= "" and value or nil}
            parts[#parts + 1] = more
          end
          pos = nl + 1
        end
        if parts then value = concat(parts, " ") end
        return sub(raw, s, colon - 1), value
      end
    end
    return nil
  end
end

function hmethods:get_all(name)
  name = name:lower()
  local out = {}
  for n, v in self:items() do
    if n:lower() == name then out[#out + 1] = v end
  end
  return out
end

local function parse_headers(raw)
  local h = setmetatable({}, Headers)
  raw_of[h] = raw
  for name, value in hmethods.items(h) do
    name = name:lower()
    local old = rawget(h, name)
    rawset(h, name, old and (old .. ", " .. value) or value)
  end
  return h
end
http.parse_headers = parse_headers

I.parse_headers = parse_headers
