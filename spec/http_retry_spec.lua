-- http retry policies (option retry, Session{retry=}) against the python
-- test server's /flaky endpoint: a request that fails N times (a status,
-- with or without Retry-After, a TCP reset, a close without answer, no
-- answer at all) and then succeeds; /tries counts what the server saw.
local helper = require "spec.helper"
local servers = require "spec.http_servers"
local http = require "asyncio.http"

local err_of = helper.error_of

-- The 200 that a fetch of u with a fast policy ends in, and how long it
-- took: that is the wait(s) the policy chose.
local function timed_ok(u, retry)
  local t0 = asyncio.time()
  local r = http.fetch(u, {retry = retry or {backoff = 0.01}})
  assert.are.equal(200, r.status)
  return asyncio.time() - t0
end

describe("http retry", function()
  local py
  local n = 0

  setup(function() py = servers.start_python() end)
  teardown(function() if py then py.stop() end end)
  after_each(helper.no_leaks)

  -- a fresh key per test: the server counts requests per key
  local function flaky(query)
    n = n + 1
    local key = "k" .. n .. "_" .. math.random(1 << 30)
    return py.url .. "/flaky?key=" .. key .. "&" .. query, key
  end
  local function tries(key)
    return http.fetch(py.url .. "/tries?key=" .. key):json().count
  end
  local FAST = {count = 3, backoff = 0.01}

  describe("statuses", function()
    it("a request that fails twice with 503 succeeds on the third attempt", function()
      local u, key = flaky("fails=2&status=503")
      local r = http.fetch(u, {retry = FAST})
      assert.are.equal(200, r.status)
      assert.are.equal("ok after 2", r.body)
      assert.are.equal(3, r.attempts)
      assert.are.equal(3, tries(key))
    end)

    it("gives the last response back, with its attempts, once the count is spent", function()
      local u, key = flaky("fails=10&status=502")
      local r = http.fetch(u, {retry = {count = 2, backoff = 0.01}})
      assert.are.equal(502, r.status)
      assert.are.equal(3, r.attempts)
      assert.are.equal(3, tries(key))
    end)

    it("does not retry a status the policy does not list (500 by default)", function()
      local u, key = flaky("fails=1&status=500")
      local r = http.fetch(u, {retry = FAST})
      assert.are.equal(500, r.status)
      assert.are.equal(1, r.attempts)
      assert.are.equal(1, tries(key))
      local u2 = flaky("fails=1&status=500")
      assert.are.equal(200, http.fetch(u2, {retry = {backoff = 0.01, statuses = {500}}}).status)
    end)

    it("count = 0 and retry = false send once", function()
      local u, key = flaky("fails=2&status=503")
      assert.are.equal(503, http.fetch(u, {retry = 0}).status)
      assert.are.equal(503, http.fetch(u .. "&x=1", {retry = false}).status)
      assert.are.equal(2, tries(key))
    end)

    it("retries a stream, closing the failed response", function()
      local u = flaky("fails=1&status=503")
      local r <close> = http.fetch(u, {retry = FAST, stream = true})
      assert.are.equal(200, r.status)
      assert.are.equal("ok after 1", r:read())
    end)
  end)

  describe("Retry-After", function()
    it("waits the seconds a 503 asks for", function()
      local dt = timed_ok((flaky("fails=1&status=503&retry_after=1")))
      assert.is_true(dt >= 0.95 and dt < 1 + 2 * helper.slow, "took " .. dt)
    end)

    it("and a 429's, given as an HTTP date", function()
      local dt = timed_ok((flaky("fails=1&status=429&retry_after_date=2")))
      -- the date has whole seconds: 2 s ahead is 1..2 s away
      assert.is_true(dt >= 0.9 and dt < 2 + 2 * helper.slow, "took " .. dt)
    end)

    it("over max_retry_after, the response is the answer at once", function()
      local u, key = flaky("fails=1&status=503&retry_after=100")
      local t0 = asyncio.time()
      local r = http.fetch(u, {retry = {max_retry_after = 1}})
      assert.are.equal(503, r.status)
      assert.are.equal("100", r.headers["retry-after"])
      assert.are.equal(1, r.attempts)
      assert.is_true(asyncio.time() - t0 < 0.5 * helper.slow)
      assert.are.equal(1, tries(key))
    end)

    it("is not read on other statuses, nor when it is not a number or a date", function()
      local u = flaky("fails=1&status=502&retry_after=100")
      local t0 = asyncio.time()
      assert.are.equal(200, http.fetch(u, {retry = {backoff = 0.01}}).status)
      local u2 = flaky("fails=1&status=503&retry_after=soon")
      assert.are.equal(200, http.fetch(u2, {retry = {backoff = 0.01}}).status)
      assert.is_true(asyncio.time() - t0 < 0.5 * helper.slow)
    end)
  end)

  describe("errors", function()
    it("retries a connection reset and a close without answer by default", function()
      for _, how in ipairs{"reset", "drop"} do
        -- a new session: no pooled connection that curl's own keep-alive
        -- retry would replace (it is counted by the server, not here)
        local s <close> = http.Session()
        local u, key = flaky("fails=2&how=" .. how)
        local r = s:get(u, {retry = FAST})
        assert.are.equal(200, r.status, how)
        assert.are.equal(3, r.attempts)
        assert.are.equal(3, tries(key))
      end
    end)

    it("retries a timeout (each attempt has the whole timeout)", function()
      local u, key = flaky("fails=1&how=hang")
      local t0 = asyncio.time()
      local r = http.fetch(u, {retry = FAST, timeout = 0.3})
      local dt = asyncio.time() - t0
      assert.are.equal(200, r.status)
      assert.are.equal(2, r.attempts)
      assert.are.equal(2, tries(key))
      assert.is_true(dt >= 0.28 and dt < 1.5 * helper.slow, "took " .. dt)
    end)

    it("the last error says how many attempts were made", function()
      local port, release = helper.refusing_port()
      local e = err_of(http.fetch, "http://127.0.0.1:" .. port .. "/", {retry = {count = 2, backoff = 0.01}})
      release()
      assert.is_true(asyncio.is(e, http.Error), tostring(e))
      assert.are.equal("connect", e.kind)
      assert.are.equal(3, e.attempts)
      assert.matches("after 3 attempts", e.message)
      assert.matches("after 3 attempts", tostring(e))
    end)

    it("does not retry an error kind the policy leaves out", function()
      local s <close> = http.Session() -- a fresh connection (see above)
      local u, key = flaky("fails=1&how=reset")
      local e = err_of(s.get, s, u, {retry = {on = {"timeout"}, backoff = 0.01}})
      assert.are.equal("reset", e.kind)
      assert.is_nil(e.attempts)
      assert.is_nil(e.message:find("attempts", 1, true))
      assert.are.equal(1, tries(key))
    end)
  end)

  describe("methods", function()
    it("sends a POST once by default, again when the policy names it", function()
      local u, key = flaky("fails=1&status=503")
      assert.are.equal(503, http.fetch(u, {method = "POST", body = "x", retry = FAST}).status)
      assert.are.equal(1, tries(key))
      local u2, key2 = flaky("fails=1&status=503")
      local r = http.fetch(u2, {method = "POST", body = "x", retry = {backoff = 0.01, methods = {"post"}}})
      assert.are.equal(200, r.status)
      assert.are.equal(2, tries(key2))
    end)

    it("retries the idempotent methods by default", function()
      for _, m in ipairs{"GET", "HEAD", "PUT", "DELETE", "OPTIONS"} do
        local u, key = flaky("fails=1&status=503")
        assert.are.equal(200, http.fetch(u, {method = m, retry = FAST}).status, m)
        assert.are.equal(2, tries(key), m)
      end
      local u, key = flaky("fails=1&status=503")
      assert.are.equal(503, http.fetch(u, {method = "PATCH", body = "x", retry = FAST}).status)
      assert.are.equal(1, tries(key))
    end)
  end)

  describe("backoff", function()
    it("doubles from backoff, with jitter in [d/2, d]", function()
      -- three waits: d = 0.1, 0.2, 0.4 -> 0.35 .. 0.7 s in all
      local dt = timed_ok((flaky("fails=3&status=503")), {count = 3, backoff = 0.1})
      assert.is_true(dt >= 0.34 and dt < 0.7 + 0.5 * helper.slow, "took " .. dt)
    end)

    it("is capped by max_backoff", function()
      local dt = timed_ok((flaky("fails=3&status=503")), {count = 3, backoff = 5, max_backoff = 0.1})
      assert.is_true(dt >= 0.14 and dt < 0.3 + 0.5 * helper.slow, "took " .. dt)
    end)

    it("a cancel during the wait ends the request at once; nothing is sent again", function()
      local u, key = flaky("fails=5&status=503")
      local t = asyncio.create_task(function()
        return http.fetch(u, {retry = {count = 3, backoff = 30}})
      end)
      asyncio.sleep(0.2)
      local t0 = asyncio.time()
      t:cancel()
      helper.await_cancelled(t)
      assert.is_true(asyncio.time() - t0 < 0.1 * helper.slow)
      asyncio.sleep(0.05)
      assert.are.equal(1, tries(key))
    end)
  end)

  describe("sessions", function()
    it("Session{retry=} is the default of its requests; a request's retry wins", function()
      local s <close> = http.Session{retry = {count = 2, backoff = 0.01}}
      local u, key = flaky("fails=2&status=503")
      assert.are.equal(200, s:get(u).status)
      assert.are.equal(3, tries(key))
      local u2, key2 = flaky("fails=2&status=503")
      assert.are.equal(503, s:get(u2, {retry = false}).status)
      assert.are.equal(1, tries(key2))
      local u3 = flaky("fails=2&status=503")
      assert.are.equal(200, s:request("GET", u3).status)
    end)
  end)

  describe("hostile options", function()
    local u
    setup(function() u = py.url .. "/echo" end)

    it("names the option and what is wrong", function()
      local cases = {
        {"x", "option 'retry' must be a table, an integer or false"},
        {{bogus = 1}, "unknown option 'retry.bogus'"},
        {{count = -1}, "option 'retry.count' must be an integer in 0..1000"},
        {{count = 1.5}, "option 'retry.count'"},
        {-1, "option 'retry.count'"},
        {{backoff = -1}, "option 'retry.backoff' must be a number of seconds >= 0"},
        {{backoff = 0 / 0}, "option 'retry.backoff'"},
        {{max_backoff = math.huge}, "option 'retry.max_backoff'"},
        {{max_retry_after = "1"}, "option 'retry.max_retry_after'"},
        {{statuses = 503}, "option 'retry.statuses' must be a list"},
        {{statuses = {"503"}}, "option 'retry.statuses' must list integers in 100..599"},
        {{statuses = {99}}, "option 'retry.statuses'"},
        {{on = {"bogus"}}, "option 'retry.on': \"bogus\" is not one of"},
        {{methods = {"GE T"}}, "is not an HTTP token"},
        {{methods = {"GET\0"}}, "NUL"},
      }
      for _, c in ipairs(cases) do
        local e = err_of(http.fetch, u, {retry = c[1]})
        assert.matches("bad argument #2 to 'fetch'", tostring(e), nil, true)
        assert.is_truthy(tostring(e):find(c[2], 1, true), tostring(e))
      end
      local e = err_of(http.Session, {retry = {bogus = 1}})
      assert.is_truthy(tostring(e):find("bad argument #1 to 'Session' (unknown option 'retry.bogus')", 1, true), tostring(e))
    end)
  end)
end)
