-- start_server against real Python clients on loopback.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"

local upper_echo = io_helper.upper_echo

-- A Python asyncio client: `n` concurrent connections, each sending
-- `rounds` messages and checking the upper-cased replies.
local CLIENT = [[
import asyncio, sys
host, port, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("start", flush=True)
async def one(i):
    r, w = await asyncio.open_connection(host, port)
    for k in range(rounds):
        msg = f"msg {i} round {k} abcxyz\n".encode()
        w.write(msg)
        await w.drain()
        got = await r.readexactly(len(msg))
        assert got == msg.upper(), (got, msg)
    w.close()
    await w.wait_closed()
    return 1
async def main():
    res = await asyncio.gather(*(one(i) for i in range(n)))
    print("ok", sum(res), flush=True)
asyncio.run(main())
]]

describe("start_server", function()
  after_each(helper.no_leaks)

  it("serves the upper-casing echo to 50 concurrent Python clients", function()
    local srv <close> = asyncio.start_server(upper_echo, "127.0.0.1", 0)
    assert.is_true(srv.port > 0)
    assert.is_true(srv:is_serving())
    local p = io_helper.python(CLIENT, {"127.0.0.1", tostring(srv.port), "50", "20"})
    assert.are.equal("ok 50\n", p.stdout:readline())
    assert.are.equal(0, p:wait())
  end)

  it("listens on IPv6 and reports its sockets", function()
    local srv = asyncio.start_server(upper_echo, "::1", 0)
    assert.are.equal(1, #srv.sockets)
    assert.are.equal("inet6", srv.sockets[1].family)
    assert.are.equal("::1", srv.sockets[1].address)
    assert.are.equal(srv.port, srv.sockets[1].port)
    local p = io_helper.python(CLIENT, {"::1", tostring(srv.port), "3", "3"})
    assert.are.equal("ok 3\n", p.stdout:readline())
    p:wait()
    srv:close()
    srv:wait_closed()
    assert.is_false(srv:is_serving())
    assert.is_nil(srv.port)
  end)

  it("close stops accepting but lets live connections finish", function()
    local release = asyncio.Event and asyncio.Event() or nil
    local stage = {}
    local srv = asyncio.start_server(function(r, w)
      stage[#stage + 1] = "conn"
      local line = r:readline()
      w:write(line:upper())
      w:drain()
      stage[#stage + 1] = "handled"
    end, "127.0.0.1", 0)
    local port = srv.port
    local r, w = asyncio.open_connection("127.0.0.1", port)
    helper.wait_until(function() return stage[1] end, 5, "the server to take the connection")
    srv:close()
    assert.is_false(srv:is_serving())
    local ok, err = pcall(asyncio.open_connection, "127.0.0.1", port)
    assert.is_true(asyncio.is(err, asyncio.ConnectionRefusedError))
    local waiter = asyncio.create_task(function() srv:wait_closed(); return "closed" end)
    asyncio.sleep(0.05)
    assert.is_false(waiter:done()) -- the live connection is still served
    w:write("still here\n")
    assert.are.equal("STILL HERE\n", r:readline())
    assert.are.equal("closed", waiter:await())
    assert.are.same({"conn", "handled"}, stage)
    -- the handler returned: its connection was closed
    assert.are.equal("", r:read())
    w:close()
    _ = release
  end)

  it("close_clients and abort_clients end the live connections when asked", function()
    local seen = {}
    local srv = asyncio.start_server(function(r, w)
      local line = r:readline()
      seen[#seen + 1] = line == "" and "eof" or line
    end, "127.0.0.1", 0)
    local conns = {}
    for i = 1, 3 do conns[i] = {asyncio.open_connection("127.0.0.1", srv.port)} end
    asyncio.sleep(0.05)
    srv:close()
    srv:close_clients()
    local function eof(r) -- fails fast (TimeoutError) if nothing closes it
      return asyncio.wait_for(function() return r:read() end, 2 * helper.slow)
    end
    for _, c in ipairs(conns) do assert.are.equal("", eof(c[1])) end
    srv:wait_closed()
    assert.are.same({"eof", "eof", "eof"}, seen)
    for _, c in ipairs(conns) do c[2]:close() end

    local srv2 = asyncio.start_server(function(r) r:read() end, "127.0.0.1", 0)
    local r2, w2 = asyncio.open_connection("127.0.0.1", srv2.port)
    asyncio.sleep(0.05)
    srv2:close()
    srv2:abort_clients()
    assert.are.equal("", eof(r2))
    srv2:wait_closed()
    w2:close()
  end)

  it("serve_forever returns when the server is closed", function()
    local srv = asyncio.start_server(upper_echo, "127.0.0.1", 0)
    asyncio.call_later(0.1, function() srv:close() end)
    local t0 = asyncio.time()
    srv:serve_forever()
    assert.is_true(asyncio.time() - t0 >= 0.09)
    srv:wait_closed()
  end)

  it("a handler's error is reported and closes only its connection", function()
    local out, err, status = helper.run_script([[
      local srv = asyncio.start_server(function(r, w)
        local line = r:readline()
        if line == "boom\n" then error("handler exploded") end
        w:write(line:upper())
        w:drain()
        w:close()
      end, "127.0.0.1", 0)
      local r1, w1 = asyncio.open_connection("127.0.0.1", srv.port)
      local r2, w2 = asyncio.open_connection("127.0.0.1", srv.port)
      w1:write("boom\n")
      print("failed conn:", r1:read() == "")
      w2:write("fine\n")
      print("other conn:", r2:readline())
      srv:close()
      srv:wait_closed()
    ]])
    assert.are.equal(0, status)
    assert.matches("failed conn:\ttrue", out)
    assert.matches("other conn:\tFINE", out)
    assert.matches("connection handler", err)
    assert.matches("handler exploded", err)
    assert.matches("stack traceback", err)
  end)

  it("checks its arguments", function()
    local ok, err = pcall(asyncio.start_server, "nope", "127.0.0.1", 0)
    assert.matches("bad argument #1 to '[%w.]*start_server' %(function expected", err)
    ok, err = pcall(asyncio.start_server, upper_echo, "127.0.0.1", -1)
    assert.matches("port out of range", err)
    ok, err = pcall(asyncio.start_server, upper_echo, "127.0.0.1", 0, {backlog = "x"})
    assert.matches("backlog", err)
    -- a port in use
    local srv = asyncio.start_server(upper_echo, "127.0.0.1", 0)
    ok, err = pcall(asyncio.start_server, upper_echo, "127.0.0.1", srv.port)
    assert.is_true(asyncio.is(err, asyncio.OSError))
    assert.are.equal("EADDRINUSE", err.code)
    srv:close()
    srv:wait_closed()
  end)

  it("shares a port with reuse_port", function()
    local a = asyncio.start_server(upper_echo, "127.0.0.1", 0, {reuse_port = true})
    local b = asyncio.start_server(upper_echo, "127.0.0.1", a.port, {reuse_port = true})
    assert.are.equal(a.port, b.port)
    a:close(); b:close()
    a:wait_closed(); b:wait_closed()
  end)
end)
