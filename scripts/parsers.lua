-- Lecture 003 (Асинхронное программирование, А. Вильмов), RUN_UNTIL_COMPLETE:
--   event_loop = asyncio.get_event_loop()
--   event_loop.run_until_complete(asyncio.gather(*parsers))
--   event_loop.close()
-- Each parser downloads a page from a local server (offline; every answer
-- takes --delay seconds) and extracts its <title>.  gather gives the
-- results in the order of the parsers; with return_exceptions a failing
-- parser gives its error in its place instead of failing the whole run.
--
-- usage: lasync scripts/parsers.lua [--count 5] [--delay 0.3]
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"
local http_server = require "http_server"
local course = require "course"

local opts = course.options{count = 5, delay = 0.3}
local server <close> = http_server.start{delay = opts.delay}
local session <close> = http.Session()

-- a parser: async def parse(url) -> title
local function parser(url)
  return function()
    local resp = session:get(url):raise_for_status()
    return resp.body:match("<title>(.-)</title>")
  end
end

local parsers = {}
for i = 1, opts.count do parsers[i] = parser(("%s/page/news-%d"):format(server.url, i)) end

local event_loop = asyncio.get_event_loop()
local t0 = asyncio.time()
-- run_until_complete returns what the operation returns (gather: the list)
local titles = event_loop:run_until_complete(function() return asyncio.gather(parsers) end)
print(("%d parsers in %.2f s (one after another: %.1f s):"):format(
  #titles, asyncio.time() - t0, opts.count * opts.delay))
for i, title in ipairs(titles) do print(("  %d. %s"):format(i, title)) end

-- a parser that fails: its error comes back in its place
parsers[#parsers + 1] = parser(server.url .. "/status/404")
parsers.return_exceptions = true
local results = event_loop:run_until_complete(function() return asyncio.gather(parsers) end)
for i = opts.count, #results do
  print(("  %d. %s"):format(i, tostring(results[i])))
end

-- and without return_exceptions, run_until_complete raises the error
parsers.return_exceptions = nil
local ok, err = pcall(event_loop.run_until_complete, event_loop,
                      function() return asyncio.gather(parsers) end)
print("without return_exceptions: " .. (ok and "no error?" or tostring(err)))
event_loop:close()
