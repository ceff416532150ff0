-- Lecture 001 (Углубленный Python, лекция 9), after the echo server: an
-- interactive chat client.  What you type goes to the server, what the
-- server sends is printed, both at once.  The keyboard is read with
-- asyncio.stdin(), a StreamReader, so waiting for your next line blocks
-- nothing: messages from the others show up while you type.  Ctrl-D (end
-- of input) leaves, and so does the server closing the connection.  Works
-- with stdin from a terminal, a pipe or a file.
--
-- usage: lasync scripts/chat_client.lua [--host 127.0.0.1] [--port 15000] [--unix PATH]
--   e.g. lasync scripts/chat_server.lua &  then, in two terminals,
--        lasync scripts/chat_client.lua
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local course = require "course"

local opts = course.options{host = "127.0.0.1", port = 15000, unix = ""}

local reader, writer
if opts.unix ~= "" then
  reader, writer = asyncio.open_unix_connection(opts.unix)
else
  reader, writer = asyncio.open_connection(opts.host, opts.port)
end
local keyboard = asyncio.stdin()
local screen = asyncio.stdout()

-- server -> screen, as it comes (lines, or a prompt without a newline)
local incoming = asyncio.create_task(function()
  while true do
    local data = reader:read(4096)
    if data == "" then break end
    screen:write(data)
  end
end)

-- keyboard -> server, line by line
local typing = asyncio.create_task(function()
  for line in keyboard:lines() do
    writer:write(line)
    writer:drain()
  end
end)

asyncio.wait({incoming, typing}, {return_when = "FIRST_COMPLETED"})
if typing:done() then
  -- end of input: tell the server, let what it still sends arrive
  writer:write_eof()
  pcall(asyncio.wait_for, incoming, 1)
else
  typing:cancel() -- the server went away: nobody to type to
end
incoming:cancel()
writer:close()
screen:drain()
