-- An idle program sleeps: for each long-lived feature, a lasync child
-- holds it idle (after printing "ready") and the spec counts, over 2 s,
-- how often the child's threads went to sleep (voluntary context
-- switches, from /proc/<pid>/task/<tid>/status: one per return to
-- epoll_wait or a condition variable) and the CPU it used (utime + stime
-- from /proc/<pid>/stat, in clock ticks).  A feature that keeps a
-- periodic timer (a sweep, a watchdog, a poll of libcurl's timeouts)
-- would show a few wake-ups per second; an idle one shows none.
--
-- The allowance is constant, not proportional to time: one wake-up and
-- one clock tick, for a child that was still finishing the turn in which
-- it printed "ready" (writing, freeing, then blocking once) when the
-- first count was taken.  The spec waits for two counts 50 ms apart (0.6 s
-- where a last one-shot timer is due) to agree before it starts, so that
-- is rare; a feature that wakes on a timer, even every 2 s, shows more.
--
-- LASYNC_IDLE_TABLE=1 prints the table (feature, wake-ups, CPU ms).
-- Skipped under valgrind, whose scheduler switches threads on its own.
local helper = require "spec.helper"
local tlshelper = require "spec.tlshelper"
local redis_servers = require "spec.redis_servers"
local web = require "asyncio.http.server"

local WINDOW = 2
local ALLOWED_WAKES, ALLOWED_TICKS = 1, 1
local TICK_MS = 10 -- Linux's USER_HZ is 100 on every architecture

local read = require("spec.http_servers").read_file -- nil once it is gone

-- pid -> its children, from every /proc/<pid>/stat (the kernel's
-- /proc/<pid>/task/<tid>/children is not always built in).
local function children_map()
  local kids = {}
  local p = io.popen("ls /proc")
  for name in p:lines() do
    if name:match("^%d+$") then
      local st = read("/proc/" .. name .. "/stat")
      local ppid = st and st:match("%) %S+ (%d+)")
      if ppid then
        kids[ppid] = kids[ppid] or {}
        table.insert(kids[ppid], name)
      end
    end
  end
  p:close()
  return kids
end

-- The process and its descendants.
local function tree(pid)
  local kids, out, todo = children_map(), {}, {tostring(pid)}
  while #todo > 0 do
    local p = table.remove(todo)
    out[#out + 1] = p
    for _, k in ipairs(kids[p] or {}) do todo[#todo + 1] = k end
  end
  return out
end

-- Voluntary switches of every thread of every process in the tree (and
-- of each process's main thread, where its loop runs), and CPU ticks.
local function sample(pids)
  local s = {wakes = 0, loop = 0, ticks = 0, threads = {}}
  for _, pid in ipairs(pids) do
    local st = read("/proc/" .. pid .. "/stat")
    if st then
      local rest = st:match("%) (.*)")
      local f = {}
      for w in rest:gmatch("%S+") do f[#f + 1] = w end
      -- fields 14 and 15 (utime, stime) are 12 and 13 after "(comm) "
      s.ticks = s.ticks + tonumber(f[12]) + tonumber(f[13])
      local p = io.popen("ls /proc/" .. pid .. "/task 2>/dev/null")
      for tid in p:lines() do
        local status = read("/proc/" .. pid .. "/task/" .. tid .. "/status") or ""
        local n = tonumber(status:match("voluntary_ctxt_switches:%s*(%d+)")) or 0
        local name = status:match("Name:%s*([^\n]*)") or "?"
        s.wakes = s.wakes + n
        s.threads[pid .. "/" .. tid] = {n = n, name = name}
        if tid == pid then s.loop = s.loop + n end
      end
      p:close()
    end
  end
  return s
end

-- Which threads woke between two samples, for the failure message.
local function who(a, b)
  local parts = {}
  for k, t in pairs(b.threads) do
    local d = t.n - (a.threads[k] and a.threads[k].n or 0)
    if d > 0 then parts[#parts + 1] = ("%s (%s): %d"):format(k, t.name, d) end
  end
  table.sort(parts)
  return table.concat(parts, ", ")
end

local results = {}
local READY = 'print("ready") io.stdout:flush()\n'

-- Starts `lasync [flags] script args`, waits until its output has
-- printed `ready` `count` times (or matches opts.ready), then measures.
local function measure(name, script, opts)
  opts = opts or {}
  local path = helper.tmpname(".lua")
  helper.write_file(path, script)
  local _ <close> = helper.finally(function() os.remove(path) end)
  local argv = {}
  for k, v in pairs(opts.env or {}) do argv[#argv + 1] = k .. "=" .. v end
  for _, w in ipairs(opts.prefix or {}) do argv[#argv + 1] = w end
  argv[#argv + 1] = helper.lasync
  for _, f in ipairs(opts.flags or {}) do argv[#argv + 1] = f end
  if not opts.no_script then argv[#argv + 1] = path end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  local proc = asyncio.create_subprocess_exec("env", argv,
    {stdin = "pipe", stdout = "pipe", stderr = "stdout"})
  local out = ""
  local _ <close> = helper.finally(function()
    if proc.returncode == nil then
      pcall(proc.send_signal, proc, opts.stop or "SIGKILL")
      proc:wait()
    end
    for pid in out:gmatch("kill (%d+)") do os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  end)
  local ready = opts.ready or "ready"
  local count = opts.count or 1
  do
    local _ <close> = asyncio.timeout(20 * helper.slow)
    while select(2, out:gsub(ready, "")) < count do
      local chunk = proc.stdout:read(4096)
      assert(chunk ~= "", name .. ": the child ended: " .. out)
      out = out .. chunk
    end
  end
  if opts.after_ready then opts.after_ready(proc) end
  local pids = tree(proc.pid)
  -- settled: two counts `quiet` seconds apart agree (or 2 s pass)
  local quiet = opts.quiet or 0.05
  local s0 = sample(pids)
  for _ = 1, math.ceil(2 / quiet) do
    asyncio.sleep(quiet)
    local s = sample(pids)
    local same = s.wakes == s0.wakes
    s0 = s
    if same then break end
  end
  asyncio.sleep(WINDOW)
  local s1 = sample(pids)
  assert(proc.returncode == nil, name .. ": the child ended: " .. out)
  local r = {name = name, wakes = s1.wakes - s0.wakes, loop = s1.loop - s0.loop,
             ms = (s1.ticks - s0.ticks) * TICK_MS, who = who(s0, s1)}
  results[#results + 1] = r
  return r
end

local function assert_idle(r)
  assert.is_true(r.wakes <= ALLOWED_WAKES and r.ms <= ALLOWED_TICKS * TICK_MS,
    ("%s: %d wake-ups (%d on loop threads) and %d ms of CPU in %d s: %s"):format(
      r.name, r.wakes, r.loop, r.ms, WINDOW, r.who))
end

local function idle(name, script, opts)
  it(name, function()
    if helper.slow >= 10 then return end
    assert_idle(measure(name, script, opts))
  end)
end


describe("an idle lasync program", function()
  teardown(function()
    if os.getenv("LASYNC_IDLE_TABLE") and #results > 0 then
      io.stderr:write(("\n%-52s %8s %8s %6s\n"):format("feature", "wakes/2s", "loop", "CPU ms"))
      for _, r in ipairs(results) do
        io.stderr:write(("%-52s %8d %8d %6d  %s\n"):format(r.name, r.wakes, r.loop, r.ms, r.who))
      end
    end
    tlshelper.cleanup()
  end)

  -- the instrument itself: a program that polls four times a second
  it("sees a program that polls (the counter works)", function()
    if helper.slow >= 10 then return end
    local r = measure("a task polling every 0.25 s (control)", READY .. [[
while true do asyncio.sleep(0.25) end
]])
    assert.is_true(r.wakes >= 4 and r.loop >= 4, r.name .. ": " .. r.wakes)
  end)

  idle("a task sleeping an hour", READY .. [[
asyncio.create_task(function() asyncio.sleep(3600) end)
]])

  idle("asyncio.run awaiting a pending Future (a server would settle it)", [[
asyncio.run(function()
  local f = asyncio.Future()
  local srv = asyncio.start_server(function() f:set_result(1) end, "127.0.0.1", 0)
  print("ready") io.stdout:flush()
  f:await()
end)
]])

  idle("a TCP server with no clients", [[
local srv = asyncio.start_server(function() end, "127.0.0.1", 0)
]] .. READY .. "srv:serve_forever()\n")

  idle("a TCP server and one idle client (reader waiting)", [[
local srv = asyncio.start_server(function(r, w)
  print("ready") io.stdout:flush()
  r:read()
end, "127.0.0.1", 0)
local r, w = asyncio.open_connection("127.0.0.1", srv.port)
r:read()
]])

  idle("a Unix server and one idle client", [[
local path = os.tmpname() os.remove(path)
local srv = asyncio.start_unix_server(function(r, w)
  os.remove(path)
  print("ready") io.stdout:flush()
  r:read()
end, path)
local r, w = asyncio.open_unix_connection(path)
r:read()
]])

  idle("a UDP endpoint waiting in recv()", [[
local ep = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
]] .. READY .. "ep:recv()\n")

  local function tls_script(body)
    local c = tlshelper.certs()
    return ([[
local ssl = asyncio.ssl
local sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
sctx:load_cert_chain(%q, %q)
local cctx = ssl.create_default_context()
cctx:load_verify_locations{cafile = %q}
]]):format(c.server.cert, c.server.key, c.ca) .. body
  end

  idle("a TLS server with no clients", tls_script [[
local srv = asyncio.start_server(function() end, "127.0.0.1", 0, {ssl = sctx})
]] .. READY .. "srv:serve_forever()\n")

  idle("a TLS server and one idle TLS client", tls_script [[
local srv = asyncio.start_server(function(r, w)
  w:write("hi\n") w:drain()
  r:read()
end, "127.0.0.1", 0, {ssl = sctx})
local r, w = asyncio.open_connection("127.0.0.1", srv.port, {ssl = cctx, server_hostname = "localhost"})
assert(r:readline() == "hi\n")
]] .. READY .. "r:read()\n")

  local function web_keepalive(opts_text)
    return [[
local web = require "asyncio.http.server"
local srv = web.serve(function() return "x" end, "127.0.0.1", 0]] .. opts_text .. [[)
local r, w = asyncio.open_connection("127.0.0.1", srv.port, CLIENT_OPTS)
w:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
local got = ""
while not got:find("\r\n\r\nx") do got = got .. r:read(4096) end
]] .. READY .. "r:read()\n"
  end

  idle("an HTTP server with no clients", [[
local web = require "asyncio.http.server"
local srv = web.serve(function() return "x" end, "127.0.0.1", 0)
]] .. READY .. "srv:wait_closed()\n")

  -- the server looks for a gone client once, half a second after its last
  -- read (then only at the 10 s header deadline): the count starts after it
  idle("an HTTP server with an idle keep-alive connection",
    "local CLIENT_OPTS = nil\n" .. web_keepalive(""), {quiet = 0.6})

  idle("an HTTPS server with an idle keep-alive connection", tls_script(
    "local CLIENT_OPTS = {ssl = cctx, server_hostname = 'localhost'}\n" ..
    web_keepalive(", {ssl = sctx}")), {quiet = 0.6})

  -- libcurl's multi handle asks for timers (CURLMOPT_TIMERFUNCTION): none
  -- may be left running once the transfer is over and its connection pooled
  it("the HTTP client after a request (its keep-alive connection pooled)", function()
    if helper.slow >= 10 then return end
    local srv = web.serve(function() return "x" end, "127.0.0.1", 0)
    local tsrv = web.serve(function() return "x" end, "127.0.0.1", 0, {ssl = tlshelper.server_ctx()})
    local _ <close> = helper.finally(function()
      srv:close() tsrv:close() srv:wait_closed() tsrv:wait_closed()
    end)
    local function after(name, get)
      assert_idle(measure(name, 'local http = require "asyncio.http"\n' .. get ..
        '.status == 200)\n' .. READY .. "asyncio.sleep(3600)\n",
        {args = {srv.port, tsrv.port, tlshelper.certs().ca}}))
    end
    after("an http.Session after a request",
      'assert(http.Session{}:get("http://127.0.0.1:" .. arg[1] .. "/")')
    after("http.fetch after a request",
      'assert(http.fetch("http://127.0.0.1:" .. arg[1] .. "/")')
    after("an http.Session with timeouts after an HTTPS request",
      'local s = http.Session{timeout = 30, connect_timeout = 10, cafile = arg[3]}\n' ..
      'assert(s:get("https://localhost:" .. arg[2] .. "/")')
  end)

  idle("an idle WebSocket connection (both ends)", [[
local web = require "asyncio.http.server"
local websocket = require "asyncio.websocket"
local srv = web.serve(function(req)
  local ws = req:websocket()
  ws:send("hi")
  ws:receive()
end, "127.0.0.1", 0)
local ws = websocket.connect("ws://127.0.0.1:" .. srv.port .. "/")
assert(ws:receive() == "hi")
]] .. READY .. "ws:receive()\n")

  describe("with a redis-server", function()
    local server
    setup(function() server = redis_servers.start() end)
    teardown(function() if server then server.cleanup() end end)

    it("a redis connection idle after a command", function()
      if helper.slow >= 10 then return end
      assert_idle(measure("a redis connection idle after a command", [[
local redis = require "asyncio.redis"
local r = redis.connect(arg[1])
assert(r:ping() == "PONG")
print("ready") io.stdout:flush()
asyncio.sleep(3600)
]], {args = {server.url}}))
    end)

    it("a redis pub/sub subscriber waiting", function()
      if helper.slow >= 10 then return end
      assert_idle(measure("a redis pub/sub subscriber waiting", [[
local redis = require "asyncio.redis"
local r = redis.connect(arg[1])
local sub = r:subscribe("idle-news")
print("ready") io.stdout:flush()
sub:next()
]], {args = {server.url}}))
    end)
  end)

  idle("a subprocess being awaited (sleep 1000)", [[
local p = asyncio.create_subprocess_exec("sleep", {"1000"})
print("ready kill " .. p.pid) io.stdout:flush()
p:wait()
]])

  idle("--workers 2, each worker sleeping", READY .. [[
asyncio.sleep(3600)
]], {flags = {"--workers", "2"}, count = 2, stop = "SIGTERM"})

  idle("to_thread's pool after a job", [[
assert(asyncio.to_thread(function(a) return a + 1 end, 1) == 2)
]] .. READY .. "asyncio.sleep(3600)\n")

  idle("a signal handler installed", [[
asyncio.add_signal_handler("SIGUSR1", function() end)
]] .. READY .. "asyncio.sleep(3600)\n")

  idle("an asyncio.Queue getter waiting", [[
local q = asyncio.Queue()
asyncio.call_later(3600, function() q:put_nowait(1) end)
]] .. READY .. "q:get()\n")

  idle("debug mode (-X debug, its watchdog)", READY .. [[
asyncio.sleep(3600)
]], {flags = {"-X", "debug"}})

  idle("debug mode after a step that blocked the loop", [[
local t = asyncio.time() + 0.15
while asyncio.time() < t do end
asyncio.sleep(0)
]] .. READY .. "asyncio.sleep(3600)\n", {flags = {"-X", "debug"}})

  it("trace mode (LASYNC_TRACE)", function()
    if helper.slow >= 10 then return end
    local out = helper.tmpname(".json")
    local _ <close> = helper.finally(function() os.remove(out) end)
    assert_idle(measure("trace mode (LASYNC_TRACE)", READY .. "asyncio.sleep(3600)\n",
      {env = {LASYNC_TRACE = out}}))
  end)

  idle("a reader of stdin waiting (asyncio.stdin())", [[
local r = asyncio.stdin()
]] .. READY .. "r:readline()\n")

  idle("the REPL waiting for input", "", {flags = {"-i"}, no_script = true, ready = "\n> "})

  -- fd 0 non-blocking (set by whoever shares it): reads said EAGAIN and
  -- the REPL retried every 10 ms
  it("the REPL waiting on a non-blocking stdin", function()
    if helper.slow >= 10 then return end
    local wrap = helper.tmpname(".py")
    helper.write_file(wrap, [[
import os, sys
r, w = os.pipe()
os.set_blocking(r, False)
os.dup2(r, 0)
os.set_inheritable(w, True)  # held open by the REPL itself: no end of input
os.execv(sys.argv[1], sys.argv[1:])
]])
    local _ <close> = helper.finally(function() os.remove(wrap) end)
    assert_idle(measure("the REPL waiting on a non-blocking stdin", "",
      {prefix = {"python3", wrap}, flags = {"-i"}, no_script = true, ready = "\n> "}))
  end)

  idle("a `lasync ps` target, after one ps", READY .. "asyncio.sleep(3600)\n", {
    flags = {"-X", "inspect"}, stop = "SIGTERM",
    after_ready = function(proc)
      local out, err, st = helper.sh(helper.cmd .. " ps " .. proc.pid)
      assert.are.equal(0, st, err)
      assert.matches("Task%-1", out)
    end})
end)
