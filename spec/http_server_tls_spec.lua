-- asyncio.http.server over TLS with clients in the same process: a
-- lasync TLS stream and asyncio.http.fetch against serve(..., {tls =}),
-- and a client that stalls mid-handshake while the loop goes on.
-- Certificates come from `openssl req` (spec/tlshelper.lua).
local helper = require "spec.helper"
local http = require "asyncio.http"
local tlshelper = require "spec.tlshelper"
local webhelper = require "spec.webhelper"
local with_server = webhelper.with_server

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- serve()'s tls option with the self-signed localhost certificate.
local function pem_opts()
  local c = tlshelper.certs().self
  return {tls = {cert = slurp(c.cert), key = slurp(c.key)}}
end

local function self_client_ctx()
  local ctx = asyncio.ssl.create_default_context()
  ctx:load_verify_locations{cafile = tlshelper.certs().self.cert}
  return ctx
end

local function echo(req)
  return {headers = {["X-Method"] = req.method},
          body = req.method .. " " .. req.path .. " " .. req:body()}
end

describe("asyncio.http.server over TLS, clients in the same process", function()
  teardown(function() tlshelper.cleanup() end)
  after_each(function() helper.no_leaks() end)

  it("answers a lasync TLS stream (handshake, two keep-alive requests)", function()
    with_server(echo, function(srv)
      local _ <close> = asyncio.timeout(10 * helper.slow)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port,
        {ssl = self_client_ctx(), server_hostname = "localhost"})
      assert.are.equal("TLSv1.3", w:get_extra_info("ssl_object"):version())
      w:write("GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
      local head = r:readuntil("\r\n\r\n")
      assert.truthy(head:match("^HTTP/1.1 200 OK\r\n"))
      local len = tonumber(head:lower():match("content%-length: (%d+)"))
      assert.are.equal("GET /one ", r:readexactly(len))
      w:write("POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n" ..
              "Connection: close\r\n\r\nabc")
      local rest = r:read()
      while true do
        local more = r:read()
        if more == "" then break end
        rest = rest .. more
      end
      assert.truthy(rest:match("\r\n\r\nPOST /two abc$"), rest)
      w:close()
    end, pem_opts())
  end)

  it("is fetched by asyncio.http.fetch (https://, the certificate as cafile)", function()
    with_server(echo, function(srv)
      local _ <close> = asyncio.timeout(10 * helper.slow)
      local base = ("https://localhost:%d"):format(srv.port)
      local cafile = tlshelper.certs().self.cert
      for i = 1, 3 do
        local res = http.fetch(base .. "/f" .. i,
          {method = "POST", body = "b" .. i, cafile = cafile})
        assert.are.equal(200, res.status)
        assert.are.equal("POST", res.headers["x-method"])
        assert.are.equal("POST /f" .. i .. " b" .. i, res:text())
      end
      -- and an untrusted certificate is still refused
      local ok, err = pcall(http.fetch, base .. "/", {})
      assert.is_false(ok)
      assert.truthy(tostring(err):lower():match("certificate"), tostring(err))
    end, pem_opts())
  end)

  it("keeps the loop running while a client stalls in the handshake", function()
    with_server(echo, function(srv)
      -- half a ClientHello record, then nothing: libmicrohttpd asks to run
      -- again at once until the handshake is done
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("\22\3\1\2\0\1\0\1\252\3\3" .. ("x"):rep(40))
      local t0, c0 = asyncio.time(), os.clock()
      asyncio.sleep(0.3)
      local took = asyncio.time() - t0
      local cpu = os.clock() - c0
      assert.is_true(took < 2 * helper.slow, "the loop froze for " .. took .. " s")
      -- waiting a millisecond between runs, not spinning
      assert.is_true(cpu < 0.25 * helper.slow, "cpu " .. cpu .. " s in 0.3 s")
      -- other clients are served meanwhile
      local res = http.fetch(("https://127.0.0.1:%d/ok"):format(srv.port),
        {verify = false, timeout = 10 * helper.slow})
      assert.are.equal("GET /ok ", res:text())
      w:close()
    end, pem_opts())
  end)
end)
