-- CPython's Lib/test/test_asyncio/test_waitfor.py, restated for lasync.
-- A coroutine passed to wait_for is a function here (started as a task);
-- a future set from a callback is a task waiting on an Event.
local helper = require "spec.helper"
local a = asyncio

local EPSILON = 0.0001

local function is_timeout(err) return a.is(err, a.TimeoutError) end
local function is_cancel(err) return a.is(err, a.CancelledError) end

local finally = helper.finally
local raises = helper.raises

-- SlowTask: runs for TASK_TIMEOUT seconds, ignoring cancel requests.
local function slow_task()
  local self = {exited = false, TASK_TIMEOUT = 0.2}
  function self.run()
    local exitat = a.time() + self.TASK_TIMEOUT
    while true do
      local tosleep = exitat - a.time()
      if tosleep <= 0 then break end
      pcall(a.sleep, tosleep)
    end
    self.exited = true
  end
  return self
end

local future = helper.future

-- A task that sleeps; cancelled, it takes EPSILON more to clean up before
-- it re-raises.  state.done turns true once its cleanup has run.
local function slow_cleanup_task()
  local state = {done = false}
  local inner = a.create_task(function()
    local _ <close> = finally(function() state.done = true end)
    local ok, err = pcall(a.sleep, 10)
    if not ok then a.sleep(EPSILON) error(err, 0) end
  end)
  return inner, state
end

describe("conformance: test_waitfor", function()
  after_each(helper.no_leaks)

  it("test_asyncio_wait_for_cancelled (AsyncioWaitForTest): cancelling the waiter waits for a task that ignores it", function()
    local t = slow_task()
    local waitfortask = a.create_task(function()
      return a.wait_for(t.run, t.TASK_TIMEOUT * 2)
    end)
    -- lasync starts the function as its own task, one turn after the
    -- waiter (Python runs the coroutine inline): let both start
    a.sleep(0) a.sleep(0)
    waitfortask:cancel()
    a.wait({waitfortask})
    assert.is_true(t.exited)
  end)

  it("test_asyncio_wait_for_timeout (AsyncioWaitForTest): on timeout wait_for waits for the task to end", function()
    local t = slow_task()
    local ok, err = pcall(a.wait_for, t.run, t.TASK_TIMEOUT / 2)
    -- the task swallowed the cancellation and returned: its result wins
    assert.is_true(ok or is_timeout(err))
    assert.is_true(t.exited)
  end)

  it("test_wait_for_timeout_less_then_0_or_0_future_done (AsyncioWaitForTest): a done task gives its result at timeout 0", function()
    local fut = a.create_task(function() return "done" end)
    a.sleep(0)
    assert.are.equal("done", a.wait_for(fut, 0))
    assert.is_true(fut:done())
  end)

  it("test_wait_for_timeout_less_then_0_or_0_coroutine_do_not_started (AsyncioWaitForTest): timeout 0 never starts the function", function()
    local foo_started = false
    local ok, err = pcall(a.wait_for, function() foo_started = true end, 0)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    a.sleep(0)
    assert.is_false(foo_started)
  end)

  for _, timeout in ipairs({0, -1}) do
    it(("test_wait_for_timeout_less_then_0_or_0 (AsyncioWaitForTest): timeout=%d cancels a running task"):format(timeout), function()
      local foo_running
      local started = a.Event()
      local fut = a.create_task(function()
        foo_running = true
        started:set()
        local _ <close> = finally(function() foo_running = false end)
        a.sleep(10)
        return "done"
      end)
      started:wait()
      raises(a.TimeoutError, a.wait_for, fut, timeout)
      assert.is_true(fut:done())
      assert.is_true(fut:cancelled())
      assert.is_false(foo_running)
    end)
  end

  it("test_wait_for (AsyncioWaitForTest): a timeout cancels the task and waits for its cleanup", function()
    local foo_running
    local fut = a.create_task(function()
      foo_running = true
      local _ <close> = finally(function() foo_running = false end)
      a.sleep(60)
      return "done"
    end)
    raises(a.TimeoutError, a.wait_for, fut, 0.1)
    assert.is_true(fut:done())
    assert.is_true(fut:cancelled())
    assert.is_false(foo_running)
  end)

  it("test_wait_for_blocking (AsyncioWaitForTest): timeout nil just awaits", function()
    assert.are.equal("done", a.wait_for(function() return "done" end, nil))
  end)

  it("test_wait_for_race_condition (AsyncioWaitForTest): a result set by a callback soon is returned", function()
    local fut, set = future()
    a.call_soon(set, "ok")
    assert.are.equal("ok", a.wait_for(fut, 0.2))
  end)

  it("test_wait_for_cancellation_race_condition (AsyncioWaitForTest): a task that swallows the timeout's cancel returns its value", function()
    local result = a.wait_for(function()
      local ok, err = pcall(a.sleep, 1)
      assert(not ok and is_cancel(err))
      return 1
    end, 0.01)
    assert.are.equal(1, result)
  end)

  it("test_wait_for_waits_for_task_cancellation (AsyncioWaitForTest): TimeoutError only after the task's slow cleanup", function()
    local inner, state = slow_cleanup_task()
    raises(a.TimeoutError, a.wait_for, inner, EPSILON)
    assert.is_true(state.done)
  end)

  it("test_wait_for_waits_for_task_cancellation_w_timeout_0 (AsyncioWaitForTest): the same with timeout 0", function()
    local inner, state = slow_cleanup_task()
    a.sleep(EPSILON)
    raises(a.TimeoutError, a.wait_for, inner, 0)
    assert.is_true(state.done)
  end)

  it("test_wait_for_reraises_exception_during_cancellation (AsyncioWaitForTest): an error raised in the task's cleanup comes out", function()
    local inner = a.create_task(function()
      local _ <close> = finally(function() error("FooException", 0) end)
      a.sleep(0.2)
    end)
    local ok, err = pcall(a.wait_for, inner, EPSILON)
    assert.is_false(ok)
    assert.are.equal("FooException", err)
  end)

  for _, timeout in ipairs({false, 60.0}) do
    local name = timeout and "test_cancel_wait_for" or "test_cancel_blocking_wait_for"
    it(name .. " (AsyncioWaitForTest): cancelling the wait cancels the awaited task", function()
      local never = a.Event()
      local task = a.create_task(function() never:wait() end)
      local wait = a.create_task(function() return a.wait_for(task, timeout or nil) end)
      a.call_soon(function() wait:cancel() end)
      helper.await_cancelled(wait)
      assert.is_true(task:cancelled())
    end)
  end

  it("test_wait_for_cancel_suppressed (AsyncioWaitForTest): a value returned instead of the cancellation is the result", function()
    local res = a.wait_for(function()
      local ok = pcall(a.sleep, 10)
      if not ok then return 42 end
    end, 0.1)
    assert.are.equal(42, res)
  end)

  it("test_wait_for_issue86296 (AsyncioWaitForTest): a cancel after wait_for returned still cancels the caller", function()
    local inner = a.create_task(function() return "done" end)
    local reached_end = false
    local task = a.create_task(function()
      a.wait_for(inner, 100)
      a.sleep(1)
      reached_end = true
    end)
    assert.is_false(task:done())
    a.sleep(0)
    task:cancel()
    helper.await_cancelled(task)
    assert.is_true(inner:done())
    assert.are.equal("done", inner:await())
    assert.is_false(reached_end)
  end)

  it("test_zero_timeout (WaitForShieldTests): timeout 0 cancels the shield, not the task", function()
    local task = a.create_task(function() a.sleep(0.01) return "done" end)
    local shielded = a.shield(task)
    raises(a.TimeoutError, a.wait_for, shielded, 0)
    assert.is_false(task:done())
    assert.is_false(task:cancelled())
    assert.is_true(shielded:cancelled())
    a.sleep(0.1)
    assert.is_true(task:done())
  end)

  it("test_none_timeout (WaitForShieldTests): timeout nil through a shield runs to completion", function()
    local task = a.create_task(function() a.sleep(0.1) return "done" end)
    a.wait_for(a.shield(task), nil)
    assert.is_true(task:done())
    assert.are.equal("done", task:await())
  end)

  it("test_shielded_timeout (WaitForShieldTests): the shielded task survives the timeout", function()
    local task = a.create_task(function() a.sleep(0.1) return "done" end)
    local ok, err = pcall(a.wait_for, a.shield(task), 0.01)
    assert.is_false(ok)
    assert.is_true(is_timeout(err))
    assert.is_false(task:done())
    assert.is_false(task:cancelled())
    assert.are.equal("done", task:await())
  end)

  -- From test_tasks.py's wait_for section (BaseTaskTests).
  it("test_wait_for_race_condition (BaseTaskTests): a function that finishes before the deadline gives its value", function()
    assert.are.equal("v", a.wait_for(function() return "v" end, 10))
  end)

  it("test_wait_for_with_global_loop (BaseTaskTests): a timeout leaves the task cancelled, the caller not", function()
    local t = a.create_task(function() a.sleep(10) end)
    raises(a.TimeoutError, a.wait_for, t, 0.01)
    assert.is_true(t:cancelled())
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("test_wait_for_self_cancellation (BaseTaskTests): nested wait_for calls: inner timeouts, outer result", function()
    local function inner()
      local ok1 = pcall(a.wait_for, function() a.sleep(0.3) end, 0.01)
      local ok2 = pcall(a.wait_for, function() a.sleep(0.3) end, 0.01)
      local ok3 = pcall(a.wait_for, function() a.sleep(0.3) end, 0.01)
      return {ok1, ok2, ok3}
    end
    local r = a.wait_for(inner, 1)
    assert.are.same({false, false, false}, r)
  end)

end)
