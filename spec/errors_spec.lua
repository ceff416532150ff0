local helper = require "spec.helper"

describe("error classes", function()
  after_each(helper.no_leaks)

  local names = {"CancelledError", "TimeoutError", "InvalidStateError", "QueueEmpty",
                 "QueueFull", "QueueShutDown", "LimitOverrunError", "IncompleteReadError",
                 "BrokenBarrierError", "ExceptionGroup"}

  it("exports every documented class, each deriving from asyncio.Error", function()
    for _, name in ipairs(names) do
      local cls = asyncio[name]
      assert.is_table(cls, name)
      local e = cls("msg")
      assert.is_true(asyncio.is(e, cls), name)
      assert.is_true(asyncio.is(e, asyncio.Error), name)
      assert.are.equal(name .. ": msg", tostring(e))
      assert.are.equal("msg", e.message)
    end
  end)

  it("tells classes apart", function()
    local e = asyncio.TimeoutError("late")
    assert.is_false(asyncio.is(e, asyncio.CancelledError))
    assert.is_false(asyncio.is("a string", asyncio.TimeoutError))
    assert.is_false(asyncio.is(nil, asyncio.TimeoutError))
    assert.is_false(asyncio.is({}, asyncio.TimeoutError))
  end)

  it("prints just the class name without a message", function()
    assert.are.equal("CancelledError", tostring(asyncio.CancelledError()))
  end)

  it("copies extra fields given when made", function()
    local e = asyncio.IncompleteReadError("short", {partial = "ab", expected = 4})
    assert.are.equal("ab", e.partial)
    assert.are.equal(4, e.expected)
  end)

  it("raises runtime errors as class instances that pcall can inspect", function()
    local t = asyncio.create_task(function() asyncio.sleep(1) end)
    local ok, err = pcall(t.result, t)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.InvalidStateError))
    t:cancel()
    pcall(t.await, t)
  end)

  it("passes plain string errors from user code through unchanged", function()
    local t = asyncio.create_task(function() error("just text", 0) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.equal("just text", err)
  end)

  it("asyncio.is wants a class", function()
    local ok, err = pcall(asyncio.is, {}, "TimeoutError")
    assert.is_false(ok)
    assert.matches("error class expected, got string", err)
  end)
end)
