local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()

describe("gather", function()
  after_each(helper.no_leaks)

  it("returns each one's first result in argument order, not finish order", function()
    local function after(d, v) return function() asyncio.sleep(d) return v, "second" end end
    local r = asyncio.gather(after(0.03, "a"), after(0.01, "b"), after(0.02, "c"))
    assert.are.same({"a", "b", "c"}, r)
  end)

  it("raises the failure of the first child, in argument order, that already failed, without waiting for the rest", function()
    local a = asyncio.create_task(function() error("A", 0) end)
    local b = asyncio.create_task(function() error("B", 0) end)
    local ok_child = asyncio.create_task(function() return "ok" end)
    asyncio.sleep(0) -- a, then b, fail; ok_child finishes
    local p = asyncio.create_task(function() asyncio.sleep(10) end)
    local t0 = asyncio.time()
    local ok, err = pcall(asyncio.gather, ok_child, p, b, a)
    assert.are.same({false, "B"}, {ok, err})
    ok, err = pcall(asyncio.gather, {a, ok_child, b})
    assert.are.same({false, "A"}, {ok, err})
    assert.is_true(asyncio.time() - t0 < 1 * helper.slow, "did not wait for p")
    assert.is_false(p:done())
    p:cancel()
    local r = asyncio.gather{ok_child, b, a, return_exceptions = true}
    assert.are.same({"ok", "B", "A"}, r)
  end)

  it("runs its children concurrently", function()
    local t0, b0 = asyncio.time(), helper.blocked_clock()
    asyncio.gather(function() asyncio.sleep(0.1) end, function() asyncio.sleep(0.1) end,
                   function() asyncio.sleep(0.1) end)
    local dt, blocked = asyncio.time() - t0, helper.blocked_clock() - b0
    -- on the virtual clock dt is 0.1 to the nanosecond; subtracting two
    -- large times in floating point may leave it 1e-12 short
    assert.is_true(dt >= 0.1 - 1e-9, "took " .. dt)
    -- one sleep's time of waiting, not three (a loaded machine stretches
    -- the wall time, not this: helper.blocked_clock)
    assert.is_true(blocked < 0.2 * helper.slow, ("blocked %.3f of %.3f"):format(blocked, dt))
  end)

  it("builds one list of n slots, not two: the results take the children's places", function()
    local n = 2000
    local tasks = {}
    for i = 1, n do tasks[i] = asyncio.create_task(function() return i end) end
    asyncio.sleep(0) -- all of them end
    local function gathered(list)
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      local r = asyncio.gather(list)
      local used = (collectgarbage("count") - before) * 1024
      collectgarbage("restart")
      return r, used
    end
    local r, used = gathered(tasks)
    for i = 1, n do assert.are.equal(i, r[i]) end
    assert.are.equal(n, #r)
    -- one array of n values is 16 n bytes; two (the children, then a
    -- results table) were 32 n
    assert.is_true(used < 24 * n, used)
    -- the results may have holes where a task returned nothing
    local holes = {}
    for i = 1, 3 do
      holes[i] = asyncio.create_task(function() if i ~= 2 then return i end end)
    end
    assert.are.same({1, nil, 3}, asyncio.gather(holes))
    assert.are.same({1, nil, 3}, asyncio.gather(holes[1], holes[2], holes[3]))
    -- the list given is left as it was
    assert.are.equal(tasks[1], tasks[1]:done() and tasks[1])
    assert.are.equal(n, #tasks)
  end)

  it("takes tasks and functions, varargs or a table", function()
    local t = asyncio.create_task(function() return 1 end)
    assert.are.same({1, 2}, asyncio.gather(t, function() return 2 end))
    assert.are.same({1, 3}, asyncio.gather{t, function() return 3 end})
    assert.are.same({}, asyncio.gather())
    assert.are.same({}, asyncio.gather{})
  end)

  it("keeps nil results in place", function()
    local r = asyncio.gather(function() return nil end, function() return 2 end)
    assert.is_nil(r[1])
    assert.are.equal(2, r[2])
  end)

  it("re-raises the first error; the others keep running", function()
    local finished = false
    local slow = asyncio.create_task(function() asyncio.sleep(0.05) finished = true end)
    local ok, err = pcall(asyncio.gather, slow, function() asyncio.sleep(0.01) error("bad", 0) end)
    assert.is_false(ok)
    assert.are.equal("bad", err)
    assert.is_false(slow:done())
    slow:await()
    assert.is_true(finished)
  end)

  it("places errors in the list with return_exceptions", function()
    local r = asyncio.gather{
      function() return "ok" end,
      function() error("e1", 0) end,
      function() asyncio.sleep(0.01) return "late" end,
      return_exceptions = true,
    }
    assert.are.equal("late", r[3])
    assert.are.equal("ok", r[1])
    assert.are.equal("e1", r[2])
  end)

  it("raises a child's CancelledError when that child is cancelled", function()
    local child = asyncio.create_task(function() asyncio.sleep(10) end)
    asyncio.call_later(0.01, function() child:cancel() end)
    local ok, err = pcall(asyncio.gather, child)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.CancelledError))
  end)

  it("returns a cancelled child's error in place with return_exceptions", function()
    local child = asyncio.create_task(function() asyncio.sleep(10) end)
    asyncio.call_later(0.01, function() child:cancel() end)
    local r = asyncio.gather{child, function() return 5 end, return_exceptions = true}
    assert.is_true(asyncio.is(r[1], asyncio.CancelledError))
    assert.are.equal(5, r[2])
  end)

  it("cancelling the gathering task cancels every child", function()
    local a = asyncio.create_task(function() asyncio.sleep(10) end)
    local b = asyncio.create_task(function() asyncio.sleep(10) end)
    local g = asyncio.create_task(function() return asyncio.gather(a, b) end)
    asyncio.sleep(0)
    asyncio.sleep(0)
    g:cancel()
    local ok, err = pcall(g.await, g)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.CancelledError))
    assert.is_true(a:cancelled())
    assert.is_true(b:cancelled())
  end)

  it("gathers many tasks", function()
    local n = 10000
    local tasks = {}
    for i = 1, n do tasks[i] = asyncio.create_task(function() asyncio.sleep(0) return i end) end
    local r = asyncio.gather(tasks)
    local sum = 0
    for i = 1, n do sum = sum + r[i] end
    assert.are.equal(n * (n + 1) // 2, sum)
  end)

  it("rejects what is neither a task nor a function", function()
    local ok, err = pcall(asyncio.gather, 1)
    assert.is_false(ok)
    assert.matches("bad argument #1 to '[%w.]*gather' %(task or function expected, got number%)", err)
    local ok2, err2 = pcall(asyncio.gather, {function() end, "x"})
    assert.is_false(ok2)
    assert.matches("item 2: task or function expected, got string", err2)
  end)

  it("a refused argument after pending children leaves them unwatched, and a later gather takes them", function()
    local ev = asyncio.Event()
    local done = asyncio.create_task(function() return "early" end)
    asyncio.sleep(0)
    local a = asyncio.create_task(function() ev:wait() return "a" end)
    local b = asyncio.create_task(function() ev:wait() return "b" end)
    for _ = 1, 50 do -- half-made gather records are garbage, not listeners
      assert.is_false(pcall(asyncio.gather, done, a, b, 42))
      assert.is_false(pcall(asyncio.gather, {a, done, b, "x"}))
    end
    collectgarbage()
    ev:set()
    asyncio.sleep(0) -- a and b end: nothing may be told of it but their awaiters
    local c = asyncio.create_task(function() asyncio.sleep(0) return "c" end)
    -- done before, pending, done, pending: each child in its own slot
    assert.are.same({"early", "c", "a", "b"}, asyncio.gather(done, c, a, b))
    local d = asyncio.create_task(function() asyncio.sleep(0) return "d" end)
    assert.are.same({"a", "d", "early"}, asyncio.gather{a, d, done})
  end)
end)
