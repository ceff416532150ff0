-- Lecture 001, slide "asyncio.wait": waits for a set of tasks and returns
-- two lists, done and pending -- when the first one is done
-- (FIRST_COMPLETED), or all (ALL_COMPLETED, the default), or on timeout.
-- Unlike wait_for it cancels nothing.
local function download(name, delay)
  asyncio.sleep(delay)
  return name
end

local tasks = {
  asyncio.create_task(download, "mirror-1", 0.6),
  asyncio.create_task(download, "mirror-2", 0.1),
  asyncio.create_task(download, "mirror-3", 0.3),
}
local done, pending = asyncio.wait(tasks, {return_when = "FIRST_COMPLETED"})
print(("FIRST_COMPLETED: %d done (%s), %d pending"):format(#done, done[1]:result(), #pending))

done, pending = asyncio.wait(pending, {timeout = 0.3})
print(("timeout 0.3 s: %d done, %d pending"):format(#done, #pending))

for _, t in ipairs(pending) do t:cancel() end     -- the fastest mirror won
done = asyncio.wait(pending)
print(("after cancel: %d done, cancelled: %s"):format(#done, tostring(done[1]:cancelled())))
