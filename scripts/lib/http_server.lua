-- A small local HTTP/1.1 server for the course scripts, on
-- asyncio.http.server (libmicrohttpd parses and frames HTTP; no parser
-- here): each request is a task that answers after a configurable delay,
-- so that fetching concurrently visibly beats fetching one by one.
-- Loopback only; it never needs the internet.
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
-- What a client can send is bounded by asyncio.http.server (request head
-- max_header_bytes: 414/431; body max_body: 413; header_timeout against
-- slowloris; max_connections; malformed or ambiguous framing: 400), and
-- what the routes compute by max_delay and max_image_size (400 beyond).
--
-- What it serves:
--   /  and  /page/NAME     a small HTML page whose <title> is NAME
--   /image/NAME            a deterministic fake PNG of image_size bytes
--   /W/H                   like loremflickr.com/320/240: a 302 to a fresh
--                          /cache/resources/N_WxH.jpg, which serves an image
--   /method/users.get      a stand-in for the VK API (JSON; needs access_token)
--   /status/NNN            that status
-- Fields: url, port, requests (answered), inflight, max_inflight.
local web = require "asyncio.http.server"
local cjson = require "cjson"

local M = {}

-- The limits of the HTTP layer are asyncio.http.server's (its defaults);
-- these two bound what the routes below compute from a query.
local LIMITS = {max_header_bytes = 32768, max_body = 1024 * 1024,
                max_connections = 1000, header_timeout = 10,
                max_delay = 30, max_image_size = 4 * 1024 * 1024}
M.LIMITS = LIMITS

-- A request that cannot be served: the status and why (the body).
local Reject = {}
local function reject(status, why) error(setmetatable({status = status, why = why}, Reject), 0) end

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
local METHODS = {GET = true, HEAD = true, POST = true, PUT = true,
                 DELETE = true, OPTIONS = true, PATCH = true}

local function handle(self, req)
  if not METHODS[req.method] then
    return {status = 501, body = "method not implemented\n", headers = {Connection = "close"}}
  end
  if req.path:find("[%z\1-\31\127]") then
    return {status = 400, body = "control byte in the target\n", headers = {Connection = "close"}}
  end
  self.inflight = self.inflight + 1
  if self.inflight > self.max_inflight then self.max_inflight = self.inflight end
  local ok, status, body, headers = pcall(function()
    local delay = query_number(req.query, "delay", self.max_delay, true) or self.delay
    if delay > 0 then asyncio.sleep(delay) end
    return route(self, req)
  end)
  self.inflight = self.inflight - 1
  self.requests = self.requests + 1
  if not ok then
    if getmetatable(status) ~= Reject then error(status, 0) end -- a 500
    status, body, headers = status.status, status.why .. "\n", nil
  end
  headers = headers or {}
  if not headers["Content-Type"] then headers["Content-Type"] = "text/plain" end
  return {status = status, body = body, headers = headers}
end

local Server = {}
Server.__index = Server

function Server:close()
  if self.closed then return end
  self.closed = true
  self.srv:close()
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
    routes = opts.routes or {}, requests = 0, inflight = 0,
    max_inflight = 0, images = 0, api_calls = 0,
  }, Server)
  for k, v in pairs(LIMITS) do self[k] = opts[k] or v end
  local host = opts.host or "127.0.0.1"
  self.srv = web.serve(function(req) return handle(self, req) end, host, opts.port or 0, {
    max_body = self.max_body, max_header_bytes = self.max_header_bytes,
    max_connections = self.max_connections, header_timeout = self.header_timeout,
    -- close() ends the course's servers at once: a script is done with them
    shutdown_timeout = 0,
  })
  self.port = self.srv.port
  self.url = ("http://%s:%d"):format(host, self.port)
  return self
end

M.image_bytes = image_bytes
function M.image_cache_size() return cached end
M.CACHE_MAX = CACHE_MAX
return M
