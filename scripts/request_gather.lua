-- Lecture 000 (Asyncio, K. Tabelskiy), "Коррутины": request(url) opens a
-- session, sends a GET, waits for the text and closes the session; then
-- four requests run at once with gather.  The "sites" are pages of a
-- local server that answers each request after --delay seconds (offline).
--
-- usage: lasync scripts/request_gather.lua [--delay 0.3]
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"
local http_server = require "http_server"
local course = require "course"

local opts = course.options{delay = 0.3}
local server <close> = http_server.start{delay = opts.delay}

-- Python: async def request(url)
local function request(url)
  local session = http.Session()       -- session = aiohttp.ClientSession()
  local response = session:get(url)    -- response = await session.get(url)
  local text = response:text()         -- text = await response.text()
  session:close()                      -- await session.close()
  return text
end

local function title(html) return html:match("<title>(.-)</title>") end

local SITES = {"google.com", "yandex.ru", "rambler.ru", "mail.ru"}

local function main()
  -- await request('http://google.com')
  print("one request:  " .. title(request(server.url .. "/page/google.com")))

  -- asyncio.gather(coroutine1, coroutine2, coroutine3, coroutine4)
  local t0 = asyncio.time()
  local jobs = {}
  for i, site in ipairs(SITES) do
    jobs[i] = function() return request(server.url .. "/page/" .. site) end
  end
  local texts = asyncio.gather(jobs)   -- results in argument order
  local secs = asyncio.time() - t0
  for i, text in ipairs(texts) do print(("gather [%d]:   %s"):format(i, title(text))) end
  print(("4 requests of %.1f s each took %.2f s together (one after another: %.1f s)")
    :format(opts.delay, secs, 4 * opts.delay))
end

asyncio.run(main)                      -- asyncio.run(main())
