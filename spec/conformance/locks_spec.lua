-- CPython 3.13's Lib/test/test_asyncio/test_locks.py, restated for lasync:
-- each `it` names the CPython test whose behaviour it checks.  Python's
-- private fields (lock._waiters, sem._value) are read from tostring();
-- `async with x` is `local _ <close> = x:acquire()`; a future someone sets
-- is an Event.  Tests of Python-only features (awaiting a lock object,
-- the loop= parameter, loops bound to primitives) have no Lua counterpart.
local helper = require "spec.helper"
local a = asyncio

local raises = helper.raises

local function waiters(obj)
  return tonumber(tostring(obj):match("waiters=(%d+)"))
end

local function value(sem)
  return tonumber(tostring(sem):match("value=(%-?%d+)"))
end

-- test_release_no_waiters (Lock and Semaphore): acquire locks the
-- primitive make() returns, release unlocks it.
local function release_unlocks(make)
  return function()
    local prim = make()
    prim:acquire()
    assert.is_true(prim:locked())
    prim:release()
    assert.is_false(prim:locked())
  end
end

-- test_context_manager (Lock and Condition): a <close> guard holds the
-- primitive make() returns for its scope.
local function guard_holds(make)
  return function()
    local prim = make()
    assert.is_false(prim:locked())
    do
      local _ <close> = prim:acquire()
      assert.is_true(prim:locked())
    end
    assert.is_false(prim:locked())
  end
end

local function list() return {} end
local function append(l, v) l[#l + 1] = v end

describe("conformance: LockTests", function()
  after_each(helper.no_leaks)

  it("test_repr (LockTests): says unlocked, then locked", function()
    local lock = a.Lock()
    assert.matches("^<Lock unlocked waiters=0>$", tostring(lock))
    lock:acquire()
    assert.matches("^<Lock locked waiters=0>$", tostring(lock))
    lock:release()
  end)

  it("test_lock_doesnt_accept_loop_parameter (LockTests): no constructor takes a loop", function()
    local loop = a.get_event_loop()
    for name, make in pairs{Lock = a.Lock, Condition = a.Condition, Event = a.Event,
                            Semaphore = a.Semaphore, BoundedSemaphore = a.BoundedSemaphore} do
      local ok, err = pcall(make, {loop = loop})
      assert.is_false(ok, name .. " took {loop = ...}")
      assert.matches("bad argument #1", tostring(err))
    end
    assert.has_error(function() a.Lock(loop) end, "bad argument #1 to 'Lock' (no arguments expected)")
  end)

  it("test_acquire (LockTests): waiters get the lock in FIFO order, one per release", function()
    local lock = a.Lock()
    local result = list()
    assert.are.equal(lock, lock:acquire()) -- truthy, as Python's True
    local function c(n)
      return function()
        if lock:acquire() then append(result, n) end
        return true
      end
    end
    local t1 = a.create_task(c(1))
    local t2 = a.create_task(c(2))
    a.sleep(0)
    assert.are.same({}, result)
    lock:release()
    a.sleep(0)
    assert.are.same({1}, result)
    a.sleep(0)
    assert.are.same({1}, result)
    local t3 = a.create_task(c(3))
    lock:release()
    a.sleep(0)
    assert.are.same({1, 2}, result)
    lock:release()
    a.sleep(0)
    assert.are.same({1, 2, 3}, result)
    for _, t in ipairs{t1, t2, t3} do
      assert.is_true(t:done())
      assert.is_true(t:result())
    end
    lock:release()
  end)

  it("test_acquire_cancel (LockTests): a cancelled acquire leaves no waiter", function()
    local lock = a.Lock()
    lock:acquire()
    local task = a.create_task(function() return lock:acquire() end)
    a.call_soon(function() task:cancel() end)
    raises(a.CancelledError, task.await, task)
    assert.are.equal(0, waiters(lock))
    lock:release()
  end)

  it("test_cancel_race (LockTests): release while the first waiter is cancelled goes to the next", function()
    local lock = a.Lock()
    local function lockit(blocker)
      lock:acquire()
      local ok, err = pcall(function() if blocker then blocker:wait() end end)
      lock:release()
      if not ok then error(err, 0) end
    end
    local fa = a.Event()
    local ta = a.create_task(lockit, fa)
    a.sleep(0)
    assert.is_true(lock:locked())
    local tb = a.create_task(lockit)
    a.sleep(0)
    assert.are.equal(1, waiters(lock))
    local tc = a.create_task(lockit)
    a.sleep(0)
    assert.are.equal(2, waiters(lock))
    fa:set()
    tb:cancel()
    a.sleep(0)
    assert.is_false(lock:locked())
    assert.is_true(ta:done())
    assert.is_true(tb:cancelled())
    tc:await()
    assert.is_false(lock:locked())
  end)

  it("test_cancel_release_race (LockTests): cancel + release together let exactly one waiter in", function()
    local lock = a.Lock()
    local lock_count, call_count = 0, 0
    local function lockit()
      call_count = call_count + 1
      lock:acquire()
      lock_count = lock_count + 1
    end
    lock:acquire()
    local t1 = a.create_task(lockit)
    local t2 = a.create_task(lockit)
    local t3 = a.create_task(lockit)
    a.sleep(0)
    a.call_soon(function()
      t1:cancel()
      lock:release()
    end)
    raises(a.CancelledError, t1.await, t1)
    assert.are.equal(1, lock_count)
    assert.are.equal(3, call_count)
    assert.is_true(t1:cancelled() and t2:done())
    t3:cancel()
    a.sleep(0)
    assert.is_true(t3:cancelled())
  end)

  it("test_finished_waiter_cancelled (LockTests): a cancelled first waiter does not strand the second", function()
    local lock = a.Lock()
    lock:acquire()
    assert.is_true(lock:locked())
    local tb = a.create_task(function() lock:acquire() end)
    a.sleep(0)
    assert.are.equal(1, waiters(lock))
    local tc = a.create_task(function() lock:acquire() end)
    tb:cancel()
    lock:release()
    a.sleep(0)
    assert.is_true(lock:locked())
    assert.is_true(tb:cancelled())
    tc:await()
    lock:release()
  end)

  it("test_release_not_acquired (LockTests): releasing an unlocked lock raises RuntimeError", function()
    local lock = a.Lock()
    raises(a.RuntimeError, lock.release, lock)
  end)

  it("test_release_no_waiters (LockTests): release unlocks", release_unlocks(a.Lock))

  it("test_context_manager (LockTests): a <close> guard holds the lock for its scope", guard_holds(a.Lock))
end)

describe("conformance: EventTests", function()
  after_each(helper.no_leaks)

  it("test_repr (EventTests): says unset, then set", function()
    local ev = a.Event()
    assert.matches("^<Event unset>$", tostring(ev))
    ev:set()
    assert.matches("^<Event set>$", tostring(ev))
  end)

  it("test_wait (EventTests): set() wakes every waiter; a late waiter passes at once", function()
    local ev = a.Event()
    assert.is_false(ev:is_set())
    local result = list()
    local function c(n)
      return function() if ev:wait() then append(result, n) end end
    end
    local t1 = a.create_task(c(1))
    local t2 = a.create_task(c(2))
    a.sleep(0)
    assert.are.same({}, result)
    local t3 = a.create_task(c(3))
    ev:set()
    a.sleep(0)
    assert.are.same({3, 1, 2}, result)
    for _, t in ipairs{t1, t2, t3} do
      assert.is_true(t:done())
      assert.is_nil(t:result())
    end
  end)

  it("test_wait_on_set (EventTests): wait on a set event returns true at once", function()
    local ev = a.Event()
    ev:set()
    assert.is_true(ev:wait())
  end)

  it("test_wait_cancel (EventTests): a cancelled wait raises CancelledError", function()
    local ev = a.Event()
    local w = a.create_task(function() return ev:wait() end)
    a.call_soon(function() w:cancel() end)
    raises(a.CancelledError, w.await, w)
    ev:set() -- nobody is left to wake
    assert.is_true(w:cancelled())
  end)

  it("test_clear (EventTests): clear() resets the flag", function()
    local ev = a.Event()
    assert.is_false(ev:is_set())
    ev:set()
    assert.is_true(ev:is_set())
    ev:clear()
    assert.is_false(ev:is_set())
  end)

  it("test_clear_with_waiters (EventTests): set, clear, set wakes a waiter once", function()
    local ev = a.Event()
    local result = list()
    local t = a.create_task(function()
      if ev:wait() then append(result, 1) end
      return true
    end)
    a.sleep(0)
    assert.are.same({}, result)
    ev:set()
    ev:clear()
    assert.is_false(ev:is_set())
    ev:set()
    ev:set()
    a.sleep(0)
    assert.are.same({1}, result)
    assert.is_true(t:done())
    assert.is_true(t:result())
  end)
end)

describe("conformance: ConditionTests", function()
  after_each(helper.no_leaks)

  -- c(n): acquires, waits, appends n; keeps the lock unless `release`.
  local function waiter(cond, result, n, release)
    return function()
      cond:acquire()
      if cond:wait() then
        append(result, n)
        if release then cond:release() end
      end
      return true
    end
  end

  it("test_wait (ConditionTests): a notified waiter returns only once it holds the lock again", function()
    local cond = a.Condition()
    local result = list()
    local t1 = a.create_task(waiter(cond, result, 1))
    local t2 = a.create_task(waiter(cond, result, 2))
    local t3 = a.create_task(waiter(cond, result, 3))
    a.sleep(0)
    assert.are.same({}, result)
    assert.is_false(cond:locked())
    assert.is_truthy(cond:acquire())
    cond:notify()
    a.sleep(0)
    assert.are.same({}, result)
    assert.is_true(cond:locked())
    cond:release()
    a.sleep(0)
    assert.are.same({1}, result)
    assert.is_true(cond:locked())
    cond:notify(2)
    a.sleep(0)
    assert.are.same({1}, result)
    assert.is_true(cond:locked())
    cond:release()
    a.sleep(0)
    assert.are.same({1, 2}, result)
    assert.is_true(cond:locked())
    cond:release()
    a.sleep(0)
    assert.are.same({1, 2, 3}, result)
    assert.is_true(cond:locked())
    for _, t in ipairs{t1, t2, t3} do
      assert.is_true(t:done())
      assert.is_true(t:result())
    end
    cond:release()
  end)

  it("test_wait_cancel (ConditionTests): a cancelled wait leaves no waiter and holds the lock", function()
    local cond = a.Condition()
    cond:acquire()
    local w = a.create_task(function() return cond:wait() end)
    a.call_soon(function() w:cancel() end)
    raises(a.CancelledError, w.await, w)
    assert.are.equal(0, waiters(cond))
    assert.is_true(cond:locked())
    cond:release()
  end)

  it("test_wait_cancel_contested (ConditionTests): cancelled while the lock is contested, it still ends holding it", function()
    local cond = a.Condition()
    cond:acquire()
    assert.is_true(cond:locked())
    local wait_task = a.create_task(function() return cond:wait() end)
    a.sleep(0)
    assert.is_false(cond:locked())
    cond:acquire()
    assert.is_true(cond:locked())
    cond:notify()
    a.call_soon(function() wait_task:cancel() end)
    a.call_soon(function() cond:release() end)
    local ok, err = pcall(wait_task.await, wait_task)
    if not ok then assert.is_true(a.is(err, a.CancelledError)) end
    assert.is_true(cond:locked())
    cond:release()
  end)

  it("test_wait_cancel_after_notify (ConditionTests): cancelled while re-acquiring, the task ends cancelled", function()
    local waited = false
    local cond = a.Condition()
    local w = a.create_task(function()
      local _ <close> = cond:acquire()
      waited = true
      cond:wait()
    end)
    a.sleep(0)
    cond:acquire()
    cond:notify()
    a.sleep(0)
    w:cancel()
    a.sleep(0)
    cond:release()
    a.sleep(0)
    assert.is_true(w:cancelled())
    assert.is_true(waited)
  end)

  it("test_wait_unacquired (ConditionTests): wait without the lock raises RuntimeError", function()
    local cond = a.Condition()
    raises(a.RuntimeError, cond.wait, cond)
  end)

  it("test_wait_for (ConditionTests): wait_for returns once the predicate holds after a notify", function()
    local cond = a.Condition()
    local presult = false
    local result = list()
    local t = a.create_task(function()
      cond:acquire()
      if cond:wait_for(function() return presult end) then
        append(result, 1)
        cond:release()
      end
      return true
    end)
    a.sleep(0)
    assert.are.same({}, result)
    cond:acquire()
    cond:notify()
    cond:release()
    a.sleep(0)
    assert.are.same({}, result)
    presult = true
    cond:acquire()
    cond:notify()
    cond:release()
    a.sleep(0)
    assert.are.same({1}, result)
    assert.is_true(t:done())
    assert.is_true(t:result())
  end)

  it("test_wait_for_unacquired (ConditionTests): a true predicate returns its value; waiting unlocked raises", function()
    local cond = a.Condition()
    local v = {1, 2, 3}
    assert.are.equal(v, cond:wait_for(function() return v end))
    raises(a.RuntimeError, cond.wait_for, cond, function() return false end)
  end)

  it("test_notify (ConditionTests): notify(n) wakes n waiters in order; more than waiting is fine", function()
    local cond = a.Condition()
    local result = list()
    local ts = {}
    for i = 1, 3 do ts[i] = a.create_task(waiter(cond, result, i, true)) end
    a.sleep(0)
    assert.are.same({}, result)
    cond:acquire()
    cond:notify(1)
    cond:release()
    a.sleep(0)
    assert.are.same({1}, result)
    cond:acquire()
    cond:notify(1)
    cond:notify(2048)
    cond:release()
    a.sleep(0)
    assert.are.same({1, 2, 3}, result)
    for i = 1, 3 do
      assert.is_true(ts[i]:done())
      assert.is_true(ts[i]:result())
    end
  end)

  it("test_notify_all (ConditionTests): notify_all wakes every waiter", function()
    local cond = a.Condition()
    local result = list()
    local t1 = a.create_task(waiter(cond, result, 1, true))
    local t2 = a.create_task(waiter(cond, result, 2, true))
    a.sleep(0)
    assert.are.same({}, result)
    cond:acquire()
    cond:notify_all()
    cond:release()
    a.sleep(0)
    assert.are.same({1, 2}, result)
    assert.is_true(t1:result())
    assert.is_true(t2:result())
  end)

  it("test_notify_unacquired (ConditionTests): notify without the lock raises RuntimeError", function()
    local cond = a.Condition()
    raises(a.RuntimeError, cond.notify, cond)
  end)

  it("test_notify_all_unacquired (ConditionTests): notify_all without the lock raises RuntimeError", function()
    local cond = a.Condition()
    raises(a.RuntimeError, cond.notify_all, cond)
  end)

  it("test_repr (ConditionTests): says unlocked/locked and counts waiters", function()
    local cond = a.Condition()
    assert.matches("^<Condition unlocked waiters=0>$", tostring(cond))
    cond:acquire()
    assert.matches("^<Condition locked waiters=0>$", tostring(cond))
    local ts = {}
    for i = 1, 2 do
      ts[i] = a.create_task(function()
        local _ <close> = cond:acquire()
        cond:wait()
      end)
    end
    cond:release()
    a.sleep(0)
    assert.are.equal(2, waiters(cond))
    cond:acquire()
    cond:notify_all()
    assert.are.equal(0, waiters(cond))
    cond:release()
    a.gather(ts)
  end)

  it("test_context_manager (ConditionTests): a <close> guard holds the lock for its scope", guard_holds(a.Condition))

  it("test_explicit_lock (ConditionTests): a Condition over a given Lock shares its state", function()
    local function f(lock, cond)
      lock = lock or a.Lock()
      cond = cond or a.Condition(lock)
      assert.is_false(lock:locked())
      assert.is_false(cond:locked())
      do
        local _ <close> = cond:acquire()
        assert.is_true(lock:locked())
        assert.is_true(cond:locked())
      end
      assert.is_false(lock:locked())
      assert.is_false(cond:locked())
      do
        local _ <close> = lock:acquire()
        assert.is_true(lock:locked())
        assert.is_true(cond:locked())
      end
      assert.is_false(lock:locked())
      assert.is_false(cond:locked())
    end
    f()
    f(a.Lock())
    local lock = a.Lock()
    f(lock, a.Condition(lock))
  end)

  it("test_timeout_in_block (ConditionTests): wait_for(cond:wait(), t) times out and keeps the lock", function()
    local cond = a.Condition()
    local _ <close> = cond:acquire()
    raises(a.TimeoutError, a.wait_for, function() return cond:wait() end, 0.05)
    assert.is_true(cond:locked())
  end)

  it("test_cancelled_error_wakeup (ConditionTests): the CancelledError from the wake-up wait is re-raised unchanged", function()
    local raised
    local cond = a.Condition()
    local task = a.create_task(function()
      local _ <close> = cond:acquire()
      local ok, err = pcall(cond.wait_for, cond, function() return false end)
      assert.is_false(ok)
      assert.is_true(a.is(err, a.CancelledError))
      raised = err
      error(raised, 0)
    end)
    a.sleep(0)
    task:cancel("foo")
    local err = raises(a.CancelledError, task.await, task)
    assert.are.equal("foo", err.message)
    assert.are.equal(raised, err)
  end)

  it("test_cancelled_error_re_aquire (ConditionTests): the CancelledError from re-acquiring is re-raised unchanged", function()
    local wake, raised = false, nil
    local cond = a.Condition()
    local task = a.create_task(function()
      local _ <close> = cond:acquire()
      local ok, err = pcall(cond.wait_for, cond, function() return wake end)
      assert.is_false(ok)
      raised = err
      error(raised, 0)
    end)
    a.sleep(0)
    cond:acquire()
    wake = true
    cond:notify()
    a.sleep(0)
    task:cancel("foo")
    cond:release()
    local err = raises(a.CancelledError, task.await, task)
    assert.are.equal("foo", err.message)
    assert.are.equal(raised, err)
  end)

  -- Two consumers of `state`; the test cancels the notified one at two
  -- points and checks the notification still reaches the other.
  local function cancelled_wakeup(settle)
    local cond = a.Condition()
    local state = 0
    local function consumer()
      local _ <close> = cond:acquire()
      while true do
        cond:wait_for(function() return state ~= 0 end)
        if state < 0 then return end
        state = state - 1
      end
    end
    local c = { a.create_task(consumer), a.create_task(consumer) }
    a.sleep(0)
    do
      local _ <close> = cond:acquire()
      state = state + 1
      cond:notify(1)
      if settle then a.sleep(0) end -- c[1] now waits for the lock
      c[1]:cancel()
      pcall(function()
        local _ <close> = a.timeout(0.05)
        cond:wait_for(function() return state == 0 end)
      end)
      assert.are.equal(0, state)
      state = -1
      cond:notify_all()
    end
    c[2]:await()
    assert.is_true(c[1]:cancelled())
  end

  it("test_cancelled_wakeup (ConditionTests): a waiter cancelled as it is notified does not lose the wake-up", function()
    cancelled_wakeup(false)
  end)

  it("test_cancelled_wakeup_relock (ConditionTests): a waiter cancelled while re-acquiring does not lose the wake-up", function()
    cancelled_wakeup(true)
  end)
end)

describe("conformance: SemaphoreTests", function()
  after_each(helper.no_leaks)

  it("test_initial_value_zero (SemaphoreTests): Semaphore(0) is locked", function()
    assert.is_true(a.Semaphore(0):locked())
  end)

  it("test_repr (SemaphoreTests): shows the value and the waiters", function()
    local sem = a.Semaphore()
    assert.matches("^<Semaphore value=1 waiters=0>$", tostring(sem))
    sem:acquire()
    assert.matches("^<Semaphore value=0 waiters=0>$", tostring(sem))
    local ts = {}
    for i = 1, 2 do ts[i] = a.create_task(function() sem:acquire() end) end
    a.sleep(0)
    assert.are.equal(2, waiters(sem))
    for i = 1, 2 do ts[i]:cancel() end
    a.sleep(0)
    assert.are.equal(0, waiters(sem))
    sem:release()
  end)

  it("test_semaphore (SemaphoreTests): the default value is 1", function()
    local sem = a.Semaphore()
    assert.are.equal(1, value(sem))
    assert.is_false(sem:locked())
  end)

  it("test_semaphore_value (SemaphoreTests): a negative initial value is refused (an argument error in lasync)", function()
    assert.has_error(function() a.Semaphore(-1) end)
    assert.has_error(function() a.BoundedSemaphore(-1) end)
  end)

  it("test_acquire (SemaphoreTests): waiters woken by release() hold their permits; a newcomer queues", function()
    local sem = a.Semaphore(3)
    local result = list()
    assert.is_truthy(sem:acquire())
    assert.is_truthy(sem:acquire())
    assert.is_false(sem:locked())
    local function c(n)
      return function() sem:acquire() append(result, n) return true end
    end
    local t1 = a.create_task(c(1))
    local t2 = a.create_task(c(2))
    local t3 = a.create_task(c(3))
    a.sleep(0)
    assert.are.same({1}, result)
    assert.is_true(sem:locked())
    assert.are.equal(2, waiters(sem))
    assert.are.equal(0, value(sem))
    local t4 = a.create_task(c(4))
    sem:release()
    sem:release()
    assert.are.equal(0, value(sem))
    a.sleep(0)
    assert.are.equal(0, value(sem))
    assert.are.equal(3, #result)
    assert.is_true(sem:locked())
    assert.are.equal(1, waiters(sem))
    assert.is_true(t1:done())
    assert.is_true(t1:result())
    local done = 0
    for _, t in ipairs{t2, t3, t4} do
      if t:done() and t:result() then done = done + 1 end
    end
    assert.are.equal(2, done)
    sem:release()
    a.gather{t2, t3, t4}
  end)

  it("test_acquire_cancel (SemaphoreTests): a cancelled acquire leaves no waiter", function()
    local sem = a.Semaphore()
    sem:acquire()
    local acq = a.create_task(function() sem:acquire() end)
    a.call_soon(function() acq:cancel() end)
    raises(a.CancelledError, acq.await, acq)
    assert.are.equal(0, waiters(sem))
    sem:release()
    assert.is_false(sem:locked())
  end)

  it("test_acquire_cancel_before_awoken (SemaphoreTests): cancelled waiters are skipped by release()", function()
    local sem = a.Semaphore(0)
    local t = {}
    for i = 1, 4 do t[i] = a.create_task(function() sem:acquire() end) end
    a.sleep(0)
    t[1]:cancel()
    t[2]:cancel()
    sem:release()
    a.sleep(0)
    a.sleep(0)
    assert.is_true(t[3]:done())
    assert.is_false(t[4]:done())
    t[3]:cancel()
    t[4]:cancel()
    a.sleep(0)
  end)

  it("test_acquire_hang (SemaphoreTests): release() after a waiter's cancel reaches the next one", function()
    local sem = a.Semaphore(0)
    local t1 = a.create_task(function() sem:acquire() end)
    local t2 = a.create_task(function() sem:acquire() end)
    a.sleep(0)
    t1:cancel()
    sem:release()
    a.sleep(0)
    a.sleep(0)
    assert.is_true(sem:locked())
    assert.is_true(t2:done())
  end)

  it("test_acquire_no_hang (SemaphoreTests): a woken waiter cancelled before it runs gives its permit back", function()
    local sem = a.Semaphore(1)
    local t2
    local t1 = a.create_task(function()
      do
        local _ <close> = sem:acquire()
        a.sleep(0)
      end
      t2:cancel()
    end)
    t2 = a.create_task(function()
      local _ <close> = sem:acquire()
      error("c2 must never get the semaphore")
    end)
    local r = a.gather{t1, t2, return_exceptions = true}
    assert.is_nil(r[1])
    assert.is_true(a.is(r[2], a.CancelledError))
    a.wait_for(function() sem:acquire() end, 1.0)
  end)

  it("test_release_not_acquired (SemaphoreTests): BoundedSemaphore over-release raises ValueError", function()
    local sem = a.BoundedSemaphore()
    raises(a.ValueError, sem.release, sem)
  end)

  it("test_release_no_waiters (SemaphoreTests): release unlocks", release_unlocks(a.Semaphore))

  it("test_acquire_fifo_order (SemaphoreTests): re-acquiring tasks queue behind earlier ones", function()
    local sem = a.Semaphore(1)
    local result = list()
    local function coro(tag)
      return function()
        sem:acquire()
        append(result, tag .. "_1")
        a.sleep(0.001)
        sem:release()
        sem:acquire()
        append(result, tag .. "_2")
        a.sleep(0.001)
        sem:release()
      end
    end
    a.task_group(function(tg)
      tg:create_task(coro("c1"))
      tg:create_task(coro("c2"))
      tg:create_task(coro("c3"))
    end)
    assert.are.same({"c1_1", "c2_1", "c3_1", "c1_2", "c2_2", "c3_2"}, result)
  end)

  it("test_acquire_fifo_order_2 (SemaphoreTests): a release-and-reacquire goes to the back", function()
    local sem = a.Semaphore(1)
    local result = list()
    local t1 = a.create_task(function() sem:acquire() append(result, 1) return true end)
    local t2 = a.create_task(function()
      sem:acquire()
      append(result, 2)
      sem:release()
      sem:acquire()
      append(result, 4)
      return true
    end)
    local t3 = a.create_task(function() sem:acquire() append(result, 3) return true end)
    a.sleep(0)
    sem:release()
    sem:release()
    a.gather{t1, t2, t3}
    assert.are.same({1, 2, 3, 4}, result)
  end)

  it("test_acquire_fifo_order_3 (SemaphoreTests): a cancelled waiter does not take a permit", function()
    local sem = a.Semaphore(0)
    local result = list()
    local function c(n)
      return function() sem:acquire() append(result, n) return true end
    end
    local t1 = a.create_task(c(1))
    local t2 = a.create_task(c(2))
    local t3 = a.create_task(c(3))
    a.sleep(0)
    t1:cancel()
    a.sleep(0)
    sem:release()
    sem:release()
    a.gather{t1, t2, t3, return_exceptions = true}
    assert.are.same({2, 3}, result)
  end)

  it("test_acquire_fifo_order_4 (SemaphoreTests): a woken waiter wakes those queued behind it", function()
    local sem = a.Semaphore(0)
    local result = list()
    local t4
    local function c4() append(result, 4) return true end
    local t1 = a.create_task(function()
      assert.are.equal(0, value(sem))
      sem:acquire()
      assert.are.equal(0, value(sem)) -- it woke the others
      t4 = a.create_task(c4)          -- runs after c3, not c2
      append(result, 1)
      return true
    end)
    local t2 = a.create_task(function()
      sem:release()
      sem:release()
      sem:release()
      assert.are.equal(2, value(sem))
      assert.is_true(sem:locked()) -- c1 has not run yet
      sem:acquire()
      append(result, 2)
      return true
    end)
    local t3 = a.create_task(function()
      sem:acquire()
      assert.is_true(sem:locked())
      append(result, 3)
      return true
    end)
    a.sleep(0)
    assert.are.equal(2, value(sem))
    assert.are.equal(3, waiters(sem)) -- c1 (woken), c2 and c3
    a.sleep(0)
    a.gather{t1, t2, t3, t4}
    assert.are.same({1, 2, 3, 4}, result)
  end)
end)

describe("conformance: BarrierTests", function()
  after_each(helper.no_leaks)

  local N = 5

  local function make_tasks(n, fn)
    local ts = {}
    for i = 1, n do ts[i] = a.create_task(fn) end
    return ts
  end

  local function gather_tasks(n, fn)
    local ts = make_tasks(n, fn)
    return a.gather(ts), ts
  end

  local function range(n)
    local r = {}
    for i = 1, n do r[i] = i - 1 end
    return r
  end

  local function sorted(t)
    table.sort(t)
    return t
  end

  local function count(t, v)
    local c = 0
    for i = 1, #t do if t[i] == v then c = c + 1 end end
    return c
  end

  local function is_broken(err) return a.is(err, a.BrokenBarrierError) end

  it("test_barrier (BarrierTests): a new barrier is filling", function()
    local barrier = a.Barrier(N)
    assert.matches("filling", tostring(barrier))
  end)

  it("test_repr (BarrierTests): filling, draining, resetting and broken show in tostring", function()
    local barrier = a.Barrier(N)
    assert.matches("^<Barrier filling waiters=0/5>$", tostring(barrier))
    local ws = {}
    local function wait() barrier:wait() end
    for _ = 1, 2 do ws[#ws + 1] = a.create_task(wait) end
    a.sleep(0)
    assert.matches("^<Barrier filling waiters=2/5>$", tostring(barrier))
    for _ = 1, barrier.parties - barrier.n_waiting do ws[#ws + 1] = a.create_task(wait) end
    a.sleep(0)
    assert.matches("draining", tostring(barrier))
    for _ = 1, 2 do ws[#ws + 1] = a.create_task(wait) end
    a.sleep(0)
    barrier:reset()
    assert.matches("resetting", tostring(barrier))
    for _ = 1, 2 do ws[#ws + 1] = a.create_task(wait) end
    a.sleep(0)
    barrier:abort()
    assert.matches("broken", tostring(barrier))
    assert.is_true(barrier.broken)
    ws.return_exceptions = true
    local res = a.gather(ws)
    local broken = 0
    for i = 1, #res do
      if is_broken(res[i]) then broken = broken + 1
      else assert.is_nil(res[i]) end -- wait() returned (gather keeps first results)
    end
    assert.is_true(broken >= 4) -- the four that came while draining
  end)

  it("test_barrier_parties (BarrierTests): parties < 1 is refused (an argument error in lasync)", function()
    assert.has_error(function() a.Barrier(0) end, "bad argument #1 to 'Barrier' (parties must be >= 1)")
    assert.has_error(function() a.Barrier(-4) end)
    assert.are.equal(N, a.Barrier(N).parties)
  end)

  it("test_context_manager (BarrierTests): wait() returns each arrival index once", function()
    local barrier = a.Barrier(3)
    local results = {}
    gather_tasks(3, function()
      local i = barrier:wait()
      results[#results + 1] = i
    end)
    assert.are.same(range(3), sorted(results))
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_filling_one_task (BarrierTests): a one-party barrier passes at once", function()
    local barrier = a.Barrier(1)
    assert.are.equal(0, barrier:wait())
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_filling_one_task_twice (BarrierTests): a one-party barrier passes every time", function()
    local barrier = a.Barrier(1)
    local t1 = a.create_task(function() return barrier:wait() end)
    a.sleep(0)
    assert.are.equal(0, barrier.n_waiting)
    local t2 = a.create_task(function() return barrier:wait() end)
    a.sleep(0)
    assert.are.equal(t1:result(), t2:result())
    assert.are.equal(t1:done(), t2:done())
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_filling_task_by_task (BarrierTests): n_waiting counts arrivals until the last", function()
    local barrier = a.Barrier(3)
    local function w() return barrier:wait() end
    local t1 = a.create_task(w)
    a.sleep(0)
    assert.are.equal(1, barrier.n_waiting)
    assert.matches("filling", tostring(barrier))
    local t2 = a.create_task(w)
    a.sleep(0)
    assert.are.equal(2, barrier.n_waiting)
    assert.matches("filling", tostring(barrier))
    local t3 = a.create_task(w)
    a.sleep(0)
    a.wait{t1, t2, t3}
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_filling_tasks_wait_twice (BarrierTests): the barrier can be passed twice in a row", function()
    local barrier = a.Barrier(N)
    local results = {}
    gather_tasks(N, function()
      barrier:wait()
      results[#results + 1] = true
      barrier:wait()
      results[#results + 1] = false
    end)
    assert.are.equal(N * 2, #results)
    assert.are.equal(N, count(results, true))
    assert.are.equal(N, count(results, false))
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_filling_tasks_check_return_value (BarrierTests): the second pass returns each index once", function()
    local barrier = a.Barrier(N)
    local results1, results2 = {}, {}
    local res = gather_tasks(N, function()
      barrier:wait()
      results1[#results1 + 1] = true
      local i = barrier:wait()
      results2[#results2 + 1] = true
      return i
    end)
    assert.are.equal(N, #results1)
    assert.are.equal(N, #results2)
    assert.are.same(range(N), sorted(res))
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_draining_state (BarrierTests): all but the last task out see it draining", function()
    local barrier = a.Barrier(N)
    local results = {}
    gather_tasks(N, function()
      barrier:wait()
      results[#results + 1] = tostring(barrier):find("draining") ~= nil
    end)
    assert.are.equal(N, #results)
    assert.is_false(results[N])
    for i = 1, N - 1 do assert.is_true(results[i]) end
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_blocking_tasks_while_draining (BarrierTests): arrivals during draining wait for the next round", function()
    local rewait = 2
    local barrier = a.Barrier(N)
    local barrier_nowaiting = a.Barrier(N - rewait)
    local rewait_n = rewait
    local res = gather_tasks(N, function()
      barrier:wait()
      if rewait_n > 0 then
        rewait_n = rewait_n - 1
        barrier:wait()
      else
        barrier_nowaiting:wait()
        barrier:wait()
      end
      return true
    end)
    assert.are.same({true, true, true, true, true}, res)
    assert.are.equal(0, barrier.n_waiting)
  end)

  it("test_filling_tasks_cancel_one (BarrierTests): a cancelled waiter leaves its place", function()
    local barrier = a.Barrier(3)
    local results = {}
    local function coro() barrier:wait() results[#results + 1] = true end
    local t1 = a.create_task(coro)
    a.sleep(0)
    assert.are.equal(1, barrier.n_waiting)
    local t2 = a.create_task(coro)
    a.sleep(0)
    assert.are.equal(2, barrier.n_waiting)
    t1:cancel()
    a.sleep(0)
    assert.are.equal(1, barrier.n_waiting)
    raises(a.CancelledError, t1.await, t1)
    assert.is_true(t1:cancelled())
    local t3 = a.create_task(coro)
    a.sleep(0)
    assert.are.equal(2, barrier.n_waiting)
    local t4 = a.create_task(coro)
    a.gather{t2, t3, t4}
    assert.are.equal(3, #results)
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_reset_barrier (BarrierTests): reset of an idle barrier keeps it usable", function()
    local barrier = a.Barrier(1)
    a.create_task(function() barrier:reset() end)
    a.sleep(0)
    assert.are.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end)

  it("test_reset_barrier_while_tasks_waiting (BarrierTests): reset raises BrokenBarrierError in the waiters", function()
    local barrier = a.Barrier(N)
    local results = {}
    local tasks = make_tasks(N - 1, function()
      local ok, err = pcall(barrier.wait, barrier)
      if not ok and is_broken(err) then results[#results + 1] = true end
    end)
    a.sleep(0)
    a.create_task(function() barrier:reset() end)
    a.gather(tasks)
    assert.are.equal(N - 1, #results)
    assert.are.equal(0, barrier.n_waiting)
    assert.is_nil(tostring(barrier):find("resetting"))
    assert.is_false(barrier.broken)
  end)

  it("test_reset_barrier_when_tasks_half_draining (BarrierTests): reset from a task already out breaks the blocked ones", function()
    local barrier = a.Barrier(N)
    local results1 = {}
    local rest_of_tasks = N // 2
    gather_tasks(N, function()
      local ok, err = pcall(barrier.wait, barrier)
      if not ok then
        assert.is_true(is_broken(err))
        results1[#results1 + 1] = true
      elseif rest_of_tasks == barrier._count then
        barrier:reset()
      end
    end)
    assert.are.equal(rest_of_tasks, #results1)
    assert.are.equal(0, barrier.n_waiting)
    assert.is_nil(tostring(barrier):find("resetting"))
    assert.is_false(barrier.broken)
  end)

  it("test_reset_barrier_when_tasks_half_draining_half_blocking (BarrierTests): tasks broken by reset can wait again", function()
    local barrier = a.Barrier(N)
    local results1, results2 = {}, {}
    local blocking_tasks = N // 2
    local n = 0
    gather_tasks(N, function()
      local ok, err = pcall(barrier.wait, barrier)
      if not ok then
        assert.is_true(is_broken(err))
        results1[#results1 + 1] = true
        barrier:wait()
      else
        n = n + 1
        if n > blocking_tasks then
          barrier:reset()
          barrier:wait()
        else
          local ok2, err2 = pcall(barrier.wait, barrier)
          if not ok2 and is_broken(err2) then results2[#results2 + 1] = true end
        end
      end
    end)
    assert.are.equal(blocking_tasks, #results1)
    assert.are.equal(0, #results2)
    assert.are.equal(0, barrier.n_waiting)
    assert.is_nil(tostring(barrier):find("resetting"))
    assert.is_false(barrier.broken)
  end)

  it("test_reset_barrier_while_tasks_waiting_and_waiting_again (BarrierTests): after a reset all can pass again", function()
    local barrier = a.Barrier(N)
    local results1, results2 = {}, {}
    local tasks = make_tasks(N - 1, function()
      local ok, err = pcall(barrier.wait, barrier)
      if not ok and is_broken(err) then results1[#results1 + 1] = true end
      barrier:wait()
      results2[#results2 + 1] = true
    end)
    a.create_task(function() barrier:reset() end)
    a.sleep(0)
    local t = a.create_task(function()
      barrier:wait()
      results2[#results2 + 1] = true
    end)
    a.gather(tasks)
    t:await()
    assert.is_false(barrier.broken)
    assert.are.equal(N - 1, #results1)
    assert.are.equal(N, #results2)
    assert.are.equal(0, barrier.n_waiting)
  end)

  it("test_reset_barrier_while_tasks_draining (BarrierTests): a reset by the last task out does not break the next round", function()
    local barrier = a.Barrier(N)
    local results1, results2, results3 = {}, {}, {}
    local n = 0
    gather_tasks(N, function()
      barrier:wait()
      n = n + 1
      if n == N then
        barrier:reset()
        barrier:wait()
      else
        local ok = pcall(barrier.wait, barrier)
        if ok then results1[#results1 + 1] = true
        else results2[#results2 + 1] = true end
      end
      barrier:wait()
      results3[#results3 + 1] = true
    end)
    assert.is_false(barrier.broken)
    assert.are.equal(N - 1, #results1)
    assert.are.equal(0, #results2)
    assert.are.equal(N, #results3)
    assert.are.equal(0, barrier.n_waiting)
  end)

  it("test_abort_barrier (BarrierTests): abort breaks the barrier", function()
    local barrier = a.Barrier(1)
    a.create_task(function() barrier:abort() end)
    a.sleep(0)
    assert.are.equal(0, barrier.n_waiting)
    assert.is_true(barrier.broken)
  end)

  it("test_abort_barrier_when_tasks_half_draining_half_blocking (BarrierTests): abort breaks both the draining and the blocked", function()
    local barrier = a.Barrier(N)
    local results1, results2 = {}, {}
    local blocking_tasks = N // 2
    local n = 0
    gather_tasks(N, function()
      local ok, err = pcall(barrier.wait, barrier)
      if not ok then
        assert.is_true(is_broken(err))
        results1[#results1 + 1] = true
      else
        n = n + 1
        if n > blocking_tasks then
          barrier:abort()
        else
          local ok2, err2 = pcall(barrier.wait, barrier)
          if not ok2 and is_broken(err2) then results2[#results2 + 1] = true end
        end
      end
    end)
    assert.is_true(barrier.broken)
    assert.are.equal(blocking_tasks, #results1)
    assert.are.equal(N - blocking_tasks - 1, #results2)
    assert.are.equal(0, barrier.n_waiting)
    assert.is_nil(tostring(barrier):find("resetting"))
  end)

  it("test_abort_barrier_when_exception (BarrierTests): an error inside the barrier, then abort, breaks everyone", function()
    local barrier = a.Barrier(N)
    local results1, results2 = {}, {}
    gather_tasks(N, function()
      local ok, err = pcall(function()
        local i = barrier:wait()
        if i == N // 2 then error("boom", 0) end
        barrier:wait()
        results1[#results1 + 1] = true
      end)
      if ok then return end
      if is_broken(err) then
        results2[#results2 + 1] = true
      else
        assert.are.equal("boom", err)
        barrier:abort()
      end
    end)
    assert.is_true(barrier.broken)
    assert.are.equal(0, #results1)
    assert.are.equal(N - 1, #results2)
    assert.are.equal(0, barrier.n_waiting)
  end)

  it("test_abort_barrier_when_exception_then_resetting (BarrierTests): a broken barrier works again after reset", function()
    local barrier1 = a.Barrier(N)
    local barrier2 = a.Barrier(N)
    local results1, results2, results3 = {}, {}, {}
    gather_tasks(N, function()
      local ok, err = pcall(function()
        local i = barrier1:wait()
        if i == N // 2 then error("boom", 0) end
        barrier1:wait()
        results1[#results1 + 1] = true
      end)
      if not ok then
        if is_broken(err) then results2[#results2 + 1] = true
        else barrier1:abort() end
      end
      local i = barrier2:wait()
      if i == N // 2 then barrier1:reset() end
      barrier2:wait()
      barrier1:wait()
      results3[#results3 + 1] = true
    end)
    assert.is_false(barrier1.broken)
    assert.are.equal(0, #results1)
    assert.are.equal(N - 1, #results2)
    assert.are.equal(N, #results3)
    assert.are.equal(0, barrier1.n_waiting)
  end)
end)
