local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()
local a = asyncio


-- n tasks that each wait on the condition and log their number when woken.
local function waiters(c, log, n)
  local ts = {}
  for i = 1, n do
    ts[i] = a.create_task(function()
      local _ <close> = c:acquire()
      c:wait()
      log.add(i)
    end)
  end
  return ts
end

describe("Condition", function()
  after_each(helper.no_leaks)

  it("wait releases the lock and holds it again when it returns", function()
    local c = a.Condition()
    local log = helper.log()
    local t = a.create_task(function()
      local _ <close> = c:acquire()
      log.add("wait")
      assert.is_true(c:wait())
      assert.is_true(c:locked())
      log.add("woken")
    end)
    a.sleep(0)
    assert.is_false(c:locked()) -- released by wait
    do
      local _ <close> = c:acquire()
      c:notify()
      log.add("notified")
    end
    t:await()
    assert.are.equal("wait notified woken", log.str())
  end)

  it("notify(n) wakes n waiters in order, notify_all the rest", function()
    local c = a.Condition()
    local log = helper.log()
    local ts = waiters(c, log, 4)
    a.sleep(0)
    do local _ <close> = c:acquire() c:notify(2) end
    a.sleep(0.001)
    assert.are.equal("1 2", log.str())
    do local _ <close> = c:acquire() c:notify_all() end
    a.gather(ts)
    assert.are.equal("1 2 3 4", log.str())
  end)

  it("wait_for(pred) loops until the predicate holds", function()
    local c = a.Condition()
    local value = 0
    local t = a.create_task(function()
      local _ <close> = c:acquire()
      return c:wait_for(function() return value >= 3 and value end)
    end)
    for _ = 1, 3 do
      a.sleep(0)
      local _ <close> = c:acquire()
      value = value + 1
      c:notify_all()
    end
    assert.are.equal(3, t:await())
  end)

  it("shares a given Lock and rejects anything else", function()
    local lock = a.Lock()
    local c = a.Condition(lock)
    c:acquire()
    assert.is_true(lock:locked())
    c:release()
    assert.is_false(lock:locked())
    assert.has_error(function() a.Condition({}) end,
      "bad argument #1 to 'Condition' (asyncio.Lock expected, got table)")
  end)

  it("wait and notify without the lock raise RuntimeError", function()
    local c = a.Condition()
    local ok, err = pcall(c.wait, c)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.RuntimeError))
    ok, err = pcall(c.notify, c)
    assert.is_true(a.is(err, a.RuntimeError))
  end)

  it("a cancelled waiter re-acquires the lock before raising", function()
    local c = a.Condition()
    local held
    local t = a.create_task(function()
      local _ <close> = c:acquire()
      local ok, err = pcall(c.wait, c)
      held = c:locked()
      error(err, 0)
    end)
    a.sleep(0)
    c:acquire() -- the waiter must wait for this to re-acquire
    t:cancel()
    a.sleep(0.001)
    assert.is_false(t:done())
    c:release()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.CancelledError))
    assert.is_true(held)
    assert.is_false(c:locked())
  end)

  it("a waiter cancelled after being notified passes the notification on", function()
    local c = a.Condition()
    local log = helper.log()
    local ts = waiters(c, log, 2)
    a.sleep(0)
    do local _ <close> = c:acquire() c:notify(1) end -- to waiter 1
    ts[1]:cancel()
    ts[2]:await()
    assert.are.equal("2", log.str())
    assert.is_true(ts[1]:cancelled())
  end)
  it("a waiter cancelled while re-acquiring the lock after notify passes the notification on", function()
    local c = a.Condition()
    local log = helper.log()
    local ts = waiters(c, log, 2)
    a.sleep(0)
    c:acquire()
    c:notify(1)   -- to waiter 1 ...
    a.sleep(0)    -- ... which now waits for the lock held here
    ts[1]:cancel() -- cancelled while re-acquiring
    a.sleep(0)
    c:release()
    -- waiter 2 must be woken by the notification waiter 1 could not use
    local ok = pcall(a.wait_for, ts[2], 1 * helper.slow)
    assert.is_true(ok, "the notification was lost")
    assert.are.equal("2", log.str())
    assert.is_true(ts[1]:cancelled())
    assert.is_false(c:locked())
  end)
end)
