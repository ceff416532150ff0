-- asyncio.http.server with stream_body: the handler runs once the headers
-- are in and reads the body as the client sends it (req:read, req:chunks,
-- req:body), with back-pressure (libmicrohttpd's connection is suspended
-- while 64 KiB are unread), max_body still enforced and a client that
-- leaves mid-upload seen as ConnectionResetError.
local helper = require "spec.helper"
local web = require "asyncio.http.server"
local webhelper = require "spec.webhelper"

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s*(%d+)")
    if kb then return tonumber(kb) end
  end
end

local with_server = webhelper.with_server

local function reply_of(r, wait) return (webhelper.read_all(r, wait)) end

local function post_head(len)
  return ("POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"):format(len)
end

describe("asyncio.http.server stream_body", function()
  after_each(function() helper.no_leaks() end)

  it("streams a 50 MB upload through a counting handler with memory bounded", function()
    local biggest, pieces = 0, 0
    local size = 50 * 1024 * 1024
    with_server(function(req)
      local n = 0
      for chunk in req:chunks() do
        n = n + #chunk
        pieces = pieces + 1
        if #chunk > biggest then biggest = #chunk end
      end
      return tostring(n)
    end, function(srv)
      collectgarbage()
      local before = rss_kib()
      -- Python's http.client as the client, sending 1 MiB writes
      local p = asyncio.create_subprocess_exec("python3", {"-c", ([[
import http.client
c = http.client.HTTPConnection("127.0.0.1", %d)
c.putrequest("POST", "/up"); c.putheader("Content-Length", "%d"); c.endheaders()
block = b"x" * (1024 * 1024)
for _ in range(50): c.send(block)
r = c.getresponse(); print(r.status, r.read().decode())
]]):format(srv.port, size)}, {stdout = "pipe"})
      local out = asyncio.wait_for(function() return p.stdout:read() end, 60 * helper.slow)
      p:wait()
      assert.are.equal("200 " .. size .. "\n", out)
      -- ASan's quarantine and valgrind keep freed memory: RSS says
      -- nothing there (LASYNC_SLOW > 1), the chunk sizes below still do
      if helper.slow == 1 then
        local grown = rss_kib() - before
        assert.is_true(grown < 16 * 1024, "RSS grew by " .. grown .. " KiB")
      end
    end, {stream_body = true, max_body = 64 * 1024 * 1024})
    assert.is_true(biggest <= 65536, biggest)
    assert.is_true(pieces >= 50 * 16, pieces) -- read as it came, not whole
  end)

  it("applies back-pressure to the client while the handler does not read", function()
    local release = asyncio.Event()
    local total
    with_server(function(req)
      release:wait()
      total = #req:body()
      return "ok"
    end, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      local size = 64 * 1024 * 1024
      local block = ("y"):rep(256 * 1024)
      w:write(post_head(size))
      local sent = 0
      pcall(asyncio.wait_for, function()
        while sent < size do
          w:write(block)
          w:drain()
          sent = sent + #block
        end
      end, 1)
      -- the server took at most 64 KiB, the kernel's buffers hold the rest
      assert.is_true(sent < 24 * 1024 * 1024, "sent " .. sent)
      release:set()
      while sent < size do
        w:write(block)
        w:drain()
        sent = sent + #block
      end
      -- the handler reads the 64 MiB first: seconds on a loaded machine
      assert.matches("^HTTP/1.1 200 .*ok$", reply_of(r, 60))
      w:close()
      assert.are.equal(size, total)
    end, {stream_body = true, max_body = 64 * 1024 * 1024})
  end)

  it("raises ConnectionResetError in the handler when the client dies mid-upload", function()
    local seen = {}
    local got_some = asyncio.Event()
    with_server(function(req)
      local ok, err = pcall(function()
        for chunk in req:chunks() do
          seen.n = (seen.n or 0) + #chunk
          got_some:set()
        end
      end)
      seen.err = err
      if not ok then error(err, 0) end -- not reported: the client left
      return "unreachable"
    end, function(srv)
      local _, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write(post_head(1000000) .. ("z"):rep(100000))
      asyncio.wait_for(function() got_some:wait() end, 5)
      w:close() -- gone mid-body, as a client that died
      for _ = 1, 100 do
        if seen.err then break end
        asyncio.sleep(0.02)
      end
      assert.is_true(asyncio.is(seen.err, asyncio.ConnectionResetError), tostring(seen.err))
      assert.is_true(seen.n <= 100000)
      -- the server goes on
      local r2, w2 = asyncio.open_connection("127.0.0.1", srv.port)
      w2:write("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 200", reply_of(r2, 5))
      w2:close()
    end, {stream_body = true})
  end)

  it("notices a client that sent part of a body and its FIN at once", function()
    -- libmicrohttpd's last (short) read leaves the FIN unread and its
    -- edge-triggered epoll gives no further event: read() must still end
    local seen = {}
    with_server(function(req)
      local ok, err = pcall(function()
        for chunk in req:chunks() do seen.n = (seen.n or 0) + #chunk end
      end)
      seen.err = err
      if not ok then error(err, 0) end
      return "unreachable"
    end, function(srv)
      local _, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write(post_head(1000000) .. ("z"):rep(40000)) -- under 64 KiB: never suspended
      w:close()
      local t0 = asyncio.time()
      while not seen.err and asyncio.time() - t0 < 10 * helper.slow do asyncio.sleep(0.02) end
      assert.is_true(asyncio.is(seen.err, asyncio.ConnectionResetError), tostring(seen.err))
      assert.are.equal(40000, seen.n) -- every byte sent was read first
    end, {stream_body = true, idle_timeout = 60})
  end)

  it("enforces max_body: 413 for a declared length, the connection cut for a chunked body", function()
    local seen = {}
    local started = asyncio.Event()
    with_server(function(req)
      started:set()
      local ok, err = pcall(req.body, req)
      seen.ok, seen.err = ok, err
      return ok and "whole" or "cut"
    end, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write(post_head(2000))
      assert.matches("^HTTP/1.1 413", reply_of(r, 5))
      w:close()
      assert.is_false(started:is_set()) -- the handler never ran
      r, w = asyncio.open_connection("127.0.0.1", srv.port)
      local chunk = "400\r\n" .. ("c"):rep(1024) .. "\r\n"
      w:write("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" .. chunk)
      asyncio.wait_for(function() started:wait() end, 5)
      w:write(chunk .. chunk)
      local reply = reply_of(r, 5)
      w:close()
      assert.is_nil(reply:match("whole"))
      assert.is_false(seen.ok)
      assert.is_true(asyncio.is(seen.err, asyncio.ConnectionResetError), tostring(seen.err))
    end, {stream_body = true, max_body = 1500})
  end)

  it("keeps req:body() and keep-alive working, and read() on a buffered body", function()
    local function handler(req)
      local head = req:read(3)
      return head .. "|" .. req:body() .. "|" .. req:read()
    end
    for _, stream in ipairs{true, false} do
      with_server(handler, function(srv)
        local r, w = asyncio.open_connection("127.0.0.1", srv.port)
        w:write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"
          .. "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        local reply = reply_of(r, 5)
        w:close()
        assert.matches("012|3456789|HTTP/1.1 200.*||$", reply)
      end, {stream_body = stream})
    end
  end)

  it("refuses bad arguments", function()
    helper.fails_with("stream_body must be a boolean", web.serve, function() end,
      "127.0.0.1", 0, {stream_body = 1})
    with_server(function(req)
      local results = {}
      for _, bad in ipairs{0, -1, "x", 1.5} do
        results[#results + 1] = select(2, pcall(req.read, req, bad))
      end
      return table.concat(results, "\n")
    end, function(srv)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      w:write("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      local reply = reply_of(r, 5)
      w:close()
      local _, n = reply:gsub("bad argument #1 to 'read' %(positive integer expected", "")
      assert.are.equal(4, n)
    end, {stream_body = true})
  end)
end)
