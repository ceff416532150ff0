-- Demo clients for scripts/echo_blocking.lua and scripts/echo_server.lua:
-- N clients connect at the same moment; each sends a few lines, one every
-- `gap` seconds, and prints each upper-cased answer with the time it came.
local M = {}

-- Returns the seconds until every client was answered in full.
function M.run(port, clients, lines, gap)
  local t0 = asyncio.time()
  local function client(id)
    local reader, writer = asyncio.open_connection("127.0.0.1", port)
    for k = 1, lines do
      asyncio.sleep(gap)
      writer:write(("client %d line %d\n"):format(id, k))
      writer:drain()
      local answer = reader:readline()
      print(("%5.2f s  %s"):format(asyncio.time() - t0, answer:gsub("\n$", "")))
    end
    writer:close()
    writer:wait_closed()
  end
  local jobs = {}
  for id = 1, clients do jobs[id] = function() client(id) end end
  asyncio.gather(jobs)
  return asyncio.time() - t0
end

return M
