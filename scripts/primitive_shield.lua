-- Lecture 001, slide "asyncio.shield": protects a job from the
-- cancellation of the one waiting for it.  Here the waiter gives up after
-- 0.1 s (wait_for cancels what it waits on), but the shielded save goes
-- on and completes.
local function save(what)
  asyncio.sleep(0.3)
  print("saved " .. what)
  return what
end

local task = asyncio.create_task(save, "the report")
local _, err = pcall(asyncio.wait_for, asyncio.shield(task), 0.1)
print(("waiter: %s after 0.1 s; task cancelled? %s"):format(
  asyncio.is(err, asyncio.TimeoutError) and "TimeoutError" or tostring(err), tostring(task:cancelled())))
print("the task still finishes: " .. task:await())

-- without shield, the same timeout cancels the job itself
local unprotected = asyncio.create_task(save, "the draft")
pcall(asyncio.wait_for, unprotected, 0.1)
print("unshielded task cancelled? " .. tostring(unprotected:cancelled()))
