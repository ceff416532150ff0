-- asyncio.http.server (libmicrohttpd on the host loop): what a handler
-- sees, what clients get back, HTTP/1.1 framing (keep-alive, pipelining,
-- chunked bodies both ways, Expect: 100-continue, HEAD), streamed
-- responses with back-pressure and graceful shutdown.  Clients: libcurl
-- (asyncio.http), Python's http.client and raw sockets.
local helper = require "spec.helper"
local http = require "asyncio.http"
local web = require "asyncio.http.server"

local webhelper = require "spec.webhelper"
local with_server = webhelper.with_server

-- Writes data on a new connection, reads until the server closes it (or
-- `wait` seconds pass); returns the raw reply and whether it closed.
local function raw(port, data, wait)
  local r, w = asyncio.open_connection("127.0.0.1", port)
  if data then w:write(data) end
  local reply, closed = webhelper.read_all(r, wait)
  w:close()
  return reply, closed
end

-- Runs a shell command without blocking the loop (the server is in it).
local function sh(cmd)
  local p = asyncio.create_subprocess_shell(cmd, {stdout = "pipe"})
  local out = p.stdout:read()
  p:wait()
  return out
end

local function statuses(reply)
  local out = {}
  for code in reply:gmatch("HTTP/1%.%d (%d%d%d) ") do out[#out + 1] = tonumber(code) end
  return out
end

local function echo(req)
  return {
    status = 200,
    headers = {["Content-Type"] = "text/plain", ["X-Seen-Method"] = req.method},
    body = table.concat({req.method, req.path, req.query.a or "-",
      req.headers["x-token"] or "-", req:body()}, "|"),
  }
end

describe("asyncio.http.server", function()
  after_each(function() helper.no_leaks() end)

  -- "An idle program at 0% CPU": the sweep for clients gone mid-request
  -- runs only while someone is connected.  The main thread's voluntary
  -- context switches count its sleeps in epoll_wait; a sweep every 0.5 s
  -- would add four in 2 s.  Valgrind's scheduler switches on its own.
  it("does not wake the loop while nobody is connected", function()
    if helper.slow >= 10 then return end
    local function switches()
      return tonumber(helper.read_file("/proc/self/status"):match("voluntary_ctxt_switches:%s*(%d+)"))
    end
    local srv = web.serve(function() return "x" end, "127.0.0.1", 0)
    -- a connection comes and goes first: the sweep must stop after it
    local r, w = asyncio.open_connection("127.0.0.1", srv.port)
    w:write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1.1 200", r:read())
    w:close()
    -- the sweep stops when the server has seen the connection go, which a
    -- loaded machine may delay past any fixed sleep
    helper.wait_until(function() return srv:connections() == 0 end, 5, "the connection to go")
    asyncio.sleep(0.2)
    local s0 = switches()
    asyncio.sleep(2)
    local woke = switches() - s0
    srv:close()
    srv:wait_closed()
    assert.is_true(woke <= 2, woke .. " wake-ups in 2 s")
  end)

  it("gives the handler method, path, parsed query, case-insensitive headers, body, remote", function()
    local seen
    with_server(function(req)
      seen = req
      return {status = 201, headers = {["X-Reply"] = "yes"}, body = "made"}
    end, function(srv)
      local res = http.fetch(("http://127.0.0.1:%d/items/7?a=1%%202&b=x&b=y"):format(srv.port), {
        method = "PUT", headers = {["X-Token"] = "abc"}, body = "payload"})
      assert.are.equal(201, res.status)
      assert.are.equal("made", res:text())
      assert.are.equal("yes", res.headers["x-reply"])
    end)
    assert.are.equal("PUT", seen.method)
    assert.are.equal("/items/7", seen.path)
    assert.are.equal("1 2", seen.query.a)
    assert.are.equal("x, y", seen.query.b)
    assert.are.equal("abc", seen.headers["x-token"])
    assert.are.equal("abc", seen.headers["X-TOKEN"])
    assert.are.equal("payload", seen:body())
    assert.are.equal("127.0.0.1", seen.remote[1])
    assert.is_true(seen.remote[2] > 0)
  end)

  it("answers Python's http.client, keep-alive on one connection", function()
    with_server(echo, function(srv)
      local out = sh(([[python3 -c '
import http.client
c = http.client.HTTPConnection("127.0.0.1", %d)
for i in range(3):
    c.request("POST", "/p?a=%%d" %% i, body=b"b%%d" %% i, headers={"X-Token": "t"})
    r = c.getresponse()
    print(r.status, r.read().decode(), r.getheader("Content-Length"))
print(c.sock is not None)
']]):format(srv.port))
      assert.are.equal("200 POST|/p|0|t|b0 14\n200 POST|/p|1|t|b1 14\n200 POST|/p|2|t|b2 14\nTrue\n", out)
    end)
  end)

  it("answers pipelined requests in order on one connection", function()
    with_server(function(req)
      asyncio.sleep(req.path == "/slow" and 0.05 or 0) -- out of order inside
      return {body = req.path}
    end, function(srv)
      local reqs = "GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\n"
        .. "GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
      local reply, closed = raw(srv.port, reqs)
      assert.is_true(closed)
      assert.are.same({200, 200, 200}, statuses(reply))
      local bodies = {}
      for b in reply:gmatch("\r\n\r\n(/%l+)") do bodies[#bodies + 1] = b end
      assert.are.same({"/slow", "/fast", "/last"}, bodies)
    end)
  end)

  -- A handler that answers in its first step is picked up without the
  -- connection being suspended; one that awaits is suspended until it
  -- answers.  Both kinds, alternating on keep-alive connections.
  it("answers handlers that return at once and handlers that await, mixed", function()
    with_server(function(req)
      local n = tonumber(req.query.n)
      if n % 3 == 1 then asyncio.sleep(0) elseif n % 3 == 2 then asyncio.sleep(0.01) end
      return {body = "r" .. n}
    end, function(srv)
      local function client(first)
        local reqs = {}
        for n = first, first + 8 do
          reqs[#reqs + 1] = ("GET /?n=%d HTTP/1.1\r\nHost: a\r\n%s\r\n"):format(
            n, n == first + 8 and "Connection: close\r\n" or "")
        end
        local r, w = asyncio.open_connection("127.0.0.1", srv.port)
        local got = {}
        for _, one in ipairs(reqs) do -- one at a time: each waits for its answer
          w:write(one)
          local head = r:readuntil("\r\n\r\n")
          local len = tonumber(head:match("Content%-Length: (%d+)"))
          got[#got + 1] = r:readexactly(len)
        end
        w:close()
        return table.concat(got, ",")
      end
      local a = asyncio.create_task(client, 0)
      local b = asyncio.create_task(client, 100)
      assert.are.equal("r0,r1,r2,r3,r4,r5,r6,r7,r8", a:await())
      assert.are.equal("r100,r101,r102,r103,r104,r105,r106,r107,r108", b:await())
    end)
  end)

  it("a handler that awaits costs no busy loop while its client waits", function()
    local release = asyncio.Event()
    local started = asyncio.Event()
    with_server(function()
      started:set()
      release:wait()
      return "late"
    end, function(srv)
      local t = asyncio.create_task(function()
        return http.fetch(("http://127.0.0.1:%d/"):format(srv.port)):text()
      end)
      started:wait()
      local cpu = os.clock()
      asyncio.sleep(0.3)
      -- a busy loop re-running libmicrohttpd would burn the whole 0.3 s
      assert.is_true(os.clock() - cpu < 0.1 * helper.slow, "CPU while waiting: " .. (os.clock() - cpu))
      release:set()
      assert.are.equal("late", t:await())
    end)
  end)

  it("reads a chunked request body", function()
    with_server(echo, function(srv)
      local reply = raw(srv.port, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        .. "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
      assert.are.equal("\r\n\r\nPOST|/c|-|-|hello world", reply:sub(-27))
    end)
  end)

  it("sends 100 Continue before reading a body the client holds back", function()
    with_server(echo, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
        .. "Connection: close\r\n\r\n")
      local first = asyncio.wait_for(function() return r:readuntil("\r\n\r\n") end, 5)
      assert.are.equal("HTTP/1.1 100 Continue\r\n\r\n", first)
      w:write("data")
      local rest = asyncio.wait_for(function() return r:read() end, 5)
      w:close()
      assert.matches("^HTTP/1.1 200", rest)
      assert.are.equal("POST|/e|-|-|data", rest:sub(-16))
    end)
  end)

  it("answers HEAD with the headers of GET and no body", function()
    with_server(function() return {body = ("x"):rep(1000)} end, function(srv)
      local reply = raw(srv.port, "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 200", reply)
      assert.matches("Content%-Length: 1000\r\n", reply)
      assert.are.equal("\r\n\r\n", reply:sub(-4))
    end)
  end)

  it("streams a chunked response from a writer", function()
    with_server(function()
      return {headers = {["Content-Type"] = "text/plain"}, body = function(write)
        for i = 1, 5 do write("part" .. i .. ";") asyncio.sleep(0.01) end
      end}
    end, function(srv)
      local reply = raw(srv.port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.matches("Transfer%-Encoding: chunked", reply)
      local res = http.fetch(("http://127.0.0.1:%d/"):format(srv.port))
      assert.are.equal("part1;part2;part3;part4;part5;", res:text())
    end)
  end)

  it("a writer waits for a client that does not read (back-pressure), then fails when it resets", function()
    local written, err, done = 0, nil, asyncio.Event()
    with_server(function()
      return {body = function(write)
        local ok, e = pcall(function()
          local chunk = ("z"):rep(16384)
          for _ = 1, 100000 do write(chunk) written = written + #chunk end
        end)
        err = e
        done:set()
        if not ok then error(e, 0) end
      end}
    end, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      asyncio.sleep(0.5 * helper.slow)
      -- socket buffers plus our 64 KiB: far from the 1.6 GB asked for
      assert.is_true(written > 0)
      assert.is_true(written < 16 * 1024 * 1024, "written " .. written)
      assert.is_false(done:is_set())
      w:close()
      asyncio.wait_for(function() done:wait() end, 5)
      assert.is_true(asyncio.is(err, asyncio.ConnectionResetError), tostring(err))
      local _ = r
    end)
  end)

  it("answers 500 when the handler fails and keeps serving", function()
    local calls = 0
    with_server(function(req)
      calls = calls + 1
      if req.path == "/boom" then error("boom") end
      if req.path == "/bad" then return {headers = {["X-Bad"] = "a\r\nInjected: 1"}} end
      if req.path == "/type" then return 42 end
      return {body = "fine"}
    end, function(srv)
      local base = ("http://127.0.0.1:%d"):format(srv.port)
      local stderr = io.stderr
      io.stderr = {write = function() end} -- the failure report
      local ok, err = pcall(function()
        assert.are.equal(500, http.fetch(base .. "/boom").status)
        local reply = raw(srv.port, "GET /bad HTTP/1.1\r\nHost: a\r\n\r\n")
        assert.matches("^HTTP/1.1 500", reply)
        assert.is_nil(reply:find("Injected", 1, true))
        assert.are.equal(500, http.fetch(base .. "/type").status)
      end)
      io.stderr = stderr
      assert(ok, err)
      assert.are.equal("fine", http.fetch(base .. "/").text and http.fetch(base .. "/"):text())
    end)
  end)

  it("close() finishes in-flight requests, refuses new connections, then closes", function()
    local started = asyncio.Event()
    local srv = web.serve(function() started:set() asyncio.sleep(0.3) return {body = "late"} end, "127.0.0.1", 0)
    local port = srv.port
    local inflight = asyncio.create_task(function()
      return http.fetch(("http://127.0.0.1:%d/"):format(port))
    end)
    started:wait() -- in flight: the handler runs
    local t0 = asyncio.time()
    srv:close()
    srv:close() -- idempotent
    local res = asyncio.wait_for(inflight, 5)
    assert.are.equal("late", res:text())
    assert.are.equal("close", res.headers["connection"])
    srv:wait_closed()
    assert.is_true(asyncio.time() - t0 < 2 * helper.slow)
    helper.raises(asyncio.ConnectionRefusedError, asyncio.open_connection, "127.0.0.1", port)
  end)

  it("closes with <close>, cancelling handlers past shutdown_timeout", function()
    local cancelled = false
    local started = asyncio.Event()
    local port
    do
      local srv <close> = web.serve(function()
        started:set()
        local ok, e = pcall(asyncio.sleep, 30)
        if not ok then cancelled = true error(e, 0) end
      end, "127.0.0.1", 0, {shutdown_timeout = 0.1})
      port = srv.port
      asyncio.create_task(function() pcall(http.fetch, ("http://127.0.0.1:%d/"):format(port)) end)
      started:wait()
    end
    helper.wait_until(function() return cancelled end, 5, "the handler's cancellation")
    helper.raises(asyncio.ConnectionRefusedError, asyncio.open_connection, "127.0.0.1", port)
  end)
end)

describe("asyncio.http.server limits", function()
  after_each(function() helper.no_leaks() end)

  it("a declared body over max_body is 413 before it is read, then the connection closes", function()
    local called = false
    with_server(function() called = true return "x" end, function(srv)
      local reply, closed = raw(srv.port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n")
      assert.are.same({413}, statuses(reply))
      assert.is_true(closed)
      reply = raw(srv.port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
        .. ("9"):rep(40) .. "\r\n\r\n")
      assert.are.equal(4, math.floor(statuses(reply)[1] / 100))
    end, {max_body = 1000})
    assert.is_false(called)
  end)

  it("an endless chunked body is cut at max_body (the connection closes)", function()
    local called = false
    with_server(function() called = true return "x" end, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
      local sent = 0
      local ok = pcall(function()
        for _ = 1, 1000 do
          w:write("1000\r\n" .. ("c"):rep(4096) .. "\r\n")
          w:drain()
          sent = sent + 4096
          asyncio.sleep(0) -- the server runs in this loop too
        end
      end)
      w:close()
      local _ = r
      -- cut: the writes fail long before 4 MB, and the connection is gone
      assert.is_false(ok)
      assert.is_true(sent < 1024 * 1024, "sent " .. sent)
      helper.wait_until(function() return srv:connections() == 0 end, 5, "the connection to go")
    end, {max_body = 64 * 1024})
    assert.is_false(called)
  end)

  it("huge request lines and header blocks are refused with 414/431", function()
    with_server(echo, function(srv)
      local reply = raw(srv.port, "GET /" .. ("a"):rep(100000) .. " HTTP/1.1\r\nHost: a\r\n\r\n")
      local st = statuses(reply)[1]
      assert.is_true(st == 414 or st == 431, reply:sub(1, 100))
      reply = raw(srv.port, "GET / HTTP/1.1\r\nHost: a\r\n" .. ("X-Fill: " .. ("f"):rep(1000) .. "\r\n"):rep(40) .. "\r\n")
      assert.are.same({431}, statuses(reply))
      -- and a normal request still works
      assert.truthy(raw(srv.port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"):find("GET|/|", 1, true))
    end, {max_header_bytes = 16 * 1024})
  end)

  it("a malformed request is 400 and the connection closes", function()
    with_server(echo, function(srv)
      local reply, closed = raw(srv.port, "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
      assert.are.same({400}, statuses(reply))
      assert.is_true(closed)
      -- conflicting lengths (request smuggling): refused, never served
      reply, closed = raw(srv.port, "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\nHost: a\r\n\r\n")
      assert.are.same({400}, statuses(reply))
      assert.is_true(closed)
      reply, closed = raw(srv.port, "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: a\r\n\r\n")
      assert.are.same({400}, statuses(reply))
      assert.is_true(closed)
    end)
  end)

  it("cuts a slowloris client at header_timeout even though it keeps sending", function()
    with_server(echo, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("GET / HTTP/1.1\r\n")
      local t0 = asyncio.time()
      local cut = false
      pcall(function()
        for i = 1, 40 do
          w:write("X-" .. i .. ": y\r\n")
          w:drain()
          asyncio.sleep(0.1)
        end
      end)
      local ok, rest = pcall(asyncio.wait_for, function() return r:read() end, 3)
      cut = ok and not rest:match("^HTTP/1.1 200")
      local dt = asyncio.time() - t0
      w:close()
      assert.is_true(cut)
      assert.is_true(dt < 3.5 * helper.slow, "took " .. dt)
    end, {header_timeout = 0.5})
  end)

  it("closes idle keep-alive connections after idle_timeout", function()
    with_server(echo, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      local t0 = asyncio.time()
      local all = asyncio.wait_for(function() return r:read() end, 5)
      assert.matches("^HTTP/1.1 200", all)
      assert.is_true(asyncio.time() - t0 >= 0.9)
      w:close()
    end, {idle_timeout = 1, header_timeout = 5})
  end)

  -- the gone-client sweep no longer runs every half second: an idle
  -- keep-alive connection is cut by the one timer set for its deadline
  it("closes an idle keep-alive connection at header_timeout, from one timer", function()
    with_server(echo, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      local t0 = asyncio.time()
      local all = asyncio.wait_for(function() return r:read() end, 5 * helper.slow)
      assert.matches("^HTTP/1.1 200", all)
      local dt = asyncio.time() - t0
      assert.is_true(dt >= 0.9 and dt < 3 * helper.slow, "took " .. dt)
      w:close()
    end, {idle_timeout = 60, header_timeout = 1})
  end)

  it("serves no more than max_connections at once", function()
    with_server(echo, function(srv)
      local conns = {}
      for i = 1, 3 do
        local r, w = asyncio.open_connection("127.0.0.1", srv.port)
        conns[i] = {r, w}
      end
      -- the server takes two (a loaded machine may take a while), not three
      helper.wait_until(function() return srv:connections() >= 2 end, 5, "two connections")
      asyncio.sleep(0.2)
      assert.are.equal(2, srv:connections())
      local r3, w3 = conns[3][1], conns[3][2]
      pcall(w3.write, w3, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      local ok, reply = pcall(asyncio.wait_for, function() return r3:read() end, 0.5)
      assert.is_falsy(ok and reply:match("^HTTP/1.1 200")) -- not served
      w3:close()
      conns[1][2]:close()
      conns[2][2]:close()
      helper.wait_until(function() return srv:connections() == 0 end, 5, "the connections to go")
      -- slots free again (libmicrohttpd counts a closed one until its next run)
      local reply = helper.wait_until(function()
        local got = raw(srv.port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        return got ~= "" and got
      end, 5, "a free slot")
      assert.matches("^HTTP/1.1 200", reply)
    end, {max_connections = 2})
  end)

  it("survives clients that reset mid-request and a pipelined flood", function()
    local calls = 0
    with_server(function(req) calls = calls + 1 return req.path end, function(srv)
      for _ = 1, 20 do
        local _, w = asyncio.open_connection("127.0.0.1", srv.port)
        w:write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhalf")
        w:close()
      end
      local flood = ("GET /f HTTP/1.1\r\nHost: a\r\n\r\n"):rep(2000)
      local reply = raw(srv.port, flood, 3)
      local n = #statuses(reply)
      assert.is_true(n > 0 and n <= 2000, "answers: " .. n)
      assert.are.equal("/ok", http.fetch(("http://127.0.0.1:%d/ok"):format(srv.port)):text())
    end)
    assert.is_true(calls >= 2)
  end)
end)

describe("asyncio.http.server over TLS", function()
  after_each(function() helper.no_leaks() end)

  it("serves HTTPS with a PEM certificate and key (curl and Python as clients)", function()
    local dir = helper.tmpname("")
    sh(("mkdir -p %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      .. "-subj /CN=localhost -days 2 -keyout %s/k.pem -out %s/c.pem 2>/dev/null"):format(dir, dir, dir))
    local cert = io.open(dir .. "/c.pem"):read("a")
    local key = io.open(dir .. "/k.pem"):read("a")
    with_server(echo, function(srv)
      -- clients in other processes: see docs/http_server.md, known limits
      assert.are.equal("GET|/s|1|-|", sh(("curl -sk 'https://127.0.0.1:%d/s?a=1'"):format(srv.port)))
      local out = sh(([[python3 -c '
import ssl, urllib.request
ctx = ssl.create_default_context(cafile="%s/c.pem"); ctx.check_hostname = False
print(urllib.request.urlopen("https://127.0.0.1:%d/py", data=b"x", context=ctx).read().decode())
']]):format(dir, srv.port))
      assert.are.equal("POST|/py|-|-|x\n", out)
      -- plain HTTP on the TLS port is not served
      local reply = raw(srv.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 2)
      assert.is_nil(reply:match("^HTTP/1.1 200"))
    end, {tls = {cert = cert, key = key}})
    sh("rm -rf " .. dir)
  end)

  it("refuses a malformed tls option and a bad certificate", function()
    local h = function() return "x" end
    helper.fails_with("option tls must be", web.serve, h, "127.0.0.1", 0, {tls = "x"})
    helper.fails_with("option tls must be", web.serve, h, "127.0.0.1", 0, {tls = {cert = "a"}})
    helper.fails_with("unknown option 'tls.ca'", web.serve, h, "127.0.0.1", 0,
      {tls = {cert = "a", key = "b", ca = "c"}})
    helper.fails_with("TLS certificate", web.serve, h, "127.0.0.1", 0,
      {tls = {cert = "not a pem", key = "nor this"}})
  end)
end)

describe("asyncio.http.server arguments", function()
  after_each(function() helper.no_leaks() end)

  it("refuses wrong handlers, hosts, ports and options with clear errors", function()
    local h = function() return "x" end
    helper.fails_with("bad argument #1 to 'serve' %(function expected, got nil%)", web.serve, nil, "127.0.0.1", 0)
    helper.fails_with("bad argument #2 to 'serve'", web.serve, h, "127.0.0.1\0x", 0)
    helper.fails_with("bad argument #2 to 'serve'", web.serve, h, 12, 0)
    helper.fails_with("bad argument #3 to 'serve'", web.serve, h, "127.0.0.1", 70000)
    helper.fails_with("bad argument #3 to 'serve'", web.serve, h, "127.0.0.1", "80")
    helper.fails_with("numeric IP address", web.serve, h, "example.invalid", 0)
    helper.fails_with("unknown option 'max_bdy'", web.serve, h, "127.0.0.1", 0, {max_bdy = 1})
    helper.fails_with("max_body must be a finite number", web.serve, h, "127.0.0.1", 0, {max_body = -1})
    helper.fails_with("max_body must be a finite number", web.serve, h, "127.0.0.1", 0, {max_body = "1"})
    helper.fails_with("idle_timeout must be an integer", web.serve, h, "127.0.0.1", 0, {idle_timeout = 1.5})
    helper.fails_with("header_timeout must be > 0", web.serve, h, "127.0.0.1", 0, {header_timeout = 0})
    helper.fails_with("bad argument #4 to 'serve'", web.serve, h, "127.0.0.1", 0, 5)
  end)

  it("reports a port in use as OSError", function()
    with_server(echo, function(srv)
      helper.raises(asyncio.OSError, web.serve, echo, "127.0.0.1", srv.port)
    end)
  end)

  it("has documented defaults", function()
    assert.are.equal(1024 * 1024, web.defaults.max_body)
    assert.are.equal(32 * 1024, web.defaults.max_header_bytes)
    assert.are.equal(10, web.defaults.header_timeout)
    assert.matches("^%d+%.%d+", web.mhd_version)
  end)
end)
