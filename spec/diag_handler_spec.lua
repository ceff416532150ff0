-- The exception handler (issue 13, point 3): asyncio.set_exception_handler
-- / get_exception_handler with asyncio's context table, used for errors
-- never retrieved, callback errors and connection-handler errors; the
-- default prints as before.
local helper = require "spec.helper"

describe("the exception handler", function()
  local seen
  before_each(function()
    seen = {}
    asyncio.set_exception_handler(function(loop, ctx)
      seen[#seen + 1] = { loop = loop, ctx = ctx }
    end)
  end)
  after_each(function()
    asyncio.set_exception_handler(nil)
    helper.no_leaks()
  end)

  it("is returned by get_exception_handler and reset by nil", function()
    local function h() end
    asyncio.set_exception_handler(h)
    assert.are.equal(h, asyncio.get_exception_handler())
    assert.are.equal(h, asyncio.get_event_loop():get_exception_handler())
    asyncio.set_exception_handler(nil)
    assert.is_nil(asyncio.get_exception_handler())
  end)

  it("gets a callback's error with the Handle, the loop and the traceback", function()
    local handle = asyncio.call_soon(function() error("callback broke") end)
    asyncio.sleep(0.01)
    assert.are.equal(1, #seen)
    local ctx = seen[1].ctx
    assert.are.equal(asyncio.get_event_loop(), seen[1].loop)
    assert.are.equal("Exception in callback", ctx.message)
    assert.matches("callback broke$", ctx.exception)
    assert.are.equal(handle, ctx.handle)
    assert.matches("callback broke\nstack traceback:\n", ctx.traceback)
    assert.is_nil(ctx.task)
  end)

  it("gets a failure never retrieved, with the task and where it was created", function()
    local line
    do
      line = debug.getinfo(1, "l").currentline + 1
      local t = asyncio.create_task(function() error(asyncio.QueueEmpty("lost")) end)
      asyncio.sleep(0)
      t = nil
    end
    asyncio.sleep(0)
    collectgarbage()
    collectgarbage()
    assert.are.equal(1, #seen)
    local ctx = seen[1].ctx
    assert.matches("^Task exception was never retrieved %(Task%-%d+%)$", ctx.message)
    assert.is_true(asyncio.is(ctx.exception, asyncio.QueueEmpty))
    assert.matches("^<Task failed name='Task%-%d+'>$", tostring(ctx.task))
    assert.matches(":" .. line .. "$", ctx.source)
    assert.matches("QueueEmpty: lost\nstack traceback:", ctx.traceback)
  end)

  it("gets a connection handler's failure, with its task", function()
    local srv <close> = asyncio.start_server(function(reader, writer)
      reader:read(1)
      error("handler broke")
    end, "127.0.0.1", 0)
    local r, w = asyncio.open_connection("127.0.0.1", srv.port)
    w:write("x")
    w:drain()
    assert.are.equal("", r:read(10)) -- the server closed the connection
    w:close()
    for _ = 1, 5 do asyncio.sleep(0) end
    assert.are.equal(1, #seen)
    local ctx = seen[1].ctx
    assert.matches("^Unhandled error in connection handler", ctx.message)
    assert.matches("handler broke$", ctx.exception)
    assert.is_truthy(ctx.task)
    assert.matches("handler broke\nstack traceback:", ctx.traceback)
  end)

  it("call_exception_handler and default_exception_handler, as the loop's methods", function()
    asyncio.call_exception_handler({ message = "custom", exception = 42 })
    asyncio.get_event_loop():call_exception_handler({ message = "again" })
    assert.are.equal(2, #seen)
    assert.are.equal("custom", seen[1].ctx.message)
    assert.are.equal(42, seen[1].ctx.exception)
    assert.are.equal("again", seen[2].ctx.message)
  end)

  it("refuses what is not a function, nor a context table", function()
    helper.fails_with("bad argument #1 to '[%w.]*set_exception_handler' %(function or nil expected, got number%)",
      asyncio.set_exception_handler, 5)
    helper.fails_with("bad argument #1 to '[%w.]*call_exception_handler' %(context table expected, got string%)",
      asyncio.call_exception_handler, "x")
    helper.fails_with("context.message: string expected, got table",
      asyncio.call_exception_handler, { message = {} })
    helper.fails_with("context table expected, got no value",
      asyncio.default_exception_handler)
    -- a failed set keeps the handler that was there
    assert.is_function(asyncio.get_exception_handler())
  end)
end)

describe("the default exception handler", function()
  it("prints as before, and a handler that raises is printed with the original", function()
    local out, err, status = helper.run_script([[
asyncio.call_soon(function() error("first") end)
asyncio.sleep(0.01)
asyncio.default_exception_handler({ message = "by hand", exception = "value\0x" })
asyncio.set_exception_handler(function() error("handler broke") end)
asyncio.call_soon(function() error("second") end)
asyncio.sleep(0.01)
print("done")
]])
    assert.are.equal("done\n", out)
    assert.are.equal(0, status)
    assert.matches("^Exception in callback: [^\n]*:1: first\nstack traceback:\n", err)
    -- the reporter takes C strings: text after a NUL byte is cut, not a crash
    assert.matches("\nby hand\nvalue\n", err, 1, true)
    local a = err:find("Unhandled error in exception handler\n[^\n]*:4: handler broke")
    local b = err:find("Exception in callback: [^\n]*:5: second")
    assert.truthy(a and b, err)
    assert.is_true(a < b)
  end)

  it("never-retrieved failures are printed when the program ends", function()
    local _, err = helper.run_script([[
asyncio.create_task(function() error("nobody looks") end)
asyncio.sleep(0.01)
]])
    assert.matches("Task exception was never retrieved %(Task%-2%)\n[^\n]*:1: nobody looks\nstack traceback:", err)
  end)
end)
