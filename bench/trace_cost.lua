-- The work that bench/trace_cost.sh measures with LASYNC_TRACE on and off.
-- mode "steps": one task sleeps(0) N times (a wake and a step each);
-- mode "io": N round trips of 64 bytes over a local TCP connection (writes,
-- reads, wakes and steps on both ends).
-- usage: lasync trace_cost.lua steps|io N
local mode, n = arg[1] or "steps", tonumber(arg[2]) or 100000

local function steps()
  local sleep = asyncio.sleep
  for _ = 1, n do sleep(0) end
end

local function io_round_trips()
  local msg = ("x"):rep(63) .. "\n"
  local srv = asyncio.start_server(function(r, w)
    while true do
      local line = r:readline()
      if line == "" then break end
      w:write(line)
    end
    w:close()
  end, "127.0.0.1", 0)
  local r, w = asyncio.open_connection("127.0.0.1", srv.port)
  for _ = 1, n do
    w:write(msg)
    assert(r:readline() == msg)
  end
  w:close()
  srv:close()
end

asyncio.run(function()
  local t0 = asyncio.time()
  if mode == "io" then io_round_trips() else steps() end
  print(string.format("RESULT mode=%s n=%d seconds=%.6f", mode, n, asyncio.time() - t0))
end)
