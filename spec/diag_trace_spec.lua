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

local function record(env)
  local json = helper.tmpname(".json")
  local _, err, status = helper.run_script(SCRIPT, nil, "LASYNC_TRACE=" .. q(json) .. " " .. (env or "") .. " ")
  local f = io.open(json)
  local text = f and f:read("a")
  if f then f:close() end
  return text, json, err, status
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
