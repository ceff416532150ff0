-- Lecture 001, slide "asyncio.sleep": sleeping suspends only the calling
-- task; the loop runs the others meanwhile.  sleep(0) just lets the others
-- have a turn, and sleep(sec, value) returns value.
local t0 = asyncio.time()
local function ticker(name, n)
  for i = 1, n do
    print(("%s %d"):format(name, i))
    asyncio.sleep(0)                          -- await asyncio.sleep(0)
  end
end
asyncio.gather(function() ticker("ping", 3) end, function() ticker("pong", 3) end)

local v = asyncio.sleep(0.25, "slept")        -- await asyncio.sleep(0.25, result='slept')
print(("%s %.2f s"):format(v, asyncio.time() - t0))

-- three sleeps of 0.25 s in three tasks take 0.25 s in all
t0 = asyncio.time()
asyncio.gather(function() asyncio.sleep(0.25) end, function() asyncio.sleep(0.25) end,
               function() asyncio.sleep(0.25) end)
print(("three concurrent sleeps of 0.25 s: %.2f s"):format(asyncio.time() - t0))
