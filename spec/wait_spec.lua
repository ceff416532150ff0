local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()
local a = asyncio

describe("wait_for", function()
  after_each(helper.no_leaks)

  it("returns the results in time", function()
    local r = table.pack(a.wait_for(function() a.sleep(0.001) return 1, 2 end, 1))
    assert.are.same({1, 2, n = 2}, r)
  end)

  it("cancels the task and raises TimeoutError on expiry", function()
    local t = a.create_task(function() a.sleep(10) end)
    local t0 = a.time()
    local ok, err = pcall(a.wait_for, t, 0.02)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.is_true(t:cancelled())
    assert.is_true(a.time() - t0 < 0.5 * helper.slow)
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("nil timeout waits forever; a done task returns at once", function()
    assert.are.equal(5, a.wait_for(function() a.sleep(0.01) return 5 end, nil))
    local t = a.create_task(function() return "x" end)
    t:await()
    assert.are.equal("x", a.wait_for(t, 0))
  end)

  it("passes the task's own error through", function()
    local ok, err = pcall(a.wait_for, function() error("own", 0) end, 1)
    assert.is_false(ok)
    assert.are.equal("own", err)
  end)

  it("an outside cancel stays a CancelledError", function()
    local t = a.create_task(function() return a.wait_for(function() a.sleep(10) end, 5) end)
    a.sleep(0.001)
    t:cancel()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.CancelledError))
  end)

  it("checks its arguments", function()
    assert.has_error(function() a.wait_for(42, 1) end,
      "bad argument #1 to 'wait_for' (task or function expected, got number)")
  end)
end)

describe("timeout", function()
  after_each(helper.no_leaks)

  it("turns its own cancellation into TimeoutError at the scope's end", function()
    local tm
    local ok, err = pcall(function()
      tm = a.timeout(0.01)
      local _ <close> = tm
      a.sleep(10)
    end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.is_true(tm:expired())
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("does nothing when the block ends in time", function()
    local tm
    do
      tm = a.timeout(1)
      local _ <close> = tm
      a.sleep(0)
    end
    assert.is_false(tm:expired())
    a.sleep(0.002)
  end)

  it("when / reschedule / timeout_at / nil deadline", function()
    local now = a.time()
    local tm = a.timeout_at(now + 5)
    assert.is_true(math.abs(tm:when() - (now + 5)) < 0.01)
    tm:reschedule(nil)
    assert.is_nil(tm:when())
    local ok, err = pcall(function()
      local _ <close> = tm
      tm:reschedule(a.time() + 0.01)
      a.sleep(10)
    end)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.is_false(ok)
    local ok2, err2 = pcall(tm.reschedule, tm, 1)
    assert.is_false(ok2)
    assert.is_true(a.is(err2, a.RuntimeError))
    do local _ <close> = a.timeout(nil) a.sleep(0) end
  end)

  it("nested: the inner deadline fires, the outer one stays", function()
    local ok, err = pcall(function()
      local _ <close> = a.timeout(5)
      local ok2, err2 = pcall(function()
        local _ <close> = a.timeout(0.01)
        a.sleep(10)
      end)
      assert.is_false(ok2)
      assert.is_true(a.is(err2, a.TimeoutError))
      return "outer ok"
    end)
    assert.is_true(ok)
    assert.are.equal("outer ok", err)
  end)

  it("an outside cancel in the block is not turned into TimeoutError", function()
    local t = a.create_task(function()
      local _ <close> = a.timeout(5)
      a.sleep(10)
    end)
    a.sleep(0.001)
    t:cancel()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.CancelledError))
  end)
end)

describe("wait", function()
  after_each(helper.no_leaks)

  local function sleeper(d, v) return function() a.sleep(d) return v end end

  it("ALL_COMPLETED by default", function()
    local ts = {a.create_task(sleeper(0.01, 1)), a.create_task(sleeper(0.001, 2))}
    local done, pending = a.wait(ts)
    assert.are.equal(2, #done)
    assert.are.equal(0, #pending)
  end)

  it("FIRST_COMPLETED returns as soon as one is done", function()
    local fast, slow = a.create_task(sleeper(0.001, 1)), a.create_task(sleeper(5, 2))
    local done, pending = a.wait({slow, fast}, {return_when = "FIRST_COMPLETED"})
    assert.are.same({fast}, done)
    assert.are.same({slow}, pending)
    assert.is_false(slow:done()) -- wait cancels nothing
    slow:cancel()
  end)

  it("FIRST_EXCEPTION returns at the first failure", function()
    local bad = a.create_task(function() a.sleep(0.001) error("x", 0) end)
    local slow = a.create_task(sleeper(5))
    local done, pending = a.wait({bad, slow}, {return_when = "FIRST_EXCEPTION"})
    assert.are.same({bad}, done)
    assert.are.same({slow}, pending)
    slow:cancel()
  end)

  it("timeout returns what is done so far", function()
    local slow = a.create_task(sleeper(5))
    local t0 = a.time()
    local done, pending = a.wait({slow}, {timeout = 0.01})
    assert.are.equal(0, #done)
    assert.are.equal(1, #pending)
    assert.is_true(a.time() - t0 >= 0.009)
    slow:cancel()
  end)

  it("checks its arguments", function()
    assert.has_error(function() a.wait({}) end,
      "bad argument #1 to 'wait' (the list of tasks is empty)")
    assert.has_error(function() a.wait({function() end}, {return_when = "SOME"}) end)
  end)
end)

describe("as_completed", function()
  after_each(helper.no_leaks)

  it("yields tasks in the order they finish", function()
    local list = {}
    for i, d in ipairs{0.03, 0.01, 0.02} do
      list[i] = function() a.sleep(d) return d end
    end
    local got = {}
    for t in a.as_completed(list) do got[#got + 1] = t:await() end
    assert.are.same({0.01, 0.02, 0.03}, got)
  end)

  it("keeps readiness order even when the loop body is slow", function()
    local list = {}
    for i, d in ipairs{0.02, 0.001, 0.01} do
      list[i] = a.create_task(function() a.sleep(d) return i end)
    end
    local got = {}
    for t in a.as_completed(list) do
      got[#got + 1] = t:await()
      a.sleep(0.05)
    end
    assert.are.same({2, 3, 1}, got)
  end)

  it("raises TimeoutError when the timeout passes", function()
    local slow = a.create_task(function() a.sleep(5) end)
    local ok, err = pcall(function()
      for t in a.as_completed({slow}, 0.01) do t:await() end
    end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    slow:cancel()
  end)
end)

describe("shield", function()
  after_each(helper.no_leaks)

  it("protects the inner task from the outer cancellation", function()
    local inner = a.create_task(function() a.sleep(0.02) return "inner" end)
    local ok, err = pcall(a.wait_for, a.shield(inner), 0.001)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.is_false(inner:done())
    assert.are.equal("inner", inner:await())
  end)

  it("returns the results and re-raises the inner error", function()
    assert.are.equal(3, a.shield(function() a.sleep(0) return 3 end):await())
    local ok, err = pcall(function()
      return a.shield(function() a.sleep(0) error("in", 0) end):await()
    end)
    assert.is_false(ok)
    assert.are.equal("in", err)
  end)
end)

-- sync.lua checks some arguments in helpers one call below the function
-- the caller called (task_list, to_task, check_number, check_cond): the
-- error still names the caller's line.
describe("argument errors of wait, wait_for, as_completed, Condition", function()
  after_each(helper.no_leaks)

  it("point at the caller's line", function()
    local function line_of(f) return helper.arg_error_line(f, "wait_spec%.lua") end
    local cond = a.Condition()
    local here = debug.getinfo(1, "l").currentline
    assert.are.equal(here + 1, line_of(function() local r = a.wait({1}) return r end))
    assert.are.equal(here + 2, line_of(function() local r = a.wait_for(1, 1) return r end))
    assert.are.equal(here + 3, line_of(function() local r = a.wait({function() end}, {timeout = "x"}) return r end))
    assert.are.equal(here + 4, line_of(function() local r = a.as_completed(5) return r end))
    assert.are.equal(here + 5, line_of(function() local r = cond.notify({}) return r end))
    assert.are.equal(here + 6, line_of(function() local r = a.Barrier(0) return r end))
  end)
end)
