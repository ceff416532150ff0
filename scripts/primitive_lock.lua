-- Lecture 001, slide "asyncio.Lock": tasks run one at a time, but a task
-- that suspends in the middle of a read-modify-write lets the others in.
-- `async with lock:` is `local _ <close> = lock:acquire()` in Lua: the lock
-- is released when the block ends, also on error.
local balance = 0

local function deposit(amount)
  local current = balance
  asyncio.sleep(0.01)                          -- e.g. a database round trip
  balance = current + amount
end

local lock = asyncio.Lock()
local function safe_deposit(amount)
  local _ <close> = lock:acquire()             -- async with lock:
  deposit(amount)
end

local function run(fn)
  balance = 0
  local jobs = {}
  for i = 1, 10 do jobs[i] = function() fn(10) end end
  asyncio.gather(jobs)
  return balance
end

print("10 deposits of 10 without a lock: " .. run(deposit))      -- updates lost
print("10 deposits of 10 with a lock:    " .. run(safe_deposit)) -- 100
print("locked after: " .. tostring(lock:locked()))
