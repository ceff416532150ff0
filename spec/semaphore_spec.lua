local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()
local a = asyncio

describe("Semaphore", function()
  after_each(helper.no_leaks)

  it("bounds in-flight work", function()
    local sem = a.Semaphore(3)
    local inflight, peak = 0, 0
    local ts = {}
    for i = 1, 12 do
      ts[i] = a.create_task(function()
        local _ <close> = sem:acquire()
        inflight = inflight + 1
        if inflight > peak then peak = inflight end
        a.sleep(0.001)
        inflight = inflight - 1
        return i
      end)
    end
    local r = a.gather(ts)
    assert.are.equal(3, peak)
    assert.are.equal(12, #r)
    assert.is_false(sem:locked())
  end)

  it("locked() and release beyond the initial value (unbounded)", function()
    local sem = a.Semaphore(1)
    assert.is_false(sem:locked())
    sem:acquire()
    assert.is_true(sem:locked())
    sem:release()
    sem:release() -- a plain Semaphore may grow
    sem:acquire() sem:acquire()
    assert.is_true(sem:locked())
    assert.matches("Semaphore value=0", tostring(sem))
  end)

  it("BoundedSemaphore raises ValueError on over-release", function()
    local sem = a.BoundedSemaphore(2)
    sem:acquire()
    sem:release()
    local ok, err = pcall(sem.release, sem)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.ValueError))
  end)

  it("rejects a negative value", function()
    assert.has_error(function() a.Semaphore(-1) end,
      "bad argument #1 to 'Semaphore' (initial value must be >= 0)")
  end)

  it("FIFO; a waiter cancelled after being given the permit passes it on", function()
    local sem = a.Semaphore(0)
    local log = helper.log()
    local w = {}
    for i = 1, 3 do
      w[i] = a.create_task(function() sem:acquire() log.add(i) end)
    end
    a.sleep(0)
    sem:release() -- to w1
    w[1]:cancel()
    sem:release() -- to w3 (w2 has the first)
    w[2]:await() w[3]:await()
    assert.are.equal("2 3", log.str())
    assert.is_true(w[1]:cancelled())
    assert.is_true(sem:locked())
    sem:release()
    assert.is_false(sem:locked())
  end)

  it("a cancelled waiter never takes a permit", function()
    local sem = a.Semaphore(0)
    local w = a.create_task(function() sem:acquire() end)
    a.sleep(0)
    w:cancel()
    a.sleep(0)
    sem:release()
    assert.is_false(sem:locked())
    sem:acquire()
  end)
  it("a woken waiter that has not run holds its permit; newcomers queue behind it", function()
    local sem = a.Semaphore(0)
    local log = helper.log()
    local w1 = a.create_task(function() sem:acquire() log.add("w1") end)
    a.sleep(0)
    sem:release() -- w1 is woken with the permit
    sem:release() -- a free permit, but w1 has not run: FIFO holds
    assert.is_true(sem:locked())
    assert.matches("value=1 waiters=1", tostring(sem))
    local w2 = a.create_task(function() sem:acquire() log.add("w2") end)
    do
      local _ <close> = sem:acquire() -- queues behind w1 though a permit is free
      log.add("main")
    end
    w1:await() w2:await()
    assert.are.equal("w1 main w2", log.str())
    assert.is_true(sem:locked()) -- w1 and w2 kept theirs
  end)

  it("release() beyond math.maxinteger raises ValueError, the counter unchanged", function()
    local sem = a.Semaphore(math.maxinteger)
    local ok, err = pcall(sem.release, sem)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.ValueError))
    assert.matches("released too many times", tostring(err))
    assert.matches("value=" .. math.maxinteger, tostring(sem))
    sem:acquire()
    sem:release()
  end)
end)
