-- CPython's Lib/test/test_asyncio/test_timeouts.py, restated for lasync.
-- `async with asyncio.timeout(d) as cm:` is `local cm <close> = a.timeout(d)`;
-- a `finally:` block is a to-be-closed value (it may suspend, as in Python).
local helper = require "spec.helper"
local a = asyncio

local finally = helper.finally

-- Runs body in a scope holding the timeout make(d) (a.timeout or
-- a.timeout_at); returns ok, the error (or the first result) and the
-- timeout object.
local function within(make, d, body)
  local cm
  local ok, err = pcall(function()
    local t <close> = make(d)
    cm = t
    return body(t)
  end)
  return ok, err, cm
end

local function is_timeout(err) return a.is(err, a.TimeoutError) end
local function is_cancel(err) return a.is(err, a.CancelledError) end

-- The test of timeout(0) around sleep(d): the sleep is interrupted at once
-- with TimeoutError, and when() is the time the scope was entered.
local function timeout_zero_interrupts(d)
  return function()
    local t0 = a.time()
    local ok, err, cm = within(a.timeout, 0, function() a.sleep(d) end)
    local t1 = a.time()
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(cm:expired())
    assert.is_true(t0 <= cm:when() and cm:when() <= t1)
  end
end

describe("conformance: test_timeouts", function()
  after_each(helper.no_leaks)

  it("test_timeout_basic (TimeoutTests): the deadline interrupts sleep with TimeoutError", function()
    local ok, err, cm = within(a.timeout, 0.01, function() a.sleep(10) end)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(cm:expired())
  end)

  it("test_timeout_at_basic (TimeoutTests): timeout_at expires and when() is the deadline", function()
    local deadline = a.time() + 0.01
    local ok, err, cm = within(a.timeout_at, deadline, function() a.sleep(10) end)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(cm:expired())
    assert.are.equal(deadline, cm:when())
  end)

  it("test_nested_timeouts (TimeoutTests): only the outermost of equal deadlines raises TimeoutError", function()
    local deadline = a.time() + 0.01
    local cancelled, cm2 = false, nil
    local ok, err, cm1 = within(a.timeout_at, deadline, function()
      local ok2, err2 = pcall(function()
        local t <close> = a.timeout_at(deadline)
        cm2 = t
        a.sleep(10)
      end)
      if not ok2 and is_cancel(err2) then cancelled = true end
      error(err2, 0)
    end)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(cancelled)
    assert.is_true(cm1:expired())
    assert.is_true(cm2:expired())
  end)

  it("test_waiter_cancelled (TimeoutTests): the waiting code sees CancelledError first", function()
    local cancelled = false
    local ok, err = within(a.timeout, 0.01, function()
      local ok2, e = pcall(a.sleep, 10)
      if not ok2 and is_cancel(e) then cancelled = true end
      error(e, 0)
    end)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(cancelled)
  end)

  it("test_timeout_not_called (TimeoutTests): a scope ending in time does not expire", function()
    local ok, _, cm = within(a.timeout, 10, function() a.sleep(0.01) end)
    local t1 = a.time()
    assert.is_true(ok)
    assert.is_false(cm:expired())
    assert.is_true(cm:when() > t1)
  end)

  it("test_timeout_disabled (TimeoutTests): timeout(nil) never expires, when() is nil", function()
    local ok, _, cm = within(a.timeout, nil, function() a.sleep(0.01) end)
    assert.is_true(ok)
    assert.is_false(cm:expired())
    assert.is_nil(cm:when())
  end)

  it("test_timeout_at_disabled (TimeoutTests): timeout_at(nil) never expires", function()
    local ok, _, cm = within(a.timeout_at, nil, function() a.sleep(0.01) end)
    assert.is_true(ok)
    assert.is_false(cm:expired())
    assert.is_nil(cm:when())
  end)

  it("test_timeout_zero (TimeoutTests): timeout(0) expires at once; when() is the entry time", timeout_zero_interrupts(10))

  it("test_timeout_zero_sleep_zero (TimeoutTests): timeout(0) interrupts even sleep(0)", timeout_zero_interrupts(0))

  it("test_timeout_in_the_past_sleep_zero (TimeoutTests): a past deadline interrupts sleep(0)", function()
    local t0 = a.time()
    local ok, err, cm = within(a.timeout, -11, function() a.sleep(0) end)
    local t1 = a.time()
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(cm:expired())
    -- the entry time less 11 s (between t0 and t1: a fixed 10 ms of slack
    -- is one preemption on a loaded machine)
    assert.is_true(t0 - 11 <= cm:when() and cm:when() <= t1 - 11)
  end)

  it("test_foreign_exception_passed (TimeoutTests): other errors pass unchanged", function()
    local ok, err, cm = within(a.timeout, 0.01, function() error("KeyError", 0) end)
    assert.is_false(ok)
    assert.are.equal("KeyError", err)
    assert.is_false(cm:expired())
  end)

  it("test_timeout_exception_context (TimeoutTests): a cleanup that suspends past the deadline gives TimeoutError", function()
    local ok, err = within(a.timeout, 0.01, function()
      local _ <close> = finally(function() a.sleep(1) end)
      error("ZeroDivisionError", 0)
    end)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
  end)

  it("test_foreign_exception_on_timeout (TimeoutTests): an error raised while unwinding wins", function()
    local function crash()
      local _ <close> = finally(function() error("ZeroDivisionError", 0) end)
      a.sleep(1)
    end
    local ok, err = within(a.timeout, 0.01, crash)
    assert.is_false(ok)
    assert.are.equal("ZeroDivisionError", err)
  end)

  it("test_foreign_exception_on_timeout_2 (TimeoutTests): the last error of nested cleanups wins", function()
    local ok, err = within(a.timeout, 0.01, function()
      local _ <close> = finally(function()
        local _ <close> = finally(function() error("ZeroDivisionError", 0) end)
        error("KeyError", 0)
      end)
      local _ <close> = finally(function() a.sleep(1) end)
      error("ValueError", 0)
    end)
    assert.is_false(ok)
    assert.are.equal("ZeroDivisionError", err)
  end)

  it("test_foreign_cancel_doesnt_timeout_if_not_expired (TimeoutTests): a foreign cancel stays a CancelledError", function()
    local t = a.create_task(function()
      return within(a.timeout, 10, function()
        a.current_task():cancel()
        a.sleep(10)
      end)
    end)
    local ok, err, cm = t:await()
    assert.is_false(ok)
    assert.is_true(is_cancel(err))
    assert.is_false(cm:expired())
  end)

  it("test_outer_task_is_not_cancelled (TimeoutTests): the task ends normally after a TimeoutError", function()
    local task = a.create_task(function()
      local ok, err = within(a.timeout, 0.001, function() a.sleep(10) end)
      assert(not ok and is_timeout(err))
    end)
    task:await()
    assert.is_false(task:cancelled())
    assert.is_true(task:done())
  end)

  it("test_nested_timeouts_concurrent (TimeoutTests): the outer expiry passes through the inner scope", function()
    local inner_err
    local ok, err = within(a.timeout, 0.002, function()
      local ok2, e2 = within(a.timeout, 0.1, function()
        local stop = a.time() + 0.01
        while a.time() < stop do end -- crunch numbers
        a.sleep(1)
      end)
      inner_err = e2
      error(e2, 0)
    end)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(is_cancel(inner_err))
  end)

  it("test_nested_timeouts_loop_busy (TimeoutTests): a busy loop past both deadlines still ends with TimeoutError", function()
    local t0 = a.time()
    local ok, err = within(a.timeout, 0.1, function()
      local ok2, e2 = within(a.timeout, 0.01, function()
        local stop = a.time() + 0.1
        while a.time() < stop do end
        a.sleep(1)
      end)
      -- as assertRaises(TimeoutError): anything else passes through
      if not ok2 and not is_timeout(e2) then error(e2, 0) end
      a.sleep(10) -- interrupted by the outer timeout
    end)
    local t1 = a.time()
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_true(t1 - t0 <= 1 * helper.slow)
  end)

  it("test_reschedule (TimeoutTests): reschedule moves the deadline and None disables it", function()
    local deadline1 = a.time() + 10
    local deadline2 = deadline1 + 20
    local ev, cm = a.Event(), nil
    local task = a.create_task(function()
      local t <close> = a.timeout_at(deadline1)
      cm = t
      ev:set()
      a.sleep(50)
    end)
    ev:wait()
    assert.are.equal(deadline1, cm:when())
    cm:reschedule(deadline2)
    assert.are.equal(deadline2, cm:when())
    cm:reschedule(nil)
    assert.is_nil(cm:when())
    task:cancel()
    helper.await_cancelled(task)
    assert.is_false(cm:expired())
  end)

  it("test_repr_active (TimeoutTests): tostring shows the state and deadline", function()
    local t <close> = a.timeout(10)
    assert.matches("^<Timeout active when=%d+%.%d+>$", tostring(t))
  end)

  it("test_repr_expired (TimeoutTests): tostring after expiry says expired", function()
    local _, _, cm = within(a.timeout, 0.01, function() a.sleep(10) end)
    assert.matches("^<Timeout expired", tostring(cm))
  end)

  it("test_repr_finished (TimeoutTests): tostring after a normal exit says exited", function()
    local _, _, cm = within(a.timeout, 10, function() a.sleep(0) end)
    assert.matches("^<Timeout exited", tostring(cm))
  end)

  it("test_repr_disabled (TimeoutTests): tostring of a disabled timeout", function()
    local t <close> = a.timeout(nil)
    assert.are.equal("<Timeout active when=nil>", tostring(t))
  end)

  it("test_nested_timeout_in_finally (TimeoutTests): a timeout inside cleanup expires on its own", function()
    local inner_ok, inner_err
    local ok, err = within(a.timeout, 0.01, function()
      local _ <close> = finally(function()
        inner_ok, inner_err = within(a.timeout, 0.01, function() a.sleep(10) end)
      end)
      a.sleep(1)
    end)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_false(inner_ok)
    assert.is_true(is_timeout(inner_err))
  end)

  it("test_timeout_after_cancellation (TimeoutTests): a timeout in cleanup after a caught cancel still fires", function()
    local t = a.create_task(function()
      local me = a.current_task()
      me:cancel()
      local ok = pcall(a.sleep, 1)
      assert(not ok)
      return within(a.timeout, 0, function() a.sleep(1) end)
    end)
    local ok, err = t:await()
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
  end)

  it("test_cancel_in_timeout_after_cancellation (TimeoutTests): a new cancel inside that timeout stays a CancelledError", function()
    local t = a.create_task(function()
      a.current_task():cancel()
      assert(not pcall(a.sleep, 1))
      return within(a.timeout, 1, function()
        a.current_task():cancel()
        a.sleep(2)
      end)
    end)
    local ok, err = t:await()
    assert.is_false(ok)
    assert.is_true(is_cancel(err))
  end)

  it("test_timeout_finished (TimeoutTests): reschedule after the scope raises RuntimeError", function()
    local _, _, cm = within(a.timeout, 0.01, function() end)
    local ok, err = pcall(cm.reschedule, cm, a.time() + 0.02)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.RuntimeError))
  end)

  it("test_timeout_expired (TimeoutTests): reschedule after expiry raises RuntimeError", function()
    local _, _, cm = within(a.timeout, 0.01, function() a.sleep(1) end)
    local ok, err = pcall(cm.reschedule, cm, a.time() + 0.02)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.RuntimeError))
    assert.matches("expired", tostring(err))
  end)

  it("test_timeout_expiring (TimeoutTests): reschedule while expiring raises; the scope then ends normally", function()
    local resched_err
    local ok = within(a.timeout, 0.01, function(cm)
      local ok2, e = pcall(a.sleep, 1)
      assert(not ok2 and is_cancel(e))
      local ok3
      ok3, resched_err = pcall(cm.reschedule, cm, a.time() + 0.02)
      assert(not ok3)
    end)
    assert.is_true(ok)
    assert.is_true(a.is(resched_err, a.RuntimeError))
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("test_timeout_without_task (TimeoutTests): timeout() outside a task raises", function()
    local co = coroutine.wrap(function() return pcall(a.timeout, 0.01) end)
    local ok, err = co()
    assert.is_false(ok)
    assert.matches("timeout%(%) called outside a task", tostring(err))
  end)

  it("test_timeout_taskgroup (TimeoutTests): a child failing in cleanup under an expired timeout gives the ExceptionGroup", function()
    local ok, err = within(a.timeout, 0.01, function()
      local tg <close> = a.TaskGroup()
      tg:create_task(function()
        local _ <close> = finally(function() error("ZeroDivisionError", 0) end)
        a.sleep(2)
      end)
      local _ <close> = finally(function() a.sleep(1) end)
      error("ValueError", 0)
    end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.ExceptionGroup))
    assert.are.same({"ZeroDivisionError"}, err.errors)
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("test_timeout_not_entered (TimeoutTests): lasync has no unentered timeout; reschedule on a live one works", function()
    -- lasync creates the timeout already entered (to-be-closed); the
    -- RuntimeError of an unentered one has no equivalent.
    local t <close> = a.timeout(10)
    t:reschedule(a.time() + 20)
    assert.is_false(t:expired())
  end)
end)
