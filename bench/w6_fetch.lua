-- W6 fetch (shared/bench/README.md): usage: w6_fetch.lua URL N C EXPECTED_LEN [TAG]
-- One Session with limit=C; C worker tasks share a counter and each fetches
-- URL until N requests were issued (at most C in flight, keep-alive).  Each
-- body is read whole and is good only with status 200 and EXPECTED_LEN
-- bytes.  Clock: session creation .. N-th body (session close is outside).
local http = require "asyncio.http"

local url, n, c, expect = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local tag = arg[5] or "W6"
assert(url and n and c and expect, "usage: w6_fetch.lua URL N C EXPECTED_LEN [TAG]")

local issued, good, bad = 0, 0, 0
local t0 = asyncio.time()
local session = http.Session{limit = c}

local function worker()
  local get = session.get
  while issued < n do
    issued = issued + 1
    local ok, resp = pcall(get, session, url)
    if ok and resp.status == 200 and #resp.body == expect then
      good = good + 1
    else
      bad = bad + 1
      if not ok then io.stderr:write("error: ", tostring(resp), "\n") end
    end
  end
end

local workers = {}
for i = 1, math.min(c, n) do workers[i] = asyncio.create_task(worker) end
for i = 1, #workers do workers[i]:await() end
local secs = asyncio.time() - t0
session:close()

if bad > 0 then io.stderr:write(bad, " bad responses\n") end
print(("RESULT workload=%s n=%d seconds=%.6f ok=%d rate=%.1f"):format(
  tag, n, secs, (good == n and bad == 0) and 1 or 0, n / secs))
