-- Lecture 001, homework 2: the image downloader that writes its files
-- asynchronously.  Downloads 10 images concurrently; resp:save streams each
-- body to its file with uv_fs_write on libuv's thread pool, so the loop
-- never blocks on the disk (no aiofiles-like extra library needed).
--
-- usage: lasync scripts/download_images.lua [BASE_URL [OUTDIR]]
--   fetches BASE_URL/image/1.png .. BASE_URL/image/10.png into OUTDIR
--   (default: ./images).  Without BASE_URL it starts the course's local
--   server (scripts/lib/http_server.lua, 0.2 s per answer) and writes to a
--   temporary directory that it removes at the end.
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"

local course = require "course"
local USAGE = "download_images.lua [BASE_URL [OUTDIR]]"
if arg[1] == "-h" or arg[1] == "--help" then course.usage(USAGE) end
for _, a in ipairs(arg) do
  if a:match("^%-") then course.usage(USAGE, "unknown option " .. a) end
end
if #arg > 2 then course.usage(USAGE, "too many arguments") end
local base, outdir = arg[1], arg[2] or "images"
local server, tmpdir
if not base then
  server = require("http_server").start{delay = 0.2}
  base = server.url
  tmpdir = os.tmpname()
  os.remove(tmpdir)
  outdir = tmpdir
end
base = base:gsub("/+$", "")
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
os.execute("mkdir -p " .. q(outdir))

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
if server then
  server:close()
  os.execute("rm -rf " .. q(tmpdir))
end
