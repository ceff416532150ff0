-- The VM floor of W1 and W2 in plain Lua (docs/performance.md, "The VM
-- floor"): the benchmarks' loop (bench/w1_spawn.lua) with spawn =
-- coroutine.create and sleep = coroutine.yield, then a loop resuming every
-- coroutine until it yields and once more to finish, adding up the results.
-- usage: lua5.4 vm_floor.lua W1|W2 N   (W2: sleep(1.0), which does not wait;
--        the peak RSS at N and at N=0 gives bytes per task)
-- Clock: wall time, spawning .. sum checked, as the other programs read it;
-- stock Lua has no sub-second wall clock, so it is GNU date's (the time
-- date takes to start, about a millisecond, is in the figure).
local w = arg[1] == "W2" and "W2" or "W1"
local n = tonumber(arg[2]) or 100000
local create, resume = coroutine.create, coroutine.resume

local threads, count = {}, 0
local function spawn(f)
  count = count + 1
  threads[count] = create(f)
end
local sleep = coroutine.yield

local function now()
  local p = assert(io.popen("date +%s.%N"))
  local t = assert(tonumber(p:read("l")))
  p:close()
  return t
end

-- The benchmarks' loop, with sleep's argument as a constant, as theirs.
local loop = assert(load(string.format([[
local n, spawn, sleep = ...
for i = 1, n do
  local idx = i - 1
  spawn(function()
    sleep(%s)
    return idx
  end)
end]], w == "W2" and "1.0" or "0")))

local t0 = now()
loop(n, spawn, sleep)
for i = 1, count do assert(resume(threads[i])) end
local sum = 0
for i = 1, count do
  local ok, v = resume(threads[i])
  sum = sum + v
end
local ok = count == n and sum == n * (n - 1) / 2
local secs = now() - t0

if w == "W2" then
  print(string.format("RESULT workload=W2 n=%d seconds=%.6f ok=%d",
                      n, secs, ok and 1 or 0))
else
  print(string.format("RESULT workload=W1 n=%d seconds=%.6f ok=%d rate=%.1f",
                      n, secs, ok and 1 or 0, n / secs))
end
