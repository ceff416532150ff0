-- Lecture 001 (Углубленный Python, лекция 9): the upper-casing echo server
-- with asyncio -- asyncio.start_server runs serve_client as a task for each
-- connection, so many clients are served at once on one thread.  The same
-- demo clients as scripts/echo_blocking.lua finish in the time of one.
--
-- usage: lasync scripts/echo_server.lua [--clients 3] [--lines 3] [--gap 0.1]
--        lasync scripts/echo_server.lua --serve SECONDS [--port 15000]
--          (then try several `nc localhost 15000` at once)
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local course = require "course"
local echo_clients = require "echo_clients"

local opts = course.options{clients = 3, lines = 3, gap = 0.1, serve = 0, port = 15000}

-- runs as its own task for every client: async def serve_client(reader, writer)
local function serve_client(reader, writer)
  while true do
    local data = reader:read(4096)            -- data = await reader.read(4096)
    if data == "" then break end
    writer:write(data:upper())
    writer:drain()                            -- await writer.drain()
  end
  writer:close()
end

local port = opts.serve > 0 and opts.port or 0
-- server = await asyncio.start_server(serve_client, 'localhost', 15000)
local server <close> = asyncio.start_server(serve_client, "127.0.0.1", port)
if opts.serve > 0 then
  print(("serving on 127.0.0.1:%d for %g s, all clients at once"):format(server.port, opts.serve))
  asyncio.sleep(opts.serve)                   -- instead of server.serve_forever()
else
  local secs = echo_clients.run(server.port, opts.clients, opts.lines, opts.gap)
  print(("%d clients served concurrently in %.2f s"):format(opts.clients, secs))
end
server:close()
