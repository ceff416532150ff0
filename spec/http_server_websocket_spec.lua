-- asyncio.websocket: the client (wslay framing) against a Python peer
-- written from RFC 6455 with the standard library (spec/fixtures/ws_peer.py),
-- the RFC's own handshake vector, and refusals.
local helper = require "spec.helper"
local websocket = require "asyncio.websocket"
local web = require "asyncio.http.server"

-- Starts the Python peer; returns its process and port.
local function peer()
  local p = asyncio.create_subprocess_exec("python3", {"spec/fixtures/ws_peer.py"}, {stdout = "pipe"})
  local port = tonumber(asyncio.wait_for(function() return p.stdout:readline() end, 10))
  return p, port
end

local function peer_log(p)
  local out = asyncio.wait_for(function() return p.stdout:read() end, 10)
  p:wait()
  return out
end

describe("asyncio.websocket", function()
  after_each(function() helper.no_leaks() end)

  it("computes Sec-WebSocket-Accept as RFC 6455 section 1.3 shows", function()
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  it("talks to an RFC 6455 peer: text, binary, fragments, ping/pong, close with a code", function()
    local p, port = peer()
    local ws = websocket.connect(("ws://127.0.0.1:%d/chat"):format(port))
    ws:send("hello")
    assert.are.same({"echo:hello", "text"}, {ws:receive()})
    ws:send("\0\1\2\255", "binary")
    assert.are.same({"echo:\0\1\2\255", "binary"}, {ws:receive()})
    ws:send("frag")
    assert.are.same({"hello", "text"}, {ws:receive()}) -- two frames, one message
    ws:send("ping")
    assert.are.same({"pong:p1", "text"}, {ws:receive()}) -- our pong came back
    local long = ("L"):rep(70000) -- a 64-bit length
    ws:send(long)
    assert.are.equal("echo:" .. long, (ws:receive()))
    ws:close(4000, "bye")
    assert.are.equal("pong p1\nclose 4000 bye\n", peer_log(p)) -- and never UNMASKED
  end)

  it("ends a message over max_message with 1009", function()
    local p, port = peer()
    local ws = websocket.connect(("ws://127.0.0.1:%d/"):format(port), {max_message = 1000})
    ws:send("big")
    local data, code = ws:receive()
    assert.is_nil(data)
    assert.are.equal(1009, code)
    ws:close()
    -- the peer reads our 1009 close frame, unless the reset of the socket
    -- (closed with its 200 KB unread) overtakes it
    local log = peer_log(p)
    assert.is_truthy(log:match("close 1009") or log:match("^reset"), log)
  end)

  it("raises ConnectionError when the server does not switch protocols", function()
    local srv = web.serve(function() return "no websocket here" end, "127.0.0.1", 0)
    local err = helper.raises(asyncio.ConnectionError, websocket.connect,
      ("ws://127.0.0.1:%d/"):format(srv.port))
    assert.matches("handshake refused .*HTTP/1.1 200", tostring(err))
    srv:close()
    srv:wait_closed()
  end)

  it("refuses bad urls and options", function()
    helper.fails_with("bad argument #1 to 'websocket'", websocket.connect, 42)
    helper.fails_with("bad argument #1 to 'websocket'", websocket.connect, "ws://a b/")
    helper.fails_with("url must be ws://", websocket.connect, "http://127.0.0.1/")
    helper.fails_with("wss:// needs TLS", websocket.connect, "wss://127.0.0.1/")
    helper.fails_with("unknown option 'max_msg'", websocket.connect, "ws://127.0.0.1:1/", {max_msg = 1})
    helper.fails_with("max_message must be", websocket.connect, "ws://127.0.0.1:1/", {max_message = 0})
  end)
end)
