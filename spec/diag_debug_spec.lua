-- Debug mode (issue 13, point 2): slow steps reported with the traceback
-- of where they are stuck, taken while stuck (a watchdog thread sets a
-- hook); failures never retrieved and tasks never awaited with where they
-- were created; resources left open at exit.  Drives the binary.
local helper = require "spec.helper"

-- a busy loop of `secs` of wall time (os.clock counts CPU, which a loaded
-- machine gives out slowly)
local BUSY = [[
local function busy(secs)
  local t0 = asyncio.time()
  local n = 0
  while asyncio.time() - t0 < secs do n = n + 1 end -- BUSY-LINE
  return n
end
]]

describe("debug mode", function()
  it("reports a step that blocks the loop, with where it is stuck, while it is stuck", function()
    local script = BUSY .. [[
local t = asyncio.create_task(function()
  asyncio.sleep(0)
  busy(0.6)
  io.stderr:write("busy-done\n")
end)
t:set_name("cruncher")
t:await()
print("ok")
]]
    local out, err, status = helper.run_script(script)
    assert.are.equal("ok\n", out)
    assert.are.equal(0, status)
    -- not in debug mode: nothing is said
    assert.are.equal("busy-done\n", err)
    -- the same under -X debug (run_script puts the path last: use sh)
    local path = helper.tmpname(".lua")
    helper.write_file(path, script)
    out, err, status = helper.sh(helper.cmd .. " -X debug " .. helper.quote(path))
    os.remove(path)
    assert.are.equal("ok\n", out)
    assert.are.equal(0, status)
    local stuck = err:find("Executing <Task name='cruncher' created at [^>]*:7> has kept the loop busy for 0%.%d+ seconds %(slow_callback_duration 0%.100%); it is at:\nstack traceback:\n")
    local line = err:find(":4: in upvalue 'busy'\n", 1, true)
    local caller = err:find(":9: in function <", 1, true)
    local done = err:find("busy-done\n", 1, true)
    local took = err:find("Executing <Task name='cruncher' created at [^>]*> took %d+%.%d+ seconds")
    assert.truthy(stuck and line and caller and done and took, err)
    -- the traceback was taken while stuck: printed before the step went on
    assert.is_true(stuck < line and line < caller and caller < done and done < took, err)
  end)

  -- the watchdog sleeps without a deadline while no step runs (and after
  -- it hooked one): the next step's start must wake it every time
  it("after the loop was idle, and again after a step it hooked, reports the next stuck step while stuck", function()
    local path = helper.tmpname(".lua")
    helper.write_file(path, BUSY .. [[
for i = 1, 2 do
  asyncio.sleep(0.3)
  busy(0.5)
  io.stderr:write("busy-done " .. i .. "\n")
end
]])
    local out, err, status = helper.sh(helper.cmd .. " -X debug " .. helper.quote(path))
    os.remove(path)
    assert.are.equal("", out)
    assert.are.equal(0, status, err)
    local pos = 1
    for i = 1, 2 do
      local stuck = err:find("has kept the loop busy for 0%.%d+ seconds %(slow_callback_duration 0%.100%); it is at:\nstack traceback:\n", pos)
      local done = err:find("busy-done " .. i .. "\n", pos, true)
      assert.truthy(stuck and done and stuck < done, err)
      pos = done
    end
  end)

  it("is turned on by LASYNC_DEBUG=1 (not under -E) and set_debug, with slow_callback_duration", function()
    -- (valgrind runs one thread at a time: the watchdog needs longer)
    local script = BUSY .. ("busy(%g)\n"):format(0.3 * helper.slow)
    local _, err = helper.run_script(script, nil, "LASYNC_DEBUG=1 ")
    assert.matches("has kept the loop busy", err)
    assert.matches("in main chunk", err)
    local path = helper.tmpname(".lua")
    helper.write_file(path, script)
    local _, err2 = helper.sh("LASYNC_DEBUG=1 " .. helper.cmd .. " -E " .. helper.quote(path))
    os.remove(path)
    assert.are.equal("", err2)
    local out, err3 = helper.run_script(BUSY .. [[
print(asyncio.get_debug())
asyncio.set_debug(true, { slow_callback_duration = 0.05 })
print(asyncio.get_debug())
asyncio.call_soon(function() busy(0.2) end)
asyncio.sleep(0.01)
busy(0.01) -- quicker than 0.05: nothing said
asyncio.sleep(0)
asyncio.set_debug(false)
print(asyncio.get_debug())
asyncio.call_soon(function() busy(0.2) end)
asyncio.sleep(0.01)
]])
    assert.are.equal("false\t0.1\ntrue\t0.05\nfalse\t0.1\n", out)
    local _, n = err3:gsub("has kept the loop busy", "")
    assert.are.equal(1, n, err3)
    assert.matches("Executing a callback has kept the loop busy for 0%.%d+ seconds %(slow_callback_duration 0%.050%)", err3)
    assert.matches("Executing a callback took 0%.%d+ seconds", err3)
  end)

  it("a step blocked in C is reported when it ends", function()
    local _, err, status = helper.run_script([[
asyncio.set_debug(true, { slow_callback_duration = 0.05 })
asyncio.sleep(0) -- the step that turned debug mode on is not timed
os.execute("sleep 0.3")
]])
    assert.are.equal(0, status)
    assert.matches("Executing <Task name='Task%-1' created at the host %(a main chunk%)> took %d+%.%d+ seconds", err)
  end)

  it("names where never-retrieved failures and never-awaited tasks were created, and open resources", function()
    local _, err = helper.run_script([[
asyncio.set_debug(true)
asyncio.create_task(function() error("lost") end)
asyncio.sleep(0.01)
collectgarbage()
asyncio.create_task(function() asyncio.sleep(10) end)
local srv = asyncio.start_server(function() end, "127.0.0.1", 0)
asyncio.sleep(0)
os.exit(0, true)
]])
    assert.matches("Task exception was never retrieved %(Task%-2, created at [^\n]*:2%)\n[^\n]*:2: lost\nstack traceback:", err)
    assert.matches("Task never awaited, still pending when the loop ends %(it is cancelled now%): <Task name='Task%-3' created at [^>]*:5>, waiting in 'sleep' at [^\n]*:5", err)
    assert.matches("Resource left open at exit: server created at [^\n]*:6", err)
  end)

  it("refuses bad options", function()
    local out = helper.run_script([[
print(pcall(asyncio.set_debug, true, { slow = 1 }))
print(pcall(asyncio.set_debug, true, { slow_callback_duration = -1 }))
print(pcall(asyncio.set_debug, true, { slow_callback_duration = "x" }))
print(pcall(asyncio.set_debug))
print(asyncio.get_debug())
]])
    assert.matches("false\t[^\n]*unknown option 'slow'", out)
    assert.matches("false\t[^\n]*slow_callback_duration: a positive number of seconds expected", out)
    assert.matches("false\t[^\n]*slow_callback_duration: number expected", out)
    assert.matches("false\t[^\n]*bad argument #1 to '[%w.]*set_debug' %(value expected%)", out)
    assert.matches("\nfalse\t0.1\n$", out)
    local _, err, status = helper.sh(helper.cmd .. " -X nope -e 'print(1)'")
    assert.are.equal(1, status)
    assert.matches("unknown %-X option 'nope' %(known: debug, inspect%)", err)
    _, err, status = helper.sh(helper.cmd .. " -X")
    assert.are.equal(1, status)
    assert.matches("'%-X' needs argument", err)
  end)

  it("is turned on by asyncio.run(fn, {debug = true, slow_callback_duration = s})", function()
    -- the lasync binary as a subprocess: the watchdog's report on stderr
    local busy = ("busy(%g)"):format(0.3 * helper.slow)
    local out, err, status = helper.run_script(BUSY .. ([[
local x, on = asyncio.run(function(x)
  local on = asyncio.get_debug()
  asyncio.sleep(0)
  %s
  return x, on
end, {debug = true, slow_callback_duration = 0.05}, "arg")
print(x, on)
]]):format(busy))
    assert.are.equal(0, status, err)
    assert.matches("has kept the loop busy for 0%.%d+ seconds %(slow_callback_duration 0%.050%); it is at:\nstack traceback:\n", err)
    assert.matches(":4: in upvalue 'busy'", err, 1, true)
    assert.matches("Executing <Task name='Task%-%d+' created at [^>]*> took %d+%.%d+ seconds", err)
    -- the arguments after the options go to fn; get_debug saw the options
    assert.are.equal("arg\ttrue\n", out)
    -- the same script without the options: nothing is reported
    out, err, status = helper.run_script(BUSY .. ("asyncio.run(function() asyncio.sleep(0) %s end)\nprint(asyncio.get_debug())\n"):format(busy))
    assert.are.equal(0, status, err)
    assert.are.equal("", err)
    assert.are.equal("false\t0.1\n", out)
  end)

  it("asyncio.run's options: debug = false turns it off, tables without them go to fn, bad ones raise", function()
    local out, err, status = helper.run_script([[
asyncio.set_debug(true)
print(asyncio.run(function() return asyncio.get_debug() end, {debug = false}))
print(asyncio.run(function() return asyncio.get_debug() end, {slow_callback_duration = 0.2}))
asyncio.set_debug(true, {slow_callback_duration = 0.3})
print(asyncio.run(function() return asyncio.get_debug() end, {slow_callback_duration = 0.2}))
-- plain arguments, a table without option fields, one with a metatable
print(asyncio.run(function(t) return t.x, t.debug end, {x = 5}))
print(asyncio.run(function(t) return t.debug end, setmetatable({debug = "mine"}, {})))
print(asyncio.run(function(a, b) return a, b end, 1, {debug = true}))
asyncio.set_debug(false)
local function try(opts) print((select(2, pcall(asyncio.run, function() end, opts)))) end
try({debug = true, slow = 1})
try({debug = true, [1] = "x"})
try({debug = true, ["a\0b"] = 1})
try({debug = 1})
try({debug = true, slow_callback_duration = "0.1"})
try({debug = true, slow_callback_duration = -1})
try({debug = true, slow_callback_duration = 0/0})
try({debug = true, slow_callback_duration = math.huge})
try({slow_callback_duration = 1e300})
print(asyncio.get_debug())
local run = asyncio.run -- through a local: still named asyncio.run
print((select(2, pcall(run, function() end, {debug = true, nope = true}))))
]])
    assert.are.equal(0, status, err)
    local lines = {}
    for l in out:gmatch("[^\n]*") do if l ~= "" then lines[#lines + 1] = l end end
    assert.are.equal("false\t0.1", lines[1])
    -- slow_callback_duration alone keeps debug mode as it is (off here)
    assert.are.equal("false\t0.1", lines[2])
    assert.are.equal("true\t0.2", lines[3])
    assert.are.equal("5\tnil", lines[4])
    assert.are.equal("mine", lines[5])
    assert.are.equal("1\ttable: ", lines[6]:sub(1, 9))
    local pre = "^bad argument #2 to 'asyncio.run' %("
    assert.matches(pre .. "unknown option 'slow'%)$", lines[7])
    assert.matches(pre .. "unknown option '1'%)$", lines[8])
    assert.matches(pre .. "unknown option 'a", lines[9])
    assert.matches(pre .. "debug: boolean expected, got number%)$", lines[10])
    assert.matches(pre .. "slow_callback_duration: number expected, got string%)$", lines[11])
    for i = 12, 15 do
      assert.matches(pre .. "slow_callback_duration: a positive number of seconds expected%)$", lines[i])
    end
    -- a refused call changed nothing
    assert.are.equal("false\t0.1", lines[16])
    assert.matches(pre .. "unknown option 'nope'%)$", lines[17])
  end)
end)
