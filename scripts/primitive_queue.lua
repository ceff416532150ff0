-- Lecture 001, slide "asyncio.Queue": producers put work, consumers get
-- it; put waits while the queue is full (maxsize), get while it is empty.
-- join() returns once every item got a task_done().
local queue = asyncio.Queue(2)
local handled = {}

local function producer(n)
  for i = 1, n do
    queue:put("job " .. i)                    -- await queue.put(...)
    print("put job " .. i .. ", queue size " .. queue:qsize())
  end
end

local function consumer(name)
  while true do
    local job = queue:get()                   -- await queue.get()
    asyncio.sleep(0.05)
    handled[#handled + 1] = name .. ":" .. job
    print(name .. " handled " .. job)
    queue:task_done()
  end
end

local consumers = {asyncio.create_task(consumer, "c1"), asyncio.create_task(consumer, "c2")}
producer(6)
queue:join()                                   -- await queue.join()
for _, c in ipairs(consumers) do c:cancel() end
asyncio.wait(consumers)
print(("%d jobs handled, queue empty: %s"):format(#handled, tostring(queue:empty())))
