-- Lecture 003 (Асинхронное программирование, А. Вильмов): coordinating
-- coroutines with Event, Semaphore and Queue.  A small crawler:
--   Queue      the pages to fetch, shared by --workers worker tasks
--   Event      the workers wait for the "go" signal before they start
--   Semaphore  at most --limit downloads at once, however many workers
-- The pages come from a local server (offline), --delay seconds each.
--
-- usage: lasync scripts/coordination.lua [--pages 8] [--workers 4] [--limit 2] [--delay 0.2]
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"
local http_server = require "http_server"
local course = require "course"

local opts = course.options{pages = 8, workers = 4, limit = 2, delay = 0.2}
local server <close> = http_server.start{delay = opts.delay}
local session <close> = http.Session()

local queue = asyncio.Queue()                 -- asyncio.Queue()
local go = asyncio.Event()                    -- asyncio.Event()
local polite = asyncio.Semaphore(opts.limit)  -- asyncio.Semaphore(2)
local t0 = asyncio.time()

local function worker(name)
  go:wait()                                   -- await go.wait()
  while true do
    local url = queue:get()                   -- await queue.get()
    do
      local _ <close> = polite:acquire()      -- async with polite:
      local title = session:get(url).body:match("<title>(.-)</title>")
      print(("%5.2f s  %s fetched %s"):format(asyncio.time() - t0, name, title))
    end
    queue:task_done()
  end
end

local workers = {}
for i = 1, opts.workers do workers[i] = asyncio.create_task(worker, "worker " .. i) end
for i = 1, opts.pages do queue:put(("%s/page/page-%d"):format(server.url, i)) end
print(("%d pages queued, %d workers waiting for the signal"):format(queue:qsize(), #workers))

asyncio.sleep(0.1)
go:set()                                      -- go.set(): every worker starts
queue:join()                                  -- await queue.join()
for _, w in ipairs(workers) do w:cancel() end
asyncio.wait(workers)
print(("%d pages in %.2f s, never more than %d downloads at once (the semaphore's limit: %d)")
  :format(opts.pages, asyncio.time() - t0, server.max_inflight, opts.limit))
