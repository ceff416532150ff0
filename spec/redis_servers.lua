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

-- Polls the server's Unix socket until it answers PING; false if the
-- process ended first (redis-server binds its TCP port before its Unix
-- socket and exits when the port is taken, so an answer there means the
-- TCP port is ours, not another process's that took it in between).
local function wait_ready(proc, socket)
  local deadline = asyncio.time() + 15 * helper.slow
  while asyncio.time() < deadline do
    if proc.returncode ~= nil then return false end
    local ok, r, w = pcall(asyncio.open_unix_connection, socket)
    if ok then
      w:write("PING\r\n")
      local ok2, line = pcall(r.readline, r)
      w:close()
      if ok2 and line and (line:find("PONG") or line:find("NOAUTH")) then return true end
    end
    asyncio.sleep(0.02)
  end
  error("redis-server did not start on " .. socket)
end

-- M.start{port=, args={...} or function() return {...} end}
--   -> {port=, url=, socket=, stop(), start(), cleanup()}
function M.start(opts)
  opts = opts or {}
  local s = {port = opts.port or free_port()}
  s.dir = helper.tmpname("-redis")
  os.execute("mkdir -p " .. helper.quote(s.dir))
  s.socket = s.dir .. "/redis.sock"
  local function spawn()
    local args = {"--port", tostring(s.port), "--bind", "127.0.0.1",
      "--save", "", "--appendonly", "no", "--dir", s.dir,
      "--unixsocket", s.socket, "--unixsocketperm", "700"}
    -- opts.args may be a function giving them (picking more ports) for
    -- each first-start attempt; a restart passes the same again
    if not s.started then
      s.extra = type(opts.args) == "function" and opts.args() or opts.args or {}
    end
    for i, a in ipairs(s.extra) do
      args[#args + 1] = a
      if a == "--unixsocket" then s.socket = s.extra[i + 1] end -- the last one counts
    end
    s.proc = asyncio.create_subprocess_exec("redis-server", args,
      {stdin = "devnull", stdout = "devnull", stderr = "devnull"})
    return wait_ready(s.proc, s.socket)
  end
  function s.start()
    if spawn() then return end
    -- the port was taken between free_port() and the server's bind:
    -- another one (a restart keeps its port: the spec asked for it)
    for _ = 1, opts.port == nil and not s.started and 5 or 0 do
      s.port = free_port()
      if spawn() then return end
    end
    error(("redis-server exited at start (status %s) on port %d"):format(s.proc.returncode, s.port))
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
  s.started = true
  s.url = "redis://127.0.0.1:" .. s.port
  return s
end

return M
