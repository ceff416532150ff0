-- Streams, servers, processes, signals and fs against hostile peers and
-- hostile arguments (issue 10): resets mid-write, floods, silence, wrong
-- types, NUL bytes, unknown option keys, huge sizes.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"
local fs = require "asyncio.fs"

-- A lasync server on loopback whose handler is `fn(reader, writer)`.
local function serve(fn, opts)
  local srv = asyncio.start_server(fn, "127.0.0.1", 0, opts)
  return srv, srv.port
end

local raises = helper.raises

local bad_arg = helper.fails_with

describe("hostile peers", function()
  after_each(helper.no_leaks)

  it("a peer that resets mid-write: drain() raises a ConnectionError, the program goes on", function()
    -- SO_LINGER 0 makes close() send RST
    local p, port = io_helper.py_server([[
import struct
c.recv(1000)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
]])
    local r, w = asyncio.open_connection("127.0.0.1", port)
    local err
    for _ = 1, 2000 do
      w:write(string.rep("y", 65536))
      local ok, e = pcall(w.drain, w)
      if not ok then err = e break end
    end
    assert.is_true(asyncio.is(err, asyncio.ConnectionError), tostring(err))
    assert.is_truthy(({ECONNRESET = true, EPIPE = true})[err.code], err.code)
    -- write() itself still never raises
    w:write("more")
    assert.has_error(function() w:drain() end)
    w:close()
    io_helper.stop(p)
  end)

  it("a flood without newlines: readline raises ValueError and memory stays bounded by limit", function()
    local limit = 4096
    local srv, port = serve(function(r, w)
      local chunk = string.rep("z", 65536)
      for _ = 1, 200 do -- 12.5 MiB, unless the client goes away
        w:write(chunk)
        if not pcall(w.drain, w) then break end
      end
      w:close()
    end)
    local r, w = asyncio.open_connection("127.0.0.1", port, {limit = limit})
    asyncio.sleep(0.2) -- nobody reads: reading pauses past the limit
    assert.is_true(r:buffered() <= limit + 128 * 1024, "buffered " .. r:buffered())
    raises(asyncio.ValueError, r.readline, r)
    assert.is_true(r:buffered() <= limit + 128 * 1024, "buffered " .. r:buffered())
    w:close()
    io_helper.close_server(srv)
  end)

  it("a peer that never answers: wait_for times out and the stream stays usable", function()
    local release = asyncio.Event()
    local srv, port = serve(function(r, w)
      release:wait()
      w:write("late\n")
      w:drain()
      w:close()
    end)
    local r, w = asyncio.open_connection("127.0.0.1", port)
    raises(asyncio.TimeoutError, asyncio.wait_for, function() return r:readline() end, 0.1)
    release:set()
    assert.are.equal("late\n", r:readline())
    w:close()
    io_helper.close_server(srv)
  end)

  it("huge sizes: readexactly(maxinteger) at EOF gives IncompleteReadError, read(maxinteger) what there is", function()
    local srv, port = serve(function(r, w)
      w:write("0123456789")
      w:close()
    end, {backlog = math.maxinteger}) -- clamped, not wrapped to a negative int
    local r, w = asyncio.open_connection("127.0.0.1", port, {limit = math.maxinteger})
    assert.are.equal("0123", r:read(4))
    local e = raises(asyncio.IncompleteReadError, r.readexactly, r, math.maxinteger)
    assert.are.equal("456789", e.partial)
    assert.are.equal("", r:read(math.maxinteger))
    w:close()
    io_helper.close_server(srv)
  end)
end)

describe("hostile arguments", function()
  after_each(helper.no_leaks)

  it("wrong types are refused with the argument named", function()
    bad_arg("bad argument #1 to '.-open_connection'", asyncio.open_connection, {}, 80)
    bad_arg("bad argument #2 to '.-open_connection'", asyncio.open_connection, "127.0.0.1", "http")
    bad_arg("bad argument #3 to '.-open_connection'", asyncio.open_connection, "127.0.0.1", 80, 5)
    bad_arg("bad argument #1 to '.-start_server'", asyncio.start_server, "handler", "127.0.0.1", 0)
    bad_arg("bad argument #2 to '.-open_connection'", asyncio.open_connection, "127.0.0.1", 70000)
    bad_arg("bad argument #1 to '.-add_signal_handler'", asyncio.add_signal_handler, {}, print)
    bad_arg("bad argument #2 to '.-add_signal_handler'", asyncio.add_signal_handler, "SIGUSR1", 5)
    bad_arg("bad argument #1 to '.-create_subprocess_exec'", asyncio.create_subprocess_exec, 5 == 5)
  end)

  it("NUL bytes are refused, not cut, wherever C receives a string", function()
    local NUL = "string contains a NUL byte"
    bad_arg(NUL, asyncio.create_subprocess_exec, "true\0rm")
    bad_arg("item 2 contains a NUL byte", asyncio.create_subprocess_exec, "echo", {"a", "b\0c"})
    bad_arg("option 'cwd' contains a NUL byte", asyncio.create_subprocess_exec, "true", {}, {cwd = "/\0tmp"})
    bad_arg("option 'env' name contains a NUL byte", asyncio.create_subprocess_exec, "true", {},
      {env = {["A\0B"] = "1"}})
    bad_arg("option 'env' value contains a NUL byte", asyncio.create_subprocess_exec, "true", {},
      {env = {A = "1\0B=2"}})
    bad_arg("illegal variable name 'A=B'", asyncio.create_subprocess_exec, "true", {}, {env = {["A=B"] = "1"}})
    bad_arg(NUL, asyncio.create_subprocess_shell, "echo hi\0; rm -rf /")
    bad_arg(NUL, asyncio.open_connection, "127.0.0.1\0.evil.example", 80)
    bad_arg(NUL, asyncio.getaddrinfo, "localhost\0x", 80)
    bad_arg(NUL, asyncio.start_server, print, "127.0.0.1\0x", 0)
    bad_arg(NUL, asyncio.add_signal_handler, "SIGUSR1\0", print)
    bad_arg(NUL, fs.read_file, "/etc/passwd\0.txt")
    bad_arg(NUL, fs.write_file, "/tmp/x\0y", "data")
    bad_arg(NUL, fs.open, "/tmp/x", "r\0w")
    bad_arg(NUL, fs.rename, "/tmp/a", "/tmp/b\0c")
  end)

  it("unknown option keys are an error, not silently ignored", function()
    bad_arg("bad argument #3 to '.-open_connection' %(unknown option 'sll'%)",
      asyncio.open_connection, "127.0.0.1", 80, {sll = true})
    bad_arg("unknown option 'stdot'", asyncio.create_subprocess_exec, "true", {}, {stdot = "pipe"})
    bad_arg("unknown option 'shell'", asyncio.create_subprocess_shell, "true", {shell = false})
    bad_arg("bad argument #4 to '.-start_server' %(unknown option 'reuse_adress'%)",
      asyncio.start_server, print, "127.0.0.1", 0, {reuse_adress = true})
    bad_arg("unknown option 'atomc'", fs.write_file, "/tmp/never-written", "x", {atomc = true})
    bad_arg("unknown option 'atomic'", fs.append_file, "/tmp/never-written", "x", {atomic = true})
    bad_arg("unknown option 'parent'", fs.mkdir, "/tmp/never/made", {parent = true})
    bad_arg("unknown option '1'", asyncio.create_subprocess_exec, "true", {}, {"pipe"})
  end)

  it("limit must be a positive integer", function()
    for _, v in ipairs{0, -1, 1.5, "big"} do
      bad_arg("option 'limit'", asyncio.open_connection, "127.0.0.1", 80, {limit = v})
      bad_arg("option 'limit'", asyncio.create_subprocess_exec, "true", {}, {limit = v})
      bad_arg("option 'limit'", asyncio.start_server, print, "127.0.0.1", 0, {limit = v})
    end
  end)
end)

describe("asyncio 3.13 stream fidelity (issue 10)", function()
  after_each(helper.no_leaks)

  it("limit= on open_connection and start_server bounds readline like asyncio", function()
    local got = {}
    local done = asyncio.Event()
    local srv, port = serve(function(r, w)
      got[1] = r:readline()                 -- exactly the limit: fine
      got[2] = select(2, pcall(r.readline, r)) -- one more: ValueError
      got[3] = r:readline()                 -- the next line is intact
      done:set()
      w:close()
    end, {limit = 8})
    local r, w = asyncio.open_connection("127.0.0.1", port, {limit = 8})
    w:write("12345678\n123456789\nnext\n")
    done:wait()
    assert.are.equal("12345678\n", got[1])
    assert.is_true(asyncio.is(got[2], asyncio.ValueError), tostring(got[2]))
    assert.are.equal("next\n", got[3])
    w:close()
    io_helper.close_server(srv)
  end)

  it("a subprocess pipe takes limit= too", function()
    local p = asyncio.create_subprocess_exec("printf", {"abcdef\\nabc\\n"}, {stdout = "pipe", limit = 3})
    raises(asyncio.ValueError, p.stdout.readline, p.stdout)
    assert.are.equal("abc\n", p.stdout:readline())
    p:wait()
  end)

  it("read() after our writer closed returns the buffered bytes, then ''", function()
    local srv, port = serve(function(r, w)
      w:write("buffered data")
      w:drain()
      r:read() -- until the client goes
    end)
    local r, w = asyncio.open_connection("127.0.0.1", port)
    while r:buffered() < 13 do asyncio.sleep(0.01) end
    w:close()
    assert.are.equal("buffered", r:read(8))
    assert.are.equal(" data", r:read())
    assert.are.equal("", r:read())
    assert.is_true(r:at_eof())
    w:wait_closed()
    io_helper.close_server(srv)
  end)

  it("write() after close() does not raise; drain() raises ConnectionResetError", function()
    local srv, port = serve(function(r, w) r:read() end)
    local r, w = asyncio.open_connection("127.0.0.1", port)
    w:close()
    w:write("dropped")
    w:writelines({"also", "dropped"})
    local e = raises(asyncio.ConnectionResetError, w.drain, w)
    assert.are.equal("ECONNRESET", e.code)
    w:wait_closed()
    io_helper.close_server(srv)
  end)

  it("StreamReader() refuses bad options and bad data, and keeps NUL bytes", function()
    bad_arg("unknown option 'bogus'", asyncio.StreamReader, {bogus = 1})
    bad_arg("option 'limit': positive integer expected", asyncio.StreamReader, {limit = "x"})
    bad_arg("option 'limit': positive integer expected", asyncio.StreamReader, {limit = -1})
    bad_arg("table expected, got number", asyncio.StreamReader, 5)
    local r = asyncio.StreamReader()
    bad_arg("string expected, got table", r.feed_data, r, {})
    r:feed_data("a\0b\n")
    assert.are.equal("a\0b\n", r:readline())
  end)

  it("readuntil takes a list of separators (Python 3.13): the match that ends first wins", function()
    local r = asyncio.StreamReader()
    r:feed_data("ab\r\ncd\nef")
    assert.are.equal("ab\r\n", r:readuntil({"\n", "\r\n"}))
    assert.are.equal("cd\n", r:readuntil({"\r\n", "\n"}))
    local t = asyncio.create_task(function() return r:readuntil({"--", "Y"}) end)
    asyncio.sleep(0)
    r:feed_data("XY--Z")
    assert.are.equal("efXY", t:await())
    bad_arg("at least one element", r.readuntil, r, {})
    bad_arg("at least one%-byte", r.readuntil, r, {"a", ""})
    bad_arg("separator 2 is not a string", r.readuntil, r, {"a", 5})
    -- the caller's list changing while readuntil waits changes nothing
    local seps = {"!"}
    t = asyncio.create_task(function() return r:readuntil(seps) end)
    asyncio.sleep(0)
    seps[1] = {}
    seps[2] = 5
    r:feed_data("Z!rest")
    assert.are.equal("--ZZ!", t:await())
    local small = asyncio.StreamReader{limit = 3}
    small:feed_data("abcdef")
    raises(asyncio.LimitOverrunError, small.readuntil, small, {"XX", "Y"})
    assert.are.equal(6, small:buffered())
  end)

  it("write() after write_eof() raises RuntimeError, as asyncio", function()
    local srv, port = serve(function(r, w) r:read() end)
    local r, w = asyncio.open_connection("127.0.0.1", port)
    w:write_eof()
    raises(asyncio.RuntimeError, w.write, w, "x")
    w:close()
    w:wait_closed()
    io_helper.close_server(srv)
  end)
end)
