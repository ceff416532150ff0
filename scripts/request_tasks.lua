-- Lecture 000 (Asyncio, K. Tabelskiy), "Tasks": four requests started
-- with create_task; each prints its URL when its answer is in, so the
-- lines come out in order of readiness (mail.ru first), not in the order
-- the tasks were made.  Then the same with as_completed, which hands the
-- results to the caller as they become ready.  The four "sites" are pages
-- of a local server with different delays (offline).
--
-- usage: lasync scripts/request_tasks.lua [--scale 1]   (delays x scale)
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"
local http_server = require "http_server"
local course = require "course"

local opts = course.options{scale = 1}
local server <close> = http_server.start()
local session <close> = http.Session()

-- how long each "site" takes to answer, in seconds
local SITES = {{"google.com", 0.2}, {"yandex.ru", 0.4}, {"rambler.ru", 0.3}, {"mail.ru", 0.1}}

local function url_of(site)
  return ("%s/page/%s?delay=%g"):format(server.url, site[1], site[2] * opts.scale)
end

local function request(url)
  local text = session:get(url):text()
  print("  " .. url:match("/page/([^?]+)"))   -- printed when ready
  return text
end

local function main()
  print("create_task, then await each task in turn:")
  local tasks = {}
  for _, site in ipairs(SITES) do
    tasks[#tasks + 1] = asyncio.create_task(request, url_of(site))
  end
  for _, task in ipairs(tasks) do task:await() end

  print("as_completed: results in order of readiness:")
  local jobs = {}
  for _, site in ipairs(SITES) do
    jobs[#jobs + 1] = asyncio.create_task(function()
      return site[1], #session:get(url_of(site)).body
    end)
  end
  for task in asyncio.as_completed(jobs) do
    local name, size = task:await()
    print(("  %s (%d bytes)"):format(name, size))
  end
end

asyncio.run(main)
