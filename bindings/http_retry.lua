-- asyncio.http's retries (a part of http.lua, compiled in): the option
-- retry = {...} checked, backoff, Retry-After, and the retrying send.
local I = ...
local core, http = I.core, I.http
local argerror, checkmethod, rmethods = I.argerror, I.checkmethod, I.rmethods
local type, tostring, error = type, tostring, error
local perform = core.perform

-- RFC 9110 9.2.2: the methods a retry may send again by default.
local IDEMPOTENT = {GET = true, HEAD = true, PUT = true, DELETE = true,
                    OPTIONS = true, TRACE = true}
local RETRY_ON = {connect = true, dns = true, timeout = true, reset = true,
                  protocol = true, tls = true}
local RETRY_STATUSES = {429, 502, 503, 504}
local RETRY_ERRORS = {"connect", "timeout", "reset"}

local function set_of(list, n, fname, what, check)
  if type(list) ~= "table" then argerror(n, fname, what .. " must be a list") end
  local set = {}
  for i = 1, #list do set[check(list[i], i)] = true end
  return set
end

-- The option retry = {count =, backoff =, max_backoff =, max_retry_after =,
-- statuses =, on =, methods =} (or a count, or false) checked and filled
-- with the defaults; false for none.
local function checkretry(r, n, fname)
  if r == false then return false end
  if math.type(r) == "integer" then r = {count = r} end
  if type(r) ~= "table" then
    argerror(n, fname, "option 'retry' must be a table, an integer or false")
  end
  local bad = core.unknown_option(r, "retry")
  if bad then argerror(n, fname, ("unknown option 'retry.%s'"):format(bad)) end
  local count = r.count == nil and 3 or r.count
  if math.type(count) ~= "integer" or count < 0 or count > 1000 then
    argerror(n, fname, "option 'retry.count' must be an integer in 0..1000")
  end
  local function seconds(k, default)
    local v = r[k]
    if v == nil then return default end
    if type(v) ~= "number" or not (v >= 0 and v < math.huge) then
      argerror(n, fname, ("option 'retry.%s' must be a number of seconds >= 0"):format(k))
    end
    return v
  end
  local p = {count = count, backoff = seconds("backoff", 0.2),
             max_backoff = seconds("max_backoff", 10),
             max_retry_after = seconds("max_retry_after", 30)}
  p.statuses = set_of(r.statuses or RETRY_STATUSES, n, fname, "option 'retry.statuses'",
    function(v)
      if math.type(v) ~= "integer" or v < 100 or v > 599 then
        argerror(n, fname, "option 'retry.statuses' must list integers in 100..599")
      end
      return v
    end)
  p.on = set_of(r.on or RETRY_ERRORS, n, fname, "option 'retry.on'", function(v)
    if not RETRY_ON[v] then
      argerror(n, fname, ("option 'retry.on': %q is not one of connect, dns, "
        .. "timeout, reset, protocol, tls"):format(tostring(v)))
    end
    return v
  end)
  p.methods = r.methods == nil and IDEMPOTENT or set_of(r.methods, n, fname,
    "option 'retry.methods'", function(v) return checkmethod(v, n, fname) end)
  return p
end

-- Exponential backoff with jitter: the n-th wait is drawn from
-- [d/2, d], d = backoff * 2^(n-1) capped at max_backoff, so that clients
-- that failed together do not come back together.
local random = math.random
local function backoff(p, n)
  local d = p.backoff * 2 ^ (n - 1)
  if d > p.max_backoff then d = p.max_backoff end
  return d * (0.5 + 0.5 * random())
end

-- The wait a 429 or 503 asks for (Retry-After: seconds or an HTTP date),
-- nil when there is none to read, false when it is over the cap (then the
-- response is the answer: waiting that long was not asked for).
local function retry_after(resp, p)
  local v = resp.headers["retry-after"]
  if not v then return nil end
  local secs = tonumber(v:match("^%s*(%d+)%s*$"))
  if not secs then
    local t = core.getdate(v)
    if not t then return nil end
    secs = t - os.time()
  end
  if secs < 0 then secs = 0 end
  if secs > p.max_retry_after then return false end
  return secs
end

local aio -- asyncio, for sleep() and is() (loaded on the first retry)

-- perform, sent again as the policy says.  The last error says how many
-- attempts were made; a response carries resp.attempts.
local function retrying(p, cs, method, u, o)
  aio = aio or require "asyncio"
  local attempt = 1
  while true do
    local ok, r = pcall(perform, cs, method, u, o)
    local wait
    if ok then
      local status = r.status
      if attempt > p.count or not p.statuses[status] then
        rawset(r, "attempts", attempt)
        return r
      end
      if status == 429 or status == 503 then wait = retry_after(r, p) end
      if wait == false then
        rawset(r, "attempts", attempt)
        return r
      end
      rmethods.close(r)
    elseif attempt > p.count or not aio.is(r, http.Error) or not p.on[r.kind] then
      if attempt > 1 and aio.is(r, http.Error) then
        r.attempts = attempt
        r.message = ("%s after %d attempts"):format(r.message, attempt)
      end
      error(r, 0)
    end
    aio.sleep(wait or backoff(p, attempt))
    attempt = attempt + 1
  end
end

I.checkretry, I.retrying = checkretry, retrying
