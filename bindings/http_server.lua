-- asyncio.http.server: serve(handler, host, port, opts) -> server.
--
-- libmicrohttpd (bindings/http_server.c) parses and answers HTTP/1.1; this
-- file turns each complete request into a task running handler(request)
-- and its return value into the response.  One dispatcher task per server
-- takes requests from the daemon (daemon:next()) and spawns the handlers.
local core, asyncio = ...

local M = {mhd_version = core.mhd_version}

-- Argument errors name the caller's line, the first frame outside this
-- file and websocket.lua (req:websocket() checks its protocols there).
local argerror, _, raise = core.lua_part("argcheck")()({
  ["=asyncio/http_server.lua"] = true, ["=asyncio/websocket.lua"] = true})

-- Defaults: every one can be overridden in opts (docs/http_server.md).
M.defaults = {
  max_body = 1024 * 1024,        -- bytes of a request body (413 beyond)
  max_header_bytes = 32 * 1024,  -- request line + headers (431/414 beyond)
  max_connections = 1000,        -- open connections per server
  max_connections_per_ip = 0,    -- 0: no per-address limit
  idle_timeout = 30,             -- seconds without a byte from the client
  header_timeout = 10,           -- seconds to send a whole request head
  shutdown_timeout = 10,         -- close(): seconds in-flight handlers get
  backlog = 511,
}

local function check_opts(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    argerror(4, "serve", "table expected, got " .. type(opts))
  end
  local bad = core.unknown_option(opts)
  if bad then raise(("serve(): unknown option '%s'"):format(bad)) end
  local o = {}
  if opts.tls ~= nil then
    local t = opts.tls
    if type(t) ~= "table" or type(t.cert) ~= "string" or type(t.key) ~= "string"
       or t.cert:find("\0", 1, true) or t.key:find("\0", 1, true) then
      raise("serve(): option tls must be {cert = PEM string, key = PEM string}")
    end
    for k in pairs(t) do
      if k ~= "cert" and k ~= "key" then
        raise(("serve(): unknown option 'tls.%s'"):format(tostring(k)))
      end
    end
  end
  if opts.ssl ~= nil and opts.ssl ~= false then
    if opts.tls ~= nil then
      raise("serve(): options ssl and tls exclude each other (ssl is the SSLContext way)")
    end
    local t = opts.ssl
    if t == true then
      raise("serve(): option ssl must be a server's SSLContext with a certificate, got true")
    end
    local ok, cert, key, prio = pcall(core.ssl_options, t)
    if not ok then
      if tostring(cert):find("SSLContext expected", 1, true) then
        raise("serve(): option ssl must be an SSLContext, got " .. type(t))
      end
      raise(cert)
    end
    o.tls = {cert = cert, key = key, priorities = prio}
  end
  for k, v in pairs(M.defaults) do
    local x = opts[k]
    if x == nil then x = v end
    if math.type(x) == nil or x < 0 or x ~= x or x == math.huge then
      raise(("serve(): option %s must be a finite number >= 0, got %s")
        :format(k, tostring(x)))
    end
    o[k] = x
  end
  if opts.stream_body ~= nil and type(opts.stream_body) ~= "boolean" then
    raise("serve(): option stream_body must be a boolean, got " .. type(opts.stream_body))
  end
  o.stream_body = opts.stream_body or false
  o.tls = o.tls or opts.tls -- kept in server.opts: libmicrohttpd may point into the PEM strings
  for _, k in ipairs {"max_body", "max_header_bytes", "max_connections",
                      "max_connections_per_ip", "idle_timeout", "backlog"} do
    if math.type(o[k]) ~= "integer" and o[k] ~= math.floor(o[k]) then
      raise(("serve(): option %s must be an integer, got %s"):format(k, o[k]))
    end
    o[k] = math.tointeger(o[k])
  end
  if o.max_header_bytes < 1024 then
    raise("serve(): option max_header_bytes must be at least 1024")
  end
  if o.header_timeout <= 0 then
    raise("serve(): option header_timeout must be > 0")
  end
  return o
end

-- Header names are case-insensitive: the table stores them in lower case
-- (rq:fields) and looks any spelling up; repeated fields are joined with
-- ", ".
local headers_mt = {
  __index = function(t, k)
    if type(k) == "string" then return rawget(t, k:lower()) end
  end,
}

local Request = {}
Request.__index = Request

-- req:read([max]) -> up to max bytes (default 64 KiB) of the body, "" at
-- its end.  With stream_body the bytes arrive as the client sends them.
function Request:read(max)
  if max == nil then max = 65536 end
  if math.type(max) ~= "integer" or max < 1 then
    argerror(1, "read", "positive integer expected, got " .. tostring(max))
  end
  return self._rq:read(max)
end

-- for chunk in req:chunks([max]) do ... end: the body piece by piece.
function Request:chunks(max)
  return function()
    local s = self:read(max)
    if s ~= "" then return s end
  end
end

-- req:body() -> the rest of the body (all of it unless read() took some).
function Request:body()
  if self._body == nil then
    local parts = {}
    for chunk in self:chunks() do parts[#parts + 1] = chunk end
    self._body = table.concat(parts)
  end
  return self._body
end

-- req:websocket([opts]) -> ws: answers 101 to a WebSocket handshake and
-- returns the connection (send/receive/ping/close as asyncio.websocket's
-- client).  opts.max_message: bytes (default 1 MiB); opts.protocols: the
-- subprotocols this server speaks: the first the client offered (in the
-- client's order) that is among them is chosen (ws.protocol, nil if none).
-- A request that is not a version-13 WebSocket handshake raises (the
-- handler's 500).
local WS_OPTS = {max_message = true, protocols = true}
function Request:websocket(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    argerror(1, "websocket", "table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not WS_OPTS[k] then raise(("websocket(): unknown option '%s'"):format(tostring(k))) end
  end
  local h = self.headers
  local key = h["sec-websocket-key"]
  if not (h.upgrade or ""):lower():find("websocket", 1, true) or not key
     or h["sec-websocket-version"] ~= "13" or self.method ~= "GET" then
    raise("websocket(): not a WebSocket (version 13) handshake")
  end
  if self._tls then
    -- libmicrohttpd 0.9.75 relays an upgraded TLS connection through what
    -- is left of the connection's memory pool: 4 bytes per turn
    raise("websocket(): not supported on a TLS server (libmicrohttpd "
      .. "relays upgraded TLS connections a few bytes at a time)")
  end
  local max = opts.max_message or 1024 * 1024
  if math.type(max) ~= "integer" or max < 1 then
    raise("websocket(): max_message must be a positive integer")
  end
  local ws = require "asyncio.websocket"
  local ours = ws.check_protocols(opts.protocols, "websocket()")
  local chosen
  if ours then
    local set = {}
    for _, p in ipairs(ours) do set[p] = true end
    for _, p in ipairs(ws.split_protocols(h["sec-websocket-protocol"])) do
      if set[p] then chosen = p break end
    end
  end
  self.upgraded = true
  local head = {"Upgrade", "websocket", "Sec-WebSocket-Accept", ws.accept_key(key)}
  if chosen then
    head[#head + 1] = "Sec-WebSocket-Protocol"
    head[#head + 1] = chosen
  end
  local reader, writer, early = self._rq:upgrade(head)
  local conn = ws.wrap(reader, writer, false, max, early)
  conn.protocol = chosen
  self._ws = conn -- run_handler closes it if the handler does not
  return conn
end

-- meta() first: it tells the core the handler task runs (from then on an
-- unanswered request is suspended, bindings/http_server.c's on_access).
local function new_request(rq)
  local method, path, version, ip, port = rq:meta()
  local headers, query = rq:fields(headers_mt)
  return setmetatable({
    _rq = rq, method = method, path = path, version = version,
    headers = headers, query = query, remote = {ip, port},
  }, Request)
end


local function report(err)
  io.stderr:write("asyncio.http.server: handler failed: ", tostring(err), "\n")
end

local function answer(rq, res, closing)
  if type(res) == "string" then res = {body = res} end
  if type(res) ~= "table" then
    error("handler must return a table {status=, headers=, body=} or a string, got "
          .. type(res), 0)
  end
  local status = res.status or 200
  if math.type(status) ~= "integer" or status < 100 or status > 999 then
    error("handler: status must be an integer from 100 to 999", 0)
  end
  -- the core reads the headers map itself (names strings, values strings
  -- or numbers: checked before anything else) and adds Connection: close
  local headers = res.headers
  if headers ~= nil and type(headers) ~= "table" then
    error("handler: response headers must be a table, got " .. type(headers), 0)
  end
  local body = res.body
  if body == nil or type(body) == "string" then
    return rq:respond_map(status, headers, body or "", closing)
  end
  if type(body) ~= "function" then
    rq:check_headers(headers)
    error("handler: body must be a string or a function(write), got " .. type(body), 0)
  end
  if not rq:start_map(status, headers, closing) then return end
  local ok, err = pcall(body, function(s) return rq:write(s) end)
  rq:finish()
  if not ok then error(err, 0) end
end

local Server = {}
Server.__index = Server

local function run_handler(srv, rq)
  local req = new_request(rq)
  req._tls = srv.opts.tls ~= nil
  local ok, res = xpcall(srv.handler, debug.traceback, req)
  if req.upgraded then
    -- answered with 101: no HTTP answer, but the WebSocket is closed with
    -- 1000 (the handler returned), 1001 (cancelled: the server closes) or
    -- 1011 (it failed, reported as any handler's failure)
    local cancelled = not ok and asyncio.is(res, asyncio.CancelledError)
    if not ok and not cancelled and not asyncio.is(res, asyncio.ConnectionError) then
      report(res)
    end
    if req._ws then
      require("asyncio.websocket").finish(req._ws, ok and 1000 or cancelled and 1001 or 1011)
    end
    ok = true
  elseif ok then
    ok, res = pcall(answer, rq, res, srv.closing)
  end
  if not ok then
    if asyncio.is(res, asyncio.ConnectionError) then
      -- the client left: nobody to answer, nothing to report
    elseif asyncio.is(res, asyncio.CancelledError) then
      pcall(rq.respond, rq, 503, {"Connection", "close"}, "shutting down\n")
    else
      report(res)
      pcall(rq.respond, rq, 500, {"Connection", "close"}, "internal server error\n")
    end
  end
  srv.inflight = srv.inflight - 1
  srv.tasks[rq] = nil
  if srv.inflight == 0 then srv.idle:set() end
end

local function dispatcher(srv)
  while true do
    local rq = srv.daemon:next()
    if not rq then return end
    srv.inflight = srv.inflight + 1
    srv.idle:clear()
    srv.tasks[rq] = asyncio.create_task(run_handler, srv, rq)
  end
end

-- close(): stop accepting at once; in-flight handlers get shutdown_timeout
-- seconds to finish (then they are cancelled); then every connection
-- closes.  Idempotent; wait_closed() waits for the end.
function Server:close()
  if self.closing then return end
  self.closing = true
  pcall(self.daemon.quiesce, self.daemon)
  asyncio.create_task(function()
    pcall(asyncio.wait_for, function() self.idle:wait() end,
          self.opts.shutdown_timeout)
    for _, t in pairs(self.tasks) do t:cancel() end
    while self.inflight > 0 do asyncio.sleep(0) end
    self.daemon:close()
    self.closed:set()
  end)
end

function Server:wait_closed() self.closed:wait() end
Server.__close = Server.close

function M.serve(handler, host, port, opts)
  if type(handler) ~= "function" and not (getmetatable(handler) or {}).__call then
    argerror(1, "serve", "function expected, got " .. type(handler))
  end
  if host == nil then host = "127.0.0.1" end
  if type(host) ~= "string" or host:find("\0", 1, true) then
    argerror(2, "serve", "string without NUL expected")
  end
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    argerror(3, "serve", "integer port 0..65535 expected, got " .. tostring(port))
  end
  local o = check_opts(opts)
  local daemon = core.listen(host, port, o.max_body, o.max_connections,
    o.max_connections_per_ip, o.idle_timeout, o.header_timeout,
    o.max_header_bytes, o.backlog, o.tls and o.tls.cert, o.tls and o.tls.key,
    o.stream_body, o.tls and o.tls.priorities)
  local srv = setmetatable({
    handler = handler, daemon = daemon, opts = o, inflight = 0, tasks = {},
    idle = asyncio.Event(), closed = asyncio.Event(), host = host,
  }, Server)
  srv.idle:set()
  srv.port = daemon:port()
  srv.dispatcher = asyncio.create_task(dispatcher, srv)
  return srv
end

-- The number of open client connections (for tests and monitoring).
function Server:connections() return self.daemon:connections() end

return M
