-- scripts/fetcher.lua --redis: three worker processes share one URL list
-- through a real redis-server; one is killed with SIGKILL halfway; every
-- URL still gets exactly one stored result.
local helper = require "spec.helper"
local servers = require "spec.redis_servers"
local redis = require "asyncio.redis"

-- An HTTP server that counts the requests per path and answers each
-- after `delay` seconds (Connection: close), once `gate` (an Event, set
-- at first) is set.
local function counting_server(delay)
  local counts = {}
  local gate = asyncio.Event()
  gate:set()
  local srv = asyncio.start_server(function(r, w)
    local line = r:readline()
    local path = line:match("^GET (%S+)")
    repeat local h = r:readline() until h == "\r\n" or h == ""
    if path then counts[path] = (counts[path] or 0) + 1 end
    gate:wait()
    asyncio.sleep(delay)
    local body = "page " .. tostring(path)
    w:write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
      :format(#body, body))
    pcall(w.drain, w)
    w:close()
  end, "127.0.0.1", 0)
  return srv, counts, gate
end

local function worker(rurl, file)
  local args = {"scripts/fetcher.lua", "--redis", rurl, "--queue", "q",
                "--visibility", tostring(2 * helper.slow), "-c", "4"}
  if file then args[#args + 1] = file end
  return asyncio.create_subprocess_exec(helper.lasync, args,
    {stdin = "devnull", stdout = "pipe", stderr = "pipe"})
end

describe("fetcher.lua --redis", function()
  local rsrv, hsrv, counts, gate
  setup(function()
    rsrv = servers.start()
    hsrv, counts, gate = counting_server(0.05)
  end)
  teardown(function()
    hsrv:close()
    rsrv.cleanup()
  end)

  it("a worker killed mid-run loses no URL and no URL is stored twice", function()
    local N = 300
    local file = helper.tmpname(".urls")
    local f = assert(io.open(file, "w"))
    for i = 1, N do f:write(("http://127.0.0.1:%d/p/%d\n"):format(hsrv.port, i)) end
    f:write(("http://127.0.0.1:%d/p/1\n"):format(hsrv.port)) -- a duplicate line
    f:close()
    local r <close> = redis.connect(rsrv.url)
    local a = worker(rsrv.url, file)
    local b = worker(rsrv.url)
    local c = worker(rsrv.url)
    -- halfway: kill b while it holds URLs
    local deadline = asyncio.time() + 30 * helper.slow
    while (r:hlen("q:results") or 0) < N / 2 do
      assert.is_true(asyncio.time() < deadline, "no progress")
      asyncio.sleep(0.01)
    end
    -- answers wait from now on: b's fetches in flight stay unacked, so b
    -- comes to hold URLs even if the rest of the list would have been done
    -- before we looked (a starved spec process on a loaded machine)
    gate:clear()
    -- what b holds, from the group's pending list (entries a dead worker
    -- held stay there until another worker claims them)
    local function held_by_b()
      local pending = r:xpending("q:stream", "workers")
      for _, consumer in ipairs(pending[4] ~= redis.null and pending[4] or {}) do
        if consumer[1]:match("%-" .. b.pid .. "$") then return tonumber(consumer[2]) end
      end
      return 0
    end
    -- a loaded machine may find b between two URLs, and b may ack the URL
    -- it held between our look and the kill: freeze b with SIGSTOP, look,
    -- and kill only a frozen b that holds something
    local held = 0
    while held == 0 do
      assert.is_true(asyncio.time() < deadline, "b never held a URL")
      b:send_signal("SIGSTOP")
      held = held_by_b()
      if held == 0 then
        b:send_signal("SIGCONT")
        asyncio.sleep(0.001)
      end
    end
    b:kill()
    b:wait()
    gate:set()
    assert.are.equal(held, held_by_b(), "b's pending URLs changed after it was frozen")
    local out_a, err_a = a.stdout:read(), a.stderr:read()
    assert.are.equal(0, a:wait(), err_a)
    local out_c, err_c = c.stdout:read(), c.stderr:read()
    assert.are.equal(0, c:wait(), err_c)
    assert.matches("queued 300 new URLs of 301 in q", out_a)
    assert.matches("worker .*: fetched %d+, stored %d+ results", out_c)
    -- every URL has one result, stored once
    local results, stores = r:hgetall("q:results"), r:hgetall("q:stores")
    local n = 0
    for i = 1, N do
      local u = ("http://127.0.0.1:%d/p/%d"):format(hsrv.port, i)
      assert.are.equal("200", (results[u] or ""):match("^(%d+)"), u)
      assert.are.equal("1", stores[u], u)
      n = n + 1
    end
    assert.are.equal(N, r:hlen("q:results"))
    -- every URL was fetched; only what b held when it died was fetched twice
    local total = 0
    for i = 1, N do
      local k = counts["/p/" .. i] or 0
      assert.is_true(k >= 1, "/p/" .. i .. " never fetched")
      total = total + k
    end
    assert.is_true(held >= 1, "b held nothing when killed")
    assert.is_true(total - N <= 4, ("%d fetches for %d URLs"):format(total, N))
    -- nothing is left pending
    assert.are.equal(0, r:xpending("q:stream", "workers")[1])
    os.remove(file)
  end)
end)
