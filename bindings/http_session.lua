-- asyncio.http's sessions (a part of http.lua, compiled in): http.Session,
-- its request methods, stats and close.
local I = ...
local core, http = I.core, I.http
local argerror, checktype = I.argerror, I.checktype
local checkline, checkmethod, checkurl = I.checkline, I.checkmethod, I.checkurl
local checkoptions, checkretry, checkcodec = I.checkoptions, I.checkretry, I.checkcodec
local prepare, send = I.prepare, I.send
local ipairs = ipairs
local perform = core.perform

local Session = {}
Session.__index = Session
Session.__name = "asyncio.http.Session"

local DEFAULT_KEYS = {"timeout", "follow_redirects",
  "max_redirects", "verify", "cafile", "max_body", "proxy"}

-- The timeouts every request has unless it or its session says otherwise
-- (seconds; false: none).  A server that accepts and never answers, or
-- goes quiet mid-body, fails in read_timeout; a long download that keeps
-- moving is never cut (no total timeout by default).  The C half holds
-- them per session, so a plain s:get(url) needs no options table.
local CONNECT_TIMEOUT, READ_TIMEOUT = 30, 60

-- http.Session{limit=100, limit_per_host=0, timeout=, connect_timeout=30,
--   read_timeout=60, headers=, base_url=, verify=, cafile=, proxy=,
--   follow_redirects=, max_redirects=, max_body=, retry=, json_codec=}
function http.Session(opts)
  checktype(opts, 1, "Session", "table", true)
  opts = opts or {}
  checkoptions(opts, 1, "Session", "session")
  local limit = opts.limit or 100
  local per_host = opts.limit_per_host or 0
  if math.type(limit) ~= "integer" or limit < 0 then
    argerror(1, "Session", "limit must be an integer >= 0 (0: no limit)")
  end
  if math.type(per_host) ~= "integer" or per_host < 0 then
    argerror(1, "Session", "limit_per_host must be an integer >= 0")
  end
  checktype(opts.headers, 1, "Session", "table", true)
  checktype(opts.base_url, 1, "Session", "string", true)
  if opts.base_url then checkline(opts.base_url, 1, "Session", "base_url") end
  if opts.headers then prepare({}, "", {headers = opts.headers}, "Session", 1) end
  local retry = opts.retry ~= nil and checkretry(opts.retry, 1, "Session") or nil
  local codec = checkcodec(opts.json_codec, 1, "Session", "option 'json_codec'")
  local defaults
  for _, k in ipairs(DEFAULT_KEYS) do
    if opts[k] ~= nil then
      defaults = defaults or {}
      defaults[k] = opts[k]
    end
  end
  local connect_timeout, read_timeout = opts.connect_timeout, opts.read_timeout
  if connect_timeout == nil then connect_timeout = CONNECT_TIMEOUT end
  if read_timeout == nil then read_timeout = READ_TIMEOUT end
  local self = setmetatable({
    _core = core.session(limit, per_host, connect_timeout, read_timeout),
    _defaults = defaults,
    _retry = retry or nil,
    _json = codec,
    limit = limit,
    limit_per_host = per_host,
    headers = opts.headers,
    base_url = opts.base_url,
    timeout = opts.timeout,
    connect_timeout = connect_timeout,
    read_timeout = read_timeout,
  }, Session)
  self._plain = not defaults and not opts.headers and not retry and not codec
  return self
end

-- session:set_json{encode =, decode =}: the session's JSON codec (nil:
-- http.set_json's or the default).
function Session:set_json(c)
  self._json = checkcodec(c, 1, "set_json", "the codec")
  self._plain = self._plain and not self._json
end

local function absolute(sess, url)
  local base = sess.base_url
  if base and not url:find("^%a[%w+.-]*://") then return core.url_join(base, url) end
  return url
end

-- session:request(method, url [, opts]) -> response
function Session:request(method, url, opts)
  method = checkmethod(method, 1, "request")
  checkurl(url, 2, "request")
  checktype(opts, 3, "request", "table", true)
  url = absolute(self, url)
  if not opts and self._plain then return perform(self._core, method, url) end
  if opts and opts.method ~= nil then
    argerror(3, "request", "option 'method': the method is argument #1")
  end
  local u, o, policy, codec = prepare(self, url, opts, "request", 3)
  return send(self._core, method, u, o, policy, codec)
end

local function verb(method, fname)
  return function(self, url, opts)
    checkurl(url, 1, fname)
    if opts == nil and self._plain and not self.base_url then
      return perform(self._core, method, url)
    end
    checktype(opts, 2, fname, "table", true)
    url = absolute(self, url)
    local m = opts and opts.method
    if m ~= nil then m = checkmethod(m, 2, fname) end
    local u, o, policy, codec = prepare(self, url, opts, fname)
    return send(self._core, m or method, u, o, policy, codec)
  end
end

Session.get = verb("GET", "get")
Session.post = verb("POST", "post")
Session.put = verb("PUT", "put")
Session.patch = verb("PATCH", "patch")
Session.delete = verb("DELETE", "delete")
Session.head = verb("HEAD", "head")

-- How many requests are in flight, running in curl, waiting for a slot.
function Session:stats()
  local inflight, running, waiting, idle = core.stats(self._core)
  return {inflight = inflight, running = running, waiting = waiting, idle_handles = idle}
end

function Session:close()
  self.closed = true
  core.close(self._core)
end
Session.__close = Session.close
