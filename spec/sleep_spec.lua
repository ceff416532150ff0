local helper = require "spec.helper"

describe("sleep", function()
  after_each(helper.no_leaks)

  it("waits at least the delay, not much more", function()
    for _, d in ipairs{0.01, 0.05, 0.12} do
      local t0, b0 = asyncio.time(), helper.blocked_clock()
      asyncio.sleep(d)
      local dt, blocked = asyncio.time() - t0, helper.blocked_clock() - b0
      assert.is_true(dt >= d, ("slept %.4f for %.4f"):format(dt, d))
      -- "not much more" of its own: a loaded machine's wait for a CPU
      -- after the timer fired is not the sleep's (blocked_clock)
      assert.is_true(blocked < d + 0.05 * helper.slow, ("blocked %.4f (of %.4f) for %.4f"):format(blocked, dt, d))
    end
  end)

  it("returns the value it is given", function()
    assert.are.equal("v", asyncio.sleep(0.001, "v"))
    assert.are.equal(42, asyncio.sleep(0, 42))
    assert.are.equal(0, select("#", asyncio.sleep(0)))
    -- a nil result is no result; false is one; what follows it is not
    assert.are.equal(0, select("#", asyncio.sleep(0, nil)))
    assert.are.equal(0, select("#", asyncio.sleep(0.001, nil)))
    assert.are.same({false}, {asyncio.sleep(0, false)})
    assert.are.same({"a"}, {asyncio.sleep(0, "a", "b")})
    assert.are.same({"a"}, {asyncio.sleep(0.001, "a", "b", "c")})
    local t = {}
    assert.are.equal(t, asyncio.sleep(0, t))
    -- cancelled, a sleep with a result raises all the same
    local task = asyncio.create_task(function() return asyncio.sleep(10, "never") end)
    asyncio.sleep(0)
    task:cancel()
    local ok, err = pcall(task.await, task)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.CancelledError))
  end)

  it("sleep(0) yields exactly one loop turn, first come first served", function()
    local log = helper.log()
    local function worker(name)
      return function()
        for i = 1, 3 do log.add(name .. i); asyncio.sleep(0) end
      end
    end
    asyncio.gather(worker("a"), worker("b"))
    assert.are.equal("a1 b1 a2 b2 a3 b3", log.str())
  end)

  it("wakes equal deadlines in the order they were set", function()
    local log = helper.log()
    local tasks = {}
    for i = 1, 5 do
      tasks[i] = asyncio.create_task(function() asyncio.sleep(0.02) log.add(i) end)
    end
    asyncio.gather(tasks)
    assert.are.equal("1 2 3 4 5", log.str())
  end)

  it("wakes in deadline order", function()
    -- deadlines from one start time: the children's first steps run one
    -- after the other, over 10 ms apart under valgrind, and a plain
    -- sleep(0.02) begun that late ended after a sleep(0.03) begun first
    local log = helper.log()
    local t0 = asyncio.time()
    local function at(t, name)
      return function() asyncio.sleep(t0 + t - asyncio.time()) log.add(name) end
    end
    asyncio.gather(at(0.03, "c"), at(0.01, "a"), at(0.02, "b"))
    assert.are.equal("a b c", log.str())
  end)

  it("treats a negative delay as zero", function()
    local t0 = asyncio.time()
    asyncio.sleep(-5)
    assert.is_true(asyncio.time() - t0 < 0.05 * helper.slow)
  end)

  it("rejects bad delays with a clear message", function()
    local ok, err = pcall(asyncio.sleep, "soon")
    assert.is_false(ok)
    assert.matches("bad argument #1 to '[%w.]*sleep' %(number expected, got string%)", err)
    ok, err = pcall(asyncio.sleep, 0 / 0)
    assert.is_false(ok)
    assert.matches("delay is NaN", err)
    ok, err = pcall(asyncio.sleep)
    assert.is_false(ok)
    assert.matches("number expected, got no value", err)
  end)

  it("lets thousands of tasks sleep on one timer without drift", function()
    local n, woke = 2000, 0
    local tasks = {}
    local t0, b0 = asyncio.time(), helper.blocked_clock()
    for i = 1, n do
      tasks[i] = asyncio.create_task(function() asyncio.sleep(0.05) woke = woke + 1 end)
    end
    asyncio.gather(tasks)
    assert.are.equal(n, woke)
    -- the waiting adds up to about one sleep (the wall time, with 2000
    -- tasks' steps in it, a loaded machine took past 0.5 s)
    local blocked = helper.blocked_clock() - b0
    assert.is_true(blocked < 0.5 * helper.slow, ("blocked %.3f of %.3f s"):format(blocked, asyncio.time() - t0))
  end)
end)
