-- A real redis-server (Debian's) for the Redis specs: on a free loopback
-- port and a Unix socket in a temporary directory, no persistence, started
-- as a subprocess of the spec and stopped by it.
local helper = require "spec.helper"

local M = {}

-- A port nobody listens on now: one the kernel picked for a server that
-- is closed again.
local function free_port()
  local s = asyncio.start_server(function() end, "127.0.0.1", 0)
  local port = s.port
  s:close()
  s:wait_closed()
  return port
end
M.free_port = free_port

-- Polls with a raw socket until the server answers PING (or 15 s pass).
local function wait_ready(port)
  local deadline = asyncio.time() + 15 * helper.slow
  while asyncio.time() < deadline do
    local ok, r, w = pcall(asyncio.open_connection, "127.0.0.1", port)
    if ok then
      w:write("PING\r\n")
      local ok2, line = pcall(r.readline, r)
      w:close()
      if ok2 and line and (line:find("PONG") or line:find("NOAUTH")) then return end
    end
    asyncio.sleep(0.02)
  end
  error("redis-server did not start on port " .. port)
end

-- M.start{port=, args={...}} -> {port=, url=, socket=, stop(), restart()}
function M.start(opts)
  opts = opts or {}
  local s = {port = opts.port or free_port()}
  s.dir = helper.tmpname("-redis")
  os.execute("mkdir -p " .. helper.quote(s.dir))
  s.socket = s.dir .. "/redis.sock"
  s.url = "redis://127.0.0.1:" .. s.port
  function s.start()
    local args = {"--port", tostring(s.port), "--bind", "127.0.0.1",
      "--save", "", "--appendonly", "no", "--dir", s.dir,
      "--unixsocket", s.socket, "--unixsocketperm", "700"}
    for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
    s.proc = asyncio.create_subprocess_exec("redis-server", args,
      {stdin = "devnull", stdout = "devnull", stderr = "devnull"})
    wait_ready(s.port)
  end
  function s.stop()
    if s.proc then
      s.proc:kill()
      s.proc:wait()
      s.proc = nil
    end
  end
  function s.cleanup()
    s.stop()
    os.execute("rm -rf " .. helper.quote(s.dir))
  end
  s.start()
  return s
end

return M
