-- Streams (StreamReader/StreamWriter) against real Python peers on loopback.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"

-- A Python peer that waits `delay` seconds before reading everything, then
-- answers with the byte count: a slow reader for the back-pressure specs.
local function slow_reader(delay)
  return io_helper.py_server(([[
time.sleep(%s)
n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    n += len(d)
c.sendall(str(n).encode())
]]):format(delay))
end

describe("streams at the end of the program", function()
  it("a task still waiting on a stream when the loop runs dry is released safely", function()
    -- nothing keeps the loop alive; the waiting task is cancelled and
    -- finalized, and the stream's close must not wake freed memory
    local out, err, status = helper.run_script([[
      local srv = asyncio.start_server(function(r, w) end, "127.0.0.1", 0)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      srv:close()
      asyncio.create_task(function() while true do pcall(w.wait_closed, w) end end)
      r:read()
      asyncio.sleep(0)
      print("end of main")
    ]])
    assert.matches("end of main", out)
    assert.is_nil(err:match("AddressSanitizer"), err)
    assert.is_nil(err:match("Invalid"), err)
    assert.are.equal(0, status, err)
  end)

  it("a finalizer that uses an already finalized reader gets an error, not a crash", function()
    local out, err, status = helper.run_script([[
      local srv = asyncio.start_server(function(r, w) r:read() end, "127.0.0.1", 0)
      local holder = setmetatable({}, {__gc = function(o)
        local ok, e = pcall(o.r.buffered, o.r)
        print(ok, asyncio.is(e, asyncio.InvalidStateError))
      end})
      holder.r = asyncio.open_connection("127.0.0.1", srv.port)
      holder = nil
      collectgarbage() collectgarbage()
      srv:close()
    ]])
    assert.are.equal(0, status, err)
    assert.matches("false\ttrue", out)
  end)
end)

describe("streams", function()
  after_each(helper.no_leaks)

  it("reads lines, exact sizes and separators from a peer", function()
    local p, port = io_helper.py_server([[
c.sendall(b"line one\nline two\nABCDEFxyz--end--tail")
]])
    local r, w = asyncio.open_connection("127.0.0.1", port)
    assert.are.equal("line one\n", r:readline())
    assert.are.equal("line two\n", r:readline())
    assert.are.equal("ABCDEF", r:readexactly(6))
    assert.are.equal("xyz--end--", r:readuntil("--end--"))
    assert.are.equal("tail", r:read())
    assert.is_true(r:at_eof())
    assert.are.equal("", r:read(10))
    assert.are.equal("", r:readline())
    w:close()
    w:wait_closed()
    io_helper.stop(p)
  end)

  it("iterates over lines, keeping the newline", function()
    local p, port = io_helper.py_server([[
c.sendall(b"a\nbb\nccc")
]])
    local r, w = asyncio.open_connection("127.0.0.1", port)
    local got = {}
    for line in r:lines() do got[#got + 1] = line end
    assert.are.same({"a\n", "bb\n", "ccc"}, got)
    w:close()
    io_helper.stop(p)
  end)

  it("raises IncompleteReadError with the partial data", function()
    local p, port = io_helper.py_server([[
c.sendall(b"12345")
]])
    local r, w <close> = asyncio.open_connection("127.0.0.1", port)
    local ok, err = pcall(r.readexactly, r, 10)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.IncompleteReadError))
    assert.are.equal("12345", err.partial)
    assert.are.equal(10, err.expected)
    io_helper.stop(p)
  end)

  it("readuntil raises IncompleteReadError at EOF and LimitOverrunError past the limit", function()
    local p, port = io_helper.py_server([[
c.sendall(b"x" * 70000 + b"|" + b"rest")
]])
    local r, w <close> = asyncio.open_connection("127.0.0.1", port)
    local ok, err = pcall(r.readuntil, r, "|")
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.LimitOverrunError), tostring(err))
    assert.is_true(err.consumed >= 65536)
    -- the data stays buffered: a larger limit lets it through
    r:set_limit(1 << 20)
    assert.are.equal(70001, #r:readuntil("|"))
    ok, err = pcall(r.readuntil, r, "|")
    assert.is_true(asyncio.is(err, asyncio.IncompleteReadError))
    assert.are.equal("rest", err.partial)
    assert.is_nil(err.expected)
    io_helper.stop(p)
  end)

  it("reads a large stream to EOF intact", function()
    local p, port = io_helper.py_server([[
c.sendall(bytes(i % 251 for i in range(3000000)))
]])
    local r, w <close> = asyncio.open_connection("127.0.0.1", port)
    local data = r:read()
    assert.are.equal(3000000, #data)
    assert.are.equal(string.char(0, 1, 2), data:sub(1, 3))
    assert.are.equal(string.char(2999999 % 251), data:sub(-1))
    io_helper.stop(p)
  end)

  it("stops reading while its buffer is full (a fast sender cannot grow it)", function()
    local p, port = io_helper.py_server([[
n = 0
try:
    while n < 20 * 1024 * 1024:
        c.sendall(b"z" * 65536)
        n += 65536
except OSError:
    pass
]])
    local r, w <close> = asyncio.open_connection("127.0.0.1", port)
    asyncio.sleep(0.3)
    local buffered = r:buffered()
    assert.is_true(buffered > 0)
    assert.is_true(buffered <= 2 * 65536, "buffered " .. buffered)
    local total = 0
    while total < 20 * 1024 * 1024 do
      local chunk = r:read(1 << 20)
      assert.is_true(#chunk > 0)
      assert.is_true(r:buffered() <= 2 * 65536)
      total = total + #chunk
    end
    assert.are.equal(20 * 1024 * 1024, total)
    io_helper.stop(p)
  end)

  it("drain suspends a writer while a slow peer does not read", function()
    local p, port = slow_reader(0.5)
    local r, w = asyncio.open_connection("127.0.0.1", port)
    local chunk = string.rep("w", 65536)
    local t0 = asyncio.time()
    local max_buffered, suspended = 0, false
    for _ = 1, 256 do -- 16 MiB, far more than the socket buffers
      w:write(chunk)
      max_buffered = math.max(max_buffered, w:buffer_size())
      local before = asyncio.time()
      w:drain()
      if asyncio.time() - before > 0.05 then suspended = true end
    end
    assert.is_true(suspended, "drain never suspended")
    assert.is_true(asyncio.time() - t0 >= 0.4)
    assert.is_true(max_buffered <= 64 * 1024 + 65536, "buffered " .. max_buffered)
    w:write_eof()
    assert.are.equal(tostring(256 * 65536), r:read())
    w:close()
    io_helper.stop(p)
  end)

  it("a cancelled read loses no data", function()
    -- the peer sends the rest once told to: a fixed pause could end
    -- before the first part arrives, or after the second, under load
    local p, port = io_helper.py_server([[
c.sendall(b"part1-")
c.recv(1)
c.sendall(b"part2\n")
time.sleep(0.3)
]])
    local r, w <close> = asyncio.open_connection("127.0.0.1", port)
    local t = asyncio.create_task(function() return r:readuntil("\n") end)
    helper.wait_until(function() return r:buffered() > 0 end, 5, "the first part")
    assert.are.equal(6, r:buffered())
    t:cancel()
    local ok, err = pcall(t.await, t)
    assert.is_true(asyncio.is(err, asyncio.CancelledError))
    w:write("!")
    assert.are.equal("part1-part2\n", r:readuntil("\n"))
    -- a read cancelled while waiting, then used again
    t = asyncio.create_task(function() return r:read(5) end)
    asyncio.sleep(0.05)
    t:cancel()
    pcall(t.await, t)
    assert.are.equal("", r:read())
    io_helper.stop(p)
  end)

  it("a cancelled drain leaves the writer usable", function()
    local p, port = slow_reader(0.4)
    local r, w = asyncio.open_connection("127.0.0.1", port)
    local chunk = string.rep("d", 1 << 20)
    local t = asyncio.create_task(function()
      for _ = 1, 16 do w:write(chunk); w:drain() end
    end)
    asyncio.sleep(0.1)
    assert.is_false(t:done())
    t:cancel()
    pcall(t.await, t)
    assert.is_true(t:cancelled())
    w:write("tail")
    w:drain()
    w:write_eof()
    local n = tonumber(r:read())
    assert.are.equal(0, (n - 4) % (1 << 20))
    w:close()
    w:wait_closed()
    io_helper.stop(p)
  end)

  it("refuses misuse with clear errors", function()
    local p, port = io_helper.py_server([[
c.recv(10)
]])
    local r, w = asyncio.open_connection("127.0.0.1", port)
    assert.has_error(function() w:write({}) end)
    local ok, err = pcall(function() w:write({}) end)
    assert.matches("bad argument #1 to 'write' %(string expected, got table%)", err)
    ok, err = pcall(function() return r:read("x") end)
    assert.matches("bad argument #1 to 'read'", err)
    ok, err = pcall(r.readexactly, r, -1)
    assert.matches("less than zero", err)
    ok, err = pcall(r.readuntil, r, "")
    assert.matches("[Ss]eparator", err)
    ok, err = pcall(w.read, w)
    assert.is_false(ok)
    -- two readers at once
    local t = asyncio.create_task(function() return r:read(1) end)
    asyncio.sleep(0.05)
    ok, err = pcall(r.read, r, 1)
    assert.is_true(asyncio.is(err, asyncio.InvalidStateError))
    t:cancel()
    pcall(t.await, t)
    w:close()
    assert.is_true(w:is_closing())
    -- as asyncio: write() after close() drops the data, drain() says so,
    -- and the reader gives what it holds, then the end of the stream
    w:write("x")
    ok, err = pcall(w.drain, w)
    assert.is_true(asyncio.is(err, asyncio.ConnectionResetError), tostring(err))
    assert.are.equal("", r:read())
    w:close() -- twice is fine
    w:wait_closed()
    io_helper.stop(p)
  end)

  it("reports peer and socket names, and EOF support", function()
    local p, port = io_helper.py_server([[
c.recv(10)
]])
    local r, w <close> = asyncio.open_connection("127.0.0.1", port)
    local peer = w:get_extra_info("peername")
    local me = w:get_extra_info("sockname")
    assert.are.same({"127.0.0.1", port}, {peer[1], peer[2]})
    assert.are.equal("inet", peer.family)
    assert.are.equal("127.0.0.1", me.address)
    assert.is_true(me.port > 0 and me.port ~= port)
    assert.is_nil(w:get_extra_info("nothing"))
    assert.are.equal("dflt", w:get_extra_info("nothing", "dflt"))
    assert.is_true(w:can_write_eof())
    io_helper.stop(p)
  end)

  it("a to-be-closed writer is closed at the end of its scope", function()
    local p, port = io_helper.py_server([[
d = c.recv(100)
c.sendall(d)
c.recv(100)
]])
    local w2
    do
      local r, w <close> = asyncio.open_connection("127.0.0.1", port)
      w2 = w
      w:write("ping")
      assert.are.equal("ping", r:readexactly(4))
    end
    assert.is_true(w2:is_closing())
    io_helper.stop(p)
  end)
end)

describe("open_connection and getaddrinfo", function()
  after_each(helper.no_leaks)

  it("resolves names into address tables", function()
    local list = asyncio.getaddrinfo("localhost", 8080)
    assert.is_true(#list >= 1)
    local seen = {}
    for _, a in ipairs(list) do
      assert.are.equal(8080, a.port)
      seen[a.address] = a.family
    end
    assert.is_true(seen["127.0.0.1"] == "inet" or seen["::1"] == "inet6")
    local ok, err = pcall(asyncio.getaddrinfo, "no-such-host.invalid", 80)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.OSError))
    assert.matches("^EAI_", err.code)
  end)

  it("connects over IPv6 and through a name", function()
    local p, port = io_helper.py_server([[
c.sendall(b"six\n")
]], "::1")
    local r, w = asyncio.open_connection("::1", port)
    assert.are.equal("six\n", r:readline())
    assert.are.equal("inet6", w:get_extra_info("peername").family)
    w:close()
    -- when "localhost" has both families, 127.0.0.1 (refused) may come
    -- first: every address is tried in turn
    local families = {}
    for _, a in ipairs(asyncio.getaddrinfo("localhost", port)) do
      families[a.family] = true
    end
    if families.inet6 then
      r, w = asyncio.open_connection("localhost", port)
      assert.are.equal("six\n", r:readline())
      w:close()
    end
    io_helper.stop(p)
  end)

  it("raises ConnectionRefusedError with the OS error name", function()
    local p, port = io_helper.py_server("pass")
    io_helper.stop(p) -- nobody listens there now
    local ok, err = pcall(asyncio.open_connection, "127.0.0.1", port)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.ConnectionRefusedError))
    assert.is_true(asyncio.is(err, asyncio.ConnectionError))
    assert.is_true(asyncio.is(err, asyncio.OSError))
    assert.are.equal("ECONNREFUSED", err.code)
    assert.matches("127.0.0.1:" .. port, tostring(err))
  end)

  it("times out when the peer never completes the handshake", function()
    -- a listener with a full backlog that never accepts: SYNs are dropped
    local p, port = io_helper.python([[
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
fill = []
for i in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", s.getsockname()[1]))
    except BlockingIOError: pass
    fill.append(c)
time.sleep(0.2)
print(s.getsockname()[1], flush=True)
time.sleep(60)
]])
    local t0 = asyncio.time()
    local ok, err = pcall(asyncio.open_connection, "127.0.0.1", tonumber(port),
                          {timeout = 0.3})
    local dt = asyncio.time() - t0
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.TimeoutError), tostring(err))
    assert.are.equal("ETIMEDOUT", err.code)
    assert.is_true(dt >= 0.29 and dt < 2 * helper.slow, "took " .. dt)
    io_helper.stop(p)
  end)

  it("checks its arguments", function()
    local ok, err = pcall(asyncio.open_connection, "127.0.0.1", 70000)
    assert.matches("bad argument #2 to '[%w.]*open_connection' %(port out of range", err)
    ok, err = pcall(asyncio.open_connection, "127.0.0.1", "x")
    assert.matches("port number expected", err)
    ok, err = pcall(asyncio.open_connection, {}, 80)
    assert.matches("bad argument #1", err)
    ok, err = pcall(asyncio.open_connection, "127.0.0.1", 80, {timeout = "x"})
    assert.matches("timeout", err)
  end)

  it("a cancelled connect leaves nothing behind", function()
    local t = asyncio.create_task(asyncio.open_connection, "localhost", 9)
    t:cancel()
    local ok, err = pcall(t.await, t)
    assert.is_true(asyncio.is(err, asyncio.CancelledError))
  end)
end)
