-- Descriptors as streams: connect_read_pipe / connect_write_pipe,
-- asyncio.stdin() / stdout(), on pipes, regular files and TTYs (the binary
-- driven as a subprocess), and subprocess stdio given an fd, a file or
-- another process's pipe.
local helper = require "spec.helper"

-- Starts the binary on a script (kept until the process ends) with the
-- stdio options; returns the process.
local scripts = {}
local function spawn(text, opts, args)
  local path = helper.tmpname(".lua")
  helper.write_file(path, text)
  scripts[#scripts + 1] = path
  return asyncio.create_subprocess_shell(helper.cmd .. " " .. helper.quote(path)
    .. " " .. (args or ""), opts)
end

local function tmpfile(content)
  local path = helper.tmpname(".txt")
  helper.write_file(path, content)
  scripts[#scripts + 1] = path
  return path
end

local slurp = helper.read_file

-- Counts stdin's lines and bytes through asyncio.stdin(), answers on
-- asyncio.stdout(), and reports whether fd 0 was left blocking (the
-- stream works on a description of its own).
local COUNT = [[
local r = asyncio.stdin()
assert(r == asyncio.stdin(), "stdin() gives one reader")
local n, bytes = 0, 0
for line in r:lines() do n = n + 1; bytes = bytes + #line end
local flags = io.open("/proc/self/fdinfo/0"):read("a"):match("flags:%s*(%d+)")
local nonblock = tonumber(flags, 8) & tonumber("4000", 8) ~= 0
local w = asyncio.stdout()
w:write(("lines=%d bytes=%d nonblock=%s\n"):format(n, bytes, nonblock))
w:drain()
]]

-- at the file's end, after every describe below has used them
teardown(function() for _, p in ipairs(scripts) do os.remove(p) end end)

describe("asyncio.stdin() and stdout()", function()
  after_each(helper.no_leaks)

  it("read a pipe fed piece by piece, as it comes", function()
    local p = spawn([[
local r = asyncio.stdin()
local w = asyncio.stdout()
for line in r:lines() do w:write("got " .. line) end
w:write("eof\n")
]], {stdin = "pipe", stdout = "pipe"})
    for i = 1, 3 do
      p.stdin:write("line " .. i .. "\n")
      p.stdin:drain()
      -- each line is answered before the next is sent: no waiting for EOF
      assert.are.equal("got line " .. i .. "\n", p.stdout:readline())
    end
    p.stdin:close()
    assert.are.equal("eof\n", p.stdout:readline())
    assert.are.equal(0, p:wait())
  end)

  it("a stdin reader nobody waits on lets the program end (its writer still open)", function()
    local p = spawn([[
local line = asyncio.stdin():readline()
print("got " .. line:gsub("\n", ""))
]], {stdin = "pipe", stdout = "pipe"})
    p.stdin:write("one\n")
    assert.are.equal("got one\n", p.stdout:readline())
    -- stdin is not closed: the program ends all the same
    assert.are.equal(0, asyncio.wait_for(function() return p:wait() end, 5 * helper.slow))
    p.stdin:close()
  end)

  it("read stdin from a FIFO to EOF and leave fd 0 blocking", function()
    -- `cat |` makes the binary's stdin a real pipe (libuv's own pipes
    -- are socket pairs, which can only be dup'ed: see the next spec)
    local path = helper.tmpname(".lua")
    scripts[#scripts + 1] = path
    helper.write_file(path, COUNT)
    local p = asyncio.create_subprocess_shell("cat | " .. helper.cmd .. " "
      .. helper.quote(path), {stdin = "pipe", stdout = "pipe"})
    local w = p.stdin
    for i = 1, 20000 do w:write(i .. "\n") end
    w:close()
    assert.are.equal("lines=20000 bytes=108894 nonblock=false\n", p.stdout:read())
    assert.are.equal(0, p:wait())
  end)

  it("read stdin from a socket pair (dup'ed: O_NONBLOCK is shared while open)", function()
    local p = spawn(COUNT, {stdin = "pipe", stdout = "pipe"})
    p.stdin:write("a\nbb\n")
    p.stdin:close()
    assert.are.equal("lines=2 bytes=5 nonblock=true\n", p.stdout:read())
    assert.are.equal(0, p:wait())
  end)

  it("read stdin from a regular file (thread-pool reads), 1 MB exactly", function()
    local lines = {}
    for i = 1, 100000 do lines[i] = ("%09d"):format(i) end
    local path = tmpfile(table.concat(lines, "\n") .. "\n")
    local f = io.open(path)
    local p = spawn(COUNT, {stdin = f, stdout = "pipe"})
    f:close()
    assert.are.equal("lines=100000 bytes=1000000 nonblock=false\n", p.stdout:read())
    assert.are.equal(0, p:wait())
  end)

  it("read stdin from /dev/null: EOF at once", function()
    local p = spawn(COUNT, {stdin = "devnull", stdout = "pipe"})
    assert.are.equal("lines=0 bytes=0 nonblock=false\n", p.stdout:read())
    assert.are.equal(0, p:wait())
  end)

  it("read a TTY line by line (python's pty) and see ^D as EOF", function()
    local code = [==[
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", "-c", sys.argv[1]])
out = b""
def upto(marker):
    global out
    while marker not in out:
        out += os.read(fd, 1000)
upto(b"ready")
os.write(fd, b"hello\n")
upto(b"got hello")
os.write(fd, b"tty\n\x04")
try:
    while True:
        d = os.read(fd, 1000)
        if not d: break
        out += d
except OSError:
    pass
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode().replace("\r", "") + "status %d\n" % os.waitstatus_to_exitcode(st))
]==]
    local path = tmpfile([[
local r = asyncio.stdin()
local w = asyncio.stdout()
w:write("ready\n")
for line in r:lines() do w:write("got " .. line) end
local flags = io.open("/proc/self/fdinfo/0"):read("a"):match("flags:%s*(%d+)")
w:write("eof, fd 0 nonblock=" .. tostring(tonumber(flags, 8) & 2048 ~= 0) .. "\n")
]])
    local p = asyncio.create_subprocess_exec("python3", {"-c", code,
      helper.cmd .. " " .. helper.quote(path)}, {stdout = "pipe"})
    local out = p.stdout:read()
    assert.are.equal(0, p:wait())
    -- the terminal echoes what was typed; the script's answers follow
    assert.matches("ready\nhello\ngot hello\ntty\ngot tty\neof, fd 0 nonblock=false\nstatus 0\n$", out)
  end)

  it("write stdout to a regular file, after what print wrote", function()
    local path = helper.tmpname(".out")
    scripts[#scripts + 1] = path
    local f = io.open(path, "w")
    local p = spawn([[
print("from print")
local w = asyncio.stdout()
for i = 1, 1000 do w:write(("%04d\n"):format(i)) end
w:drain()
w:close()
w:wait_closed()
print("print again")
]], {stdout = f})
    f:close()
    assert.are.equal(0, p:wait())
    local want = {"from print"}
    for i = 1, 1000 do want[#want + 1] = ("%04d"):format(i) end
    want[#want + 1] = "print again"
    assert.are.equal(table.concat(want, "\n") .. "\n", slurp(path))
  end)

  it("write 4 MB to a slow pipe reader with drain's back-pressure", function()
    local p = spawn([[
local w = asyncio.stdout()
local chunk = ("x"):rep(65535) .. "\n"
local max = 0
for i = 1, 64 do
  w:write(chunk)
  max = math.max(max, w:buffer_size())
  w:drain()
end
io.stderr:write("max queued " .. max .. "\n")
w:close()
w:wait_closed()
]], {stdout = "pipe", stderr = "pipe"})
    asyncio.sleep(0.2) -- the writer fills the pipe and waits in drain
    local got = p.stdout:read()
    assert.are.equal(64 * 65536, #got)
    local max = tonumber(p.stderr:read():match("max queued (%d+)"))
    assert.is_true(max <= 2 * 65536, "queued " .. max)
    assert.are.equal(0, p:wait())
  end)

  it("a writer on fd 3 whose reader went away raises BrokenPipeError from drain", function()
    local p = spawn([[
local w = asyncio.connect_write_pipe(3)
local ok, e
for i = 1, 200 do
  w:write(("y"):rep(65536))
  ok, e = pcall(w.drain, w)
  if not ok then break end
end
io.stderr:write(tostring(asyncio.is(e, asyncio.BrokenPipeError)) .. "\n")
]], {stdout = "pipe", stderr = "pipe"}, "3>&1 >/dev/null")
    p.stdout:read(10)
    do local r <close> = p.stdout end -- the pipe's read end is gone
    assert.are.equal("true\n", p.stderr:read())
    assert.are.equal(0, p:wait())
  end)

  it("stdout() whose reader went away ends the program as lua.c's print would (SIGPIPE)", function()
    local p = spawn([[
local w = asyncio.stdout()
for i = 1, 200 do
  w:write(("y"):rep(65536))
  w:drain()
end
io.stderr:write("not reached\n")
]], {stdout = "pipe", stderr = "pipe"})
    p.stdout:read(10)
    do local r <close> = p.stdout end
    assert.are.equal("", p.stderr:read())
    local rc = p:wait()
    assert.is_true(rc == -13 or rc == 141, "returncode " .. tostring(rc))
  end)
end)

describe("scripts/chat_client.lua", function()
  after_each(helper.no_leaks)

  local function script(name, args, opts)
    return asyncio.create_subprocess_shell(helper.cmd .. " scripts/" .. name
      .. " " .. args, opts)
  end

  it("talks through scripts/chat_server.lua while its stdin stays open", function()
    local srv = script("chat_server.lua", "--port 0 --seconds 30", {stdout = "pipe"})
    local port = srv.stdout:readline():match(":(%d+)")
    assert.is_not_nil(port)
    local bob = script("chat_client.lua", "--port " .. port, {stdin = "pipe", stdout = "pipe"})
    local alice = script("chat_client.lua", "--port " .. port, {stdin = "pipe", stdout = "pipe"})
    assert.are.equal("your name? ", bob.stdout:readexactly(11))
    bob.stdin:write("bob\n")
    -- bob is in before alice gives her name (the two clients are separate
    -- processes: without this, alice's name could reach the server first
    -- and bob would never hear that she joined)
    assert.are.equal("* welcome, bob (1 here)\n", bob.stdout:readline())
    assert.are.equal("your name? ", alice.stdout:readexactly(11))
    alice.stdin:write("alice\n")
    assert.are.equal("* welcome, alice (2 here)\n", alice.stdout:readline())
    assert.are.equal("* alice joined\n", bob.stdout:readline())
    -- both clients are waiting on their keyboard: messages still arrive
    alice.stdin:write("hello bob\n")
    assert.are.equal("alice: hello bob\n", bob.stdout:readline())
    bob.stdin:write("hi alice\n")
    assert.are.equal("bob: hi alice\n", alice.stdout:readline())
    bob.stdin:close() -- Ctrl-D
    assert.are.equal("", bob.stdout:read())
    assert.are.equal(0, bob:wait())
    assert.are.equal("* bob left\n", alice.stdout:readline())
    alice.stdin:close()
    assert.are.equal(0, alice:wait())
    srv:kill()
    srv:wait()
  end)
end)

describe("connect_read_pipe / connect_write_pipe in this process", function()
  after_each(helper.no_leaks)

  it("read the pipe of io.popen, leaving the io file usable for closing", function()
    local f = io.popen("seq 1 5000")
    local r <close> = asyncio.connect_read_pipe(f)
    local data = r:read()
    assert.are.equal(5000, select(2, data:gsub("\n", "")))
    assert.is_true(f:close())
  end)

  it("a reader of a regular file stops reading ahead at its limit", function()
    local path = tmpfile(("z"):rep(4 * 1024 * 1024))
    local f = io.open(path)
    local r <close> = asyncio.connect_read_pipe(f, {limit = 4096})
    f:close() -- the stream has its own descriptor
    asyncio.sleep(0.1)
    assert.is_true(r:buffered() <= 4096 + 65536, "buffered " .. r:buffered())
    assert.are.equal(("z"):rep(10), r:read(10))
    local total = 10
    while true do
      local d = r:read(1 << 20)
      if d == "" then break end
      total = total + #d
    end
    assert.are.equal(4 * 1024 * 1024, total)
  end)

  it("a cancelled read on a pipe loses nothing", function()
    -- the child writes once we let it (its stdin closes): after the
    -- cancel, however loaded the machine
    local p = asyncio.create_subprocess_exec("sh", {"-c", "read x; echo late"},
      {stdin = "pipe", stdout = "pipe"})
    local fd_reader = p.stdout
    local t = asyncio.create_task(function() return fd_reader:readline() end)
    asyncio.sleep(0.05)
    t:cancel()
    assert.is_false(pcall(t.await, t))
    p.stdin:close()
    assert.are.equal("late\n", fd_reader:readline())
    p:wait()
  end)

  it("writes to a file given by fd number and a write-only io file", function()
    local path = helper.tmpname(".w")
    local f = io.open(path, "w")
    f:write("lua io first\n")
    local w = asyncio.connect_write_pipe(f) -- flushes f first
    w:write("then the stream\n")
    w:close()
    w:wait_closed()
    f:write("io again\n")
    f:close()
    assert.are.equal("lua io first\nthen the stream\nio again\n", slurp(path))
    os.remove(path)
  end)
end)

describe("subprocess stdio from an fd, a file or another process's pipe", function()
  after_each(helper.no_leaks)

  it("connects a | b without this process reading the bytes", function()
    local a = asyncio.create_subprocess_exec("seq", {"1", "200000"}, {stdout = "pipe"})
    local b = asyncio.create_subprocess_exec("wc", {"-c"}, {stdin = a.stdout, stdout = "pipe"})
    -- a's reader was handed over: closed here, so it reads nothing
    assert.are.equal("", a.stdout:read())
    assert.are.equal("1288895\n", b.stdout:read())
    assert.are.equal(0, a:wait())
    assert.are.equal(0, b:wait())
  end)

  it("chains three Python processes over 5 MB and b's writer pipe", function()
    local gen = asyncio.create_subprocess_exec("python3", {"-c",
      "import sys\nfor i in range(500000): sys.stdout.write('%09d\\n' % i)"},
      {stdout = "pipe"})
    local up = asyncio.create_subprocess_exec("tr", {"0-9", "a-j"},
      {stdin = gen.stdout, stdout = "pipe"})
    local count = asyncio.create_subprocess_exec("python3", {"-c",
      "import sys, hashlib\nd = sys.stdin.buffer.read()\nprint(len(d), d[:10], d.count(b'\\n'))"},
      {stdin = up.stdout, stdout = "pipe"})
    assert.are.equal("5000000 b'aaaaaaaaa\\n' 500000\n", count.stdout:read())
    assert.are.equal(0, gen:wait())
    assert.are.equal(0, up:wait())
    assert.are.equal(0, count:wait())
  end)

  it("takes an fd number, an io file and asyncio.DEVNULL / PIPE / STDOUT", function()
    local path = tmpfile("0123456789")
    local f = io.open(path)
    local p = asyncio.create_subprocess_exec("wc", {"-c"}, {stdin = f, stdout = asyncio.PIPE})
    assert.are.equal("10\n", p.stdout:read())
    p:wait()
    f:close()
    local out = helper.tmpname(".o")
    local g = io.open(out, "w")
    local fd = tonumber(io.open("/proc/self/fdinfo/0") and 1) -- any number works: use the file's
    assert.is_number(fd)
    p = asyncio.create_subprocess_exec("sh", {"-c", "echo out; echo err >&2"},
      {stdout = g, stderr = asyncio.STDOUT, stdin = asyncio.DEVNULL})
    assert.are.equal(0, p:wait())
    g:close()
    assert.are.equal("out\nerr\n", slurp(out))
    os.remove(out)
  end)

  it("passes a writer: the child writes straight into another child's stdin", function()
    local sink = asyncio.create_subprocess_exec("wc", {"-l"}, {stdin = "pipe", stdout = "pipe"})
    local src = asyncio.create_subprocess_exec("seq", {"1", "777"}, {stdout = sink.stdin})
    assert.is_true(sink.stdin:is_closing())
    assert.are.equal("777\n", sink.stdout:read())
    src:wait()
    sink:wait()
  end)
end)

describe("pipes against bad input", function()
  after_each(helper.no_leaks)

  it("refuses wrong types, bad numbers, closed files and unknown options", function()
    for _, v in ipairs{"0", {}, 1.5, -1, 1 << 40, true} do
      local ok, e = pcall(asyncio.connect_read_pipe, v)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w.]*connect_read_pipe'", e)
    end
    local f = io.open("/dev/null")
    f:close()
    local ok, e = pcall(asyncio.connect_read_pipe, f)
    assert.matches("connect_read_pipe' %(argument is a closed file%)", e)
    ok, e = pcall(asyncio.connect_read_pipe, 0, {mode = "r"})
    assert.matches("bad argument #2 to '[%w.]*connect_read_pipe' %(unknown option 'mode'%)", e)
    assert.has_error(function() asyncio.connect_read_pipe(0, {limit = -5}) end)
    ok, e = pcall(asyncio.connect_write_pipe, 1, {limit = 5})
    assert.matches("bad argument #2 to '[%w.]*connect_write_pipe' %(unknown option 'limit'%)", e)
    ok, e = pcall(asyncio.connect_write_pipe, "1")
    assert.matches("bad argument #1 to '[%w.]*connect_write_pipe'", e)
  end)

  it("a descriptor that is not open, or not open that way, is an OSError EBADF", function()
    local ok, e = pcall(asyncio.connect_read_pipe, 987)
    assert.is_false(ok)
    assert.is_true(asyncio.is(e, asyncio.OSError))
    assert.are.equal("EBADF", e.code)
    assert.are.equal("fd 987", e.path)
    local path = helper.tmpname(".w")
    local w = io.open(path, "w")
    ok, e = pcall(asyncio.connect_read_pipe, w)
    assert.are.equal("EBADF", e.code)
    w:close()
    local r = io.open(path)
    ok, e = pcall(asyncio.connect_write_pipe, r)
    assert.are.equal("EBADF", e.code)
    r:close()
    os.remove(path)
  end)

  it("a directory reads as EISDIR, raised by the read", function()
    local d = io.open("/tmp")
    local r <close> = asyncio.connect_read_pipe(d)
    d:close()
    local ok, e = pcall(r.read, r)
    assert.is_false(ok)
    assert.are.equal("EISDIR", e.code)
  end)

  it("refuses to hand over a stream with bytes buffered or a task reading it", function()
    local a = asyncio.create_subprocess_exec("echo", {"buffered"}, {stdout = "pipe"})
    a:wait()
    asyncio.sleep(0.05)
    a.stdout:readexactly(2)
    local ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stdin = a.stdout})
    assert.is_false(ok)
    assert.matches("option 'stdin'.*bytes buffered", e)
    assert.are.equal("ffered\n", a.stdout:read()) -- still ours, intact
    local b = asyncio.create_subprocess_exec("sleep", {"5"}, {stdout = "pipe"})
    local t = asyncio.create_task(function() return b.stdout:read() end)
    asyncio.sleep(0)
    ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stdin = b.stdout})
    assert.matches("a task reading it", e)
    b:kill()
    t:await()
    b:wait()
    do local closing <close> = b.stdout end
    ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stdin = b.stdout})
    assert.matches("option 'stdin' %(the stream is closed%)", e)
    local mem = asyncio.StreamReader()
    ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stdin = mem})
    assert.matches("fed from Lua has no descriptor", e)
  end)

  it("refuses a child stdio in the wrong direction or of a wrong type", function()
    local path = helper.tmpname(".w")
    local w = io.open(path, "w")
    local ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stdin = w})
    assert.matches("option 'stdin': fd %d+ is not open for reading", e)
    w:close()
    os.remove(path)
    ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stdout = {}})
    assert.matches("option 'stdout': \"pipe\", \"inherit\", \"devnull\", an fd, an io file or a stream expected, got table", e)
    ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stderr = 4242})
    assert.matches("option 'stderr': fd 4242 is not open", e)
    ok, e = pcall(asyncio.create_subprocess_exec, "cat", {}, {stdin = "bogus"})
    assert.is_false(ok)
  end)
end)
