-- A small local HTTP/1.1 server for the course scripts, written with
-- asyncio.start_server: each connection is a task that reads requests
-- (keep-alive) and answers them after a configurable delay, so that
-- fetching concurrently visibly beats fetching one by one.  Loopback only;
-- it never needs the internet.
--
--   package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
--   local http_server = require "http_server"
--   local server <close> = http_server.start{delay = 0.2}
--   print(server.url)               --> http://127.0.0.1:PORT
--   ...
--   server:close()                  -- also closes the open connections
--
-- Options of start{}: delay (seconds before each answer, default 0),
-- host ("127.0.0.1"), port (0: a free one), image_size (bytes, 20000),
-- routes ({["/path"] = function(req) return status, body, headers end}),
-- and the limits below (start{max_body = 4096, ...}).
-- A request's own ?delay=SECONDS overrides the delay.
--
-- It must survive what the internet sends (the course has students point
-- tools at it), so everything a client controls is bounded, and a request
-- it cannot frame for certain is answered and the connection closed:
--   max_line (8 KiB)           request line, else 414 (one header line: 431)
--   max_headers (100)          header count, else 431
--   max_header_bytes (32 KiB)  header block, else 431
--   max_body (1 MiB)           Content-Length, else 413
--   max_connections (1000)     open connections, else 503
--   header_timeout (10 s)      to send a request's head, else 408
--   max_delay (30 s)           ?delay=, else 400
--   max_image_size (4 MiB)     ?size=, else 400
-- Content-Length must be plain digits (no sign, hex, exponent, blanks or
-- lists), and repeated only with the same value; Transfer-Encoding is not
-- implemented (501), and with a Content-Length it is refused (400): that
-- pair is how requests are smuggled past a proxy.  Malformed request
-- lines and header lines (no colon, blanks before it, folded lines,
-- control bytes) are 400; an HTTP version other than 1.0/1.1 is 505.
--
-- What it serves:
--   /  and  /page/NAME     a small HTML page whose <title> is NAME
--   /image/NAME            a deterministic fake PNG of image_size bytes
--   /W/H                   like loremflickr.com/320/240: a 302 to a fresh
--                          /cache/resources/N_WxH.jpg, which serves an image
--   /method/users.get      a stand-in for the VK API (JSON; needs access_token)
--   /status/NNN            that status
-- Fields: url, port, requests (answered), inflight, max_inflight.
local cjson = require "cjson"

local M = {}

local REASONS = {[200] = "OK", [302] = "Found", [400] = "Bad Request",
                 [401] = "Unauthorized", [404] = "Not Found",
                 [408] = "Request Timeout", [413] = "Content Too Large",
                 [414] = "URI Too Long", [431] = "Request Header Fields Too Large",
                 [500] = "Internal Server Error", [501] = "Not Implemented",
                 [503] = "Service Unavailable", [505] = "HTTP Version Not Supported"}

local LIMITS = {max_line = 8192, max_headers = 100, max_header_bytes = 32768,
                max_body = 1024 * 1024, max_connections = 1000,
                header_timeout = 10, max_delay = 30, max_image_size = 4 * 1024 * 1024}
M.LIMITS = LIMITS

local METHODS = {GET = true, HEAD = true, POST = true, PUT = true,
                 DELETE = true, OPTIONS = true, PATCH = true}

-- A request that cannot be served: the status and why (the body).
local Reject = {}
local function reject(status, why) error(setmetatable({status = status, why = why}, Reject), 0) end

local function url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local t = {}
  for k, v in (q or ""):gmatch("([^&=]+)=?([^&]*)") do
    t[url_decode(k)] = url_decode(v)
  end
  return t
end

-- The same bytes for the same name, so downloads can be checked.  The
-- cache holds a few recent images: names and sizes come from clients, so
-- it must not grow with them.
local CACHE_MAX = 32
local image_cache, cached = {}, 0
local function image_bytes(name, size)
  local key = name .. "\0" .. size
  local data = image_cache[key]
  if data then return data end
  local seed = 0
  for i = 1, #name do seed = seed + name:byte(i) end
  local head = "\137PNG\r\n\26\n"
  if size <= #head then return head:sub(1, size) end
  local row = {}
  for i = 0, 255 do row[i + 1] = string.char((seed + i) % 256) end
  row = table.concat(row)
  local n = size - #head
  data = head .. row:rep(n // 256 + 1):sub(1, n)
  if cached >= CACHE_MAX then image_cache, cached = {}, 0 end
  if size <= 256 * 1024 then
    image_cache[key] = data
    cached = cached + 1
  end
  return data
end

local FIRST = {"Pavel", "Anna", "Ivan", "Olga", "Sergey", "Maria"}
local LAST = {"Durov", "Ivanova", "Petrov", "Smirnova", "Volkov", "Popova"}

-- The VK API's shape: {"response": ...} or {"error": {error_code, error_msg}}.
local function vk_method(self, name, q)
  if not q.access_token or q.access_token == "" then
    return 200, cjson.encode{error = {error_code = 5,
      error_msg = "User authorization failed: no access_token passed."}}
  end
  if name ~= "users.get" then
    return 200, cjson.encode{error = {error_code = 3, error_msg = "Unknown method passed"}}
  end
  local users = {}
  for id in (q.user_ids or "1"):gmatch("[^,]+") do
    if #users >= 1000 then reject(400, "more than 1000 user_ids") end
    if not id:match("^%d%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$") then
      reject(400, "user_ids: positive integers of at most 12 digits")
    end
    local n = math.tointeger(tonumber(id))
    users[#users + 1] = {id = n, first_name = FIRST[n % #FIRST + 1],
                         last_name = LAST[n % #LAST + 1]}
  end
  self.api_calls = self.api_calls + 1
  return 200, cjson.encode{response = users}
end

local function html_escape(s)
  return (s:gsub("[&<>\"']", function(c) return ("&#%d;"):format(c:byte()) end))
end

-- A ?name= number: plain decimal digits (a fraction if allowed), at most max.
local function query_number(q, name, max, fraction)
  local v = q[name]
  if v == nil then return nil end
  local pat = fraction and "^%d+%.?%d*$" or "^%d+$"
  local n = #v <= 20 and v:match(pat) and tonumber(v)
  if not n or n > max then
    reject(400, ("%s must be a number from 0 to %s"):format(name, max))
  end
  return n
end

-- Answers one parsed request: status, body, extra headers.
local function route(self, req)
  local custom = self.routes[req.path]
  if custom then return custom(req) end
  local p, q = req.path, req.query
  if p == "/" or p:match("^/page/") then
    local name = html_escape(p:match("^/page/(.+)") or "index")
    return 200, ("<html><head><title>%s</title></head><body><h1>%s</h1>"
      .. "<p>served by lasync</p></body></html>\n"):format(name, name),
      {["Content-Type"] = "text/html; charset=utf-8"}
  end
  local img = p:match("^/image/(.+)") or p:match("^/cache/resources/(.+)")
  if img then
    local size = query_number(q, "size", self.max_image_size) or self.image_size
    return 200, image_bytes(img, size),
      {["Content-Type"] = img:match("%.jpe?g$") and "image/jpeg" or "image/png"}
  end
  local w, h = p:match("^/(%d%d?%d?%d?%d?)/(%d%d?%d?%d?%d?)$")
  if w then
    self.images = self.images + 1
    return 302, "", {Location = ("/cache/resources/%d_%sx%s.jpg"):format(self.images, w, h)}
  end
  local method = p:match("^/method/(.+)")
  if method then
    local status, body = vk_method(self, method, q)
    return status, body, {["Content-Type"] = "application/json"}
  end
  local code = p:match("^/status/(%d%d%d)$")
  if code then return tonumber(code), "status " .. code end
  return 404, "not found: " .. p
end

-- pcall that lets a cancellation through (a timeout is one, and
-- Server:close() cancels nothing but must not be misread either).
local function try(fn, ...)
  local ok, e = pcall(fn, ...)
  if not ok and asyncio.is(e, asyncio.CancelledError) then error(e, 0) end
  return ok, e
end

-- One line (CRLF or LF), at most limit bytes with its end: nil at the end
-- of the connection (or a line cut short by it).
local function read_line(reader, status, what)
  local ok, line = try(reader.readuntil, reader, "\n")
  if ok then return line end
  if asyncio.is(line, asyncio.LimitOverrunError) then
    reject(status, what .. " too long")
  end
  return nil -- end of stream, a reset: nothing to answer
end

-- Blanks off both ends, in linear time (the pattern "^%s*(.-)%s*$" is
-- quadratic in a run of blanks inside the value).
local function trim(v)
  local i = v:find("[^ \t]")
  if not i then return "" end
  local j = #v
  while v:byte(j) == 32 or v:byte(j) == 9 do j = j - 1 end
  return v:sub(i, j)
end

-- RFC 9110 token characters (a method, a header name).
local TOKEN = "^[%w!#$%%&'*+%-.^_`|~]+$"

-- Parses the header block into req.headers (lower-case names; a repeated
-- header's values joined with ", ") and req.lengths (each Content-Length).
local function read_headers(self, reader, req)
  local count, bytes = 0, 0
  while true do
    local h = read_line(reader, 431, "header line")
    if not h then return nil end
    if h == "\r\n" or h == "\n" then return true end
    count, bytes = count + 1, bytes + #h
    if count > self.max_headers then reject(431, "too many header lines") end
    if bytes > self.max_header_bytes then reject(431, "header block too large") end
    local line = h:gsub("\r?\n$", "")
    -- a name, a colon right after it (RFC 9112 5.1), no control bytes
    local k, v = line:match("^([^:]*):(.*)$")
    if not k or not k:match(TOKEN) then reject(400, "malformed header line") end
    if v:find("[%z\1-\8\10-\31\127]") then reject(400, "control byte in a header value") end
    v = trim(v)
    k = k:lower()
    if k == "content-length" then req.lengths[#req.lengths + 1] = v end
    local old = req.headers[k]
    req.headers[k] = old and (old .. ", " .. v) or v
  end
end

-- How many body bytes follow: Content-Length, validated so that this
-- server and any proxy in front of it agree on where the request ends.
local function body_length(self, req)
  if req.headers["transfer-encoding"] then
    if #req.lengths > 0 then reject(400, "Transfer-Encoding with Content-Length") end
    reject(501, "Transfer-Encoding is not implemented")
  end
  local n
  for _, v in ipairs(req.lengths) do
    if not v:match("^%d+$") then reject(400, "malformed Content-Length") end
    if n and v ~= n then reject(400, "conflicting Content-Length values") end
    n = v
  end
  if not n then return 0 end
  n = n:match("^0*(%d+)$")
  if #n > 15 or tonumber(n) > self.max_body then reject(413, "body too large") end
  return tonumber(n)
end

-- Reads one request; nil at the end of the connection.  A request that
-- cannot be served raises a Reject (status, why).
local function read_request(self, reader, st)
  local line = read_line(reader, 414, "request line")
  if not line then return nil end
  st.started = true
  if line == "\r\n" or line == "\n" then -- RFC 9112 2.2: one empty line may precede
    line = read_line(reader, 414, "request line")
    if not line then return nil end
  end
  local method, target, version = line:match("^(%S+) (%S+) HTTP/(%d%.%d)\r?\n$")
  if not method or not method:match(TOKEN) or target:find("[%z\1-\32\127]") then
    reject(400, "malformed request line")
  end
  if version ~= "1.1" and version ~= "1.0" then reject(505, "HTTP/" .. version) end
  local req = {method = method, target = target, version = version,
               headers = {}, lengths = {}}
  if not read_headers(self, reader, req) then return nil end
  if version == "1.1" and not req.headers.host then reject(400, "no Host header") end
  if req.headers.host and req.headers.host:find(",", 1, true) then
    reject(400, "more than one Host header")
  end
  if not METHODS[method] then reject(501, "method not implemented") end
  local n = body_length(self, req)
  if n > 0 then
    local ok, body = try(reader.readexactly, reader, n)
    if not ok then return nil end -- the client went away mid-body
    req.body = body
  else
    req.body = ""
  end
  req.path, req.query = target:match("^([^?]*)%??(.*)$")
  req.query = parse_query(req.query)
  return req
end

local function respond(self, writer, req, status, body, headers, close)
  local out = {("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Status"),
               ("Content-Length: %d\r\n"):format(#body)}
  for k, v in pairs(headers or {}) do out[#out + 1] = k .. ": " .. v .. "\r\n" end
  if not (headers and headers["Content-Type"]) then
    out[#out + 1] = "Content-Type: text/plain\r\n"
  end
  if close then out[#out + 1] = "Connection: close\r\n" end
  out[#out + 1] = "\r\n"
  if not (req and req.method == "HEAD") then out[#out + 1] = body end
  if writer:is_closing() then return false end -- close() came during the delay
  writer:write(table.concat(out))
  return (try(writer.drain, writer))
end

-- Keep-alive unless the client says otherwise (HTTP/1.0: unless it asks).
local function wants_close(req)
  local c = (req.headers.connection or ""):lower()
  if req.version == "1.0" then return not c:find("keep-alive", 1, true) end
  return c:find("close", 1, true) ~= nil
end

-- Reads a request under the header timeout (the body is bounded in size).
local function next_request(self, reader, st)
  local _ <close> = asyncio.timeout(self.header_timeout)
  return read_request(self, reader, st)
end

-- After an error answer, the rest of what the client sent is read and
-- dropped for a moment before closing: closing with unread data makes the
-- kernel send a reset, which can destroy the answer before it is read.
local function linger(reader, writer)
  if writer:can_write_eof() then try(writer.write_eof, writer) end
  try(function()
    local _ <close> = asyncio.timeout(1)
    local n = 0
    while n < 1024 * 1024 do
      local data = reader:read(65536)
      if data == "" then break end
      n = n + #data
    end
  end)
end

local function serve(self, reader, writer)
  while true do
    local st = {}
    local ok, req = pcall(next_request, self, reader, st)
    if not ok then
      local e = req
      if asyncio.is(e, asyncio.CancelledError) then error(e, 0) end
      if getmetatable(e) == Reject then
        respond(self, writer, nil, e.status, e.why .. "\n", nil, true)
      elseif not asyncio.is(e, asyncio.TimeoutError) then
        respond(self, writer, nil, 500, "internal error\n", nil, true)
      elseif st.started then
        respond(self, writer, nil, 408, "request timeout\n", nil, true)
      else
        return -- an idle keep-alive connection: closed without a word
      end
      linger(reader, writer)
      return
    end
    if not req then return end
    self.inflight = self.inflight + 1
    if self.inflight > self.max_inflight then self.max_inflight = self.inflight end
    local rok, status, body, headers = pcall(function()
      local delay = query_number(req.query, "delay", self.max_delay, true) or self.delay
      if delay > 0 then asyncio.sleep(delay) end
      return route(self, req)
    end)
    self.inflight = self.inflight - 1
    self.requests = self.requests + 1
    local close = wants_close(req)
    if not rok then
      if asyncio.is(status, asyncio.CancelledError) then error(status, 0) end
      local e = status
      if getmetatable(e) == Reject then
        status, body = e.status, e.why .. "\n"
      else
        status, body, close = 500, "internal error\n", true
      end
      headers = nil
    end
    if not respond(self, writer, req, status, body, headers, close) or close then return end
  end
end

local function handle(self, reader, writer)
  self.nconns = self.nconns + 1
  self.conns[writer] = true
  local ok, err = pcall(function()
    if self.nconns > self.max_connections then
      respond(self, writer, nil, 503, "too many connections\n", nil, true)
      linger(reader, writer)
      return
    end
    reader:set_limit(self.max_line)
    serve(self, reader, writer)
  end)
  self.conns[writer] = nil
  self.nconns = self.nconns - 1
  writer:close()
  if not ok then error(err, 0) end
end

local Server = {}
Server.__index = Server

-- Stops listening and closes the connections still open (keep-alive
-- clients), then waits until every connection task has ended.
function Server:close()
  if self.closed then return end
  self.closed = true
  self.srv:close()
  for w in pairs(self.conns) do w:close() end
  self.srv:wait_closed()
end
Server.__close = Server.close

local START_KEYS = {delay = true, host = true, port = true, image_size = true, routes = true}
for k in pairs(LIMITS) do START_KEYS[k] = true end

function M.start(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not START_KEYS[k] then
      error(("bad argument #1 to 'start' (unknown option '%s')"):format(tostring(k)), 2)
    end
  end
  local self = setmetatable({
    delay = opts.delay or 0, image_size = opts.image_size or 20000,
    routes = opts.routes or {}, conns = {}, nconns = 0, requests = 0, inflight = 0,
    max_inflight = 0, images = 0, api_calls = 0,
  }, Server)
  for k, v in pairs(LIMITS) do self[k] = opts[k] or v end
  local host = opts.host or "127.0.0.1"
  self.srv = asyncio.start_server(function(reader, writer)
    handle(self, reader, writer)
  end, host, opts.port or 0)
  self.port = self.srv.port
  self.url = ("http://%s:%d"):format(host, self.port)
  return self
end

M.image_bytes = image_bytes
-- How many images the cache holds now (it never holds more than CACHE_MAX).
function M.image_cache_size() return cached end
M.CACHE_MAX = CACHE_MAX
return M
