-- Lecture 001, slide "asyncio.gather": runs several jobs at once and
-- returns their results in argument order, whatever order they finish in.
-- Python's gather(*aws) takes a list in Lua: gather(list), and
-- return_exceptions=True becomes a field of that list.
local function job(name, delay)
  asyncio.sleep(delay)
  print("done: " .. name)
  return name
end

local t0 = asyncio.time()
local results = asyncio.gather(
  function() return job("slow", 0.3) end,
  function() return job("fast", 0.1) end,
  function() return job("medium", 0.2) end)
print(("results in argument order: %s (%.1f s)"):format(table.concat(results, ", "), asyncio.time() - t0))

-- an error: raised by gather, or returned in place with return_exceptions
local jobs = {
  function() return job("ok", 0.1) end,
  function() asyncio.sleep(0.05) error("boom", 0) end,
}
local _, err = pcall(asyncio.gather, jobs)
print("gather raised: " .. tostring(err) .. " (the other job keeps running, as in Python)")
jobs.return_exceptions = true
local mixed = asyncio.gather(jobs)
print(("return_exceptions: [1] = %s, [2] = %s"):format(mixed[1], tostring(mixed[2])))
