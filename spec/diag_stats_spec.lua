-- Per-task statistics (issue 13, point 6, tokio-console's): created at,
-- steps and wakes, busy time, time scheduled but not running, last wake.
local helper = require "spec.helper"

local function busy(secs)
  local t0 = asyncio.time()
  while asyncio.time() - t0 < secs do end
end

describe("task:stats()", function()
  after_each(helper.no_leaks)

  it("counts steps and wakes, and splits the task's life into busy, scheduled and idle", function()
    local before = asyncio.time()
    local line = debug.getinfo(1, "l").currentline + 1
    local t = asyncio.create_task(function()
      for _ = 1, 3 do asyncio.sleep(0.02) end -- 3 wakes, idle ~0.06 s
      busy(0.05)                              -- busy >= 0.05 s
    end)
    t:await()
    local s = t:stats()
    assert.are.equal(4, s.steps)
    assert.are.equal(3, s.wakes)
    assert.is_true(s.created >= before and s.created <= s.last_wake, "created")
    assert.is_true(s.last_wake <= s.ended and s.ended <= asyncio.time(), "ended")
    assert.matches(":" .. line .. "$", s.created_at)
    assert.is_true(s.busy >= 0.05 and s.busy < 0.05 + 1 * helper.slow, "busy " .. s.busy)
    assert.is_true(s.idle >= 0.055, "idle " .. s.idle)
    assert.is_true(s.scheduled >= 0 and s.scheduled < s.busy, "scheduled " .. s.scheduled)
    local life = s.ended - s.created
    assert.is_true(math.abs(life - (s.busy + s.scheduled + s.idle)) < 1e-6)
  end)

  it("measures time spent ready but waiting for the loop", function()
    -- the hog runs first in the turn and keeps the loop for 0.1 s while
    -- the other task is already ready
    local hog = asyncio.create_task(function() busy(0.1) end)
    local waiter = asyncio.create_task(function() end)
    waiter:await()
    hog:await()
    local s = waiter:stats()
    assert.are.equal(1, s.steps)
    assert.are.equal(0, s.wakes)
    assert.is_nil(s.last_wake)
    assert.is_true(s.scheduled >= 0.1, "scheduled " .. s.scheduled)
    assert.is_true(hog:stats().busy >= 0.1)
  end)

  it("a pending task's figures grow; a cancelled task ends too", function()
    local t = asyncio.create_task(function() asyncio.sleep(10) end)
    asyncio.sleep(0.01)
    local s = t:stats()
    assert.are.equal(1, s.steps)
    assert.is_nil(s.ended)
    assert.is_true(s.idle > 0)
    t:cancel()
    pcall(t.await, t)
    s = t:stats()
    assert.are.equal(2, s.steps)
    assert.is_number(s.ended)
  end)

  -- The creation site is looked for above the C function that spawns
  -- (create_task, gather), through any C frames between it and the user.
  it("names the user's line when the task is made through pcall or gather", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, t = pcall(asyncio.create_task, function() return 1 end)
    assert.is_true(ok)
    t:await()
    assert.matches(":" .. line .. "$", t:stats().created_at)
    local made
    local gline = debug.getinfo(1, "l").currentline + 1
    asyncio.gather(function() made = asyncio.current_task() end)
    assert.matches(":" .. gline .. "$", made:stats().created_at)
    -- made from a coroutine inside the task: still the user's line
    local cline
    local co = coroutine.wrap(function()
      cline = debug.getinfo(1, "l").currentline + 1
      return asyncio.create_task(function() end)
    end)
    local ct = co()
    ct:await()
    assert.matches(":" .. cline .. "$", ct:stats().created_at)
  end)

  it("a task given a huge number of arguments gets them all", function()
    local args = {}
    for i = 1, 100000 do args[i] = i end
    local t = asyncio.create_task(function(...)
      return select("#", ...), (select(100000, ...))
    end, table.unpack(args))
    local n, last = t:await()
    assert.are.equal(100000, n)
    assert.are.equal(100000, last)
    assert.are.equal(1, t:stats().steps)
  end)

  it("ended appears only once the task is done, after its last step", function()
    local t = asyncio.create_task(function() asyncio.sleep(0) end)
    assert.is_nil(t:stats().ended)
    asyncio.sleep(0)
    local s = t:stats()
    assert.is_nil(s.ended) -- woken by sleep(0), not yet run again
    assert.are.equal(1, s.wakes)
    t:await()
    s = t:stats()
    assert.is_number(s.ended)
    assert.is_true(s.ended >= s.last_wake and s.ended >= s.created)
    assert.are.equal(2, s.steps)
  end)

  -- A step may start where the previous one ended (the clock is read once
  -- for both) only when nothing else ran between them.
  it("a step's busy time leaves out a callback run just before it", function()
    local a = asyncio.create_task(function() asyncio.sleep(0) end)
    -- 0.25 s: far above what a preempted empty step may take on a loaded
    -- machine (0.05 s was within reach)
    asyncio.call_soon(busy, 0.25)
    local b = asyncio.create_task(function() end)
    b:await()
    a:await()
    assert.is_true(b:stats().busy < 0.25, "busy " .. b:stats().busy)
    assert.is_true(b:stats().scheduled >= 0.25, "scheduled " .. b:stats().scheduled)
    assert.is_true(a:stats().busy < 0.25, "busy " .. a:stats().busy)
  end)

  it("refuses what is not a task", function()
    local t = asyncio.current_task()
    helper.fails_with("asyncio.Task expected", t.stats, {})
    helper.fails_with("asyncio.Task expected", t.stats)
  end)
  it("stamps a task that wakes itself (sleep(0)) at the end of its own step", function()
    local t = asyncio.create_task(function()
      busy(0.02)
      local before = asyncio.time()
      asyncio.sleep(0)
      return before, asyncio.time()
    end)
    local before, after = t:await()
    local s = t:stats()
    assert.are.equal(2, s.steps)
    assert.are.equal(1, s.wakes)
    assert.is_number(s.last_wake)
    assert.is_true(s.last_wake >= before and s.last_wake <= after,
      ("last_wake %.9f outside [%.9f, %.9f]"):format(s.last_wake, before, after))
    -- ready from the end of its first step: that step is busy time only
    assert.is_true(s.busy >= 0.02, "busy " .. s.busy)
    assert.is_true(s.scheduled >= 0 and s.scheduled < s.busy, "scheduled " .. s.scheduled)
    local life = s.ended - s.created
    assert.is_true(math.abs(life - (s.busy + s.scheduled + s.idle)) < 1e-6)
    -- and again: a later self-wake moves last_wake on
    local t2 = asyncio.create_task(function()
      asyncio.sleep(0)
      local mid = t2 and asyncio.time()
      asyncio.sleep(0)
      return mid
    end)
    t2:await()
    local s2 = t2:stats()
    assert.are.equal(2, s2.wakes)
    assert.are.equal(3, s2.steps)
    assert.is_true(s2.last_wake > s2.created and s2.last_wake <= s2.ended)
  end)
end)
