-- asyncio.redis over TLS (rediss://) against Debian's redis-server 7.0,
-- which is built with TLS: its TLS port uses a certificate of the test CA
-- (spec/tlshelper.lua makes them with the openssl CLI).  The plain port
-- stays open for the observer that checks what the server saw.
local helper = require "spec.helper"
local servers = require "spec.redis_servers"
local tlshelper = require "spec.tlshelper"
local redis = require "asyncio.redis"

local srv, tls_port, tls_url, ctx

local function tls(extra)
  local o = {ssl = ctx}
  for k, v in pairs(extra or {}) do o[k] = v end
  return redis.connect(tls_url, o)
end

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "an error was expected")
  return e
end

-- A redis-server with a TLS port too, whose certificate is c[cert]
-- ("server": of the test CA); auth_clients: "no" or "yes".  Returns the
-- server and its rediss:// URL.
local function start_tls(cert, auth_clients)
  local c = tlshelper.certs()
  local port
  -- a function: a TLS port taken before redis-server binds it makes it
  -- exit, and servers.start tries again with new ports
  local s = servers.start{args = function()
    port = servers.free_port()
    return {"--tls-port", tostring(port),
      "--tls-cert-file", c[cert].cert, "--tls-key-file", c[cert].key,
      "--tls-ca-cert-file", c.ca, "--tls-auth-clients", auth_clients}
  end}
  return s, "rediss://127.0.0.1:" .. port, port
end

setup(function()
  srv, tls_url, tls_port = start_tls("server", "no")
  ctx = tlshelper.client_ctx()
end)
teardown(function()
  srv.cleanup()
  tlshelper.cleanup()
end)

describe("redis over TLS", function()
  after_each(function() helper.no_leaks() end)

  it("runs commands, binary-safe, on the TLS port (rediss://, the db of the URL)", function()
    local r = redis.connect(tls_url .. "/2", {ssl = ctx})
    assert.are.equal("OK", r:set("k", "a\0b\r\n\255"))
    assert.are.equal("a\0b\r\n\255", r:get("k"))
    assert.are.equal(3, r:incrby("n", 3))
    local big = ("0123456789abcdef"):rep(64 * 1024) -- 1 MiB: many TLS records
    r:set("big", big)
    assert.are.equal(big, r:get("big"))
    r:close()
    local obs = redis.connect(srv.url .. "/2") -- plain port, same server
    assert.are.equal("a\0b\r\n\255", obs:get("k"))
    obs:flushdb()
    obs:close()
  end)

  it("the TLS port speaks only TLS: a plaintext client there fails", function()
    local r = redis.connect("redis://127.0.0.1:" .. tls_port,
      {connect_timeout = 2, retries = 0, timeout = 2})
    local e = err_of(r.ping, r)
    assert.is_true(asyncio.is(e, redis.ConnectionError))
    r:close()
  end)

  it("pipelines concurrent commands on one TLS connection", function()
    local r = tls()
    r:del("ctr")
    local got, tasks = {}, {}
    for i = 1, 200 do
      tasks[i] = asyncio.create_task(function() got[i] = r:incr("ctr") end)
    end
    asyncio.gather(table.unpack(tasks))
    local seen = {}
    for i = 1, 200 do seen[got[i]] = true end
    for v = 1, 200 do assert.is_true(seen[v], "missing reply " .. v) end
    assert.are.equal("200", r:get("ctr"))
    r:del("ctr")
    r:close()
  end)

  it("pub/sub: messages in order, and thousands queued while nobody reads", function()
    local s = tls()
    local pub = redis.connect(srv.url)
    local sub = s:subscribe("news")
    assert.are.equal(1, pub:publish("news", "one"))
    pub:publish("news", "two\0bin")
    local m = sub:next()
    assert.are.same({"message", "news", "one"}, {m.kind, m.channel, m.data})
    assert.are.equal("two\0bin", sub:next().data)
    -- more than the connection queues before it stops reading (1024)
    local N = 3000
    for i = 1, N do pub:publish("news", tostring(i)) end
    for i = 1, N do assert.are.equal(tostring(i), sub:next().data) end
    sub:unsubscribe()
    assert.is_nil(sub:next())
    assert.are.equal("PONG", s:ping())
    sub:close()
    s:close()
    pub:close()
  end)

  it("a connection the server drops is reconnected over TLS", function()
    local r = tls()
    r:call("CLIENT", "SETNAME", "victim")
    local obs = redis.connect(srv.url)
    assert.are.equal(1, obs:call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
    asyncio.sleep(0.05)
    -- the next command finds the connection gone and opens another
    local ok = pcall(r.ping, r)
    if not ok then assert.are.equal("PONG", r:ping()) end
    assert.are.equal("PONG", r:ping())
    r:close()
    obs:close()
  end)
end)

describe("redis TLS verification", function()
  after_each(function() helper.no_leaks() end)

  it("an unknown CA (ssl = true, the system store) is SSLCertVerificationError, not retried", function()
    local t0 = asyncio.time()
    local e = err_of(redis.connect, tls_url, {retries = 3, retry_delay = 5 * helper.slow})
    assert.is_true(asyncio.is(e, asyncio.ssl.SSLCertVerificationError))
    assert.are.equal("CERTIFICATE_VERIFY_FAILED", e.reason)
    -- redis-server sends the test CA along: a self-signed root nobody trusts
    assert.matches("self%-signed certificate in certificate chain", e.verify_message)
    assert.is_true(asyncio.time() - t0 < 4 * helper.slow, "retried a refused certificate")
  end)

  it("a name the certificate does not cover is refused (server_hostname)", function()
    local e = err_of(tls, {server_hostname = "other.example"})
    assert.is_true(asyncio.is(e, asyncio.ssl.SSLCertVerificationError))
    assert.matches("Hostname mismatch", e.verify_message)
    -- the name it does cover passes, though the address is an IP
    local r = tls{server_hostname = "localhost"}
    assert.are.equal("PONG", r:ping())
    r:close()
  end)

  it("a self-signed server certificate is refused", function()
    local other, url = start_tls("self", "no")
    local e = err_of(redis.connect, url, {ssl = ctx})
    other.cleanup()
    assert.is_true(asyncio.is(e, asyncio.ssl.SSLCertVerificationError))
    assert.matches("self%-signed certificate", e.verify_message)
  end)
end)

describe("redis TLS client certificates", function()
  it("a server that asks for one (tls-auth-clients yes) accepts the context's", function()
    local c = tlshelper.certs()
    local other, url = start_tls("server", "yes")
    local with = tlshelper.client_ctx()
    with:load_cert_chain(c.client.cert, c.client.key)
    local r = redis.connect(url, {ssl = with})
    local ok, pong = pcall(r.ping, r)
    r:close()
    -- without one the server ends the connection (TLS 1.3: after the handshake)
    local ok2, e = pcall(function()
      local r2 = redis.connect(url, {ssl = ctx, retries = 0})
      local _ <close> = r2
      return r2:ping()
    end)
    other.cleanup()
    assert.is_true(ok, tostring(pong))
    assert.are.equal("PONG", pong)
    assert.is_false(ok2)
    assert.is_true(asyncio.is(e, redis.ConnectionError) or asyncio.is(e, asyncio.ssl.SSLError),
      tostring(e))
    helper.no_leaks()
  end)
end)

describe("redis TLS options (hostile)", function()
  it("rejects a wrong ssl, a server context, TLS options without TLS, unix paths", function()
    local e = err_of(redis.connect, tls_url, {ssl = 42})
    assert.matches("ssl", tostring(e))
    assert.matches("connect", tostring(e))
    local sctx = tlshelper.server_ctx()
    e = err_of(redis.connect, tls_url, {ssl = sctx})
    assert.matches("server's", tostring(e))
    e = err_of(redis.connect, srv.url, {server_hostname = "localhost"})
    assert.matches("only meaningful with ssl", tostring(e))
    e = err_of(redis.connect, "unix:" .. srv.socket, {ssl = ctx})
    assert.matches("unix", tostring(e))
    e = err_of(redis.connect, tls_url, {ssl = ctx, server_hostname = "a\0b"})
    assert.matches("NUL", tostring(e))
    e = err_of(redis.connect, tls_url, {ssl = ctx, sslx = true})
    assert.matches("unknown option 'sslx'", tostring(e))
    -- ssl = false over rediss:// would be plaintext: refused
    e = err_of(redis.connect, "rediss://127.0.0.1:1", {ssl = false})
    assert.matches("rediss", tostring(e))
  end)

  it("a server that never answers the handshake times out (ssl_handshake_timeout)", function()
    local silent = asyncio.start_server(function(_, w)
      asyncio.sleep(5 * helper.slow) -- past the bound below: only the timeout ends it sooner
      w:close()
    end, "127.0.0.1", 0)
    local t0 = asyncio.time()
    local e = err_of(redis.connect, "rediss://127.0.0.1:" .. silent.port,
      {ssl = ctx, ssl_handshake_timeout = 0.2, retries = 0})
    assert.is_true(asyncio.is(e, redis.ConnectionError))
    assert.is_true(asyncio.time() - t0 < 2 * helper.slow)
    silent:close()
  end)
end)
