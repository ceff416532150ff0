-- Lecture 001, "say_after": the same two greetings, first one after the
-- other, then concurrently as tasks. Run: build/lasync scripts/say_after.lua
local function say_after(delay, what)
  asyncio.sleep(delay)
  print(("%s  %s"):format(os.date("%X"), what))
end

local t0 = asyncio.time()
print(("started at %s (sequential)"):format(os.date("%X")))
say_after(1, "hello")
say_after(2, "world")
local sequential = asyncio.time() - t0
print(("finished at %s: %.2f s"):format(os.date("%X"), sequential))

t0 = asyncio.time()
print(("started at %s (concurrent tasks)"):format(os.date("%X")))
local task1 = asyncio.create_task(say_after, 1, "hello")
local task2 = asyncio.create_task(say_after, 2, "world")
task1:await()
task2:await()
local concurrent = asyncio.time() - t0
print(("finished at %s: %.2f s"):format(os.date("%X"), concurrent))
print(("concurrency saved %.2f s"):format(sequential - concurrent))
