-- W3 queue (shared/bench/README.md): a bounded asyncio.Queue(MAXSIZE); one
-- producer task puts 1..N, one consumer task gets N items and sums them.
-- usage: lasync w3_queue.lua N MAXSIZE   Clock: starting both tasks ..
-- the consumer's last item.  ok iff sum == N(N+1)/2.
local n = tonumber(arg[1]) or 1000000
local maxsize = tonumber(arg[2]) or 64

local q = asyncio.Queue(maxsize)
local t0 = asyncio.time()
local prod = asyncio.create_task(function()
  for i = 1, n do q:put(i) end
end)
local cons = asyncio.create_task(function()
  local s = 0
  for _ = 1, n do s = s + q:get() end
  return s
end)
local res = asyncio.gather(prod, cons)
local secs = asyncio.time() - t0
local ok = res[2] == n * (n + 1) // 2

print(string.format("RESULT workload=W3 n=%d seconds=%.6f ok=%d rate=%.1f",
  n, secs, ok and 1 or 0, n / secs))
