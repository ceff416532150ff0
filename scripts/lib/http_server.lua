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
-- routes ({["/path"] = function(req) return status, body, headers end}).
-- A request's own ?delay=SECONDS overrides the delay.
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
                 [500] = "Internal Server Error"}

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

-- The same bytes for the same name, so downloads can be checked.
local image_cache = {}
local function image_bytes(name, size)
  local key = name .. "\0" .. size
  local data = image_cache[key]
  if data then return data end
  local seed = 0
  for i = 1, #name do seed = seed + name:byte(i) end
  local head = "\137PNG\r\n\26\n"
  local row = {}
  for i = 0, 255 do row[i + 1] = string.char((seed + i) % 256) end
  row = table.concat(row)
  local n = size - #head
  data = head .. row:rep(n // 256 + 1):sub(1, n)
  image_cache[key] = data
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
    local n = tonumber(id) or 0
    users[#users + 1] = {id = n, first_name = FIRST[n % #FIRST + 1],
                         last_name = LAST[n % #LAST + 1]}
  end
  self.api_calls = self.api_calls + 1
  return 200, cjson.encode{response = users}
end

-- Answers one parsed request: status, body, extra headers.
local function route(self, req)
  local custom = self.routes[req.path]
  if custom then return custom(req) end
  local p, q = req.path, req.query
  if p == "/" or p:match("^/page/") then
    local name = p:match("^/page/(.+)") or "index"
    return 200, ("<html><head><title>%s</title></head><body><h1>%s</h1>"
      .. "<p>served by lasync</p></body></html>\n"):format(name, name),
      {["Content-Type"] = "text/html; charset=utf-8"}
  end
  local img = p:match("^/image/(.+)") or p:match("^/cache/resources/(.+)")
  if img then
    return 200, image_bytes(img, tonumber(q.size) or self.image_size),
      {["Content-Type"] = img:match("%.jpe?g$") and "image/jpeg" or "image/png"}
  end
  local w, h = p:match("^/(%d+)/(%d+)$")
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

-- Reads one request; nil at the end of the connection.
local function read_request(reader)
  local line = reader:readline()
  if line == "" then return nil end
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.%d\r?\n$")
  local req = {method = method, target = target, headers = {}}
  while true do
    local h = reader:readline()
    if h == "" then return nil end
    if h == "\r\n" or h == "\n" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then req.headers[k:lower()] = v end
  end
  local n = tonumber(req.headers["content-length"] or 0)
  req.body = n > 0 and reader:readexactly(n) or ""
  if target then
    req.path, req.query = target:match("^([^?]*)%??(.*)$")
    req.query = parse_query(req.query)
  end
  return req
end

local function handle(self, reader, writer)
  self.conns[writer] = true
  while true do
    local req = read_request(reader)
    if not req then break end
    self.inflight = self.inflight + 1
    if self.inflight > self.max_inflight then self.max_inflight = self.inflight end
    local status, body, headers
    if not req.method then
      status, body = 400, "bad request"
    else
      local delay = tonumber(req.query.delay) or self.delay
      if delay > 0 then asyncio.sleep(delay) end
      status, body, headers = route(self, req)
    end
    self.inflight = self.inflight - 1
    self.requests = self.requests + 1
    local out = {("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Status"),
                 ("Content-Length: %d\r\n"):format(#body)}
    for k, v in pairs(headers or {}) do out[#out + 1] = k .. ": " .. v .. "\r\n" end
    if not (headers and headers["Content-Type"]) then
      out[#out + 1] = "Content-Type: text/plain\r\n"
    end
    local close = (req.headers.connection or ""):lower() == "close"
    if close then out[#out + 1] = "Connection: close\r\n" end
    out[#out + 1] = "\r\n"
    if req.method ~= "HEAD" then out[#out + 1] = body end
    if writer:is_closing() then break end -- close() came during the delay
    writer:write(table.concat(out))
    writer:drain()
    if close then break end
  end
  self.conns[writer] = nil
  writer:close()
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

function M.start(opts)
  opts = opts or {}
  local self = setmetatable({
    delay = opts.delay or 0, image_size = opts.image_size or 20000,
    routes = opts.routes or {}, conns = {}, requests = 0, inflight = 0,
    max_inflight = 0, images = 0, api_calls = 0,
  }, Server)
  local host = opts.host or "127.0.0.1"
  self.srv = asyncio.start_server(function(reader, writer)
    handle(self, reader, writer)
  end, host, opts.port or 0)
  self.port = self.srv.port
  self.url = ("http://%s:%d"):format(host, self.port)
  return self
end

M.image_bytes = image_bytes
return M
