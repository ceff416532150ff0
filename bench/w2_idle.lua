-- W2 idle (shared/bench/README.md): N tasks each sleep 1.0 s concurrently
-- and return their index; the main task gathers them (N=0: baseline).
-- usage: lasync w2_idle.lua N
local n = tonumber(arg[1]) or 100000
local sleep, create_task = asyncio.sleep, asyncio.create_task

local t0 = asyncio.time()
local tasks = {}
for i = 1, n do
  local idx = i - 1
  tasks[i] = create_task(function()
    sleep(1.0)
    return idx
  end)
end
local results = asyncio.gather(tasks)
local sum = 0
for i = 1, n do sum = sum + results[i] end
local ok = #results == n and sum == n * (n - 1) / 2
local secs = asyncio.time() - t0

print(string.format("RESULT workload=W2 n=%d seconds=%.6f ok=%d", n, secs, ok and 1 or 0))
