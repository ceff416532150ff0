-- asyncio.redis against bad callers and bad servers: wrong types, unknown
-- options, NUL bytes, fake servers (lasync start_server) that send garbage,
-- reset, never answer, announce huge replies or answer twice; the reply cap
-- and the pub/sub back-pressure against a real redis-server.
local helper = require "spec.helper"
local servers = require "spec.redis_servers"
local redis = require "asyncio.redis"

-- A fake server: for each command it reads (any bytes), answer(w, n)
-- writes what it likes (n counts the reads).  Returns its URL and server.
local function fake(answer)
  local srv = asyncio.start_server(function(r, w)
    local n = 0
    while true do
      local ok, data = pcall(r.read, r, 65536)
      if not ok or not data or data == "" then break end
      n = n + 1
      if answer(w, n) == "close" then break end
    end
    w:close()
  end, "127.0.0.1", 0)
  return "redis://127.0.0.1:" .. srv.port, srv
end

local function rss_kib()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

describe("redis arguments", function()
  after_each(helper.no_leaks)

  it("connect refuses wrong types, bad URLs and unknown options by name", function()
    helper.fails_with("bad argument #1 to 'connect' %(string or table expected, got number%)",
      redis.connect, 42)
    helper.fails_with("bad argument #1 to 'connect' %(url \"http://x\": redis%[s%]://host%[:port%]%[/db%] or unix:/path expected%)",
      redis.connect, "http://x")
    helper.fails_with("bad argument #2 to 'connect' %(option 'ssl' is false but the URL is rediss:// %(TLS%)%)",
      redis.connect, "rediss://h", {ssl = false})
    helper.fails_with("bad argument #2 to 'connect' %(unknown option 'colour'%)",
      redis.connect, "redis://127.0.0.1", {colour = 1})
    helper.fails_with("bad argument #1 to 'connect' %(unknown option 'prot'%)",
      redis.connect, {prot = 1})
    helper.fails_with("option 'host' contains a NUL byte", redis.connect, {host = "a\0b"})
    helper.fails_with("url contains a NUL byte", redis.connect, "redis://a\0b")
    helper.fails_with("option 'port' must be an integer in 1..65535", redis.connect, {port = 70000})
    helper.fails_with("option 'db' must be an integer >= 0", redis.connect, {db = -1})
    helper.fails_with("option 'timeout' must be a number >= 0", redis.connect, {timeout = "1"})
    helper.fails_with("option 'timeout' must be a number >= 0", redis.connect, {timeout = 0 / 0})
    helper.fails_with("option 'max_reply' must be an integer >= 1", redis.connect, {max_reply = 0})
    helper.fails_with("unknown URL parameter 'x'", redis.connect, "unix:/tmp/s?x=1")
    helper.fails_with("bad argument #1 to 'pool' %(table expected, got string%)", redis.pool, "redis://h")
    helper.fails_with("option 'size' must be an integer >= 1", redis.pool, {size = 0})
    helper.fails_with("bad argument #1 to 'pool' %(unknown option 'sise'%)", redis.pool, {sise = 2})
  end)

  -- The check runs several calls deep inside redis.lua (settings,
  -- parse_url, check_number): the error still names the caller's line,
  -- not the line of the function that called the caller.
  it("argument errors point at the caller's line, however deep the check", function()
    local function line_of(f) return helper.arg_error_line(f, "redis_hostile_spec%.lua") end
    local here = debug.getinfo(1, "l").currentline
    assert.are.equal(here + 1, line_of(function() local p = redis.pool("x") return p end))
    assert.are.equal(here + 2, line_of(function() local c = redis.connect("redis://h", {db = -1}) return c end))
    assert.are.equal(here + 3, line_of(function() local c = redis.connect("unix:/s?x=1") return c end))
    assert.are.equal(here + 4, line_of(function() local c = redis.connect{port = "1"} return c end))
  end)

  describe("against a real server", function()
    local srv, r
    setup(function()
      srv = servers.start()
      r = redis.connect(srv.url)
    end)
    teardown(function()
      r:close()
      srv.cleanup()
    end)

    it("call refuses a missing name and values that are not strings or numbers", function()
      helper.fails_with("bad argument #1 to 'call' %(command name expected, got no value%)", r.call, r)
      helper.fails_with("bad argument #1 to 'call' %(command name expected, got table%)", r.call, r, {})
      helper.fails_with("bad argument #3 to 'call' %(string or number expected, got table%)",
        r.call, r, "SET", "k", {})
      helper.fails_with("bad argument #3 to 'call' %(string or number expected, got boolean%)",
        r.set, r, "k", true)
      helper.fails_with("bad argument #1 to 'call' %(redis client expected", r.call, {}, "PING")
      -- nothing was sent: the connection is in step
      assert.are.equal("PONG", r:ping())
    end)

    it("pipeline and transaction refuse what is not a list of commands", function()
      helper.fails_with("bad argument #1 to 'pipeline' %(table expected, got string%)", r.pipeline, r, "GET")
      helper.fails_with("bad argument #1 to 'pipeline' %(a list of commands expected, got an empty table%)",
        r.pipeline, r, {})
      helper.fails_with("bad argument #1 to 'transaction' %(command 2: {name, args...} expected, got no name%)",
        r.transaction, r, {{"PING"}, {}})
      helper.fails_with("bad argument #1 to 'pipeline' %(command 1, element 3: string or number expected, got boolean%)",
        r.pipeline, r, {{"SET", "k", false}})
      helper.fails_with("bad argument #1 to 'pipeline' %(redis client expected", r.pipeline, {}, {{"PING"}})
      assert.are.equal("PONG", r:ping())
    end)

    it("a pipeline refused midway sends none of its commands: the connection stays in step", function()
      -- the second command has more elements than a Lua stack can hold
      -- (refused while the commands are encoded, after the first one)
      local huge = {"RPUSH", "k"}
      for i = 3, 1000000 do huge[i] = "x" end
      local ok, e = pcall(r.pipeline, r, {{"ECHO", "stale"}, huge})
      assert.is_false(ok)
      assert.matches("stack overflow", tostring(e))
      huge = nil
      assert.are.equal("fresh", r:echo("fresh"))
      assert.are.equal(0, r:exists("k"))
    end)

    it("a cancelled pipeline's replies are absorbed: the connection stays in step", function()
      local t = asyncio.create_task(function()
        return r:pipeline{{"ECHO", "1"}, {"ECHO", "2"}, {"ECHO", "3"}}
      end)
      asyncio.sleep(0)
      t:cancel()
      helper.await_cancelled(t)
      assert.are.equal("after", r:echo("after"))
    end)

    it("set refuses unknown options; subscribe refuses non-strings", function()
      helper.fails_with("bad argument #3 to 'set' %(unknown option 'nxx'%)", r.set, r, "k", "v", {nxx = true})
      helper.fails_with("bad argument #3 to 'set' %(table expected, got string%)", r.set, r, "k", "v", "EX")
      helper.fails_with("bad argument #2 to 'subscribe' %(channel name %(string%) expected, got number%)",
        r.subscribe, r, "a", 5)
      helper.fails_with("bad argument #1 to 'subscribe' %(channel name expected%)", r.subscribe, r)
    end)

    it("NUL bytes in keys and values go through unchanged", function()
      local k = "key\0with\0nuls"
      r:set(k, "\0")
      assert.are.equal("\0", r:get(k))
      assert.are.same({k}, r:keys("key*"))
      r:del(k)
    end)

    it("a reply over max_reply fails the connection, the next call reconnects", function()
      local small <close> = redis.connect(srv.url, {max_reply = 4096})
      r:set("big", string.rep("x", 10000))
      local e = helper.raises(redis.ConnectionError, small.get, small, "big")
      assert.matches("a reply is larger than max_reply %(4096 bytes%)", e.message)
      assert.are.equal("PONG", small:ping())
      assert.are.equal(64 * 1024 * 1024, redis.DEFAULT_MAX_REPLY)
      -- an array whose elements add up over the cap
      for i = 1, 100 do r:rpush("biglist", string.rep("y", 100)) end
      helper.raises(redis.ConnectionError, small.lrange, small, "biglist", 0, -1)
      r:del("big", "biglist")
    end)

    it("an unread subscription pauses reading: memory stays bounded, nothing is lost", function()
      local s <close> = redis.connect(srv.url)
      local sub = s:subscribe("flood")
      local N = 20000
      for i = 1, N, 500 do
        local batch = {}
        for j = i, i + 499 do batch[#batch + 1] = asyncio.create_task(function() return r:publish("flood", j) end) end
        asyncio.gather(table.unpack(batch))
      end
      asyncio.sleep(0.1)
      local q = s:stats().queued_messages
      assert.is_true(q < 5000, "queued " .. q)
      for i = 1, N do assert.are.equal(tostring(i), sub:next().data) end
      sub:close()
    end)

    it("cancelling many commands in flight leaks nothing and keeps replies in order", function()
      local c <close> = redis.connect(srv.url)
      local ts = {}
      for i = 1, 200 do ts[i] = asyncio.create_task(function() return c:echo("v" .. i) end) end
      asyncio.sleep(0)
      for i = 1, 200, 2 do ts[i]:cancel() end
      for i = 2, 200, 2 do assert.are.equal("v" .. i, ts[i]:await()) end
      for i = 1, 200, 2 do helper.await_cancelled(ts[i]) end
      assert.are.equal("last", c:echo("last"))
    end)
  end)
end)

describe("redis against a hostile server", function()
  after_each(helper.no_leaks)

  it("garbage is a protocol error (redis.ConnectionError), not a crash", function()
    local url, srv = fake(function(w) w:write("!!garbage\r\n") end)
    local r <close> = redis.connect(url)
    local e = helper.raises(redis.ConnectionError, r.ping, r)
    assert.matches("protocol error", e.message)
    srv:close()
  end)

  it("a bad integer and a too deep nesting are protocol errors", function()
    local url, srv = fake(function(w) w:write(":12x\r\n") end)
    local r <close> = redis.connect(url)
    helper.fails_with("protocol error: Bad integer value", r.ping, r)
    srv:close()
    url, srv = fake(function(w) w:write(string.rep("*1\r\n", 12) .. ":1\r\n") end)
    local r2 <close> = redis.connect(url)
    helper.fails_with("protocol error: No support for nested multi bulk", r2.ping, r2)
    srv:close()
  end)

  it("a reply nobody asked for fails the connection (hiredis's async layer would abort)", function()
    local url, srv = fake(function(w) w:write("+OK\r\n+EXTRA\r\n") end)
    local r <close> = redis.connect(url)
    local ok, v = pcall(r.ping, r)
    -- the first reply answers the command, the second one breaks the link
    assert.is_true(ok and v == "OK" or asyncio.is(v, redis.ConnectionError), tostring(v))
    asyncio.sleep(0.05)
    local st = r:stats()
    assert.is_false(st.connected)
    assert.matches("a reply no command asked for", st.error)
    srv:close()
  end)

  it("a late UNSUBSCRIBE confirmation is not taken for the next command's reply", function()
    -- a real server, slow network: the second UNSUBSCRIBE's confirmation
    -- (nothing was left subscribed) comes after the client saw count 0
    -- and sent its next command
    local srv = asyncio.start_server(function(r, w)
      local buf, step = "", 0
      while true do
        local ok, d = pcall(r.read, r, 65536)
        if not ok or not d or d == "" then break end
        buf = buf .. d
        if step == 0 and buf:find("$9\r\nSUBSCRIBE", 1, true) then
          step = 1
          w:write("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        end
        if step == 1 and buf:find("$11\r\nUNSUBSCRIBE", 1, true) then
          step = 2
          w:write("*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n")
        end
        if step == 2 and buf:find("ECHO", 1, true) then
          step = 3
          w:write("*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
          -- the answers to what the client sent after it, in order
          local _, pings = buf:gsub("PING", "")
          w:write(string.rep("+PONG\r\n", pings) .. "$5\r\nafter\r\n")
        end
      end
      w:close()
    end, "127.0.0.1", 0)
    local r <close> = redis.connect("redis://127.0.0.1:" .. srv.port, {retries = 0})
    local sub = r:subscribe("a")
    sub:unsubscribe()
    sub:unsubscribe()
    assert.is_nil(sub:next())
    assert.are.equal("after", r:echo("after"))
    assert.is_true(r:stats().connected)
    srv:close()
  end)

  it("messages flooding in before a SUBSCRIBE's confirmation stay bounded", function()
    -- the confirmation never comes; 200000 messages do
    local srv = asyncio.start_server(function(r, w)
      r:read(65536)
      local one = "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nx\r\n"
      local chunk = one:rep(1000)
      for _ = 1, 200 do
        if not pcall(w.write, w, chunk) or not pcall(w.drain, w) then break end
      end
      pcall(r.read, r, 1)
      w:close()
    end, "127.0.0.1", 0)
    local c <close> = redis.connect("redis://127.0.0.1:" .. srv.port)
    local ok, sub = pcall(asyncio.wait_for, function() return c:subscribe("a") end, 5 * helper.slow)
    assert.is_true(ok, tostring(sub))
    assert.is_true(sub._tail - sub._head <= 1024, "kept " .. (sub._tail - sub._head))
    assert.is_true(c:stats().queued_messages <= 2048)
    assert.are.equal("x", sub:next().data)
    sub:close()
    srv:close()
  end)

  it("a reset mid-command raises redis.ConnectionError (sent = true)", function()
    local url, srv = fake(function() return "close" end)
    local r <close> = redis.connect(url, {retries = 0})
    local e = helper.raises(redis.ConnectionError, r.get, r, "k")
    assert.matches("the server closed the connection", e.message)
    assert.is_true(e.sent)
    srv:close()
  end)

  it("a server that never answers: the command timeout raises TimeoutError", function()
    local url, srv = fake(function() end)
    local r <close> = redis.connect(url, {timeout = 0.1})
    local t0 = asyncio.time()
    helper.raises(asyncio.TimeoutError, r.get, r, "k")
    assert.is_true(asyncio.time() - t0 < 0.5 * helper.slow)
    srv:close()
  end)

  it("a connect that never completes: connect_timeout", function()
    -- a listening socket with a full backlog is hard to make portably;
    -- a non-routable address stands in (TEST-NET-1, RFC 5737)
    local t0 = asyncio.time()
    local e = helper.raises(redis.ConnectionError, redis.connect,
      {host = "192.0.2.1", port = 6379, connect_timeout = 0.2})
    assert.is_true(asyncio.time() - t0 < 1 * helper.slow)
    assert.matches("cannot connect to 192.0.2.1:6379", e.message)
  end)

  it("a huge bulk length with a flood behind it stops at max_reply, memory bounded", function()
    local url, srv = fake(function(w)
      w:write("$999999999999\r\n")
      local chunk = string.rep("z", 1 << 20)
      for _ = 1, 64 do
        if pcall(w.write, w, chunk) then pcall(w.drain, w) end
      end
    end)
    local before = rss_kib()
    local r <close> = redis.connect(url, {max_reply = 1 << 20})
    local e = helper.raises(redis.ConnectionError, r.get, r, "k")
    assert.matches("larger than max_reply", e.message)
    assert.is_true(rss_kib() - before < 32 * 1024, "grew by " .. (rss_kib() - before) .. " KiB")
    srv:close()
  end)

  it("a huge array length is refused at once", function()
    local url, srv = fake(function(w) w:write("*2147483647\r\n") end)
    local r <close> = redis.connect(url)
    helper.fails_with("larger than max_reply", r.ping, r)
    srv:close()
  end)

  it("a malformed pub/sub message raises redis.ConnectionError", function()
    local url, srv = fake(function(w, n)
      if n == 1 then w:write("*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n+notanarray\r\n") end
    end)
    local r <close> = redis.connect(url)
    local sub = r:subscribe("c")
    helper.fails_with("not an array", sub.next, sub)
    sub:close()
    srv:close()
  end)
end)
