-- TLS against bad arguments and hostile peers: wrong option types, unknown
-- keys, NUL bytes, contexts misused, peers that send garbage, reset, go
-- silent or flood.
local helper = require "spec.helper"
local th = require "spec.tlshelper"
local ssl = asyncio.ssl

local function fails(pattern, fn, ...)
  return helper.fails_with(pattern, fn, ...)
end

describe("TLS against bad arguments", function()
  setup(function() th.certs() end)
  teardown(th.cleanup)
  after_each(helper.no_leaks)

  it("open_connection refuses bad ssl options before connecting", function()
    for _, v in ipairs{1, "yes", {}, print} do
      fails("bad option 'ssl' to 'open_connection' %(true or an SSLContext expected, got "
        .. type(v) .. "%)", asyncio.open_connection, "127.0.0.1", 1, {ssl = v})
    end
    fails("bad argument #3 to '.-open_connection' %(unknown option 'ssl_context'%)",
      asyncio.open_connection, "127.0.0.1", 1, {ssl_context = true})
    fails("option 'server_hostname'", asyncio.open_connection, "127.0.0.1", 1,
      {ssl = true, server_hostname = 5})
    fails("option 'server_hostname' contains a NUL byte", asyncio.open_connection,
      "127.0.0.1", 1, {ssl = true, server_hostname = "local\0host"})
    for _, v in ipairs{0, -1, 0/0, "5"} do
      fails("bad option 'ssl_handshake_timeout' to 'open_connection'",
        asyncio.open_connection, "127.0.0.1", 1, {ssl = true, ssl_handshake_timeout = v})
    end
    local e = helper.raises(asyncio.ValueError, asyncio.open_connection, "127.0.0.1", 1,
      {server_hostname = "localhost"})
    assert.matches("server_hostname is only meaningful with ssl", e.message)
    helper.raises(asyncio.ValueError, asyncio.open_connection, "127.0.0.1", 1,
      {ssl = false, ssl_handshake_timeout = 1})
    e = helper.raises(asyncio.ValueError, asyncio.open_connection, "127.0.0.1", 1,
      {ssl = true, server_hostname = ""})
    assert.matches("check_hostname requires server_hostname", e.message)
    e = helper.raises(asyncio.ValueError, asyncio.open_connection, "127.0.0.1", 1,
      {ssl = th.server_ctx()})
    assert.matches("the SSLContext is a server's", e.message)
  end)

  it("start_server refuses bad ssl options", function()
    fails("bad option 'ssl' to 'start_server' %(an SSLContext", asyncio.start_server,
      print, "127.0.0.1", 0, {ssl = true})
    fails("bad argument #4 to '.-start_server' %(unknown option 'ssl_shutdown'%)",
      asyncio.start_server, print, "127.0.0.1", 0, {ssl_shutdown = 1})
    local e = helper.raises(asyncio.ValueError, asyncio.start_server, print,
      "127.0.0.1", 0, {ssl = th.client_ctx()})
    assert.matches("the SSLContext is a client's", e.message)
    helper.raises(asyncio.ValueError, asyncio.start_server, print, "127.0.0.1", 0,
      {ssl_handshake_timeout = 3})
    fails("ssl_handshake_timeout", asyncio.start_server, print, "127.0.0.1", 0,
      {ssl = th.server_ctx(), ssl_handshake_timeout = -3})
  end)

  it("huge handshake timeouts are accepted (the deadline saturates)", function()
    local srv <close> = asyncio.start_server(function(r, w) w:write("hi\n") w:close() end,
      "127.0.0.1", 0, {ssl = th.server_ctx(), ssl_handshake_timeout = math.huge})
    local r, w = asyncio.open_connection("localhost", srv.port,
      {ssl = th.client_ctx(), ssl_handshake_timeout = 1e308})
    assert.are.equal("hi\n", r:readline())
    w:close()
  end)

  it("contexts check their fields and arguments", function()
    fails("bad argument #1 to 'create_default_context' %(asyncio.ssl.Purpose.SERVER_AUTH or CLIENT_AUTH expected, got string%)",
      ssl.create_default_context, "bogus")
    local ctx = ssl.create_default_context()
    assert.is_true(ctx.check_hostname)
    assert.are.equal(ssl.CERT_REQUIRED, ctx.verify_mode)
    assert.are.equal("TLSv1_2", ctx.minimum_version)
    assert.are.equal("SERVER_AUTH", ctx.purpose)
    fails("SSLContext has no field 'verify'", function() ctx.verify = false end)
    fails("bad value for SSLContext.verify_mode", function() ctx.verify_mode = 7 end)
    fails("bad value for SSLContext.verify_mode", function() ctx.verify_mode = "none" end)
    fails("boolean expected", function() ctx.check_hostname = "no" end)
    fails("bad value for SSLContext.minimum_version", function() ctx.minimum_version = "SSLv3" end)
    local e = helper.raises(asyncio.ValueError, function() ctx.verify_mode = ssl.CERT_NONE end)
    assert.matches("Cannot set verify_mode to CERT_NONE when check_hostname is enabled", e.message)
    -- Python's rule: turning check_hostname on makes CERT_NONE CERT_REQUIRED
    local srv_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert.is_false(srv_ctx.check_hostname)
    assert.are.equal(ssl.CERT_NONE, srv_ctx.verify_mode)
    srv_ctx.check_hostname = true
    assert.are.equal(ssl.CERT_REQUIRED, srv_ctx.verify_mode)
    assert.matches("^<SSLContext server>$", tostring(srv_ctx))
    fails("SSLContext expected, got table", ctx.load_cert_chain, {}, "x")
  end)

  it("load_cert_chain and load_verify_locations name the file and what is wrong", function()
    local ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    local e = helper.raises(asyncio.FileNotFoundError, ctx.load_cert_chain, ctx, "/nonexistent/cert.pem")
    assert.are.equal("/nonexistent/cert.pem", e.path)
    fails("certfile contains a NUL byte", ctx.load_cert_chain, ctx, "/etc/passwd\0.pem")
    fails("certfile: string expected, got no value", ctx.load_cert_chain, ctx)
    -- not PEM
    e = helper.raises(ssl.SSLError, ctx.load_cert_chain, ctx, "/etc/hostname")
    assert.matches("load_cert_chain '/etc/hostname'", e.message)
    assert.is_string(e.reason)
    -- a key that is not the certificate's
    local c = th.certs()
    e = helper.raises(ssl.SSLError, ctx.load_cert_chain, ctx, c.server.cert, c.other.key)
    assert.are.equal("KEY_VALUES_MISMATCH", e.reason)
    fails("unknown option 'cafle'", ctx.load_verify_locations, ctx, {cafle = c.ca})
    fails("cafile or capath must be given", ctx.load_verify_locations, ctx, {})
    helper.raises(asyncio.FileNotFoundError, ctx.load_verify_locations, ctx, "/nonexistent/ca.pem")
    helper.raises(ssl.SSLError, ctx.load_verify_locations, ctx, "/etc/hostname")
    ctx:load_verify_locations{capath = c.dir}
  end)

  it("set_alpn_protocols refuses what ALPN cannot carry", function()
    local ctx = ssl.create_default_context()
    fails("item 1: non%-empty string", ctx.set_alpn_protocols, ctx, {""})
    fails("item 2: non%-empty string", ctx.set_alpn_protocols, ctx, {"h2", 2})
    fails("item 1: non%-empty string of at most 255 bytes", ctx.set_alpn_protocols, ctx,
      {("x"):rep(256)})
    local many = {}
    for i = 1, 100 do many[i] = "proto" .. i end
    fails("the protocols take over 256 bytes", ctx.set_alpn_protocols, ctx, many)
    fails("table expected", ctx.set_alpn_protocols, ctx, "h2")
    local e = helper.raises(ssl.SSLError, ctx.set_ciphers, ctx, "NO-SUCH-CIPHER")
    assert.are.equal("NO_CIPHER_MATCH", e.reason)
    ctx:set_ciphers("ECDHE+AESGCM")
  end)

  it("writer methods over TLS: write_eof, start_tls twice, start_tls with bad arguments", function()
    local srv <close> = asyncio.start_server(function(r, w) r:read() w:close() end,
      "127.0.0.1", 0, {ssl = th.server_ctx()})
    local r, w = asyncio.open_connection("localhost", srv.port, {ssl = th.client_ctx()})
    assert.is_false(w:can_write_eof())
    fails("a TLS connection cannot be half%-closed", w.write_eof, w)
    local e = helper.raises(asyncio.RuntimeError, w.start_tls, w, th.client_ctx(),
      {server_hostname = "localhost"})
    assert.matches("already uses TLS", e.message)
    fails("bad argument #2 to 'start_tls' %(SSLContext expected, got string%)",
      w.start_tls, w, "ctx")
    fails("unknown option 'hostname'", w.start_tls, w, th.client_ctx(), {hostname = "x"})
    w:close()
    w:wait_closed()
    helper.raises(asyncio.InvalidStateError, w.start_tls, w, th.client_ctx(),
      {server_hostname = "localhost"})
    assert.are.equal("", r:read())
  end)

  it("start_tls checks server_hostname against the context", function()
    local srv <close> = asyncio.start_server(function(r, w) r:read() w:close() end,
      "127.0.0.1", 0)
    local _, w = asyncio.open_connection("127.0.0.1", srv.port)
    local e = helper.raises(asyncio.ValueError, w.start_tls, w, th.client_ctx())
    assert.matches("check_hostname requires server_hostname", e.message)
    helper.raises(asyncio.ValueError, w.start_tls, w, th.server_ctx(), {server_hostname = "x"})
    fails("contains a NUL byte", w.start_tls, w, th.client_ctx(), {server_hostname = "a\0b"})
    w:close()
  end)
end)

describe("TLS against hostile peers", function()
  setup(function() th.certs() end)
  teardown(th.cleanup)
  after_each(helper.no_leaks)

  -- A Python peer on a raw socket running `body` with `c` accepted.
  local function raw_peer(body)
    local p, port = th.python([[
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen()
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
]] .. body)
    return p, tonumber(port)
  end

  it("garbage instead of a ServerHello is an SSLError naming the reason", function()
    local p, port = raw_peer([[
c.recv(4096)
c.sendall(bytes(range(256)) * 4)
time.sleep(2)
]])
    local e = helper.raises(ssl.SSLError, asyncio.open_connection, "localhost", port,
      {ssl = th.client_ctx()})
    assert.is_false(asyncio.is(e, ssl.SSLCertVerificationError))
    assert.is_true(asyncio.is(e, asyncio.OSError))
    assert.matches("^[A-Z0-9_]+$", e.reason)
    assert.matches("%[SSL: " .. e.reason .. "%]", e.message)
    p:kill()
    p:wait()
  end)

  it("a peer that resets mid-handshake is a ConnectionResetError", function()
    local p, port = raw_peer([[
import struct
c.recv(4096)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
]])
    local e = helper.raises(asyncio.ConnectionResetError, asyncio.open_connection,
      "localhost", port, {ssl = th.client_ctx()})
    assert.is_false(asyncio.is(e, ssl.SSLError))
    p:wait()
  end)

  it("a peer that closes mid-handshake is a ConnectionResetError too", function()
    local p, port = raw_peer([[
c.recv(4096)
c.close()
]])
    helper.raises(asyncio.ConnectionResetError, asyncio.open_connection,
      "localhost", port, {ssl = th.client_ctx()})
    p:wait()
  end)

  it("garbage after the handshake: the read raises SSLError", function()
    local p, port = raw_peer([[
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(certs["dir"] + "/server.pem", certs["dir"] + "/server.key")
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
o = ctx.wrap_bio(inc, out, server_side=True)
while True:
    try:
        o.do_handshake()
        break
    except ssl.SSLWantReadError:
        c.sendall(out.read())
        inc.write(c.recv(65536))
c.sendall(out.read())
o.write(b"fine\n")
c.sendall(out.read())
time.sleep(0.2)
c.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
time.sleep(2)
]])
    local r, w = asyncio.open_connection("localhost", port, {ssl = th.client_ctx()})
    assert.are.equal("fine\n", r:readline())
    local e = helper.raises(ssl.SSLError, r.read, r)
    assert.is_string(e.reason)
    w:close()
    p:kill()
    p:wait()
  end)

  it("a lasync server survives clients that send garbage or reset, and serves the next", function()
    local calls = 0
    local srv <close> = asyncio.start_server(function(r, w)
      calls = calls + 1
      w:write("served\n")
      w:close()
    end, "127.0.0.1", 0, {ssl = th.server_ctx()})
    -- plaintext HTTP to a TLS port
    local r1, w1 = asyncio.open_connection("127.0.0.1", srv.port)
    w1:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    local answer = r1:read()
    assert.is_true(#answer < 64) -- at most a TLS alert, never a handler's reply
    assert.is_nil(answer:find("served"))
    w1:close()
    -- a client that resets right away
    local p = th.python(([[
import struct
s = socket.create_connection(("127.0.0.1", %d))
s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc")
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("done", flush=True)
]]):format(srv.port))
    p:wait()
    local r, w = asyncio.open_connection("localhost", srv.port, {ssl = th.client_ctx()})
    assert.are.equal("served\n", r:readline())
    w:close()
    assert.are.equal(1, calls)
  end)

  it("a flooding peer is held to the reader's limit", function()
    local p, port = raw_peer([[
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(certs["dir"] + "/server.pem", certs["dir"] + "/server.key")
t = ctx.wrap_socket(c, server_side=True)
sent = 0
t.settimeout(3)
try:
    while sent < 64 << 20:
        t.sendall(b"f" * 65536)
        sent += 65536
except Exception:
    pass
time.sleep(5)
]])
    local r, w = asyncio.open_connection("localhost", port,
      {ssl = th.client_ctx(), limit = 16 * 1024})
    -- past the limit (later on a loaded machine), reading must stop
    helper.wait_until(function() return r:buffered() > 16 * 1024 end, 10, "the limit to fill")
    asyncio.sleep(0.2)
    local b1 = r:buffered()
    asyncio.sleep(0.3)
    assert.are.equal(b1, r:buffered()) -- reading stopped
    assert.is_true(b1 > 16 * 1024 and b1 <= 16 * 1024 + 64 * 1024, "buffered " .. b1)
    assert.are.equal(("f"):rep(1000), r:readexactly(1000))
    w:close()
    p:kill()
    p:wait()
  end)

  it("abort_clients during a server handshake ends it; nothing leaks", function()
    local srv = asyncio.start_server(function() error("never called") end,
      "127.0.0.1", 0, {ssl = th.server_ctx()})
    local r, w = asyncio.open_connection("127.0.0.1", srv.port) -- never says hello
    asyncio.sleep(0.05)
    srv:close()
    srv:abort_clients()
    srv:wait_closed()
    assert.are.equal("", r:read())
    w:close()
  end)

  it("cancelling start_tls mid-handshake closes the connection", function()
    local srv <close> = asyncio.start_server(function(r, w)
      r:read()
      w:close()
    end, "127.0.0.1", 0)
    local r, w = asyncio.open_connection("127.0.0.1", srv.port)
    local t = asyncio.create_task(w.start_tls, w, th.client_ctx(),
      {server_hostname = "localhost"})
    asyncio.sleep(0.1)
    t:cancel()
    helper.await_cancelled(t)
    assert.is_true(w:is_closing())
    assert.are.equal("", r:read())
  end)

  it("start_tls with a peer that never answers times out", function()
    local hold = asyncio.Event()
    local srv <close> = asyncio.start_server(function(r, w)
      pcall(hold.wait, hold)
      w:close()
    end, "127.0.0.1", 0)
    local _, w = asyncio.open_connection("127.0.0.1", srv.port)
    local e = helper.raises(asyncio.TimeoutError, w.start_tls, w, th.client_ctx(),
      {server_hostname = "localhost", ssl_handshake_timeout = 0.1})
    assert.matches("SSL handshake is taking longer than 0.1", e.message)
    assert.is_true(w:is_closing())
    hold:set()
  end)
end)
