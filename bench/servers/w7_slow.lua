-- W7's server for a plain clone (bench/own.sh): answers every request after
-- DELAY seconds (default 0.05) with a 64-byte body, many requests waiting at
-- once (one task each), so a client that overlaps its requests finishes N of
-- them in about DELAY.
-- usage: lasync w7_slow.lua PORT [DELAY] -- PORT 0 picks a free port; serves
-- 127.0.0.1 until killed and says "listening on 127.0.0.1:PORT" on stderr.
local web = require "asyncio.http.server"
local port = tonumber(arg[1]) or error("usage: w7_slow.lua PORT [DELAY]")
local delay = tonumber(arg[2]) or 0.05

local BODY = {status = 200, headers = {["Content-Type"] = "text/plain"},
              body = ("0123456789abcdef"):rep(4)}
local server <close> = web.serve(function()
  asyncio.sleep(delay)
  return BODY
end, "127.0.0.1", port, {backlog = 1024})
io.stderr:write("listening on 127.0.0.1:", server.port, "\n")
server:wait_closed()
