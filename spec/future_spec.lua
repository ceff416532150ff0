-- asyncio.Future: awaited by tasks, accepted wherever the API takes a task
-- (gather, wait, wait_for, shield, as_completed), cancelled through the
-- tasks that await it, and refusing bad input.  CPython's own Future tests
-- are in spec/conformance/futures_spec.lua.
local helper = require "spec.helper"
local a = asyncio
local raises, fails_with = helper.raises, helper.fails_with

describe("asyncio.Future", function()
  after_each(helper.no_leaks)

  it("wakes every awaiting task with all its values, in await order", function()
    local f, order = a.Future(), {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = a.create_task(function()
        local x, y = f:await()
        order[#order + 1] = i
        return x + y + i
      end)
    end
    a.sleep(0)
    assert.are.same({}, order)
    f:set_result(10, 20)
    assert.are.same({31, 32, 33}, a.gather(tasks[1], tasks[2], tasks[3]))
    assert.are.same({1, 2, 3}, order)
    assert.are.same({10, 20}, {f:result()})
    assert.are.same({10, 20}, {f:await()}) -- done: no suspension
  end)

  it("carries many values to many waiters", function()
    local f, vals = a.Future(), {}
    for i = 1, 10000 do vals[i] = i end
    local waiters = {}
    for i = 1, 500 do waiters[i] = a.create_task(function() return select("#", f:await()) end) end
    a.sleep(0)
    f:set_result(table.unpack(vals))
    local counts = a.gather(waiters)
    assert.are.equal(500, #counts)
    for i = 1, 500 do assert.are.equal(10000, counts[i]) end
    assert.are.equal(10000, select(-1, f:result()))
  end)

  it("set_result(nil) and no values are results too", function()
    local f = a.Future()
    f:set_result()
    assert.is_true(f:done())
    assert.are.equal(0, select("#", f:result()))
    local g = a.Future()
    g:set_result(nil, false)
    assert.are.same({n = 2, nil, false}, table.pack(g:await()))
  end)

  it("raises the exact error value it was given", function()
    local f, err = a.Future(), {code = 7}
    a.call_soon(function() f:set_exception(err) end)
    local ok, got = pcall(f.await, f)
    assert.is_false(ok)
    assert.are.equal(err, got)
  end)

  it("cancelling a task that awaits it cancels it, with the message", function()
    local f = a.Future()
    local t = a.create_task(function() return f:await() end)
    a.sleep(0)
    t:cancel("stop")
    local err = helper.await_cancelled(t)
    assert.are.equal("stop", err.message)
    assert.is_true(f:cancelled())
    assert.are.equal("stop", raises(a.CancelledError, f.result, f).message)
  end)

  it("cancelling it wakes every waiter with CancelledError", function()
    local f = a.Future()
    local t1 = a.create_task(f.await, f)
    local t2 = a.create_task(f.await, f)
    a.sleep(0)
    assert.is_true(f:cancel("gone"))
    assert.are.equal("gone", helper.await_cancelled(t1).message)
    assert.are.equal("gone", helper.await_cancelled(t2).message)
  end)

  it("a waiter cancelled after the result arrived leaves the result", function()
    local f = a.Future()
    local t = a.create_task(f.await, f)
    a.sleep(0)
    f:set_result(5)
    t:cancel()
    helper.await_cancelled(t)
    assert.are.equal(5, f:result())
  end)

  it("gather takes futures and tasks and gives their first results", function()
    local f1, f2 = a.Future(), a.Future()
    a.call_later(0.02, function() f1:set_result("one", "ignored") end)
    a.call_later(0.01, function() f2:set_result("two") end)
    local r = a.gather(f1, function() return "fn" end, f2)
    assert.are.same({"one", "fn", "two"}, r)
    local g = a.Future()
    g:set_exception("bad")
    local res = a.gather{g, f1, return_exceptions = true}
    assert.are.same({"bad", "one"}, res)
  end)

  it("gather raises a future's error; cancelling gather cancels its futures", function()
    local bad = a.Future()
    a.call_soon(function() bad:set_exception("boom") end)
    local other = a.Future()
    fails_with("boom", a.gather, bad, other)
    other:cancel() -- gather does not cancel the others on a failure
    local f = a.Future()
    local t = a.create_task(a.gather, f)
    a.sleep(0.01)
    t:cancel()
    helper.await_cancelled(t)
    assert.is_true(f:cancelled())
  end)

  it("wait returns the futures themselves, in input order", function()
    local f1, f2, f3 = a.Future(), a.Future(), a.Future()
    a.call_later(0.01, function() f2:set_result(2) end)
    local done, pending = a.wait({f1, f2, f3}, {return_when = "FIRST_COMPLETED"})
    assert.are.same({f2}, done)
    assert.are.same({f1, f3}, pending)
    f1:set_result(1)
    f3:set_exception("x")
    done, pending = a.wait({f1, f2, f3})
    assert.are.same({f1, f2, f3}, done)
    assert.are.same({}, pending)
    f3:exception()
    done, pending = a.wait({a.Future()}, {timeout = 0.01})
    assert.are.equal(0, #done)
    pending[1]:cancel()
  end)

  it("wait_for: the result in time, or TimeoutError and the future cancelled", function()
    local f = a.Future()
    a.call_later(0.01, function() f:set_result("ok") end)
    assert.are.equal("ok", a.wait_for(f, 1))
    local slow = a.Future()
    local t0 = a.time()
    raises(a.TimeoutError, a.wait_for, slow, 0.03)
    assert.is_true(a.time() - t0 < 0.5 * helper.slow)
    assert.is_true(slow:cancelled())
  end)

  it("wait_for(fut, 0) and a gather cancelled at once cancel the future", function()
    local f = a.Future()
    raises(a.TimeoutError, a.wait_for, f, 0)
    assert.is_true(f:cancelled())
    local g = a.Future()
    local t = a.create_task(a.gather, g)
    a.sleep(0) -- gather has made its stand-in task, which has not run yet
    t:cancel("now")
    helper.await_cancelled(t)
    assert.is_true(g:cancelled())
    assert.are.equal("now", raises(a.CancelledError, g.result, g).message)
  end)

  it("shield: the outer wait is cancelled, the future is not", function()
    local f = a.Future()
    raises(a.TimeoutError, a.wait_for, a.shield(f), 0.02)
    assert.is_false(f:done())
    f:set_result(3)
    assert.are.equal(3, f:await())
  end)

  it("as_completed yields the futures in the order they finish", function()
    local f1, f2 = a.Future(), a.Future()
    a.call_later(0.02, function() f1:set_result(1) end)
    a.call_later(0.01, function() f2:set_result(2) end)
    local seen = {}
    for fut in a.as_completed({f1, f2}) do seen[#seen + 1] = fut:await() end
    assert.are.same({2, 1}, seen)
  end)

  it("loop:run_until_complete(fut) runs until the future is settled", function()
    local out, err, status = helper.run_script([[
      local loop = asyncio.get_event_loop()
      local f = loop:create_future()
      loop:call_later(0.02, function() f:set_result("settled", 2) end)
      print(loop:run_until_complete(f))
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("settled\t2\n", out)
    local f = a.Future()
    a.call_soon(function() f:set_result(1) end)
    assert.are.equal(1, a.get_event_loop():run_until_complete(f))
  end)

  it("a done callback that fails is reported and the others still run", function()
    local out, err, status = helper.run_script([[
      local f = asyncio.Future()
      f:add_done_callback(function() error("cb failed") end)
      f:add_done_callback(function(fut) print("second saw", fut:result()) end)
      f:set_result(9)
      asyncio.sleep(0) asyncio.sleep(0)
    ]])
    assert.are.equal(0, status)
    assert.are.equal("second saw\t9\n", out)
    assert.matches("Exception in callback: .*cb failed", err)
  end)

  it("a future nobody settles and nobody awaits is collected", function()
    local weak = setmetatable({}, {__mode = "v"})
    weak[1] = a.Future()
    weak[1]:add_done_callback(function() end)
    collectgarbage() collectgarbage()
    assert.is_nil(weak[1])
  end)

  it("the bridge example wraps a callback API", function()
    local out, err, status = helper.sh(helper.cmd .. " examples/future_bridge.lua")
    assert.are.equal(0, status, err)
    assert.matches("one:\tLUA\t0.15", out)
    assert.matches("three at once: ASYNCIO FUTURE BRIDGE", out)
    assert.matches("an error from the callback:\tfalse\tempty name", out)
    assert.matches("aborted\ntoo slow:\tfalse\tTimeoutError", out)
  end)

  describe("hostile input", function()
    it("refuses values that are not futures, naming the method", function()
      local f = a.Future()
      fails_with("bad argument #1 to 'set_result' %(asyncio.Future expected, got table",
                 function() f.set_result({}, 1) end)
      fails_with("'await' %(asyncio.Future expected, got asyncio.Task",
                 function() f.await(a.create_task(function() end)) end)
      fails_with("'done' %(asyncio.Future expected, got no value", function() f.done() end)
      a.sleep(0)
    end)

    it("set_exception needs an error value", function()
      local f = a.Future()
      fails_with("'set_exception' %(error value expected, got no value",
                 function() f:set_exception() end)
      fails_with("'set_exception' %(error value expected, got nil",
                 function() f:set_exception(nil) end)
      assert.is_false(f:done())
    end)

    it("add_done_callback needs a callable", function()
      local f = a.Future()
      fails_with("bad argument #1 to 'add_done_callback' %(function expected, got number",
                 function() f:add_done_callback(5) end)
      assert.are.equal(0, f:remove_done_callback(5))
    end)

    it("double settlement raises InvalidStateError and keeps the first", function()
      local f = a.Future()
      f:set_result("a\0b")
      local e = raises(a.InvalidStateError, f.set_result, f, "c")
      assert.matches("set_result%(%): invalid state", tostring(e))
      raises(a.InvalidStateError, f.set_exception, f, "d")
      assert.are.equal("a\0b", f:result())
    end)

    it("await outside a task says so", function()
      local out, err, status = helper.run_script([[
        local f = asyncio.Future()
        asyncio.call_soon(function()
          local ok, e = pcall(f.await, f)
          print(e)
        end)
        asyncio.sleep(0.01)
      ]])
      assert.are.equal(0, status, err)
      assert.matches("await%(%) called from a callback", out)
    end)

    it("a task awaiting a future nobody settles fails instead of hanging", function()
      local _, err, status = helper.run_script("asyncio.Future():await()")
      assert.are.equal(1, status)
      assert.matches("waits for something that can never happen", err)
    end)
  end)
end)
