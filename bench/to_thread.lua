-- to_thread: a CPU-bound job (counting the primes below N by trial
-- division) run in one to_thread call, then split over PARTS concurrent
-- to_thread calls (each takes every PARTS-th candidate, so the parts cost
-- the same).  On a machine with 2 free cores, 2 parts take about half the
-- wall time of 1: the workers run in parallel on libuv's thread pool while
-- the loop stays free (a ticker task counts the loop turns meanwhile).
-- usage: lasync to_thread.lua [N [PARTS]]
local N = tonumber(arg[1]) or 1000000
local PARTS = tonumber(arg[2]) or 2

-- Runs in the worker: only its arguments and globals (no upvalues).
local function count_primes(n, part, parts)
  local count = 0
  for i = 2 + part, n - 1, parts do
    local prime = true
    for d = 2, math.floor(math.sqrt(i)) do
      if i % d == 0 then prime = false break end
    end
    if prime then count = count + 1 end
  end
  return count
end

local function run(parts)
  local ticks, running = 0, true
  local ticker = asyncio.create_task(function()
    while running do asyncio.sleep(0.01) ticks = ticks + 1 end
  end)
  local t0, c0 = asyncio.time(), os.clock()
  local jobs = {}
  for p = 0, parts - 1 do
    jobs[#jobs + 1] = function() return asyncio.to_thread(count_primes, N, p, parts) end
  end
  local total = 0
  for _, c in ipairs(asyncio.gather(jobs)) do total = total + c end
  local secs, cpu = asyncio.time() - t0, os.clock() - c0
  running = false
  ticker:await()
  return total, secs, ticks, cpu
end

-- cpu: the process's CPU seconds (all threads) over the run; cpu/seconds
-- above 1 means more than one core worked at once.
local c1, s1, k1, u1 = run(1)
local c2, s2, k2, u2 = run(PARTS)
local ok = c1 == c2 and c1 > 0
print(string.format("RESULT workload=to_thread threads=1 n=%d seconds=%.3f cpu=%.3f ok=%d loop_ticks=%d",
  N, s1, u1, ok and 1 or 0, k1))
print(string.format("RESULT workload=to_thread threads=%d n=%d seconds=%.3f cpu=%.3f ok=%d loop_ticks=%d speedup=%.2f",
  PARTS, N, s2, u2, ok and 1 or 0, k2, s1 / s2))
