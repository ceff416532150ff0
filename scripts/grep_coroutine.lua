-- Lecture 001 (Углубленный Python, лекция 9): the grep coroutine that
-- consumes the data sent into it.  Python's `s = yield` is Lua's
-- `local s = coroutine.yield()`, next(g) is the first resume, and
-- g.send(x) is a resume with a value: coroutine.wrap gives a function
-- that does both.  (Plain Lua coroutines, no event loop involved.)
--
-- usage: lasync scripts/grep_coroutine.lua    (also runs under plain lua5.4)
local function grep(pattern)
  print("start grep for " .. pattern)
  while true do
    local s = coroutine.yield()             -- s = yield
    if s:find(pattern, 1, true) then
      print("found! " .. s)
    else
      print(("no %s in %s"):format(pattern, s))
    end
  end
end

local g = coroutine.wrap(grep)               -- g = grep('python') ...
g("python")                                  -- ... next(g): run to the first yield
g("data")                                    -- g.send('data')
g("deep python")                             -- g.send('deep python')
