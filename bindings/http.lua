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

-- ---- encoding ---------------------------------------------------------------

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~ ]", function(c)
    return ("%%%02X"):format(c:byte())
  end):gsub(" ", "+"))
end

-- A table as application/x-www-form-urlencoded (also used for query=):
-- keys in sorted order, a list value repeats its key.
local function encode_form(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do out[#out + 1] = escape(k) .. "=" .. escape(x) end
    else
      out[#out + 1] = escape(k) .. "=" .. escape(v)
    end
  end
  return concat(out, "&")
end
http.encode_form = encode_form

local cjson_mod
local function cjson()
  if cjson_mod == nil then
    local ok, m = pcall(require, "cjson")
    cjson_mod = ok and m or false
  end
  if not cjson_mod then
    error("asyncio.http: JSON needs lua-cjson, which is not installed "
          .. "(apt-get install lua-cjson)", 3)
  end
  return cjson_mod
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
local find, byte, sub = string.find, string.byte, string.sub

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
  local decode = cjson().decode
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

-- ---- options --------------------------------------------------------------------

-- Merges session defaults and request options into the table core.perform
-- reads: headers as "Name: value" lines, body as a string, the rest as is.
local function prepare(sess, url, opts, fname, argn)
  argn = argn or 2
  local o = {}
  local d = sess._defaults
  if d then for k, v in pairs(d) do o[k] = v end end
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
      if k ~= "headers" and k ~= "json" and k ~= "query" and k ~= "method" then o[k] = v end
    end
    if opts.headers ~= nil then
      checktype(opts.headers, argn, fname, "table")
      add_headers(opts.headers, argn)
    end
    if opts.query ~= nil then
      local q = opts.query
      if type(q) == "table" then q = encode_form(q) end
      checktype(q, argn, fname, "string")
      checkline(q, argn, fname, "query")
      if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
    end
    local body = opts.body
    if opts.json ~= nil then
      body = cjson().encode(opts.json)
      if not hdr_set["content-type"] then
        add_headers({["Content-Type"] = "application/json"}, argn)
      end
    elseif type(body) == "table" then
      body = encode_form(body)
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
  return url, o
end

-- ---- sessions ---------------------------------------------------------------------

local Session = {}
Session.__index = Session
Session.__name = "asyncio.http.Session"

local DEFAULT_KEYS = {"timeout", "connect_timeout", "follow_redirects",
  "max_redirects", "verify", "cafile", "max_body", "proxy"}

-- http.Session{limit=100, limit_per_host=0, timeout=, connect_timeout=,
--   headers=, base_url=, verify=, cafile=, proxy=, follow_redirects=,
--   max_redirects=, max_body=}
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
    limit = limit,
    limit_per_host = per_host,
    headers = opts.headers,
    base_url = opts.base_url,
    timeout = opts.timeout,
  }, Session)
  self._plain = not defaults and not opts.headers
  return self
end

local function absolute(sess, url)
  local base = sess.base_url
  if base and not url:find("^%a[%w+.-]*://") then return core.join(base, url) end
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
  local u, o = prepare(self, url, opts, "request", 3)
  return perform(self._core, method, u, o)
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
    local u, o = prepare(self, url, opts, fname)
    return perform(self._core, m or method, u, o)
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
  local u, o = prepare(sess, url, opts, "fetch")
  return perform(sess._core, m or "GET", u, o)
end

return http
