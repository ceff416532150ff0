-- asyncio.websocket: the client (wslay framing) against a Python peer
-- written from RFC 6455 with the standard library (spec/fixtures/ws_peer.py),
-- the RFC's own handshake vector, and refusals.
local helper = require "spec.helper"
local websocket = require "asyncio.websocket"
local web = require "asyncio.http.server"
local FILE = "http_server_websocket_spec%.lua"
-- How long a Python peer may take to start and answer before the spec
-- gives up: only a hang should reach it (a loaded machine took over 10 s
-- to start one).
local PEER_WAIT = 60 * helper.slow

-- Starts the Python peer; returns its process and port.
local function peer()
  local p = asyncio.create_subprocess_exec("python3", {"spec/fixtures/ws_peer.py"}, {stdout = "pipe"})
  local port = tonumber(asyncio.wait_for(function() return p.stdout:readline() end, PEER_WAIT))
  return p, port
end

local function peer_log(p)
  local out = asyncio.wait_for(function() return p.stdout:read() end, PEER_WAIT)
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

  -- RFC 6455 section 8.1: a text message that is not UTF-8 fails the
  -- connection with 1007, as Python's websockets does ("invalid start
  -- byte"); wslay checks the payload.
  it("fails a text message that is not UTF-8 with 1007", function()
    local p, port = peer()
    local ws = websocket.connect(("ws://127.0.0.1:%d/"):format(port))
    ws:send("badutf8")
    assert.are.same({nil, 1007, "failed by this side"}, {ws:receive()})
    assert.is_true(ws.closed)
    assert.matches("^close 1007 ", peer_log(p))
  end)

  it("raises ConnectionError when the server does not switch protocols", function()
    local srv = web.serve(function() return "no websocket here" end, "127.0.0.1", 0)
    local err = helper.raises(asyncio.ConnectionError, websocket.connect,
      ("ws://127.0.0.1:%d/"):format(srv.port))
    assert.matches("handshake refused .*HTTP/1.1 200", tostring(err))
    srv:close()
    srv:wait_closed()
  end)

  describe("in a server handler (req:websocket())", function()
    local function echo_server(seen)
      return web.serve(function(req)
        if req.path == "/plain" then
          local ok, e = pcall(req.websocket, req)
          seen.err = e
          return {status = ok and 200 or 426, body = "websocket only"}
        end
        local ws = req:websocket()
        while true do
          local m, kind_or_code, reason = ws:receive()
          if not m then seen.code, seen.reason = kind_or_code, reason return end
          ws:send("srv:" .. m, kind_or_code)
        end
      end, "127.0.0.1", 0)
    end

    local function client(port, mode)
      local p = asyncio.create_subprocess_exec("python3",
        {"spec/fixtures/ws_client.py", tostring(port), mode}, {stdout = "pipe"})
      local out = asyncio.wait_for(function() return p.stdout:read() end, PEER_WAIT)
      p:wait()
      return out
    end

    it("answers a Python RFC 6455 client: 101, accept key, echo, pong, close 1000", function()
      local seen = {}
      local srv = echo_server(seen)
      local out = client(srv.port, "ok")
      assert.are.equal("HTTP/1.1 101 Switching Protocols\naccept ok\n1 b'srv:abc'\n"
        .. "2 b'srv:\\x00\\xff'\n10 b'pp'\n8 1000 bye\n", out)
      helper.wait_until(function() return seen.code end, 5, "the handler to see the close")
      assert.are.equal(1000, seen.code)
      assert.are.equal("bye", seen.reason)
      srv:close()
      srv:wait_closed()
    end)

    it("fails an unmasked client frame with 1002", function()
      local seen = {}
      local srv = echo_server(seen)
      assert.are.equal("HTTP/1.1 101 Switching Protocols\naccept ok\n8 1002\n", client(srv.port, "unmasked"))
      helper.wait_until(function() return seen.code end, 5, "the handler to see the close")
      assert.are.equal(1002, seen.code)
      srv:close()
      srv:wait_closed()
    end)

    it("errors of send() and req:websocket() name the caller's line", function()
      local seen, got, want = {}, {}, {}
      local srv = echo_server(seen)
      local ws = websocket.connect(("ws://127.0.0.1:%d/x"):format(srv.port))
      local here = debug.getinfo(1, "l").currentline
      assert.are.equal(here + 1, helper.arg_error_line(function() ws:send(1) end, FILE))
      assert.are.equal(here + 2, helper.arg_error_line(function() ws:send("x", "json") end, FILE))
      ws:close()
      -- in a handler; check_protocols runs in websocket.lua, called from
      -- http_server.lua's req:websocket()
      local hsrv = web.serve(function(req)
        local function at(f, lead) -- the handler's own failure would be a bare 500
          local ok, line = pcall(helper.arg_error_line, f, FILE, lead)
          return ok and line or tostring(line)
        end
        local l = debug.getinfo(1, "l").currentline
        if req.path == "/plain" then
          got[5], want[5] = at(function() req:websocket() end, "websocket%(%): not a WebSocket %(version 13%) handshake$"), l + 2
          return "done"
        end
        got[1] = at(function() req:websocket(7) end)
        got[2] = at(function() req:websocket{proto = 1} end, "websocket%(%): unknown option 'proto'$")
        got[3] = at(function() req:websocket{protocols = {"a b"}} end, "websocket%(%): protocols%[1%] must be a token")
        got[4] = at(function() req:websocket{max_message = 0.5} end, "websocket%(%): max_message must be a positive integer$")
        want[1], want[2], want[3], want[4] = l + 5, l + 6, l + 7, l + 8
        return "done"
      end, "127.0.0.1", 0)
      srv:close()
      srv:wait_closed()
      local http = require "asyncio.http"
      local url = ("http://127.0.0.1:%d/"):format(hsrv.port)
      local ok1, res1 = pcall(http.fetch, url, {headers = {Upgrade = "websocket", Connection = "Upgrade",
        ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==", ["Sec-WebSocket-Version"] = "13"}})
      local ok2, res2 = pcall(http.fetch, url .. "plain")
      hsrv:close()
      hsrv:wait_closed()
      assert.is_true(ok1, tostring(res1))
      assert.is_true(ok2, tostring(res2))
      assert.are.equal("done", res1:text())
      assert.are.equal("done", res2:text())
      assert.are.same(want, got)
    end)

    it("lasync client to lasync server, and a plain request refused", function()
      local seen = {}
      local srv = echo_server(seen)
      local ws = websocket.connect(("ws://127.0.0.1:%d/x"):format(srv.port))
      ws:send(("b"):rep(100000), "binary")
      assert.are.same({"srv:" .. ("b"):rep(100000), "binary"}, {ws:receive()})
      ws:close(4001, "done")
      helper.wait_until(function() return seen.code end, 5, "the handler to see the close")
      assert.are.equal(4001, seen.code)
      local res = require("asyncio.http").fetch(("http://127.0.0.1:%d/plain"):format(srv.port))
      assert.are.equal(426, res.status)
      assert.matches("not a WebSocket", tostring(seen.err))
      srv:close()
      srv:wait_closed()
    end)
  end)

  it("refuses bad urls and options", function()
    helper.fails_with("bad argument #1 to 'websocket'", websocket.connect, 42)
    helper.fails_with("bad argument #1 to 'websocket'", websocket.connect, "ws://a b/")
    helper.fails_with("url must be ws://", websocket.connect, "http://127.0.0.1/")
    helper.fails_with("need a wss:// url", websocket.connect, "ws://127.0.0.1:1/", {ssl = true})
    helper.fails_with("need a wss:// url", websocket.connect, "ws://127.0.0.1:1/", {server_hostname = "a"})
    helper.fails_with("cannot have ssl = false", websocket.connect, "wss://127.0.0.1:1/", {ssl = false})
    helper.fails_with("unknown option 'max_msg'", websocket.connect, "ws://127.0.0.1:1/", {max_msg = 1})
    helper.fails_with("max_message must be", websocket.connect, "ws://127.0.0.1:1/", {max_message = 0})
    -- every option is checked before anything is sent (the port refuses)
    local url = "ws://127.0.0.1:1/"
    for _, c in ipairs{
      {{headers = 5}, "websocket%(%): option headers must be a table of name = value, got number$"},
      {{headers = {"x"}}, "websocket%(%): header name number is not a token$"},
      {{headers = {["a b"] = "x"}}, [[websocket%(%): header name "a b" is not a token$]]},
      {{headers = {["X-A:"] = "x"}}, [[websocket%(%): header name "X%-A:" is not a token$]]},
      {{headers = {X = {}}}, "websocket%(%): header X must be a string without control characters, got table$"},
      {{headers = {X = "a\0b"}}, "websocket%(%): header X must be a string without control characters, got one with a control character$"},
      {{headers = {X = "a\r\nEvil: 1"}}, "websocket%(%): header X must .*got one with a control character$"},
      {{timeout = "x"}, "websocket%(%): timeout must be a positive number of seconds, got x$"},
      {{timeout = -1}, "websocket%(%): timeout must be a positive number of seconds, got %-1$"},
      {{timeout = 0/0}, "websocket%(%): timeout must be a positive number of seconds, got "},
    } do
      helper.fails_with("^[^:]*http_server_websocket_spec%.lua:%d+: " .. c[2],
        function() websocket.connect(url, c[1]) end)
    end
    helper.fails_with("websocket%(%): url port must be 0%-65535, got 99999999$",
      websocket.connect, "ws://127.0.0.1:99999999/")
    helper.fails_with("websocket%(%): option server_hostname must be a string, got number$",
      websocket.connect, "wss://127.0.0.1:1/", {server_hostname = 5})
    helper.fails_with("websocket%(%): option ssl must be true or an SSLContext, got string$",
      websocket.connect, "wss://127.0.0.1:1/", {ssl = "x"})
  end)

  -- parse_url, stream_opts and check_protocols are a call or two below
  -- connect(): the error names the caller's line all the same, and no
  -- compiled-in part's (asyncio/websocket.lua).
  it("argument errors name the caller's line, however deep the check", function()
    local function line_of(f, lead) return helper.arg_error_line(f, FILE, lead) end
    local url = "ws://127.0.0.1:1/"
    local here = debug.getinfo(1, "l").currentline
    assert.are.equal(here + 1, line_of(function() websocket.connect(42) end))
    assert.are.equal(here + 2, line_of(function() websocket.connect(url, 5) end))
    assert.are.equal(here + 3, line_of(function() websocket.connect(url, {max_msg = 1}) end, "websocket%(%): unknown option 'max_msg'$"))
    assert.are.equal(here + 4, line_of(function() websocket.connect("http://127.0.0.1/") end, "websocket%(%): url must be ws://"))
    assert.are.equal(here + 5, line_of(function() websocket.connect(url, {ssl = true}) end, "websocket%(%): options ssl and server_hostname need a wss:// url"))
    assert.are.equal(here + 6, line_of(function() websocket.connect("wss://127.0.0.1:1/", {ssl = false}) end, "websocket%(%): a wss:// url cannot have ssl = false$"))
    assert.are.equal(here + 7, line_of(function() websocket.connect(url, {max_message = 0}) end, "websocket%(%): max_message must be a positive integer$"))
    assert.are.equal(here + 8, line_of(function() websocket.connect(url, {protocols = {"a", "a"}}) end, "websocket%(%): protocol 'a' is listed twice$"))
    assert.are.equal(here + 9, line_of(function() websocket.connect(url, {protocols = {}}) end, "websocket%(%): protocols must be a non%-empty list"))
  end)

  -- Hostile arguments to the methods of a connection: each refused at the
  -- caller's line in Lua's wording, before anything is sent, as Python's
  -- websockets 10.4 refuses them (frames.py: control frames over 125
  -- bytes, close codes outside 1000-1003, 1007-1014, 3000-4999, reasons
  -- over 123 bytes); the connection goes on working, and what is allowed
  -- at the limits reaches a Python websockets server intact.
  it("refuses hostile arguments to send, ping, pong and close at the caller's line", function()
    local code = [[
import asyncio, websockets
async def handler(ws):
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass # a code other than 1000/1001
    print(ws.close_code, len(ws.close_reason.encode()), ws.close_reason[:2], flush=True)
async def main():
    async with websockets.serve(handler, "127.0.0.1", 0) as s:
        print(s.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(30)
asyncio.run(main())
]]
    local p = asyncio.create_subprocess_exec("/usr/bin/python3", {"-c", code}, {stdout = "pipe"})
    local port = tonumber(asyncio.wait_for(function() return p.stdout:readline() end, PEER_WAIT))
    local ws = websocket.connect(("ws://127.0.0.1:%d/"):format(port))
    local function err(f)
      local ok, e = pcall(f)
      assert.is_false(ok, "expected an error")
      return tostring(e)
    end
    local big = ("x"):rep(1000000)
    local here = debug.getinfo(1, "l").currentline
    local cases = {
      {function() ws:ping(1) end, "bad argument #1 to 'ping' (string expected, got number)"},
      {function() ws:ping({}) end, "bad argument #1 to 'ping' (string expected, got table)"},
      {function() ws:ping(("p"):rep(126)) end, "bad argument #1 to 'ping' (at most 125 bytes expected (a control frame), got 126)"},
      {function() ws:pong(true) end, "bad argument #1 to 'pong' (string expected, got boolean)"},
      {function() ws:pong(big) end, "bad argument #1 to 'pong' (at most 125 bytes expected (a control frame), got 1000000)"},
      {function() ws:send() end, "bad argument #1 to 'send' (string expected, got no value)"},
      {function() ws:send(12) end, "bad argument #1 to 'send' (string expected, got number)"},
      {function() ws:send("\xff\xfe") end, "bad argument #1 to 'send' (a text message must be valid UTF-8; send bytes as 'binary')"},
      {function() ws:send("\xed\xa0\x80") end, "bad argument #1 to 'send' (a text message must be valid UTF-8; send bytes as 'binary')"},
      {function() ws:send("x", {binary = true}) end, "bad argument #2 to 'send' ('text' or 'binary' expected, got table)"},
      {function() ws:send("x", "json") end, "bad argument #2 to 'send' ('text' or 'binary' expected, got 'json')"},
      {function() ws:send("x", "binary\0") end, "bad argument #2 to 'send' ('text' or 'binary' expected, got 'binary\\0')"},
      {function() ws:close("a") end, "bad argument #1 to 'close' (close code expected (an integer), got string)"},
      {function() ws:close(1000.5) end, "bad argument #1 to 'close' (close code expected (an integer), got 1000.5)"},
      {function() ws:close(1005) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 1005)"},
      {function() ws:close(1006) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 1006)"},
      {function() ws:close(999) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 999)"},
      {function() ws:close(5000) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 5000)"},
      {function() ws:close(1004) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 1004)"},
      {function() ws:close(1015) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 1015)"},
      {function() ws:close(2999) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 2999)"},
      {function() ws:close(65536 + 1000) end, "bad argument #1 to 'close' (close code 1000-1003, 1007-1014 or 3000-4999 expected, got 66536)"},
      {function() ws:close(1000, 5) end, "bad argument #2 to 'close' (string expected, got number)"},
      {function() ws:close(1000, ("r"):rep(124)) end, "bad argument #2 to 'close' (a reason of at most 123 bytes expected, got 124)"},
      {function() ws:close(1000, big) end, "bad argument #2 to 'close' (a reason of at most 123 bytes expected, got 1000000)"},
      {function() ws:close(1000, "\xc0\x80") end, "bad argument #2 to 'close' (a reason must be valid UTF-8)"},
      {function() ws.send("x") end, "calling 'send' on bad self (websocket expected, got string)"},
      {function() ws.close(nil) end, "calling 'close' on bad self (websocket expected, got nil)"},
    }
    for i, c in ipairs(cases) do
      local e = err(c[1])
      assert.are.equal(("%s:%d: %s"):format(e:match("^[^:]*"), here + 1 + i, c[2]), e)
      assert.matches("^[^:]*" .. FILE .. "$", e:match("^[^:]*"))
    end
    -- nothing was sent: the connection still works, at the limits too
    ws:send("a\0b")
    assert.are.same({"a\0b", "text"}, {ws:receive()})
    ws:send("\xff\0", "binary")
    assert.are.same({"\xff\0", "binary"}, {ws:receive()})
    ws:ping(("p"):rep(125))
    ws:pong(("q"):rep(125))
    ws:send("after")
    assert.are.same({"after", "text"}, {ws:receive()})
    -- a <close> variable closes with 1000 when an error ends its scope
    -- (__close gets the error as its second argument, not a code)
    local ws2
    local ok, e = pcall(function()
      local w <close> = websocket.connect(("ws://127.0.0.1:%d/"):format(port))
      ws2 = w
      error("boom", 0)
    end)
    assert.are.same({false, "boom", true}, {ok, e, ws2.closed})
    assert.are.equal("1000 0 \n", asyncio.wait_for(function() return p.stdout:readline() end, PEER_WAIT))
    -- a 123-byte reason of 2-byte characters, and the highest code
    ws:close(4999, ("é"):rep(61) .. "!")
    assert.is_true(ws.closed)
    local out = asyncio.wait_for(function() return p.stdout:readline() end, PEER_WAIT)
    assert.are.equal("4999 123 éé\n", out)
    p:kill()
    p:wait()
  end)

  describe("subprotocols (Sec-WebSocket-Protocol)", function()
    -- Python's websockets library (Debian's python3-websockets) as the peer
    local PY = "/usr/bin/python3"

    local function py_server(protocols)
      local code = ([[
import asyncio, websockets
async def handler(ws):
    await ws.send("chose:" + str(ws.subprotocol))
    await ws.wait_closed()
async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=%s) as s:
        print(s.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(30)
asyncio.run(main())
]]):format(protocols)
      local p = asyncio.create_subprocess_exec(PY, {"-c", code}, {stdout = "pipe"})
      local port = tonumber(asyncio.wait_for(function() return p.stdout:readline() end, PEER_WAIT))
      return p, port
    end

    local function py_client(port, protocols)
      local code = ([[
import asyncio, websockets
async def main():
    # waits for the server to end the TCP connection after the close
    # handshake (up to close_timeout): the socket must really close
    async with websockets.connect("ws://127.0.0.1:%d/p", subprotocols=%s,
                                  close_timeout=30) as ws:
        print(ws.subprotocol, await ws.recv())
asyncio.run(main())
]]):format(port, protocols)
      local p = asyncio.create_subprocess_exec(PY, {"-c", code}, {stdout = "pipe", stderr = "pipe"})
      local out = asyncio.wait_for(function() return p.stdout:read() end, PEER_WAIT)
      local err = p.stderr:read()
      p:wait()
      return out, err
    end

    it("the lasync client offers its list; ws.protocol is the server's choice", function()
      local p, port = py_server('["chat"]')
      local ws = websocket.connect(("ws://127.0.0.1:%d/"):format(port), {protocols = {"x-none", "chat"}})
      assert.are.equal("chat", ws.protocol)
      assert.are.equal("chose:chat", ws:receive())
      ws:close()
      -- no protocol in common: the server chooses none
      ws = websocket.connect(("ws://127.0.0.1:%d/"):format(port), {protocols = {"other"}})
      assert.is_nil(ws.protocol)
      assert.are.equal("chose:None", ws:receive())
      ws:close()
      -- and none offered: none chosen
      ws = websocket.connect(("ws://127.0.0.1:%d/"):format(port))
      assert.is_nil(ws.protocol)
      ws:close()
      p:kill()
      p:wait()
    end)

    it("req:websocket{protocols} picks the first the client offered that it speaks", function()
      local srv = web.serve(function(req)
        local ws = req:websocket{protocols = {"a", "b"}}
        ws:send("chose:" .. tostring(ws.protocol))
        ws:receive()
      end, "127.0.0.1", 0)
      local out, err = py_client(srv.port, '["c", "b", "a"]')
      assert.are.equal("b chose:b\n", out, err)
      out, err = py_client(srv.port, '["zzz"]')
      assert.are.equal("None chose:nil\n", out, err)
      -- lasync to lasync
      local ws = websocket.connect(("ws://127.0.0.1:%d/"):format(srv.port), {protocols = {"a"}})
      assert.are.equal("a", ws.protocol)
      assert.are.equal("chose:a", ws:receive())
      ws:close()
      srv:close()
      srv:wait_closed()
    end)

    it("refuses a server that chooses a protocol the client did not offer", function()
      local srv = asyncio.start_server(function(r, w)
        local head = r:readuntil("\r\n\r\n")
        local key = head:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r]+)")
        w:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ..
          "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. websocket.accept_key(key) ..
          "\r\nSec-WebSocket-Protocol: evil\r\n\r\n")
        r:read()
        w:close()
      end, "127.0.0.1", 0)
      local url = ("ws://127.0.0.1:%d/"):format(srv.port)
      local err = helper.raises(asyncio.ConnectionError, websocket.connect, url, {protocols = {"good"}})
      assert.matches("chose subprotocol 'evil', which was not offered", tostring(err))
      err = helper.raises(asyncio.ConnectionError, websocket.connect, url)
      assert.matches("not offered", tostring(err))
      srv:close()
      srv:wait_closed()
    end)

    it("refuses malformed protocol lists on both sides", function()
      local url = "ws://127.0.0.1:1/"
      local function refuses(pattern, protocols)
        helper.fails_with(pattern, websocket.connect, url, {protocols = protocols})
      end
      refuses("protocols must be a non%-empty list of strings, got string", "chat")
      refuses("got an empty table", {})
      refuses("protocols%[1%] must be a token", {"a b"})
      refuses("protocols%[1%] must be a token", {"a,b"})
      refuses("protocols%[2%] must be a token", {"a", "x\0y"})
      refuses("protocols%[1%] must be a token", {"\r\nX-Injected: 1"})
      refuses("protocols%[1%] must be a token.*got number", {42})
      refuses("listed twice", {"a", "a"})
      refuses("protocols must be a list", {"a", x = "b"})
      local seen = {}
      local srv = web.serve(function(req)
        for i, opts in ipairs{{protocols = "a"}, {protocols = {}}, {protocols = {"a b"}},
                              {proto = {"a"}}, 7} do
          local ok, e = pcall(req.websocket, req, opts)
          seen[i] = not ok and tostring(e)
        end
        return "done"
      end, "127.0.0.1", 0)
      local res = require("asyncio.http").fetch(("http://127.0.0.1:%d/"):format(srv.port),
        {headers = {Upgrade = "websocket", Connection = "Upgrade",
                    ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==", ["Sec-WebSocket-Version"] = "13"}})
      assert.are.equal("done", res:text())
      assert.matches("non%-empty list of strings, got string", seen[1])
      assert.matches("got an empty table", seen[2])
      assert.matches("must be a token", seen[3])
      assert.matches("unknown option 'proto'", seen[4])
      assert.matches("table expected, got number", seen[5])
      srv:close()
      srv:wait_closed()
    end)
  end)

  describe("wss:// (TLS streams)", function()
    local tlshelper = require "spec.tlshelper"
    teardown(function() tlshelper.cleanup() end)

    -- The Python RFC 6455 peer behind Python's ssl module, with a
    -- certificate for localhost / 127.0.0.1 signed by the test CA.
    local function tls_peer()
      local c = tlshelper.certs()
      local p = asyncio.create_subprocess_exec("python3",
        {"spec/fixtures/ws_peer.py", c.server.cert, c.server.key}, {stdout = "pipe"})
      local port = tonumber(asyncio.wait_for(function() return p.stdout:readline() end, PEER_WAIT))
      return p, port
    end

    it("talks to a TLS peer with a context that trusts its CA", function()
      local p, port = tls_peer()
      local ws = websocket.connect(("wss://127.0.0.1:%d/secure"):format(port),
        {ssl = tlshelper.client_ctx()})
      local peercert = ws.writer:get_extra_info("peercert")
      assert.are.equal("localhost", peercert.subject.commonName)
      ws:send("hi")
      assert.are.same({"echo:hi", "text"}, {ws:receive()})
      ws:send("frag")
      assert.are.same({"hello", "text"}, {ws:receive()})
      local long = ("L"):rep(100000) -- several TLS records each way
      ws:send(long, "binary")
      assert.are.same({"echo:" .. long, "binary"}, {ws:receive()})
      ws:close(4002, "tls bye")
      assert.are.equal("close 4002 tls bye\n", peer_log(p))
    end)

    it("raises SSLCertVerificationError for an unknown CA (ssl = true) and a wrong name", function()
      local p, port = tls_peer()
      local url = ("wss://127.0.0.1:%d/"):format(port)
      -- ssl = true: the system store, which does not know the test CA
      local err = helper.raises(asyncio.ssl.SSLCertVerificationError, websocket.connect, url)
      assert.are.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
      assert.are.equal("unable to get local issuer certificate", err.verify_message)
      assert.are.equal("handshake failed\n", peer_log(p))
      -- a trusted certificate that does not name other.example
      p, port = tls_peer()
      err = helper.raises(asyncio.ssl.SSLCertVerificationError, websocket.connect,
        ("wss://127.0.0.1:%d/"):format(port),
        {ssl = tlshelper.client_ctx(), server_hostname = "other.example"})
      assert.matches("Hostname mismatch", err.verify_message)
      assert.are.equal("handshake failed\n", peer_log(p))
    end)

    it("gets an SSLError from a plain ws:// server", function()
      local srv = web.serve(function() return "plain" end, "127.0.0.1", 0)
      helper.raises(asyncio.ssl.SSLError, websocket.connect,
        ("wss://127.0.0.1:%d/"):format(srv.port), {ssl = tlshelper.client_ctx()})
      srv:close()
      srv:wait_closed()
    end)
  end)
end)
