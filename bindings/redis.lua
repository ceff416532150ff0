-- asyncio.redis, the Lua half (compiled in): URLs and options, the Client
-- (reconnection, timeouts, command methods), pub/sub subscriptions and the
-- connection pool.  The C half (`core`, bindings/redis.c) owns the
-- sockets, pipelining and hiredis's parser.
local core = ...
local asyncio = require "asyncio"

local type, pairs, ipairs, select, error, pcall, tostring, tonumber,
      setmetatable, getmetatable, rawget =
  type, pairs, ipairs, select, error, pcall, tostring, tonumber,
  setmetatable, getmetatable, rawget
local mtype, min = math.type, math.min
local is, sleep = asyncio.is, asyncio.sleep
local ccall, cinfo, cclose = core.call, core.info, core.close

local redis = {
  Error = core.Error,                      -- class "RedisError": message, kind
  ConnectionError = core.ConnectionError,  -- class "RedisConnectionError" (a redis.Error)
  null = core.null,                        -- a nil inside an array reply
  DEFAULT_MAX_REPLY = 64 * 1024 * 1024,
}

-- ---- argument errors, at the caller's line -------------------------------

local argerror, checktype =
  core.lua_part("argcheck")()({["=asyncio/redis.lua"] = true})

local function checkcstring(v, n, fname, what)
  if type(v) ~= "string" then
    argerror(n, fname, ("%s: string expected, got %s"):format(what, type(v)))
  end
  if v:find("%z") then argerror(n, fname, what .. " contains a NUL byte") end
  return v
end

-- ---- URLs and options ----------------------------------------------------

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- redis://[[user]:password@]host[:port][/db], unix:/path[?db=N&password=P]
local function parse_url(url, fname)
  local o = {}
  checkcstring(url, 1, fname, "url")
  local path, query = url:match("^unix:(/[^?]*)%??(.*)$")
  if path then
    o.path = path:gsub("^//+", "/")
    for k, v in query:gmatch("([^&=]+)=([^&]*)") do
      if k == "db" then o.db = tonumber(v)
      elseif k == "password" then o.password = unescape(v)
      else argerror(1, fname, ("unknown URL parameter '%s'"):format(k)) end
    end
    return o
  end
  local scheme, rest = url:match("^(rediss?)://(.*)$")
  if not rest then
    argerror(1, fname, ("url %q: redis[s]://host[:port][/db] or unix:/path expected"):format(url))
  end
  if scheme == "rediss" then o.ssl = true end
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if auth then
    local user, pass = auth:match("^([^:]*):(.*)$")
    if user then
      if user ~= "" then o.username = unescape(user) end
      o.password = unescape(pass)
    else
      o.password = unescape(auth)
    end
    rest = hostpart
  end
  local hostport, db = rest:match("^([^/]*)/?(%d*)$")
  if not hostport then argerror(1, fname, ("url %q: bad database number"):format(url)) end
  if db ~= "" then o.db = tonumber(db) end
  local host, port = hostport:match("^%[(.*)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  if not host then argerror(1, fname, ("url %q: bad host or port"):format(url)) end
  if host ~= "" then o.host = host end
  if port ~= "" then o.port = tonumber(port) end
  return o
end

local function check_number(v, n, fname, k, lo, integer)
  if v == nil then return end
  if type(v) ~= "number" or v ~= v or v < lo or (integer and mtype(v) ~= "integer") then
    argerror(n, fname, ("option '%s' must be %s >= %s"):format(k,
      integer and "an integer" or "a number", lo))
  end
end

-- Merges the URL and the options table into one checked settings table.
local function settings(a, b, fname)
  local o, opts
  if type(a) == "string" then
    o = parse_url(a, fname)
    opts = checktype(b, 2, fname, "table", true) or {}
  elseif type(a) == "table" then
    o, opts = {}, a
    if opts.url ~= nil then
      local u = parse_url(opts.url, fname)
      for k, v in pairs(u) do o[k] = v end
    end
  elseif a == nil then
    o, opts = {}, checktype(b, 2, fname, "table", true) or {}
  else
    argerror(1, fname, "string or table expected, got " .. type(a))
  end
  local n = type(a) == "table" and 1 or 2
  local bad = core.unknown_option(opts)
  if bad then argerror(n, fname, ("unknown option '%s'"):format(bad)) end
  if o.ssl and opts.ssl == false then
    argerror(n, fname, "option 'ssl' is false but the URL is rediss:// (TLS)")
  end
  for k, v in pairs(opts) do if k ~= "url" then o[k] = v end end
  for _, k in ipairs{"host", "path", "password", "username", "name"} do
    if o[k] ~= nil then checkcstring(o[k], n, fname, ("option '%s'"):format(k)) end
  end
  if o.port ~= nil and not (mtype(o.port) == "integer" and o.port > 0 and o.port < 65536) then
    argerror(n, fname, "option 'port' must be an integer in 1..65535")
  end
  check_number(o.db, n, fname, "db", 0, true)
  check_number(o.connect_timeout, n, fname, "connect_timeout", 0)
  check_number(o.timeout, n, fname, "timeout", 0)
  check_number(o.max_reply, n, fname, "max_reply", 1, true)
  check_number(o.retries, n, fname, "retries", 0, true)
  check_number(o.retry_delay, n, fname, "retry_delay", 0)
  o.host = o.host or "127.0.0.1"
  if o.ssl ~= nil or o.server_hostname ~= nil or o.ssl_handshake_timeout ~= nil then
    if o.path then argerror(n, fname, "TLS (rediss://, option 'ssl') needs host:port, not a unix: path") end
    core.check_tls(o, o.host)
  end
  o.port = o.port or 6379
  o.db = o.db or 0
  o.connect_timeout = o.connect_timeout or 10
  o.max_reply = o.max_reply or redis.DEFAULT_MAX_REPLY
  o.retries = o.retries or 3
  o.retry_delay = o.retry_delay or 0.1
  return o
end

-- ---- connecting ----------------------------------------------------------

local function conn_error(msg, fields)
  return redis.ConnectionError(msg, fields)
end

local function with_timeout(sec, fn, ...)
  local _ <close> = asyncio.timeout(sec)
  return fn(...)
end

-- TLS (rediss://): asyncio.open_connection makes the stream and does the
-- handshake (tls.c, the stream layer's engine); the connection then runs
-- over it.  The name checked is the host asked for, not its address.
local function connect_tcp(o, address)
  if not o.ssl then return core.connect("tcp", address, o.port, o.max_reply) end
  local _, w = asyncio.open_connection(address, o.port, {ssl = o.ssl,
    server_hostname = o.server_hostname or o.host,
    ssl_handshake_timeout = o.ssl_handshake_timeout})
  local ok, c = pcall(core.adopt, w, o.max_reply)
  if not ok then w:close() error(c, 0) end
  return c
end

-- One connection attempt: every address of the host in turn, within
-- connect_timeout in all; then AUTH, SELECT and CLIENT SETNAME.
local function open_once(o)
  local where = o.path or (o.host .. ":" .. o.port)
  local ok, conn = pcall(with_timeout, o.connect_timeout, function()
    if o.path then return core.connect("unix", o.path, nil, o.max_reply) end
    local addrs
    if o.host:find("^[%d.]+$") or o.host:find(":") then
      addrs = {{address = o.host}}
    else
      addrs = asyncio.getaddrinfo(o.host, o.port)
    end
    local last
    for _, a in ipairs(addrs) do
      local ok2, c = pcall(connect_tcp, o, a.address)
      if ok2 then return c end
      if is(c, asyncio.CancelledError) then error(c, 0) end
      last = c
    end
    error(last or ("no address for " .. o.host), 0)
  end)
  if not ok then
    -- a refused certificate is no reason to retry: raised as it is
    if is(conn, asyncio.CancelledError) or is(conn, asyncio.ssl.SSLCertVerificationError) then
      error(conn, 0)
    end
    local e = conn
    local timeout = is(e, asyncio.TimeoutError)
    error(conn_error(("cannot connect to %s: %s"):format(where,
      timeout and ("no connection within %gs"):format(o.connect_timeout)
      or (type(e) == "table" and e.message or tostring(e))),
      {cause = e, code = type(e) == "table" and e.code or nil, timeout = timeout}), 0)
  end
  local setup = {}
  if o.password then
    setup[#setup + 1] = o.username and {"AUTH", o.username, o.password} or {"AUTH", o.password}
  end
  if o.db ~= 0 then setup[#setup + 1] = {"SELECT", o.db} end
  if o.name then setup[#setup + 1] = {"CLIENT", "SETNAME", o.name} end
  for _, cmd in ipairs(setup) do
    local ok2, e = pcall(ccall, conn, false, table.unpack(cmd))
    if not ok2 then
      cclose(conn)
      error(e, 0)
    end
  end
  return conn
end

-- ---- the client ----------------------------------------------------------

local Client = {}
Client.__index = Client
Client.__name = "asyncio.redis.Client"

-- Commands that wait on the server: no command timeout applies to them,
-- and cancelling one closes its connection (its reply may never come).
local BLOCKING = {BLPOP = true, BRPOP = true, BLMOVE = true, BRPOPLPUSH = true,
  BZPOPMIN = true, BZPOPMAX = true, BLMPOP = true, BZMPOP = true,
  WAIT = true, WAITAOF = true}

local function is_blocking(name, ...)
  local u = name:upper()
  if BLOCKING[u] then return true end
  if u == "XREAD" or u == "XREADGROUP" then
    for i = 1, select("#", ...) do
      local a = select(i, ...)
      if type(a) == "string" and a:upper() == "BLOCK" then return true end
    end
  end
  return false
end

local function new_client(o)
  return setmetatable({_o = o, _lock = asyncio.Lock()}, Client)
end

-- The open connection, connecting (again) if needed: attempts spaced by
-- retry_delay, doubling up to 2 s, at most 1 + retries of them.
local function ensure(self)
  local conn = self._conn
  if conn then return conn end
  if self._closed then error(conn_error("the client is closed"), 3) end
  local _ <close> = self._lock:acquire()
  if self._conn then return self._conn end
  if self._closed then error(conn_error("the client is closed"), 3) end
  local o, delay, err = self._o, self._o.retry_delay, nil
  for attempt = 0, self._ever and o.retries or 0 do
    if attempt > 0 then
      sleep(delay)
      delay = min(delay * 2, 2)
    end
    local ok, c = pcall(open_once, o)
    if ok then
      self._conn, self._ever = c, true
      return c
    end
    if not is(c, redis.ConnectionError) then error(c, 0) end
    err = c
  end
  error(err, 0)
end

local function lost(self, conn)
  if self._conn == conn then self._conn = nil end
end

local function ccall_nb(conn, ...) return ccall(conn, false, ...) end
local ccall_many = core.call_many

-- Runs fn(conn, ...) under the command timeout (what names it in the
-- error); blocking commands have none.
local function run(self, fn, blocking, what, conn, ...)
  local t = self._o.timeout
  if not t or blocking then return fn(conn, ...) end
  local ok, r = pcall(with_timeout, t, fn, conn, ...)
  if ok then return r end
  if is(r, asyncio.TimeoutError) then
    -- the server may answer later or never: the connection is dropped
    lost(self, conn)
    cclose(conn)
    error(asyncio.TimeoutError(("redis %s: no reply within %gs"):format(what, t)), 0)
  end
  error(r, 0)
end

-- On the client's connection (made again if needed); a command that found
-- the connection already down was not sent and goes on the new one.
local function call_on(self, fn, blocking, what, ...)
  local conn = ensure(self)
  local ok, r = pcall(run, self, fn, blocking, what, conn, ...)
  if ok then return r end
  if is(r, redis.ConnectionError) then
    lost(self, conn)
    if r.sent == false then return run(self, fn, blocking, what, ensure(self), ...) end
  end
  error(r, 0)
end

local function check_client(self, fname)
  if getmetatable(self) ~= Client then
    argerror(1, fname, ("redis client expected (call it as r:%s(...))"):format(fname))
  end
end

-- r:call(name, args...) -> the reply.  Any command; arguments are strings
-- (binary-safe) or numbers.
function Client:call(...)
  check_client(self, "call")
  local name = ...
  if type(name) ~= "string" then
    argerror(1, "call", "command name expected, got " .. (name == nil and "no value" or type(name)))
  end
  if is_blocking(...) then
    return call_on(self, ccall, true, name, true, ...)
  end
  return call_on(self, ccall_nb, false, "command " .. name, ...)
end

-- A list of commands, each {name, args...} of strings and numbers.
local function check_commands(cmds, fname)
  checktype(cmds, 1, fname, "table")
  if #cmds == 0 then argerror(1, fname, "a list of commands expected, got an empty table") end
  for i = 1, #cmds do
    local c = cmds[i]
    if type(c) ~= "table" or type(c[1]) ~= "string" then
      argerror(1, fname, ("command %d: {name, args...} expected, got %s"):format(i,
        type(c) == "table" and "no name" or type(c)))
    end
    for j = 2, #c do
      local ty = type(c[j])
      if ty ~= "string" and ty ~= "number" then
        argerror(1, fname, ("command %d, element %d: string or number expected, got %s")
          :format(i, j, ty))
      end
    end
  end
end

-- r:pipeline{{name, args...}, ...} -> {reply, ...}: the commands leave
-- together and the replies come back as one list (nil as redis.null, an
-- error reply as a redis.Error value: nothing is raised for them).
function Client:pipeline(cmds)
  check_client(self, "pipeline")
  check_commands(cmds, "pipeline")
  return call_on(self, ccall_many, false, "pipeline", cmds)
end

-- r:transaction{{name, args...}, ...} -> EXEC's list of replies: MULTI, the
-- commands and EXEC leave together, so no other task's command can land
-- inside the transaction on the shared connection.  Raises redis.Error
-- when the server discarded it (EXECABORT: a command was refused); returns
-- nil when a WATCHed key changed.
function Client:transaction(cmds)
  check_client(self, "transaction")
  check_commands(cmds, "transaction")
  local all = {{"MULTI"}}
  for i = 1, #cmds do all[i + 1] = cmds[i] end
  all[#all + 1] = {"EXEC"}
  local res = call_on(self, ccall_many, false, "transaction", all)
  local exec = res[#res]
  if is(exec, redis.Error) then error(exec, 0) end
  if exec == redis.null then return nil end
  return exec
end

function Client:close()
  self._closed = true
  local conn = self._conn
  self._conn = nil
  if conn then cclose(conn) end
  local pool = rawget(self, "_pool")
  if pool then pool:_forget(self) end
end

-- A client leased from a pool goes back to it when its scope ends.
function Client:__close()
  local pool = rawget(self, "_pool")
  if pool and rawget(self, "_leased") then return pool:release(self) end
  self:close()
end

-- r:stats() -> {connected=, in_flight=, subscribed=, queued_messages=, error=}
-- (error: why the connection went down, while it is not replaced yet)
function Client:stats()
  local conn = self._conn
  if not conn then return {connected = false, in_flight = 0, subscribed = false, queued_messages = 0} end
  local open, n, sub, q, err = cinfo(conn)
  return {connected = open, in_flight = n, subscribed = sub, queued_messages = q,
    error = err ~= "" and err or nil}
end

-- ---- command methods -----------------------------------------------------

local SIMPLE = [[
get set del exists incr incrby incrbyfloat decr decrby expire pexpire expireat
ttl pttl persist keys scan type rename renamenx append strlen getrange
setrange mget mset msetnx setnx setex psetex getdel getex getset unlink
lpush rpush lpushx rpushx lpop rpop llen lrange lrem lindex lset ltrim linsert
lmove blmove blpop brpop rpoplpush brpoplpush lpos
sadd srem smembers sismember smismember scard spop srandmember smove sinter
sunion sdiff
zadd zrem zrange zrangebyscore zrevrange zscore zincrby zcard zrank zrevrank
zcount zpopmin zpopmax bzpopmin bzpopmax
hset hget hdel hexists hincrby hincrbyfloat hkeys hvals hlen hmget hsetnx
hstrlen hscan
xadd xlen xrange xrevrange xread xreadgroup xack xgroup xpending xclaim
xautoclaim xdel xtrim xinfo
publish ping echo flushdb flushall dbsize info time eval evalsha script
watch unwatch multi exec discard
]]

for name in SIMPLE:gmatch("%a+") do
  local upper = name:upper()
  Client[name] = function(self, ...) return Client.call(self, upper, ...) end
end

-- r:hgetall(key) -> {field = value, ...}
function Client:hgetall(key)
  local flat = self:call("HGETALL", key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local SET_OPTS = {ex = true, px = true, exat = true, pxat = true, nx = true,
  xx = true, keepttl = true, get = true}

-- r:set(key, value [, {ex=, px=, exat=, pxat=, nx=, xx=, keepttl=, get=}])
function Client:set(key, value, opts)
  if opts == nil then return self:call("SET", key, value) end
  checktype(opts, 3, "set", "table")
  local args = {}
  for k, v in pairs(opts) do
    if not SET_OPTS[k] then argerror(3, "set", ("unknown option '%s'"):format(tostring(k))) end
    if v ~= false then
      args[#args + 1] = k:upper()
      if v ~= true then args[#args + 1] = v end
    end
  end
  return self:call("SET", key, value, table.unpack(args))
end

-- ---- pub/sub -------------------------------------------------------------

local Subscription = {}
Subscription.__index = Subscription
Subscription.__name = "asyncio.redis.Subscription"

local function to_message(m)
  if type(m) ~= "table" or type(m[1]) ~= "string" then
    error(redis.ConnectionError("protocol error: a pub/sub message that is not an array"), 0)
  end
  local kind = m[1]:lower()
  if kind == "pmessage" then
    return {kind = kind, pattern = m[2], channel = m[3], data = m[4]}
  end
  return {kind = kind, channel = m[2], data = m[3], count = mtype(m[3]) == "integer" and m[3] or nil}
end

-- Messages kept while waiting for confirmations: as many as the C side
-- queues before it pauses reading, so that a flood ahead of the
-- confirmations (or a server that never confirms) cannot fill memory.
local PENDING_MAX = 1024

-- Sends a (p)subscribe / (p)unsubscribe and waits for its confirmations,
-- keeping the messages that arrive meanwhile for next().  With
-- PENDING_MAX messages kept it returns without the rest: next() takes
-- the late confirmations as they come.
local function sub_command(self, name, ...)
  local conn = self._conn
  core.sub_command(conn, name, ...)
  local want = select("#", ...)
  local kind = name:lower()
  if want == 0 then -- unsubscribe from all: one confirmation per channel
    if kind == "unsubscribe" or kind == "punsubscribe" then return end
  end
  local seen = 0
  while seen < want and self._tail - self._head < PENDING_MAX do
    local m = to_message(core.message(conn))
    if m.kind == kind then
      seen = seen + 1
      self._count = m.count
      -- count 0: out of pub/sub mode, the rest of the confirmations
      -- (channels that were not subscribed) are not kept for anyone
      if m.count == 0 then
        self._done = true
        break
      end
    else
      -- at _tail, not #_pending + 1: next() empties the slots it took
      -- (from _head), and # of a table with holes in front may be 0
      self._pending[self._tail] = m
      self._tail = self._tail + 1
    end
  end
end

local function check_channels(fname, ...)
  for i = 1, select("#", ...) do
    local c = select(i, ...)
    if type(c) ~= "string" then
      argerror(i, fname, "channel name (string) expected, got " .. type(c))
    end
  end
end

-- r:subscribe(ch, ...) / r:psubscribe(pattern, ...) -> Subscription: the
-- connection becomes a pub/sub connection (normal commands on it raise)
-- until everything is unsubscribed.  Returns once the server confirmed
-- every channel.
for _, name in ipairs{"subscribe", "psubscribe"} do
  local upper = name:upper()
  Client[name] = function(self, ...)
    check_channels(name, ...)
    if select("#", ...) == 0 then argerror(1, name, "channel name expected") end
    local conn = ensure(self)
    local s = setmetatable({_client = self, _conn = conn, _pending = {}, _head = 1,
      _tail = 1},
      Subscription)
    local ok, e = pcall(sub_command, s, upper, ...)
    if not ok then
      -- cancelled or refused before the confirmations: the connection is
      -- subscribed (or half) with no Subscription to end it, so it goes
      -- (the client's next command reconnects)
      lost(self, conn)
      cclose(conn)
      error(e, 0)
    end
    return s
  end
end

for _, name in ipairs{"subscribe", "psubscribe", "unsubscribe", "punsubscribe"} do
  local upper = name:upper()
  Subscription[name] = function(self, ...)
    check_channels(name, ...)
    if self._done and name:find("unsub") then return end
    self._done = false
    return sub_command(self, upper, ...)
  end
end

-- sub:next() -> {kind = "message", channel =, data =} or {kind =
-- "pmessage", pattern =, channel =, data =}; nil once nothing is
-- subscribed any more (after unsubscribe) or the subscription was closed.
function Subscription:next()
  while true do
    local p = self._pending[self._head]
    if p then
      self._pending[self._head] = nil
      self._head = self._head + 1
      if p.kind == "message" or p.kind == "pmessage" then return p end
    elseif self._done or self._closed then
      return nil
    else
      local m = to_message(core.message(self._conn))
      if m.kind == "message" or m.kind == "pmessage" then return m end
      if m.kind == "unsubscribe" or m.kind == "punsubscribe" then
        if m.count == 0 then self._done = true end
      end
    end
  end
end

Subscription.__call = Subscription.next

-- sub:close(): the connection goes (the client reconnects for its next
-- command), which ends the subscription at once.
function Subscription:close()
  if self._closed then return end
  self._closed = true
  local c = self._client
  if c._conn == self._conn then c._conn = nil end
  cclose(self._conn)
  local pool = rawget(c, "_pool")
  if pool and rawget(c, "_leased") then pool:release(c) end
end
Subscription.__close = Subscription.close

-- ---- the pool ------------------------------------------------------------

local Pool = {}
Pool.__index = Pool
Pool.__name = "asyncio.redis.Pool"

-- pool:acquire() -> a client of its own (for MULTI/EXEC, WATCH, blocking
-- commands); `local c <close> = pool:acquire()` gives it back.
function Pool:acquire()
  while true do
    if self._closed then error(conn_error("the pool is closed"), 2) end
    for _, c in ipairs(self._clients) do
      if not c._leased then
        c._leased = true
        return c
      end
    end
    if #self._clients < self._size then
      local c = new_client(self._o)
      c._pool, c._leased = self, true
      self._clients[#self._clients + 1] = c
      return c
    end
    self._freed:clear()
    self._freed:wait()
  end
end

function Pool:release(c)
  if type(c) ~= "table" or c._pool ~= self then
    argerror(1, "release", "a client acquired from this pool expected")
  end
  c._leased = nil
  self._freed:set()
end

function Pool:_forget(c)
  for i, x in ipairs(self._clients) do
    if x == c then table.remove(self._clients, i) break end
  end
  self._freed:set()
end

-- A shared (pipelined) client: the first one nobody leased.
local function shared(self)
  for _, c in ipairs(self._clients) do
    if not c._leased then return c end
  end
  local c = self:acquire()
  c._leased = nil
  return c
end

function Pool:call(...)
  local name = ...
  if type(name) ~= "string" then
    argerror(1, "call", "command name expected, got " .. (name == nil and "no value" or type(name)))
  end
  if is_blocking(...) then
    local c <close> = self:acquire()
    return c:call(...)
  end
  return shared(self):call(...)
end

-- pool:subscribe(...) / pool:psubscribe(...): on a leased connection,
-- given back by sub:close()
for _, name in ipairs{"subscribe", "psubscribe"} do
  Pool[name] = function(self, ...)
    local c = self:acquire()
    local ok, s = pcall(c[name], c, ...)
    if not ok then
      self:release(c)
      error(s, 0)
    end
    return s
  end
end

function Pool:close()
  self._closed = true
  for _, c in ipairs(self._clients) do
    c._pool = nil
    c:close()
  end
  self._clients = {}
  self._freed:set()
end
Pool.__close = Pool.close

for name in SIMPLE:gmatch("%a+") do
  Pool[name] = function(self, ...) return self:call(name:upper(), ...) end
end
function Pool:hgetall(key) return Client.hgetall(self, key) end
function Pool:pipeline(cmds) return shared(self):pipeline(cmds) end
function Pool:transaction(cmds) return shared(self):transaction(cmds) end
function Pool:set(key, value, opts) return Client.set(self, key, value, opts) end

-- ---- entry points ----------------------------------------------------------

-- redis.connect(url | opts [, opts]) -> Client, connected (raises
-- redis.ConnectionError at once if the server cannot be reached).
function redis.connect(a, b)
  local o = settings(a, b, "connect")
  local c = new_client(o)
  ensure(c)
  return c
end

-- redis.pool{url=, size=, ...} -> Pool; connections are made on demand.
function redis.pool(opts)
  checktype(opts, 1, "pool", "table")
  local size = opts.size or 10
  if not (mtype(size) == "integer" and size >= 1) then
    argerror(1, "pool", "option 'size' must be an integer >= 1")
  end
  local rest = {}
  for k, v in pairs(opts) do if k ~= "size" then rest[k] = v end end
  local o = settings(rest, nil, "pool")
  return setmetatable({_o = o, _size = size, _clients = {},
    _freed = asyncio.Event()}, Pool)
end

return redis
