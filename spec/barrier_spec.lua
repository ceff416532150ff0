local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()
local a = asyncio

describe("Barrier", function()
  after_each(helper.no_leaks)

  it("releases the parties together; wait returns distinct arrival indexes", function()
    local b = a.Barrier(3)
    assert.are.equal(3, b.parties)
    local log = helper.log()
    local ts = {}
    local function party(i)
      return function()
        log.add("in" .. i)
        local idx = b:wait()
        log.add("out")
        return idx
      end
    end
    ts[1] = a.create_task(party(1))
    ts[2] = a.create_task(party(2))
    for _ = 1, 5 do a.sleep(0) end
    assert.are.equal(2, b.n_waiting)
    assert.is_false(ts[1]:done())
    ts[3] = a.create_task(party(3))
    local r = a.gather(ts)
    assert.are.same({0, 1, 2}, r)
    assert.are.equal("in1 in2 in3 out out out", log.str())
    assert.are.equal(0, b.n_waiting)
    assert.is_false(b.broken)
  end)

  it("is reusable across rounds", function()
    local b = a.Barrier(2)
    local function party()
      local s = 0
      for _ = 1, 3 do s = s + b:wait() end
      return s
    end
    local r = a.gather(party, party)
    assert.are.equal(3, r[1] + r[2]) -- each round gives 0 and 1
  end)

  it("abort breaks the barrier for waiters and newcomers", function()
    local b = a.Barrier(3)
    local t = a.create_task(function() return b:wait() end)
    a.sleep(0)
    b:abort()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.BrokenBarrierError))
    assert.is_true(b.broken)
    ok, err = pcall(b.wait, b)
    assert.is_true(a.is(err, a.BrokenBarrierError))
    b:reset()
    assert.is_false(b.broken)
  end)

  it("reset breaks the current round's waiters", function()
    local b = a.Barrier(2)
    local t = a.create_task(function() return b:wait() end)
    a.sleep(0)
    b:reset()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.BrokenBarrierError))
    assert.is_false(b.broken)
    local r = a.gather(function() return b:wait() end, function() return b:wait() end)
    assert.are.equal(1, r[1] + r[2])
  end)

  it("a cancelled waiter leaves the count consistent", function()
    local b = a.Barrier(2)
    local t = a.create_task(function() return b:wait() end)
    a.sleep(0)
    assert.are.equal(1, b.n_waiting)
    t:cancel()
    a.sleep(0.001)
    assert.is_true(t:cancelled())
    assert.are.equal(0, b.n_waiting)
    assert.has_error(function() a.Barrier(0) end,
      "bad argument #1 to 'Barrier' (parties must be >= 1)")
  end)
end)
