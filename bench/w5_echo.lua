-- W5: the upper-casing echo server (shared/bench/README.md).
-- usage: lasync w5_echo.lua PORT -- serves 127.0.0.1:PORT until SIGTERM.
local port = tonumber(arg[1]) or error("usage: w5_echo.lua PORT")

local function handle(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then break end
    writer:write(data:upper())
    writer:drain()
  end
  writer:close()
end

-- under `lasync --workers N` every worker listens on the port
local server <close> = asyncio.start_server(handle, "127.0.0.1", port,
  {backlog = 1024, reuse_port = asyncio.worker_count() > 1})
io.stderr:write("listening on 127.0.0.1:", server.port, "\n")
server:serve_forever()
