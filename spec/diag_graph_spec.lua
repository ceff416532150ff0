-- The call graph (issue 13, point 4): asyncio.capture_call_graph /
-- format_call_graph / print_call_graph (Python 3.14's names and shape) and
-- task:get_stack() / task:print_stack().
local helper = require "spec.helper"

local here = debug.getinfo(1, "S").short_src
local function line_of(marker)
  local n = 0
  for l in io.lines(here) do
    n = n + 1
    if l:find(marker, 1, true) then return n end
  end
  error("no line with " .. marker)
end

-- a file-like sink for print_stack / print_call_graph
local function sink()
  local s = { text = "" }
  function s:write(...)
    for _, v in ipairs({ ... }) do self.text = self.text .. v end
    return self
  end
  return s
end

local function names(graph, out)
  out = out or {}
  out[#out + 1] = graph.task:get_name()
  if graph.awaited_by[1] then names(graph.awaited_by[1], out) end
  return out
end

describe("the call graph", function()
  after_each(helper.no_leaks)

  it("follows await, gather and a TaskGroup up to the caller, with each task's line", function()
    local release, started = asyncio.Event(), asyncio.Event()
    local leaf
    local function mid()
      leaf = asyncio.create_task(function() started:set() release:wait() end) -- LEAF-WAIT
      leaf:set_name("leaf")
      leaf:await() -- MID-AWAIT
    end
    local outer = asyncio.create_task(function()
      local tg <close> = asyncio.TaskGroup()
      tg:create_task(function()
        asyncio.current_task():set_name("in-group")
        asyncio.gather(mid) -- GATHER-LINE
      end)
    end)
    outer:set_name("outer")
    started:wait() -- every task of the chain is parked by now
    local g = asyncio.capture_call_graph(leaf)
    assert.are.equal(leaf, g.task)
    -- leaf <- mid's task (await) <- in-group (gather) <- outer (TaskGroup)
    local chain = names(g)
    assert.are.equal("leaf", chain[1])
    assert.are.equal("in-group", chain[3])
    assert.are.equal("outer", chain[4])
    assert.are.equal(4, #chain)
    -- each call stack is newest first: the C function it waits in, then the line
    assert.are.same({ source = "[C]", name = "wait", what = "C" }, g.call_stack[1])
    assert.are.equal(here, g.call_stack[2].source)
    assert.are.equal(line_of("LEAF-WAIT"), g.call_stack[2].line)
    local by = g.awaited_by[1]
    assert.are.equal("await", by.call_stack[1].name)
    assert.are.equal(line_of("MID-AWAIT"), by.call_stack[2].line)
    assert.are.equal("gather", by.awaited_by[1].call_stack[1].name)
    assert.are.equal(line_of("GATHER-LINE"), by.awaited_by[1].call_stack[2].line)

    local text = asyncio.format_call_graph(leaf)
    assert.matches("^%* Task%(name='leaf', id=%d+%)\n%+ Call stack:\n|   %[C%] in 'wait'\n|   File '"
      .. here:gsub("%p", "%%%0") .. "', line " .. line_of("LEAF-WAIT") .. ", in ", text)
    assert.matches("\n%+ Awaited by:\n   %* Task%(name='Task%-%d+', id=%d+%)\n      %+ Call stack:\n      |   %[C%] in 'await'", text)
    assert.matches("\n            %+ Awaited by:\n               %* Task%(name='outer'", text)
    local out = sink()
    asyncio.print_call_graph(leaf, { file = out })
    assert.are.equal(text .. "\n", out.text)
    release:set()
    outer:await()
  end)

  it("of the current task, skipping capture_call_graph's own frame", function()
    local g = asyncio.capture_call_graph()
    assert.are.equal(asyncio.current_task(), g.task)
    assert.are.equal(debug.getinfo(1, "l").currentline - 2, g.call_stack[1].line)
    local line = debug.getinfo(1, "l").currentline + 1
    local g2 = asyncio.capture_call_graph(nil, { depth = 2, limit = 1 })
    assert.are.equal(1, #g2.call_stack)
    -- depth 2: the first frame is this function's caller, not this line
    assert.is_false(g2.call_stack[1].source == here and g2.call_stack[1].line == line)
  end)

  it("is nil outside a task, and a done task has no call stack", function()
    local out = helper.lua54([[
local asyncio = require "asyncio"
print(asyncio.capture_call_graph())
io.write("[", asyncio.format_call_graph(), "]\n")
]])
    assert.are.equal("nil\n[]\n", out)
    local t = asyncio.create_task(function() return 1 end)
    t:await()
    local g = asyncio.capture_call_graph(t)
    assert.are.same({}, g.call_stack)
    assert.are.same({}, g.awaited_by)
  end)

  it("ends on an await cycle instead of looping", function()
    local a, b
    a = asyncio.create_task(function() asyncio.sleep(0); b:await() end)
    b = asyncio.create_task(function() asyncio.sleep(0); a:await() end)
    for _ = 1, 5 do asyncio.sleep(0) end
    local text = asyncio.format_call_graph(a)
    local _, stars = text:gsub("%* Task", "")
    assert.are.equal(2, stars)
    a:cancel()
    pcall(a.await, a)
    pcall(b.await, b)
  end)

  it("refuses bad arguments", function()
    helper.fails_with("bad argument #1 to '[%w.]*capture_call_graph' %(asyncio.Task expected, got number%)",
      asyncio.capture_call_graph, 5)
    helper.fails_with("unknown option 'deep'", asyncio.capture_call_graph, nil, { deep = 1 })
    helper.fails_with("depth: non%-negative integer expected", asyncio.capture_call_graph, nil, { depth = -1 })
    helper.fails_with("limit: non%-negative integer expected", asyncio.format_call_graph, nil, { limit = 1.5 })
    helper.fails_with("file: a file %(with a write method%) expected", asyncio.print_call_graph, nil, { file = 3 })
  end)
end)

describe("task:get_stack() and task:print_stack()", function()
  after_each(helper.no_leaks)

  it("give a suspended task's frames, oldest first, and print them", function()
    local ev = asyncio.Event()
    local function inner() ev:wait() end -- INNER-WAIT
    local t = asyncio.create_task(function()
      inner() -- OUTER-CALL
    end)
    asyncio.sleep(0)
    local st = t:get_stack()
    assert.are.equal(3, #st)
    assert.are.equal(line_of("OUTER-CALL"), st[1].line)
    assert.are.equal(line_of("INNER-WAIT"), st[2].line)
    assert.are.same({ source = "[C]", name = "wait", what = "C" }, st[3])
    -- limit keeps the newest frames
    local two = t:get_stack({ limit = 2 })
    assert.are.equal(2, #two)
    assert.are.equal(line_of("INNER-WAIT"), two[1].line)
    local out = sink()
    t:print_stack({ file = out })
    assert.matches("^Stack for Task%(name='Task%-%d+', id=%d+%) %(most recent call last%):\n"
      .. "  File '[^']+', line " .. line_of("OUTER-CALL") .. ", in [^\n]+\n"
      .. "  File '[^']+', line " .. line_of("INNER-WAIT") .. ", in [^\n]+\n"
      .. "  %[C%] in 'wait'\n$", out.text)
    ev:set()
    t:await()
    assert.are.same({}, t:get_stack())
    out = sink()
    t:print_stack({ file = out })
    assert.matches("^No stack for Task", out.text)
  end)

  it("a failed task prints its failure's traceback", function()
    local t = asyncio.create_task(function() error("kaput") end)
    pcall(t.await, t)
    local out = sink()
    t:print_stack({ file = out })
    assert.matches("^Traceback for Task%(name='Task%-%d+', id=%d+%) %(most recent call last%):\n[^\n]*kaput\nstack traceback:", out.text)
  end)

  it("refuses bad options", function()
    local t = asyncio.current_task()
    helper.fails_with("unknown option 'lim'", t.get_stack, t, { lim = 1 })
    helper.fails_with("limit: non%-negative integer expected", t.get_stack, t, { limit = -2 })
    helper.fails_with("asyncio.Task expected", t.get_stack, {})
    helper.fails_with("file: a file", t.print_stack, t, { file = true })
  end)
end)
