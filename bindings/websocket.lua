-- asyncio.websocket: a WebSocket client (RFC 6455) over lasync streams.
-- The handshake is a small HTTP/1.1 Upgrade exchange; the framing
-- (masking, fragmentation, ping/pong, close codes, size limit) is wslay's,
-- through the codec of bindings/websocket.c.
local core, asyncio = ...

local M = {accept_key = core.accept_key}

-- Argument errors name the caller's line, the first frame outside this
-- file and http_server.lua (whose req:websocket() calls check_protocols).
local argerror, _, raise = core.lua_part("argcheck")()({
  ["=asyncio/websocket.lua"] = true, ["=asyncio/http_server.lua"] = true})

local TEXT, BINARY, CLOSE, PING = 1, 2, 8, 9

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
  return host, tonumber(port) or (tls and 443 or 80), path ~= "" and path or "/", tls
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
  return {ssl = ssl, server_hostname = opts.server_hostname}
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
  local reader, writer = asyncio.open_connection(host, port, sopts)
  local key = core.new_key()
  local lines = {("GET %s HTTP/1.1"):format(path), ("Host: %s:%d"):format(host, port),
    "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. key,
    "Sec-WebSocket-Version: 13"}
  if protocols then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(protocols, ", ")
  end
  for k, v in pairs(opts.headers or {}) do
    if tostring(k):find("[%c:]") or tostring(v):find("%c") then
      writer:close()
      raise("websocket(): bad handshake header " .. tostring(k))
    end
    lines[#lines + 1] = k .. ": " .. v
  end
  writer:write(table.concat(lines, "\r\n") .. "\r\n\r\n")
  local ok, head = pcall(asyncio.wait_for, function()
    return reader:readuntil("\r\n\r\n")
  end, opts.timeout or 10)
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

-- Raises ConnectionError (at the caller's caller) once nothing more can
-- be sent: the connection is closed, or our close frame is queued (wslay
-- would refuse the message, and it was lost without a word).
local function check_open(self)
  if self.closed then error(asyncio.ConnectionError("websocket: closed"), 3) end
  if self.closing then error(asyncio.ConnectionError("websocket: closing"), 3) end
end

-- send(data [, "binary"]): a text (default) or binary message.
function WS:send(data, kind)
  if type(data) ~= "string" then argerror(1, "send", "string expected") end
  local op = kind == "binary" and BINARY or TEXT
  if kind ~= nil and kind ~= "binary" and kind ~= "text" then
    argerror(2, "send", "'text' or 'binary' expected")
  end
  check_open(self)
  if not self.codec:queue(op, data) then -- the peer's close is queued for an answer
    error(asyncio.ConnectionError("websocket: closing"), 2)
  end
  flush(self)
end

-- ping([data]): data is a control frame's payload, 125 bytes at most
-- (RFC 6455 section 5.5).
function WS:ping(data)
  if data ~= nil and type(data) ~= "string" then
    argerror(1, "ping", "string expected, got " .. type(data))
  end
  if data and #data > 125 then
    argerror(1, "ping", "at most 125 bytes (a control frame's payload), got " .. #data)
  end
  check_open(self)
  if not self.codec:queue(PING, data or "") then
    error(asyncio.ConnectionError("websocket: closing"), 2)
  end
  flush(self)
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

-- close([code [, reason]]): the close handshake; waits up to 5 s for the
-- peer's close frame.
function WS:close(code, reason)
  if self.closed then return end
  self.closing = true
  self.codec:queue_close(code or 1000, reason or "")
  pcall(flush, self)
  pcall(asyncio.wait_for, function()
    while not self.closed do self:receive() end
  end, 5)
  self.closed = true
  self.writer:close()
end
WS.__close = WS.close

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
