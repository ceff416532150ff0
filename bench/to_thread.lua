-- to_thread: a CPU-bound job (counting the primes below N by trial
-- division) run in one to_thread call, then split over PARTS concurrent
-- to_thread calls (interleaved blocks of candidates, so the parts cost the
-- same).  On a machine with 2 free cores, 2 parts take about half the
-- wall time of 1: the workers run in parallel on libuv's thread pool while
-- the loop stays free (a ticker task counts the loop turns meanwhile).
-- usage: lasync to_thread.lua [N [PARTS]]
local N = tonumber(arg[1]) or 1000000
local PARTS = tonumber(arg[2]) or 2

-- Runs in the worker: only its arguments and globals (no upvalues).  The
-- candidates go in blocks of 1000, block b to part b % parts, so that the
-- parts cost the same (every other number would give one part the evens).
local function count_primes(n, part, parts)
  local count = 0
  for block = part, (n - 1) // 1000, parts do
    for i = math.max(2, block * 1000), math.min(n - 1, block * 1000 + 999) do
      local prime = true
      for d = 2, math.floor(math.sqrt(i)) do
        if i % d == 0 then prime = false break end
      end
      if prime then count = count + 1 end
    end
  end
  return count
end

-- CPU seconds per thread of this process (Linux /proc), to show how the
-- work was spread over threads even when other processes share the cores.
local pid do -- ours: /proc/self in a child shell would be the shell's
  local f = io.open("/proc/self/stat")
  pid = f and f:read("a"):match("^(%d+)")
  if f then f:close() end
end

local function thread_cpu()
  local t = {}
  local ls = pid and io.popen("ls /proc/" .. pid .. "/task 2>/dev/null")
  if not ls then return t end
  for tid in ls:lines() do
    local f = io.open("/proc/" .. pid .. "/task/" .. tid .. "/stat")
    if f then
      local stat = f:read("a")
      f:close()
      local rest = stat:match("%) (.*)$") or ""
      local fields = {}
      for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
      -- utime and stime are fields 14 and 15 of stat: 12 and 13 after ")"
      t[tid] = ((tonumber(fields[12]) or 0) + (tonumber(fields[13]) or 0)) / 100
    end
  end
  ls:close()
  return t
end

-- The threads that did at least 5% of the work: "0.41+0.39".
local function spread(before, after)
  local used, total = {}, 0
  for tid, v in pairs(after) do
    local d = v - (before[tid] or 0)
    used[#used + 1], total = d, total + d
  end
  table.sort(used, function(x, y) return x > y end)
  local shown = {}
  for _, d in ipairs(used) do
    if d > 0.05 * total then shown[#shown + 1] = ("%.2f"):format(d) end
  end
  return table.concat(shown, "+")
end

local function run(parts)
  local ticks, running = 0, true
  local ticker = asyncio.create_task(function()
    while running do asyncio.sleep(0.01) ticks = ticks + 1 end
  end)
  local t0, c0, per0 = asyncio.time(), os.clock(), thread_cpu()
  local jobs = {}
  for p = 0, parts - 1 do
    jobs[#jobs + 1] = function() return asyncio.to_thread(count_primes, N, p, parts) end
  end
  local total = 0
  for _, c in ipairs(asyncio.gather(jobs)) do total = total + c end
  local secs, cpu = asyncio.time() - t0, os.clock() - c0
  local threads = spread(per0, thread_cpu())
  running = false
  ticker:await()
  return total, secs, ticks, cpu, threads
end

-- cpu: the process's CPU seconds (all threads) over the run; cpu/seconds
-- above 1 means more than one core worked at once.
-- per_thread: the CPU seconds of each thread that did a share of it.
local c1, s1, k1, u1, p1 = run(1)
local c2, s2, k2, u2, p2 = run(PARTS)
local ok = c1 == c2 and c1 > 0
print(string.format("RESULT workload=to_thread threads=1 n=%d seconds=%.3f cpu=%.3f per_thread=%s ok=%d loop_ticks=%d",
  N, s1, u1, p1, ok and 1 or 0, k1))
print(string.format("RESULT workload=to_thread threads=%d n=%d seconds=%.3f cpu=%.3f per_thread=%s ok=%d loop_ticks=%d speedup=%.2f",
  PARTS, N, s2, u2, p2, ok and 1 or 0, k2, s1 / s2))
