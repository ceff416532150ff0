-- Lecture 000 (Asyncio, K. Tabelskiy), "Пример": the VK API pattern
--   API = async_vk_api.make_api(TOKEN)
--   async def request(**kwargs): return await API.users.get(**kwargs)
--   await asyncio.gather(request(...), request(...), ...)
-- Python's **kwargs become a Lua table argument: API.users.get{user_ids = 1}.
-- API.<group>.<method> is built on demand with __index, and calls
-- GET /method/<group>.<method>?...&access_token=TOKEN on a local stand-in
-- for api.vk.com (offline), which answers after --delay seconds.
--
-- usage: lasync scripts/vk_api.lua [--delay 0.3]
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local http = require "asyncio.http"
local http_server = require "http_server"
local course = require "course"

local opts = course.options{delay = 0.3}
local server <close> = http_server.start{delay = opts.delay}

-- async_vk_api.make_api(token): API.users.get{...} -> the "response" field,
-- or raises an error carrying VK's error_code.
local function make_api(token, base_url)
  local session = http.Session{base_url = base_url, timeout = 10}
  local function call(method, params)
    local query = {access_token = token, v = "5.199"}
    for k, v in pairs(params or {}) do
      query[k] = type(v) == "table" and table.concat(v, ",") or tostring(v)
    end
    local data = session:get(method, {query = query}):json()
    if data.error then
      error(("VK error %d: %s"):format(data.error.error_code, data.error.error_msg), 2)
    end
    return data.response
  end
  local api = setmetatable({close = function() session:close() end}, {
    __index = function(_, group)
      return setmetatable({}, {__index = function(_, name)
        return function(params) return call(group .. "." .. name, params) end
      end})
    end})
  return api
end

local TOKEN = "local-demo-token"
local API = make_api(TOKEN, server.url .. "/method/")   -- make_api(TOKEN)

-- async def request(**kwargs)
local function request(kwargs)
  local response = API.users.get(kwargs)               -- await API.users.get(**kwargs)
  return response
end

local function main()
  local t0 = asyncio.time()
  -- coroutine1 = request(**kwargs) ... : four calls, run together by gather
  local responses = asyncio.gather(
    function() return request{user_ids = 1} end,
    function() return request{user_ids = {2, 3}} end,
    function() return request{user_ids = 4, fields = "bdate"} end,
    function() return request{user_ids = 5} end)
  local secs = asyncio.time() - t0
  for i, users in ipairs(responses) do
    local names = {}
    for _, u in ipairs(users) do
      names[#names + 1] = ("%d %s %s"):format(u.id, u.first_name, u.last_name)
    end
    print(("request %d -> %s"):format(i, table.concat(names, ", ")))
  end
  print(("4 API calls in %.2f s (each takes %.1f s)"):format(secs, opts.delay))

  -- an error from the API is raised in the caller, like an exception
  local bad = make_api("", server.url .. "/method/")
  local ok, err = pcall(bad.users.get, {user_ids = 1})
  print("without a token: " .. (ok and "no error?" or err))
  bad.close()
end

asyncio.run(main)                                      -- asyncio.run(main())
API.close()
