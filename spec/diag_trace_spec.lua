-- The trace timeline (issue 13, point 7): LASYNC_TRACE=out.json writes a
-- Chrome trace event file (one track per task, steps named by task and
-- line, wake flows, instants for cancellations and loop wake-ups; a ring
-- buffer), and `lasync trace-view` draws it in a self-contained page,
-- checked in a real headless Chromium.
local helper = require "spec.helper"
local cjson = require "cjson"
local q = helper.quote

local SCRIPT = [[
local function worker(n) for _ = 1, 3 do asyncio.sleep(0.01 * n) end return n end
asyncio.run(function()
  local a = asyncio.create_task(worker, 1); a:set_name("w1")
  local b = asyncio.create_task(worker, 2); b:set_name("w2 </script><b>")
  asyncio.gather(a, b)
  local d = asyncio.create_task(function() asyncio.sleep(5) end)
  d:set_name("doomed")
  asyncio.sleep(0.01)
  d:cancel()
  pcall(d.await, d)
end)
]]

-- Runs script (SCRIPT by default) traced; returns the file's text, its
-- path, stderr, the status and stdout.
local function record(env, script)
  local json = helper.tmpname(".json")
  local out, err, status = helper.run_script(script or SCRIPT, nil, "LASYNC_TRACE=" .. q(json) .. " " .. (env or "") .. " ")
  local f = io.open(json)
  local text = f and f:read("a")
  if f then f:close() end
  return text, json, err, status, out
end

local function tracks(events)
  local names = {}
  for _, e in ipairs(events) do
    if e.ph == "M" and e.name == "thread_name" then names[e.args.name] = e.tid end
  end
  return names
end

describe("LASYNC_TRACE", function()
  it("writes Chrome trace events: tracks, named steps, wake flows, cancellations", function()
    local text, json, err, status = record()
    os.remove(json)
    assert.are.equal(0, status, err)
    assert.are.equal("", err)
    local trace = cjson.decode(text)
    local events = trace.traceEvents
    local names = tracks(events)
    assert.are.equal(0, names["event loop"])
    local w1, w2, doomed = names["w1"], names["w2 </script><b>"], names["doomed"]
    assert.is_number(w1)
    assert.is_number(w2)
    assert.is_number(doomed)
    local steps, starts, flows_ok, flows, cancel = {}, {}, 0, 0, nil
    for _, e in ipairs(events) do
      if e.ph == "X" then
        steps[e.tid] = (steps[e.tid] or 0) + 1
        assert.is_true(e.dur >= 0 and e.ts >= 0)
        assert.matches(("^Task%%-%d "):format(e.tid), e.name)
      elseif e.ph == "s" then starts[e.id] = e
      elseif e.ph == "f" then
        flows = flows + 1
        if starts[e.id] and starts[e.id].ts <= e.ts then flows_ok = flows_ok + 1 end
      elseif e.ph == "i" and e.cat == "cancel" then cancel = e
      end
    end
    -- a worker: its first step, then one per sleep; named by the line it waits on
    assert.are.equal(4, steps[w1])
    assert.are.equal(4, steps[w2])
    local named = 0
    for _, e in ipairs(events) do
      if e.ph == "X" and e.tid == w1 and e.name:match(":1$") then named = named + 1 end
    end
    assert.are.equal(3, named)
    -- every flow ends after it starts; the timers' wake-ups come from the loop
    assert.is_true(flows > 8)
    assert.are.equal(flows, flows_ok)
    local from_loop = 0
    for _, s in pairs(starts) do if s.tid == 0 then from_loop = from_loop + 1 end end
    assert.is_true(from_loop >= 6)
    assert.is_table(cancel)
    assert.are.equal(doomed, cancel.tid)
    assert.are.equal(trace.otherData.events_recorded, trace.otherData.events_kept)
  end)

  it("keeps the last LASYNC_TRACE_EVENTS events (a ring buffer)", function()
    local text, json = record("LASYNC_TRACE_EVENTS=16")
    os.remove(json)
    local trace = cjson.decode(text)
    assert.are.equal(16, trace.otherData.events_kept)
    assert.is_true(trace.otherData.events_recorded > 16)
  end)

  it("warns when the file cannot be written", function()
    local _, err, status = helper.run_script("print(1)", nil, "LASYNC_TRACE=/nonexistent/dir/x.json ")
    assert.are.equal(0, status)
    assert.matches("LASYNC_TRACE: cannot write '/nonexistent/dir/x.json'", err)
  end)
end)

-- I/O, HTTP and timers (issue 13, point 7's "I/O, timers, HTTP"): a local
-- HTTP server (asyncio.testing's) in the traced program, a stream echo, a
-- UDP datagram, sleeps, a call_later and a wait_for timeout.
local IO_SCRIPT = [[
local testing = require "asyncio.testing"
asyncio.run(function()
  asyncio.current_task():set_name("main")
  local web = testing.http_server{["/hello"] = {status = 200, body = "hello, trace"}}
  local r = asyncio.http.fetch(web.url .. "/hello")
  assert(r.status == 200)
  web:close()
  -- a port nobody listens on: the fetch fails
  local gone = asyncio.start_server(function() end, "127.0.0.1", 0)
  local dead = "http://127.0.0.1:" .. gone.port .. '/x"y\\z</script>' .. ("p"):rep(3000)
  gone:close()
  gone:wait_closed()
  assert(not pcall(asyncio.http.fetch, dead))
  -- a stream echo
  local srv = asyncio.start_server(function(rd, wr)
    asyncio.current_task():set_name("handler")
    wr:write(rd:readline())
    wr:drain()
    wr:close()
  end, "127.0.0.1", 0)
  local port = srv.port
  local rd, wr = asyncio.open_connection("127.0.0.1", port)
  wr:write("hello\n")
  assert(rd:readline() == "hello\n")
  assert(rd:read() == "")
  wr:close()
  srv:close()
  -- a datagram
  local a = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
  local b = asyncio.create_datagram_endpoint{local_addr = {"127.0.0.1", 0}}
  a:sendto("ping!", "127.0.0.1", b:get_extra_info("sockname").port)
  assert(b:recv() == "ping!")
  a:close() b:close()
  -- timers: a sleeper, a call_later, a timeout that cancels
  local sleeper = asyncio.create_task(function() asyncio.sleep(0.01) end)
  sleeper:set_name("sleeper")
  sleeper:await()
  local fired = asyncio.Event()
  asyncio.call_later(0.01, function() fired:set() end)
  fired:wait()
  local slow = asyncio.create_task(function() asyncio.sleep(30) end)
  slow:set_name("slow")
  assert(not pcall(asyncio.wait_for, slow, 0.01))
  print(r.url, dead, port)
end)
]]

local function record_io(env)
  local text, json, err, status, out = record(env, IO_SCRIPT)
  os.remove(json)
  return text, out, err, status
end

local function instants(events, cat)
  local list = {}
  for _, e in ipairs(events) do
    if e.ph == "i" and e.cat == cat then list[#list + 1] = e end
  end
  return list
end

describe("LASYNC_TRACE instants", function()
  local trace, events, names, url, dead, port
  setup(function()
    local text, out, err, status = record_io()
    assert.are.equal(0, status, err)
    assert.are.equal("", err)
    url, dead, port = out:match("^(%S+)\t(%S+)\t(%d+)\n$")
    assert.truthy(url, out)
    trace = cjson.decode(text)
    events = trace.traceEvents
    names = tracks(events)
  end)

  it("an HTTP transfer: an instant with method, URL, status and bytes, and an async slice", function()
    local found
    for _, e in ipairs(instants(events, "http")) do
      if e.args.url == url then found = e end
    end
    assert.is_table(found)
    assert.are.equal("http GET 200", found.name)
    assert.are.equal(names["main"], found.tid)
    assert.are.equal("GET", found.args.method)
    assert.are.equal(200, found.args.status)
    assert.are.equal(#"hello, trace", found.args.bytes)
    assert.is_true(found.args.ms >= 0)
    assert.is_nil(found.args.error)
    local b, e
    for _, ev in ipairs(events) do
      if ev.cat == "http" and ev.name == url then
        if ev.ph == "b" then b = ev elseif ev.ph == "e" then e = ev end
      end
    end
    assert.is_table(b)
    assert.is_table(e)
    assert.are.equal(b.id, e.id)
    assert.is_true(b.ts <= e.ts)
    assert.is_true(math.abs(e.ts - found.ts) < 0.01)
  end)

  it("a failed HTTP transfer: the error, and a hostile URL kept whole", function()
    local found
    for _, e in ipairs(instants(events, "http")) do
      if e.args.url == dead then found = e end
    end
    assert.is_table(found, "no instant for the failed fetch")
    assert.are.equal("http GET failed", found.name)
    assert.are.equal(0, found.args.status)
    assert.matches("[Cc]onnect", found.args.error)
    assert.truthy(dead:find('"', 1, true) and dead:find("\\", 1, true))
  end)

  it("stream I/O: connect and accept with the peer, writes and reads with bytes, the EOF", function()
    local io_ev = instants(events, "io")
    local by = {}
    for _, e in ipairs(io_ev) do
      by[e.args.op] = by[e.args.op] or {}
      table.insert(by[e.args.op], e)
    end
    local connect = by.connect and by.connect[1]
    assert.is_table(connect)
    assert.are.equal("127.0.0.1:" .. port, connect.args.peer)
    assert.are.equal(names["main"], connect.tid)
    local accepted = false
    for _, e in ipairs(by.accept or {}) do
      if e.args.peer and e.args.peer:match("^127%.0%.0%.1:%d+$") then accepted = true end
    end
    assert.is_true(accepted)
    -- "hello\n" written by main, read by the handler, written back
    local w_main, w_handler, r6, eof = false, false, 0, false
    for _, e in ipairs(by.write or {}) do
      if e.args.bytes == 6 and e.tid == names["main"] then w_main = true end
      if e.args.bytes == 6 and e.tid == names["handler"] then w_handler = true end
      assert.are.equal(("write %d B"):format(e.args.bytes), e.name)
    end
    for _, e in ipairs(by.read or {}) do
      if e.args.bytes == 6 then r6 = r6 + 1 end
      if e.args.error == "EOF" then eof = true; assert.are.equal("read EOF", e.name) end
    end
    assert.is_true(w_main)
    assert.is_true(w_handler)
    assert.is_true(r6 >= 2)
    assert.is_true(eof)
    -- the datagram: sent and received, 5 bytes, with the peers
    assert.are.equal(1, #by.send)
    assert.are.equal(5, by.send[1].args.bytes)
    assert.matches("^127%.0%.0%.1:%d+$", by.send[1].args.peer)
    assert.are.equal(1, #by.recv)
    assert.are.equal("recv 5 B", by.recv[1].name)
    assert.matches("^127%.0%.0%.1:%d+$", by.recv[1].args.peer)
    assert.are_not.equal(by.send[1].args.peer, by.recv[1].args.peer)
  end)

  it("timers: a deadline on the woken task's track, call_later on the loop's, a timeout before its cancel", function()
    local timers = instants(events, "timer")
    local sleeper, later, timeout
    for _, e in ipairs(timers) do
      assert.is_true(e.args.late_ms >= 0)
      if e.tid == names["sleeper"] then sleeper = e end
      if e.args.kind == "call_later" then later = e end
      if e.tid == names["main"] then timeout = e end
    end
    assert.is_table(sleeper)
    assert.are.equal("timer", sleeper.name)
    assert.are.equal("deadline", sleeper.args.kind)
    assert.is_table(later)
    assert.are.equal("timer call_later", later.name)
    assert.are.equal(0, later.tid)
    -- wait_for's deadline: on the track of the task it cancels (main, in
    -- wait_for), which then cancels "slow"
    local cancel_main, cancel_slow
    for _, e in ipairs(instants(events, "cancel")) do
      if e.tid == names["main"] then cancel_main = e end
      if e.tid == names["slow"] then cancel_slow = e end
    end
    assert.is_table(timeout)
    assert.are.equal("deadline", timeout.args.kind)
    assert.is_table(cancel_main)
    assert.is_table(cancel_slow)
    assert.are.equal("loop", cancel_main.args.by)
    assert.is_true(timeout.ts <= cancel_main.ts and cancel_main.ts <= cancel_slow.ts)
    -- the sleeper's wake-up is named a timer's on the loop track
    local woke = false
    for _, e in ipairs(instants(events, "loop")) do
      if e.name == ("wake Task-%d (timer)"):format(names["sleeper"]) then woke = true end
    end
    assert.is_true(woke)
  end)

  it("a small ring buffer drops old I/O and HTTP events cleanly", function()
    local text, _, err, status = record_io("LASYNC_TRACE_EVENTS=16")
    assert.are.equal(0, status, err)
    local t = cjson.decode(text)
    assert.are.equal(16, t.otherData.events_kept)
    assert.is_true(t.otherData.events_recorded > 50)
  end)

  it("trace-view counts the instants by kind", function()
    local json = helper.tmpname(".json")
    helper.write_file(json, cjson.encode(trace))
    local html = helper.tmpname(".html")
    local _, err, status = helper.sh(helper.cmd .. " trace-view " .. q(json) .. " > " .. q(html))
    os.remove(json)
    assert.are.equal(0, status, err)
    local n = {}
    for _, cat in ipairs{"cancel", "timer", "io", "http", "loop"} do n[cat] = #instants(events, cat) end
    local chrome = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
    local dom = helper.sh(chrome .. "--dump-dom file://" .. q(html) .. " 2>/dev/null")
    os.remove(html)
    assert.matches(("<div id=\"legend\">instants: cancel %d, timer %d, io %d, http %d, loop %d</div>"):format(
      n.cancel, n.timer, n.io, n.http, n.loop), dom)
  end)
end)

describe("lasync trace-view", function()
  it("writes a self-contained page that Chromium draws", function()
    local text, json = record()
    assert.truthy(text)
    local html = helper.tmpname(".html")
    local _, err, status = helper.sh(helper.cmd .. " trace-view " .. q(json) .. " > " .. q(html))
    assert.are.equal(0, status, err)
    local page = assert(io.open(html)):read("a")
    -- no network: nothing is loaded from elsewhere
    assert.is_nil(page:find("src=", 1, true))
    assert.is_nil(page:find("https?://"))
    -- a task named "</script>..." cannot end the data early
    assert.is_nil(page:find("w2 </script>", 1, true))
    assert.truthy(page:find("w2 <\\/script>", 1, true))
    -- the page runs in a real headless Chromium: its script counts the steps
    local steps = 0
    for _ in text:gmatch('"ph":"X"') do steps = steps + 1 end
    local chrome = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
    local dom = helper.sh(chrome .. "--dump-dom file://" .. q(html) .. " 2>/dev/null")
    assert.matches("<title>lasync trace %(" .. steps .. " steps%)</title>", dom)
    local png = helper.tmpname(".png")
    helper.sh(chrome .. "--window-size=1000,400 --screenshot=" .. q(png) .. " file://" .. q(html) .. " 2>/dev/null")
    local f = assert(io.open(png, "rb"), "no screenshot")
    local bytes = f:read("a")
    f:close()
    assert.are.equal("\137PNG", bytes:sub(1, 4))
    assert.is_true(#bytes > 5000, "an empty picture: " .. #bytes .. " bytes")
    os.remove(png)
    os.remove(html)
    os.remove(json)
  end)

  it("refuses a missing file and one that is not a trace", function()
    local _, err, status = helper.sh(helper.cmd .. " trace-view /nonexistent.json")
    assert.are.equal(1, status)
    assert.matches("trace%-view: cannot open '/nonexistent.json'", err)
    local bad = helper.tmpname(".json")
    helper.write_file(bad, "not json\0")
    _, err, status = helper.sh(helper.cmd .. " trace-view " .. q(bad))
    os.remove(bad)
    assert.are.equal(1, status)
    assert.matches("is not a trace file", err)
  end)
end)
