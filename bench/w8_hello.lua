-- W8: hello-world over HTTP/1.1 (asyncio.http.server), for wrk -c 50 -d 5.
-- usage: lasync w8_hello.lua PORT -- serves 127.0.0.1:PORT until killed.
local web = require "asyncio.http.server"
local port = tonumber(arg[1]) or error("usage: w8_hello.lua PORT")

local HELLO = {status = 200, headers = {["Content-Type"] = "text/plain"},
               body = "Hello, World!"}
local server <close> = web.serve(function() return HELLO end, "127.0.0.1", port,
                                 {backlog = 1024})
io.stderr:write("listening on 127.0.0.1:", server.port, "\n")
server:wait_closed()
