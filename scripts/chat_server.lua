-- Lecture 001 (Углубленный Python, лекция 9), after the echo server: a
-- chat server.  Every line a client sends goes to all the others, as
-- "name: line".  The first line a client sends is its name.  Talk to it
-- with scripts/chat_client.lua (or `nc 127.0.0.1 15000`).
--
-- usage: lasync scripts/chat_server.lua [--port 15000] [--unix PATH] [--seconds 0]
--          --port 0 picks a free port; --unix serves on a Unix socket;
--          --seconds N stops after N seconds (0: until Ctrl-C)
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local course = require "course"

local opts = course.options{port = 15000, unix = "", seconds = 0}

local clients = {} -- writer -> name

local function broadcast(text, from)
  for writer in pairs(clients) do
    if writer ~= from then writer:write(text) end
  end
end

local function serve_client(reader, writer)
  writer:write("your name? ")
  local name = reader:readline():gsub("%s+$", "")
  if name == "" then return end
  clients[writer] = name
  local here = 0
  for _ in pairs(clients) do here = here + 1 end
  writer:write(("* welcome, %s (%d here)\n"):format(name, here))
  broadcast(("* %s joined\n"):format(name), writer)
  for line in reader:lines() do
    if not line:find("\n$") then line = line .. "\n" end
    broadcast(("%s: %s"):format(name, line), writer)
  end
  clients[writer] = nil
  broadcast(("* %s left\n"):format(name), writer)
end

local server <close> = opts.unix ~= ""
  and asyncio.start_unix_server(serve_client, opts.unix)
  or asyncio.start_server(serve_client, "127.0.0.1", opts.port)
print(("chat server on %s"):format(opts.unix ~= "" and opts.unix or "127.0.0.1:" .. server.port))
io.stdout:flush()
if opts.seconds > 0 then
  asyncio.sleep(opts.seconds)
  server:close()
  server:close_clients() -- the clients see EOF, as on Ctrl-C
else
  server:serve_forever()
end
