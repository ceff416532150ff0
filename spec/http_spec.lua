-- asyncio.http against real servers on 127.0.0.1: nginx (static files,
-- redirects, keep-alive) and the python test server (chunked, slow,
-- never-answering, echo, concurrency counter, TLS with a self-signed
-- certificate made by openssl at test time).
local helper = require "spec.helper"
local servers = require "spec.http_servers"
local http = require "asyncio.http"

local BIG = 5 * 1024 * 1024

local function rss_kib()
  local s = servers.read_file("/proc/self/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- the stream's iterator called once more after the end
local function core_read_again(r)
  local f, x = r:iter_chunks()
  return f(x)
end

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

describe("asyncio.http", function()
  local py, ng
  local hello = "hello, world\n"

  setup(function()
    py = servers.start_python{tls = true}
    ng = servers.start_nginx{["hello.txt"] = hello, ["ten.bin"] = ("0123456789"):rep(1024)}
  end)

  teardown(function()
    if py then py.stop() end
    if ng then ng.stop() end
  end)

  after_each(helper.no_leaks)

  describe("fetch", function()
    it("gets a static file from nginx: status, reason, url, body, headers", function()
      local r = http.fetch(ng.url .. "/hello.txt")
      assert.are.equal(200, r.status)
      assert.are.equal("OK", r.reason)
      assert.are.equal(ng.url .. "/hello.txt", r.url)
      assert.are.equal(hello, r.body)
      assert.are.equal(hello, r:text())
      assert.are.equal(tostring(#hello), r.headers["content-length"])
      assert.are.equal(tostring(#hello), r.headers["Content-Length"])
      assert.are.equal(tostring(#hello), r.headers["CONTENT-LENGTH"])
      assert.matches("^nginx", r.headers.server)
      assert.is_nil(r.headers["x-not-there"])
    end)

    it("follows redirects to the final url by default", function()
      local r = http.fetch(ng.url .. "/hop1")
      assert.are.equal(200, r.status)
      assert.are.equal(ng.url .. "/hello.txt", r.url)
      assert.are.equal(hello, r.body)
    end)

    it("returns the redirect itself with follow_redirects=false", function()
      local r = http.fetch(ng.url .. "/redirect", {follow_redirects = false})
      assert.are.equal(302, r.status)
      assert.are.equal(ng.url .. "/redirect", r.url)
      assert.matches("/hello.txt$", r.headers.location)
    end)

    it("raises too_many_redirects past max_redirects and on a loop", function()
      local e = err_of(http.fetch, ng.url .. "/hop1", {max_redirects = 1})
      assert.is_true(asyncio.is(e, http.Error))
      assert.are.equal("too_many_redirects", e.kind)
      assert.are.equal(ng.url .. "/hop1", e.url)
      assert.are.equal(hello, http.fetch(ng.url .. "/hop1", {max_redirects = 3}).body)
      local e2 = err_of(http.fetch, ng.url .. "/loop")
      assert.are.equal("too_many_redirects", e2.kind)
      assert.matches("HTTPError", tostring(e2))
    end)

    it("reuses keep-alive connections across fetches (default session)", function()
      local a = http.fetch(ng.url .. "/hello.txt")
      local b = http.fetch(ng.url .. "/ten.bin")
      local c = http.fetch(ng.url .. "/hello.txt")
      assert.are.equal(a.headers["x-conn"], b.headers["x-conn"])
      assert.are.equal(a.headers["x-conn"], c.headers["x-conn"])
      assert.are.equal(10240, #b.body)
    end)

    it("treats 4xx/5xx as responses; raise_for_status raises http.StatusError", function()
      local r = http.fetch(ng.url .. "/missing.txt")
      assert.are.equal(404, r.status)
      assert.are.equal("Not Found", r.reason)
      local e = err_of(r.raise_for_status, r)
      assert.is_true(asyncio.is(e, http.StatusError))
      assert.is_true(asyncio.is(e, http.Error))
      assert.are.equal(404, e.status)
      assert.are.equal(ng.url .. "/missing.txt", e.url)
      assert.matches("404", tostring(e))
      local r5 = http.fetch(py.url .. "/status/503")
      assert.are.equal(503, r5.status)
      assert.are.equal("status 503", r5.body)
      local ok = http.fetch(ng.url .. "/hello.txt")
      assert.are.equal(ok, ok:raise_for_status())
    end)

    it("sends method, headers, a string body, a query table", function()
      local r = http.fetch(py.url .. "/echo", {
        method = "put", body = "raw \0 bytes", query = {q = "a b&c", n = 1},
        headers = {["X-Test"] = "yes", ["Content-Type"] = "text/plain"}})
      local j = r:json()
      assert.are.equal("PUT", j.method)
      assert.are.equal("raw \0 bytes", j.body)
      assert.are.equal("n=1&q=a+b%26c", j.query)
      assert.are.equal("yes", j.headers["x-test"])
      assert.are.equal("text/plain", j.headers["content-type"])
      assert.are.equal("application/json", r.headers["content-type"])
    end)

    it("json() on a body that is not JSON names the URL and the content type", function()
      local r = http.fetch(ng.url .. "/hello.txt")
      local ok, err = pcall(r.json, r)
      assert.is_false(ok)
      assert.is_true(asyncio.is(err, http.Error))
      assert.are.equal("json", err.kind)
      assert.are.equal(r.url, err.url)
      assert.matches("hello.txt: the body is not JSON %(content type: " .. r.headers["content-type"]:gsub("%p", "%%%0"), err.message)
    end)

    it("encodes a table body as a form and json= as JSON", function()
      local j = http.fetch(py.url .. "/echo", {method = "POST", body = {b = "x y", a = {"1", "2"}}}):json()
      assert.are.equal("a=1&a=2&b=x+y", j.body)
      assert.are.equal("application/x-www-form-urlencoded", j.headers["content-type"])
      local j2 = http.fetch(py.url .. "/echo", {method = "POST", json = {k = {1, 2}}}):json()
      assert.are.equal('{"k":[1,2]}', j2.body)
      assert.are.equal("application/json", j2.headers["content-type"])
    end)

    it("has HEAD and DELETE, and POST without a body", function()
      local s = http.Session()
      local h = s:head(ng.url .. "/ten.bin")
      assert.are.equal(200, h.status)
      assert.are.equal("", h.body)
      assert.are.equal("10240", h.headers["content-length"])
      assert.are.equal("DELETE", s:delete(py.url .. "/echo"):json().method)
      local p = s:post(py.url .. "/echo"):json()
      assert.are.equal("POST", p.method)
      assert.are.equal("", p.body)
      s:close()
    end)

    it("lists repeated headers with get_all and items", function()
      local r = http.fetch(py.url .. "/cookies")
      assert.are.same({"a=1; Path=/", "b=2; Path=/"}, r.headers:get_all("Set-Cookie"))
      assert.are.equal("a=1; Path=/, b=2; Path=/", r.headers["set-cookie"])
      local names = {}
      for name in r.headers:items() do names[#names + 1] = name end
      assert.are.same({"Set-Cookie", "Set-Cookie"}, {names[#names - 1], names[#names]})
      assert.are.same({}, r.headers:get_all("x-none"))
    end)
  end)

  describe("errors", function()
    it("connect: a closed port", function()
      local e = err_of(http.fetch, "http://127.0.0.1:1/x")
      assert.is_true(asyncio.is(e, http.Error))
      assert.are.equal("connect", e.kind)
      assert.are.equal("http://127.0.0.1:1/x", e.url)
      assert.is_string(e.message)
    end)

    it("invalid_url: a bad scheme or a malformed url", function()
      assert.are.equal("invalid_url", err_of(http.fetch, "ftp://127.0.0.1/").kind)
      assert.are.equal("invalid_url", err_of(http.fetch, "http://[::1/").kind)
    end)

    it("dns: a name that does not resolve", function()
      local e = err_of(http.fetch, "http://no-such-host.invalid/", {timeout = 10})
      assert.are.equal("dns", e.kind)
    end)

    it("timeout: a server that never answers", function()
      local t0 = asyncio.time()
      local e = err_of(http.fetch, py.url .. "/never", {timeout = 0.3})
      local dt = asyncio.time() - t0
      assert.are.equal("timeout", e.kind)
      assert.is_true(dt >= 0.25 and dt < 2 * helper.slow, "took " .. dt)
    end)

    it("reset: the connection closes without an answer", function()
      assert.are.equal("reset", err_of(http.fetch, py.url .. "/drop").kind)
    end)

    it("body_too_large: max_body caps a body, known length or not", function()
      local e = err_of(http.fetch, py.url .. "/bytes?n=100000", {max_body = 1000})
      assert.are.equal("body_too_large", e.kind)
      local e2 = err_of(http.fetch, py.url .. "/chunked?n=10&size=500", {max_body = 1000})
      assert.are.equal("body_too_large", e2.kind)
      assert.are.equal(5000, #http.fetch(py.url .. "/chunked?n=10&size=500", {max_body = 5000}).body)
    end)

    it("misuse raises with Lua's wording", function()
      assert.has_error(function() http.fetch(42) end,
        "bad argument #1 to 'fetch' (string expected, got number)")
      local ok, e = pcall(http.fetch, ng.url, {timeuot = 1})
      assert.is_false(ok)
      assert.matches("unknown option 'timeuot'", e)
      assert.has_error(function() http.Session{limit = -1} end)
    end)
  end)

  describe("TLS", function()
    it("rejects a self-signed certificate by default (kind tls)", function()
      local e = err_of(http.fetch, py.tls_url .. "/echo")
      assert.are.equal("tls", e.kind)
      assert.matches("certificate", e.message)
    end)

    it("accepts it with verify=false or with its cafile", function()
      assert.are.equal("GET", http.fetch(py.tls_url .. "/echo", {verify = false}):json().method)
      assert.are.equal(200, http.fetch(py.tls_url .. "/echo", {cafile = py.cert}).status)
      local s <close> = http.Session{cafile = py.cert}
      assert.are.equal(200, s:get(py.tls_url .. "/echo").status)
    end)
  end)

  describe("concurrency", function()
    it("100 concurrent fetches of a 100 ms endpoint overlap (serially they take 10 s)", function()
      http.fetch(py.url .. "/reset")
      local t0 = asyncio.time()
      local fns = {}
      for i = 1, 100 do
        -- each answer waits (up to 10 s) until 50 are at the server
        fns[i] = function() return http.fetch(py.url .. "/inflight?ms=100&until=50").status end
      end
      local res = asyncio.gather(table.unpack(fns))
      local dt = asyncio.time() - t0
      assert.are.equal(100, #res)
      for i = 1, 100 do assert.are.equal(200, res[i]) end
      assert.is_true(dt >= 0.1, "took " .. dt)
      -- overlap, counted by the server (a bound of 2 s on the wall time
      -- failed at 2.3 s on a loaded machine; one at a time would be 10 s)
      local max = http.fetch(py.url .. "/stats"):json().max
      assert.is_true(max >= 50, max .. " at once at most")
    end)

    it("a Session with limit=5 never has more than 5 requests at the server", function()
      http.fetch(py.url .. "/reset")
      local s <close> = http.Session{limit = 5}
      local fns = {}
      for i = 1, 20 do
        fns[i] = function() return s:get(py.url .. "/inflight?ms=50").status end
      end
      local t0 = asyncio.time()
      asyncio.gather(table.unpack(fns))
      local dt = asyncio.time() - t0
      local st = http.fetch(py.url .. "/stats"):json()
      assert.are.equal(5, st.max)
      assert.is_true(dt >= 0.2, "4 rounds of 50 ms took " .. dt)
      assert.are.equal(0, s:stats().inflight)
    end)

    it("requests beyond the limit wait first come, first served", function()
      local s <close> = http.Session{limit = 1}
      local log = helper.log()
      local fns = {}
      for i = 1, 4 do
        fns[i] = function()
          s:get(py.url .. "/slow?ms=" .. (40 - i * 10))
          log.add(i)
        end
      end
      asyncio.gather(table.unpack(fns))
      assert.are.equal("1 2 3 4", log.str())
    end)
  end)

  describe("streaming", function()
    it("returns at the headers and yields chunks as they come", function()
      local t0 = asyncio.time()
      local r <close> = http.fetch(py.url .. "/chunked?n=4&size=3&delay_ms=100", {stream = true})
      local t_headers = asyncio.time() - t0
      assert.are.equal(200, r.status)
      assert.is_nil(r.body)
      local chunks, times = {}, {}
      for chunk in r:iter_chunks() do
        chunks[#chunks + 1] = chunk
        times[#times + 1] = asyncio.time() - t0
      end
      assert.are.equal("aaabbbcccddd", table.concat(chunks))
      assert.is_true(#chunks >= 3, "chunks: " .. #chunks)
      assert.is_true(t_headers < 0.09 * helper.slow + 0.05, "headers after " .. t_headers)
      assert.is_true(times[#times] >= 0.3, "last chunk at " .. times[#times])
      assert.is_nil(r:iter_chunks()(r._xfer)) -- stays at the end
    end)

    it("text() reads the rest of a stream", function()
      local r = http.fetch(py.url .. "/chunked?n=3&size=2", {stream = true})
      assert.are.equal("aabbcc", r:text())
      assert.are.equal("aabbcc", r.body)
    end)

    it("a 5 MiB download read slowly holds memory flat (curl is paused)", function()
      collectgarbage()
      local lua0, rss0 = collectgarbage("count"), rss_kib()
      local r <close> = http.fetch(py.url .. "/bytes?n=" .. BIG, {stream = true})
      local total, biggest, lua_peak, rss_peak = 0, 0, 0, 0
      for chunk in r:iter_chunks() do
        total = total + #chunk
        if #chunk > biggest then biggest = #chunk end
        chunk = nil
        collectgarbage()
        lua_peak = math.max(lua_peak, collectgarbage("count") - lua0)
        rss_peak = math.max(rss_peak, rss_kib() - rss0)
        asyncio.sleep(0.002)
      end
      assert.are.equal(BIG, total)
      assert.is_true(biggest <= 300 * 1024, "biggest chunk " .. biggest)
      assert.is_true(lua_peak < 1024, "Lua heap grew by KiB " .. lua_peak)
      -- RSS means nothing under ASan (quarantine) or valgrind
      if helper.slow == 1 then
        assert.is_true(rss_peak < 3 * 1024, "RSS grew by KiB " .. rss_peak)
      end
    end)

    it("save() streams a body to a file", function()
      local path = helper.tmpname(".bin")
      local r = http.fetch(py.url .. "/bytes?n=" .. BIG, {stream = true})
      assert.are.equal(BIG, r:save(path))
      local data = servers.read_file(path)
      os.remove(path)
      assert.are.equal(BIG, #data)
      assert.are.equal(("x"):rep(100), data:sub(-100))
      -- a plain response saves its body too
      local path2 = helper.tmpname(".txt")
      assert.are.equal(#hello, http.fetch(ng.url .. "/hello.txt"):save(path2))
      assert.are.equal(hello, servers.read_file(path2))
      os.remove(path2)
    end)

    it("save() raises asyncio.fs's OSError for a bad path (the class fs.open gives)", function()
      local r = http.fetch(ng.url .. "/hello.txt", {stream = true})
      local e = helper.raises(asyncio.FileNotFoundError, r.save, r, "/nonexistent-dir/x/y")
      assert.is_true(asyncio.is(e, asyncio.OSError))
      assert.are.equal("ENOENT", e.code)
      assert.are.equal("open", e.op)
      assert.are.equal("/nonexistent-dir/x/y", e.path)
      r:close()
    end)

    it("cancelling save() at any point leaves nothing behind", function()
      for delay = 0, 3 do
        local path = helper.tmpname(".bin")
        local r = http.fetch(py.url .. "/chunked?n=3&size=2&delay_ms=50", {stream = true})
        local t = asyncio.create_task(function() return r:save(path) end)
        for _ = 0, delay do asyncio.sleep(0) end
        t:cancel()
        local ok, e = pcall(t.await, t)
        assert.is_false(ok)
        assert.is_true(asyncio.is(e, asyncio.CancelledError))
        r:close()
        os.remove(path)
      end
      asyncio.sleep(0.01)
    end)

    it("a closed stream raises when read", function()
      local r = http.fetch(py.url .. "/bytes?n=" .. BIG, {stream = true})
      r:close()
      local e = helper.raises(asyncio.InvalidStateError,
        function() for _ in r:iter_chunks() do end end)
      assert.matches("the response is closed", tostring(e))
      helper.raises(asyncio.InvalidStateError, r.read, r)
      r:close() -- closing again is harmless
    end)

    it("closing a stream another task is reading wakes that task with InvalidStateError", function()
      -- the body takes 6 s: still coming at the close, however loaded the machine
      local r = http.fetch(py.url .. "/chunked?n=3&size=2&delay_ms=2000", {stream = true})
      local reader = asyncio.create_task(function() return r:read() end)
      asyncio.sleep(0.05)
      r:close()
      local e = err_of(reader.await, reader)
      assert.is_true(asyncio.is(e, asyncio.InvalidStateError), tostring(e))
      assert.matches("the response is closed", tostring(e))
    end)

    it("a stream read to its end gives nil again, until it is closed", function()
      local r = http.fetch(py.url .. "/chunked?n=2&size=3", {stream = true})
      local n = 0
      for chunk in r:iter_chunks() do n = n + #chunk end
      assert.are.equal(6, n)
      assert.is_nil(core_read_again(r))
      r:close()
      helper.raises(asyncio.InvalidStateError, function() for _ in r:iter_chunks() do end end)
    end)

    it("a stream whose session closes raises kind closed, then InvalidStateError", function()
      local s = http.Session()
      local r = s:get(py.url .. "/chunked?n=3&size=2&delay_ms=2000", {stream = true})
      local reader = asyncio.create_task(function() return r:read() end)
      asyncio.sleep(0.05)
      s:close()
      local e = err_of(reader.await, reader)
      assert.are.equal("closed", e.kind)
      helper.raises(asyncio.InvalidStateError, r.read, r)
    end)
  end)

  describe("JSON", function()
    local BIG = 9007199254740993 -- 2^53 + 1: not a double

    local function q(text) return py.url .. "/json?text=" .. http.url.quote(text, "") end

    it("json() gives integers as integers and floats as floats", function()
      local v = http.fetch(q("[9007199254740993, 1.0, 2, -5, 1e3, 0.5, -9223372036854775808]")):json()
      assert.are.equal(BIG, v[1])
      assert.are.equal("integer", math.type(v[1]))
      assert.are.same({"float", "integer", "integer", "float", "float", "integer"},
        {math.type(v[2]), math.type(v[3]), math.type(v[4]), math.type(v[5]),
         math.type(v[6]), math.type(v[7])})
      assert.are.equal(math.mininteger, v[7])
    end)

    it("json = bodies keep integers whole: Python reads them back as the same ints and floats", function()
      local r = http.fetch(py.url .. "/json_types", {method = "POST",
        json = {big = BIG, neg = -BIG, small = 3, f = 0.5, whole = 2.0, s = "x", t = true}})
      local j = r:json()
      assert.are.same({big = "int", neg = "int", small = "int", f = "float", whole = "float",
                       s = "str", t = "bool"}, j.types)
      assert.are.equal("9007199254740993", j.repr.big)
      assert.are.equal("-9007199254740993", j.repr.neg)
      assert.are.equal("2.0", j.repr.whole)
      -- and what Python wrote back decodes to the same Lua values
      assert.are.equal(BIG, j.echo.big)
      assert.are.equal("integer", math.type(j.echo.big))
      assert.are.equal("float", math.type(j.echo.whole))
    end)

    it("null is http.null both ways; trailing data is not JSON", function()
      local v = http.fetch(q('{"a": null, "b": [null, 1]}')):json()
      assert.are.equal(http.null, v.a)
      assert.are.equal(http.null, v.b[1])
      assert.are.equal("null", tostring(http.null))
      local j = http.fetch(py.url .. "/echo", {method = "POST", json = {x = http.null}}):json()
      assert.are.equal('{"x":null}', j.body)
      local e = err_of(function() return http.fetch(q("[1] x")):json() end)
      assert.are.equal("json", e.kind)
    end)

    it("http.set_json{} is the codec of every request and response without one", function()
      local calls = {}
      http.set_json{
        encode = function(v) calls[#calls + 1] = "enc"; return "<" .. v.k .. ">" end,
        decode = function(s) calls[#calls + 1] = "dec"; return {text = s} end,
      }
      local ok, err = pcall(function()
        local r = http.fetch(py.url .. "/echo", {method = "POST", json = {k = "v"}})
        local body = r:json().text -- the custom decode
        assert.matches('"body": "<v>"', body)
      end)
      http.set_json(nil)
      assert(ok, err)
      assert.are.same({"enc", "dec"}, calls)
      assert.are.equal("integer", math.type(http.fetch(q("2")):json())) -- the default again
    end)

    it("a request's json_codec, then its session's, then the global one", function()
      local function tag(name) return {decode = function() return name end} end
      local s <close> = http.Session{json_codec = tag("session")}
      assert.are.equal("session", s:get(q("1")):json())
      assert.are.equal("request", s:get(q("1"), {json_codec = tag("request")}):json())
      s:set_json(tag("set"))
      assert.are.equal("set", s:get(q("1")):json())
      s:set_json(nil)
      assert.are.equal(1, s:get(q("1")):json())
      -- a codec with one side only: the other side is the next one down
      local j = s:post(py.url .. "/echo", {json = {1}, json_codec = {decode = function(t) return #t end}})
      assert.is_true(j:json() > 0)
    end)

    it("refuses bad codecs and values it cannot encode, naming the option", function()
      helper.fails_with("bad argument #1 to 'set_json' %(the codec must be a table", http.set_json, "x")
      helper.fails_with("'encode' must be a function", http.set_json, {encode = 5})
      helper.fails_with("unknown option 'parse' in the codec", http.set_json, {parse = print})
      local s <close> = http.Session()
      helper.fails_with("bad argument #1 to 'set_json' %(the codec must be a table", s.set_json, s, 5)
      helper.fails_with("bad argument #2 to 'fetch' %(option 'json_codec' must be a table",
        http.fetch, py.url .. "/echo", {json_codec = true})
      helper.fails_with("bad argument #1 to 'Session' %(unknown option 'x' in option 'json_codec'",
        http.Session, {json_codec = {x = 1}})
      helper.fails_with("bad argument #2 to 'fetch' %(option 'json' cannot be encoded",
        http.fetch, py.url .. "/echo", {method = "POST", json = {f = print}})
      helper.fails_with("option 'json' cannot be encoded: the codec gave a number",
        http.fetch, py.url .. "/echo", {method = "POST", json = 1, json_codec = {encode = function() return 5 end}})
    end)
  end)

  describe("sessions", function()
    it("applies base_url and merges session and request headers", function()
      local s <close> = http.Session{base_url = py.url .. "/api/", headers = {["X-A"] = "1", ["X-B"] = "s"}}
      local r = s:get("../echo", {headers = {["x-b"] = "r"}})
      local j = r:json()
      assert.are.equal(py.url .. "/echo", r.url)
      assert.are.equal("1", j.headers["x-a"])
      assert.are.equal("r", j.headers["x-b"])
      assert.are.equal("POST", s:request("post", "/echo", {body = "b"}):json().method)
    end)

    it("applies the session timeout to its requests", function()
      local s <close> = http.Session{timeout = 0.2}
      assert.are.equal("timeout", err_of(s.get, s, py.url .. "/never").kind)
    end)

    it("close() fails requests in flight with kind closed; later use raises InvalidStateError", function()
      local s = http.Session()
      local t = asyncio.create_task(function() return s:get(py.url .. "/never") end)
      asyncio.sleep(0.05)
      s:close()
      local e = err_of(t.await, t)
      assert.are.equal("closed", e.kind)
      e = helper.raises(asyncio.InvalidStateError, s.get, s, py.url .. "/echo")
      assert.matches("the session is closed", tostring(e))
      helper.raises(asyncio.InvalidStateError, s.stats, s)
    end)

    it("keeps connections alive in a Session", function()
      local s <close> = http.Session{limit = 2}
      local first = s:get(ng.url .. "/hello.txt").headers["x-conn"]
      for _ = 1, 5 do
        assert.are.equal(first, s:get(ng.url .. "/hello.txt").headers["x-conn"])
      end
    end)
  end)

  describe("cancellation", function()
    it("cancelling a fetch removes the transfer; the session keeps working", function()
      local s <close> = http.Session{limit = 2}
      local t = asyncio.create_task(function() return s:get(py.url .. "/never") end)
      asyncio.sleep(0.05)
      assert.are.equal(1, s:stats().running)
      t:cancel()
      local e = err_of(t.await, t)
      assert.is_true(asyncio.is(e, asyncio.CancelledError))
      assert.are.equal(0, s:stats().running)
      assert.are.equal(0, s:stats().inflight)
      assert.are.equal(hello, s:get(ng.url .. "/hello.txt").body)
    end)

    it("close() fails the requests waiting for a slot too, with kind closed", function()
      local s = http.Session{limit = 1}
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = asyncio.create_task(function() return s:get(py.url .. "/never") end)
      end
      asyncio.sleep(0.05)
      assert.are.equal(2, s:stats().waiting)
      s:close()
      for i = 1, 3 do
        local e = err_of(tasks[i].await, tasks[i])
        assert.is_true(asyncio.is(e, http.Error), tostring(e))
        assert.are.equal("closed", e.kind)
      end
    end)

    it("cancelling a request waiting for a slot frees its place in line", function()
      local s <close> = http.Session{limit = 1}
      local a = asyncio.create_task(function() return s:get(py.url .. "/slow?ms=100").status end)
      local b = asyncio.create_task(function() return s:get(py.url .. "/slow?ms=10").status end)
      local c = asyncio.create_task(function() return s:get(py.url .. "/slow?ms=10").status end)
      asyncio.sleep(0) -- one turn: all three have asked (a fixed sleep could outlast a's 100 ms)
      assert.are.equal(2, s:stats().waiting)
      b:cancel()
      assert.are.same({200, 200}, {a:await(), c:await()})
      assert.is_true(b:cancelled())
    end)

    it("cancelling a stream reader leaves the response usable; cancel mid-stream frees it", function()
      -- chunks 0.3 s apart: the cancel after 0.05 s comes before the last
      local r = http.fetch(py.url .. "/chunked?n=3&size=2&delay_ms=300", {stream = true})
      local got = {}
      local t = asyncio.create_task(function()
        for c in r:iter_chunks() do got[#got + 1] = c end
      end)
      asyncio.sleep(0.05)
      t:cancel()
      pcall(t.await, t)
      assert.is_true(t:cancelled())
      assert.is_true(#got < 3)
      assert.are.equal("aabbcc", table.concat(got) .. r:text())
      local t2 = asyncio.create_task(function()
        local r2 <close> = http.fetch(py.url .. "/bytes?n=" .. BIG, {stream = true})
        for _ in r2:iter_chunks() do asyncio.sleep(0.01) end
      end)
      asyncio.sleep(0.05)
      t2:cancel()
      assert.is_true(asyncio.is(err_of(t2.await, t2), asyncio.CancelledError))
      assert.are.equal(0, http.default_session():stats().running)
    end)
  end)

  describe("the process", function()
    it("exits when the main task ends even with idle keep-alive connections", function()
      local t0 = os.time()
      local out, err, status = helper.run_script(([[
        local http = require "asyncio.http"
        print(http.fetch(%q).status)
      ]]):format(ng.url .. "/hello.txt"))
      assert.are.equal(0, status, err)
      assert.are.equal("200\n", out)
      assert.is_true(os.time() - t0 < 5 * helper.slow)  -- not the keep-alive timeout
    end)

    it("names lua-dkjson when json() cannot find it", function()
      local out, err, status = helper.run_script(([[
        package.preload.dkjson = function() error("not installed") end
        local http = require "asyncio.http"
        local ok, e = pcall(function() return http.fetch(%q):json() end)
        print(ok, e)
      ]]):format(py.url .. "/echo"))
      assert.are.equal(0, status, err)
      assert.matches("false.*lua%-dkjson", out)
    end)
  end)
end)
