-- Shared by the asyncio.http.server specs: a server for the length of a
-- test, and reading a raw reply off a client connection.
local helper = require "spec.helper"
local web = require "asyncio.http.server"
local M = {}

-- A server for the duration of fn(srv); closed and awaited afterwards.
function M.with_server(handler, fn, opts)
  local srv = web.serve(handler, "127.0.0.1", 0, opts)
  local ok, err = pcall(fn, srv)
  srv:close()
  srv:wait_closed()
  assert(ok, err)
end

-- Reads r until the peer closes it or `wait` seconds (default 5, times
-- helper.slow) pass; returns what came and whether it closed in time.
function M.read_all(r, wait)
  local parts = {}
  local ok = pcall(function()
    local _ <close> = asyncio.timeout((wait or 5) * helper.slow)
    while true do
      local chunk = r:read(65536)
      if chunk == "" then break end
      parts[#parts + 1] = chunk
    end
  end)
  return table.concat(parts), ok
end

return M
