-- asyncio.http's timeouts against hostile peers on loopback (Python
-- programs): a server that accepts and never answers, one that sends its
-- headers and goes quiet, one that trickles, one that never reads an
-- upload, a listener that never completes a connection; the defaults
-- (connect_timeout 30 s, read_timeout 60 s, no total) and the checks of
-- the options.  Bounds are scaled by helper.slow; nothing waits for the
-- 30 or 60 s defaults (sessions are given short ones, through the same
-- path as the defaults).
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"
local http = require "asyncio.http"

local slow = helper.slow

-- A raw server answering each connection with `body` (Python, `c` is the
-- accepted socket); returns its URL and the process.
local function raw(body)
  local p, port = io_helper.py_server(body)
  return ("http://127.0.0.1:%d/"):format(port), p
end

-- Runs fn(url), stops the server, returns what fn returned.
local function against(body, fn)
  local url, p = raw(body)
  local res = table.pack(pcall(fn, url))
  io_helper.stop(p)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- The error of fn(...) and the seconds it took.
local function timed_error(fn, ...)
  local t0 = asyncio.time()
  local e = helper.error_of(fn, ...)
  return e, asyncio.time() - t0
end

local NEVER = "c.recv(65536)\ntime.sleep(120)"
local HEAD_THEN_STALL = [[
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
time.sleep(120)
]]

describe("asyncio.http timeouts", function()
  after_each(helper.no_leaks)

  describe("defaults", function()
    it("a session connects within 30 s, fails after 60 s of silence, has no total timeout", function()
      local s <close> = http.Session()
      assert.are.equal(30, s.connect_timeout)
      assert.are.equal(60, s.read_timeout)
      assert.is_nil(s.timeout)
      local d = http.default_session()
      assert.are.equal(30, d.connect_timeout)
      assert.are.equal(60, d.read_timeout)
      local f <close> = http.Session{connect_timeout = false, read_timeout = 5}
      assert.is_false(f.connect_timeout)
      assert.are.equal(5, f.read_timeout)
    end)
  end)

  describe("read_timeout", function()
    it("a server that accepts and never answers: kind 'timeout' after read_timeout, on a session's plain get", function()
      against(NEVER, function(url)
        -- a plain get (no options table) takes the session's value, as
        -- fetch takes the default session's 60 s
        local s <close> = http.Session{read_timeout = 0.3}
        local e, dt = timed_error(s.get, s, url)
        assert.is_true(asyncio.is(e, http.Error), tostring(e))
        assert.are.equal("timeout", e.kind)
        assert.matches("read_timeout", e.message)
        assert.are.equal(url, e.url)
        assert.is_true(dt >= 0.29 and dt < 3 * slow, "took " .. dt)
      end)
    end)

    it("as a request option, on fetch, over the session's", function()
      against(NEVER, function(url)
        local e, dt = timed_error(http.fetch, url, {read_timeout = 0.3})
        assert.are.equal("timeout", e.kind)
        assert.is_true(dt >= 0.29 and dt < 3 * slow, "took " .. dt)
        local s <close> = http.Session{read_timeout = 100}
        e, dt = timed_error(s.get, s, url, {read_timeout = 0.3})
        assert.are.equal("timeout", e.kind)
        assert.is_true(dt < 3 * slow, "took " .. dt)
      end)
    end)

    it("headers, then silence: a buffered body fails, a stream fails in its reader", function()
      against(HEAD_THEN_STALL, function(url)
        local e, dt = timed_error(http.fetch, url, {read_timeout = 0.3})
        assert.are.equal("timeout", e.kind)
        assert.is_true(dt >= 0.29 and dt < 3 * slow, "took " .. dt)
        local r <close> = http.fetch(url, {read_timeout = 0.3, stream = true})
        assert.are.equal(200, r.status)
        local got = {}
        local ok, err = pcall(function()
          for chunk in r:iter_chunks() do got[#got + 1] = chunk end
        end)
        assert.is_false(ok)
        assert.are.equal("timeout", err.kind, tostring(err))
        assert.are.equal("0123456789", table.concat(got))
      end)
    end)

    it("a trickle of a byte every 0.1 s outlasting read_timeout is not cut", function()
      local rt = 0.5 * slow
      local n = math.ceil(2 * rt / 0.1)
      against(([[
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n")
for i in range(%d):
    time.sleep(0.1)
    c.sendall(b"x")
time.sleep(1)
]]):format(n, n), function(url)
        local t0 = asyncio.time()
        local r = http.fetch(url, {read_timeout = rt})
        local dt = asyncio.time() - t0
        assert.are.equal(("x"):rep(n), r.body)
        assert.is_true(dt > rt, "the trickle took only " .. dt .. " s")
      end)
    end)

    it("a total timeout still cuts the trickle", function()
      against([[
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
for i in range(1000):
    time.sleep(0.05)
    c.sendall(b"x")
]], function(url)
        local e, dt = timed_error(http.fetch, url, {timeout = 0.5, read_timeout = 5})
        assert.are.equal("timeout", e.kind)
        assert.is_nil(e.message:find("read_timeout", 1, true), e.message)
        assert.is_true(dt >= 0.45 and dt < 3 * slow, "took " .. dt)
      end)
    end)

    it("a stream its reader leaves unread for longer is not the server's silence", function()
      -- 8 MiB fill the stream's buffer: curl is paused, nothing moves.
      -- The body is made before the request comes (on a loaded machine,
      -- making it took longer than read_timeout: a silent server indeed).
      against([[
body = b"y" * 8388608
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n")
c.sendall(body)
time.sleep(10)
]], function(url)
        local rt = 0.5 * slow
        local r <close> = http.fetch(url, {read_timeout = rt, stream = true})
        local next_chunk, state = r:iter_chunks()
        local n = #next_chunk(state)
        asyncio.sleep(4 * rt)
        for chunk in next_chunk, state do n = n + #chunk end
        assert.are.equal(8388608, n)
      end)
    end)

    it("an upload the server never reads fails; one it reads slowly does not", function()
      local body = ("z"):rep(8 * 1024 * 1024)
      against(NEVER, function(url)
        local e, dt = timed_error(http.fetch, url, {method = "POST", body = body,
                                                    read_timeout = 0.3})
        assert.are.equal("timeout", e.kind)
        assert.is_true(dt < 3 * slow, "took " .. dt)
      end)
      -- 32 MiB read 256 KiB every 0.02 s: about 2.6 s, the last 20 MiB or
      -- so after the sockets' buffers are full, so the upload keeps moving
      -- for longer than read_timeout
      local rt = 0.5 * slow
      against([[
buf = b""
while b"\r\n\r\n" not in buf:
    buf += c.recv(65536)
head, rest = buf.split(b"\r\n\r\n", 1)
got = len(rest)
while got < 33554432:
    n = 0
    while n < 262144 and got + n < 33554432:
        n += len(c.recv(262144))
    got += n
    time.sleep(0.02)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%d" % (len(str(got)), got))
]], function(url)
        local t0 = asyncio.time()
        local r = http.fetch(url, {method = "POST", body = ("u"):rep(33554432),
                                   read_timeout = rt})
        assert.are.equal("33554432", r.body)
        assert.is_true(asyncio.time() - t0 > rt, "the upload was quick")
      end)
    end)

    it("a loop kept busy for longer than read_timeout does not blame the server", function()
      -- the answer comes while the loop is blocked; when the loop runs
      -- again, timers come before the sockets are polled.  The sleep lets
      -- curl's own timer (happy eyeballs, 200 ms) go first, else it would
      -- read the answer before read_timeout is looked at.
      local url, p = raw([[
c.recv(65536)
print("got", flush=True)
time.sleep(0.5)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
time.sleep(5)
]])
      local t = asyncio.create_task(function()
        return http.fetch(url, {read_timeout = 0.5}).body
      end)
      assert.are.equal("got\n", p.stdout:readline())
      asyncio.sleep(0.3)
      local t0 = asyncio.time()
      while asyncio.time() - t0 < 1 do end -- no yield: the loop is blocked
      local ok, body = pcall(t.await, t)
      io_helper.stop(p)
      assert.is_true(ok, tostring(body))
      assert.are.equal("ok", body)
    end)

    it("false (per request or per session) waits as long as it takes", function()
      against([[
c.recv(65536)
time.sleep(0.6)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
]], function(url)
        local s <close> = http.Session{read_timeout = 0.2}
        assert.are.equal("timeout", helper.error_of(s.get, s, url).kind)
        assert.are.equal("ok", s:get(url, {read_timeout = false}).body)
        local f <close> = http.Session{read_timeout = false}
        assert.are.equal("ok", f:get(url).body)
      end)
    end)

    it("does not wake an idle session: no read timer between requests", function()
      -- the main thread's voluntary context switches count its sleeps in
      -- epoll_wait; a read timer left ticking every 50 ms would add ~20.
      -- Valgrind's scheduler switches on its own.
      if slow >= 10 then return end
      local function switches()
        return tonumber(helper.read_file("/proc/self/status"):match("voluntary_ctxt_switches:%s*(%d+)"))
      end
      against([[
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
time.sleep(5)
]], function(url)
        local s <close> = http.Session{read_timeout = 0.05}
        assert.are.equal("ok", s:get(url).body)
        -- the keep-alive connection stays open and silent: not a timeout
        asyncio.sleep(0.2)
        local s0 = switches()
        asyncio.sleep(1)
        local woke = switches() - s0
        assert.is_true(woke <= 2, woke .. " wake-ups in 1 s")
        assert.are.equal(0, s:stats().running)
      end)
    end)
  end)

  describe("connect_timeout", function()
    -- A listener whose accept queue is full: the kernel drops further
    -- SYNs, so a connect never completes (a black hole on loopback).
    local function black_hole()
      return io_helper.python([[
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
port = s.getsockname()[1]
fill = []
for i in range(3):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fill.append(c)
time.sleep(0.2)
print(port, flush=True)
time.sleep(120)
]])
    end

    it("a connection that never completes: kind 'timeout' after connect_timeout", function()
      local p, port = black_hole()
      local url = ("http://127.0.0.1:%s/"):format(port)
      local s <close> = http.Session{connect_timeout = 0.3}
      local e, dt = timed_error(s.get, s, url)
      local e2, dt2 = timed_error(http.fetch, url, {connect_timeout = 0.3})
      io_helper.stop(p)
      for _, x in ipairs{{e, dt}, {e2, dt2}} do
        assert.are.equal("timeout", x[1].kind, tostring(x[1]))
        assert.is_true(x[2] >= 0.29 and x[2] < 3 * slow, "took " .. x[2])
      end
    end)
  end)

  describe("option checks", function()
    local url = "http://127.0.0.1:9/"
    for _, k in ipairs{"timeout", "connect_timeout", "read_timeout"} do
      it(k .. ": negative, zero, NaN, huge, a string or true raise, naming the function and the option", function()
        for _, v in ipairs{-1, 0, 0 / 0, math.huge, 1e7, "5", true} do
          local e = tostring(helper.error_of(http.fetch, url, {[k] = v}))
          assert.matches("bad argument #2 to 'fetch' %(option '" .. k
            .. "' must be a number of seconds in %(0, 1000000%] or false", e)
          e = tostring(helper.error_of(http.Session, {[k] = v}))
          assert.matches("bad argument #1 to 'Session' %(option '" .. k .. "'", e)
          local s <close> = http.Session()
          e = tostring(helper.error_of(s.get, s, url, {[k] = v}))
          assert.matches("bad argument #2 to 'get' %(option '" .. k .. "'", e)
          e = tostring(helper.error_of(s.request, s, "GET", url, {[k] = v}))
          assert.matches("bad argument #3 to 'request' %(option '" .. k .. "'", e)
        end
        assert.matches("got %-1%)", tostring(helper.error_of(http.fetch, url, {[k] = -1})))
        assert.matches("got string", tostring(helper.error_of(http.fetch, url, {[k] = "5"})))
        -- the error is at the caller's line
        helper.arg_error_line(function() http.fetch(url, {[k] = -1}) end, "http_timeout_spec%.lua")
      end)
    end

    it("the other options: wrong types and values name the option and the value", function()
      local cases = {
        {"max_redirects", -1, "must be an integer >= 0, got %-1%)"},
        {"max_redirects", 1.5, "must be an integer >= 0, got 1%.5%)"},
        {"max_redirects", "3", "must be an integer >= 0, got string%)"},
        {"max_body", 0 / 0, "must be an integer >= 0 or false, got nan%)"},
        {"max_body", math.huge, "must be an integer >= 0 or false, got inf%)"},
        -- a string or a 0 would be true to Lua: verify = 0 would verify
        {"verify", 0, "must be true or false, got 0%)"},
        {"follow_redirects", "no", "must be true or false, got string%)"},
        {"stream", 1, "must be true or false, got 1%)"},
        {"cafile", 5, "must be a string, got 5%)"},
        {"proxy", true, "must be a string, got boolean%)"},
      }
      for _, c in ipairs(cases) do
        helper.arg_error_line(function() http.fetch(url, {[c[1]] = c[2]}) end, "http_timeout_spec%.lua")
        local e = tostring(helper.error_of(http.fetch, url, {[c[1]] = c[2]}))
        assert.matches("bad argument #2 to 'fetch' %(option '"
          .. c[1] .. "' " .. c[3], e)
        if c[1] ~= "stream" then -- a per-request option only
          e = tostring(helper.error_of(http.Session, {[c[1]] = c[2]}))
          assert.matches("bad argument #1 to 'Session' %(option '" .. c[1] .. "' " .. c[3], e)
        end
      end
    end)

    it("a misspelt timeout is an unknown option", function()
      assert.matches("unknown option 'read_timout'",
        tostring(helper.error_of(http.fetch, "http://127.0.0.1:9/", {read_timout = 1})))
      assert.matches("unknown option 'idle_timeout'",
        tostring(helper.error_of(http.Session, {idle_timeout = 1})))
    end)
  end)
end)

describe("asyncio.http: a malformed chunked body", function()
  after_each(helper.no_leaks)

  it("a chunk size that is not hex is kind 'protocol' (the server broke HTTP), not 'reset'", function()
    against([[
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nxx\r\n0\r\n\r\n")
time.sleep(1)
]], function(url)
      local e = helper.error_of(http.fetch, url)
      assert.are.equal("protocol", e.kind, tostring(e))
      assert.matches("chunked", e.message)
      -- not in a retry policy's default kinds: not sent again
      e = helper.error_of(http.fetch, url, {retry = {count = 2, backoff = 0.05}})
      assert.are.equal("protocol", e.kind)
      assert.is_nil(e.attempts)
    end)
  end)

  it("a chunk size too long for curl is 'protocol' too", function()
    against([[
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 40 + b"\r\nx\r\n")
time.sleep(1)
]], function(url)
      local e = helper.error_of(http.fetch, url)
      assert.are.equal("protocol", e.kind, tostring(e))
    end)
  end)

  it("a reset in the middle of a chunked body is still 'reset'", function()
    against([[
import struct
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
time.sleep(0.2)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
]], function(url)
      local e = helper.error_of(http.fetch, url)
      assert.are.equal("reset", e.kind, tostring(e))
      assert.matches("[Rr]eset", e.message)
    end)
  end)

  it("a chunked body cut short by a clean close is 'reset'", function()
    against([[
c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
]], function(url)
      local e = helper.error_of(http.fetch, url)
      assert.are.equal("reset", e.kind, tostring(e))
    end)
  end)
end)
