-- Real servers for the HTTP specs, on 127.0.0.1 only: the python test
-- server (spec/fixtures/http_server.py, optionally with a TLS port and a
-- self-signed certificate made by openssl) and nginx with a generated
-- config.  Each start_* returns a table with the URL(s) and stop().
local helper = require "spec.helper"

local servers = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
servers.fixtures = here .. "/fixtures"

local function sh_ok(cmd)
  local out, err, status = helper.sh(cmd)
  assert(status == 0, ("command failed (%s): %s\n%s%s"):format(tostring(status), cmd, out, err))
  return out
end
servers.sh_ok = sh_ok

local function tmpdir()
  return (sh_ok("mktemp -d /tmp/lasync-http.XXXXXX"):gsub("%s+$", ""))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
servers.read_file = read_file

-- Waits (in the running task) until path exists; returns its contents.
local function wait_file(path, what)
  local deadline = asyncio.time() + 15 * helper.slow
  while asyncio.time() < deadline do
    local s = read_file(path)
    if s and s ~= "" then return s end
    asyncio.sleep(0.02)
  end
  error("timed out waiting for " .. what)
end

local function free_port()
  return tonumber((sh_ok([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']])))
end

-- A self-signed certificate for 127.0.0.1 (CN and subjectAltName).
function servers.make_cert(dir)
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  sh_ok(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s"):format(
    helper.quote(key), helper.quote(cert)))
  return cert, key
end

function servers.start_python(opts)
  opts = opts or {}
  local dir = tmpdir()
  local s = {dir = dir}
  local args = "--port-file " .. helper.quote(dir .. "/ports")
  if opts.tls then
    s.cert, s.key = servers.make_cert(dir)
    args = args .. " --tls-cert " .. helper.quote(s.cert) .. " --tls-key " .. helper.quote(s.key)
  end
  s.pid = tonumber(sh_ok(("python3 %s/http_server.py %s >%s/log 2>&1 & echo $!"):format(
    helper.quote(servers.fixtures), args, helper.quote(dir))))
  local ports = wait_file(dir .. "/ports", "the python test server")
  local p, tp = ports:match("(%d+)%s*(%d*)")
  s.port = tonumber(p)
  s.url = "http://127.0.0.1:" .. p
  if tp ~= "" then
    s.tls_port = tonumber(tp)
    s.tls_url = "https://127.0.0.1:" .. tp
  end
  function s.stop()
    os.execute(("kill %d 2>/dev/null; rm -rf %s"):format(s.pid, helper.quote(dir)))
  end
  return s
end

-- spec/fixtures/hostile_server.py: endless and compressed-bomb bodies,
-- oversized headers, connections closed or dropped behind keep-alive.
function servers.start_hostile()
  local dir = tmpdir()
  local s = {dir = dir}
  s.pid = tonumber(sh_ok(("python3 %s/hostile_server.py --port-file %s >%s/log 2>&1 & echo $!")
    :format(helper.quote(servers.fixtures), helper.quote(dir .. "/port"), helper.quote(dir))))
  s.port = tonumber((wait_file(dir .. "/port", "the hostile test server")))
  s.url = "http://127.0.0.1:" .. s.port
  function s.stop()
    os.execute(("kill %d 2>/dev/null; rm -rf %s"):format(s.pid, helper.quote(dir)))
  end
  return s
end

-- nginx.conf for a server on 127.0.0.1:port serving www, its files in dir.
local function nginx_conf(dir, port, www)
  return ([[
daemon on;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/tmp_body;
  proxy_temp_path %s/tmp_proxy;
  fastcgi_temp_path %s/tmp_fastcgi;
  uwsgi_temp_path %s/tmp_uwsgi;
  scgi_temp_path %s/tmp_scgi;
  keepalive_requests 100000;
  default_type application/octet-stream;
  sendfile on;
  server {
    listen 127.0.0.1:%d;
    root %s;
    add_header X-Conn $connection always;
    location = /redirect { return 302 /hello.txt; }
    location = /hop1 { return 301 /hop2; }
    location = /hop2 { return 302 /hop3; }
    location = /hop3 { return 307 /hello.txt; }
    location = /loop { return 302 /loop; }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, www)
end

-- nginx serving dir/www on a free port: static files, redirects, keep-alive;
-- X-Conn carries nginx's connection serial number (reuse is visible).
function servers.start_nginx(files)
  local dir = tmpdir()
  local www = dir .. "/www"
  sh_ok("mkdir -p " .. helper.quote(www) .. " && chmod 755 " .. helper.quote(dir))
  for name, content in pairs(files or {}) do
    helper.write_file(www .. "/" .. name, content)
  end
  -- nginx binds the port it is given: one picked here may be taken by
  -- another process before that (then nginx fails "Address already in
  -- use" and another port is tried)
  local port
  for attempt = 1, 5 do
    port = free_port()
    helper.write_file(dir .. "/nginx.conf", nginx_conf(dir, port, www))
    local cmd = ("chmod -R a+rX %s && nginx -e %s/error.log -p %s -c %s/nginx.conf"):format(
      helper.quote(dir), helper.quote(dir), helper.quote(dir), helper.quote(dir))
    local out, err, status = helper.sh(cmd)
    if status == 0 then break end
    assert(attempt < 5 and (err .. (read_file(dir .. "/error.log") or "")):find("Address already in use", 1, true),
      ("command failed (%s): %s\n%s%s"):format(tostring(status), cmd, out, err))
  end
  local pid = tonumber(wait_file(dir .. "/nginx.pid", "nginx"))
  local s = {dir = dir, www = www, port = port, pid = pid,
             url = "http://127.0.0.1:" .. port}
  function s.stop()
    os.execute(("kill %d 2>/dev/null; sleep 0.05; rm -rf %s"):format(pid, helper.quote(dir)))
  end
  return s
end

return servers
