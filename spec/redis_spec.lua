-- asyncio.redis against a real redis-server (Debian's redis-server 7.0) on
-- a free loopback port: values, errors, pipelining, the pool, pub/sub,
-- blocking commands and their cancellation, timeouts, reconnection.
local helper = require "spec.helper"
local servers = require "spec.redis_servers"
local redis = require "asyncio.redis"

local srv

-- A second client that checks what the server saw (never the one tested).
local function observer()
  return redis.connect(srv.url)
end

-- The number of clients connected to the server, observer excluded.
local function clients(obs)
  return tonumber(obs:info("clients"):match("connected_clients:(%d+)")) - 1
end

setup(function() srv = servers.start() end)
teardown(function() srv.cleanup() end)

describe("redis values", function()
  local r
  before_each(function()
    r = redis.connect(srv.url .. "/1")
    r:flushdb()
  end)
  after_each(function()
    r:close()
    helper.no_leaks()
  end)

  it("maps replies to Lua values: status, bulk (binary-safe), integer, nil", function()
    assert.are.equal("OK", r:set("k", "a\0b\r\n\255"))
    assert.are.equal("a\0b\r\n\255", r:get("k"))
    assert.is_nil(r:get("missing"))
    assert.are.equal(5, r:incrby("n", 5))
    assert.are.equal(-1, r:call("TTL", "n"))
    assert.are.equal("PONG", r:ping())
    assert.are.equal(math.type(r:incr("n")), "integer")
  end)

  it("arrays become tables with redis.null for a nil inside", function()
    r:mset("a", "1", "c", "3")
    local t = r:mget("a", "b", "c")
    assert.are.equal(3, #t)
    assert.are.same({"1", redis.null, "3"}, t)
    r:rpush("l", "x", "y", "z")
    assert.are.same({"x", "y", "z"}, r:lrange("l", 0, -1))
    assert.are.same({}, r:lrange("nolist", 0, -1))
  end)

  it("numbers are sent as their decimal text", function()
    r:set("f", 1.5)
    assert.are.equal("1.5", r:get("f"))
    r:set("i", 42)
    assert.are.equal(43, r:incr("i"))
  end)

  it("uses the database of the URL", function()
    r:set("where", "db1")
    local r0 = redis.connect(srv.url .. "/0")
    assert.is_nil(r0:get("where"))
    r0:close()
    local r1 = redis.connect{url = srv.url, db = 1}
    assert.are.equal("db1", r1:get("where"))
    r1:close()
  end)

  it("hashes: hset, hget, hgetall as a table", function()
    assert.are.equal(2, r:hset("h", "a", "1", "b", "2"))
    assert.are.equal("2", r:hget("h", "b"))
    assert.are.same({a = "1", b = "2"}, r:hgetall("h"))
    assert.are.same({}, r:hgetall("nohash"))
  end)

  it("set with options: nx, ex, get", function()
    assert.are.equal("OK", r:set("s", "1", {nx = true, ex = 100}))
    assert.is_nil(r:set("s", "2", {nx = true}))
    local ttl = r:ttl("s")
    assert.is_true(ttl > 90 and ttl <= 100)
    assert.are.equal("1", r:set("s", "3", {get = true}))
  end)

  it("streams: xadd, xreadgroup and xack", function()
    r:xgroup("CREATE", "st", "g", "$", "MKSTREAM")
    local id = r:xadd("st", "*", "url", "http://a")
    assert.matches("^%d+%-%d+$", id)
    local res = r:xreadgroup("GROUP", "g", "c1", "COUNT", 10, "STREAMS", "st", ">")
    assert.are.equal("st", res[1][1])
    assert.are.equal(id, res[1][2][1][1])
    assert.are.same({"url", "http://a"}, res[1][2][1][2])
    assert.are.equal(1, r:xack("st", "g", id))
  end)

  it("an error reply raises redis.Error with the server's message and kind", function()
    r:set("str", "x")
    local e = helper.raises(redis.Error, r.lpush, r, "str", "y")
    assert.are.equal("WRONGTYPE", e.kind)
    assert.matches("^WRONGTYPE Operation against a key holding the wrong kind of value", e.message)
    assert.matches("^RedisError: WRONGTYPE", tostring(e))
    e = helper.raises(redis.Error, r.call, r, "NOSUCHCOMMAND", "x")
    assert.are.equal("ERR", e.kind)
    assert.matches("unknown command", e.message)
    -- the connection is still in step
    assert.are.equal("x", r:get("str"))
  end)

  it("an error inside EXEC's array is a value, not raised", function()
    r:set("str", "x")
    local c <close> = redis.connect(srv.url .. "/1")
    c:multi()
    assert.are.equal("QUEUED", c:incr("str"))
    assert.are.equal("QUEUED", c:set("ok", "1"))
    local res = c:exec()
    assert.is_true(asyncio.is(res[1], redis.Error))
    assert.are.equal("OK", res[2])
  end)

  it("any command through call(), with many arguments", function()
    local args = {}
    for i = 1, 300 do args[#args + 1] = "m" .. i end
    assert.are.equal(300, r:call("SADD", "set", table.unpack(args)))
    assert.are.equal(300, r:scard("set"))
  end)
end)

describe("redis pipelining", function()
  after_each(helper.no_leaks)

  it("concurrent tasks share one connection; each gets its own reply", function()
    local r <close> = redis.connect(srv.url .. "/2")
    local obs <close> = observer()
    local before = clients(obs)
    local tasks = {}
    for i = 1, 500 do
      tasks[i] = asyncio.create_task(function()
        r:set("p" .. i, "v" .. i)
        return r:get("p" .. i)
      end)
    end
    local res = asyncio.gather(table.unpack(tasks))
    for i = 1, 500 do assert.are.equal("v" .. i, res[i]) end
    assert.are.equal(before, clients(obs)) -- no extra connection was made
    r:flushdb()
  end)

  it("commands from one turn go out together (fewer writes than commands)", function()
    local r <close> = redis.connect(srv.url .. "/2")
    local tasks = {}
    local t0 = asyncio.time()
    for i = 1, 2000 do tasks[i] = asyncio.create_task(function() return r:incr("cnt") end) end
    local res = asyncio.gather(table.unpack(tasks))
    -- replies in order: the i-th INCR sent got i
    for i = 1, 2000 do assert.are.equal(i, res[i]) end
    assert.is_true(asyncio.time() - t0 < 2 * helper.slow)
    r:del("cnt")
  end)

  it("pipeline sends a list of commands together; errors and nils are values", function()
    local r <close> = redis.connect(srv.url .. "/2")
    r:del("pa", "pl")
    local res = r:pipeline{{"SET", "pa", "1"}, {"INCR", "pa"}, {"GET", "missing"},
                           {"LPUSH", "pa", "x"}, {"RPUSH", "pl", "a", "b"}}
    assert.are.equal("OK", res[1])
    assert.are.equal(2, res[2])
    assert.are.equal(redis.null, res[3])
    assert.is_true(asyncio.is(res[4], redis.Error))
    assert.are.equal("WRONGTYPE", res[4].kind)
    assert.are.equal(2, res[5])
    assert.are.equal(5, #res)
  end)

  it("a transaction on a shared connection is not split by other tasks' commands", function()
    local r <close> = redis.connect(srv.url .. "/2")
    r:del("tx", "other")
    local others = {}
    for i = 1, 100 do
      others[i] = asyncio.create_task(function()
        for _ = 1, 5 do assert(math.type(r:incr("other")) == "integer") end
      end)
    end
    asyncio.sleep(0) -- the others keep sending on the same connection meanwhile
    local res = r:transaction{{"SET", "tx", "1"}, {"INCRBY", "tx", 41}, {"GET", "tx"}}
    assert.are.same({"OK", 42, "42"}, res)
    asyncio.gather(table.unpack(others))
    assert.are.equal("500", r:get("other"))
    -- a command the server refuses discards the whole transaction
    local e = helper.raises(redis.Error, r.transaction, r, {{"SET", "tx"}, {"INCR", "tx"}})
    assert.are.equal("EXECABORT", e.kind)
    assert.are.equal("42", r:get("tx"))
  end)

  it("a transaction whose WATCHed key changed returns nil", function()
    local c <close> = redis.connect(srv.url .. "/2")
    local other <close> = redis.connect(srv.url .. "/2")
    c:set("w", "1")
    c:watch("w")
    other:set("w", "2")
    assert.is_nil(c:transaction{{"SET", "w", "3"}})
    assert.are.equal("2", c:get("w"))
  end)

  it("a cancelled command leaves the connection in step", function()
    local r <close> = redis.connect(srv.url .. "/2")
    r:set("a", "A")
    local t = asyncio.create_task(function() return r:get("a") end)
    asyncio.sleep(0) -- sent, reply not yet read
    t:cancel()
    helper.await_cancelled(t)
    assert.are.equal("PONG", r:ping())
    assert.are.equal("A", r:get("a"))
  end)
end)

describe("redis pub/sub", function()
  after_each(helper.no_leaks)

  it("subscribe returns once subscribed; messages arrive in order", function()
    local pub <close> = redis.connect(srv.url)
    local s <close> = redis.connect(srv.url)
    local sub = s:subscribe("news", "sport")
    assert.are.equal(1, pub:publish("news", "one"))
    pub:publish("sport", "two")
    pub:publish("news", "three\0bin")
    local m = sub:next()
    assert.are.same({kind = "message", channel = "news", data = "one"}, m)
    assert.are.equal("two", sub:next().data)
    assert.are.equal("three\0bin", sub:next().data)
    sub:close()
  end)

  it("a subscribed connection refuses other commands with a clear error", function()
    local s <close> = redis.connect(srv.url)
    local sub = s:subscribe("x")
    local e = helper.raises(redis.Error, s.get, s, "k")
    assert.matches("subscribed", e.message)
    sub:close()
    -- after close, the client reconnects for normal commands
    assert.are.equal("PONG", s:ping())
  end)

  it("unsubscribe ends the iteration and the connection is normal again", function()
    local pub <close> = redis.connect(srv.url)
    local s <close> = redis.connect(srv.url)
    local sub = s:subscribe("a", "b")
    local got = {}
    local reader = asyncio.create_task(function()
      for m in sub do got[#got + 1] = m.channel .. "=" .. m.data end
      return "ended"
    end)
    pub:publish("a", "1")
    pub:publish("b", "2")
    while #got < 2 do asyncio.sleep(0.01) end
    sub:unsubscribe()
    assert.are.equal("ended", reader:await())
    assert.are.same({"a=1", "b=2"}, got)
    assert.are.equal("PONG", s:ping())
    assert.are.equal(0, pub:publish("a", "nobody"))
  end)

  it("unsubscribing twice in a row is harmless (the late confirmation is not garbage)", function()
    local s <close> = redis.connect(srv.url)
    local sub = s:subscribe("a")
    sub:unsubscribe()
    sub:unsubscribe()
    assert.is_nil(sub:next())
    assert.are.equal("PONG", s:ping())
    assert.is_true(s:stats().connected)
  end)

  it("subscribing again right after unsubscribe() keeps the connection", function()
    local pub <close> = redis.connect(srv.url)
    local s <close> = redis.connect(srv.url)
    local sub = s:subscribe("a")
    sub:unsubscribe() -- returns at once: its confirmation (count 0) is on its way
    sub:subscribe("b") -- sent before that confirmation came
    pub:publish("b", "hi")
    local ok, m = pcall(asyncio.wait_for, function() return sub:next() end, 2 * helper.slow)
    assert.is_true(ok, tostring(m))
    assert.are.equal("hi", m.data)
    assert.is_true(s:stats().connected)
    sub:close()
  end)

  it("late confirmations nobody reads do not pile up (reading would pause at 1024)", function()
    local s <close> = redis.connect(srv.url)
    local ok, e = pcall(asyncio.wait_for, function()
      for _ = 1, 1100 do
        local sub = s:subscribe("a")
        sub:unsubscribe()
        sub:unsubscribe()
        assert.is_nil(sub:next())
      end
      return s:ping()
    end, 20 * helper.slow)
    assert.is_true(ok, tostring(e))
    assert.are.equal("PONG", e)
    assert.are.equal(0, s:stats().queued_messages)
  end)

  it("unsubscribing from more channels than are left returns at count 0", function()
    local s <close> = redis.connect(srv.url)
    local sub = s:subscribe("a")
    local ok, e = pcall(asyncio.wait_for, function() return sub:unsubscribe("a", "b") end, 2 * helper.slow)
    assert.is_true(ok, tostring(e))
    assert.is_nil(sub:next())
    assert.are.equal("PONG", s:ping())
  end)

  it("a subscribe cancelled before its confirmation leaves the client usable", function()
    local r <close> = redis.connect(srv.url)
    local t = asyncio.create_task(function() return r:subscribe("c1") end)
    asyncio.sleep(0) -- t sent SUBSCRIBE and waits for the confirmation
    t:cancel()
    helper.await_cancelled(t)
    -- the half-made subscription's connection went: a new one serves
    assert.are.equal("PONG", r:ping())
    -- the same through a pool: the client it gives back is usable
    local pool <close> = redis.pool{url = srv.url, size = 1}
    t = asyncio.create_task(function() return pool:subscribe("c2") end)
    asyncio.sleep(0)
    t:cancel()
    helper.await_cancelled(t)
    assert.are.equal("PONG", pool:ping())
  end)

  it("messages kept while subscribing to more channels come out in order, none lost", function()
    local pub <close> = redis.connect(srv.url)
    local s <close> = redis.connect(srv.url)
    local sub = s:subscribe("a")
    for i = 1, 5 do pub:publish("a", tostring(i)) end
    sub:subscribe("b") -- 1 to 5 come before b's confirmation: kept
    for i = 1, 4 do assert.are.equal(tostring(i), sub:next().data) end
    for i = 6, 7 do pub:publish("a", tostring(i)) end
    sub:subscribe("c") -- 6 and 7 kept behind 5
    local got = {}
    pcall(asyncio.wait_for, function()
      for _ = 1, 3 do got[#got + 1] = sub:next().data end
    end, 2 * helper.slow)
    assert.are.same({"5", "6", "7"}, got)
    sub:close()
  end)

  it("psubscribe gets the pattern and the channel", function()
    local pub <close> = redis.connect(srv.url)
    local s <close> = redis.connect(srv.url)
    local sub = s:psubscribe("ev.*")
    pub:publish("ev.click", "x")
    assert.are.same({kind = "pmessage", pattern = "ev.*", channel = "ev.click", data = "x"},
      sub:next())
    sub:close()
  end)

  it("a pool gives each subscription a connection of its own", function()
    local pool <close> = redis.pool{url = srv.url, size = 3}
    local sub = pool:subscribe("pc")
    assert.are.equal(1, pool:publish("pc", "hi"))
    assert.are.equal("hi", sub:next().data)
    sub:close()
  end)
end)

describe("redis blocking commands", function()
  after_each(helper.no_leaks)

  it("BLMOVE waits for an item pushed by another client", function()
    local r <close> = redis.connect(srv.url .. "/3")
    local obs <close> = redis.connect(srv.url .. "/3")
    obs:del("src", "dst")
    local t = asyncio.create_task(function() return r:blmove("src", "dst", "LEFT", "RIGHT", 5) end)
    asyncio.sleep(0.05)
    obs:rpush("src", "job")
    assert.are.equal("job", t:await())
    assert.are.same({"job"}, obs:lrange("dst", 0, -1))
  end)

  it("a cancelled BLMOVE closes its connection, so it can take no item later", function()
    local r <close> = redis.connect(srv.url .. "/3")
    local obs <close> = redis.connect(srv.url .. "/3")
    obs:del("src", "dst")
    local before = clients(obs)
    local t = asyncio.create_task(function() return r:blmove("src", "dst", "LEFT", "RIGHT", 0) end)
    -- the server blocks it once the command arrives (later when loaded)
    helper.wait_until(function()
      return tonumber(obs:info("clients"):match("blocked_clients:(%d+)")) == 1
    end, 5, "the BLMOVE to block")
    t:cancel()
    helper.await_cancelled(t)
    -- the server sees the blocked client go
    local deadline = asyncio.time() + 2 * helper.slow
    while clients(obs) >= before and asyncio.time() < deadline do asyncio.sleep(0.01) end
    assert.are.equal(before - 1, clients(obs))
    obs:rpush("src", "later")
    asyncio.sleep(0.05)
    assert.are.same({"later"}, obs:lrange("src", 0, -1)) -- nobody took it
    -- the client reconnects for its next command
    assert.are.equal("PONG", r:ping())
  end)

  it("wait_for around a blocking command times out cleanly", function()
    local r <close> = redis.connect(srv.url .. "/3")
    helper.raises(asyncio.TimeoutError, asyncio.wait_for, function()
      return r:blpop("empty", 0)
    end, 0.1)
    assert.are.equal("PONG", r:ping())
  end)

  it("on a pool, a blocking command holds a connection of its own", function()
    local pool <close> = redis.pool{url = srv.url .. "/3", size = 2}
    pool:del("q")
    local t = asyncio.create_task(function() return pool:blpop("q", 5) end)
    asyncio.sleep(0.05)
    -- the shared connection is not stuck behind the BLPOP
    assert.are.equal("PONG", asyncio.wait_for(function() return pool:ping() end, 1 * helper.slow))
    pool:rpush("q", "item")
    assert.are.same({"q", "item"}, t:await())
  end)
end)

describe("redis pool", function()
  after_each(helper.no_leaks)

  it("acquire() leases a client; <close> gives it back; size caps connections", function()
    local pool <close> = redis.pool{url = srv.url .. "/4", size = 2}
    local a = pool:acquire()
    local b = pool:acquire()
    assert.are_not.equal(a, b)
    local third = asyncio.create_task(function()
      local c <close> = pool:acquire()
      return c
    end)
    asyncio.sleep(0.05)
    assert.is_false(third:done())
    pool:release(a)
    assert.are.equal(a, third:await())
    -- MULTI/EXEC on a leased client is not interleaved with others
    do
      local c <close> = pool:acquire()
      c:multi()
      c:set("t", "1")
      c:incr("t")
      assert.are.same({"OK", 2}, c:exec())
    end
    pool:release(b)
  end)
end)

describe("redis timeouts and reconnection", function()
  after_each(helper.no_leaks)

  it("a command timeout raises TimeoutError and drops the connection", function()
    local r <close> = redis.connect(srv.url, {timeout = 0.2})
    local obs <close> = observer()
    obs:call("CLIENT", "PAUSE", 600, "ALL")
    local t0 = asyncio.time()
    local e = helper.raises(asyncio.TimeoutError, r.get, r, "k")
    assert.matches("no reply within 0.2s", e.message)
    assert.is_true(asyncio.time() - t0 < 0.5 * helper.slow)
    asyncio.sleep(0.5)
    assert.are.equal("PONG", r:ping())
  end)

  it("connect to a closed port raises redis.ConnectionError naming it", function()
    local port, release = helper.refusing_port()
    local e = helper.raises(redis.ConnectionError, redis.connect, "redis://127.0.0.1:" .. port)
    release()
    assert.matches("cannot connect to 127.0.0.1:" .. port, e.message)
    assert.are.equal("ECONNREFUSED", e.code)
  end)

  it("reconnects after the server restarts", function()
    local own = servers.start()
    local r <close> = redis.connect(own.url, {retries = 5, retry_delay = 0.05})
    r:set("k", "before")
    own.stop()
    -- the command in flight when the link drops fails...
    helper.raises(redis.ConnectionError, r.get, r, "k")
    own.start()
    -- ...and the next one reconnects (the data is gone with the server)
    assert.is_nil(r:get("k"))
    assert.are.equal("PONG", r:ping())
    own.cleanup()
  end)

  it("a subscription whose server goes away raises redis.ConnectionError", function()
    local own = servers.start()
    local s <close> = redis.connect(own.url)
    local sub = s:subscribe("c")
    local t = asyncio.create_task(function() return sub:next() end)
    asyncio.sleep(0.05)
    own.cleanup()
    local e = helper.await_error(t)
    assert.is_true(asyncio.is(e, redis.ConnectionError), tostring(e))
    assert.matches("the server closed the connection", e.message)
  end)

  it("gives up after its retries with redis.ConnectionError", function()
    local own = servers.start()
    local r <close> = redis.connect(own.url, {retries = 2, retry_delay = 0.02})
    own.cleanup()
    local t0 = asyncio.time()
    pcall(r.ping, r) -- the drop is seen
    helper.raises(redis.ConnectionError, r.ping, r)
    -- two retries: 0.02 + 0.04 s of backoff at least
    assert.is_true(asyncio.time() - t0 >= 0.05)
  end)

  it("after close(), calls raise; <close> closes", function()
    local r = redis.connect(srv.url)
    r:close()
    local e = helper.raises(redis.ConnectionError, r.ping, r)
    assert.matches("closed", e.message)
  end)
end)

describe("redis connections", function()
  after_each(helper.no_leaks)

  it("connects over a Unix socket (unix:/path?db=N)", function()
    local r <close> = redis.connect("unix:" .. srv.socket .. "?db=5")
    r:set("u", "unix")
    local t <close> = redis.connect(srv.url .. "/5")
    assert.are.equal("unix", t:get("u"))
  end)

  it("a Unix socket path too long for sun_path is refused, not cut to another socket's", function()
    -- a server on a path of exactly 107 bytes (the most sun_path holds)
    local dir = helper.tmpname("-long")
    os.execute("mkdir -p " .. helper.quote(dir))
    local path = dir .. "/" .. string.rep("s", 107 - #dir - 1)
    assert.are.equal(107, #path)
    local own = servers.start{args = {"--unixsocket", path}}
    local ok <close> = redis.connect("unix:" .. path)
    assert.are.equal("PONG", ok:ping())
    -- one byte more: libuv 1.44 would cut it to the path above
    local e = helper.raises(redis.ConnectionError, redis.connect, "unix:" .. path .. "x")
    assert.are.equal("ENAMETOOLONG", e.code)
    own.cleanup()
    os.execute("rm -rf " .. helper.quote(dir))
  end)

  it("authenticates with the URL's password", function()
    local own = servers.start{args = {"--requirepass", "s3cr:t"}}
    local r <close> = redis.connect("redis://:s3cr%3At@127.0.0.1:" .. own.port)
    assert.are.equal("PONG", r:ping())
    -- no password: the first command says so
    local r2 <close> = redis.connect(own.url)
    local e = helper.raises(redis.Error, r2.ping, r2)
    assert.are.equal("NOAUTH", e.kind)
    -- a wrong one: connect itself fails
    e = helper.raises(redis.Error, redis.connect, "redis://:wrong@127.0.0.1:" .. own.port)
    assert.matches("WRONGPASS", e.kind)
    own.cleanup()
  end)

  it("an idle open connection does not keep the program alive", function()
    local out, err, status = helper.run_script(([[
      local redis = require "asyncio.redis"
      local r = redis.connect(%q)
      print(r:ping())
    ]]):format(srv.url))
    assert.are.equal(0, status, err)
    assert.matches("PONG", out)
  end)
end)
