-- asyncio.http against a hostile server (spec/fixtures/hostile_server.py on
-- 127.0.0.1): endless bodies, a gzip bomb, oversized and blank-stuffed
-- headers, CR/LF injection attempts, keep-alive connections that the
-- server closes or drops without saying so.
local helper = require "spec.helper"
local servers = require "spec.http_servers"
local http = require "asyncio.http"
local cjson = require "cjson"

local MiB = 1024 * 1024

local err_of = helper.error_of

local function peak_rss_kib()
  local s = servers.read_file("/proc/self/status") or ""
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

describe("asyncio.http against a hostile server", function()
  local hs

  setup(function() hs = servers.start_hostile() end)
  teardown(function() if hs then hs.stop() end end)
  after_each(helper.no_leaks)

  -- The server's counters, read on a session of their own.
  local function stats()
    local s <close> = http.Session()
    return cjson.decode(s:get(hs.url .. "/stats").body)
  end
  local function requests(st, key) return st.requests[key] or 0 end
  local function total(st)
    local n = 0
    for k, v in pairs(st.requests) do if k ~= "GET /stats" then n = n + v end end
    return n
  end

  describe("body size", function()
    it("an endless body stops at the default max_body (64 MiB), memory bounded", function()
      local before = peak_rss_kib()
      local e = err_of(http.fetch, hs.url .. "/endless", {timeout = 60 * helper.slow})
      assert.is_true(asyncio.is(e, http.Error))
      assert.are.equal("body_too_large", e.kind)
      assert.matches("larger than max_body %(67108864 bytes%)", e.message)
      assert.are.equal(hs.url .. "/endless", e.url)
      -- (the sanitizers keep freed blocks for a while: more room there)
      assert.is_true(peak_rss_kib() - before < 100 * 1024 * helper.slow,
        "peak RSS grew by more than 100 MiB")
    end)

    it("an endless chunked body stops at a smaller max_body", function()
      local e = err_of(http.fetch, hs.url .. "/endless_chunked",
        {max_body = MiB, timeout = 30 * helper.slow})
      assert.are.equal("body_too_large", e.kind)
      assert.matches("%(1048576 bytes%)", e.message)
    end)

    it("a gzip bomb is counted decoded: 100 MiB of zeros in ~100 KB hits the cap", function()
      local e = err_of(http.fetch, hs.url .. "/gzip_bomb?mib=100", {timeout = 60 * helper.slow})
      assert.are.equal("body_too_large", e.kind)
      -- 2 MiB decoded, ~2 KB on the wire: the cap counts what is decoded
      local e2 = err_of(http.fetch, hs.url .. "/gzip_bomb?mib=2", {max_body = MiB})
      assert.are.equal("body_too_large", e2.kind)
      local r = http.fetch(hs.url .. "/gzip_bomb?mib=2", {max_body = 2 * MiB})
      assert.are.equal(2 * MiB, #r.body)
      assert.are.equal(("\0"):rep(16), r.body:sub(-16))
    end)

    it("max_body=false lifts the cap; a session default applies to its requests", function()
      local r = http.fetch(hs.url .. "/gzip_bomb?mib=3", {max_body = false})
      assert.are.equal(3 * MiB, #r.body)
      local s <close> = http.Session{max_body = 1000}
      assert.are.equal("body_too_large", err_of(s.get, s, hs.url .. "/length?n=1001").kind)
      assert.are.equal(1000, #s:get(hs.url .. "/length?n=1000").body)
      -- the request's own option wins over the session's
      assert.are.equal(5000, #s:get(hs.url .. "/length?n=5000", {max_body = 5000}).body)
    end)

    it("a declared Content-Length over the cap is refused; max_body=0 allows only empty", function()
      local e = err_of(http.fetch, hs.url .. "/length?n=" .. 10 * MiB, {max_body = MiB})
      assert.are.equal("body_too_large", e.kind)
      assert.matches("max_body", e.message)
      assert.are.equal("", http.fetch(hs.url .. "/length?n=0", {max_body = 0}).body)
      assert.are.equal("body_too_large",
        err_of(http.fetch, hs.url .. "/length?n=1", {max_body = 0}).kind)
    end)

    it("a stream is not capped; reading it whole is", function()
      local r <close> = http.fetch(hs.url .. "/endless_chunked", {stream = true, max_body = MiB})
      local n = 0
      for chunk in r:iter_chunks() do
        n = n + #chunk
        if n > 3 * MiB then break end
      end
      assert.is_true(n > 3 * MiB)
      r:close()
      local r2 <close> = http.fetch(hs.url .. "/endless_chunked", {stream = true, max_body = MiB})
      local e = err_of(r2.read, r2)
      assert.is_true(asyncio.is(e, http.Error))
      assert.are.equal("body_too_large", e.kind)
    end)
  end)

  describe("headers", function()
    it("more than 256 KiB of response headers raises headers_too_large", function()
      local e = err_of(http.fetch, hs.url .. "/headers?kib=300")
      assert.is_true(asyncio.is(e, http.Error))
      assert.are.equal("headers_too_large", e.kind)
      assert.matches("256 KiB", e.message)
      local r = http.fetch(hs.url .. "/headers?kib=200")
      assert.are.equal(("f"):rep(1000), r.headers["x-fill-199"])
    end)

    it("one header line over curl's 100 KiB raises headers_too_large too", function()
      local e = err_of(http.fetch, hs.url .. "/blank_header?n=150000")
      assert.are.equal("headers_too_large", e.kind)
      assert.matches("header line is longer than 100 KiB", e.message)
    end)

    it("a header of 90000 blanks parses in linear time", function()
      local t0 = asyncio.time()
      local r = http.fetch(hs.url .. "/blank_header?n=90000")
      assert.are.equal("a" .. (" "):rep(90000) .. "b", r.headers["x-blank"])
      assert.is_true(asyncio.time() - t0 < 5 * helper.slow, "too slow")
      -- straight to the parser: 4 MB of blanks, lines without a colon
      local raw = "HTTP/1.1 200 OK\r\nX: a" .. (" "):rep(2 * MiB) .. "b  \r\n"
        .. ("no colon here\r\n"):rep(50000) .. "Y:" .. (" \t"):rep(MiB) .. "\r\n:\r\n\r\n"
      t0 = asyncio.time()
      local h = http.parse_headers(raw)
      assert.are.equal(2 * MiB + 2, #h.x)
      assert.are.equal("", h.y)
      assert.is_true(asyncio.time() - t0 < 5 * helper.slow, "too slow")
      -- 100000 folded continuation lines are joined once, not one by one
      raw = "HTTP/1.1 200 OK\r\nX-F: a\r\n" .. ("  " .. ("c"):rep(20) .. " \r\n"):rep(100000)
        .. "\tz\r\nY: 1\r\n\r\n"
      t0 = asyncio.time()
      h = http.parse_headers(raw)
      assert.are.equal(1 + 21 * 100000 + 2, #h["x-f"])
      assert.are.equal("a " .. ("c"):rep(20) .. " ", h["x-f"]:sub(1, 23))
      assert.are.equal(" z", h["x-f"]:sub(-2))
      assert.are.equal("1", h.y)
      assert.is_true(asyncio.time() - t0 < 5 * helper.slow, "too slow")
    end)
  end)

  describe("CR, LF and NUL in what is sent", function()
    local cases = {
      {"url", function() return http.fetch(hs.url .. "/echo\r\nX-Evil: 1") end,
        "bad argument #1 to 'fetch' %(url contains a CR, LF or NUL byte%)"},
      {"url with NUL", function() return http.fetch(hs.url .. "/echo\0.txt") end,
        "bad argument #1 to 'fetch' %(url contains a CR, LF or NUL byte%)"},
      {"method", function() return http.fetch(hs.url .. "/echo", {method = "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET"}) end,
        "bad argument #2 to 'fetch' %(method contains a CR, LF or NUL byte%)"},
      {"method with a blank", function() return http.fetch(hs.url .. "/echo", {method = "GET /admin"}) end,
        "bad argument #2 to 'fetch' %(method \"GET /admin\" is not an HTTP token%)"},
      {"header value", function() return http.fetch(hs.url .. "/echo", {headers = {["X-A"] = "1\r\nX-Evil: 1"}}) end,
        "bad argument #2 to 'fetch' %(header 'X%-A' contains a CR, LF or NUL byte%)"},
      {"header value with NUL", function() return http.fetch(hs.url .. "/echo", {headers = {["X-A"] = "1\0"}}) end,
        "header 'X%-A' contains a CR, LF or NUL byte"},
      {"header value in a list", function() return http.fetch(hs.url .. "/echo", {headers = {["X-A"] = {"ok", "2\nX-Evil: 1"}}}) end,
        "header 'X%-A' contains a CR, LF or NUL byte"},
      {"header name", function() return http.fetch(hs.url .. "/echo", {headers = {["X-Evil: 1\r\nX-A"] = "1"}}) end,
        "bad argument #2 to 'fetch' %(header name contains a CR, LF or NUL byte%)"},
      {"header name with a colon", function() return http.fetch(hs.url .. "/echo", {headers = {["X-Evil: 1"] = "1"}}) end,
        "header name \"X%-Evil: 1\" is not an HTTP token"},
      {"query string", function() return http.fetch(hs.url .. "/echo", {query = "a=1\r\nX-Evil: 1"}) end,
        "bad argument #2 to 'fetch' %(query contains a CR, LF or NUL byte%)"},
      {"proxy", function() return http.fetch(hs.url .. "/echo", {proxy = "http://p\r\n:1"}) end,
        "option 'proxy' contains a CR, LF or NUL byte"},
      {"session:get", function()
          local s <close> = http.Session()
          return s:get(hs.url .. "/echo", {headers = {A = "\n"}})
        end, "bad argument #2 to 'get' %(header 'A' contains a CR, LF or NUL byte%)"},
      {"session:request method", function()
          local s <close> = http.Session()
          return s:request("GET\r\n", hs.url .. "/echo")
        end, "bad argument #1 to 'request' %(method contains a CR, LF or NUL byte%)"},
      {"session:request url", function()
          local s <close> = http.Session()
          return s:request("GET", hs.url .. "/echo\n")
        end, "bad argument #2 to 'request' %(url contains a CR, LF or NUL byte%)"},
      {"Session headers", function() return http.Session{headers = {A = "1\r\nB: 2"}} end,
        "bad argument #1 to 'Session' %(header 'A' contains a CR, LF or NUL byte%)"},
      {"Session base_url", function() return http.Session{base_url = hs.url .. "/\r\n"} end,
        "bad argument #1 to 'Session' %(base_url contains a CR, LF or NUL byte%)"},
    }
    for _, c in ipairs(cases) do
      it("refuses them in the " .. c[1] .. ", before anything is sent", function()
        local before = total(stats())
        local e = err_of(c[2])
        assert.matches(c[3], tostring(e))
        assert.are.equal(before, total(stats()))
      end)
    end

    it("the error points at the caller's line", function()
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, e = pcall(function() http.fetch(hs.url, {method = "A\nB"}) end)
      assert.is_false(ok)
      assert.matches("http_hostile_spec.lua:" .. line .. ": bad argument #2 to 'fetch'", e)
    end)

    -- Each check below runs in another part of the module (bindings/
    -- http_*.lua), some several calls deep: the error names the caller's
    -- line all the same, and no part's chunk name leaks into it.
    it("errors from every part of the module point at the caller's line", function()
      local function line_of(f) return helper.arg_error_line(f, "http_hostile_spec%.lua") end
      local s <close> = http.Session()
      local here = debug.getinfo(1, "l").currentline
      assert.are.equal(here + 1, line_of(function() local r = http.fetch(hs.url, {retry = {count = -1}}) return r end))
      assert.are.equal(here + 2, line_of(function() local r = s:get(hs.url, {headers = {["a b"] = "1"}}) return r end))
      assert.are.equal(here + 3, line_of(function() local r = s:post(hs.url, {body = {{1}, 2}}) return r end))
      assert.are.equal(here + 4, line_of(function() local r = http.Session{json_codec = {encode = 1}} return r end))
      assert.are.equal(here + 5, line_of(function() local r = http.url.build{scheme = 1} return r end))
      assert.are.equal(here + 6, line_of(function() local r = http.url.encode_query{a = {}, [{}] = 1} return r end))
      assert.are.equal(here + 7, line_of(function() local r = s:request("GET", hs.url, {method = "PUT"}) return r end))
    end)

    it("headers that are fine still reach the server as given", function()
      local r = http.fetch(hs.url .. "/echo", {method = "get", headers = {["X-Tab"] = "a\tb", ["X-N"] = 5}})
      assert.matches("^GET /echo HTTP/1.1\r\n", r.body)
      assert.matches("\r\nX%-Tab: a\tb\r\n", r.body)
      assert.matches("\r\nX%-N: 5\r\n", r.body)
    end)
  end)

  describe("options", function()
    it("unknown keys raise in Session{}, fetch and every session method", function()
      assert.matches("bad argument #1 to 'Session' %(unknown option 'limt'%)",
        tostring(err_of(http.Session, {limt = 5})))
      assert.matches("bad argument #1 to 'Session' %(unknown option 'ssl'%)",
        tostring(err_of(http.Session, {ssl = true})))
      assert.matches("bad argument #2 to 'fetch' %(unknown option 'max_bdy'%)",
        tostring(err_of(http.fetch, hs.url, {max_bdy = 1})))
      local s <close> = http.Session()
      assert.matches("bad argument #2 to 'post' %(unknown option 'jsn'%)",
        tostring(err_of(s.post, s, hs.url, {jsn = {}})))
      assert.matches("bad argument #3 to 'request' %(unknown option '1'%)",
        tostring(err_of(s.request, s, "GET", hs.url, {"positional"})))
      assert.matches("bad argument #2 to 'fetch' %(option 'max_body' must be",
        tostring(err_of(http.fetch, hs.url, {max_body = "big"})))
    end)
  end)

  describe("keep-alive connections the server closes", function()
    it("a connection closed after each answer, unannounced, is replaced", function()
      local st0 = stats()
      local s <close> = http.Session()
      for _, m in ipairs{"GET", "HEAD", "PUT", "DELETE", "POST", "GET"} do
        local r = s:request(m, hs.url .. "/close_after")
        assert.are.equal(200, r.status)
        asyncio.sleep(0.01) -- the server's FIN arrives while the connection is idle
      end
      local st = stats()
      assert.are.equal(6, st.connections - st0.connections - 1) -- - the stats session
      assert.are.equal(st0.dropped, st.dropped)
    end)

    for _, m in ipairs{"GET", "HEAD", "PUT", "DELETE", "OPTIONS"} do
      it(m .. " on a reused connection the server drops is sent again once, on another", function()
        local key = m .. " /drop_reused"
        local st0 = stats()
        local s <close> = http.Session()
        assert.are.equal(200, s:request(m, hs.url .. "/drop_reused").status)
        local r = s:request(m, hs.url .. "/drop_reused", {body = m == "PUT" and "data" or nil})
        assert.are.equal(200, r.status)
        if m ~= "HEAD" then assert.are.equal("first on its connection", r.body) end
        local st = stats()
        assert.are.equal(3, requests(st, key) - requests(st0, key))
        assert.are.equal(1, st.dropped - st0.dropped)
      end)
    end

    for _, m in ipairs{"POST", "PATCH"} do
      it(m .. " on a reused connection the server drops is never sent again", function()
        local key = m .. " /drop_reused"
        local st0 = stats()
        local s <close> = http.Session()
        assert.are.equal(200, s:request(m, hs.url .. "/drop_reused", {body = "one"}).status)
        local e = err_of(s.request, s, m, hs.url .. "/drop_reused", {body = "two"})
        assert.is_true(asyncio.is(e, http.Error))
        assert.are.equal("reset", e.kind)
        assert.matches("not idempotent", e.message)
        local st = stats()
        assert.are.equal(2, requests(st, key) - requests(st0, key))
        assert.are.equal(1, st.dropped - st0.dropped)
        -- the session goes on with a fresh connection
        assert.are.equal(200, s:request(m, hs.url .. "/drop_reused", {body = "three"}).status)
      end)
    end

    it("a POST redirected by a 303 goes on as a GET, which is sent again", function()
      local st0 = stats()
      local s <close> = http.Session()
      assert.are.equal(200, s:get(hs.url .. "/drop_reused").status)
      -- the POST and then the GET it becomes go on the same connection:
      -- the GET is dropped and sent again on a new one
      local r = s:post(hs.url .. "/see_other?to=/drop_reused", {body = "x"})
      assert.are.equal(200, r.status)
      assert.are.equal("first on its connection", r.body)
      local st = stats()
      assert.are.equal(1, requests(st, "POST /see_other") - requests(st0, "POST /see_other"))
      assert.are.equal(3, requests(st, "GET /drop_reused") - requests(st0, "GET /drop_reused"))
      assert.are.equal(1, st.dropped - st0.dropped)
    end)

    it("an idempotent request is sent again only once, even with more pooled connections", function()
      local s <close> = http.Session()
      -- three connections in the pool
      local tasks = {}
      for i = 1, 3 do tasks[i] = asyncio.create_task(function() return s:get(hs.url .. "/echo").status end) end
      assert.are.same({200, 200, 200}, asyncio.gather(table.unpack(tasks)))
      local st0 = stats()
      http.fetch(hs.url .. "/drop_all_on")
      local ok, e = pcall(s.get, s, hs.url .. "/echo")
      http.fetch(hs.url .. "/drop_all_off")
      assert.is_false(ok)
      assert.are.equal("reset", e.kind)
      assert.matches("failed again", e.message)
      local st = stats()
      assert.are.equal(2, st.dropped - st0.dropped) -- curl alone: 3 reused + 1 fresh
      assert.are.equal(200, s:get(hs.url .. "/echo").status)
    end)
  end)
end)
