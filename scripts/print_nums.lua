-- Lecture 002 (Asyncio, the blog post): print_nums and print_time, two
-- endless coroutines run side by side.  The post shows it three times, in
-- the styles of Python 3.4 (@asyncio.coroutine / yield from), 3.5
-- (async def / await, ensure_future) and 3.7 (create_task, asyncio.run).
-- In Lua they are one program: a function is the coroutine, a call that
-- suspends is the await.  Both loop forever, as in the post; main stops
-- them after --seconds (the post's version runs until Ctrl-C).
--
-- usage: lasync scripts/print_nums.lua [--seconds 4] [--tick 1]
package.path = (arg[0]:match(".*/") or "./") .. "lib/?.lua;" .. package.path
local course = require "course"
local opts = course.options{seconds = 4, tick = 1}

local function print_nums()
  local num = 1
  while true do
    print(num)
    num = num + 1
    asyncio.sleep(opts.tick)                   -- await asyncio.sleep(1)
  end
end

local function print_time()
  local count = 0
  while true do
    if count % 3 == 0 then
      print(("%g seconds have passed"):format(count * opts.tick))
    end
    count = count + 1
    asyncio.sleep(opts.tick)
  end
end

local function main()
  local task1 = asyncio.create_task(print_nums)   -- asyncio.ensure_future(print_nums())
  local task2 = asyncio.create_task(print_time)
  -- await asyncio.gather(task1, task2), but for --seconds only
  local ok, err = pcall(asyncio.wait_for, function() asyncio.gather(task1, task2) end,
                        opts.seconds)
  if not ok and not asyncio.is(err, asyncio.TimeoutError) then error(err, 0) end
  task1:cancel()
  task2:cancel()
  print(("stopped after %g s"):format(opts.seconds))
end

-- the 3.4/3.5 way; `asyncio.run(main)` (3.7+) does the same
local loop = asyncio.get_event_loop()           -- открываем событийный цикл
loop:run_until_complete(main)                   -- выполняем событийный цикл
loop:close()                                    -- закрываем событийный цикл
