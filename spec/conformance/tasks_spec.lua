-- CPython's Lib/test/test_asyncio/test_tasks.py, restated for lasync.
-- A coroutine is a function started as a task; a bare Future that a test
-- completes by hand is a task waiting on an Event (future() below).
-- CPython's test loop fakes time; here delays are real and small.
local helper = require "spec.helper"
local a = asyncio

local function is_cancel(err) return a.is(err, a.CancelledError) end

local finally, future = helper.finally, helper.future
local raises = helper.raises

-- The set of a list of tasks, for comparing done/pending as sets.
local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function sleep_task(d, v)
  return a.create_task(function() return a.sleep(d, v) end)
end

-- Lets every task that is ready run (a few loop turns).
local function run_briefly()
  for _ = 1, 3 do a.sleep(0) end
end

describe("conformance: test_tasks", function()
  after_each(helper.no_leaks)

  describe("cancel", function()
    it("test_cancel (BaseTaskTests): a cancelled sleeping task ends cancelled; a second cancel() is false", function()
      local t = a.create_task(function() a.sleep(10) return 12 end)
      a.call_soon(function() t:cancel() end)
      helper.await_cancelled(t)
      assert.is_true(t:done())
      assert.is_true(t:cancelled())
      assert.is_false(t:cancel())
    end)

    for _, case in ipairs({{}, {"my message"}, {5}}) do
      local shown = case[1] == nil and "no message" or tostring(case[1])
      it("test_cancel_with_message_then_future_result (BaseTaskTests): result() raises with the message (" .. shown .. ")", function()
        local task = a.create_task(function() a.sleep(10) end)
        a.sleep(0)
        task:cancel(case[1])
        a.wait({task})
        local err = raises(a.CancelledError, task.result, task)
        -- lasync: no message is the empty string (Python: no args)
        assert.are.equal(case[1] or "", err.message)
      end)
    end

    it("test_cancel_with_message_then_future_exception (BaseTaskTests): exception() raises the CancelledError", function()
      local task = a.create_task(function() a.sleep(10) end)
      a.sleep(0)
      task:cancel("my message")
      a.wait({task})
      local err = raises(a.CancelledError, task.exception, task)
      assert.are.equal("my message", err.message)
    end)

    it("test_cancel_with_message_before_starting_task (BaseTaskTests): a task cancelled before it ran keeps the message", function()
      local ran = false
      local task = a.create_task(function() ran = true a.sleep(10) end)
      task:cancel("my message")
      a.wait({task})
      local ok, err = pcall(task.exception, task)
      assert.is_false(ok)
      assert.are.equal("my message", err.message)
      assert.is_false(ran)
    end)

    it("test_cancel_inner_future (BaseTaskTests): cancelling what a task awaits cancels the task", function()
      local f = future()
      local t = a.create_task(function() f:await() return 12 end)
      run_briefly()
      f:cancel()
      helper.await_cancelled(t)
      assert.is_true(f:cancelled())
      assert.is_true(t:cancelled())
    end)

    it("test_cancel_both_task_and_inner_future (BaseTaskTests): both cancelled, the task ends cancelled", function()
      local f = future()
      local t = a.create_task(function() f:await() return 12 end)
      run_briefly()
      f:cancel()
      t:cancel()
      helper.await_error(t)
      assert.is_true(t:done())
      assert.is_true(f:cancelled())
      assert.is_true(t:cancelled())
    end)

    it("test_cancel_task_catching (BaseTaskTests): a task that catches the cancel returns normally", function()
      local fut1, set1 = future()
      local fut2 = future()
      local t = a.create_task(function()
        fut1:await()
        local ok = pcall(fut2.await, fut2)
        if not ok then return 42 end
      end)
      run_briefly()
      set1(nil)
      run_briefly()
      t:cancel()
      assert.are.equal(42, t:await())
      assert.is_true(fut2:cancelled())
      assert.is_false(t:cancelled())
    end)

    it("test_cancel_task_ignoring (BaseTaskTests): a task that ignores the cancel goes on to its next await", function()
      local fut1, set1 = future()
      local fut2 = future()
      local fut3, set3 = future()
      local t = a.create_task(function()
        fut1:await()
        pcall(fut2.await, fut2)
        return fut3:await()
      end)
      run_briefly()
      set1(nil)
      run_briefly()
      t:cancel()
      run_briefly()
      assert.is_true(fut2:cancelled())
      set3(42)
      assert.are.equal(42, t:await())
      assert.is_false(fut3:cancelled())
      assert.is_false(t:cancelled())
    end)

    it("test_cancel_current_task (BaseTaskTests): a task cancelling itself is cancelled at its next await", function()
      local t
      t = a.create_task(function()
        t:cancel()
        a.sleep(100)
        return 12
      end)
      assert.is_false(t:cancelled())
      helper.await_cancelled(t)
      assert.is_true(t:done())
      assert.is_true(t:cancelled())
      assert.is_false(t:cancel())
    end)

    it("test_cancel_at_end (BaseTaskTests): a task cancelling itself right before it returns ends cancelled", function()
      local t
      t = a.create_task(function()
        t:cancel()
        return 12
      end)
      helper.await_error(t)
      assert.is_true(t:done())
      assert.is_true(t:cancelled())
      assert.is_false(t:cancel())
    end)

    it("test_cancel_awaited_task (BaseTaskTests): the task awaited after a self-cancel is cancelled too", function()
      local fut = future()
      local task, nested_task
      task = a.create_task(function()
        nested_task = a.create_task(function() fut:await() end)
        a.sleep(0)
        task:cancel()
        nested_task:await()
      end)
      helper.await_error(task)
      assert.is_true(task:cancelled())
      assert.is_true(nested_task:cancelled())
      -- lasync: the nested task was cancelled while awaiting fut, which
      -- cancels fut in turn
      assert.is_true(fut:cancelled())
    end)

    it("test_task_cancel_sleeping_task (BaseTaskTests): call_later cancelling the awaited sleeper", function()
      local doer = a.create_task(function()
        local sleeper = a.create_task(function() a.sleep(5000) end)
        a.call_later(0.01, function() sleeper:cancel() end)
        local ok = pcall(sleeper.await, sleeper)
        return ok and "slept in" or "cancelled"
      end)
      assert.are.equal("cancelled", doer:await())
    end)

    it("test_task_cancel_waiter_future (BaseTaskTests): cancelling the task cancels what it waits on", function()
      local fut = future()
      local task = a.create_task(function() fut:await() end)
      run_briefly()
      task:cancel()
      helper.await_error(task)
      assert.is_true(fut:cancelled())
    end)

    it("test_baseexception_during_cancel (BaseTaskTests): an error raised instead of the cancel is the task's error", function()
      local task = a.create_task(function()
        local ok = pcall(a.sleep, 10)
        if not ok then error("SystemExit", 0) end
      end)
      run_briefly()
      task:cancel()
      assert.is_false(task:done())
      a.wait({task})
      assert.is_true(task:done())
      assert.is_false(task:cancelled())
      assert.are.equal("SystemExit", task:exception())
    end)

    it("test_uncancel_basic (BaseTaskTests): cancel() counts up, uncancel() counts down", function()
      local t = a.create_task(function() a.sleep(10) end)
      a.sleep(0)
      assert.are.equal(0, t:cancelling())
      t:cancel()
      assert.are.equal(1, t:cancelling())
      t:cancel()
      assert.are.equal(2, t:cancelling())
      assert.are.equal(1, t:uncancel())
      helper.await_error(t)
      assert.is_true(t:cancelled())
    end)

    it("test_uncancel_resets_must_cancel (BaseTaskTests): uncancel() to 0 before the task ran withdraws the cancel", function()
      local t = a.create_task(function() a.sleep(0) return 42 end)
      t:cancel()
      assert.are.equal(0, t:uncancel())
      assert.are.equal(42, t:await())
      assert.is_false(t:cancelled())
    end)

    it("test_task_awaits_on_itself (BaseTaskTests): a task awaiting itself raises", function()
      local task
      task = a.create_task(function() return pcall(task.await, task) end)
      local ok, err = task:await()
      assert.is_false(ok)
      assert.matches("cannot await itself", tostring(err))
    end)
  end)

  describe("wait", function()
    it("test_wait (BaseTaskTests): waits for all by default; a second wait takes no time", function()
      local ta, tb = sleep_task(0.01), sleep_task(0.015)
      local done, pending = a.wait({tb, ta})
      assert.are.same(set({ta, tb}), set(done))
      assert.are.same({}, pending)
      -- "no time": within a loop turn or two, counted by a task that
      -- steps every turn (10 ms of wall time is within a loaded machine's
      -- reach for one preemption)
      local turns = 0
      local ticker = a.create_task(function() while true do turns = turns + 1 a.sleep(0) end end)
      run_briefly()
      local n0 = turns
      done = a.wait({tb, ta})
      assert.are.equal(2, #done)
      assert.is_true(turns - n0 <= 2, (turns - n0) .. " turns")
      ticker:cancel()
      a.wait({ticker})
    end)

    it("test_wait_errors (BaseTaskTests): an empty list or a bad return_when raises", function()
      assert.is_false(pcall(a.wait, {}))
      local t = sleep_task(10)
      helper.fails_with("return_when", a.wait, {t}, {return_when = -1})
      t:cancel()
      a.wait({t})
    end)

    it("test_wait_first_completed (BaseTaskTests): returns as soon as one is done", function()
      local ta, tb = sleep_task(10), sleep_task(0.01)
      local done, pending = a.wait({tb, ta}, {return_when = "FIRST_COMPLETED"})
      assert.are.same({tb}, done)
      assert.are.same({ta}, pending)
      assert.is_false(ta:done())
      assert.is_nil(tb:result())
      ta:cancel()
      a.wait({ta})
    end)

    it("test_wait_really_done (BaseTaskTests): every task done by the time wait wakes is in done", function()
      local ta = a.create_task(function() a.sleep(0) end)
      local tb = a.create_task(function() a.sleep(0) a.sleep(0) end)
      local done, pending = a.wait({tb, ta}, {return_when = "FIRST_COMPLETED"})
      assert.are.same(set({ta, tb}), set(done))
      assert.are.same({}, pending)
    end)

    it("test_wait_first_exception (BaseTaskTests): a task that already failed returns at once", function()
      local ta = sleep_task(10)
      local tb = a.create_task(function() error("ZeroDivisionError err", 0) end)
      local t0 = a.time()
      local done, pending = a.wait({tb, ta}, {return_when = "FIRST_EXCEPTION"})
      assert.are.same({tb}, done)
      assert.are.same({ta}, pending)
      assert.is_true(a.time() - t0 < 1 * helper.slow)
      ta:cancel()
      a.wait({ta})
    end)

    it("test_wait_first_exception_in_wait (BaseTaskTests): a failure during the wait returns", function()
      local ta = sleep_task(10)
      local tb = a.create_task(function() a.sleep(0.01) error("ZeroDivisionError err", 0) end)
      local done, pending = a.wait({tb, ta}, {return_when = "FIRST_EXCEPTION"})
      assert.are.same({tb}, done)
      assert.are.same({ta}, pending)
      ta:cancel()
      a.wait({ta})
    end)

    it("test_wait_with_exception (BaseTaskTests): ALL_COMPLETED includes the failed task; nothing raises", function()
      local ta = sleep_task(0.01)
      local tb = a.create_task(function() a.sleep(0.015) error("ZeroDivisionError really", 0) end)
      local done, pending = a.wait({tb, ta})
      assert.are.equal(2, #done)
      assert.are.same({}, pending)
      local errors = 0
      for _, t in ipairs(done) do if t:exception() ~= nil then errors = errors + 1 end end
      assert.are.equal(1, errors)
    end)

    it("test_wait_with_timeout (BaseTaskTests): the timeout returns what is done so far", function()
      local ta, tb = sleep_task(0.01), sleep_task(0.15)
      local done, pending = a.wait({tb, ta}, {timeout = 0.05})
      assert.are.same({ta}, done)
      assert.are.same({tb}, pending)
      tb:cancel()
      a.wait({tb})
    end)

    it("test_wait_concurrent_complete (BaseTaskTests): a timeout equal to the first sleep", function()
      local ta, tb = sleep_task(0.01), sleep_task(0.15)
      local done, pending = a.wait({tb, ta}, {timeout = 0.05})
      assert.are.same(set({ta}), set(done))
      assert.are.same(set({tb}), set(pending))
      assert.is_false(tb:cancelled()) -- wait never cancels
      tb:cancel()
      a.wait({tb})
    end)

    it("test_wait_with_iterator_of_tasks (BaseTaskTests): functions in the list are started as tasks", function()
      local done, pending = a.wait({function() a.sleep(0.01) return 1 end,
                                    function() a.sleep(0.015) return 2 end})
      assert.are.equal(2, #done)
      assert.are.equal(0, #pending)
    end)
  end)

  describe("as_completed", function()
    it("test_as_completed (BaseTaskTests): results in the order the tasks finish", function()
      local tb = sleep_task(0.01, "b")
      local tc = sleep_task(0.05, "c")
      local ta = sleep_task(0.01, "a")
      local values = {}
      for f in a.as_completed({tb, tc, ta}) do values[#values + 1] = f:await() end
      assert.are.equal(3, #values)
      assert.are.same(set({"a", "b"}), set({values[1], values[2]}))
      assert.are.equal("c", values[3])
    end)

    it("test_as_completed_with_timeout (BaseTaskTests): the iterator raises TimeoutError for the late one", function()
      local ta, tb = sleep_task(0.01, "a"), sleep_task(0.5, "b")
      local values = {}
      local ok, err = pcall(function()
        for f in a.as_completed({ta, tb}, 0.1) do values[#values + 1] = f:await() end
      end)
      assert.is_false(ok)
      assert.is_true(a.is(err, a.TimeoutError))
      assert.are.same({"a"}, values)
      tb:cancel()
      a.wait({tb})
    end)

    it("test_as_completed_with_unused_timeout (BaseTaskTests): a timeout that never fires", function()
      local values = {}
      for f in a.as_completed({sleep_task(0.01, "a")}, 1) do values[#values + 1] = f:await() end
      assert.are.same({"a"}, values)
    end)

    it("test_as_completed_concurrent (BaseTaskTests): equal delays both come out", function()
      local values = {}
      for f in a.as_completed({sleep_task(0.01, "a"), sleep_task(0.01, "b")}) do
        values[#values + 1] = f:await()
      end
      assert.are.same(set({"a", "b"}), set(values))
    end)
  end)

  describe("sleep", function()
    it("test_sleep (BaseTaskTests): sleep(d, value) returns value", function()
      local t = a.create_task(function()
        a.sleep(0.005)
        return a.sleep(0.005, "yeah")
      end)
      assert.are.equal("yeah", t:await())
      assert.is_true(t:done())
    end)

    it("test_sleep_cancel (BaseTaskTests): cancelling a sleeping task stops its timer at once", function()
      local t = a.create_task(function() a.sleep(10, "yeah") end)
      run_briefly()
      local t0 = a.time()
      t:cancel()
      helper.await_error(t)
      assert.is_true(a.time() - t0 < 1 * helper.slow)
    end)
  end)

  describe("current_task", function()
    it("test_current_task (BaseTaskTests): inside a task it is that task; in a plain coroutine nil", function()
      local task
      task = a.create_task(function() return a.current_task() == task end)
      assert.is_true(task:await())
      local co = coroutine.wrap(function() return a.current_task() end)
      assert.is_nil(co())
    end)

    it("test_current_task_with_interleaving_tasks (BaseTaskTests): each task sees itself across awaits", function()
      local fut1, set1 = future()
      local fut2, set2 = future()
      local task1, task2
      task1 = a.create_task(function()
        assert(a.current_task() == task1)
        fut1:await()
        assert(a.current_task() == task1)
        set2(true)
      end)
      task2 = a.create_task(function()
        assert(a.current_task() == task2)
        set1(true)
        fut2:await()
        assert(a.current_task() == task2)
      end)
      a.wait({task1, task2})
      assert.is_nil(task1:exception())
      assert.is_nil(task2:exception())
    end)
  end)

  describe("gather", function()
    it("test_result_exception_success (GatherTestsBase): results in argument order", function()
      local r = a.gather(function() a.sleep(0.01) return 1 end,
                         function() return 2 end, function() a.sleep(0.005) return 3 end)
      assert.are.same({1, 2, 3}, r)
    end)

    it("test_constructor_empty_sequence (GatherTestsBase): gather() of nothing is an empty list", function()
      assert.are.same({}, a.gather())
    end)

    it("test_one_exception (GatherTestsBase): the first error is raised; the others keep running", function()
      -- the slow one waits on an event, not a 20 ms sleep that a loaded
      -- machine can oversleep
      local go = a.Event()
      local slow = a.create_task(function() go:wait() return "slow" end)
      local ok, err = pcall(a.gather, function() a.sleep(0.005) error("ZeroDivisionError", 0) end, slow)
      assert.is_false(ok)
      assert.are.equal("ZeroDivisionError", err)
      assert.is_false(slow:done())
      go:set()
      assert.are.equal("slow", slow:await())
    end)

    it("test_return_exceptions (GatherTestsBase): with return_exceptions errors are in the list", function()
      local r = a.gather{function() return 1 end,
                         function() error("ZeroDivisionError", 0) end,
                         function() return 3 end, return_exceptions = true}
      assert.are.same({1, "ZeroDivisionError", 3}, r)
    end)

    it("test_one_cancellation (GatherTestsBase): a cancelled child makes gather raise CancelledError", function()
      local child = a.create_task(function() a.sleep(10) end)
      local other = a.create_task(function() a.sleep(0.02) return 2 end)
      a.call_soon(function() child:cancel() end)
      raises(a.CancelledError, a.gather, child, other)
      assert.are.equal(2, other:await())
    end)

    it("test_result_exception_one_cancellation (GatherTestsBase): with return_exceptions a cancelled child gives its CancelledError", function()
      local child = a.create_task(function() a.sleep(10) end)
      a.call_soon(function() child:cancel() end)
      local r = a.gather{child, function() return 2 end, return_exceptions = true}
      assert.is_true(is_cancel(r[1]))
      assert.are.equal(2, r[2])
    end)

    it("test_cancellation_broadcast (CoroutineGatherTests): cancelling the gathering task cancels every child", function()
      local c1, c2
      local outer = a.create_task(function()
        c1 = a.create_task(function() a.sleep(10) end)
        c2 = a.create_task(function() a.sleep(10) end)
        return a.gather(c1, c2)
      end)
      run_briefly()
      outer:cancel()
      helper.await_cancelled(outer)
      assert.is_true(c1:cancelled())
      assert.is_true(c2:cancelled())
    end)

    for _, case in ipairs({{}, {"my message"}, {5}}) do
      local shown = case[1] == nil and "no message" or tostring(case[1])
      it("test_cancel_gather_2 (BaseTaskTests): the cancel message passes through gather (" .. shown .. ")", function()
        local qwe = a.create_task(function()
          while true do
            a.gather{function() a.sleep(0.005) end, return_exceptions = true}
          end
        end)
        a.sleep(0.02)
        qwe:cancel(case[1])
        local err = helper.await_cancelled(qwe)
        assert.are.equal(case[1] or "", err.message)
      end)
    end

    it("test_exception_marking (CoroutineGatherTests): a failure gathered is not reported as never retrieved", function()
      local t = a.create_task(function() error("ZeroDivisionError", 0) end)
      assert.is_false(pcall(a.gather, t))
      assert.are.equal("ZeroDivisionError", t:exception())
    end)
  end)

  describe("shield", function()
    it("test_shield_result (BaseTaskTests): the shield gives the inner result", function()
      local inner, set1 = future()
      local outer = a.shield(inner)
      run_briefly()
      set1(42)
      assert.are.equal(42, outer:await())
    end)

    it("test_shield_exception (BaseTaskTests): the shield raises the inner error", function()
      local inner = a.create_task(function() a.sleep(0.005) error("Exception", 0) end)
      local outer = a.shield(inner)
      local err = helper.await_error(outer)
      assert.are.equal("Exception", err)
    end)

    it("test_shield_cancel_inner (BaseTaskTests): cancelling the inner task cancels the shield", function()
      local inner = future()
      local outer = a.shield(inner)
      run_briefly()
      inner:cancel()
      helper.await_cancelled(outer)
    end)

    it("test_shield_cancel_outer (BaseTaskTests): cancelling the shield leaves the inner task running", function()
      local inner, set1 = future()
      local outer = a.shield(inner)
      run_briefly()
      outer:cancel()
      helper.await_error(outer)
      assert.is_true(outer:cancelled())
      assert.is_false(inner:cancelled())
      set1("still")
      assert.are.equal("still", inner:await())
    end)

    it("test_shield_effect (BaseTaskTests): a cancelled outer awaiting a shield does not cancel the inner", function()
      local proof = 0
      local inner = a.create_task(function() a.sleep(0.01) proof = proof + 1 end)
      local outer = a.create_task(function() a.shield(inner):await() proof = proof + 100 end)
      run_briefly()
      outer:cancel()
      helper.await_error(outer)
      inner:await()
      assert.are.equal(1, proof)
    end)

    it("test_shield_shortcut (BaseTaskTests): shielding a done task returns it", function()
      local t = a.create_task(function() return 42 end)
      t:await()
      assert.are.equal(t, a.shield(t))
    end)
  end)

  describe("Task object", function()
    it("test_task_repr (BaseTaskTests): tostring shows the state and name", function()
      local t = a.create_task(function() a.sleep(0) return 1 end)
      t:set_name("notmuch")
      assert.are.equal("<Task pending name='notmuch'>", tostring(t))
      t:await()
      assert.are.equal("<Task finished name='notmuch'>", tostring(t))
    end)

    it("test_task_repr_autogenerated (BaseTaskTests): default names are Task-<n>, increasing", function()
      local t1 = a.create_task(function() end)
      local t2 = a.create_task(function() end)
      local n1 = tonumber(t1:get_name():match("^Task%-(%d+)$"))
      local n2 = tonumber(t2:get_name():match("^Task%-(%d+)$"))
      assert.is_true(n1 ~= nil and n2 == n1 + 1)
      a.wait({t1, t2})
    end)

    it("test_task_set_name_pylong (BaseTaskTests): set_name converts a number to a string", function()
      local t = a.create_task(function() end)
      t:set_name(2 ^ 40)
      assert.are.equal("string", type(t:get_name()))
      t:await()
    end)

    it("test_exception (BaseTaskTests): result() before the end raises InvalidStateError", function()
      local t = a.create_task(function() a.sleep(0) end)
      raises(a.InvalidStateError, t.result, t)
      local ok2, err2 = pcall(t.exception, t)
      assert.is_false(ok2)
      assert.is_true(a.is(err2, a.InvalidStateError))
      t:await()
      assert.is_nil(t:exception())
    end)
  end)
end)
