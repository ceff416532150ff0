local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()
local a = asyncio

describe("TaskGroup", function()
  after_each(helper.no_leaks)

  it("waits for every child at the end of the scope", function()
    local results = {}
    do
      local tg <close> = a.TaskGroup()
      for i = 1, 3 do
        tg:create_task(function(x) a.sleep(0.001 * x) results[#results + 1] = x end, i)
      end
      assert.are.equal(0, #results)
    end
    assert.are.same({1, 2, 3}, results)
  end)

  it("task_group(fn) returns fn's results after the children finish", function()
    local child
    local r = a.task_group(function(tg)
      child = tg:create_task(function() a.sleep(0.001) return 7 end)
      return "body"
    end)
    assert.are.equal("body", r)
    assert.are.equal(7, child:result())
  end)

  it("on a failure cancels the others and raises an ExceptionGroup with every failure", function()
    local slow
    local ok, err = pcall(a.task_group, function(tg)
      tg:create_task(function() a.sleep(0.001) error("first", 0) end)
      tg:create_task(function() a.sleep(0.001) error("second", 0) end)
      slow = tg:create_task(function() a.sleep(10) end)
      a.sleep(10) -- interrupted by the group
    end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.ExceptionGroup))
    assert.are.same({"first", "second"}, err.errors)
    assert.is_true(slow:cancelled())
    assert.matches("2 sub%-exceptions.*first.*second", tostring(err))
    assert.are.equal(0, a.current_task():cancelling())
  end)

  it("the body's own error joins the group's errors", function()
    local child
    local ok, err = pcall(a.task_group, function(tg)
      child = tg:create_task(function() a.sleep(10) end)
      error("body failed", 0)
    end)
    assert.is_false(ok)
    assert.are.same({"body failed"}, err.errors)
    assert.is_true(child:cancelled())
  end)

  it("cancelling the parent cancels the children and stays a CancelledError", function()
    local children = {}
    local parent = a.create_task(function()
      local tg <close> = a.TaskGroup()
      for i = 1, 3 do children[i] = tg:create_task(function() a.sleep(10) end) end
      a.sleep(10)
    end)
    a.sleep(0.001)
    parent:cancel()
    local ok, err = pcall(parent.await, parent)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.CancelledError))
    for i = 1, 3 do assert.is_true(children[i]:cancelled()) end
  end)

  it("cancelling the parent while it waits in __close cancels the children", function()
    local child
    local parent = a.create_task(function()
      local tg <close> = a.TaskGroup()
      child = tg:create_task(function() a.sleep(10) end)
    end)
    a.sleep(0.001)
    assert.is_false(parent:done())
    parent:cancel()
    local ok, err = pcall(parent.await, parent)
    assert.is_true(a.is(err, a.CancelledError))
    assert.is_false(ok)
    assert.is_true(child:cancelled())
  end)

  it("nested groups propagate as nested ExceptionGroups", function()
    local ok, err = pcall(a.task_group, function(outer)
      outer:create_task(function()
        a.task_group(function(inner)
          inner:create_task(function() error("deep", 0) end)
        end)
      end)
    end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.ExceptionGroup))
    local inner = err.errors[1]
    assert.is_true(a.is(inner, a.ExceptionGroup))
    assert.are.same({"deep"}, inner.errors)
  end)

  it("refuses new tasks once finished", function()
    local tg
    do
      tg = a.TaskGroup()
      local _ <close> = tg
    end
    local ok, err = pcall(tg.create_task, tg, function() end)
    assert.is_false(ok)
    assert.is_true(a.is(err, a.RuntimeError))
    assert.has_error(function() a.task_group(5) end,
      "bad argument #1 to 'task_group' (function expected, got number)")
  end)

  it("holds no reference to finished children", function()
    local weak = setmetatable({}, {__mode = "k"})
    local tg = a.TaskGroup()
    do
      local _ <close> = tg
      weak[tg:create_task(function() a.sleep(0) end)] = true
    end
    a.sleep(0) -- the done callback, queued when the child ended, has run
    collectgarbage() collectgarbage()
    assert.is_nil(next(weak))
  end)
end)
