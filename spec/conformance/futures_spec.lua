-- CPython's Lib/test/test_asyncio/test_futures.py, restated for lasync's
-- asyncio.Future.  Each `it` names the CPython test it comes from.  Python
-- runs callbacks with test_utils.run_briefly(loop); here a few loop turns
-- (asyncio.sleep(0)) do the same.  Tests about Python-only machinery
-- (generic aliases, __iter__, concurrent.futures, _source_traceback,
-- reference cycles) have no counterpart and are left out.
local helper = require "spec.helper"
local a = asyncio
local raises = helper.raises

local function run_briefly()
  for _ = 1, 3 do a.sleep(0) end
end

-- Python's _make_callback(bag, thing): a callback that appends thing.
local function appender(bag, thing)
  return function(fut)
    assert.is_true(a.isfuture(fut))
    bag[#bag + 1] = thing
  end
end

describe("conformance: test_futures", function()
  after_each(helper.no_leaks)

  it("test_isfuture", function()
    assert.is_false(a.isfuture(1))
    assert.is_false(a.isfuture({}))
    assert.is_false(a.isfuture(a.Future))
    local f = a.Future()
    assert.is_true(a.isfuture(f))
    f:cancel()
  end)

  it("test_initial_state", function()
    local f = a.Future()
    assert.is_false(f:cancelled())
    assert.is_false(f:done())
    f:cancel()
    assert.is_true(f:cancelled())
  end)

  it("test_constructor_use_running_loop (loop:create_future)", function()
    local f = a.get_event_loop():create_future()
    assert.is_true(a.isfuture(f))
    assert.is_false(f:done())
    f:set_result(1)
    assert.are.equal(1, f:result())
  end)

  it("test_constructor_use_running_loop (get_running_loop)", function()
    local loop = a.get_running_loop()
    assert.are.equal(a.get_event_loop(), loop)
    local f = loop:create_future()
    f:cancel()
    assert.is_true(f:cancelled())
  end)

  it("test_constructor_without_loop (no running loop: RuntimeError)", function()
    local out, err, status = helper.lua54([[
      local asyncio = require "asyncio"
      local ok, e = pcall(asyncio.get_running_loop)
      print(ok, asyncio.is(e, asyncio.RuntimeError), e.message)
      print(asyncio.run(function() return asyncio.isfuture(asyncio.get_running_loop():create_future()) end))
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("false\ttrue\tno running event loop\ntrue\n", out)
  end)

  it("test_constructor_positional", function()
    helper.fails_with("no arguments expected", a.Future, 42)
  end)

  it("test_future_cancel_message_getter", function()
    local f = a.Future()
    f:cancel("my message")
    local err = raises(a.CancelledError, f.await, f)
    assert.are.equal("my message", err.message)
  end)

  it("test_cancel", function()
    local f = a.Future()
    assert.is_true(f:cancel())
    assert.is_true(f:cancelled())
    assert.is_true(f:done())
    raises(a.CancelledError, f.result, f)
    raises(a.CancelledError, f.exception, f)
    raises(a.InvalidStateError, f.set_result, f, nil)
    raises(a.InvalidStateError, f.set_exception, f, "x")
    assert.is_false(f:cancel())
  end)

  it("test_result", function()
    local f = a.Future()
    raises(a.InvalidStateError, f.result, f)
    f:set_result(42)
    assert.is_false(f:cancelled())
    assert.is_true(f:done())
    assert.are.equal(42, f:result())
    assert.is_nil(f:exception())
    raises(a.InvalidStateError, f.set_result, f, nil)
    raises(a.InvalidStateError, f.set_exception, f, "x")
    assert.is_false(f:cancel())
  end)

  it("test_exception", function()
    local exc = a.RuntimeError("")
    local f = a.Future()
    raises(a.InvalidStateError, f.exception, f)
    f:set_exception(exc)
    assert.is_false(f:cancelled())
    assert.is_true(f:done())
    raises(a.RuntimeError, f.result, f)
    assert.are.equal(exc, f:exception())
    raises(a.InvalidStateError, f.set_result, f, nil)
    raises(a.InvalidStateError, f.set_exception, f, "x")
    assert.is_false(f:cancel())
  end)

  it("test_exception_class", function()
    local f = a.Future()
    f:set_exception(a.RuntimeError)
    local e = f:exception()
    assert.is_true(a.is(e, a.RuntimeError))
    assert.are_not.equal(a.RuntimeError, e)
  end)

  it("test_yield_from_twice", function()
    local f = a.Future()
    local log = {}
    local t = a.create_task(function()
      log[#log + 1] = "A"
      local x = f:await()
      log[#log + 1] = "B" .. x
      local y = f:await() -- the second await does not suspend
      log[#log + 1] = "C" .. y
    end)
    a.sleep(0)
    assert.are.same({"A"}, log)
    f:set_result(42)
    t:await()
    assert.are.same({"A", "B42", "C42"}, log)
  end)

  it("test_future_repr", function()
    local p = a.Future()
    assert.are.equal("<Future pending>", tostring(p))
    p:cancel()
    assert.are.equal("<Future cancelled>", tostring(p))
    local r = a.Future()
    r:set_result(4)
    assert.are.equal("<Future finished result=4>", tostring(r))
    local e = a.Future()
    e:set_exception(a.RuntimeError("boom"))
    assert.are.equal("<Future finished exception=RuntimeError: boom>", tostring(e))
    e:exception()
  end)

  it("test_tb_logger_abandoned", function()
    local reports = helper.run_script([[
      local f = asyncio.Future()
      f = nil
      collectgarbage() collectgarbage()
      asyncio.sleep(0)
    ]])
    assert.are.equal("", reports)
    local _, err, status = helper.run_script("local f = asyncio.Future() f = nil collectgarbage()")
    assert.are.equal(0, status)
    assert.are.equal("", err)
  end)

  -- The tb_logger family: a failure nobody looked at is reported when the
  -- future is collected ("Future exception was never retrieved"), and only
  -- then.  Each case runs in a fresh process to read its stderr.
  local function collected(body)
    local _, err, status = helper.run_script(body .. [[
      f = nil
      collectgarbage() collectgarbage()
      asyncio.sleep(0)
    ]])
    assert.are.equal(0, status)
    return err
  end

  it("test_tb_logger_not_called_after_cancel", function()
    assert.are.equal("", collected("local f = asyncio.Future() f:cancel()"))
  end)

  it("test_tb_logger_result_unretrieved", function()
    assert.are.equal("", collected("local f = asyncio.Future() f:set_result(42)"))
  end)

  it("test_tb_logger_result_retrieved", function()
    assert.are.equal("", collected(
      "local f = asyncio.Future() f:set_result(42) f:result()"))
  end)

  it("test_tb_logger_exception_unretrieved", function()
    local err = collected(
      "local f = asyncio.Future() f:set_exception(asyncio.RuntimeError('boom'))")
    assert.matches("^Future exception was never retrieved\nRuntimeError: boom", err)
  end)

  it("test_tb_logger_exception_retrieved", function()
    assert.are.equal("", collected([[local f = asyncio.Future()
      f:set_exception(asyncio.RuntimeError('boom')) f:exception()]]))
  end)

  it("test_tb_logger_exception_result_retrieved", function()
    assert.are.equal("", collected([[local f = asyncio.Future()
      f:set_exception(asyncio.RuntimeError('boom')) pcall(f.result, f)]]))
  end)

  it("test_future_exception_never_retrieved (one report)", function()
    local err = collected([[local f = asyncio.Future()
      f:set_exception("plain string error")]])
    local _, n = err:gsub("never retrieved", "")
    assert.are.equal(1, n)
    assert.matches("plain string error", err)
  end)

  -- Python's three callbacks appending 42, 17 and 100, all added to f.
  local function three(bag)
    local f = a.Future()
    local cbs = {appender(bag, 42), appender(bag, 17), appender(bag, 100)}
    for _, cb in ipairs(cbs) do f:add_done_callback(cb) end
    return f, cbs
  end

  local function settle_and_check(f, bag, expected)
    assert.are.same({}, bag)
    f:set_result("foo")
    run_briefly()
    assert.are.same(expected, bag)
    assert.are.equal("foo", f:result())
  end

  it("test_callbacks_remove_first_callback", function()
    local bag = {}
    local f, cb = three(bag)
    f:remove_done_callback(cb[1])
    f:remove_done_callback(cb[1])
    settle_and_check(f, bag, {17, 100})
  end)

  it("test_callbacks_remove_first_and_second_callback", function()
    local bag = {}
    local f, cb = three(bag)
    f:remove_done_callback(cb[1])
    f:remove_done_callback(cb[2])
    f:remove_done_callback(cb[1])
    settle_and_check(f, bag, {100})
  end)

  it("test_callbacks_remove_third_callback", function()
    local bag = {}
    local f, cb = three(bag)
    f:remove_done_callback(cb[3])
    f:remove_done_callback(cb[3])
    settle_and_check(f, bag, {42, 17})
  end)

  it("test_callbacks_invoked_on_set_result", function()
    local bag, f = {}, a.Future()
    f:add_done_callback(appender(bag, 42))
    f:add_done_callback(appender(bag, 17))
    assert.are.same({}, bag)
    f:set_result("foo")
    assert.are.same({}, bag) -- never inline
    run_briefly()
    assert.are.same({42, 17}, bag)
    assert.are.equal("foo", f:result())
  end)

  it("test_callbacks_invoked_on_set_exception", function()
    local bag, f = {}, a.Future()
    f:add_done_callback(appender(bag, 100))
    local exc = a.RuntimeError("")
    f:set_exception(exc)
    assert.are.same({}, bag)
    run_briefly()
    assert.are.same({100}, bag)
    assert.are.equal(exc, f:exception())
  end)

  it("test_remove_done_callback", function()
    local bag, f = {}, a.Future()
    local cb1, cb2, cb3 = appender(bag, 1), appender(bag, 2), appender(bag, 3)
    f:add_done_callback(cb1)
    f:add_done_callback(cb2)
    assert.are.equal(1, f:remove_done_callback(cb2))
    assert.are.equal(0, f:remove_done_callback(cb3))
    f:add_done_callback(cb2)
    for _ = 1, 5 do f:add_done_callback(cb1) end
    assert.are.equal(6, f:remove_done_callback(cb1))
    assert.are.same({}, bag)
    f:set_result("foo")
    run_briefly()
    assert.are.same({2}, bag)
    assert.are.equal("foo", f:result())
  end)

  it("test_schedule_callbacks (a callback added when done runs via call_soon)", function()
    local bag, f = {}, a.Future()
    f:set_result(1)
    f:add_done_callback(appender(bag, "late"))
    assert.are.same({}, bag)
    run_briefly()
    assert.are.same({"late"}, bag)
  end)

  it("test_callbacks_invoked_on_cancel (they see a cancelled future)", function()
    local seen, f = nil, a.Future()
    f:add_done_callback(function(fut) seen = fut:cancelled() end)
    f:cancel()
    run_briefly()
    assert.is_true(seen)
  end)
end)
