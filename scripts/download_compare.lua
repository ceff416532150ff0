-- Lecture 002 (Asyncio, the blog post), "Более практичный пример": download
-- 10 images from loremflickr.com/320/240 without concurrency, then with it,
-- and time both.  Here a local server stands in for loremflickr (offline):
-- /320/240 redirects to a fresh /cache/resources/N_320x240.jpg, and every
-- answer takes --delay seconds, like a far-away server.
--   without: get_file + write_file, one image after the other, io.open writes
--   with:    a task per image, all at once; resp:save() writes the file on
--            libuv's thread pool, so the loop never blocks on the disk
-- This is `make run`'s example.
--
-- usage: lasync scripts/download_compare.lua [--count 10] [--delay 0.15] [--out DIR]
--   (without --out the files go to a temporary directory, removed at the end)
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"
local http_server = require "http_server"
local course = require "course"

local opts = course.options{count = 10, delay = 0.15, out = ""}
local outdir = opts.out
if outdir == "" then
  outdir = os.tmpname()
  os.remove(outdir)
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
os.execute("mkdir -p " .. q(outdir))

local server <close> = http_server.start{delay = opts.delay}
local url = server.url .. "/320/240"          -- 'https://loremflickr.com/320/240'

-- Without concurrency (the post uses requests): each download waits for
-- the one before.
local function get_file(u)
  return http.fetch(u)                        -- requests.get(url, allow_redirects=True)
end

local function write_file(response)
  local filename = response.url:match("[^/]+$")
  local file <close> = assert(io.open(outdir .. "/" .. filename, "wb"))
  file:write(response.body)
  return #response.body
end

local function without_concurrency()
  local bytes = 0
  for i = 1, opts.count do
    bytes = bytes + write_file(get_file(url))
    course.progress("sequential", i, opts.count)
  end
  return bytes
end

-- With concurrency: async def fetch_content(url, session)
local function with_concurrency()
  local done, bytes = 0, 0
  local session <close> = http.Session()      -- async with aiohttp.ClientSession()
  local function fetch_content()
    local response <close> = session:get(url, {stream = true})
    local filename = response.url:match("[^/]+$")
    local n = response:save(outdir .. "/" .. filename)  -- an asynchronous write
    -- (not `bytes = bytes + response:save(...)`: that reads `bytes` before
    -- the call suspends, and the other tasks' additions would be lost)
    bytes = bytes + n
    done = done + 1
    course.progress("concurrent", done, opts.count)
  end
  local tasks = {}
  for i = 1, opts.count do tasks[i] = asyncio.create_task(fetch_content) end
  asyncio.gather(tasks)                       -- await asyncio.gather(*tasks)
  return bytes
end

print(("%d images from %s, each answer after %g s"):format(opts.count, url, opts.delay))
local t0 = asyncio.time()
local bytes1 = without_concurrency()
local sequential = asyncio.time() - t0
print(("without concurrency: %6.2f s  (%d bytes)"):format(sequential, bytes1))

t0 = asyncio.time()
local bytes2 = with_concurrency()
local concurrent = asyncio.time() - t0
print(("with concurrency:    %6.2f s  (%d bytes, at most %d requests at once on the server)")
  :format(concurrent, bytes2, server.max_inflight))
print(("speed-up: %.1fx"):format(sequential / concurrent))

local files = 0
for _ in io.popen("ls " .. q(outdir)):lines() do files = files + 1 end
print(("%d files in %s"):format(files, opts.out ~= "" and outdir or "a temporary directory (removed)"))
if opts.out == "" then os.execute("rm -rf " .. q(outdir)) end
