-- W8 peer: lua-http's server (cqueues), one process.  Debian packages
-- lua-http for Lua 5.1-5.3 only: run with lua5.1.
local server = require "http.server"
local headers = require "http.headers"
local port = tonumber(arg[1])
local s = assert(server.listen {
  host = "127.0.0.1", port = port,
  onstream = function(_, stream)
    assert(stream:get_headers())
    local h = headers.new()
    h:append(":status", "200")
    h:append("content-type", "text/plain")
    stream:write_headers(h, false)
    stream:write_chunk("Hello, World!", true)
  end,
})
assert(s:loop())
