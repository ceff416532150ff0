-- Lecture 003 (Асинхронное программирование, А. Вильмов), "Вызов функций
-- по расписанию": calling functions on a schedule with the loop's
-- call_soon, call_later and call_at (plain functions: they run on the loop
-- and cannot suspend), and a periodic job as a task.  Everything stops by
-- itself after --seconds.
--
-- usage: lasync scripts/schedule.lua [--seconds 2] [--period 0.5]
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local course = require "course"
local opts = course.options{seconds = 2, period = 0.5}

local loop = asyncio.get_event_loop()
local t0 = loop:time()
local function log(fmt, ...)
  print(("%5.2f s  " .. fmt):format(loop:time() - t0, ...))
end

loop:call_soon(log, "call_soon: on the next turn of the loop")
loop:call_later(0.3, log, "call_later(0.3): %s", "0.3 s from now")
loop:call_at(t0 + 0.6, log, "call_at(t0 + 0.6): at a point of loop:time()")
local cancelled = loop:call_later(0.4, log, "never printed: this one is cancelled")
cancelled:cancel()

-- a periodic job: every `period` seconds, on a fixed grid (no drift)
local function every(period, job)
  local next_time = loop:time()
  local n = 0
  while true do
    n = n + 1
    job(n)
    next_time = next_time + period
    asyncio.sleep(math.max(0, next_time - loop:time()))
  end
end
local periodic = asyncio.create_task(every, opts.period, function(n)
  log("periodic job, run %d", n)
end)

-- the same with callbacks only: a function that schedules itself again
local ticks = 0
local handle
local function tick()
  ticks = ticks + 1
  log("call_later chain: tick %d", ticks)
  if ticks * 0.7 < opts.seconds then handle = loop:call_later(0.7, tick) end
end
handle = loop:call_later(0.7, tick)

asyncio.sleep(opts.seconds)
periodic:cancel()
handle:cancel()
log("stopped: the self-rescheduling callback ran %d times", ticks)
