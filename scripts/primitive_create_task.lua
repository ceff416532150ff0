-- Lecture 001, slide "asyncio.create_task": a task starts running on the
-- loop's next turn, while its creator goes on; task:await() waits for it
-- and gives its results (Python: await task).
local function worker(name, delay)
  print(name .. " started")
  asyncio.sleep(delay)
  print(name .. " finished")
  return name:upper(), delay
end

local t0 = asyncio.time()
local a = asyncio.create_task(worker, "a", 0.2)
local b = asyncio.create_task(worker, "b", 0.1)
print("tasks created; a:done() = " .. tostring(a:done()))
local ra = a:await()                          -- r = await a
local rb, delay = b:await()                   -- b finished already: no wait
print(("results: %s, %s (%g); a:done() = %s"):format(ra, rb, delay, tostring(a:done())))
print(("both in %.1f s, not %.1f s"):format(asyncio.time() - t0, 0.3))
