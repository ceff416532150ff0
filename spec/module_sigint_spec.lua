-- Ctrl-C during asyncio.run in a stock lua5.4 (asyncio.so's own host):
-- as Python's asyncio.run, the main task is cancelled and its cleanup
-- runs, then asyncio.run raises lua.c's "interrupted!" (status 1).
local helper = require "spec.helper"

-- Runs the script in lua5.4 with asyncio.so from the build; SIGINT once it
-- printed "ready" (and again after `second`).  Returns output (stdout and
-- stderr), status and the seconds it took.
local function interrupt(script, second)
  local prefix = ("package.cpath = %q .. '/?.so;' .. package.cpath\n"
    .. "local asyncio = require 'asyncio'\n"):format(helper.module_dir)
  local t0 = os.time()
  local out, status = helper.interrupt(prefix .. script, second,
                                       {prog = helper.lua54_cmd()})
  return out, status, os.time() - t0
end

-- the sleeps are 60 s: an ignored Ctrl-C shows as a run this long
local quick = 20 * helper.slow

describe("Ctrl-C in asyncio.run under a stock lua5.4", function()
  it("cancels the waiting main task, runs its cleanup and raises interrupted!", function()
    local out, status, took = interrupt([[
      asyncio.run(function()
        local guard <close> = setmetatable({}, {__close = function(_, e)
          print("cleanup", asyncio.is(e, asyncio.CancelledError)) io.stdout:flush()
        end})
        local ok, e = pcall(function()
          print("ready") io.stdout:flush()
          asyncio.sleep(60)
        end)
        print("pcall cleanup", ok, asyncio.is(e, asyncio.CancelledError)) io.stdout:flush()
        error(e, 0)
      end)
      print("not reached")
    ]])
    assert.are.equal(1, status, out)
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("pcall cleanup\tfalse\ttrue\ncleanup\ttrue\n", out, 1, true)
    assert.matches("lua5.4: interrupted!\nstack traceback:\n%s*%[C%]: in function 'asyncio.run'", out)
    assert.is_nil(out:find("not reached", 1, true))
  end)

  it("cancels the other tasks too, once the main task has unwound", function()
    local out, status, took = interrupt([[
      asyncio.run(function()
        asyncio.create_task(function()
          local ok, e = pcall(asyncio.sleep, 60)
          print("worker", asyncio.is(e, asyncio.CancelledError)) io.stdout:flush()
        end)
        print("ready") io.stdout:flush()
        asyncio.sleep(60)
      end)
    ]])
    assert.are.equal(1, status, out)
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("worker\ttrue", out)
    assert.matches("lua5.4: interrupted!", out, 1, true)
  end)

  it("raises interrupted! in a busy main task, as lua.c does in busy Lua code", function()
    local out, status, took = interrupt([[
      asyncio.run(function()
        local guard <close> = setmetatable({}, {__close = function(_, e)
          print("cleanup", e) io.stdout:flush()
        end})
        print("ready") io.stdout:flush()
        while true do end
      end)
    ]])
    assert.are.equal(1, status, out)
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("cleanup\t[^\n]*interrupted!\n", out)
    assert.matches("lua5.4: [^\n]*interrupted!\nstack traceback:", out)
  end)

  it("a pcall in the busy main task catches it, as in plain lua5.4", function()
    local out, status = interrupt([[
      print(asyncio.run(function()
        local ok, e = pcall(function()
          print("ready") io.stdout:flush()
          while true do end
        end)
        return ok, e
      end))
    ]])
    assert.are.equal(0, status, out)
    assert.matches("^ready\nfalse\t[^\n]*interrupted!\nstatus=0", out)
  end)

  it("stops a busy task other than the main one and reports it once", function()
    local out, status, took = interrupt([[
      asyncio.run(function()
        asyncio.create_task(function()
          local guard <close> = setmetatable({}, {__close = function() print("busy cleanup") end})
          print("ready") io.stdout:flush()
          while true do end
        end)
        local guard <close> = setmetatable({}, {__close = function() print("main cleanup") end})
        asyncio.sleep(60)
      end)
    ]])
    assert.are.equal(1, status, out)
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("busy cleanup\nmain cleanup\n", out, 1, true)
    local _, n = out:gsub("interrupted!", "")
    assert.are.equal(1, n, out) -- not again as "Task exception was never retrieved"
  end)

  it("kills at once on a second Ctrl-C during the cleanup, as lua.c", function()
    local out, status, took = interrupt([[
      asyncio.run(function()
        local guard <close> = setmetatable({}, {__close = function()
          print("slow cleanup") io.stdout:flush()
          asyncio.sleep(60)
        end})
        print("ready") io.stdout:flush()
        asyncio.sleep(60)
      end)
    ]], "slow cleanup")
    assert.are.equal(130, status, out) -- killed by SIGINT
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("slow cleanup", out)
  end)

  it("gives lua.c its SIGINT back after a run: busy code later gets interrupted!", function()
    local out, status, took = interrupt([[
      print(asyncio.run(function() asyncio.sleep(0.01) return "done" end))
      print("ready") io.stdout:flush()
      while true do end
    ]])
    assert.are.equal(1, status, out) -- 130 if libuv's SIG_DFL had stayed
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("^done\nready\nlua5.4: interrupted!\nstack traceback:", out)
  end)

  it("takes Ctrl-C again in a later run after an interrupted one", function()
    local out, status, took = interrupt([[
      local ok, e = pcall(asyncio.run, function()
        print("ready") io.stdout:flush()
        asyncio.sleep(60)
      end)
      print("first", ok, e) io.stdout:flush()
      asyncio.run(function()
        local guard <close> = setmetatable({}, {__close = function() print("second cleanup") end})
        asyncio.sleep(60)
      end)
    ]], "first")
    assert.are.equal(1, status, out)
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("first\tfalse\tinterrupted!\nsecond cleanup\nlua5.4: interrupted!", out, 1, true)
  end)

  it("leaves a nested run (inside a task) to the outer one", function()
    local out, status, took = interrupt([[
      asyncio.run(function()
        local guard <close> = setmetatable({}, {__close = function() print("outer cleanup") end})
        asyncio.run(function()
          local guard <close> = setmetatable({}, {__close = function() print("inner cleanup") end})
          print("ready") io.stdout:flush()
          asyncio.sleep(60)
        end)
      end)
    ]])
    assert.are.equal(1, status, out)
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("inner cleanup\nouter cleanup\nlua5.4: interrupted!", out, 1, true)
  end)
  it("leaves Ctrl-C to the program's own add_signal_handler('SIGINT'), as Python", function()
    local out, status, took = interrupt([[
      asyncio.run(function()
        local ev = asyncio.Event()
        asyncio.create_task(asyncio.sleep, 60) -- (a signal handler alone is no wake-up source)
        asyncio.add_signal_handler("SIGINT", function() print("handler") ev:set() end)
        print("ready") io.stdout:flush()
        ev:wait()
        assert(asyncio.remove_signal_handler("SIGINT"))
        print("removed") io.stdout:flush()
        asyncio.sleep(60)
      end)
    ]], "removed")
    assert.are.equal(1, status, out)
    assert.is_true(took < quick, "took " .. took .. " s")
    assert.matches("^ready\nhandler\nremoved\nlua5.4: interrupted!", out)
  end)
end)
