-- Lecture 001, slide "asyncio.Event": any number of tasks wait() until
-- one task calls set(); then they all go on.
local ready = asyncio.Event()

local function runner(name)
  print(name .. " is waiting for the signal")
  ready:wait()                                 -- await ready.wait()
  print(name .. " runs")
end

local t0 = asyncio.time()
local runners = {}
for i = 1, 3 do runners[i] = asyncio.create_task(runner, "runner " .. i) end
asyncio.sleep(0.2)
print(("signal after %.1f s"):format(asyncio.time() - t0))
ready:set()
asyncio.gather(runners)
print("is_set: " .. tostring(ready:is_set()))
