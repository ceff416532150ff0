-- The course server (scripts/lib/http_server.lua, on asyncio.http.server
-- and so libmicrohttpd) against hostile clients:
-- oversized request lines and headers, forged Content-Length values,
-- Transfer-Encoding smuggling, malformed lines, out-of-range parameters,
-- too many connections, clients that stall.  Raw sockets on 127.0.0.1.
local helper = require "spec.helper"
local http = require "asyncio.http"

package.path = "scripts/lib/?.lua;" .. package.path
local http_server = require "http_server"

-- Sends data on a new connection and reads until the server closes it;
-- returns every status it answered (in order) and the raw reply.
local function exchange(srv, data, wait)
  local r, w = asyncio.open_connection("127.0.0.1", srv.port)
  w:write(data)
  pcall(w.drain, w)
  local reply, ok = require("spec.webhelper").read_all(r, wait)
  w:close()
  local statuses = {}
  for code in ("\n" .. reply):gmatch("\nHTTP/1%.1 (%d%d%d) ") do statuses[#statuses + 1] = tonumber(code) end
  return statuses, reply, ok
end

local function request(target, headers, extra)
  return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n%s")
    :format(target, headers or "", extra or "")
end

local function status_of(srv, data)
  local statuses, reply = exchange(srv, data)
  -- libmicrohttpd 0.9.75 sends the status line and headers of its own
  -- error answers twice before closing: one status, however often
  for i = 2, #statuses do
    assert.are.equal(statuses[1], statuses[i], "one answer expected, got: " .. reply:sub(1, 200))
  end
  assert.is_true(#statuses >= 1, "one answer expected, got: " .. reply:sub(1, 200))
  return statuses[1], reply
end

describe("the course server against hostile clients", function()
  local srv

  setup(function() srv = http_server.start() end)
  teardown(function() if srv then srv:close() end end)
  after_each(function()
    -- whatever came before, it still serves
    assert.are.equal(200, http.fetch(srv.url .. "/page/ok", {headers = {Connection = "close"}}).status)
    for _ = 1, 3 do asyncio.sleep(0) end
    -- busted's task and the server's dispatcher
    assert.are.equal(2, #asyncio.all_tasks(), "tasks left behind")
  end)

  it("answers a plain request", function()
    local status, reply = status_of(srv, request("/page/hi"))
    assert.are.equal(200, status)
    assert.matches("<title>hi</title>", reply)
  end)

  describe("size limits", function()
    it("a request line over 8 KiB is 414", function()
      assert.are.equal(414, status_of(srv, request("/" .. ("a"):rep(100000))))
      -- a line that never ends
      assert.are.equal(414, status_of(srv, "GET /" .. ("b"):rep(200000)))
    end)

    it("a header line over the 32 KiB head is 431; 20 KB within it pass", function()
      assert.are.equal(431, status_of(srv, request("/", "X-Big: " .. ("x"):rep(40000) .. "\r\n")))
      assert.are.equal(200, status_of(srv, request("/", "X-Big: " .. ("x"):rep(20000) .. "\r\n")))
    end)

    it("header lines are bounded by the head's bytes (431), not counted", function()
      assert.are.equal(431, status_of(srv, request("/", ("X-A: 1\r\n"):rep(5000))))
      assert.are.equal(200, status_of(srv, request("/", ("X-A: 1\r\n"):rep(150))))
    end)

    it("a header block over 32 KiB is 431", function()
      local line = "X-Fill: " .. ("f"):rep(1000) .. "\r\n"
      assert.are.equal(431, status_of(srv, request("/", line:rep(40))))
      assert.are.equal(200, status_of(srv, request("/", line:rep(20))))
    end)

    it("a body over 1 MiB is 413, answered before it is read", function()
      local t0 = asyncio.time()
      assert.are.equal(413, status_of(srv, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n"
        .. ("z"):rep(1000)))
      assert.is_true(asyncio.time() - t0 < 3 * helper.slow)
      assert.are.equal(413, status_of(srv, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
        .. ("9"):rep(40) .. "\r\n\r\n"))
    end)

    it("header values full of blanks are trimmed in linear time", function()
      local t0 = asyncio.time()
      local line = "X-Blank: a" .. (" "):rep(7000) .. "b" .. (" "):rep(800) .. "\r\n"
      assert.are.equal(200, status_of(srv, request("/", line:rep(4))))
      assert.is_true(asyncio.time() - t0 < 2 * helper.slow, "too slow")
    end)
  end)

  describe("Content-Length and Transfer-Encoding", function()
    local function post(cl_lines, body)
      return "POST /page/x HTTP/1.1\r\nHost: a\r\n" .. cl_lines .. "Connection: close\r\n\r\n" .. (body or "")
    end

    for _, bad in ipairs{"-1", "0x10", "1e3", "+5", "5 5", "5, 5", "abc", "", " ", "5.0", "٥"} do
      it(("refuses Content-Length %q with 400"):format(bad), function()
        assert.are.equal(400, status_of(srv, post("Content-Length: " .. bad .. "\r\n", "hello")))
      end)
    end

    it("accepts a plain one, leading zeros included", function()
      assert.are.equal(200, status_of(srv, post("Content-Length: 5\r\n", "hello")))
      assert.are.equal(200, status_of(srv, post("Content-Length: 005\r\n", "hello")))
    end)

    it("refuses two Content-Length fields, even equal ones", function()
      assert.are.equal(400, status_of(srv, post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")))
      assert.are.equal(400, status_of(srv, post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello")))
    end)

    it("a chunked body is read; with a Content-Length it is 400 (no smuggling)", function()
      assert.are.equal(200, status_of(srv, post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")))
      local before = srv.requests
      -- the classic CL.TE smuggle: a second request hidden in the body
      local statuses = exchange(srv, "POST /page/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG" .. request("/page/smuggled"))
      assert.are.same({400}, statuses)
      assert.are.equal(before, srv.requests)
    end)
  end)

  describe("malformed requests", function()
    local cases = {
      {"garbage", "GARBAGE\r\n\r\n", nil}, -- closed without a word
      {"a request line without a version", "GET /\r\n\r\n", 400},
      -- libmicrohttpd ends the target at a NUL: "/a", which is not a page
      {"a NUL in the target", "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 404},
      {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
      {"an unknown method", "BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
      {"a method that is not a token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"a header line without a colon", request("/", "NoColon\r\n"), 400},
      {"a blank before the colon", request("/", "X-A : 1\r\n"), 400},

      {"a control byte in a value", request("/", "X-A: 1\0012\r\n"), 400},
      {"DEL in a value", request("/", "X-A: 1\1272\r\n"), 400},
      {"a bare CR in a value", request("/", "X-A: 1\r2\r\n"), 400},
      {"no Host in HTTP/1.1", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400},
      {"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400},
      {"HTTP/1.0 without Host (allowed)", "GET /page/old HTTP/1.0\r\n\r\n", 200},
    }
    for _, c in ipairs(cases) do
      it(("%s: %s"):format(c[1], c[3] or "closed"), function()
        if c[3] then
          assert.are.equal(c[3], status_of(srv, c[2]))
        else
          local statuses, reply = exchange(srv, c[2])
          assert.are.same({}, statuses, reply)
        end
      end)
    end
  end)

  describe("parameters", function()
    it("size= must be plain digits up to 4 MiB", function()
      for _, bad in ipairs{"99999999999", "-1", "0x10", "1e3", "nan", "inf", ("9"):rep(400), "4194305"} do
        assert.are.equal(400, status_of(srv, request("/image/a.png?size=" .. bad)), bad)
      end
      local status, reply = status_of(srv, request("/image/a.png?size=100"))
      assert.are.equal(200, status)
      assert.are.equal(100, #reply:match("\r\n\r\n(.*)$"))
      assert.are.equal(200, status_of(srv, request("/image/a.png?size=3")))
    end)

    it("delay= must be a plain number up to 30 s", function()
      for _, bad in ipairs{"1e9", "31", "inf", "nan", "-1", "0x1"} do
        assert.are.equal(400, status_of(srv, request("/page/a?delay=" .. bad)), bad)
      end
      assert.are.equal(200, status_of(srv, request("/page/a?delay=0.01")))
    end)

    it("user_ids are bounded in count and size", function()
      local many = ("1,"):rep(1001)
      assert.are.equal(400, status_of(srv, request("/method/users.get?access_token=t&user_ids=" .. many)))
      assert.are.equal(400, status_of(srv, request("/method/users.get?access_token=t&user_ids=1e999")))
      local status, reply = status_of(srv, request("/method/users.get?access_token=t&user_ids=1,2"))
      assert.are.equal(200, status)
      assert.matches('"first_name"', reply)
    end)

    it("the image cache stays bounded whatever names and sizes are asked for", function()
      local s <close> = http.Session{headers = {Connection = "close"}}
      for i = 1, 3 * http_server.CACHE_MAX do
        assert.are.equal(200, s:get(("%s/image/n%d.png?size=%d"):format(srv.url, i, 100 + i)).status)
      end
      assert.is_true(http_server.image_cache_size() <= http_server.CACHE_MAX)
      -- the same name gives the same bytes, cached or not
      local a = s:get(srv.url .. "/image/n1.png?size=101").body
      assert.are.equal(http_server.image_bytes("n1.png", 101), a)
    end)

    it("a page name is escaped into the HTML", function()
      local _, reply = status_of(srv, request("/page/<script>"))
      assert.is_nil(reply:find("<script>", 1, true))
      assert.matches("&#60;script&#62;", reply)
    end)
  end)

  it("start{} refuses unknown options", function()
    local ok, e = pcall(http_server.start, {max_conections = 5})
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'start' %(unknown option 'max_conections'%)", e)
  end)

  describe("connections", function()
    it("pipelined requests are answered in order", function()
      local two = "GET /page/one HTTP/1.1\r\nHost: a\r\n\r\n" .. request("/page/two")
      local statuses, reply = exchange(srv, two)
      assert.are.same({200, 200}, statuses)
      assert.is_true(reply:find("<title>one</title>", 1, true) < reply:find("<title>two</title>", 1, true))
    end)

    it("over max_connections a connection is not served", function()
      local small <close> = http_server.start{max_connections = 2}
      local r1, w1 = asyncio.open_connection("127.0.0.1", small.port)
      local r2, w2 = asyncio.open_connection("127.0.0.1", small.port)
      -- both taken before the third comes (a loaded machine may be slow to)
      helper.wait_until(function() return small.srv:connections() == 2 end, 5, "two connections")
      local statuses = exchange(small, request("/page/x"), 0.5)
      assert.are.same({}, statuses)
      w1:close()
      w2:close()
      local st = helper.wait_until(function()
        local got = exchange(small, request("/page/x"))
        return got[1] and got
      end, 5, "a free slot")
      assert.are.same({200}, st)
      local _ = r1 and r2
    end)

    it("a stalled request head or an idle connection is closed without a word", function()
      local quick <close> = http_server.start{header_timeout = 0.2}
      local t0 = asyncio.time()
      local statuses = exchange(quick, "GET /page/x HTTP/1.1\r\nHost: a\r\n")
      assert.are.same({}, statuses)
      assert.is_true(asyncio.time() - t0 < 3 * helper.slow)
      local none, reply = exchange(quick, "")
      assert.are.same({}, none)
      assert.are.equal("", reply)
      -- a keep-alive connection that goes idle after an answer, too
      local statuses2 = exchange(quick, "GET /page/x HTTP/1.1\r\nHost: a\r\n\r\n")
      assert.are.same({200}, statuses2)
    end)
  end)
end)

-- asyncio.http.server itself (under the course server): whatever the
-- depth of the check in bindings/http_server.lua, a wrong argument names
-- the caller's line, not one of the compiled-in part's.
describe("asyncio.http.server's argument errors", function()
  local web = require "asyncio.http.server"
  local FILE = "http_server_hostile_spec%.lua"
  local function line_of(f, lead) return helper.arg_error_line(f, FILE, lead) end
  local function h() return "x" end
  after_each(function() helper.no_leaks() end)

  it("serve()'s point at the caller's line, the options' too", function()
    local here = debug.getinfo(1, "l").currentline
    assert.are.equal(here + 1, line_of(function() web.serve(nil, "127.0.0.1", 0) end))
    assert.are.equal(here + 2, line_of(function() web.serve(h, 12, 0) end))
    assert.are.equal(here + 3, line_of(function() web.serve(h, "127.0.0.1", 70000) end))
    assert.are.equal(here + 4, line_of(function() web.serve(h, "127.0.0.1", 0, 5) end))
    assert.are.equal(here + 5, line_of(function() web.serve(h, "127.0.0.1", 0, {max_bdy = 1}) end, "serve%(%): unknown option 'max_bdy'$"))
    assert.are.equal(here + 6, line_of(function() web.serve(h, "127.0.0.1", 0, {tls = {cert = "a", key = "b", ca = 1}}) end, "serve%(%): unknown option 'tls.ca'$"))
    assert.are.equal(here + 7, line_of(function() web.serve(h, "127.0.0.1", 0, {tls = {cert = "a\0", key = "b"}}) end, "serve%(%): option tls must be"))
    assert.are.equal(here + 8, line_of(function() web.serve(h, "127.0.0.1", 0, {ssl = true, tls = {cert = "a", key = "b"}}) end, "serve%(%): options ssl and tls exclude"))
    assert.are.equal(here + 9, line_of(function() web.serve(h, "127.0.0.1", 0, {ssl = true}) end, "serve%(%): option ssl must be a server's SSLContext with a certificate, got true$"))
    assert.are.equal(here + 10, line_of(function() web.serve(h, "127.0.0.1", 0, {ssl = 1}) end, "serve%(%): option ssl must be an SSLContext, got number$"))
    -- the message of the C check (a client's context), at the same line
    assert.are.equal(here + 12, line_of(function() web.serve(h, "127.0.0.1", 0, {ssl = asyncio.ssl.create_default_context()}) end, "serve%(%): option ssl must be a server's SSLContext %(create_default_context"))
    assert.are.equal(here + 13, line_of(function() web.serve(h, "127.0.0.1", 0, {max_body = -1}) end, "serve%(%): option max_body must be a finite number >= 0, got %-1$"))
    assert.are.equal(here + 14, line_of(function() web.serve(h, "127.0.0.1", 0, {stream_body = 1}) end, "serve%(%): option stream_body must be a boolean, got number$"))
    assert.are.equal(here + 15, line_of(function() web.serve(h, "127.0.0.1", 0, {idle_timeout = 1.5}) end, "serve%(%): option idle_timeout must be an integer, got 1.5$"))
    assert.are.equal(here + 16, line_of(function() web.serve(h, "127.0.0.1", 0, {max_header_bytes = 1000}) end, "serve%(%): option max_header_bytes must be at least 1024$"))
    assert.are.equal(here + 17, line_of(function() web.serve(h, "127.0.0.1", 0, {header_timeout = 0}) end, "serve%(%): option header_timeout must be > 0$"))
  end)

  -- The core reads a handler's header map itself: what it refuses, and
  -- the order of the checks (headers first), as the failure report says.
  it("a handler's bad response is a 500 with the reason on stderr", function()
    local cases = {
      ["/nottable"] = {{headers = "x"}, "response headers must be a table, got string"},
      ["/key"] = {{headers = {[1] = "x"}}, "response header names and values must be strings"},
      ["/value"] = {{headers = {A = {}}}, "response header names and values must be strings"},
      ["/bool"] = {{headers = {A = true}, body = function() end},
                   "response header names and values must be strings"},
      ["/both"] = {{headers = {A = false}, body = {}}, "response header names and values must be strings"},
      ["/body"] = {{headers = {A = 1}, body = {}}, "body must be a string or a function%(write%), got table"},
      ["/crlf"] = {{headers = {A = "1\r\nB: 2"}}, "bad response header 'A'"},
      ["/nul"] = {{headers = {["A\0B"] = "1"}}, "bad response header"},
      ["/colon"] = {{headers = {["A:B"] = "1"}, body = function(w) w("x") end}, "bad response header 'A:B'"},
      ["/status"] = {{status = 1000}, "status must be an integer from 100 to 999"},
    }
    local reports = {}
    local srv = web.serve(function(req) return cases[req.path][1] end, "127.0.0.1", 0)
    local stderr = io.stderr
    io.stderr = {write = function(_, ...) reports[#reports + 1] = table.concat({...}) end}
    local ok, err = pcall(function()
      for path, case in pairs(cases) do
        reports = {}
        local res = http.fetch(("http://127.0.0.1:%d%s"):format(srv.port, path))
        assert.are.equal(500, res.status, path)
        assert.are.equal("internal server error\n", res:text(), path)
        assert.is_nil(res.headers["b"], path)
        assert.matches(case[2], table.concat(reports), nil, false, path)
      end
      -- numbers are taken as their text, nil as no headers at all
      cases["/num"] = {{headers = {["X-N"] = 12, ["X-F"] = 1.5}, body = "n"}}
      cases["/nil"] = {{body = "none"}}
      local res = http.fetch(("http://127.0.0.1:%d/num"):format(srv.port))
      assert.are.same({200, "12", "1.5", "n"}, {res.status, res.headers["x-n"], res.headers["x-f"], res:text()})
      res = http.fetch(("http://127.0.0.1:%d/nil"):format(srv.port))
      assert.are.same({200, "none"}, {res.status, res:text()})
    end)
    io.stderr = stderr
    srv:close()
    srv:wait_closed()
    assert(ok, err)
  end)

  it("req:read()'s points at the handler's line, through req:chunks() too", function()
    local got, want = {}, {}
    local srv = web.serve(function(req)
      local function at(f) -- the handler's own failure would be a bare 500
        local ok, line = pcall(line_of, f)
        return ok and line or tostring(line)
      end
      local here = debug.getinfo(1, "l").currentline
      got[1] = at(function() req:read(0) end)
      got[2] = at(function() for _ in req:chunks(-1) do end end) -- read() runs in the iterator
      got[3] = select(2, pcall(req.read, req, 1.5))
      want = {here + 1, here + 2}
      return "done"
    end, "127.0.0.1", 0)
    local res = http.fetch(("http://127.0.0.1:%d/"):format(srv.port), {method = "POST", body = "abc"})
    srv:close()
    srv:wait_closed()
    assert.are.equal("done", res:text())
    assert.are.same(want, {got[1], got[2]})
    -- through pcall (a C function) no line at all, as luaL_argerror does
    assert.are.equal("bad argument #1 to 'read' (positive integer expected, got 1.5)", got[3])
  end)
end)
