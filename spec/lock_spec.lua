local helper = require "spec.helper"
-- each test in a task of its own, with a leak check and a time limit; on
-- the real clock: a test holds the loop past a deadline (docs/testing.md)
require("asyncio.testing").busted{clock = "real"}
local a = asyncio

describe("Lock", function()
  after_each(helper.no_leaks)

  it("acquire returns a guard that releases on scope exit, also on error", function()
    local lock = a.Lock()
    do
      local g <close> = lock:acquire()
      assert.are.equal(lock, g)
      assert.is_true(lock:locked())
    end
    assert.is_false(lock:locked())
    local ok = pcall(function()
      local _ <close> = lock:acquire()
      error("inside")
    end)
    assert.is_false(ok)
    assert.is_false(lock:locked())
  end)

  it("releasing an unlocked lock raises RuntimeError", function()
    local lock = a.Lock()
    local ok, err = pcall(lock.release, lock)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.RuntimeError))
    assert.matches("not acquired", tostring(err))
  end)

  it("serves waiters first come, first served, and excludes", function()
    local lock = a.Lock()
    local log = helper.log()
    local inside = 0
    local ts = {}
    for i = 1, 5 do
      ts[i] = a.create_task(function()
        local _ <close> = lock:acquire()
        inside = inside + 1
        assert.are.equal(1, inside)
        log.add(i)
        a.sleep(0)
        inside = inside - 1
      end)
    end
    a.gather(ts)
    assert.are.equal("1 2 3 4 5", log.str())
    assert.is_false(lock:locked())
  end)

  it("a waiter cancelled while waiting does not get the lock", function()
    local lock = a.Lock()
    lock:acquire()
    local w1 = a.create_task(function() lock:acquire() return "w1" end)
    local w2 = a.create_task(function() local _ <close> = lock:acquire() return "w2" end)
    a.sleep(0)
    w1:cancel()
    a.sleep(0)
    lock:release()
    assert.are.equal("w2", w2:await())
    assert.is_true(w1:cancelled())
    assert.is_false(lock:locked())
  end)

  it("a waiter cancelled after being handed the lock passes it on", function()
    local lock = a.Lock()
    lock:acquire()
    local w1 = a.create_task(function() lock:acquire() return "w1" end)
    local w2 = a.create_task(function() local _ <close> = lock:acquire() return "w2" end)
    a.sleep(0)
    lock:release() -- hands it to w1 ...
    w1:cancel()    -- ... which is cancelled before it runs
    assert.are.equal("w2", w2:await())
    assert.is_true(w1:cancelled())
    assert.is_false(lock:locked())
  end)

  it("a timeout at the same loop turn as the hand-off passes the lock on", function()
    local lock = a.Lock()
    lock:acquire()
    local T = a.time() + 0.02 * helper.slow
    local w1 = a.create_task(function()
      local _ <close> = a.timeout_at(T)
      lock:acquire()
      return "w1"
    end)
    local w2 = a.create_task(function() local _ <close> = lock:acquire() return "w2" end)
    a.sleep(0)
    while a.time() < T + 0.002 do end
    lock:release()
    local ok, err = pcall(w1.await, w1)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.are.equal("w2", w2:await())
    assert.is_false(lock:locked())
  end)

  it("wait_for on acquire times out cleanly", function()
    local lock = a.Lock()
    lock:acquire()
    local ok, err = pcall(a.wait_for, function() lock:acquire() end, 0.01)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.is_false(ok)
    lock:release()
    assert.is_false(lock:locked())
  end)

  it("rejects a wrong self", function()
    local lock = a.Lock()
    assert.has_error(function() lock.acquire({}) end,
      "bad argument #1 to 'acquire' (asyncio.Lock or asyncio.Semaphore expected, got table)")
    -- the check reads a tag in the C record: any other value, full userdata
    -- of other types (an Event, a Queue, a file) included, is refused first
    for _, v in ipairs{a.Event(), a.Queue(1), io.stdout, coroutine.create(print),
                       "lock", 1, false} do
      for _, m in ipairs{"acquire", "release", "locked"} do
        local ok, err = pcall(lock[m], v)
        assert.is_false(ok)
        assert.matches("bad argument #1 to '%?' %(asyncio.Lock or " ..
          "asyncio.Semaphore expected, got ", err)
      end
    end
    assert.has_error(function() lock.release() end,
      "bad argument #1 to 'release' (asyncio.Lock or asyncio.Semaphore expected, got no value)")
    -- the methods are shared: a Lock's serve a Semaphore, by its own rules
    local sem = a.Semaphore(2)
    lock.acquire(sem)
    assert.is_false(lock.locked(sem))
    lock.release(sem)
    assert.matches("<Semaphore value=2 waiters=0>", tostring(sem))
    assert.is_false(lock:locked())
  end)
  it("release() unlocks at once (3.13); the woken waiter locks when it runs, newcomers queue behind it", function()
    local lock = a.Lock()
    local log = helper.log()
    lock:acquire()
    local w1 = a.create_task(function() local _ <close> = lock:acquire() log.add("w1") end)
    a.sleep(0)
    lock:release()
    assert.is_false(lock:locked())  -- not handed over: unlocked until w1 runs
    assert.matches("<Lock unlocked waiters=1>", tostring(lock))
    local w2 = a.create_task(function() local _ <close> = lock:acquire() log.add("w2") end)
    do
      local _ <close> = lock:acquire() -- may not overtake w1
      log.add("main")
    end
    w1:await() w2:await()
    assert.are.equal("w1 main w2", log.str())
    assert.is_false(lock:locked())
  end)
end)
