-- The distributed side of scripts/fetcher.lua: a reliable work queue on
-- Redis (a stream with a consumer group), so any number of fetcher
-- processes on any machines share one URL list, and a worker that dies
-- mid-run loses no URL and stores none twice.
--
-- Keys (NAME is --queue, "fetcher" by default):
--   NAME:stream   one entry per URL (XADD); the group "workers" hands each
--                 entry to one consumer (XREADGROUP) and keeps it in its
--                 pending list until acknowledged
--   NAME:seen     the set of URLs ever queued: loading twice (or from
--                 several processes at once) queues each URL once
--   NAME:results  url -> "STATUS BYTES" or "error KIND" (one field per URL)
--   NAME:stores   url -> how many times a result was stored (an audit: 1)
--   NAME:loaded   set once a loader has queued its whole list
--
-- A worker claims one entry per free slot (at most -c in flight), fetches
-- it, then stores the result *and* acknowledges the entry in one server
-- side script: XACK says whether the entry was still pending, and only
-- then is the result written.  An entry whose consumer died (or stalled
-- past the visibility timeout) is claimed again by a live one with
-- XAUTOCLAIM: the URL may be fetched twice, but its result is stored once.
local redis = require "asyncio.redis"

local M = {}

-- Queues a URL unless it was queued before.  KEYS: seen, stream.
local ENQUEUE = [[
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'url', ARGV[1])
  return 1
end
return 0]]

-- Acknowledges and stores in one step.  KEYS: stream, results, stores.
-- ARGV: group, id, url, result.
local ACK_STORE = [[
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  return 1
end
return 0]]

local GROUP = "workers"

local function keys(name)
  return {stream = name .. ":stream", seen = name .. ":seen",
          results = name .. ":results", stores = name .. ":stores",
          loaded = name .. ":loaded"}
end

local function ensure_group(r, k)
  local ok, err = pcall(r.xgroup, r, "CREATE", k.stream, GROUP, "0", "MKSTREAM")
  if not ok and not (asyncio.is(err, redis.Error) and err.kind == "BUSYGROUP") then
    error(err, 0)
  end
end

-- Queues the URLs (200 commands in flight at a time on the pipelined
-- connection); returns how many were new.
function M.load(r, name, urls)
  local k = keys(name)
  ensure_group(r, k)
  local new = 0
  for first = 1, #urls, 200 do
    local batch = {}
    for i = first, math.min(first + 199, #urls) do
      batch[#batch + 1] = function()
        return r:eval(ENQUEUE, 2, k.seen, k.stream, urls[i])
      end
    end
    for _, n in ipairs(asyncio.gather(table.unpack(batch))) do new = new + n end
  end
  r:set(k.loaded, "1")
  return new
end

-- Is every queued URL's result stored (and the list loaded)?
local function finished(r, k)
  if not r:get(k.loaded) then return false end
  return r:hlen(k.results) >= r:scard(k.seen)
end

-- Up to n entries for this consumer: new ones (waiting up to `block` ms
-- for the first), or else ones another consumer left pending for longer
-- than `idle` ms.  Returns a list of {id, url}.
local function claim(r, k, consumer, n, block, idle)
  local got = {}
  local res = r:xreadgroup("GROUP", GROUP, consumer, "COUNT", n, "BLOCK", block,
                           "STREAMS", k.stream, ">")
  if res ~= nil and res[1] then
    for _, e in ipairs(res[1][2]) do got[#got + 1] = {e[1], e[2][2]} end
  end
  if #got > 0 then return got end
  local auto = r:xautoclaim(k.stream, GROUP, consumer, idle, "0-0", "COUNT", n)
  for _, e in ipairs(auto[2]) do
    if e ~= redis.null and type(e[2]) == "table" then got[#got + 1] = {e[1], e[2][2]} end
  end
  return got
end

-- Runs a worker until every URL has a result.  opts: name, consumer,
-- concurrency, visibility (seconds), fetch(url) -> result string,
-- on_result(url, result, stored).  Returns fetched, stored counts.
-- One claiming loop takes as many entries as there are free slots (so a
-- claim is one round trip per batch, not per URL); each entry is then a
-- task that fetches, stores and acknowledges.
function M.work(url, opts)
  local k = keys(opts.name)
  local pool <close> = redis.pool{url = url, size = 2}
  local r = pool:acquire()   -- the claiming connection (blocking reads)
  local shared = pool:acquire()
  ensure_group(shared, k)
  local slots = asyncio.Semaphore(opts.concurrency)
  local fetched, stored = 0, 0
  local tg <close> = asyncio.TaskGroup()
  local idle = math.floor(opts.visibility * 1000)
  local function handle(id, u)
    local result = opts.fetch(u)
    fetched = fetched + 1
    local ok = shared:eval(ACK_STORE, 3, k.stream, k.results, k.stores,
                           GROUP, id, u, result)
    if ok == 1 then stored = stored + 1 end
    if opts.on_result then opts.on_result(u, result, ok == 1) end
    slots:release()
  end
  while true do
    slots:acquire()
    local n = 1
    while n < opts.concurrency and not slots:locked() do
      slots:acquire()
      n = n + 1
    end
    local got = claim(r, k, opts.consumer, n, 200, idle)
    for i = #got + 1, n do slots:release() end
    for _, e in ipairs(got) do tg:create_task(handle, e[1], e[2]) end
    if #got == 0 and finished(shared, k) then break end
  end
  pool:release(r)
  pool:release(shared)
  return fetched, stored
end

-- Reads the results: url -> result, and url -> times stored.
function M.results(r, name)
  local k = keys(name)
  return r:hgetall(k.results), r:hgetall(k.stores)
end

return M
