-- Certificates and TLS peers for the TLS specs: everything is made by the
-- `openssl` CLI into a temporary directory, and the peers (openssl
-- s_server / s_client, Python's ssl module) run as subprocesses on
-- loopback ports.
local io_helper = require "spec.iohelper"
local M = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok, "command failed: " .. cmd)
end

local EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

-- A key and a certificate for `cn` with the given subjectAltName, signed
-- by the CA in dir (days may be negative: an expired certificate).
local function signed(dir, name, cn, san, days, extra)
  local base = dir .. "/" .. name
  sh(("openssl req %s -keyout %s.key -out %s.csr -subj '/CN=%s'"):format(
    EC, base, base, cn))
  local ext = base .. ".ext"
  local f = assert(io.open(ext, "w"))
  f:write("subjectAltName=", san, "\n", extra or "")
  f:close()
  sh(("openssl x509 -req -in %s.csr -CA %s/ca.pem -CAkey %s/ca.key " ..
      "-CAcreateserial -days %d -extfile %s -out %s.pem"):format(
    base, dir, dir, days, ext, base))
end

-- Makes (once per spec file) a CA, a server certificate for localhost and
-- 127.0.0.1, one for another name, an expired one, a self-signed one and a
-- client certificate.  Returns a table of paths.
function M.certs()
  if M._certs then return M._certs end
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  sh(("openssl req -x509 %s -keyout %s/ca.key -out %s/ca.pem -days 30 " ..
      "-subj '/CN=lasync test CA' -addext basicConstraints=critical,CA:TRUE " ..
      "-addext keyUsage=critical,keyCertSign,cRLSign"):format(EC, dir, dir))
  signed(dir, "server", "localhost", "DNS:localhost,IP:127.0.0.1", 30)
  signed(dir, "other", "other.example", "DNS:other.example", 30)
  signed(dir, "expired", "localhost", "DNS:localhost,IP:127.0.0.1", -1)
  signed(dir, "client", "lasync client", "DNS:client.example", 30,
         "extendedKeyUsage=clientAuth\n")
  sh(("openssl req -x509 %s -keyout %s/self.key -out %s/self.pem -days 30 " ..
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
     ):format(EC, dir, dir))
  -- a CA directory as capath wants it (hashed names)
  sh(("mkdir %s/capath && cp %s/ca.pem %s/capath/ && openssl rehash %s/capath"):format(
    dir, dir, dir, dir))
  local c = {dir = dir, ca = dir .. "/ca.pem", capath = dir .. "/capath"}
  for _, n in ipairs{"server", "other", "expired", "client", "self"} do
    c[n] = {cert = dir .. "/" .. n .. ".pem", key = dir .. "/" .. n .. ".key"}
  end
  M._certs = c
  return c
end

function M.cleanup()
  if M._certs then os.execute("rm -rf " .. M._certs.dir) end
  M._certs = nil
end

-- A client context that trusts the test CA.
function M.client_ctx()
  local ctx = asyncio.ssl.create_default_context()
  ctx:load_verify_locations{cafile = M.certs().ca}
  return ctx
end

-- A server context with the given certificate ("server" by default).
function M.server_ctx(which)
  local c = M.certs()[which or "server"]
  local ctx = asyncio.ssl.create_default_context(asyncio.ssl.Purpose.CLIENT_AUTH)
  ctx:load_cert_chain(c.cert, c.key)
  return ctx
end

-- `openssl s_server` on a port the kernel picks (-accept port 0: a port
-- picked first and bound later could be taken in between by another
-- process), with extra arguments (a list); returns the process and the
-- port.  Its stdout is a pipe the spec may read (s_server echoes what it
-- receives with -rev / -quiet).
function M.s_server(args, which)
  local c = M.certs()[which or "server"]
  local argv = {"s_server", "-accept", "127.0.0.1:0", "-cert", c.cert,
                "-key", c.key, "-naccept", "1"}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = asyncio.create_subprocess_exec("openssl", argv,
    {stdin = "pipe", stdout = "pipe", stderr = "devnull"})
  local port
  repeat -- it prints ACCEPT 127.0.0.1:PORT once it listens
    local line = p.stdout:readline()
    assert(line ~= "", "openssl s_server did not start")
    port = tonumber(line:match("^ACCEPT 127%.0%.0%.1:(%d+)"))
  until port
  return p, port
end

-- A Python TLS peer: `code` runs with `ctx` (ssl.SSLContext), `certs`
-- (the paths as a dict) and `port` known; it prints its port first.
function M.python(code)
  local c = M.certs()
  local prelude = ([[
import socket, ssl, sys, threading, time
certs = {"ca": %q, "dir": %q}
]]):format(c.ca, c.dir)
  return io_helper.python(prelude .. code, {})
end

return M
