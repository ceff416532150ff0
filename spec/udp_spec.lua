-- UDP: create_datagram_endpoint against Python socket peers (echo, flood),
-- IPv4 and IPv6, the bounded receive queue, cancellation, bad input.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"

-- A Python UDP echo server: answers each datagram with b"echo:" + data.
local ECHO = [[
import socket, sys
host = sys.argv[1]
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((host, 0))
print(s.getsockname()[1], flush=True)
while True:
    d, a = s.recvfrom(65536)
    s.sendto(b"echo:" + d, a)
]]

local function port_of(ep)
  return ep:get_extra_info("sockname").port
end

describe("create_datagram_endpoint", function()
  after_each(helper.no_leaks)

  it("talks to a Python UDP echo server over IPv4 and IPv6", function()
    for _, host in ipairs{"127.0.0.1", "::1"} do
      local p, port = io_helper.python(ECHO, {host})
      port = tonumber(port)
      local ep <close> = asyncio.create_datagram_endpoint{
        remote_addr = {host, port}}
      assert.are.equal(host == "::1" and "inet6" or "inet",
        ep:get_extra_info("sockname").family)
      assert.are.same(port, ep:get_extra_info("peername").port)
      for i = 1, 20 do
        ep:send("ping " .. i)
        local data, from, fport = ep:recv()
        assert.are.equal("echo:ping " .. i, data)
        assert.are.equal(host, from)
        assert.are.equal(port, fport)
      end
      io_helper.stop(p)
    end
  end)

  it("receives from a Python sender and answers with sendto / send(data, addr)", function()
    local ep <close> = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
    local p = io_helper.python([[
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
print("ready", flush=True)
s.sendto(b"one", ("127.0.0.1", int(sys.argv[1])))
a, _ = s.recvfrom(100)
s.sendto(b"two", ("127.0.0.1", int(sys.argv[1])))
b, _ = s.recvfrom(100)
print(a.decode(), b.decode(), flush=True)
]], {tostring(port_of(ep))})
    local data, host, port = ep:recv()
    assert.are.equal("one", data)
    ep:sendto("A:" .. data, host, port)
    data, host, port = ep:recv()
    assert.are.equal("two", data)
    ep:send("B:" .. data, {host, port})
    assert.are.equal("A:one B:two\n", p.stdout:readline())
    assert.are.equal(0, p:wait())
  end)

  it("keeps empty and binary datagrams whole, up to the largest IPv4 payload", function()
    local a <close> = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
    local b <close> = asyncio.create_datagram_endpoint{remote_addr = {"127.0.0.1", port_of(a)}}
    local big = ("\0\1\2\255"):rep(65507 // 4) .. "xyz"
    assert.are.equal(65507, #big)
    for _, d in ipairs{"", "\0", big, "a\0b"} do
      b:send(d)
      assert.are.equal(d, (a:recv()))
    end
    local ok, e = pcall(b.send, b, big .. "!")
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.OSError))
    assert.are.equal("EMSGSIZE", e.code)
    ok, e = pcall(b.send, b, ("x"):rep(10 * 1024 * 1024))
    assert.are.equal("EMSGSIZE", e.code)
    assert.are.equal(0, a:stats().truncated)
  end)

  it("bounds the receive queue against a flooding Python peer and counts the drops", function()
    local ep <close> = asyncio.create_datagram_endpoint{
      local_addr = {"127.0.0.1", 0}, max_queue = 10}
    local p = io_helper.python([[
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("ready", flush=True)
for i in range(3000):
    s.sendto(b"%04d" % i + b"x" * 1000, ("127.0.0.1", int(sys.argv[1])))
    if i % 100 == 0: time.sleep(0.002)
print("done", flush=True)
]], {tostring(port_of(ep))})
    assert.are.equal("done\n", p.stdout:readline())
    p:wait()
    asyncio.sleep(0.1)
    local st = ep:stats()
    assert.are.equal(10, st.queued)
    assert.are.equal(10 * 1004, st.queued_bytes)
    assert.is_true(st.received > 10, "received " .. st.received)
    assert.are.equal(st.received - 10, st.dropped)
    -- the first ten are the ones kept, in order
    for i = 0, 9 do
      assert.are.equal(("%04d"):format(i), (ep:recv()):sub(1, 4))
    end
    assert.are.equal(0, ep:stats().queued)
    assert.matches("<DatagramEndpoint queued=0 dropped=%d+>", tostring(ep))
  end)

  it("bounds the queue's bytes with max_queue_bytes (one datagram always fits)", function()
    local a <close> = asyncio.create_datagram_endpoint{
      local_addr = {"127.0.0.1", 0}, max_queue_bytes = 3000}
    local b <close> = asyncio.create_datagram_endpoint{remote_addr = {"127.0.0.1", port_of(a)}}
    b:send(("1"):rep(5000)) -- over the bound, but the queue is empty
    b:send(("2"):rep(10))
    asyncio.sleep(0.05)
    b:send(("3"):rep(10))
    asyncio.sleep(0.05)
    local st = a:stats()
    assert.are.equal(1, st.queued)
    assert.are.equal(2, st.dropped)
    assert.are.equal(5000, #a:recv())
  end)

  it("a recv cancelled after its datagram arrived loses nothing", function()
    local a <close> = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
    local b <close> = asyncio.create_datagram_endpoint{remote_addr = {"127.0.0.1", port_of(a)}}
    local t1 = asyncio.create_task(function() return a:recv() end)
    local t2 = asyncio.create_task(function() return a:recv() end)
    asyncio.sleep(0.01)
    -- t1 is woken for the datagram, then cancelled before it runs (by a
    -- callback queued before the loop reads the datagram, so it runs
    -- first in that turn): the datagram goes to t2
    b:send("only one")
    local state
    asyncio.call_soon(function()
      state = a:stats().queued -- read, and t1 woken for it
      t1:cancel()
    end)
    assert.are.equal("only one", t2:await())
    assert.are.equal(1, state)
    assert.is_false(pcall(t1.await, t1))
    assert.is_true(t1:cancelled())
    -- cancelled while still waiting: the next datagram is still received
    local t3 = asyncio.create_task(function() return a:recv() end)
    asyncio.sleep(0.01)
    t3:cancel()
    assert.is_false(pcall(t3.await, t3))
    b:send("after")
    assert.are.equal("after", (a:recv()))
  end)

  it("close() wakes a waiting recv with InvalidStateError; <close> and close are idempotent", function()
    local a = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
    local t = asyncio.create_task(function() return a:recv() end)
    asyncio.sleep(0.01)
    a:close()
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.InvalidStateError))
    assert.matches("recv%(%): the endpoint is closed", tostring(e))
    a:close()
    assert.is_true(a:is_closing())
    ok, e = pcall(a.send, a, "x", {"127.0.0.1", 9})
    assert.is_true(asyncio.is(e, asyncio.InvalidStateError))
    assert.are.equal("default", a:get_extra_info("sockname", "default"))
    assert.matches("<DatagramEndpoint closed", tostring(a))
  end)

  it("an ICMP port unreachable on a connected endpoint is raised by the next recv", function()
    -- a port nobody listens on: bind one and close it
    local probe = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
    local dead = port_of(probe)
    probe:close()
    local ep <close> = asyncio.create_datagram_endpoint{remote_addr = {"127.0.0.1", dead}}
    ep:send("anyone?")
    local ok, e = pcall(ep.recv, ep)
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.ConnectionRefusedError), tostring(e))
  end)

  it("refuses a broadcast unless allow_broadcast", function()
    local a <close> = asyncio.create_datagram_endpoint{}
    local ok, e = pcall(a.sendto, a, "hi", "255.255.255.255", 9)
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.PermissionError))
    local b <close> = asyncio.create_datagram_endpoint{allow_broadcast = true}
    local ok2, e2 = pcall(b.sendto, b, "hi", "255.255.255.255", 9)
    -- allowed by the socket; a host with no broadcast route says so instead
    assert.is_true(ok2 or e2.code == "ENETUNREACH", tostring(e2))
  end)

  it("shares a port with reuse_port, and refuses to without it", function()
    local a <close> = asyncio.create_datagram_endpoint{
      local_addr = {"127.0.0.1", 0}, reuse_port = true}
    local b <close> = asyncio.create_datagram_endpoint{
      local_addr = {"127.0.0.1", port_of(a)}, reuse_port = true}
    assert.are.equal(port_of(a), port_of(b))
    local ok, e = pcall(asyncio.create_datagram_endpoint,
      {local_addr = {"127.0.0.1", port_of(a)}})
    assert.is_false(ok)
    assert.are.equal("EADDRINUSE", e.code)
    assert.are.equal("bind", e.op)
  end)

  it("resolves host names with getaddrinfo, leaving the options table alone", function()
    local a <close> = asyncio.create_datagram_endpoint{local_addr = {"localhost", 0}}
    assert.are.equal("127.0.0.1", a:get_extra_info("sockname").address)
    local opts = {remote_addr = {"localhost", port_of(a)}, family = "inet"}
    local b <close> = asyncio.create_datagram_endpoint(opts)
    assert.are.same({"localhost", port_of(a)}, opts.remote_addr)
    b:send("by name")
    assert.are.equal("by name", (a:recv()))
    local ok, e = pcall(asyncio.create_datagram_endpoint,
      {local_addr = {"no-such-host.invalid", 0}})
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.OSError))
    assert.are.equal("getaddrinfo", e.op)
  end)

  it("an endpoint nobody waits on does not keep the program alive", function()
    local out, err, status = helper.run_script([[
      local ep = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
      ep:sendto("x", "127.0.0.1", ep:get_extra_info("sockname").port)
      print("end of main")
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("end of main\n", out)
  end)
end)

describe("create_datagram_endpoint against bad input", function()
  after_each(helper.no_leaks)

  local function fails(opts, pattern)
    local ok, e = pcall(asyncio.create_datagram_endpoint, opts)
    assert.is_false(ok)
    assert.matches(pattern, tostring(e))
  end

  it("refuses unknown keys, wrong types and names instead of numeric addresses", function()
    fails({ssl = true}, "unknown option 'ssl'")
    fails("127.0.0.1", "table expected")
    fails({local_addr = "127.0.0.1:0"}, "option 'local_addr': {host, port} expected, got string")
    fails({local_addr = {"127.0.0.1\0evil", 0}}, "NUL")
    fails({local_addr = {"127.0.0.1", 70000}}, "port must be an integer from 0 to 65535")
    fails({local_addr = {"127.0.0.1", "80"}}, "port must be an integer")
    fails({local_addr = {"127.0.0.1", 1.5}}, "port must be an integer")
    fails({remote_addr = {nil, 5}}, "option 'remote_addr'")
    fails({family = "inet7"}, "option 'family'")
    fails({family = "inet6", local_addr = {"127.0.0.1", 0}}, "not all of one family")
    fails({local_addr = {"::1", 0}, remote_addr = {"127.0.0.1", 9}}, "not all of one family")
    fails({max_queue = 0}, "option 'max_queue': positive integer expected")
    fails({max_queue = "10"}, "option 'max_queue'")
    fails({max_queue_bytes = -1}, "option 'max_queue_bytes'")
    fails({max_queue = 2^63}, "option 'max_queue'")
  end)

  it("refuses bad send arguments with errors naming them", function()
    local ep <close> = asyncio.create_datagram_endpoint{}
    assert.has_error(function() ep:send() end)
    assert.has_error(function() ep:send({}) end)
    local ok, e = pcall(ep.send, ep, "x", {"example.com", 9})
    assert.matches("not a numeric IPv4", e)
    ok, e = pcall(ep.sendto, ep, "x", "1.2.3.4\0", 9)
    assert.matches("NUL", e)
    ok, e = pcall(ep.sendto, ep, "x", "127.0.0.1", -1)
    assert.matches("port", e)
    -- not connected and no address
    ok, e = pcall(ep.send, ep, "x")
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.OSError), tostring(e))
    -- connected and an address
    local c <close> = asyncio.create_datagram_endpoint{remote_addr = {"127.0.0.1", 9}}
    ok, e = pcall(c.send, c, "x", {"127.0.0.1", 10})
    assert.is_false(ok)
    assert.are.equal("EISCONN", e.code)
  end)

  it("recv outside a task names itself", function()
    local out, err = helper.run_script([[
      local ep = asyncio.create_datagram_endpoint{}
      asyncio.call_soon(function()
        print(select(2, pcall(ep.recv, ep)))
        ep:close()
      end)
      asyncio.sleep(0.01)
    ]])
    assert.matches("recv%(%) called from a callback", out)
    assert.are.equal("", err)
  end)
end)
