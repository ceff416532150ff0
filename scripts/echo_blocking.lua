-- Lecture 001 (Углубленный Python, лекция 9), the first example: the
-- blocking upper-casing echo server, which serves ONE client at a time
-- (accept, then recv/send until the client leaves, then the next accept).
--
-- Lua 5.4 here has no blocking socket library, and a blocking server would
-- stop the event loop (and the demo clients) anyway.  So the "blocking"
-- behaviour is reproduced faithfully: the server takes a Lock for the whole
-- conversation, so a second client is accepted by the kernel but not
-- served before the first one has gone -- exactly what the Python clients
-- see.  Compare the timings with scripts/echo_server.lua (no lock).
--
-- usage: lasync scripts/echo_blocking.lua [--clients 3] [--lines 3] [--gap 0.1]
--        lasync scripts/echo_blocking.lua --serve SECONDS [--port 15000]
--          (then try two `nc localhost 15000` at once)
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local course = require "course"
local echo_clients = require "echo_clients"

local opts = course.options{clients = 3, lines = 3, gap = 0.1, serve = 0, port = 15000}

local one_at_a_time = asyncio.Lock()

local function serve_client(reader, writer)
  local _ <close> = one_at_a_time:acquire()   -- the next client waits here
  while true do
    local data = reader:read(4096)            -- data = client_sock.recv(4096)
    if data == "" then break end              -- if not data: break
    writer:write(data:upper())                -- client_sock.send(data.upper())
    writer:drain()
  end
  writer:close()                              -- client_sock.close()
end

local port = opts.serve > 0 and opts.port or 0
local server <close> = asyncio.start_server(serve_client, "127.0.0.1", port)
if opts.serve > 0 then
  print(("serving on 127.0.0.1:%d for %g s, one client at a time"):format(server.port, opts.serve))
  asyncio.sleep(opts.serve)
else
  local secs = echo_clients.run(server.port, opts.clients, opts.lines, opts.gap)
  print(("%d clients served one after another in %.2f s"):format(opts.clients, secs))
end
server:close()
