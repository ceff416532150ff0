-- Lecture 001, slide "asyncio.wait_for": waits for a job at most `sec`
-- seconds; on timeout the job is cancelled and TimeoutError is raised.
local function lookup(delay)
  asyncio.sleep(delay)
  return "found after " .. delay .. " s"
end

print(asyncio.wait_for(function() return lookup(0.1) end, 1))   -- in time

local ok, err = pcall(asyncio.wait_for, function() return lookup(5) end, 0.2)
if not ok and asyncio.is(err, asyncio.TimeoutError) then
  print("gave up after 0.2 s: " .. tostring(err))
end

-- the Python 3.11 style: a deadline for a block of code
local _, err2 = pcall(function()
  local _ <close> = asyncio.timeout(0.2)       -- async with asyncio.timeout(0.2):
  lookup(5)
end)
print("asyncio.timeout: " .. (asyncio.is(err2, asyncio.TimeoutError) and "TimeoutError" or tostring(err2)))
