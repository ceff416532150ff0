-- Run by examples/embed/sensors.c: four sensor reads at once, then one
-- that is cancelled by a timeout.
local t0 = asyncio.time()
local names = {"kitchen", "garage", "attic", "cellar"}
local results = asyncio.gather(
  function() return sensors.read(names[1], 100) end,
  function() return sensors.read(names[2], 150) end,
  function() return sensors.read(names[3], 120) end,
  function() return sensors.read(names[4], 80) end)
for i, value in ipairs(results) do
  print(("%-8s %.1f"):format(names[i], value))
end
print(("4 reads in %.2f s (one after another: 0.45 s)"):format(asyncio.time() - t0))

local ok, err = pcall(asyncio.wait_for, function() return sensors.read("slow", 5000) end, 0.05)
print("slow sensor:", ok and "answered" or tostring(err))
