-- add_signal_handler / remove_signal_handler.
local helper = require "spec.helper"

local function kill_self(sig)
  local p = asyncio.create_subprocess_shell("kill -" .. sig .. " $PPID")
  assert.are.equal(0, p:wait())
end

describe("signal handlers", function()
  after_each(function()
    asyncio.remove_signal_handler("SIGUSR1")
    asyncio.remove_signal_handler("SIGUSR2")
    helper.no_leaks()
  end)

  it("runs the handler with its arguments, like call_soon", function()
    local got = {}
    asyncio.add_signal_handler("SIGUSR1", function(a, b) got[#got + 1] = a .. b end, "x", "y")
    kill_self("USR1")
    helper.wait_until(function() return #got > 0 end, 5, "the handler")
    assert.are.same({"xy"}, got)
  end)

  it("accepts numbers and short names, and can be removed", function()
    local n = 0
    asyncio.add_signal_handler(12, function() n = n + 1 end) -- SIGUSR2
    kill_self("USR2")
    helper.wait_until(function() return n > 0 end, 5, "the handler")
    assert.are.equal(1, n)
    assert.is_true(asyncio.remove_signal_handler("USR2"))
    assert.is_false(asyncio.remove_signal_handler("SIGUSR2"))
  end)

  it("replaces a handler for the same signal", function()
    local which
    asyncio.add_signal_handler("SIGUSR1", function() which = "first" end)
    asyncio.add_signal_handler("SIGUSR1", function() which = "second" end)
    kill_self("USR1")
    helper.wait_until(function() return which end, 5, "a handler")
    assert.are.equal("second", which)
  end)

  it("refuses bad signals", function()
    local ok, err = pcall(asyncio.add_signal_handler, "SIGNOPE", print)
    assert.matches("unknown signal name 'SIGNOPE'", err)
    ok, err = pcall(asyncio.add_signal_handler, "SIGKILL", print)
    assert.matches("cannot be caught", err)
    ok, err = pcall(asyncio.add_signal_handler, 0, print)
    assert.matches("invalid signal number", err)
    ok, err = pcall(asyncio.add_signal_handler, "SIGUSR1", 42)
    assert.matches("function expected", err)
    ok, err = pcall(asyncio.add_signal_handler, {}, print)
    assert.matches("signal name or number expected", err)
  end)

  it("does not keep the program alive, and reports handler errors", function()
    local t0 = os.time()
    local out, err, status = helper.run_script([[
      asyncio.add_signal_handler("SIGTERM", function() print("never") end)
      asyncio.add_signal_handler("SIGUSR1", function() error("handler failed") end)
      local p = asyncio.create_subprocess_shell("kill -USR1 $PPID")
      p:wait()
      asyncio.sleep(0.1)
      print("main done")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("main done\n", out)
    assert.matches("handler failed", err)
    assert.is_true(os.time() - t0 < 5 * helper.slow)
  end)
end)
