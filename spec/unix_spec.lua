-- Unix domain sockets: open_unix_connection / start_unix_server against
-- Python peers (socket.AF_UNIX), stale socket files, permissions, names.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"

local function sock_path()
  return helper.tmpname(".sock")
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil or os.rename(path, path) == true
end

local function mode_of(path)
  local p = io.popen("stat -c %A " .. helper.quote(path))
  local m = p:read("l")
  p:close()
  return m
end

local upper_echo = io_helper.upper_echo

-- A Python AF_UNIX client: n connections in threads, each sending
-- `rounds` lines and checking the upper-cased echo.
local CLIENT = [[
import socket, sys, threading
path, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = []
def one(i):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rb")
    for k in range(rounds):
        msg = f"msg {i} round {k} abc\n".encode()
        s.sendall(msg)
        assert f.readline() == msg.upper()
    s.close()
    ok.append(1)
print("start", flush=True)
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print("ok", len(ok), flush=True)
]]

-- A Python AF_UNIX server answering each connection with `body` (c is
-- the accepted socket).  stderr: the stale-file probe connects and
-- leaves at once.
local function py_unix_server(path, body)
  return io_helper.py_server(body, path, {stderr = "devnull"})
end

describe("Unix domain sockets", function()
  after_each(helper.no_leaks)

  it("serves 20 concurrent Python clients with the same stream types as TCP", function()
    local path = sock_path()
    local types = {}
    local srv <close> = asyncio.start_unix_server(function(r, w)
      types.r, types.w = getmetatable(r), getmetatable(w)
      upper_echo(r, w)
    end, path)
    assert.is_true(srv:is_serving())
    assert.are.equal(path, srv.sockets[1])
    assert.is_nil(srv.port)
    local p = io_helper.python(CLIENT, {path, "20", "10"})
    assert.are.equal("ok 20\n", p.stdout:readline())
    assert.are.equal(0, p:wait())
    local tsrv <close> = asyncio.start_server(function() end, "127.0.0.1", 0)
    local tr, tw = asyncio.open_connection("127.0.0.1", tsrv.port)
    assert.are.equal(getmetatable(tr), types.r)
    assert.are.equal(getmetatable(tw), types.w)
    tw:close()
  end)

  it("connects to a Python server and reads its reply to EOF", function()
    local path = sock_path()
    local p = py_unix_server(path, [[
d = c.recv(100)
c.sendall(b"got " + d + b"\n" + b"x" * 300000)
]])
    local r, w = asyncio.open_unix_connection(path)
    w:write("hello")
    assert.are.equal("got hello\n", r:readline())
    assert.are.equal(300000, #r:read())
    assert.is_true(r:at_eof())
    w:close()
    io_helper.stop(p)
    os.remove(path)
  end)

  it("get_extra_info gives the socket path on both sides (\"\" for the unnamed client end)", function()
    local path = sock_path()
    local seen = asyncio.Queue()
    local srv <close> = asyncio.start_unix_server(function(r, w)
      seen:put{w:get_extra_info("sockname"), w:get_extra_info("peername")}
      r:read()
    end, path)
    local r, w = asyncio.open_unix_connection(path)
    assert.are.equal("", w:get_extra_info("sockname"))
    assert.are.equal(path, w:get_extra_info("peername"))
    assert.are.equal("dflt", w:get_extra_info("cipher", "dflt"))
    local s = seen:get()
    assert.are.same({path, ""}, s)
    w:close()
  end)

  it("removes its socket file when the server closes", function()
    local path = sock_path()
    do
      local srv <close> = asyncio.start_unix_server(function() end, path)
      assert.is_true(exists(path))
      assert.matches("^s", mode_of(path))
    end
    assert.is_false(exists(path))
    local srv = asyncio.start_unix_server(function() end, path)
    srv:close()
    assert.is_false(exists(path))
    srv:wait_closed()
    local ok, e = pcall(asyncio.open_unix_connection, path)
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.FileNotFoundError))
  end)

  it("replaces a stale socket file left by a dead server", function()
    local path = sock_path()
    -- a Python server that binds and exits without removing its file
    local p = io_helper.python([[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
print("bound", flush=True)
]], {path})
    assert.are.equal(0, p:wait())
    assert.is_true(exists(path))
    local ok, e = pcall(asyncio.open_unix_connection, path)
    assert.is_true(asyncio.is(e, asyncio.ConnectionRefusedError), tostring(e))
    local srv <close> = asyncio.start_unix_server(upper_echo, path)
    local r, w = asyncio.open_unix_connection(path)
    w:write("stale")
    w:write_eof()
    assert.are.equal("STALE", r:read())
    w:close()
  end)

  it("refuses a path where a live server listens (EADDRINUSE) and leaves it working", function()
    local path = sock_path()
    local p = py_unix_server(path, [[c.sendall(b"python")]])
    local ok, e = pcall(asyncio.start_unix_server, function() end, path)
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.OSError))
    assert.are.equal("EADDRINUSE", e.code)
    assert.are.equal(path, e.path)
    local r, w = asyncio.open_unix_connection(path)
    assert.are.equal("python", r:read())
    w:close()
    io_helper.stop(p)
    -- our own live server too
    local srv <close> = asyncio.start_unix_server(function() end, path)
    local ok2, e2 = pcall(asyncio.start_unix_server, function() end, path)
    assert.is_false(ok2)
    assert.are.equal("EADDRINUSE", e2.code)
  end)

  it("refuses to replace a file that is not a socket", function()
    local path = sock_path()
    helper.write_file(path, "precious")
    local ok, e = pcall(asyncio.start_unix_server, function() end, path)
    assert.is_false(ok)
    assert.are.equal("EADDRINUSE", e.code)
    local f = io.open(path)
    assert.are.equal("precious", f:read("a"))
    f:close()
    os.remove(path)
  end)

  it("sets the socket file's permissions with mode", function()
    local path = sock_path()
    local srv <close> = asyncio.start_unix_server(function() end, path,
      {mode = tonumber("600", 8)})
    assert.are.equal("srw-------", mode_of(path))
    srv:close()
    local srv2 <close> = asyncio.start_unix_server(function() end, path,
      {mode = tonumber("666", 8)})
    assert.are.equal("srw-rw-rw-", mode_of(path))
  end)

  it("serves on a Linux abstract name (leading NUL byte), with no file", function()
    local name = "\0lasync-spec-" .. tostring(os.time()) .. math.random(1e6)
    local srv <close> = asyncio.start_unix_server(function(r, w)
      w:write("abstract " .. r:readline())
    end, name)
    assert.are.equal(name, srv.sockets[1])
    local p, line = io_helper.python([[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1].replace("@", "\0", 1))
s.sendall(b"py\n")
print(repr(s.recv(100)), flush=True)
]], {"@" .. name:sub(2)})
    assert.are.equal([[b'abstract py\n']], line)
    p:wait()
    local r, w = asyncio.open_unix_connection(name)
    assert.are.equal(name, w:get_extra_info("peername"))
    w:write("lua\n")
    assert.are.equal("abstract lua\n", r:read())
    w:close()
  end)

  it("a reader cancelled while waiting loses nothing", function()
    local path = sock_path()
    local go = asyncio.Event()
    local srv <close> = asyncio.start_unix_server(function(r, w)
      go:wait()
      w:write("late data\n")
      r:read()
    end, path)
    local r, w = asyncio.open_unix_connection(path)
    local t = asyncio.create_task(function() return r:readline() end)
    asyncio.sleep(0.01)
    t:cancel()
    assert.is_false(pcall(t.await, t))
    go:set()
    assert.are.equal("late data\n", r:readline())
    w:close()
  end)

  it("a handler sees EOF and then write errors when the Python peer closes", function()
    local path = sock_path()
    local result = asyncio.Queue()
    local srv <close> = asyncio.start_unix_server(function(r, w)
      local got = r:read()
      for _ = 1, 50 do w:write(("z"):rep(65536)) end
      local ok, e = pcall(w.drain, w)
      result:put{got, ok, e and asyncio.is(e, asyncio.ConnectionError)}
    end, path)
    local p = io_helper.python([[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1]); s.sendall(b"bye"); s.close()
print("done", flush=True)
]], {path})
    p:wait()
    local res = result:get()
    assert.are.equal("bye", res[1])
    assert.is_false(res[2])
    assert.is_true(res[3])
  end)
end)

describe("Unix sockets against bad input", function()
  after_each(helper.no_leaks)

  it("refuses NUL bytes inside a path, empty paths and wrong types", function()
    for _, f in ipairs{
      function() asyncio.open_unix_connection("/tmp/a\0b") end,
      function() asyncio.start_unix_server(function() end, "/tmp/a\0b") end,
    } do
      local ok, e = pcall(f)
      assert.is_false(ok)
      assert.matches("NUL byte", e)
    end
    assert.has_error(function() asyncio.open_unix_connection("") end,
      "bad argument #1 to 'open_unix_connection' (empty socket path)")
    assert.has_error(function() asyncio.open_unix_connection("\0") end)
    assert.has_error(function() asyncio.open_unix_connection(42 == 42 and {} or nil) end)
    assert.has_error(function() asyncio.start_unix_server("nope", sock_path()) end)
    assert.has_error(function() asyncio.start_unix_server(function() end) end)
  end)

  it("refuses unknown option keys and bad option values", function()
    local path = sock_path()
    assert.has_error(function() asyncio.open_unix_connection(path, {ssl = true}) end,
      "bad argument #2 to 'open_unix_connection' (unknown option 'ssl')")
    assert.has_error(function() asyncio.start_unix_server(function() end, path, {port = 1}) end,
      "bad argument #3 to 'start_unix_server' (unknown option 'port')")
    local ok, e = pcall(asyncio.start_unix_server, function() end, path, {mode = "600"})
    assert.is_false(ok)
    assert.matches("option 'mode'", e)
    ok, e = pcall(asyncio.start_unix_server, function() end, path, {mode = 1 << 40})
    assert.matches("option 'mode'", e)
    ok, e = pcall(asyncio.start_unix_server, function() end, "\0abstract-mode", {mode = 384})
    assert.matches("abstract socket has no file", e)
    ok, e = pcall(asyncio.start_unix_server, function() end, path, {backlog = -1})
    assert.matches("backlog", e)
    ok, e = pcall(asyncio.open_unix_connection, path, {limit = 0})
    assert.matches("limit", e)
    assert.is_false(exists(path))
  end)

  it("a path longer than sun_path is an OSError ENAMETOOLONG, and 107 bytes still work", function()
    local dir = helper.tmpname(".d")
    assert.is_true(os.execute("mkdir " .. dir))
    local long = dir .. "/" .. ("x"):rep(107 - #dir - 1)
    assert.are.equal(107, #long)
    local srv = asyncio.start_unix_server(function(r, w) w:write("ok") end, long)
    local r, w = asyncio.open_unix_connection(long)
    assert.are.equal("ok", r:read())
    w:close()
    srv:close()
    srv:wait_closed()
    for _, f in ipairs{
      function() return asyncio.open_unix_connection(long .. "y") end,
      function() return asyncio.start_unix_server(function() end, long .. "y") end,
      function() return asyncio.open_unix_connection(("p"):rep(100000)) end,
    } do
      local ok, e = pcall(f)
      assert.is_false(ok)
      assert.is_true(asyncio.is(e, asyncio.OSError))
      assert.are.equal("ENAMETOOLONG", e.code)
      assert.matches("socket path too long %(%d+ bytes, at most 107%)", e.message)
    end
    os.execute("rm -rf " .. dir)
  end)

  it("a bind in a missing directory or without permission is a clear OSError", function()
    local ok, e = pcall(asyncio.start_unix_server, function() end, "/nonexistent-dir/x.sock")
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.FileNotFoundError))
    assert.are.equal("bind", e.op)
  end)

  it("a closed server's methods still answer and the file stays gone", function()
    local path = sock_path()
    local srv = asyncio.start_unix_server(function() end, path)
    srv:close()
    srv:close()
    assert.is_false(srv:is_serving())
    assert.are.same({}, srv.sockets)
    srv:wait_closed()
    assert.is_false(exists(path))
  end)
end)
