-- Lecture 001, homework 1: `fetcher.py -c 10 urls.txt` -- fetches every
-- URL of a file with at most C requests in flight.  A progress line is
-- kept up to date when stdout is a terminal; a summary ends the run.
--
-- usage: lasync scripts/fetcher.lua [-c C] [URLS_FILE | -]
--   URLS_FILE: one URL per line; blank lines and lines starting with # are
--   skipped; `-` reads them from stdin.  Exit status 0 when every URL
--   answered 2xx/3xx; 1 otherwise, and the summary line says how many failed.
--   Without URLS_FILE it fetches 50 pages from the course's local server
--   (scripts/lib/http_server.lua, 0.1 s per answer): no internet needed.
--
-- Distributed: lasync scripts/fetcher.lua --redis redis://HOST:PORT/DB
--                [--queue NAME] [--visibility SEC] [-c C] [URLS_FILE | -]
--   With URLS_FILE the URLs are queued in Redis (each URL once, however
--   many processes load the list); then, with or without one, the process
--   works as one of any number of workers on any machines, each with its
--   own -c, until every URL has a result in Redis (NAME:results).  A worker
--   killed mid-run loses no URL: what it held is claimed again after SEC
--   seconds (default 30) of silence, and each result is stored once
--   (scripts/lib/fetch_queue.lua).
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"
local course = require "course"

local function usage(msg)
  course.usage("fetcher.lua [-c CONCURRENCY] [--redis URL [--queue NAME] "
    .. "[--visibility SEC]] [URLS_FILE | -]", msg)
end

local c, file = 10, nil
local redis_url, queue, visibility = nil, "fetcher", 30
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "-c" then
    c = tonumber(arg[i + 1])
    if not c or c < 1 or c ~= math.floor(c) then usage("-c needs a positive integer") end
    i = i + 2
  elseif a:match("^%-c%d+$") then
    c = tonumber(a:sub(3))
    i = i + 1
  elseif a == "--redis" or a == "--queue" or a == "--visibility" then
    local v = arg[i + 1]
    if not v then usage(a .. " needs a value") end
    if a == "--redis" then redis_url = v
    elseif a == "--queue" then queue = v
    else
      visibility = tonumber(v)
      if not visibility or visibility <= 0 then usage("--visibility needs a number of seconds > 0") end
    end
    i = i + 2
  elseif a == "-h" or a == "--help" then
    usage()
  elseif a ~= "-" and a:match("^%-") then
    usage("unknown option " .. a)
  elseif not file then
    file = a
    i = i + 1
  else
    usage("unexpected argument " .. a)
  end
end
c = math.tointeger(c)

local urls, server = {}, nil
if file then
  local f, err = io.stdin, nil
  if file ~= "-" then f, err = io.open(file) end
  if not f then usage(err) end
  for line in f:lines() do
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" and not line:match("^#") then urls[#urls + 1] = line end
  end
  if f ~= io.stdin then f:close() end
elseif redis_url then
  -- a worker only: the list is (or will be) loaded by another process
else
  server = require("http_server").start{delay = 0.1}
  for n = 1, 50 do urls[n] = ("%s/page/%d"):format(server.url, n) end
  print(("no URLS_FILE: fetching %d pages from a local server"):format(#urls))
end

local tty = os.execute("test -t 1") == true
local session <close> = http.Session{limit = c, timeout = 60}

if redis_url then
  local fq = require "fetch_queue"
  local redis = require "asyncio.redis"
  if file then
    local r <close> = redis.connect(redis_url)
    print(("queued %d new URLs of %d in %s"):format(fq.load(r, queue, urls), #urls, queue))
  end
  local host = io.open("/etc/hostname")
  local me = (host and host:read("l") or "host") .. "-" .. io.open("/proc/self/stat"):read("n")
  if host then host:close() end
  local t1 = asyncio.time()
  local fetched, stored = fq.work(redis_url, {
    name = queue, consumer = me, concurrency = c, visibility = visibility,
    fetch = function(url)
      local ok, resp = pcall(session.get, session, url)
      if ok then return ("%d %d"):format(resp.status, #resp.body) end
      return "error " .. (type(resp) == "table" and resp.kind or "error")
    end,
  })
  print(("worker %s: fetched %d, stored %d results in %.3f s"):format(
    me, fetched, stored, asyncio.time() - t1))
  os.exit(0)
end
local next_i, done, failed, bytes, inflight, max_inflight = 0, 0, 0, 0, 0, 0
local statuses, errors = {}, {}
local t0 = asyncio.time()

local function progress()
  if tty then
    io.write(("\r%d/%d done, %d failed, %d in flight, %.1f KiB"):format(
      done, #urls, failed, inflight, bytes / 1024))
    io.flush()
  end
end

local function worker()
  while next_i < #urls do
    next_i = next_i + 1
    local url = urls[next_i]
    inflight = inflight + 1
    if inflight > max_inflight then max_inflight = inflight end
    local ok, resp = pcall(session.get, session, url)
    inflight = inflight - 1
    done = done + 1
    if ok then
      bytes = bytes + #resp.body
      statuses[resp.status] = (statuses[resp.status] or 0) + 1
      if resp.status >= 400 then failed = failed + 1 end
    else
      failed = failed + 1
      local kind = type(resp) == "table" and resp.kind or "error"
      errors[kind] = (errors[kind] or 0) + 1
      if not tty then io.stderr:write(url, ": ", tostring(resp), "\n") end
    end
    progress()
  end
end

local workers = {}
for w = 1, math.min(c, #urls) do workers[w] = worker end
if #workers > 0 then asyncio.gather(table.unpack(workers)) end
local secs = asyncio.time() - t0
if tty then io.write("\n") end

local parts = {}
for status, n in pairs(statuses) do parts[#parts + 1] = ("%d x%d"):format(status, n) end
for kind, n in pairs(errors) do parts[#parts + 1] = ("%s x%d"):format(kind, n) end
table.sort(parts)
print(("fetched %d urls in %.3f s (%.1f req/s), %d failed, %d bytes, at most %d in flight (limit %d)%s"):format(
  #urls, secs, #urls / math.max(secs, 1e-9), failed, bytes, max_inflight, c,
  failed > 0 and ("; %d of %d URLs failed (no answer, or 4xx/5xx): exit status 1"):format(failed, #urls) or ""))
print("results: " .. (#parts > 0 and table.concat(parts, ", ") or "none"))
if server then server:close() end
os.exit(failed == 0 and 0 or 1)
