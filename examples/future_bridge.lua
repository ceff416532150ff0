-- A callback API wrapped in a Future: how to give a library that reports
-- through callbacks a suspending, cancellable face.
--
--   build/lasync examples/future_bridge.lua
--
-- `legacy_lookup(name, cb)` stands for any callback-style API (a C
-- library's completion callback, a luv request, an event emitter): it
-- calls cb(err, value) later, from the loop, and returns a handle whose
-- cancel() aborts the request.

local function legacy_lookup(name, cb)
  local delay = #name / 20
  return asyncio.call_later(delay, function()
    if name == "" then cb("empty name") else cb(nil, name:upper(), delay) end
  end)
end

-- The bridge: one Future per request.  The callback settles it; a task
-- cancelled while it waits cancels the Future, and the done callback
-- aborts the request, so nothing keeps running for nobody.
local function lookup(name)
  local fut = asyncio.Future()
  local request = legacy_lookup(name, function(err, value, took)
    if fut:done() then return end -- cancelled meanwhile
    if err then fut:set_exception(err) else fut:set_result(value, took) end
  end)
  fut:add_done_callback(function(f)
    if f:cancelled() then request:cancel() print("  request for " .. name .. " aborted") end
  end)
  return fut:await()
end

-- Used like any suspending function: alone, concurrently, with timeouts.
print("one:", lookup("lua"))

local t0 = asyncio.time()
local all = asyncio.gather(
  function() return lookup("asyncio") end,
  function() return lookup("future") end,
  function() return lookup("bridge") end)
print(("three at once: %s (%.2f s, not the sum)"):format(
  table.concat(all, " "), asyncio.time() - t0))

local ok, err = pcall(lookup, "")
print("an error from the callback:", ok, err)

ok, err = pcall(asyncio.wait_for, function() return lookup("a very long name indeed") end, 0.2)
print("too slow:", ok, asyncio.is(err, asyncio.TimeoutError) and "TimeoutError" or err)
asyncio.sleep(0) -- lets the done callback report the abort
