-- Errors keep their origin (issue 13, point 1): a failure re-raised by
-- await, gather, wait_for, task:result() or a TaskGroup carries the failing
-- task's traceback and the chain of awaiting tasks; TimeoutError and the
-- deadlock error name the line that was waiting.
local helper = require "spec.helper"

-- the line of this file where `marker` appears (so the asserts follow edits)
local function line_of(marker)
  local n = 0
  for l in io.lines(debug.getinfo(1, "S").short_src) do
    n = n + 1
    if l:find(marker, 1, true) then return n end
  end
  error("no line with " .. marker)
end
local here = debug.getinfo(1, "S").short_src

local function fails_here(msg)
  asyncio.sleep(0)
  error(asyncio.OSError(msg)) -- ORIGIN-TABLE
end

describe("error origins", function()
  after_each(helper.no_leaks)

  it("an awaited table error carries the failing task's frames and the awaiter's line", function()
    local t = asyncio.create_task(fails_here, "bad")
    t:set_name("fetch-3")
    local ok, err = pcall(t.await, t) -- AWAIT-LINE
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.OSError))
    local tb = err.traceback
    assert.is_string(tb)
    local origin = tb:find(here .. ":" .. line_of("ORIGIN-TABLE"), 1, true)
    local chain = tb:find("task 'fetch-3' awaited by '", 1, true)
    local awaited = tb:find(here .. ":" .. line_of("AWAIT-LINE"), 1, true)
    assert.truthy(origin, tb)
    assert.truthy(chain, tb)
    assert.truthy(awaited, tb)
    -- where it started comes first, then who waited for it
    assert.is_true(origin < chain and chain < awaited, tb)
  end)

  it("a string error re-raised by await continues the failing task's report", function()
    local out, err, status = helper.run_script([[
local function fetch(n)
  asyncio.sleep(0.01)
  error("boom " .. n)
end
local function main()
  local t = asyncio.create_task(fetch, 3)
  t:set_name("fetch-3")
  t:await()
end
local m = asyncio.create_task(main)
m:set_name("main")
m:await()
]])
    assert.are.equal(1, status)
    assert.are.equal("", out)
    -- the origin's frame, then each awaiting task with the line it waited on
    local a = err:find(":3: boom 3\nstack traceback:\n", 1, true)
    local b = err:find(":3: in function <", 1, true)
    local c = err:find("task 'fetch-3' awaited by 'main' at:\n\t[C]: in method 'await'\n", 1, true)
    local d = err:find(":8: in function <", 1, true)
    local e = err:find("task 'main' awaited by 'Task-1' at:", 1, true)
    local f = err:find(":12: in main chunk", 1, true)
    assert.truthy(a and b and c and d and e and f, err)
    assert.is_true(a < b and b < c and c < d and d < e and e < f, err)
  end)

  it("gather re-raises a child's error with the child's traceback", function()
    local ok, err = pcall(asyncio.gather, function() asyncio.sleep(0) end,
      function()
        asyncio.sleep(0)
        error(asyncio.QueueEmpty("gathered")) -- ORIGIN-GATHER
      end)
    assert.is_false(ok)
    assert.are.equal("gathered", err.message)
    assert.matches(here .. ":" .. line_of("ORIGIN-GATHER") .. ":", err.traceback, 1, true)
    assert.matches("awaited by", err.traceback, 1, true)
    assert.matches("in function 'asyncio.gather'", err.traceback, 1, true)
  end)

  it("wait_for and task:result() keep the origin too", function()
    local ok, err = pcall(asyncio.wait_for, function()
      asyncio.sleep(0)
      error(asyncio.QueueFull("full")) -- ORIGIN-WAITFOR
    end, 5)
    assert.is_false(ok)
    assert.matches(here .. ":" .. line_of("ORIGIN-WAITFOR") .. ":", err.traceback, 1, true)
    local t = asyncio.create_task(fails_here, "r")
    while not t:done() do asyncio.sleep(0) end
    local ok2, err2 = pcall(t.result, t)
    assert.is_false(ok2)
    assert.matches(here .. ":" .. line_of("ORIGIN-TABLE") .. ":", err2.traceback, 1, true)
  end)

  it("a TaskGroup's ExceptionGroup carries each failed child's report", function()
    local ok, err = pcall(function()
      local tg <close> = asyncio.TaskGroup()
      tg:create_task(function() asyncio.sleep(0) error("plain string") end) -- ORIGIN-G1
      tg:create_task(function() asyncio.sleep(0) error(asyncio.OSError("obj")) end)
    end)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.ExceptionGroup))
    local tb = err.traceback
    assert.is_string(tb)
    assert.matches("%[1%] in task 'Task%-%d+', awaited by '[^']+': [^\n]*plain string\nstack traceback:", tb)
    assert.matches(here .. ":" .. line_of("ORIGIN-G1") .. ": in function", tb, 1, true)
    assert.matches("[2] in task", tb, 1, true)
    -- the sub-error objects keep their own origin
    assert.matches("stack traceback:", err.errors[2].traceback, 1, true)
  end)

  it("an error caught and handled leaves no chain on a later failure", function()
    local out, err = helper.run_script([[
local t = asyncio.create_task(function() error("first") end)
pcall(t.await, t)
error("second")
]])
    assert.are.equal("", out)
    assert.matches("second\nstack traceback:", err)
    assert.is_nil(err:find("awaited by", 1, true), err)
  end)

  it("a user error table with a __newindex keeps it (the field is set raw)", function()
    local log = {}
    local mt = { __newindex = function(t, k, v) log[#log + 1] = k end }
    local t = asyncio.create_task(function() error(setmetatable({}, mt)) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.same({}, log)
    assert.is_string(rawget(err, "traceback"))
  end)
end)

describe("where a task waited", function()
  after_each(helper.no_leaks)

  it("TimeoutError from timeout() names the call and line that waited", function()
    local ok, err = pcall(function()
      local _ <close> = asyncio.timeout(0.01)
      asyncio.sleep(5) -- SLEEP-LINE
    end)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.TimeoutError))
    assert.matches("the deadline has passed (the task was waiting in 'sleep' at "
      .. here .. ":" .. line_of("SLEEP-LINE") .. ")", err.message, 1, true)
  end)

  it("TimeoutError from wait_for and from an already passed deadline", function()
    local q = asyncio.Queue()
    local ok, err = pcall(asyncio.wait_for, function() return q:get() end, 0.01) -- WAITFOR-LINE
    assert.is_false(ok)
    assert.matches("waiting in 'await' at " .. here .. ":" .. line_of("WAITFOR-LINE"),
      err.message, 1, true)
    ok, err = pcall(function()
      local _ <close> = asyncio.timeout(0)
      q:get() -- GET-LINE
    end)
    assert.is_false(ok)
    assert.matches("waiting in 'get' at " .. here .. ":" .. line_of("GET-LINE"),
      err.message, 1, true)
  end)

  it("the deadlock error names the line each awaiting task waits on", function()
    local _, err, status = helper.run_script([[
asyncio.run(function()
  local q = asyncio.Queue()
  q:get()
end)
]])
    assert.are.equal(1, status)
    assert.matches("can never happen .- %(it waits in 'run' at [^\n]+:1, which waits in 'get' at [^\n]+:3%)", err)
  end)

  it("the deadlock error of asyncio.run in a stock lua5.4", function()
    local out = helper.lua54([[
local asyncio = require "asyncio"
print(pcall(asyncio.run, function()
  local ev = asyncio.Event()
  ev:wait()
end))
]])
    assert.matches("false\t.*can never happen .*%(it waits in 'wait' at .*:5%)", out)
  end)
end)
