-- W6's server for a plain clone (bench/own.sh), in place of the harness's
-- nginx: every request gets the same LEN-byte body (default 10240, bytes
-- that are not all alike), keep-alive as libmicrohttpd does for HTTP/1.1.
-- usage: lasync w6_static.lua PORT [LEN] -- PORT 0 picks a free port; serves
-- 127.0.0.1 until killed and says "listening on 127.0.0.1:PORT" on stderr.
local web = require "asyncio.http.server"
local port = tonumber(arg[1]) or error("usage: w6_static.lua PORT [LEN]")
local len = tonumber(arg[2]) or 10240

local bytes = {}
for i = 1, len do bytes[i] = string.char(32 + (i * 7919) % 95) end
local BODY = {status = 200,
              headers = {["Content-Type"] = "application/octet-stream"},
              body = table.concat(bytes)}
local server <close> = web.serve(function() return BODY end, "127.0.0.1", port,
                                 {backlog = 1024})
io.stderr:write("listening on 127.0.0.1:", server.port, "\n")
server:wait_closed()
