-- Regressions of issue 10 in the task area: cancellations that were lost,
-- a cancel message that crashed the host, results thrown away by a
-- deadline, and asyncio 3.13 details of timeouts and scheduling.
local helper = require "spec.helper"
local a = asyncio

-- Spins without yielding until the loop clock passes `t` (so a deadline
-- falls between a task's finishing and its awaiter's resumption).
local function spin_until(t)
  while a.time() < t do end
end

describe("issue 10: task races", function()
  after_each(helper.no_leaks)

  it("a cancel() arriving while a TaskGroup child fails is not lost", function()
    local after_group, unwinding = false, false
    local release = a.Event()
    local t = a.create_task(function()
      local ok, err = pcall(function()
        local tg <close> = a.TaskGroup()
        tg:create_task(function() a.sleep(0) error("boom", 0) end)
        -- a child slow to unwind keeps the group waiting past our cancel()
        -- (gated by an Event, not a timer: under valgrind a 10 ms timer
        -- could let our cancel() arrive before the failure)
        tg:create_task(function()
          pcall(a.sleep, 10)
          unwinding = true
          pcall(release.wait, release)
        end)
        a.sleep(10)
      end)
      assert(not ok and a.is(err, a.ExceptionGroup))
      a.sleep(10) -- the outside cancellation is delivered here
      after_group = true
    end)
    helper.wait_until(function() return unwinding end, 5, "the group cancelling its slow child")
    assert.is_true(t:cancel())
    release:set()
    helper.await_cancelled(t)
    assert.is_true(t:cancelled())
    assert.is_false(after_group)
  end)

  it("a cancel() of the TaskGroup's parent alone ends it cancelled, cancelling() 1", function()
    local seen
    local t = a.create_task(function()
      local ok, err = pcall(function()
        local tg <close> = a.TaskGroup()
        tg:create_task(function() a.sleep(10) end)
        a.sleep(10)
      end)
      seen = a.current_task():cancelling()
      error(err, 0)
    end)
    a.sleep(0.01)
    t:cancel()
    helper.await_error(t)
    assert.are.equal(1, seen)
    assert.is_true(t:cancelled())
  end)

  it("cancel(msg) whose __tostring raises does not crash the host", function()
    local msg = setmetatable({}, {__tostring = function() error("no text") end})
    local t = a.create_task(function() a.sleep(10) end)
    a.sleep(0)
    t:cancel(msg)
    local err = helper.await_cancelled(t)
    assert.are.equal(msg, err.message)
    assert.matches("^CancelledError: %(a table whose __tostring failed%)$", tostring(err))
  end)

  it("cancel(5) gives 5, a number, as the CancelledError message", function()
    local t = a.create_task(function() a.sleep(10) end)
    a.sleep(0)
    t:cancel(5)
    local err = helper.await_error(t)
    assert.are.equal(5, err.message)
    assert.are.equal("integer", math.type(err.message))
    assert.are.equal("CancelledError: 5", tostring(err))
  end)

  it("a table message with __tostring shows in tostring(err)", function()
    local msg = setmetatable({}, {__tostring = function() return "why not" end})
    local t = a.create_task(function() a.sleep(10) end)
    a.sleep(0)
    t:cancel(msg)
    local _, err = pcall(t.await, t)
    assert.are.equal(msg, err.message)
    assert.are.equal("CancelledError: why not", tostring(err))
  end)

  it("the cancel message passes through gather, keeping its type", function()
    for _, m in ipairs({"my message", 5}) do
      local t = a.create_task(function()
        return a.gather(function() a.sleep(10) end, function() a.sleep(10) end)
      end)
      a.sleep(0) a.sleep(0)
      t:cancel(m)
      local err = helper.await_cancelled(t)
      assert.are.equal(m, err.message)
    end
  end)

  it("the cancel message reaches the awaited task", function()
    local inner_err
    local inner = a.create_task(function()
      local ok, e = pcall(a.sleep, 10)
      inner_err = e
      error(e, 0)
    end)
    local outer = a.create_task(function() return inner:await() end)
    a.sleep(0) a.sleep(0)
    outer:cancel("stop now")
    local _, err = pcall(outer.await, outer)
    assert.are.equal("stop now", inner_err.message)
    assert.are.equal("stop now", err.message)
  end)

  it("wait_for keeps a stream read that completes as the deadline passes", function()
    local srv = a.start_server(function(_, w)
      w:write("hello")
      w:drain()
      a.sleep(0.2)
      w:close()
    end, "127.0.0.1", 0)
    local r, w = a.open_connection("127.0.0.1", srv.port)
    local deadline_passed = false
    local got = a.wait_for(function()
      local data = r:read(5)
      -- finish only once the deadline has passed: the awaiting task is
      -- woken in the same turn as its timeout fires
      spin_until(a.time() + 0.06)
      deadline_passed = true
      return data
    end, 0.05)
    assert.is_true(deadline_passed)
    assert.are.equal("hello", got)
    -- the deadline is delivered at the next suspension inside a scope
    w:close()
    srv:close()
    srv:wait_closed()
  end)

  it("a timeout scope whose awaited task finished as it expired returns the result", function()
    local q = a.Queue()
    local tm
    local got = (function()
      local t <close> = a.timeout(0.02)
      tm = t
      local child = a.create_task(function()
        local v = q:get()
        spin_until(a.time() + 0.04)
        return v
      end)
      q:put_nowait("item")
      return child:await()
    end)()
    assert.are.equal("item", got)
    assert.is_true(tm:expired())
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("an expired deadline still interrupts the task's next suspension", function()
    local ok, err = pcall(function()
      local _ <close> = a.timeout(0.02)
      local child = a.create_task(function() spin_until(a.time() + 0.04) return 1 end)
      child:await()
      a.sleep(10) -- the deferred cancellation lands here
    end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("a sleep(0) loop inside a timeout is still interrupted", function()
    local n = 0
    local ok, err = pcall(function()
      local _ <close> = a.timeout(0.02)
      while true do n = n + 1 a.sleep(0) end
    end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.is_true(n > 1)
  end)
end)

-- Runs sleep(0) in the scope of the timeout make() returns; asserts that
-- it raises TimeoutError and that the timeout says it expired.
local function expires_around_sleep0(make)
  local tm
  local ok, err = pcall(function()
    local t <close> = make()
    tm = t
    a.sleep(0)
  end)
  assert.is_false(ok)
  assert.is_true(a.is(err, a.TimeoutError))
  assert.is_true(tm:expired())
end

describe("issue 10: asyncio 3.13 timeouts", function()
  after_each(helper.no_leaks)

  it("timeout(0) around sleep(0) raises TimeoutError and expired() is true", function()
    expires_around_sleep0(function() return a.timeout(0) end)
  end)

  it("timeout_at(a past time) around sleep(0) raises TimeoutError", function()
    expires_around_sleep0(function() return a.timeout_at(a.time() - 10) end)
  end)

  it("when() returns exactly the deadline given, past ones too", function()
    local at = a.time() + 0.123456789
    local t <close> = a.timeout_at(at)
    assert.are.equal(at, t:when())
    local past = a.time() - 1000.5
    t:reschedule(past)
    assert.are.equal(past, t:when())
    t:reschedule(nil)
    assert.is_nil(t:when())
    local before = a.time()
    local rel <close> = a.timeout(-3)
    assert.is_true(rel:when() <= a.time() - 3 and rel:when() >= before - 3)
    rel:reschedule(nil)
  end)

  it("rescheduling a past deadline to the future before it is handled wins", function()
    local tm
    do
      local t <close> = a.timeout(0)
      tm = t
      t:reschedule(a.time() + 10)
      a.sleep(0.01)
    end
    assert.is_false(tm:expired())
  end)

  it("wait_for(fn, 0) times out without starting fn", function()
    local started = false
    local ok, err = pcall(a.wait_for, function() started = true return 1 end, 0)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    a.sleep(0)
    assert.is_false(started)
  end)

  it("wait_for(done task, 0) returns its result", function()
    local t = a.create_task(function() return "v" end)
    a.sleep(0)
    assert.are.equal("v", a.wait_for(t, 0))
    assert.are.equal("v", a.wait_for(t, -1))
  end)

  it("wait_for(task, 0) returns the result of a task that ignores the cancel", function()
    local t = a.create_task(function() pcall(a.sleep, 10) return "kept" end)
    a.sleep(0)
    assert.are.equal("kept", a.wait_for(t, 0))
  end)

  it("uncancel() back to 0 withdraws a pending cancel", function()
    local me = a.current_task()
    me:cancel()
    assert.are.equal(0, me:uncancel())
    a.sleep(0) -- no CancelledError
    local t = a.create_task(function() return "ran" end)
    t:cancel()
    t:uncancel()
    assert.are.equal("ran", t:await())
  end)

  it("uncancel() above 0 keeps the pending cancel", function()
    local t = a.create_task(function()
      local me = a.current_task()
      me:cancel() me:cancel()
      assert(me:uncancel() == 1)
      a.sleep(0)
      return "not reached"
    end)
    helper.await_cancelled(t)
  end)

  it("call_later with negative delays keeps time order", function()
    local order = {}
    a.call_later(-1, function() order[#order + 1] = "-1" end)
    a.call_later(-2, function() order[#order + 1] = "-2" end)
    a.call_later(-1.5, function() order[#order + 1] = "-1.5" end)
    a.call_later(0, function() order[#order + 1] = "0" end)
    a.sleep(0.01)
    assert.are.same({"-2", "-1.5", "-1", "0"}, order)
  end)

  it("wait(FIRST_COMPLETED) returns every task done by the time it wakes", function()
    -- the three finish in one loop turn (an Event wakes them together;
    -- three sleeps would not, on a loaded machine: deadlines are read from
    -- the clock as each task starts)
    local go, ts = a.Event(), {}
    for i = 1, 3 do ts[i] = a.create_task(function() go:wait() return i end) end
    ts[4] = a.create_task(function() a.sleep(10) end)
    a.call_later(0.01, function() go:set() end)
    local done, pending = a.wait(ts, {return_when = "FIRST_COMPLETED"})
    assert.are.equal(3, #done)
    assert.are.same({ts[4]}, pending)
    ts[4]:cancel()
    pcall(ts[4].await, ts[4])
  end)
end)

describe("issue 10: nested TaskGroups", function()
  after_each(helper.no_leaks)

  it("both cancelled: cancelling() is 1 between the groups and 0 after (as asyncio)", function()
    local me = a.current_task()
    local function raise_after(msg) return function() a.sleep(0) error(msg, 0) end end
    local between
    local ok, err = pcall(function()
      local outer <close> = a.TaskGroup()
      local ok2, err2 = pcall(function()
        local inner <close> = a.TaskGroup()
        inner:create_task(raise_after("inner"))
        outer:create_task(raise_after("outer"))
      end)
      assert(not ok2 and err2.errors[1] == "inner")
      between = me:cancelling()
    end)
    assert.is_false(ok)
    assert.are.same({"outer"}, err.errors)
    assert.are.equal(1, between)
    assert.are.equal(0, me:cancelling())
    a.sleep(0) -- nothing left pending
  end)
end)
