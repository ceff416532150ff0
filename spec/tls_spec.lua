-- TLS streams: lasync against openssl s_server / s_client and Python's ssl
-- module, lasync against itself; verification, ALPN, SNI, client
-- certificates, start_tls, back-pressure and cancellation over TLS.
local helper = require "spec.helper"
local th = require "spec.tlshelper"
local ssl = asyncio.ssl

-- Reads lines from a peer process's stdout until one matches.
local function line_matching(p, pattern)
  for _ = 1, 200 do
    local line = p.stdout:readline()
    if line == "" then return nil end
    if line:match(pattern) then return line end
  end
end

local function stop(p)
  pcall(p.kill, p)
  p:wait()
end

-- A lasync TLS server whose handler is fn; returns the server.
local function tls_server(fn, ctx, opts)
  opts = opts or {}
  opts.ssl = ctx or th.server_ctx()
  return asyncio.start_server(fn, "127.0.0.1", 0, opts)
end

describe("TLS streams", function()
  setup(function() th.certs() end)
  teardown(th.cleanup)
  after_each(helper.no_leaks)

  describe("against openssl s_server", function()
    it("verifies the server, reads and writes lines, and reports the session", function()
      local p, port = th.s_server({})
      local r, w = asyncio.open_connection("localhost", port, {ssl = th.client_ctx()})
      local cipher = w:get_extra_info("cipher")
      assert.are.equal("TLSv1.3", cipher.version)
      assert.are.equal(cipher.name, cipher[1])
      assert.is_true(cipher.bits >= 128)
      local obj = w:get_extra_info("ssl_object")
      assert.are.equal("TLSv1.3", obj:version())
      assert.is_false(obj.server_side)
      assert.are.equal("localhost", obj.server_hostname)
      local cert = w:get_extra_info("peercert")
      assert.are.equal("localhost", cert.subject.commonName)
      assert.are.same({"commonName", "localhost"}, cert.subject[1])
      assert.are.equal("lasync test CA", cert.issuer.commonName)
      assert.are.same({{"DNS", "localhost"}, {"IP Address", "127.0.0.1"}},
                      cert.subjectAltName)
      assert.matches("^%a%a%a [ %d]%d %d%d:%d%d:%d%d %d%d%d%d GMT$", cert.notAfter)
      assert.are.equal(3, cert.version)
      assert.is_table(w:get_extra_info("peername"))
      assert.are.equal("userdata", type(w:get_extra_info("sslcontext")))

      w:write("hello from lasync\n")
      w:drain()
      assert.truthy(line_matching(p, "^hello from lasync"))
      p.stdin:write("hi from s_server\n")
      assert.are.equal("hi from s_server\n", r:readline())
      w:close()
      w:wait_closed()
      stop(p)
    end)

    it("negotiates ALPN with it", function()
      local p, port = th.s_server({"-alpn", "h2,http/1.1"})
      local ctx = th.client_ctx()
      ctx:set_alpn_protocols{"spdy/1", "http/1.1"}
      local _, w = asyncio.open_connection("127.0.0.1", port, {ssl = ctx})
      assert.are.equal("http/1.1", w:get_extra_info("ssl_object"):selected_alpn_protocol())
      w:close()
      stop(p)
    end)

    it("{ssl = true} verifies with the system store: an unknown CA is refused", function()
      local p, port = th.s_server({})
      local err = helper.raises(ssl.SSLCertVerificationError,
        asyncio.open_connection, "localhost", port, {ssl = true})
      assert.are.equal("unable to get local issuer certificate", err.verify_message)
      assert.are.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
      stop(p)
    end)

    it("trusts a CA directory given as capath", function()
      local p, port = th.s_server({})
      local ctx = asyncio.ssl.create_default_context()
      ctx:load_verify_locations{capath = th.certs().capath}
      local r, w = asyncio.open_connection("localhost", port, {ssl = ctx})
      p.stdin:write("via capath\n")
      assert.are.equal("via capath\n", r:readline())
      w:close()
      stop(p)
    end)

    it("a minimum_version the server does not reach is an SSLError", function()
      local p, port = th.s_server({"-tls1_2"})
      local ctx = th.client_ctx()
      ctx.minimum_version = ssl.TLSVersion.TLSv1_3
      local err = helper.raises(ssl.SSLError, asyncio.open_connection, "localhost", port,
        {ssl = ctx})
      assert.are.equal("TLSV1_ALERT_PROTOCOL_VERSION", err.reason)
      stop(p)
    end)

    it("with TLS 1.2 as the maximum, the session is TLS 1.2", function()
      local p, port = th.s_server({"-tls1_2"})
      local ctx = th.client_ctx()
      ctx.maximum_version = ssl.TLSVersion.TLSv1_2
      assert.are.equal("TLSv1_2", ctx.maximum_version)
      local r, w = asyncio.open_connection("localhost", port, {ssl = ctx})
      assert.are.equal("TLSv1.2", w:get_extra_info("ssl_object"):version())
      p.stdin:write("tls12\n")
      assert.are.equal("tls12\n", r:readline())
      w:close()
      stop(p)
    end)
  end)

  describe("against openssl s_client", function()
    it("s_client verifies the lasync server and exchanges data", function()
      local got
      local srv <close> = tls_server(function(r, w)
        got = r:readline()
        w:write("pong " .. got)
        w:close()
      end)
      local p = asyncio.create_subprocess_exec("openssl", {"s_client", "-connect",
        "127.0.0.1:" .. srv.port, "-CAfile", th.certs().ca, "-servername", "localhost",
        "-verify_return_error", "-verify_hostname", "localhost", "-quiet"},
        {stdin = "pipe", stdout = "pipe", stderr = "pipe"})
      p.stdin:write("ping\n")
      local out = p.stdout:read()
      local status = p:wait()
      assert.are.equal("pong ping\n", out)
      assert.are.equal("ping\n", got)
      assert.are.equal(0, status)
    end)

    it("s_client with a client certificate is verified by a server that requires one", function()
      local ctx = th.server_ctx()
      ctx.verify_mode = ssl.CERT_REQUIRED
      ctx:load_verify_locations(th.certs().ca)
      local subject
      local srv <close> = tls_server(function(r, w)
        subject = w:get_extra_info("peercert").subject.commonName
        w:write("ok\n")
        w:close()
      end, ctx)
      local c = th.certs().client
      local p = asyncio.create_subprocess_exec("openssl", {"s_client", "-connect",
        "127.0.0.1:" .. srv.port, "-CAfile", th.certs().ca, "-cert", c.cert,
        "-key", c.key, "-quiet"}, {stdin = "pipe", stdout = "pipe", stderr = "devnull"})
      local out = p.stdout:read()
      p:wait()
      assert.are.equal("ok\n", out)
      assert.are.equal("lasync client", subject)
    end)
  end)

  describe("against Python's ssl module", function()
    it("a Python server sees the SNI name and a clean close_notify", function()
      local p, port = th.python([[
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(certs["dir"] + "/server.pem", certs["dir"] + "/server.key")
ctx.set_alpn_protocols(["x-other", "x-lasync"])
names = []
ctx.sni_callback = lambda s, name, c: names.append(name)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen()
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
t = ctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False)
print("sni", names, t.selected_alpn_protocol(), flush=True)
data = t.recv(100)
t.sendall(data.upper())
try:
    rest = t.recv(100)
    print("clean close", repr(rest), flush=True)
except ssl.SSLEOFError:
    print("ragged eof", flush=True)
]])
      local ctx = th.client_ctx()
      ctx:set_alpn_protocols{"x-lasync"}
      local r, w = asyncio.open_connection("localhost", tonumber(port), {ssl = ctx})
      assert.are.equal("sni ['localhost'] x-lasync\n", p.stdout:readline())
      w:write("shout")
      assert.are.equal("SHOUT", r:readexactly(5))
      w:close()
      w:wait_closed()
      assert.are.equal("clean close b''\n", p.stdout:readline())
      p:wait()
    end)

    it("a Python client verifies the lasync server and gets its ALPN choice", function()
      local ctx = th.server_ctx()
      ctx:set_alpn_protocols{"h2", "http/1.1"}
      local seen
      local srv <close> = tls_server(function(r, w)
        local obj = w:get_extra_info("ssl_object")
        seen = {obj:selected_alpn_protocol(), obj.server_hostname, obj.server_side}
        w:write((r:readline():upper()))
        w:close()
      end, ctx)
      local p, answer = th.python(([[
ctx = ssl.create_default_context(cafile=certs["ca"])
ctx.set_alpn_protocols(["http/1.1", "h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", %d)), server_hostname="localhost")
s.sendall(b"from python\n")
print(s.recv(100).decode().strip(), s.selected_alpn_protocol(), s.version(), flush=True)
]]):format(srv.port))
      assert.are.equal("FROM PYTHON h2 TLSv1.3", answer)
      p:wait()
      assert.are.same({"h2", "localhost", true}, seen)
    end)

    it("a Python server that needs a client certificate accepts lasync's", function()
      local p, port = th.python([[
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(certs["dir"] + "/server.pem", certs["dir"] + "/server.key")
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(certs["ca"])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen()
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
t = ctx.wrap_socket(c, server_side=True)
subj = dict(x[0] for x in t.getpeercert()["subject"])
t.sendall(("hello " + subj["commonName"] + "\n").encode())
t.recv(1)
]])
      local ctx = th.client_ctx()
      local c = th.certs().client
      ctx:load_cert_chain(c.cert, c.key)
      local r, w = asyncio.open_connection("127.0.0.1", tonumber(port), {ssl = ctx,
        server_hostname = "localhost"})
      assert.are.equal("hello lasync client\n", r:readline())
      w:close()
      p:wait()
    end)
  end)

  describe("lasync against lasync", function()
    it("echoes lines and exact sizes; SNI reaches the server", function()
      local sni
      local srv <close> = tls_server(function(r, w)
        sni = w:get_extra_info("ssl_object").server_hostname
        while true do
          local line = r:readline()
          if line == "" then break end
          w:write(line)
        end
        w:close()
      end)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port, {ssl = th.client_ctx(),
        server_hostname = "localhost"})
      w:write("one\ntwo\n")
      assert.are.equal("one\n", r:readline())
      assert.are.equal("two", r:readexactly(3))
      assert.are.equal("\n", r:read(10))
      w:close()
      w:wait_closed()
      assert.are.equal("localhost", sni)
    end)

    it("{ssl = true} is TLS: against a plaintext server it fails, nothing is sent in clear", function()
      local received = ""
      local srv <close> = asyncio.start_server(function(r, w)
        w:write("HTTP/1.1 400 Bad Request\r\n\r\n")
        received = r:read(200)
        w:close()
      end, "127.0.0.1", 0)
      local err = helper.raises(ssl.SSLError, asyncio.open_connection,
        "localhost", srv.port, {ssl = true})
      assert.is_true(asyncio.is(err, asyncio.OSError))
      assert.are.equal("WRONG_VERSION_NUMBER", err.reason)
      assert.matches("%[SSL: WRONG_VERSION_NUMBER%] wrong version number", tostring(err))
      helper.wait_until(function() return received end, 5, "the server's read")
      -- what reached the server was a ClientHello (record type 22), not text
      assert.are.equal(22, received:byte(1))
    end)

    it("a large transfer with back-pressure: drain waits, memory stays bounded", function()
      local total = 8 * 1024 * 1024
      local chunk = ("0123456789abcdef"):rep(4096) -- 64 KiB
      local max_buffered, sent = 0, 0
      local srv <close> = tls_server(function(r, w)
        for _ = 1, total // #chunk do
          w:write(chunk)
          sent = sent + #chunk
          w:drain()
          max_buffered = math.max(max_buffered, w:buffer_size())
        end
        w:close()
      end)
      local r, w = asyncio.open_connection("localhost", srv.port,
        {ssl = th.client_ctx(), limit = 32 * 1024})
      asyncio.sleep(0.3) -- the server fills every buffer meanwhile
      assert.is_true(r:buffered() <= 32 * 1024 + 64 * 1024, "buffered " .. r:buffered())
      -- the server's drain() is holding it back (the kernel buffers some MiB)
      assert.is_true(sent < total, "sent everything without a reader")
      local got, n = 0, 0
      while true do
        local d = r:read(65536)
        if d == "" then break end
        got = got + #d
        n = n + 1
      end
      assert.are.equal(total, got)
      -- drain() resumed at the low-water mark each time: never far above it
      assert.is_true(max_buffered <= 64 * 1024 + 70000, "queued " .. max_buffered)
      w:close()
    end)

    it("a cancelled read loses nothing; the next read gets the data", function()
      local go = asyncio.Event()
      local srv <close> = tls_server(function(r, w)
        go:wait()
        w:write("late data\n")
        r:read()
        w:close()
      end)
      local r, w = asyncio.open_connection("localhost", srv.port, {ssl = th.client_ctx()})
      local t = asyncio.create_task(function() return r:readline() end)
      asyncio.sleep(0.05)
      t:cancel()
      helper.await_cancelled(t)
      go:set()
      assert.are.equal("late data\n", r:readline())
      w:close()
      w:wait_closed()
    end)

    it("start_tls upgrades a plaintext connection on both sides", function()
      local srv_ctx = th.server_ctx()
      local srv <close> = asyncio.start_server(function(r, w)
        assert.are.equal("STARTTLS\n", r:readline())
        w:write("GO\n")
        w:start_tls(srv_ctx)
        assert.are.equal(true, w:get_extra_info("ssl_object").server_side)
        w:write("secret: " .. r:readline())
        w:close()
      end, "127.0.0.1", 0)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      assert.is_nil(w:get_extra_info("cipher"))
      w:write("STARTTLS\n")
      assert.are.equal("GO\n", r:readline())
      w:start_tls(th.client_ctx(), {server_hostname = "localhost"})
      assert.are.equal("TLSv1.3", w:get_extra_info("cipher").version)
      assert.is_false(w:can_write_eof())
      w:write("hunter2\n")
      assert.are.equal("secret: hunter2\n", r:readline())
      assert.are.equal("", r:read())
      w:close()
    end)

    it("bytes written while start_tls's handshake runs are sent encrypted after it", function()
      local srv_ctx = th.server_ctx()
      local got
      local srv <close> = asyncio.start_server(function(r, w)
        r:readline()
        w:start_tls(srv_ctx)
        got = r:readline()
        w:write("ack\n")
        w:close()
      end, "127.0.0.1", 0)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("STARTTLS\n")
      local t = asyncio.create_task(w.start_tls, w, th.client_ctx(),
        {server_hostname = "localhost"})
      asyncio.sleep(0) -- the handshake has started
      w:write("early\n")
      t:await()
      assert.are.equal("ack\n", asyncio.wait_for(asyncio.create_task(r.readline, r),
                                                 5 * helper.slow))
      assert.are.equal("early\n", got)
      w:close()
    end)

    it("a server that requires a client certificate refuses a client without one", function()
      local ctx = th.server_ctx()
      ctx.verify_mode = ssl.CERT_REQUIRED
      ctx:load_verify_locations{cafile = th.certs().ca}
      local called = false
      local srv <close> = tls_server(function() called = true end, ctx)
      -- TLS 1.3: the client's handshake ends first; the server's alert
      -- arrives on the first read
      local ok, err = pcall(function()
        local r, w = asyncio.open_connection("localhost", srv.port, {ssl = th.client_ctx()})
        local _ <close> = w
        return r:read()
      end)
      assert.is_false(ok)
      assert.is_true(asyncio.is(err, ssl.SSLError), tostring(err))
      assert.are.equal("TLSV13_ALERT_CERTIFICATE_REQUIRED", err.reason)
      assert.is_false(called)
    end)

    it("close() with a queued write sends the data, then close_notify", function()
      local got
      local srv <close> = tls_server(function(r, w)
        got = r:read()
        w:close()
      end)
      local _, w = asyncio.open_connection("localhost", srv.port, {ssl = th.client_ctx()})
      w:write(("x"):rep(1024 * 1024))
      w:close()
      w:wait_closed()
      for _ = 1, 100 do
        if got then break end
        asyncio.sleep(0.01)
      end
      assert.are.equal(1024 * 1024, #got)
    end)

    it("<close> on the writer closes the TLS connection", function()
      local srv <close> = tls_server(function(r, w) w:write(r:read()) w:close() end)
      local r
      do
        local rr, w <close> = asyncio.open_connection("localhost", srv.port,
          {ssl = th.client_ctx()})
        r = rr
        w:write("bye")
      end
      assert.are.equal("", r:read())
    end)
  end)

  describe("certificate verification", function()
    local function fails(which, host, opts)
      local srv <close> = tls_server(function() end, th.server_ctx(which))
      opts = opts or {}
      opts.ssl = opts.ssl or th.client_ctx()
      local err = helper.raises(ssl.SSLCertVerificationError,
        asyncio.open_connection, host, srv.port, opts)
      assert.is_true(asyncio.is(err, ssl.SSLError))
      assert.is_true(asyncio.is(err, asyncio.OSError))
      assert.are.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
      return err
    end

    it("an address is checked against the certificate's IP entries and not sent as SNI", function()
      local sni = "unset"
      local srv <close> = tls_server(function(r, w)
        sni = w:get_extra_info("ssl_object").server_hostname
        w:write("ok\n")
        w:close()
      end)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port, {ssl = th.client_ctx()})
      assert.are.equal("ok\n", r:readline())
      assert.are.equal("127.0.0.1", w:get_extra_info("ssl_object").server_hostname)
      w:close()
      assert.is_nil(sni) -- RFC 6066: no literal addresses in SNI
    end)

    it("an expired certificate", function()
      local err = fails("expired", "localhost")
      assert.are.equal("certificate has expired", err.verify_message)
      assert.are.equal(10, err.verify_code)
      assert.matches("certificate verify failed: certificate has expired", err.message)
    end)

    it("a hostname mismatch", function()
      local err = fails("other", "localhost")
      assert.are.equal("Hostname mismatch, certificate is not valid for 'localhost'.",
                       err.verify_message)
    end)

    it("an IP address mismatch", function()
      local err = fails("other", "127.0.0.1")
      assert.are.equal("IP address mismatch, certificate is not valid for '127.0.0.1'.",
                       err.verify_message)
    end)

    it("a self-signed certificate", function()
      local err = fails("self", "localhost")
      assert.are.equal("self-signed certificate", err.verify_message)
    end)

    it("check_hostname = false accepts another name, CERT_NONE a self-signed one", function()
      local srv <close> = tls_server(function(r, w) w:write("in\n") w:close() end,
        th.server_ctx("other"))
      local ctx = th.client_ctx()
      ctx.check_hostname = false
      local r, w = asyncio.open_connection("localhost", srv.port, {ssl = ctx})
      assert.are.equal("in\n", r:readline())
      w:close()
      local srv2 <close> = tls_server(function(r2, w2) w2:write("in\n") w2:close() end,
        th.server_ctx("self"))
      local ctx2 = ssl.create_default_context()
      ctx2.check_hostname = false
      ctx2.verify_mode = ssl.CERT_NONE
      local r2, w2 = asyncio.open_connection("localhost", srv2.port, {ssl = ctx2})
      assert.are.equal("in\n", r2:readline())
      -- Python's rule: no verification, no decoded certificate
      assert.are.same({}, w2:get_extra_info("peercert"))
      w2:close()
    end)
  end)

  describe("handshakes that do not finish", function()
    -- a TCP server that accepts and never answers
    local function silent_server()
      local hold = asyncio.Event()
      return asyncio.start_server(function(r, w)
        pcall(hold.wait, hold)
        w:close()
      end, "127.0.0.1", 0), hold
    end

    it("ssl_handshake_timeout ends a handshake with a peer that never answers", function()
      local srv, hold = silent_server()
      -- the time spent waiting (helper.blocked_clock): the wall time, with
      -- the context's set-up and the handshake's work in it, took 1.2 s at
      -- load 19; a timeout that never fired would wait for ever
      local t0, b0 = asyncio.time(), helper.blocked_clock()
      -- (an address, not "localhost": the name's lookup on the thread pool
      -- took seconds on a loaded machine, and is not the handshake's time)
      local err = helper.raises(asyncio.TimeoutError, asyncio.open_connection,
        "127.0.0.1", srv.port, {ssl = th.client_ctx(), server_hostname = "localhost",
                                ssl_handshake_timeout = 0.2})
      local dt, blocked = asyncio.time() - t0, helper.blocked_clock() - b0
      assert.matches("SSL handshake is taking longer than 0.2", err.message)
      assert.is_true(dt >= 0.19 and blocked < 1 * helper.slow, ("blocked %.2f of %.2f s"):format(blocked, dt))
      hold:set()
      srv:close()
      srv:wait_closed()
    end)

    it("cancelling open_connection mid-handshake raises CancelledError and closes the socket", function()
      local srv, hold = silent_server()
      local t = asyncio.create_task(asyncio.open_connection, "localhost", srv.port,
        {ssl = th.client_ctx()})
      asyncio.sleep(0.1)
      t:cancel()
      helper.await_cancelled(t)
      hold:set()
      srv:close()
      srv:wait_closed()
    end)

    it("a lasync TLS server times out a client that never says hello, and keeps serving", function()
      local calls = 0
      local srv <close> = tls_server(function(r, w)
        calls = calls + 1
        w:write("hi\n")
        w:close()
      end, nil, {ssl_handshake_timeout = 0.2})
      local r0, w0 = asyncio.open_connection("127.0.0.1", srv.port) -- plain TCP, silent
      local t0 = asyncio.time()
      assert.are.equal("", r0:read())  -- the server gave up
      assert.is_true(asyncio.time() - t0 < 1 * helper.slow)
      w0:close()
      local r, w = asyncio.open_connection("localhost", srv.port, {ssl = th.client_ctx()})
      assert.are.equal("hi\n", r:readline())
      w:close()
      assert.are.equal(1, calls)
    end)
  end)
end)
