-- W4 lock (shared/bench/README.md): TASKS tasks each ITERS times acquire a
-- shared asyncio.Lock, add 1 to a counter, yield once (sleep 0) while
-- holding it, release.  usage: lasync w4_lock.lua TASKS ITERS
-- Clock: spawning .. all done.  ok iff counter == TASKS*ITERS.
local ntasks = tonumber(arg[1]) or 100
local iters = tonumber(arg[2]) or 1000

local lock = asyncio.Lock()
local sleep = asyncio.sleep
local counter = 0
local t0 = asyncio.time()
local ts = {}
for i = 1, ntasks do
  ts[i] = asyncio.create_task(function()
    for _ = 1, iters do
      local _ <close> = lock:acquire()
      counter = counter + 1
      sleep(0)
    end
  end)
end
asyncio.gather(ts)
local secs = asyncio.time() - t0
local ok = counter == ntasks * iters

local n = ntasks * iters
print(string.format("RESULT workload=W4 n=%d seconds=%.6f ok=%d rate=%.1f",
  n, secs, ok and 1 or 0, n / secs))
