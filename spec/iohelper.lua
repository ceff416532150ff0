-- Peers for the stream/server/process specs: Python programs started with
-- create_subprocess_exec, talking on loopback only.
local M = {}

-- Starts `python3 -c code args...`; the program prints its port (or
-- anything) as its first line.  Returns the process and that first line.
function M.python(code, args, opts)
  opts = opts or {}
  local p = asyncio.create_subprocess_exec("python3", {"-u", "-c", code,
    table.unpack(args or {})}, {stdin = opts.stdin or "devnull",
    stdout = "pipe", stderr = opts.stderr})
  local line = p.stdout:readline()
  return p, line:gsub("%s+$", "")
end

-- A TCP server in Python: handles each connection with `body` (Python
-- statements using `c`, the accepted socket), one thread per connection.
-- A host starting with "/" is a Unix socket path (the first line is then
-- the path).
function M.py_server(body, host, opts)
  local code = [[
import socket, sys, threading, time
host = sys.argv[1]
if host.startswith("/"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(host)
else:
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
s.listen(64)
print(host if host.startswith("/") else s.getsockname()[1], flush=True)
def handle(c):
    try:
]] .. body:gsub("[^\n]+", "        %0") .. [[

    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
]]
  local p, port = M.python(code, {host or "127.0.0.1"}, opts)
  return p, tonumber(port)
end

-- The upper-casing echo handler (reads to EOF, then closes).
function M.upper_echo(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then break end
    writer:write(data:upper())
    writer:drain()
  end
  writer:close()
end

-- Closes a lasync server and waits until it is closed.
function M.close_server(srv)
  srv:close()
  srv:wait_closed()
end

-- Kills a peer process started by M.python / M.py_server and reaps it.
function M.stop(p)
  p:kill()
  p:wait()
end

return M
