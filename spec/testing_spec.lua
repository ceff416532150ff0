-- asyncio.testing: the virtual clock, leak checks, fixtures, busted.
local helper = require "spec.helper"
local testing = require "asyncio.testing"
local a = asyncio

-- Real seconds fn takes (the virtual clock does not move real_time).
local function real_duration(fn)
  local t0 = testing.real_time()
  local r = table.pack(fn())
  return testing.real_time() - t0, table.unpack(r, 1, r.n)
end

describe("testing.run with the virtual clock", function()
  after_each(helper.no_leaks)

  it("sleeps an hour in milliseconds and observes exact times", function()
    local took, slept = real_duration(function()
      return testing.run(function()
        local t0 = a.time()
        a.sleep(3600)
        return a.time() - t0
      end, {clock = "virtual"})
    end)
    assert.are.equal(3600, slept)
    assert.is_true(took < 0.5 * helper.slow, "took " .. took)
    assert.are.equal("real", (testing.clock()))
  end)

  it("times a 60-second wait_for out in under a second, at exactly 60 s", function()
    local took, elapsed, err = real_duration(function()
      return testing.run(function()
        local t0 = a.time()
        local ok, e = pcall(a.wait_for, function() a.Event():wait() end, 60)
        assert.is_false(ok)
        return a.time() - t0, e
      end)
    end)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.are.equal(60, elapsed)
    assert.is_true(took < 1 * helper.slow, "took " .. took)
  end)

  it("fires call_later / call_at at their deadlines, in order", function()
    testing.run(function()
      local t0, log = a.time(), {}
      a.call_at(t0 + 10, function() log[#log + 1] = "at10 " .. (a.time() - t0) end)
      local h = a.call_later(5, function() log[#log + 1] = "later5 " .. (a.time() - t0) end)
      assert.are.equal(t0 + 5, h:when())
      a.sleep(20)
      assert.are.same({"later5 5.0", "at10 10.0"}, log)
    end)
  end)

  it("makes timeouts of queues, locks, conditions and timeout() follow it", function()
    testing.run(function()
      local t0 = a.time()
      local q = a.Queue()
      assert.is_false(pcall(a.wait_for, function() return q:get() end, 30))
      assert.are.equal(30, a.time() - t0)
      local lock = a.Lock()
      lock:acquire()
      assert.is_false(pcall(a.wait_for, function() return lock:acquire() end, 15))
      assert.are.equal(45, a.time() - t0)
      local cond = a.Condition()
      local ok = pcall(function()
        local _ <close> = a.timeout(5)
        cond:acquire()
        cond:wait()
      end)
      assert.is_false(ok)
      assert.are.equal(50, a.time() - t0)
      lock:release()
      if cond:locked() then cond:release() end
    end)
  end)

  it("lets tasks ping-pong without moving the clock", function()
    testing.run(function()
      local t0, q1, q2 = a.time(), a.Queue(), a.Queue()
      local t = a.create_task(function()
        for _ = 1, 100 do q2:put(q1:get() + 1) end
      end)
      local n = 0
      for _ = 1, 100 do q1:put(n) n = q2:get() end
      t:await()
      assert.are.equal(100, n)
      assert.are.equal(t0, a.time())
    end)
  end)

  -- The virtual clock waits 250 ms of real time for work in flight on the
  -- thread pool (a DNS lookup, a file operation) before it jumps.
  -- Valgrind runs one thread at a time, and on a loaded machine a job's
  -- turn came later than that (the clock jumped in the three tests below
  -- under make valgrind at load 20); ASan and the plain build keep them.
  local with_threads = helper.slow >= 10 and pending or it

  with_threads("keeps real I/O working: a loopback exchange inside wait_for does not time out", function()
    testing.run(function()
      local t0 = a.time()
      local srv <close> = a.start_server(function(r, w)
        w:write((r:readline():upper()))
        w:drain()
        w:close()
      end, "127.0.0.1", 0)
      local reader, writer = a.wait_for(function() return a.open_connection("127.0.0.1", srv.port) end, 5)
      writer:write("hello\n")
      assert.are.equal("HELLO\n", a.wait_for(function() return reader:readline() end, 5))
      writer:close()
      assert.are.equal(t0, a.time())
    end)
  end)

  with_threads("waits for file operations in flight before it jumps", function()
    local path = helper.tmpname(".txt")
    helper.write_file(path, "contents")
    testing.run(function()
      for _ = 1, 20 do
        assert.are.equal("contents", a.wait_for(function() return a.fs.read_file(path) end, 1))
      end
    end)
    os.remove(path)
  end)

  -- The grace for requests in flight (250 ms) counts from the last step
  -- that ended: a FIFO's writer (started and ready before the run) paces
  -- read_file's thread-pool jobs, a read per byte 10 ms apart, 0.4 s in
  -- all.  Counted from when the loop went quiet, the clock jumped past the
  -- 1 s wait_for at 0.25 s.
  with_threads("waits for a file operation whose steps each end within the grace, however long the whole", function()
    local fifo = helper.tmpname(".fifo")
    assert.is_true(os.execute("mkfifo " .. helper.quote(fifo)))
    local writer = a.create_subprocess_exec("python3", {"-c", [[
import os, sys, time
print("ready", flush=True)
fd = os.open(sys.argv[1], os.O_WRONLY) # until read_file opens it
for _ in range(40):
    time.sleep(0.01)
    os.write(fd, b"x")
os.close(fd)
]], fifo}, {stdout = "pipe"})
    assert.are.equal("ready\n", writer.stdout:readline())
    local took, got = real_duration(function()
      return testing.run(function()
        return a.wait_for(function() return a.fs.read_file(fifo) end, 1)
      end)
    end)
    assert.are.equal(0, writer:wait())
    os.remove(fifo)
    assert.are.equal(("x"):rep(40), got)
    assert.is_true(took >= 0.3, took)
  end)

  it("jumps after a short real grace when a write never completes (a peer that never reads)", function()
    local took, elapsed = real_duration(function()
      return testing.run(function()
        local hold = a.Event()
        local srv <close> = a.start_server(function() hold:wait() end, "127.0.0.1", 0)
        local _, w = a.open_connection("127.0.0.1", srv.port)
        local t0 = a.time()
        local ok = pcall(a.wait_for, function()
          local chunk = string.rep("x", 1024 * 1024)
          for _ = 1, 64 do w:write(chunk) w:drain() end
        end, 5)
        assert.is_false(ok)
        local dt = a.time() - t0
        w:close()
        hold:set()
        srv:close_clients()
        return dt
      end)
    end)
    assert.are.equal(5, elapsed)
    assert.is_true(took < 3 * helper.slow, "took " .. took)
  end)

  it("jumps over a slow child at threshold 0, and waits for it with autojump_threshold", function()
    local function read_child()
      local p = a.create_subprocess_shell("sleep 0.2; echo late", {stdout = "pipe"})
      local stdout <close> = p.stdout
      local ok, out = pcall(a.wait_for, function() return stdout:read() end, 10)
      p:wait()
      return ok, out
    end
    local ok = testing.run(read_child, {clock = "virtual"})
    assert.is_false(ok) -- the clock jumped 10 s while the child slept 0.2 s
    local ok2, out = testing.run(read_child, {clock = "virtual", autojump_threshold = 1})
    assert.is_true(ok2)
    assert.are.equal("late\n", out)
  end)

  it("goes on from the virtual time when it returns to the real clock", function()
    local before = a.time()
    testing.run(function() a.sleep(1000) end)
    local after = a.time()
    assert.is_true(after >= before + 1000)
    a.sleep(0.01) -- and real deadlines still work
    assert.is_true(a.time() >= after + 0.01)
  end)
end)

describe("testing.run with the manual clock", function()
  after_each(helper.no_leaks)

  it("moves only on advance(), which fires what is due and lets it run", function()
    testing.run(function()
      local t0, log = a.time(), {}
      a.call_later(5, function() log[#log + 1] = "cb" end)
      local t = a.create_task(function() a.sleep(3) log[#log + 1] = "task" end)
      testing.wait_idle()
      assert.are.equal(t0, a.time())
      testing.advance(2.5)
      assert.are.same({}, log)
      testing.advance(0.5)
      assert.are.same({"task"}, log)
      testing.advance(2)
      assert.are.same({"task", "cb"}, log)
      assert.are.equal(5, a.time() - t0)
      t:await()
    end, {clock = "manual"})
  end)

  it("advance() up to 1e9 s; more is refused, so the clock stays sane", function()
    testing.run(function()
      local fired = false
      a.call_later(1e8, function() fired = true end)
      testing.advance(1e9)
      assert.is_true(fired)
      helper.fails_with("seconds too large", testing.advance, 1e300)
    end, {clock = "manual"})
  end)

  it("treats sleep(1e300) as forever under the virtual clock too", function()
    local elapsed = testing.run(function()
      local t0 = a.time()
      local t = a.create_task(function() a.sleep(1e300) end)
      local ok = pcall(a.wait_for, function() return t:await() end, 1e6)
      assert.is_false(ok)
      assert.is_true(t:cancelled())
      return a.time() - t0
    end)
    assert.are.equal(1e6, elapsed) -- the clock jumped to the deadline, not to "never"
  end)

  it("refuses bad advance() arguments", function()
    testing.run(function()
      helper.fails_with("bad argument #1 to '[%w.]*advance' %(number expected, got table%)", testing.advance, {})
      helper.fails_with("bad argument #1 to '[%w.]*advance' %(number expected, got no value%)", testing.advance)
      helper.fails_with("seconds must not be negative", testing.advance, -1)
      helper.fails_with("seconds is NaN", testing.advance, 0 / 0)
      helper.fails_with("seconds must be finite", testing.advance, math.huge)
    end, {clock = "manual"})
    helper.fails_with("advance%(%): the clock is real", testing.advance, 1)
    helper.fails_with("wait_idle%(%) called from a callback", function()
      local err
      a.call_soon(function() err = select(2, pcall(testing.wait_idle)) end)
      a.sleep(0)
      error(err, 0)
    end)
    assert.are.same({"real", 0}, {testing.clock()})
  end)
end)

describe("testing.run", function()
  after_each(helper.no_leaks)

  it("returns fn's results and raises its error unchanged", function()
    assert.are.same({1, nil, 3}, {testing.run(function() return 1, nil, 3 end)})
    local err = {}
    local ok, got = pcall(testing.run, function() error(err) end)
    assert.is_false(ok)
    assert.are.equal(err, got)
  end)

  -- Options are checked two or three calls deep inside testing.lua: the
  -- error names the caller's line, never a line of asyncio/testing.lua.
  it("argument errors point at the caller's line", function()
    local function line_of(f) return helper.arg_error_line(f, "testing_spec%.lua") end
    local here = debug.getinfo(1, "l").currentline
    assert.are.equal(here + 1, line_of(function() local r = testing.run(print, {clok = 1}) return r end))
    assert.are.equal(here + 2, line_of(function() local r = testing.run(print, {timeout = -1}) return r end))
    assert.are.equal(here + 3, line_of(function() local r = testing.run(print, {clock = "x"}) return r end))
    assert.are.equal(here + 4, line_of(function() local r = testing.stream_pair({limit = "x"}) return r end))
    assert.are.equal(here + 5, line_of(function() local r = testing.run_with_timeout(print, -1) return r end))
  end)

  it("refuses wrong types, unknown options and bad values", function()
    helper.fails_with("bad argument #1 to 'run' %(function expected, got nil%)", testing.run)
    helper.fails_with("bad argument #2 to 'run' %(table expected, got string%)", testing.run, print, "virtual")
    helper.fails_with("bad argument #2 to 'run' %(unknown option 'clok'%)", testing.run, print, {clok = "virtual"})
    helper.fails_with("option 'clock': \"real\", \"virtual\" or \"manual\" expected, got \"fake\"",
      testing.run, print, {clock = "fake"})
    helper.fails_with("option 'autojump_threshold' is NaN", testing.run, print, {autojump_threshold = 0 / 0})
    helper.fails_with("option 'autojump_threshold' must not be negative", testing.run, print, {autojump_threshold = -1})
    helper.fails_with("option 'timeout' must be positive", testing.run, print, {timeout = 0})
    helper.fails_with("option 'timeout' must be finite", testing.run, print, {timeout = math.huge})
    helper.fails_with("option 'leaks': boolean expected, got string", testing.run, print, {leaks = "no"})
    assert.are.equal("real", (testing.clock()))
  end)

  it("works from a stock lua5.4 too (outside any task)", function()
    local out, err, status = helper.lua54([[
      local testing = require "asyncio.testing" -- loads asyncio itself
      local asyncio = require "asyncio"
      print(testing.run(function() local t = asyncio.time() asyncio.sleep(86400) return asyncio.time() - t end))
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("86400.0\n", out)
  end)
end)

describe("leak checks", function()
  after_each(helper.no_leaks)

  it("name a leaked task with where it was made and where it waits, and cancel it", function()
    local leaked
    local err = helper.error_of(testing.run, function()
      leaked = a.create_task(function()
        a.sleep(3600)
      end)
    end)
    assert.matches("the test left 1 thing behind:", err)
    assert.matches("<Task pending name='Task%-%d+'>, created at [^,]*spec/testing_spec.lua:%d+, waiting at [^,]*spec/testing_spec.lua:%d+", err)
    assert.matches("^[%w_./]+.lua:%d+: ", err) -- the line of the run (helper.error_of's pcall)
    assert.is_true(leaked:cancelled())
  end)

  it("list handles while the collector finalizes dropped streams (the walk keeps its place)", function()
    -- the listing's tables start collections whose finalizers close the
    -- dropped readers under the walk: it once went round a closed record
    -- forever (a crash or all the memory); a child process, bounded
    -- (address space: not under ASan or valgrind, which reserve much)
    local plain = (os.getenv("LASYNC_PRELOAD") or "") == "" and helper.wrapper == ""
    local bound = plain and "ulimit -v 4000000; " or ""
    local out, err, status = helper.run_script([[
local T = require "asyncio.testing"
asyncio.run(function()
  collectgarbage("incremental", 10, 400)
  local listed = 0
  for _ = 1, 300 do
    for _ = 1, 30 do asyncio.StreamReader() end
    listed = listed + #T._handles()
  end
  print("listed", listed > 0, #T._handles() <= 30)
end)
]], "", bound .. "timeout " .. 60 * helper.slow .. " ")
    assert.are.equal("", err)
    assert.are.equal(0, status)
    assert.are.equal("listed\ttrue\ttrue\n", out)
  end)

  it("list servers, timed callbacks and file descriptors, with their origin", function()
    local f
    local err = helper.error_of(testing.run, function()
      a.start_server(function() end, "127.0.0.1", 0)
      a.call_later(100, function() end)
      f = io.open("/etc/hostname")
    end)
    f:close()
    assert.matches("server, created at [^,]*spec/testing_spec.lua:%d+", err)
    assert.matches("call_later/call_at callback %(function at [^,]*spec/testing_spec.lua:%d+%), due in 100%.000 s", err)
    assert.matches("file descriptor %d+ %(/etc/hostname%)", err)
    assert.matches("file descriptor %d+ %(socket:", err)
    assert.matches("the test left 4 things behind", err)
  end)

  it("list child processes and signal handlers", function()
    local err = helper.error_of(testing.run, function()
      local p = a.create_subprocess_exec("sleep", {"5"})
      a.add_signal_handler("SIGUSR2", function() end)
      _G.kept_process = p
    end)
    assert.matches("process, created at [^,]*spec/testing_spec.lua:%d+", err)
    assert.matches("signal[%w ]*, created at [^,]*spec/testing_spec.lua:%d+", err)
    _G.kept_process:kill()
    _G.kept_process:wait()
    _G.kept_process = nil
    a.remove_signal_handler("SIGUSR2")
  end)

  it("can be turned off per test: allow_leaks() or {leaks = false}", function()
    local t1, t2
    testing.run(function()
      testing.allow_leaks()
      t1 = a.create_task(function() a.sleep(1) end)
    end)
    testing.run(function() t2 = a.create_task(function() a.sleep(1) end) end, {leaks = false})
    t1:cancel()
    t2:cancel()
    helper.await_cancelled(t1)
    helper.await_cancelled(t2)
    helper.fails_with("allow_leaks%(%): not inside testing.run", testing.allow_leaks)
  end)

  it("check_leaks() is the public task count (spec/helper.lua's no_leaks)", function()
    local t = a.create_task(function() a.sleep(3600) end)
    local err = helper.error_of(testing.check_leaks)
    assert.matches("created at [^,]*spec/testing_spec.lua:%d+", err)
    assert.is_true(t:cancelled())
    testing.check_leaks()
    local snap = testing.snapshot()
    local srv = a.start_server(function() end, "127.0.0.1", 0)
    assert.matches("server, created at", helper.error_of(testing.check_leaks, snap))
    assert.is_false(srv:is_serving())
    helper.fails_with("bad argument #1 to 'check_leaks' %(snapshot expected, got string%)", testing.check_leaks, "x")
    helper.fails_with("bad argument #1 to 'leaks' %(snapshot expected, got nil%)", testing.leaks)
    assert.are.same({}, testing.leaks(testing.snapshot()))
  end)
end)

describe("testing.run_with_timeout", function()
  after_each(helper.no_leaks)

  it("returns fn's results in time", function()
    assert.are.same({"a", "b"}, {testing.run_with_timeout(function() a.sleep(0.01) return "a", "b" end, 5)})
  end)

  it("stops a stuck fn after that much real time, saying where it was", function()
    local took, err = real_duration(function()
      return helper.error_of(testing.run_with_timeout, function() a.Event():wait() end, 0.2)
    end)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.matches("spec/[%w_]+.lua:%d+: the test did not finish within 0%.2 s of real time", tostring(err))
    assert.matches("in method 'wait'", tostring(err))
    assert.is_true(took >= 0.19 and took < 2 * helper.slow, "took " .. took)
  end)

  it("holds in real time under a virtual clock", function()
    local err = helper.error_of(testing.run, function()
      while true do a.sleep(3600) end
    end, {timeout = 0.2})
    assert.matches("did not finish within 0%.2 s", tostring(err))
  end)

  it("refuses bad arguments", function()
    helper.fails_with("bad argument #1 to 'run_with_timeout' %(function expected, got number%)", testing.run_with_timeout, 1, 1)
    helper.fails_with("bad argument #2 to 'run_with_timeout' %(seconds: number expected, got nil%)", testing.run_with_timeout, print)
    helper.fails_with("seconds is NaN", testing.run_with_timeout, print, 0 / 0)
    helper.fails_with("seconds must be positive", testing.run_with_timeout, print, -1)
  end)
end)

describe("testing.stream_pair", function()
  after_each(helper.no_leaks)

  it("connects two reader/writer pairs in memory, both ways, with EOF on close", function()
    testing.run(function()
      local x, y = testing.stream_pair()
      x.writer:write("ping\n")
      assert.are.equal("ping\n", y.reader:readline())
      y.writer:write("pong\n")
      y.writer:drain()
      assert.are.equal("pong\n", x.reader:readline())
      x.writer:write("last")
      x.writer:close()
      x.writer:wait_closed()
      assert.are.equal("last", y.reader:read())
      assert.is_true(y.reader:at_eof())
      assert.are.equal("", y.reader:read())
      y.writer:close()
      assert.is_true(a.is(helper.error_of(x.writer.write, x.writer, "z"), a.InvalidStateError))
    end)
  end)

  it("delivers `chunk` bytes at a time", function()
    testing.run(function()
      local x, y = testing.stream_pair{chunk = 3}
      x.writer:write("abcdefgh")
      local got = {}
      while #table.concat(got) < 8 do got[#got + 1] = y.reader:read(100) end
      assert.are.same({"abc", "def", "gh"}, got)
      x.writer:close()
      y.writer:close()
    end)
  end)

  it("applies back-pressure: drain() waits until the peer has read", function()
    testing.run(function()
      local x, y = testing.stream_pair{limit = 10}
      local drained = false
      local t = a.create_task(function()
        x.writer:write(string.rep("x", 25))
        x.writer:drain()
        drained = true
      end)
      testing.wait_idle()
      assert.is_false(drained)
      assert.are.equal(10, y.reader:buffered())
      assert.are.equal(10, #y.reader:read(10))
      testing.wait_idle()
      assert.is_false(drained)
      assert.are.equal(15, #y.reader:readexactly(15))
      t:await()
      assert.is_true(drained)
      x.writer:close()
      y.writer:close()
    end)
  end)

  it("refuses bad options and writes", function()
    helper.fails_with("bad argument #1 to 'stream_pair' %(unknown option 'chunks'%)", testing.stream_pair, {chunks = 1})
    helper.fails_with("bad argument #1 to 'stream_pair' %(table expected, got number%)", testing.stream_pair, 5)
    helper.fails_with("option 'chunk' out of range", testing.stream_pair, {chunk = 0})
    helper.fails_with("option 'limit' out of range", testing.stream_pair, {limit = 1e300})
    helper.fails_with("option 'chunk': integer expected, got 1.5", testing.stream_pair, {chunk = 1.5})
    helper.fails_with("option 'limit': integer expected, got NaN", testing.stream_pair, {limit = 0 / 0})
    testing.run(function()
      local x, y = testing.stream_pair()
      helper.fails_with("bad argument #2 to 'write' %(string expected, got table%)", x.writer.write, x.writer, {})
      x.writer:write("a\0b")
      assert.are.equal("a\0b", y.reader:readexactly(3))
      x.writer:close()
      y.writer:close()
    end)
  end)
end)

describe("testing.http_server", function()
  after_each(helper.no_leaks)
  local http = require "asyncio.http"

  it("serves Lua routes to http.fetch", function()
    testing.run(function()
      local srv <close> = testing.http_server{
        ["/hello"] = function(req)
          return {status = 201, headers = {["X-Who"] = req.query}, body = req.method .. " " .. req.body}
        end,
        ["/static"] = {body = "fixed"},
      }
      local r = http.fetch(srv.url .. "/hello?me", {method = "POST", body = "data"})
      assert.are.equal(201, r.status)
      assert.are.equal("POST data", r.body)
      assert.are.equal("me", r.headers["x-who"])
      assert.are.equal("fixed", http.fetch(srv.url .. "/static").body)
      assert.are.equal(404, http.fetch(srv.url .. "/nope").status)
      assert.are.equal(2 + 1, #srv.requests)
    end, {clock = "real"})
  end)

  it("answers 500 when a route fails, and records the error", function()
    testing.run(function()
      local srv <close> = testing.http_server{["/boom"] = function() error("kaput") end}
      local r = http.fetch(srv.url .. "/boom")
      assert.are.equal(500, r.status)
      assert.matches("kaput", srv.errors[1])
    end, {clock = "real"})
  end)

  it("stands hostile clients: garbage, huge headers, silence", function()
    testing.run(function()
      local srv <close> = testing.http_server{["/"] = {body = "x"}}
      local function exchange(data, close)
        local r, w = a.open_connection("127.0.0.1", srv.port)
        if data then w:write(data) end
        if close then w:write_eof() end
        local got = r:read()
        w:close()
        return got
      end
      assert.matches("^HTTP/1.1 400", exchange("\0\1\2 garbage\r\n\r\n"))
      assert.matches("^HTTP/1.1 400", exchange("GET / HTTP/1.1\r\n" .. string.rep("a", 20000) .. "\r\n\r\n"))
      assert.matches("^HTTP/1.1 413", exchange("POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"))
      assert.matches("^HTTP/1.1 501", exchange("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
      assert.matches("^HTTP/1.1 400", exchange("GET / HTTP/1.1\r\nHost: x", true))
      -- a client that never sends: the virtual clock jumps the 10 s limit
      local t0 = a.time()
      assert.matches("^HTTP/1.1 408", exchange(nil))
      assert.are.equal(10, a.time() - t0)
      assert.matches("^HTTP/1.1 200", exchange("GET / HTTP/1.0\r\n\r\n"))
    end)
  end)

  it("refuses bad routes", function()
    helper.fails_with("bad argument #1 to 'http_server' %(table expected, got nil%)", testing.http_server)
    helper.fails_with("route \"x\": a path starting with '/' expected", testing.http_server, {x = {}})
    helper.fails_with("route \"/x\": function or table expected, got number", testing.http_server, {["/x"] = 1})
    helper.fails_with("route number: a path", testing.http_server, {[1] = {}})
  end)
end)

describe("busted integration", function()
  -- the demo's real-time limits (TIMEOUT and LONG) are scaled: under
  -- valgrind a test that sleeps 50 ms took over 0.3 s of real time
  local SHORT, LONG = 0.3 * helper.slow, 5 * helper.slow
  local SPEC = ([[
local testing = require "asyncio.testing"
describe("demo", function()
  it("times out a 60-second wait_for", function()
    local t0 = asyncio.time()
    local ok, err = pcall(asyncio.wait_for, function() asyncio.Event():wait() end, 60)
    assert.is_true(asyncio.is(err, asyncio.TimeoutError))
    assert.are.equal(60, asyncio.time() - t0)
  end)
  it("leaks a task", function()
    asyncio.create_task(function() asyncio.sleep(1) end)
  end)
  it("configures nothing from inside a test", function()
    testing.configure{}
  end)
  describe("real", function()
    testing.configure{clock = "real", timeout = %g}
    it("is stuck", function() asyncio.Event():wait() end)
    it("runs on the real clock", function()
      local t = testing.real_time()
      asyncio.sleep(0.05)
      assert.is_true(testing.real_time() - t >= 0.05)
    end)
  end)
end)
]]):format(SHORT)

  local function run_busted(args, text)
    local dir = helper.tmpname("")
    os.execute("mkdir -p " .. helper.quote(dir))
    helper.write_file(dir .. "/demo_spec.lua", text or SPEC)
    local t0 = testing.real_time()
    local out, err, status = helper.sh("cd " .. helper.quote(dir) .. " && " .. helper.cmd
      .. " /usr/bin/busted -o utfTerminal " .. args .. " demo_spec.lua")
    local took = testing.real_time() - t0
    os.execute("rm -rf " .. helper.quote(dir))
    return out, err, status, took
  end

  it("--helper=asyncio.testing: virtual clock, leak check, time limit per test", function()
    local out, err, status, took = run_busted("--helper=asyncio.testing")
    assert.are_not.equal(0, status)
    assert.matches("3 successes / 0 failures / 2 errors", out, 1, true)
    assert.matches("demo_spec.lua:9: the test left 1 thing behind:", out, 1, true)
    assert.matches("<Task pending name='Task%-%d+'>, created at demo_spec.lua:10, waiting at demo_spec.lua:10", out)
    assert.matches(("demo_spec.lua:17: the test did not finish within %g s of real time"):format(SHORT), out, 1, true)
    assert.is_true(took < 10 * helper.slow, "took " .. took .. err)
  end)

  it("-Xhelper sets the defaults; an unknown one is refused", function()
    local out = run_busted("--helper=asyncio.testing -Xhelper=leaks=off")
    assert.matches("4 successes / 0 failures / 1 error", out, 1, true)
    local out2, err2 = run_busted("--helper=asyncio.testing -Xhelper=colck=real")
    assert.matches("unknown helper argument \"colck=real\"", out2 .. err2, 1, true)
  end)

  it("testing.busted() in a spec file applies to that file", function()
    local text = SPEC:gsub('^local testing = require "asyncio.testing"',
                           ('local testing = require("asyncio.testing").busted{timeout = %g}'):format(LONG))
    local out = run_busted("", text)
    assert.matches("3 successes / 0 failures / 2 errors", out, 1, true)
    assert.matches("the test left 1 thing behind", out, 1, true)
  end)

  it("configure() outside a busted run says how to get one", function()
    helper.fails_with("configure%(%): asyncio.testing is not driving busted", testing.configure, {clock = "real"})
  end)

  it("testing.busted refuses unknown options", function()
    helper.fails_with("bad argument #1 to 'busted' %(unknown option 'clocks'%)", testing.busted, {clocks = "real"})
    helper.fails_with("option 'timeout' is NaN", testing.busted, {timeout = 0 / 0})
  end)
end)
