local helper = require "spec.helper"

local lua54 = helper.lua54

describe("asyncio.so in a stock lua5.4", function()
  after_each(helper.no_leaks)

  it("asyncio.run drives the loop until the function's task ends", function()
    local out, err, status = lua54([[
      local asyncio = require "asyncio"
      print(asyncio.current_task())
      local a, b = asyncio.run(function(x)
        local t0 = asyncio.time()
        asyncio.sleep(0.02)
        local r = asyncio.gather(function() return x end, function() asyncio.sleep(0.01) return x * 2 end)
        return r[1] + r[2], asyncio.time() - t0 >= 0.03
      end, 7)
      print(a, b)
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("nil\n21\ttrue\n", out)
  end)

  it("re-raises the task's error and can run again afterwards", function()
    local out, err, status = lua54([[
      local asyncio = require "asyncio"
      local ok, e = pcall(asyncio.run, function() asyncio.sleep(0) error("inner", 0) end)
      print(ok, e)
      print(asyncio.run(function() return "again" end))
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("false\tinner\nagain\n", out)
  end)

  it("cancels leftover tasks at the end, as Python's asyncio.run does", function()
    local out, err, status = lua54([[
      local asyncio = require "asyncio"
      local left
      asyncio.run(function()
        left = asyncio.create_task(function() asyncio.sleep(30) end)
        asyncio.sleep(0)
      end)
      print(left:cancelled())
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("true\n", out)
  end)

  it("raises a clear error instead of hanging on a deadlock", function()
    local out, err, status = lua54([[
      local asyncio = require "asyncio"
      local ok, e = pcall(asyncio.run, function()
        local me = asyncio.current_task()
        asyncio.create_task(function() me:await() end):await()
      end)
      print(ok, e)
    ]])
    assert.are.equal(0, status, err)
    assert.matches("false\t.*can never happen", out)
  end)

  it("supports the old loop:run_until_complete style", function()
    local out, err, status = lua54([[
      local asyncio = require "asyncio"
      local loop = asyncio.get_event_loop()
      local t = loop:create_task(function() asyncio.sleep(0.01) return "task" end)
      print(loop:run_until_complete(t))
      print(loop:run_until_complete(function() return "fn" end))
      loop:close()
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("task\nfn\n", out)
  end)

  it("suspending calls outside asyncio.run name the function", function()
    local out, _, status = lua54([[
      local asyncio = require "asyncio"
      print(pcall(asyncio.sleep, 1))
    ]])
    assert.are.equal(0, status)
    assert.matches("false\tasyncio: sleep%(%) called outside a task %(use asyncio.run%)", out)
  end)

  -- http.lua is made of compiled-in parts loaded by name and redis.lua
  -- shares argcheck.lua: both must come out of asyncio.so as well.
  it("asyncio.http and asyncio.redis load, their checks at the caller's line", function()
    local out, err, status = lua54([[
      local http = require "asyncio.http"
      local redis = require "asyncio.redis"
      print(http.url.quote("a b"), http.url.encode_query{b = 1, a = {2, 3}})
      print(select(2, pcall(function() local s = http.Session{retry = "x"} return s end)))
      print(select(2, pcall(function() local c = redis.connect{db = -1} return c end)))
    ]])
    assert.are.equal(0, status, err)
    -- the script's lines 4 and 5 are the file's 5 and 6 (helper.lua54's
    -- cpath line comes first)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines, out)
    assert.are.equal("a%20b\ta=2&a=3&b=1", lines[1])
    assert.matches("%.lua:5: bad argument #1 to 'Session' %(option 'retry' must be a table, an integer or false%)$", lines[2])
    assert.matches("%.lua:6: bad argument #1 to 'connect' %(option 'db' must be an integer >= 0%)$", lines[3])
  end)

  it("asyncio.http.server and asyncio.websocket load, their checks at the caller's line", function()
    local out, err, status = lua54([[
      local asyncio = require "asyncio"
      local web, websocket = require "asyncio.http.server", require "asyncio.websocket"
      asyncio.run(function()
        print(select(2, pcall(function() local s = web.serve(print, "127.0.0.1", 0, {tls = {cert = "a", key = "b", x = 1}}) return s end)))
        print(select(2, pcall(function() local w = websocket.connect("ws://127.0.0.1:1/", {protocols = {"a", "a"}}) return w end)))
      end)
    ]])
    assert.are.equal(0, status, err)
    -- the script's lines 4 and 5 are the file's 5 and 6 (the cpath line)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(2, #lines, out)
    assert.matches("%.lua:5: serve%(%): unknown option 'tls%.x'$", lines[1])
    assert.matches("%.lua:6: websocket%(%): protocol 'a' is listed twice$", lines[2])
  end)

  it("closes cleanly when the state closes with tasks still pending", function()
    local out, err, status = lua54([[
      local asyncio = require "asyncio"
      asyncio.create_task(function() asyncio.sleep(10) end)
      asyncio.call_later(10, print)
      print("bye")
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("bye\n", out)
    assert.are.equal("", err)
  end)
end)
