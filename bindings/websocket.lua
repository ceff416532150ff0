-- asyncio.websocket: a WebSocket client (RFC 6455) over lasync streams.
-- The handshake is a small HTTP/1.1 Upgrade exchange; the framing
-- (masking, fragmentation, ping/pong, close codes, size limit) is wslay's,
-- through the codec of bindings/websocket.c.
local core, asyncio = ...

local M = {accept_key = core.accept_key}

-- Argument errors name the caller's line, the first frame outside this
-- file and http_server.lua (whose req:websocket() calls check_protocols).
local argerror, checktype, raise = core.lua_part("argcheck")()({
  ["=asyncio/websocket.lua"] = true, ["=asyncio/http_server.lua"] = true})

local TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10

local WS = {}
WS.__index = WS

-- Sends what the codec has queued (data, pong replies, close frames).
local function flush(self)
  local out = self.codec:output()
  if out ~= "" then
    self.writer:write(out)
    self.writer:drain()
  end
end

local function parse_url(url)
  local scheme, host, port, path = url:match("^(wss?)://([^/:]+):?(%d*)(/?.*)$")
  if not scheme then
    raise("websocket(): url must be ws://host[:port]/path or wss://..., got " .. tostring(url))
  end
  local tls = scheme == "wss"
  port = tonumber(port) or (tls and 443 or 80)
  if port > 65535 then raise(("websocket(): url port must be 0-65535, got %d"):format(port)) end
  return host, port, path ~= "" and path or "/", tls
end

local KNOWN = {max_message = true, headers = true, timeout = true,
  ssl = true, server_hostname = true, protocols = true}

-- A subprotocol list (opts.protocols): a non-empty sequence of distinct
-- tokens (RFC 6455 section 4.1); `who` names the function for errors.
function M.check_protocols(list, who)
  if list == nil then return nil end
  if type(list) ~= "table" or #list == 0 then
    raise(("%s: protocols must be a non-empty list of strings, got %s")
      :format(who, type(list) == "table" and "an empty table" or type(list)))
  end
  local seen = {}
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > #list then
      raise(("%s: protocols must be a list (key %s)"):format(who, tostring(k)))
    end
  end
  for i, p in ipairs(list) do
    if type(p) ~= "string" or not p:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
      raise(("%s: protocols[%d] must be a token (letters, digits, !#$%%&'*+-.^_`|~), got %s")
        :format(who, i, type(p) == "string" and ("%q"):format(p) or type(p)))
    end
    if seen[p] then
      raise(("%s: protocol '%s' is listed twice"):format(who, p))
    end
    seen[p] = true
  end
  return list
end

-- The names of a Sec-WebSocket-Protocol value (repeated fields arrive
-- joined with ", "), in order.
function M.split_protocols(value)
  local out = {}
  for p in (value or ""):gmatch("[^,%s]+") do out[#out + 1] = p end
  return out
end

-- The stream options: wss:// is TLS (opts.ssl: true, the default context,
-- or an SSLContext; server_hostname as open_connection's), ws:// never is.
local function stream_opts(url, tls, opts)
  if not tls then
    if opts.ssl ~= nil or opts.server_hostname ~= nil then
      raise("websocket(): options ssl and server_hostname need a wss:// url, got " .. url)
    end
    return nil
  end
  if opts.ssl == false then
    raise("websocket(): a wss:// url cannot have ssl = false")
  end
  local ssl = opts.ssl
  if ssl == nil then ssl = true end
  if ssl ~= true and type(ssl) ~= "userdata" then
    raise("websocket(): option ssl must be true or an SSLContext, got " .. type(ssl))
  end
  if opts.server_hostname ~= nil and type(opts.server_hostname) ~= "string" then
    raise("websocket(): option server_hostname must be a string, got " .. type(opts.server_hostname))
  end
  return {ssl = ssl, server_hostname = opts.server_hostname}
end

-- The extra handshake headers (opts.headers): name = value, a token and
-- a string (or number) without control characters, refused before anything
-- is sent.
local function check_headers(headers)
  if headers == nil then return {} end
  if type(headers) ~= "table" then
    raise("websocket(): option headers must be a table of name = value, got " .. type(headers))
  end
  for k, v in pairs(headers) do
    if type(k) ~= "string" or not k:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
      raise(("websocket(): header name %s is not a token"):format(
        type(k) == "string" and ("%q"):format(k) or type(k)))
    end
    if (type(v) ~= "string" and type(v) ~= "number") or tostring(v):find("%c") then
      raise(("websocket(): header %s must be a string without control characters, got %s")
        :format(k, type(v) == "string" and "one with a control character" or type(v)))
    end
  end
  return headers
end

-- websocket(url [, opts]) -> ws.  opts: max_message (bytes, default 1 MiB),
-- headers (extra handshake headers), timeout (handshake seconds, 10);
-- for wss://, ssl and server_hostname (asyncio.open_connection's).
function M.connect(url, opts)
  if type(url) ~= "string" or url:find("[%z\r\n ]") then
    argerror(1, "websocket", "url string without blanks, CR, LF, NUL expected")
  end
  opts = opts or {}
  if type(opts) ~= "table" then argerror(2, "websocket", "table expected") end
  for k in pairs(opts) do
    if not KNOWN[k] then raise(("websocket(): unknown option '%s'"):format(tostring(k))) end
  end
  local host, port, path, tls = parse_url(url)
  local sopts = stream_opts(url, tls, opts)
  local max = opts.max_message or 1024 * 1024
  if math.type(max) ~= "integer" or max < 1 then
    raise("websocket(): max_message must be a positive integer")
  end
  local protocols = M.check_protocols(opts.protocols, "websocket()")
  local headers = check_headers(opts.headers)
  local timeout = opts.timeout or 10
  if type(timeout) ~= "number" or not (timeout > 0) then
    raise("websocket(): timeout must be a positive number of seconds, got " .. tostring(timeout))
  end
  local reader, writer = asyncio.open_connection(host, port, sopts)
  local key = core.new_key()
  local lines = {("GET %s HTTP/1.1"):format(path), ("Host: %s:%d"):format(host, port),
    "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. key,
    "Sec-WebSocket-Version: 13"}
  if protocols then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(protocols, ", ")
  end
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  writer:write(table.concat(lines, "\r\n") .. "\r\n\r\n")
  local ok, head = pcall(asyncio.wait_for, function()
    return reader:readuntil("\r\n\r\n")
  end, timeout)
  local accept, chosen
  for line in (ok and head or ""):gmatch("[^\r\n]+") do
    local n, v = line:match("^([^:]+):%s*(.-)%s*$")
    if n and n:lower() == "sec-websocket-accept" then accept = v end
    if n and n:lower() == "sec-websocket-protocol" then
      chosen = chosen and (chosen .. ", " .. v) or v
    end
  end
  if not ok or not head:match("^HTTP/1.1 101") or accept ~= core.accept_key(key) then
    writer:close()
    error(asyncio.ConnectionError(("websocket(): handshake refused by %s: %s")
      :format(url, ok and (head:match("^[^\r]*") or "") or tostring(head))), 2)
  end
  -- the server may choose none of ours, but not one we did not offer
  local offered = false
  for _, p in ipairs(protocols or {}) do offered = offered or p == chosen end
  if chosen ~= nil and not offered then
    writer:close()
    error(asyncio.ConnectionError(("websocket(): handshake refused by %s: "
      .. "the server chose subprotocol '%s', which was not offered"):format(url, chosen)), 2)
  end
  local ws = M.wrap(reader, writer, true, max, "")
  ws.protocol = chosen
  return ws
end

-- A WebSocket over an open stream pair (after the handshake): the client
-- side masks its frames; `early` is what was read past the handshake.
function M.wrap(reader, writer, client, max, early)
  local ws = setmetatable({reader = reader, writer = writer,
    codec = core.new(client, max), inbox = {}, closed = false}, WS)
  if early ~= "" then
    for _, m in ipairs(ws.codec:feed(early)) do ws.inbox[#ws.inbox + 1] = m end
  end
  return ws
end

-- The checks of the methods below, in the order a frame is built: each
-- refuses before anything is queued, so a refused call leaves the
-- connection as it was.  Lua strings are bytes: a text message and a close
-- reason must be UTF-8 (RFC 6455 sections 5.6 and 7.1.6), which the peer
-- would otherwise fail with 1007.
local function check_self(self, fname)
  if getmetatable(self) ~= WS then
    raise(("calling '%s' on bad self (websocket expected, got %s)"):format(fname, type(self)))
  end
end

-- A ping or pong payload: a control frame carries at most 125 bytes.
local function check_control(data, fname)
  checktype(data, 1, fname, "string", true)
  if data and #data > 125 then
    argerror(1, fname, ("at most 125 bytes expected (a control frame), got %d"):format(#data))
  end
  return data or ""
end

local function quote(v)
  return type(v) == "string" and ("'%s'"):format((v:gsub("%z", "\\0"))) or type(v)
end

-- Raises ConnectionError (at the caller's caller) once nothing more can
-- be sent: the connection is closed, or a close frame is queued (ours,
-- or the answer to the peer's): wslay refuses the message then, and it
-- was lost without a word.
local function check_open(self)
  if self.closed then error(asyncio.ConnectionError("websocket: closed"), 3) end
  if self.closing then error(asyncio.ConnectionError("websocket: closing"), 3) end
end

-- Queues a frame; a refusal (the peer's close is queued for an answer)
-- raises at the caller's caller.
local function queue(self, op, data)
  if not self.codec:queue(op, data) then
    error(asyncio.ConnectionError("websocket: closing"), 3)
  end
end

-- send(data [, "binary"]): a text (default) or binary message.
function WS:send(data, kind)
  check_self(self, "send")
  checktype(data, 1, "send", "string")
  if kind ~= nil and kind ~= "binary" and kind ~= "text" then
    argerror(2, "send", "'text' or 'binary' expected, got " .. quote(kind))
  end
  local op = kind == "binary" and BINARY or TEXT
  if op == TEXT and not utf8.len(data) then
    argerror(1, "send", "a text message must be valid UTF-8; send bytes as 'binary'")
  end
  check_open(self)
  queue(self, op, data)
  flush(self)
end

-- ping([data]) and pong([data]): control frames; an unsolicited pong is a
-- one-way heartbeat (RFC 6455 section 5.5.3).
-- Called in tail position only, so that argument errors still point at
-- the caller of ping/pong.
local function send_control(self, name, op, data)
  check_self(self, name)
  data = check_control(data, name)
  check_open(self)
  queue(self, op, data)
  flush(self)
end

function WS:ping(data)
  return send_control(self, "ping", PING, data)
end

function WS:pong(data)
  return send_control(self, "pong", PONG, data)
end

-- receive() -> data, kind ("text"/"binary"); nil, code, reason once the
-- peer closed.  Pings are answered, pongs dropped, on the way.
function WS:receive()
  while true do
    local m = table.remove(self.inbox, 1)
    if m then
      if m[1] == TEXT then return m[2], "text" end
      if m[1] == BINARY then return m[2], "binary" end
      if m[1] == CLOSE then
        self.closed = true
        self.close_code, self.close_reason = m[3], m[2]
        pcall(flush, self) -- wslay queued the close reply
        self.writer:close()
        return nil, m[3], m[2]
      end
    else
      if self.closed then return nil, self.close_code, self.close_reason end
      local data = self.reader:read(65536)
      if data == "" then
        self.closed = true
        self.writer:close()
        return nil, 1006, "connection lost"
      end
      local ok, msgs = pcall(self.codec.feed, self.codec, data)
      if not ok then -- a protocol error or a message over max_message
        self.closed = true
        pcall(flush, self)
        self.writer:close()
        local _, _, _, code = self.codec:state()
        return nil, code ~= 0 and code or 1002, tostring(msgs)
      end
      for _, m2 in ipairs(msgs) do self.inbox[#self.inbox + 1] = m2 end
      pcall(flush, self) -- pongs
      local _, sent, _, sent_code = self.codec:state()
      if sent and not self.closing and #self.inbox == 0 then
        -- wslay failed the connection (1009 too big, 1002 protocol error)
        self.closed = true
        self.close_code, self.close_reason = sent_code, "failed by this side"
        self.writer:close()
        return nil, sent_code, self.close_reason
      end
    end
  end
end

-- The codes an endpoint may send (RFC 6455 section 7.4 and IANA's
-- registry): 1004-1006 and 1015 are reserved, never on the wire, and
-- below 3000 is for the protocol to define.
local function check_close_code(code)
  if code == nil then return 1000 end
  if math.type(code) ~= "integer" then
    argerror(1, "close", "close code expected (an integer), got "
      .. (type(code) == "number" and tostring(code) or type(code)))
  end
  if not ((code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014)
          or (code >= 3000 and code <= 4999)) then
    argerror(1, "close", ("close code 1000-1003, 1007-1014 or 3000-4999 expected, got %d"):format(code))
  end
  return code
end

-- close([code [, reason]]): the close handshake; waits up to 5 s for the
-- peer's close frame.
function WS:close(code, reason)
  check_self(self, "close")
  code = check_close_code(code)
  checktype(reason, 2, "close", "string", true)
  if reason and #reason > 123 then
    argerror(2, "close", ("a reason of at most 123 bytes expected, got %d"):format(#reason))
  end
  if reason and not utf8.len(reason) then argerror(2, "close", "a reason must be valid UTF-8") end
  if self.closed then return end
  self.closing = true
  self.codec:queue_close(code, reason or "")
  pcall(flush, self)
  pcall(asyncio.wait_for, function()
    while not self.closed do self:receive() end
  end, 5)
  self.closed = true
  self.writer:close()
end
-- A <close> variable's __close gets the error that ends its scope as the
-- second argument: not a close code.
function WS.__close(self) self:close() end

-- The server's end of a connection whose handler is done (returned,
-- failed or cancelled) without closing it: the close frame (code) is
-- queued without waiting for the peer to read it or to answer, and the
-- socket closed; before, it stayed open until the garbage collector.
function M.finish(ws, code)
  if ws.closed then return end
  ws.closed, ws.closing = true, true
  pcall(ws.codec.queue_close, ws.codec, code, "")
  pcall(function()
    local out = ws.codec:output()
    if out ~= "" then ws.writer:write(out) end
  end)
  ws.writer:close()
end

return M
