local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()
local a = asyncio

describe("Event", function()
  after_each(helper.no_leaks)

  it("set releases many waiters at once", function()
    local ev = a.Event()
    local n = 0
    local ts = {}
    for i = 1, 50 do ts[i] = a.create_task(function() assert.is_true(ev:wait()) n = n + 1 end) end
    a.sleep(0.001)
    assert.are.equal(0, n)
    assert.is_false(ev:is_set())
    ev:set()
    a.gather(ts)
    assert.are.equal(50, n)
  end)

  it("wait returns at once when set; clear resets", function()
    local ev = a.Event()
    ev:set()
    assert.is_true(ev:wait())
    assert.is_true(ev:is_set())
    ev:clear()
    assert.is_false(ev:is_set())
    local ok, err = pcall(a.wait_for, function() ev:wait() end, 0.01)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.TimeoutError))
    assert.matches("<Event unset>", tostring(ev))
  end)

  it("a waiter cancelled while woken does not disturb the others", function()
    local ev = a.Event()
    local t1 = a.create_task(function() return ev:wait() end)
    local t2 = a.create_task(function() return ev:wait() end)
    a.sleep(0)
    ev:set()
    t1:cancel()
    assert.is_true(t2:await())
    assert.is_true(t1:cancelled())
  end)
end)
