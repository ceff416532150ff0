-- CPython's Lib/test/test_asyncio/test_taskgroups.py, restated for lasync.
-- `async with TaskGroup() as g:` is `local g <close> = a.TaskGroup()`;
-- ExceptionGroup's sub-exceptions are `err.errors`.  Times are scaled down
-- and, where CPython's test races two equal delays, pulled apart so the
-- outcome it asserts is the one that happens.
local helper = require "spec.helper"
local a = asyncio

local function is_cancel(err) return a.is(err, a.CancelledError) end
local function is_group(err) return a.is(err, a.ExceptionGroup) end

local finally = helper.finally

local function crash_after(t, what)
  return function() a.sleep(t) error(what, 0) end
end

-- Sleeps d seconds; when that is interrupted, runs fn and re-raises (the
-- tests' `try: await asyncio.sleep(d) except CancelledError: ...; raise`).
local function sleep_or(d, fn)
  local ok, err = pcall(a.sleep, d)
  if not ok then fn() error(err, 0) end
end

-- Lets task r run a little, checks it has not ended, cancels it (with msg)
-- and asserts that it ends cancelled; returns the CancelledError.
local function cancel_while_running(r, msg)
  a.sleep(0.01)
  assert.is_false(r:done())
  r:cancel(msg)
  return helper.await_cancelled(r)
end

-- The set of error values in a group, sorted, as strings.
local function error_types(eg)
  local seen, out = {}, {}
  for _, e in ipairs(eg.errors) do
    local k = is_group(e) and "ExceptionGroup" or tostring(e)
    if not seen[k] then seen[k] = true out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

-- test_taskgroup_09 and _10: an error raised in the group's body (after
-- a suspension, or before any) cancels both children and is the group's.
local function body_error_cancels_children(suspend)
  return function()
    local t1, t2
    local ok, err = pcall(function()
      local g <close> = a.TaskGroup()
      t1 = g:create_task(function() a.sleep(1) return 42 end)
      t2 = g:create_task(function() a.sleep(2) return 11 end)
      if suspend then a.sleep(0.01) end
      error("ZeroDivisionError", 0)
    end)
    assert.is_false(ok)
    assert.are.same({"ZeroDivisionError"}, error_types(err))
    assert.is_true(t1:cancelled())
    assert.is_true(t2:cancelled())
  end
end

describe("conformance: test_taskgroups", function()
  after_each(helper.no_leaks)

  it("test_taskgroup_01 (TestTaskGroup): the group waits for its children", function()
    local t1, t2
    do
      local g <close> = a.TaskGroup()
      t1 = g:create_task(function() a.sleep(0.01) return 42 end)
      t2 = g:create_task(function() a.sleep(0.02) return 11 end)
    end
    assert.are.equal(42, t1:result())
    assert.are.equal(11, t2:result())
  end)

  it("test_taskgroup_02 (TestTaskGroup): children created after a suspension are waited for too", function()
    local t1, t2
    do
      local g <close> = a.TaskGroup()
      t1 = g:create_task(function() a.sleep(0.01) return 42 end)
      a.sleep(0.015)
      t2 = g:create_task(function() a.sleep(0.02) return 11 end)
    end
    assert.are.equal(42, t1:result())
    assert.are.equal(11, t2:result())
  end)

  it("test_taskgroup_03 (TestTaskGroup): cancelling one child explicitly does not stop the group", function()
    local t1, t2
    do
      local g <close> = a.TaskGroup()
      t1 = g:create_task(function() a.sleep(1) return 42 end)
      a.sleep(0.015)
      t1:cancel()
      t2 = g:create_task(function() a.sleep(0.02) return 11 end)
    end
    assert.is_true(t1:cancelled())
    assert.are.equal(11, t2:result())
  end)

  it("test_taskgroup_04 (TestTaskGroup): a failing child cancels its sibling; code after the group does not run", function()
    local NUM, t2_cancel, t2 = 0, false, nil
    local function runner()
      do
        local g <close> = a.TaskGroup()
        g:create_task(crash_after(0.01, "ZeroDivisionError"))
        t2 = g:create_task(function()
          sleep_or(1, function() t2_cancel = true end)
          NUM = NUM + 1
        end)
      end
      NUM = NUM + 10
    end
    local r = a.create_task(runner)
    local err = helper.await_error(r)
    assert.are.same({"ZeroDivisionError"}, error_types(err))
    assert.are.equal(0, NUM)
    assert.is_true(t2_cancel)
    assert.is_true(t2:cancelled())
  end)

  it("test_cancel_children_on_child_error (TestTaskGroup): the rest are cancelled, the body too, errors gathered", function()
    local NUM, t2_cancel, runner_cancel = 0, false, false
    local r = a.create_task(function()
      do
        local g <close> = a.TaskGroup()
        for _ = 1, 3 do g:create_task(crash_after(0.01, "ZeroDivisionError")) end
        g:create_task(function()
          sleep_or(5, function() t2_cancel = true end)
          NUM = NUM + 1
        end)
        sleep_or(10, function() runner_cancel = true end)
      end
      NUM = NUM + 10
    end)
    local err = helper.await_error(r)
    assert.are.same({"ZeroDivisionError"}, error_types(err))
    assert.are.equal(0, NUM)
    assert.is_true(t2_cancel)
    assert.is_true(runner_cancel)
  end)

  it("test_cancellation (TestTaskGroup): cancelling the parent cancels every child; the message survives", function()
    local NUM = 0
    local r = a.create_task(function()
      local g <close> = a.TaskGroup()
      for _ = 1, 5 do
        g:create_task(function()
          sleep_or(5, function() NUM = NUM + 1 end)
        end)
      end
    end)
    local err = cancel_while_running(r, "test")
    assert.are.equal("test", err.message)
    assert.are.equal(5, NUM)
  end)

  it("test_taskgroup_07 (TestTaskGroup): the body and every child see the cancellation", function()
    local NUM = 0
    local r = a.create_task(function()
      local g <close> = a.TaskGroup()
      for _ = 1, 5 do
        g:create_task(function()
          sleep_or(5, function() NUM = NUM + 1 end)
        end)
      end
      sleep_or(10, function() NUM = NUM + 10 end)
    end)
    cancel_while_running(r)
    assert.are.equal(15, NUM)
  end)

  it("test_cancellation_in_body (TestTaskGroup): a cancel before the children fail stays a CancelledError with its message", function()
    local r = a.create_task(function()
      local g <close> = a.TaskGroup()
      for _ = 1, 5 do g:create_task(crash_after(0.05, "ZeroDivisionError")) end
      a.sleep(10)
    end)
    local err = cancel_while_running(r, "test")
    assert.are.equal("test", err.message)
  end)

  it("test_taskgroup_09 (TestTaskGroup): an error in the body after a suspension cancels the children", body_error_cancels_children(true))

  it("test_taskgroup_10 (TestTaskGroup): an error in the body before any suspension cancels the children", body_error_cancels_children(false))

  it("test_taskgroup_11 (TestTaskGroup): cancelling the parent of nested groups gives CancelledError", function()
    local r = a.create_task(function()
      local g1 <close> = a.TaskGroup()
      local g2 <close> = a.TaskGroup()
      for _ = 1, 5 do g2:create_task(crash_after(0.05, "ZeroDivisionError")) end
      a.sleep(10)
    end)
    cancel_while_running(r)
  end)

  it("test_taskgroup_12 (TestTaskGroup): the same with a long child in the outer group", function()
    local long
    local r = a.create_task(function()
      local g1 <close> = a.TaskGroup()
      long = g1:create_task(function() a.sleep(10) end)
      local g2 <close> = a.TaskGroup()
      for _ = 1, 5 do g2:create_task(crash_after(0.05, "ZeroDivisionError")) end
      a.sleep(10)
    end)
    a.sleep(0.01)
    r:cancel()
    helper.await_cancelled(r)
    assert.is_true(long:cancelled())
  end)

  it("test_taskgroup_13 (TestTaskGroup): an outer child failing first: only its error", function()
    local r = a.create_task(function()
      local g1 <close> = a.TaskGroup()
      g1:create_task(crash_after(0.01, "ValueError"))
      local g2 <close> = a.TaskGroup()
      g2:create_task(crash_after(10, "ValueError"))
    end)
    local err = helper.await_error(r)
    assert.are.same({"ValueError"}, error_types(err))
  end)

  it("test_taskgroup_14 (TestTaskGroup): an inner child failing first: a group inside the group", function()
    local r = a.create_task(function()
      local g1 <close> = a.TaskGroup()
      g1:create_task(crash_after(10, "ValueError"))
      local g2 <close> = a.TaskGroup()
      g2:create_task(crash_after(0.01, "ValueError"))
    end)
    local err = helper.await_error(r)
    assert.are.same({"ExceptionGroup"}, error_types(err))
    assert.are.same({"ValueError"}, error_types(err.errors[1]))
  end)

  it("test_taskgroup_17 (TestTaskGroup): a group with no children passes the cancellation on", function()
    local NUM = 0
    local r = a.create_task(function()
      local _ <close> = a.TaskGroup()
      sleep_or(10, function() NUM = NUM + 10 end)
    end)
    cancel_while_running(r)
    assert.are.equal(10, NUM)
  end)

  it("test_taskgroup_18 (TestTaskGroup): an error raised in place of the cancellation becomes the group's error", function()
    local NUM = 0
    local r = a.create_task(function()
      local _ <close> = a.TaskGroup()
      local ok = pcall(a.sleep, 10)
      if not ok then NUM = NUM + 10 error("MyExc", 0) end
    end)
    a.sleep(0.01)
    r:cancel()
    local err = helper.await_error(r)
    assert.is_true(is_group(err))
    assert.are.same({"MyExc"}, error_types(err))
    assert.are.equal(10, NUM)
  end)

  it("test_taskgroup_19 (TestTaskGroup): the body's cleanup error joins the child's error", function()
    local r = a.create_task(function()
      local g <close> = a.TaskGroup()
      g:create_task(crash_after(0.01, "ZeroDivisionError"))
      local function nested()
        local _ <close> = finally(function() error("MyExc", 0) end)
        a.sleep(10)
      end
      nested()
    end)
    local err = helper.await_error(r)
    assert.are.same({"MyExc", "ZeroDivisionError"}, error_types(err))
  end)

  it("test_taskgroup_22 (TestTaskGroup): cancelling the parent during the wait at the end", function()
    local r = a.create_task(function()
      local g <close> = a.TaskGroup()
      g:create_task(function() a.sleep(1) return 42 end)
      g:create_task(function() a.sleep(2) return 11 end)
    end)
    a.sleep(0.005)
    r:cancel()
    helper.await_cancelled(r)
  end)

  it("test_taskgroup_23 (TestTaskGroup): finished children leave the group as they end", function()
    local g <close> = a.TaskGroup()
    for count = 0, 9 do
      a.sleep(0.005)
      g:create_task(function() a.sleep(0.015) end)
      if count == 5 then assert.is_true(tostring(g):match("tasks=(%d+)") + 0 < 5) end
    end
    a.sleep(0.05)
    assert.matches("tasks=0", tostring(g))
  end)

  it("test_taskgroup_24 (TestTaskGroup): a child may add children to its own group", function()
    local ran = 0
    do
      local g <close> = a.TaskGroup()
      g:create_task(function()
        a.sleep(0.01)
        g:create_task(function() a.sleep(0.01) ran = ran + 1 end)
        g:create_task(function() a.sleep(0.02) ran = ran + 1 end)
      end)
    end
    assert.are.equal(2, ran)
  end)

  it("test_taskgroup_25 (TestTaskGroup): a growing group is stopped by one failure", function()
    local nhydras = 0
    local ok, err = pcall(function()
      local g <close> = a.TaskGroup()
      local function hydra()
        nhydras = nhydras + 1
        a.sleep(0.002)
        g:create_task(hydra)
        g:create_task(hydra)
      end
      g:create_task(hydra)
      g:create_task(function()
        while nhydras < 10 do a.sleep(0.003) end
        error("ZeroDivisionError", 0)
      end)
    end)
    assert.is_false(ok)
    assert.are.same({"ZeroDivisionError"}, error_types(err))
    assert.is_true(nhydras >= 10)
  end)

  it("test_taskgroup_task_name (TestTaskGroup): a child's name can be set and read", function()
    local g <close> = a.TaskGroup()
    local t = g:create_task(function() a.sleep(0) end)
    t:set_name("yolo")
    assert.are.equal("yolo", t:get_name())
  end)

  it("test_taskgroup_no_create_task_after_failure (TestTaskGroup): create_task while shutting down raises RuntimeError", function()
    local create_err
    local ok, err = pcall(function()
      local g <close> = a.TaskGroup()
      g:create_task(crash_after(0.001, "ZeroDivisionError"))
      g:create_task(function()
        local ok2 = pcall(a.sleep, 1)
        if not ok2 then
          local ok3
          ok3, create_err = pcall(g.create_task, g, function() end)
          assert(not ok3)
        end
      end)
    end)
    assert.is_false(ok)
    assert.are.same({"ZeroDivisionError"}, error_types(err))
    assert.is_true(a.is(create_err, a.RuntimeError))
    assert.matches("shutting down", tostring(create_err))
  end)

  it("test_taskgroup_context_manager_exit_raises (TestTaskGroup): an inner cleanup error and a child error; cancelling() back to 0", function()
    local task = a.current_task()
    local ok, err = pcall(function()
      local tg <close> = a.TaskGroup()
      local _ <close> = finally(function() error("CustomException", 0) end)
      tg:create_task(function() error("CustomException", 0) end)
      a.sleep(1)
    end)
    assert.is_false(ok)
    assert.are.equal(0, task:cancelling())
    assert.are.equal(2, #err.errors)
    assert.are.same({"CustomException"}, error_types(err))
  end)

  it("test_taskgroup_finished (TestTaskGroup): create_task after the group ended raises RuntimeError", function()
    local tg
    do
      local g <close> = a.TaskGroup()
      tg = g
    end
    local ok, err = pcall(tg.create_task, tg, function() end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.RuntimeError))
    assert.matches("is finished", tostring(err))
  end)

  it("test_taskgroup_without_parent_task (TestTaskGroup): a TaskGroup outside a task raises", function()
    local co = coroutine.wrap(function() return pcall(a.TaskGroup) end)
    local ok, err = co()
    assert.is_false(ok)
    assert.matches("outside a task", tostring(err))
  end)

  it("test_coro_closed_when_tg_closed (TestTaskGroup): the function given after the end never runs", function()
    local tg, ran = nil, false
    do
      local g <close> = a.TaskGroup()
      tg = g
    end
    assert.is_false(pcall(tg.create_task, tg, function() ran = true end))
    a.sleep(0)
    assert.is_false(ran)
  end)

  it("test_cancelling_level_preserved (TestTaskGroup): after a caught group error cancelling() is 0", function()
    local ok = pcall(function()
      local tg <close> = a.TaskGroup()
      tg:create_task(crash_after(0, "RuntimeError"))
    end)
    assert.is_false(ok)
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("test_nested_groups_both_cancelled (TestTaskGroup): cancelling() is 1 between the groups, 0 after", function()
    local me, between = a.current_task(), nil
    local ok, err = pcall(function()
      local outer <close> = a.TaskGroup()
      local ok2, err2 = pcall(function()
        local inner <close> = a.TaskGroup()
        inner:create_task(crash_after(0, "RuntimeError"))
        outer:create_task(crash_after(0, "ValueError"))
      end)
      assert(not ok2 and err2.errors[1] == "RuntimeError")
      between = me:cancelling()
    end)
    assert.is_false(ok)
    assert.are.same({"ValueError"}, error_types(err))
    assert.are.equal(1, between)
    assert.are.equal(0, me:cancelling())
  end)

  it("test_error_and_cancel (TestTaskGroup): an outside cancel during a child's failure is not lost", function()
    local event = a.Event()
    local after_group_cancelling, in_handler_cancelling
    local t = a.create_task(function()
      local ok = pcall(function()
        local tg <close> = a.TaskGroup()
        tg:create_task(function() event:set() a.sleep(0) error("RuntimeError", 0) end)
        a.sleep(1)
        error("sleep in group should have been cancelled")
      end)
      assert(not ok)
      in_handler_cancelling = a.current_task():cancelling()
      after_group_cancelling = a.current_task():cancelling()
      a.sleep(1)
      error("sleep after group should have been cancelled")
    end)
    event:wait()
    assert.are.equal(0, t:cancelling())
    t:cancel()
    assert.are.equal(1, t:cancelling())
    helper.await_cancelled(t)
    assert.is_true(t:cancelled())
    assert.are.equal(1, in_handler_cancelling)
    assert.are.equal(1, after_group_cancelling)
  end)

  it("test_name (TestTaskGroup): a child sees its own name as the current task", function()
    local name
    do
      local tg <close> = a.TaskGroup()
      local t = tg:create_task(function() name = a.current_task():get_name() end)
      t:set_name("example name")
    end
    assert.are.equal("example name", name)
  end)

  it("test_cancels_task_if_created_during_creation (TestTaskGroup): a child created by a child is part of the abort", function()
    local ran, cancelled_seen = false, false
    local ok, err = pcall(function()
      local tg <close> = a.TaskGroup()
      tg:create_task(function()
        tg:create_task(function() error("MyError third task failed", 0) end)
        local ok2, e = pcall(function() a.sleep(0) a.sleep(0) end)
        cancelled_seen = not ok2 and is_cancel(e)
        ran = true
      end)
    end)
    assert.is_false(ok)
    assert.is_true(ran)
    assert.is_true(cancelled_seen)
    assert.are.same({"MyError third task failed"}, error_types(err))
  end)

  it("test_cancellation_does_not_leak_out_of_tg (TestTaskGroup): the group's own cancel does not reach the caller later", function()
    local ok = pcall(function()
      local tg <close> = a.TaskGroup()
      tg:create_task(function() error("MyError", 0) end)
    end)
    assert.is_false(ok)
    a.sleep(0) -- would raise CancelledError if the cancellation leaked
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("test_taskgroup_01 (TestTaskGroup), through task_group(fn): the function form waits for the children too", function()
    -- CPython's test_taskgroup_01 through the function form
    local t1
    local r = a.task_group(function(g)
      t1 = g:create_task(function() a.sleep(0.01) return 42 end)
      return "body"
    end)
    assert.are.equal("body", r)
    assert.are.equal(42, t1:result())
  end)
end)
