-- asyncio.http's http.url (a part of http.lua, compiled in): parsing,
-- joining and building URLs, quoting, query strings and form bodies.
local I = ...
local core, http = I.core, I.http
local argerror, checktype = I.argerror, I.checktype
local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local concat, sort = table.concat, table.sort

-- parse, build and join are libcurl's URL API (bindings/http_url.c), the
-- parser that also reads the URLs fetch sends; quoting is byte work.
local url = {}
http.url = url

-- A string argument for curl: a NUL would cut it where C reads it.
local function checkcstring(s, n, fname)
  checktype(s, n, fname, "string")
  if s:find("%z") then argerror(n, fname, "string contains a NUL byte") end
  return s
end

-- http.url.parse(s) -> {scheme=, user=, password=, host=, port=, path=,
-- query=, fragment=}; absent parts are nil (bindings/http_url.c).
function url.parse(s)
  return core.url_parse(checkcstring(s, 1, "parse"))
end

-- http.url.join(base, ref) -> the absolute URL (RFC 3986 5.2).
function url.join(base, ref)
  return core.url_join(checkcstring(base, 1, "join"), checkcstring(ref, 2, "join"))
end

-- http.url.build(t) -> string, t as parse gives it.  Field errors from
-- the C half are reworded with this function's name.
function url.build(t)
  checktype(t, 1, "build", "table")
  local ok, res = pcall(core.url_build, t)
  if ok then return res end
  if type(res) == "string" then
    argerror(1, "build", (res:match("^bad argument #1 to '[^']*' %((.*)%)$") or res))
  end
  error(res, 2)
end

local find, byte, sub, char = string.find, string.byte, string.sub, string.char

local function hex(c) return ("%%%02X"):format(byte(c)) end
local function unhex(h) return char(tonumber(h, 16)) end

-- Python's quote(s, safe="/"): ASCII letters, digits and "_.-~" are never
-- quoted, the bytes of `safe` are kept too, every other byte becomes %XX.
function url.quote(s, safe)
  checktype(s, 1, "quote", "string")
  checktype(safe, 2, "quote", "string", true)
  safe = safe or "/"
  if safe == "" then return (s:gsub("[^%w_.~-]", hex)) end
  return (s:gsub("[^%w_.~-]", function(c)
    if not find(safe, c, 1, true) then return hex(c) end
  end))
end

-- Python's unquote, on bytes: each %XX becomes its byte; a "%" not
-- followed by two hex digits stays as it is.
function url.unquote(s)
  checktype(s, 1, "unquote", "string")
  return (s:gsub("%%(%x%x)", unhex))
end

-- application/x-www-form-urlencoded pieces (Python's quote_plus with
-- safe="" and unquote_plus).
local function quote_plus(s) return (s:gsub("[^%w_.~ -]", hex):gsub(" ", "+")) end
local function unquote_plus(s) return (s:gsub("%+", " "):gsub("%%(%x%x)", unhex)) end

local function scalar(v, argn, fname, what)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  argerror(argn, fname, ("%s must be a string, number or boolean, got %s"):format(
    what, v == nil and "nil" or t))
end

-- A table as a query string / form body.  A map goes in sorted key order
-- (a stable result), a list value repeating its key; a list of {key,
-- value} pairs goes in its own order.
local function encode_query(t, argn, fname)
  local out = {}
  local function add(k, v)
    local key = quote_plus(scalar(k, argn, fname, "a query key"))
    if type(v) == "table" then
      for i = 1, #v do
        out[#out + 1] = key .. "=" .. quote_plus(scalar(v[i], argn, fname,
          ("a value of key '%s'"):format(k)))
      end
    else
      out[#out + 1] = key .. "=" .. quote_plus(scalar(v, argn, fname,
        ("the value of key '%s'"):format(k)))
    end
  end
  if t[1] ~= nil then
    for i = 1, #t do
      local p = t[i]
      if type(p) ~= "table" then
        argerror(argn, fname, ("pair #%d must be a table {key, value}"):format(i))
      end
      add(p[1], p[2])
    end
  else
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do add(k, t[k]) end
  end
  return concat(out, "&")
end

function url.encode_query(t)
  checktype(t, 1, "encode_query", "table")
  return encode_query(t, 1, "encode_query")
end
-- kept under its first name (body = {...} uses the same encoding)
function http.encode_form(t) return url.encode_query(t) end

-- Python's parse_qsl(s, keep_blank_values=True) as a map: key -> value,
-- or a list of values (in order) for a key that came more than once; the
-- second result is the list of {key, value} pairs in their order.
function url.decode_query(s)
  checktype(s, 1, "decode_query", "string")
  local map, list = {}, {}
  for piece in s:gmatch("[^&]+") do
    local eq = find(piece, "=", 1, true)
    local k, v = piece, ""
    if eq then k, v = sub(piece, 1, eq - 1), sub(piece, eq + 1) end
    k, v = unquote_plus(k), unquote_plus(v)
    list[#list + 1] = {k, v}
    local old = map[k]
    if old == nil then
      map[k] = v
    elseif type(old) == "table" then
      old[#old + 1] = v
    else
      map[k] = {old, v}
    end
  end
  return map, list
end

I.encode_query = encode_query
