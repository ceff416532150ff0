-- asyncio.http, the Lua half (compiled into the binary by CMake): options,
-- responses, headers and sessions.  The C half (`core`, bindings/http.c)
-- drives libcurl's multi-socket API on the host's loop.
local core, Response = ...

local http = {
  Error = core.Error,              -- class "HTTPError": kind, url, code, message
  StatusError = core.StatusError,  -- class "HTTPStatusError" (an http.Error): status, url
  curl_version = core.curl_version,
}

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local concat, sort = table.concat, table.sort
local perform = core.perform

-- The error points at the caller's line: the first level outside this file.
local getinfo = debug and debug.getinfo
local function argerror(n, fname, msg)
  local level = 3
  if getinfo then
    level = 2
    while true do
      local info = getinfo(level, "S")
      if not info or info.source ~= "=asyncio/http.lua" then break end
      level = level + 1
    end
  end
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level)
end

local function checktype(v, n, fname, want, optional)
  if (v == nil and optional) or type(v) == want then return end
  argerror(n, fname, ("%s expected, got %s"):format(want, v == nil and "no value" or type(v)))
end

-- A CR or LF in a header, the method or the URL would let the caller's
-- data end the line and start another header or a second request
-- (request smuggling); a NUL would cut the string where C reads it.
local function checkline(s, n, fname, what)
  if s:find("[%z\r\n]") then
    argerror(n, fname, what .. " contains a CR, LF or NUL byte")
  end
  return s
end

-- RFC 9110's token: what a method or a header name may be made of.
local function checktoken(s, n, fname, what)
  if not s:find("^[%w!#$%%&'*+%-.^_`|~]+$") then
    checkline(s, n, fname, what)
    argerror(n, fname, ("%s %q is not an HTTP token"):format(what, s))
  end
  return s
end

local function checkmethod(m, n, fname)
  checktype(m, n, fname, "string")
  return checktoken(m, n, fname, "method"):upper()
end

local function checkurl(url, n, fname)
  checktype(url, n, fname, "string")
  return checkline(url, n, fname, "url")
end

-- Unknown keys, and the values that are checked before a request exists.
local function checkoptions(opts, n, fname, which)
  local bad = core.unknown_option(opts, which)
  if bad then argerror(n, fname, ("unknown option '%s'"):format(bad)) end
  for _, k in ipairs{"proxy", "cafile"} do
    if opts[k] ~= nil then
      checktype(opts[k], n, fname, "string")
      checkline(opts[k], n, fname, ("option '%s'"):format(k))
    end
  end
  local mb = opts.max_body
  if mb ~= nil and mb ~= false and not (math.type(mb) == "integer" and mb >= 0) then
    argerror(n, fname, "option 'max_body' must be an integer >= 0 or false")
  end
end

-- ---- URLs (http.url) ----------------------------------------------------------

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

-- ---- JSON ---------------------------------------------------------------------------

-- JSON null, both ways (dkjson writes a table whose __tojson says "null").
http.null = setmetatable({}, {
  __name = "asyncio.http.null",
  __tostring = function() return "null" end,
  __tojson = function() return "null" end,
})

-- The default codec: lua-dkjson (with LPeg when it is there), because it
-- reads "9007199254740993" as that integer and "1.0" as a float, and
-- writes integers whole.  lua-cjson turns every number into a float and
-- writes 14 significant digits; it is faster, and a program can choose it
-- with http.set_json{encode = cjson.encode, decode = cjson.decode}.
local builtin_json
local function builtin()
  if builtin_json then return builtin_json end
  local ok, dk = pcall(require, "dkjson")
  if not ok then
    error("asyncio.http: JSON needs lua-dkjson, which is not installed "
          .. "(apt-get install lua-dkjson)", 0)
  end
  if pcall(require, "lpeg") then dk = dk.use_lpeg() end
  local null = http.null
  builtin_json = {
    encode = function(v) return dk.encode(v) end,
    decode = function(text)
      local v, pos, err = dk.decode(text, 1, null)
      if err then error(err, 0) end
      if pos and find(text, "%S", pos) then
        error(("trailing data at byte %d"):format(pos), 0)
      end
      return v
    end,
  }
  return builtin_json
end

local global_json -- http.set_json's codec, or nil

-- A codec table checked: {encode = f, decode = f}, either may be left out
-- (the next codec down gives it).  false/nil: none.
local function checkcodec(c, n, fname, what)
  if c == nil or c == false then return nil end
  if type(c) ~= "table" then
    argerror(n, fname, what .. " must be a table {encode =, decode =}")
  end
  local bad = core.unknown_option(c, "json")
  if bad then argerror(n, fname, ("unknown option '%s' in %s"):format(bad, what)) end
  for _, k in ipairs{"encode", "decode"} do
    if c[k] ~= nil and type(c[k]) ~= "function" then
      argerror(n, fname, ("%s: '%s' must be a function"):format(what, k))
    end
  end
  return {encode = c.encode, decode = c.decode}
end

-- The function for side "encode"/"decode": the request's codec, then the
-- session's, then http.set_json's, then the default.
local function codec_fn(side, c1, c2)
  return (c1 and c1[side]) or (c2 and c2[side])
    or (global_json and global_json[side]) or builtin()[side]
end

-- http.set_json{encode =, decode =}: the codec of every request and
-- response without one of its own; set_json(nil) goes back to the default.
function http.set_json(c)
  global_json = checkcodec(c, 1, "set_json", "the codec")
end

-- ---- headers -----------------------------------------------------------------

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

-- ---- responses ----------------------------------------------------------------

-- A response is a table: status, reason, url (final), method, headers
-- (parsed when first read), body (nil for a stream until it is read).
local rmethods = {}

function Response.__index(resp, k)
  if k == "headers" then
    local h = parse_headers(rawget(resp, "_head") or "")
    rawset(resp, "headers", h)
    return h
  end
  return rmethods[k]
end

function Response.__close(resp) rmethods.close(resp) end

function Response.__tostring(resp)
  return ("<http.Response %d %s %s>"):format(resp.status, resp.reason, resp.url)
end

local read, read_body = core.read, core.read_body

-- for chunk in resp:iter_chunks() do ... end: body pieces as they arrive.
-- curl is paused while the consumer lags (at most ~256 KiB are buffered).
function rmethods:iter_chunks()
  local x = rawget(self, "_xfer")
  if not x then
    local body, done = rawget(self, "body"), false
    return function()
      if done or body == nil or body == "" then return nil end
      done = true
      return body
    end
  end
  return read, x
end

local function too_large(self, cap)
  rmethods.close(self)
  return http.Error(("response body larger than max_body (%d bytes) (%s)")
    :format(cap, self.url), {kind = "body_too_large", url = self.url})
end

-- The whole body (for a stream: reads what is left, then keeps it, under
-- the request's max_body like any buffered body).
function rmethods:read()
  local body = rawget(self, "body")
  if body then return body end
  local x = rawget(self, "_xfer")
  local cap = rawget(self, "_max_body") or -1
  local parts, n, size = {}, 0, 0
  local chunk = read_body(x)
  while chunk do
    size = size + #chunk
    if cap >= 0 and size > cap then error(too_large(self, cap), 2) end
    n = n + 1
    parts[n] = chunk
    chunk = read_body(x)
  end
  body = concat(parts)
  rawset(self, "body", body)
  rawset(self, "_xfer", nil)
  return body
end
rmethods.text = rmethods.read

-- A body that is not JSON raises an http.Error naming the URL and the
-- content type (the usual cause: an HTML error page), at the caller's line.
function rmethods:json()
  local decode = codec_fn("decode", rawget(self, "_codec"))
  local ok, v = pcall(decode, self:read())
  if ok then return v end
  local ctype = self.headers["content-type"] or "none"
  error(http.Error(("%s: the body is not JSON (content type: %s): %s"):format(
    self.url, ctype, tostring(v)), {kind = "json", url = self.url}), 2)
end

-- Streams the body into a file through asyncio.fs (created or truncated;
-- its failures are asyncio.fs's: FileNotFoundError, PermissionError...).
-- Returns the number of bytes written.
function rmethods:save(path)
  checktype(path, 1, "save", "string")
  local fs = core.fs()
  if not fs then error("asyncio.http: save() needs asyncio.fs, which this state does not open", 2) end
  local f <close> = fs.open(path, "w")
  local n = 0
  for chunk in self:iter_chunks() do
    f:write(chunk)
    n = n + #chunk
  end
  f:close()
  return n
end

-- Stops a stream and frees its buffers (also on <close> and GC).
function rmethods:close()
  local x = rawget(self, "_xfer")
  if x then core.close_xfer(x) end
end

function rmethods:raise_for_status()
  local status = self.status
  if status >= 400 then
    error(http.StatusError(("%d %s for %s"):format(status, self.reason, self.url),
      {kind = "status", status = status, reason = self.reason, url = self.url}), 2)
  end
  return self
end

function rmethods:ok() return self.status < 400 end

-- ---- retries -------------------------------------------------------------------

-- RFC 9110 9.2.2: the methods a retry may send again by default.
local IDEMPOTENT = {GET = true, HEAD = true, PUT = true, DELETE = true,
                    OPTIONS = true, TRACE = true}
local RETRY_ON = {connect = true, dns = true, timeout = true, reset = true,
                  protocol = true, tls = true}
local RETRY_STATUSES = {429, 502, 503, 504}
local RETRY_ERRORS = {"connect", "timeout", "reset"}

local function set_of(list, n, fname, what, check)
  if type(list) ~= "table" then argerror(n, fname, what .. " must be a list") end
  local set = {}
  for i = 1, #list do set[check(list[i], i)] = true end
  return set
end

-- The option retry = {count =, backoff =, max_backoff =, max_retry_after =,
-- statuses =, on =, methods =} (or a count, or false) checked and filled
-- with the defaults; false for none.
local function checkretry(r, n, fname)
  if r == false then return false end
  if math.type(r) == "integer" then r = {count = r} end
  if type(r) ~= "table" then
    argerror(n, fname, "option 'retry' must be a table, an integer or false")
  end
  local bad = core.unknown_option(r, "retry")
  if bad then argerror(n, fname, ("unknown option 'retry.%s'"):format(bad)) end
  local count = r.count == nil and 3 or r.count
  if math.type(count) ~= "integer" or count < 0 or count > 1000 then
    argerror(n, fname, "option 'retry.count' must be an integer in 0..1000")
  end
  local function seconds(k, default)
    local v = r[k]
    if v == nil then return default end
    if type(v) ~= "number" or not (v >= 0 and v < math.huge) then
      argerror(n, fname, ("option 'retry.%s' must be a number of seconds >= 0"):format(k))
    end
    return v
  end
  local p = {count = count, backoff = seconds("backoff", 0.2),
             max_backoff = seconds("max_backoff", 10),
             max_retry_after = seconds("max_retry_after", 30)}
  p.statuses = set_of(r.statuses or RETRY_STATUSES, n, fname, "option 'retry.statuses'",
    function(v)
      if math.type(v) ~= "integer" or v < 100 or v > 599 then
        argerror(n, fname, "option 'retry.statuses' must list integers in 100..599")
      end
      return v
    end)
  p.on = set_of(r.on or RETRY_ERRORS, n, fname, "option 'retry.on'", function(v)
    if not RETRY_ON[v] then
      argerror(n, fname, ("option 'retry.on': %q is not one of connect, dns, "
        .. "timeout, reset, protocol, tls"):format(tostring(v)))
    end
    return v
  end)
  p.methods = r.methods == nil and IDEMPOTENT or set_of(r.methods, n, fname,
    "option 'retry.methods'", function(v) return checkmethod(v, n, fname) end)
  return p
end

-- Exponential backoff with jitter: the n-th wait is drawn from
-- [d/2, d], d = backoff * 2^(n-1) capped at max_backoff, so that clients
-- that failed together do not come back together.
local random = math.random
local function backoff(p, n)
  local d = p.backoff * 2 ^ (n - 1)
  if d > p.max_backoff then d = p.max_backoff end
  return d * (0.5 + 0.5 * random())
end

-- The wait a 429 or 503 asks for (Retry-After: seconds or an HTTP date),
-- nil when there is none to read, false when it is over the cap (then the
-- response is the answer: waiting that long was not asked for).
local function retry_after(resp, p)
  local v = resp.headers["retry-after"]
  if not v then return nil end
  local secs = tonumber(v:match("^%s*(%d+)%s*$"))
  if not secs then
    local t = core.getdate(v)
    if not t then return nil end
    secs = t - os.time()
  end
  if secs < 0 then secs = 0 end
  if secs > p.max_retry_after then return false end
  return secs
end

local aio -- asyncio, for sleep() and is() (loaded on the first retry)

-- perform, sent again as the policy says.  The last error says how many
-- attempts were made; a response carries resp.attempts.
local function retrying(p, cs, method, u, o)
  aio = aio or require "asyncio"
  local attempt = 1
  while true do
    local ok, r = pcall(perform, cs, method, u, o)
    local wait
    if ok then
      local status = r.status
      if attempt > p.count or not p.statuses[status] then
        rawset(r, "attempts", attempt)
        return r
      end
      if status == 429 or status == 503 then wait = retry_after(r, p) end
      if wait == false then
        rawset(r, "attempts", attempt)
        return r
      end
      rmethods.close(r)
    elseif attempt > p.count or not aio.is(r, http.Error) or not p.on[r.kind] then
      if attempt > 1 and aio.is(r, http.Error) then
        r.attempts = attempt
        r.message = ("%s after %d attempts"):format(r.message, attempt)
      end
      error(r, 0)
    end
    aio.sleep(wait or backoff(p, attempt))
    attempt = attempt + 1
  end
end

-- ---- options --------------------------------------------------------------------

-- Merges session defaults and request options into the table core.perform
-- reads: headers as "Name: value" lines, body as a string, the rest as is.
-- Also returns the retry policy and the JSON codec that apply.
local NOT_FOR_CORE = {headers = true, json = true, query = true, method = true,
                      retry = true, json_codec = true}

local function prepare(sess, url, opts, fname, argn)
  argn = argn or 2
  local o = {}
  local d = sess._defaults
  if d then for k, v in pairs(d) do o[k] = v end end
  local policy, codec = sess._retry, sess._json
  local hdr_set = {} -- lower name -> {name, value}
  local order = {}
  local function add_headers(t, argn)
    for name, value in pairs(t) do
      if type(name) ~= "string" then
        argerror(argn, fname, "header names must be strings")
      end
      checktoken(name, argn, fname, "header name")
      local what = ("header '%s'"):format(name)
      if type(value) == "table" then
        for _, v in ipairs(value) do checkline(tostring(v), argn, fname, what) end
      elseif value ~= false then
        checkline(tostring(value), argn, fname, what)
      end
      local key = name:lower()
      if not hdr_set[key] then order[#order + 1] = key end
      hdr_set[key] = {name, value}
    end
  end
  if sess.headers then add_headers(sess.headers, 1) end
  if opts then
    checkoptions(opts, argn, fname, "request")
    for k, v in pairs(opts) do
      if not NOT_FOR_CORE[k] then o[k] = v end
    end
    if opts.retry ~= nil then policy = checkretry(opts.retry, argn, fname) end
    if opts.json_codec ~= nil then
      codec = checkcodec(opts.json_codec, argn, fname, "option 'json_codec'") or codec
    end
    if opts.headers ~= nil then
      checktype(opts.headers, argn, fname, "table")
      add_headers(opts.headers, argn)
    end
    if opts.query ~= nil then
      local q = opts.query
      if type(q) == "table" then q = encode_query(q, argn, fname) end
      checktype(q, argn, fname, "string")
      checkline(q, argn, fname, "query")
      if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
    end
    local body = opts.body
    if opts.json ~= nil then
      local ok, text = pcall(codec_fn("encode", codec), opts.json)
      if not ok or type(text) ~= "string" then
        argerror(argn, fname, ("option 'json' cannot be encoded: %s"):format(
          ok and ("the codec gave a " .. type(text)) or tostring(text)))
      end
      body = text
      if not hdr_set["content-type"] then
        add_headers({["Content-Type"] = "application/json"}, argn)
      end
    elseif type(body) == "table" then
      body = encode_query(body, argn, fname)
      if not hdr_set["content-type"] then
        add_headers({["Content-Type"] = "application/x-www-form-urlencoded"}, argn)
      end
    elseif body ~= nil and type(body) ~= "string" then
      argerror(argn, fname, "body must be a string or a table")
    end
    o.body = body
  end
  if #order > 0 then
    local lines = {}
    for _, key in ipairs(order) do
      local name, value = hdr_set[key][1], hdr_set[key][2]
      if type(value) == "table" then
        for _, v in ipairs(value) do lines[#lines + 1] = name .. ": " .. tostring(v) end
      elseif value == false then
        lines[#lines + 1] = name .. ":" -- removes a header curl would send
      else
        lines[#lines + 1] = name .. ": " .. tostring(value)
      end
    end
    if o.body then lines[#lines + 1] = "Expect:" end
    o.headers = lines
  elseif o.body then
    o.headers = {"Expect:"}
  end
  return url, o, policy, codec
end

-- Sends a prepared request (under its retry policy, if its method is one
-- the policy sends again); the response remembers its JSON codec.
local function send(cs, method, u, o, policy, codec)
  local resp
  if policy and policy.methods[method] then
    resp = retrying(policy, cs, method, u, o)
  else
    resp = perform(cs, method, u, o)
  end
  if codec then rawset(resp, "_codec", codec) end
  return resp
end

-- ---- sessions ---------------------------------------------------------------------

local Session = {}
Session.__index = Session
Session.__name = "asyncio.http.Session"

local DEFAULT_KEYS = {"timeout", "connect_timeout", "follow_redirects",
  "max_redirects", "verify", "cafile", "max_body", "proxy"}

-- http.Session{limit=100, limit_per_host=0, timeout=, connect_timeout=,
--   headers=, base_url=, verify=, cafile=, proxy=, follow_redirects=,
--   max_redirects=, max_body=, retry=, json_codec=}
function http.Session(opts)
  checktype(opts, 1, "Session", "table", true)
  opts = opts or {}
  checkoptions(opts, 1, "Session", "session")
  local limit = opts.limit or 100
  local per_host = opts.limit_per_host or 0
  if math.type(limit) ~= "integer" or limit < 0 then
    argerror(1, "Session", "limit must be an integer >= 0 (0: no limit)")
  end
  if math.type(per_host) ~= "integer" or per_host < 0 then
    argerror(1, "Session", "limit_per_host must be an integer >= 0")
  end
  checktype(opts.headers, 1, "Session", "table", true)
  checktype(opts.base_url, 1, "Session", "string", true)
  if opts.base_url then checkline(opts.base_url, 1, "Session", "base_url") end
  if opts.headers then prepare({}, "", {headers = opts.headers}, "Session", 1) end
  local retry = opts.retry ~= nil and checkretry(opts.retry, 1, "Session") or nil
  local codec = checkcodec(opts.json_codec, 1, "Session", "option 'json_codec'")
  local defaults
  for _, k in ipairs(DEFAULT_KEYS) do
    if opts[k] ~= nil then
      defaults = defaults or {}
      defaults[k] = opts[k]
    end
  end
  local self = setmetatable({
    _core = core.session(limit, per_host),
    _defaults = defaults,
    _retry = retry or nil,
    _json = codec,
    limit = limit,
    limit_per_host = per_host,
    headers = opts.headers,
    base_url = opts.base_url,
    timeout = opts.timeout,
  }, Session)
  self._plain = not defaults and not opts.headers and not retry and not codec
  return self
end

-- session:set_json{encode =, decode =}: the session's JSON codec (nil:
-- http.set_json's or the default).
function Session:set_json(c)
  self._json = checkcodec(c, 1, "set_json", "the codec")
  self._plain = self._plain and not self._json
end

local function absolute(sess, url)
  local base = sess.base_url
  if base and not url:find("^%a[%w+.-]*://") then return core.url_join(base, url) end
  return url
end

-- session:request(method, url [, opts]) -> response
function Session:request(method, url, opts)
  method = checkmethod(method, 1, "request")
  checkurl(url, 2, "request")
  checktype(opts, 3, "request", "table", true)
  url = absolute(self, url)
  if not opts and self._plain then return perform(self._core, method, url) end
  if opts and opts.method ~= nil then
    argerror(3, "request", "option 'method': the method is argument #1")
  end
  local u, o, policy, codec = prepare(self, url, opts, "request", 3)
  return send(self._core, method, u, o, policy, codec)
end

local function verb(method, fname)
  return function(self, url, opts)
    checkurl(url, 1, fname)
    if opts == nil and self._plain and not self.base_url then
      return perform(self._core, method, url)
    end
    checktype(opts, 2, fname, "table", true)
    url = absolute(self, url)
    local m = opts and opts.method
    if m ~= nil then m = checkmethod(m, 2, fname) end
    local u, o, policy, codec = prepare(self, url, opts, fname)
    return send(self._core, m or method, u, o, policy, codec)
  end
end

Session.get = verb("GET", "get")
Session.post = verb("POST", "post")
Session.put = verb("PUT", "put")
Session.patch = verb("PATCH", "patch")
Session.delete = verb("DELETE", "delete")
Session.head = verb("HEAD", "head")

-- How many requests are in flight, running in curl, waiting for a slot.
function Session:stats()
  local inflight, running, waiting, idle = core.stats(self._core)
  return {inflight = inflight, running = running, waiting = waiting, idle_handles = idle}
end

function Session:close()
  self.closed = true
  core.close(self._core)
end
Session.__close = Session.close

-- ---- fetch -----------------------------------------------------------------------

local default_session

-- The shared session behind http.fetch (keep-alive across calls).
function http.default_session()
  if not default_session or default_session.closed then
    default_session = http.Session()
  end
  return default_session
end

-- http.fetch(url [, opts]) -> response (opts.method defaults to "GET")
function http.fetch(url, opts)
  checkurl(url, 1, "fetch")
  checktype(opts, 2, "fetch", "table", true)
  local sess = default_session
  if not sess or sess.closed then sess = http.default_session() end
  if opts == nil then return perform(sess._core, "GET", url) end
  local m = opts.method
  if m ~= nil then m = checkmethod(m, 2, "fetch") end
  local u, o, policy, codec = prepare(sess, url, opts, "fetch")
  return send(sess._core, m or "GET", u, o, policy, codec)
end

return http
