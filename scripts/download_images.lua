-- Downloads 10 images concurrently and writes them to disk without
-- blocking the loop (resp:save streams each body to its file on libuv's
-- thread pool).  The asyncio version of the course's sequential
-- image-download example.
--
-- usage: lasync scripts/download_images.lua BASE_URL [OUTDIR]
--   fetches BASE_URL/image/1.png .. BASE_URL/image/10.png into OUTDIR
--   (default: ./images).  A local server for it:
--   python3 spec/fixtures/http_server.py --port-file /tmp/port
local http = require "asyncio.http"

local base, outdir = arg[1], arg[2] or "images"
if not base then
  io.stderr:write("usage: download_images.lua BASE_URL [OUTDIR]\n")
  os.exit(2)
end
base = base:gsub("/+$", "")
os.execute("mkdir -p '" .. outdir:gsub("'", "'\\''") .. "'")

local session <close> = http.Session{limit = 10, timeout = 30}

local function download(i)
  local url = ("%s/image/%d.png"):format(base, i)
  local resp <close> = session:get(url, {stream = true})
  resp:raise_for_status()
  local path = ("%s/%d.png"):format(outdir, i)
  local n = resp:save(path)
  print(("%-40s -> %s (%d bytes)"):format(url, path, n))
  return n
end

local t0 = asyncio.time()
local jobs = {}
for i = 1, 10 do jobs[i] = function() return download(i) end end
local sizes = asyncio.gather(table.unpack(jobs))
local total = 0
for _, n in ipairs(sizes) do total = total + n end
print(("downloaded %d images, %d bytes in %.3f s"):format(#sizes, total, asyncio.time() - t0))
