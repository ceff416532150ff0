-- Session 23's hostile-peer sweep: what the other hostile specs
-- (io_, tls_, http_, http_server_, redis_hostile_spec.lua, sigpipe_spec.lua)
-- did not try.  Peers are small Python programs or lasync tasks on loopback.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"
local th = require "spec.tlshelper"
local ssl = asyncio.ssl

-- CPU seconds (user + system) the process `pid` has used, from
-- /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. (pid or "self") .. "/stat"))
  local s = f:read("a")
  f:close()
  local rest = s:match("%) (.*)$") -- the command name may hold blanks
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  -- fields[1] is the state (field 3): utime is field 14, stime 15
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

describe("hostile sweep: TLS", function()
  setup(function() th.certs() end)
  teardown(th.cleanup)
  after_each(helper.no_leaks)

  it("a client that closes without close_notify: the server reads its data, then EOF", function()
    local got = asyncio.Future()
    local srv <close> = asyncio.start_server(function(r, w)
      local ok, data = pcall(r.read, r)
      got:set_result({ok, ok and data or tostring(data)})
      w:close()
    end, "127.0.0.1", 0, {ssl = th.server_ctx()})
    -- FIN on the raw socket: no close_notify record
    local p = th.python(([[
ctx = ssl.create_default_context(cafile=certs["ca"])
s = socket.create_connection(("127.0.0.1", %d))
t = ctx.wrap_socket(s, server_hostname="localhost")
t.sendall(b"unterminated")
print("sent", flush=True)
socket.socket(fileno=t.fileno()).shutdown(socket.SHUT_WR)
time.sleep(1)
]]):format(srv.port))
    local res = asyncio.wait_for(got, 5)
    p:wait()
    assert.is_true(res[1], res[2])
    assert.are.equal("unterminated", res[2])
  end)

  it("a record header over the TLS maximum is an SSLError, not a buffer that grows", function()
    local got = asyncio.Future()
    local srv <close> = asyncio.start_server(function(r, w)
      local ok, e = pcall(r.read, r, 100)
      got:set_result({ok, e})
      w:close()
    end, "127.0.0.1", 0, {ssl = th.server_ctx()})
    local p = th.python(([[
import os
ctx = ssl.create_default_context(cafile=certs["ca"])
s = socket.create_connection(("127.0.0.1", %d))
t = ctx.wrap_socket(s, server_hostname="localhost")
print("up", flush=True)
# an application-data record claiming 65535 bytes, then the bytes
os.write(t.fileno(), b"\x17\x03\x03\xff\xff" + b"\x00" * 65535)
time.sleep(1)
]]):format(srv.port))
    local res = asyncio.wait_for(got, 5)
    p:kill() p:wait()
    assert.is_false(res[1])
    assert.is_true(asyncio.is(res[2], ssl.SSLError), tostring(res[2]))
  end)

  it("clients that stall mid-handshake are dropped after ssl_handshake_timeout, at ~0% CPU", function()
    local calls = 0
    local srv <close> = asyncio.start_server(function() calls = calls + 1 end,
      "127.0.0.1", 0, {ssl = th.server_ctx(), ssl_handshake_timeout = 1})
    -- 20 that say nothing, 20 that send half a ClientHello
    local p = io_helper.python(([[
import socket, time, sys
socks = []
for i in range(40):
    s = socket.create_connection(("127.0.0.1", %d))
    if i %% 2: s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    socks.append(s)
print("connected", flush=True)
t = time.time()
closed = 0
for s in socks:
    s.settimeout(10)
    try:
        if s.recv(100) == b"": closed += 1
    except Exception as e:
        closed += 1
print(closed, round(time.time() - t), flush=True)
]]):format(srv.port))
    local c0, t0 = cpu_seconds(), asyncio.get_event_loop():time()
    local out = asyncio.wait_for(function() return p.stdout:readline() end, 15)
    p:wait()
    local cpu = cpu_seconds() - c0
    assert.matches("^40 [01]\n$", out)
    assert.are.equal(0, calls)
    assert.is_true(cpu < 0.2 * helper.slow, "cpu " .. cpu)
  end)
end)

describe("hostile sweep: the HTTP client", function()
  local http = require "asyncio.http"
  after_each(helper.no_leaks)

  -- A raw server answering one connection with `body` (Python, `c` is
  -- the accepted socket); returns its URL and the process.
  local function raw(body)
    local p, port = io_helper.py_server("c.recv(65536)\n" .. body)
    return ("http://127.0.0.1:%s/"):format(port), p
  end

  it("garbage instead of a status line is a protocol error, not an invalid URL", function()
    local url, p = raw("c.sendall(bytes(range(256)) * 100)")
    local e = helper.error_of(http.fetch, url)
    io_helper.stop(p)
    assert.is_true(asyncio.is(e, http.Error), tostring(e))
    assert.are.equal("protocol", e.kind)
    -- a URL curl cannot fetch is still invalid_url
    assert.are.equal("invalid_url", helper.error_of(http.fetch, "gopherx://127.0.0.1/").kind)
  end)

  it("an endless run of 100 Continue heads is headers_too_large, not a reset", function()
    local url, p = raw([[
try:
    for i in range(100000):
        c.sendall(b"HTTP/1.1 100 Continue\r\nX-Pad: " + b"p" * 100 + b"\r\n\r\n")
except OSError:
    pass
]])
    local e = helper.error_of(http.fetch, url, {timeout = 10 * helper.slow})
    io_helper.stop(p)
    assert.are.equal("headers_too_large", e.kind, tostring(e))
    assert.matches("256 KiB", e.message)
  end)

  it("a few 1xx heads before the answer are fine", function()
    local url, p = raw([[
c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 3 + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
time.sleep(0.5)
]])
    local r = http.fetch(url)
    io_helper.stop(p)
    assert.are.equal(200, r.status)
    assert.are.equal("ok", r.body)
  end)
end)
