local helper = require "spec.helper"
-- each test in a task of its own, on the virtual clock, with a leak check
-- and a time limit (docs/testing.md)
require("asyncio.testing").busted()

describe("tasks", function()
  after_each(helper.no_leaks)

  it("runs the test body inside a task", function()
    assert.is_not_nil(asyncio.current_task())
  end)

  it("create_task starts on the next loop turn, not at once", function()
    local log = helper.log()
    local t = asyncio.create_task(function() log.add("task") end)
    log.add("created")
    assert.is_false(t:done())
    t:await()
    assert.are.equal("created task", log.str())
  end)

  it("spawn is an alias of create_task", function()
    assert.are.equal(asyncio.create_task, asyncio.spawn)
  end)

  it("passes arguments and returns every result through await", function()
    local t = asyncio.create_task(function(a, b) return a + b, a * b, nil, "x" end, 3, 4)
    local r = table.pack(t:await())
    assert.are.equal(4, r.n)
    assert.are.same({7, 12, nil, "x"}, {r[1], r[2], r[3], r[4]})
    -- awaiting a finished task again gives the same results, at once
    local again = table.pack(t:await())
    assert.are.same(r, again)
  end)

  it("re-raises the task's error from await, unchanged", function()
    local e = setmetatable({}, {__tostring = function() return "custom" end})
    local t = asyncio.create_task(function() asyncio.sleep(0) error(e) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.equal(e, err)
    local t2 = asyncio.create_task(function() error("plain", 0) end)
    local ok2, err2 = pcall(t2.await, t2)
    assert.is_false(ok2)
    assert.are.equal("plain", err2)
  end)

  it("result() never suspends and raises InvalidStateError while pending", function()
    local t = asyncio.create_task(function() asyncio.sleep(0.01) return 5 end)
    local ok, err = pcall(t.result, t)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.InvalidStateError))
    assert.matches("Result is not set", tostring(err))
    local ok2, err2 = pcall(t.exception, t)
    assert.is_false(ok2)
    assert.is_true(asyncio.is(err2, asyncio.InvalidStateError))
    t:await()
    assert.are.equal(5, t:result())
    assert.is_nil(t:exception())
  end)

  it("exception() returns the error of a failed task, result() raises it", function()
    local t = asyncio.create_task(function() error("bad", 0) end)
    asyncio.sleep(0)
    asyncio.sleep(0)
    assert.is_true(t:done())
    assert.is_false(t:cancelled())
    assert.are.equal("bad", t:exception())
    local ok, err = pcall(t.result, t)
    assert.is_false(ok)
    assert.are.equal("bad", err)
  end)

  it("done() and cancelled() follow the task's life", function()
    local t = asyncio.create_task(function() asyncio.sleep(0) end)
    assert.is_false(t:done())
    t:await()
    assert.is_true(t:done())
    assert.is_false(t:cancelled())
  end)

  it("names tasks Task-N by default and keeps set_name", function()
    local t = asyncio.create_task(function() end)
    assert.matches("^Task%-%d+$", t:get_name())
    t:set_name("worker")
    assert.are.equal("worker", t:get_name())
    assert.matches("<Task pending name='worker'>", tostring(t))
    t:await()
    assert.matches("<Task finished name='worker'>", tostring(t))
  end)

  it("current_task() is the running task, nil in a callback", function()
    local inside
    local t = asyncio.create_task(function() inside = asyncio.current_task() end)
    t:await()
    assert.are.equal(t, inside)
    local from_cb = "unset"
    asyncio.call_soon(function() from_cb = asyncio.current_task() end)
    asyncio.sleep(0)
    asyncio.sleep(0)
    assert.is_nil(from_cb)
  end)

  it("all_tasks() lists the pending tasks only", function()
    local a = asyncio.create_task(function() asyncio.sleep(0.05) end)
    local b = asyncio.create_task(function() end)
    local all = asyncio.all_tasks()
    local seen = {}
    for _, t in ipairs(all) do seen[t] = true end
    assert.is_true(seen[a] and seen[b] and seen[asyncio.current_task()])
    b:await()
    for _, t in ipairs(asyncio.all_tasks()) do assert.are_not.equal(b, t) end
    a:await()
  end)

  it("all_tasks() stays exact while finished tasks' anchor slots are reused", function()
    local base = #asyncio.all_tasks()
    local ev = asyncio.Event()
    local waiting, quick = {}, {}
    for round = 1, 3 do
      for i = 1, 40 do
        waiting[#waiting + 1] = asyncio.create_task(function() ev:wait(); return round * 100 + i end)
        quick[#quick + 1] = asyncio.create_task(function() return -i end)
      end
      asyncio.sleep(0) -- the quick ones end: their slots are free for the next round
      local seen, n = {}, 0
      for _, t in ipairs(asyncio.all_tasks()) do seen[t] = true; n = n + 1 end
      assert.are.equal(base + #waiting, n)
      for _, t in ipairs(waiting) do assert.is_true(seen[t]) end
      for _, t in ipairs(quick) do assert.is_nil(seen[t]) end
    end
    ev:set()
    local res = asyncio.gather(waiting)
    for k, v in ipairs(res) do
      assert.are.equal(((k - 1) // 40 + 1) * 100 + (k - 1) % 40 + 1, v)
    end
    assert.are.equal(base, #asyncio.all_tasks())
    for i, t in ipairs(quick) do assert.are.equal(-((i - 1) % 40 + 1), t:result()) end
  end)

  it("a Task takes at most 240 bytes of the Lua heap (the pool's 240-byte class, W2)", function()
    local testing = require("asyncio.testing")
    local t = asyncio.create_task(function() end)
    -- the record was 200 bytes (256 with the userdata around it): the
    -- cancel message, the failure's report and the trace's flow moved out
    assert.is_true(testing._task_bytes(t) <= 240, testing._task_bytes(t))
    t:await()
  end)

  it("keeps each task's cancel message and failure report while records are reused", function()
    local kept = {}
    for i = 1, 60 do
      local f = asyncio.create_task(function() error("boom-" .. i) end)
      local c = asyncio.create_task(function() asyncio.sleep(10) end)
      local plain = asyncio.create_task(function() asyncio.sleep(10) end)
      asyncio.sleep(0)
      c:cancel("msg-" .. i)
      plain:cancel()
      local ok, err = pcall(c.await, c)
      assert.is_false(ok)
      assert.are.equal("msg-" .. i, err.message)
      ok, err = pcall(plain.await, plain)
      assert.is_false(ok)
      -- not an earlier task's message, whose record this one may reuse
      assert.is_nil(tostring(err.message):find("msg-", 1, true))
      assert.is_false(pcall(f.await, f))
      if i % 10 == 0 then kept[i] = f end
      f, c, plain = nil, nil, nil
      collectgarbage()
    end
    for i, f in pairs(kept) do
      local out = io.tmpfile()
      f:print_stack({ file = out })
      out:seek("set")
      local text = out:read("a")
      out:close()
      assert.truthy(text:find("boom-" .. i, 1, true), text)
      assert.is_nil(text:find("boom-" .. (i + 1), 1, true), text)
    end
  end)

  it("records where each task was made while spawns alternate between chunks", function()
    local long = "@" .. string.rep("d/", 30) .. "long.lua" -- not a short string
    local long2 = "@" .. string.rep("e/", 30) .. "long.lua"
    local names = { "@a.lua", "=chunk b", long, "@a.lua", long2, "=asyncio/x.lua" }
    local spawners = {}
    for i, name in ipairs(names) do
      -- line i of each chunk spawns: the line tells them apart too
      spawners[i] = assert(load(string.rep("\n", i - 1) ..
        "local f = ... return asyncio.create_task(f)", name))
    end
    local seen = {}
    for round = 1, 3 do
      for i = 1, #names do
        local t = spawners[i](function() end)
        local at = t:stats().created_at
        if i == 6 then -- asyncio's own chunk: the user's line that called it
          assert.matches("task_spec%.lua:%d+$", at)
        else
          local _, _, src, line = at:find("^(.*):(%d+)$")
          assert.are.equal(i, tonumber(line), at)
          if i == 1 or i == 4 then assert.are.equal("a.lua", src) end
          if i == 2 then assert.are.equal("chunk b", src) end
          if i == 3 or i == 5 then -- shortened by Lua, distinct at the end
            assert.matches((i == 3 and "d/" or "e/") .. "long%.lua$", src)
          end
          if round > 1 then assert.are.equal(seen[i], at) end
          seen[i] = at
        end
        t:await()
      end
      collectgarbage()
    end
  end)

  it("runs done callbacks with the task, soon after it ends, in order", function()
    local log = helper.log()
    local t = asyncio.create_task(function() return 1 end)
    t:add_done_callback(function(task) log.add("a" .. task:result()) end)
    t:add_done_callback(function() log.add("b") end)
    local removed = function() log.add("never") end
    t:add_done_callback(removed)
    assert.are.equal(1, t:remove_done_callback(removed))
    t:await()
    log.add("awaited")
    asyncio.sleep(0)
    -- added before the await, they run first (CPython 3.11: a1 b awaited)
    assert.are.equal("a1 b awaited", log.str())
    -- on a finished task the callback is still scheduled, not called now
    t:add_done_callback(function() log.add("late") end)
    log.add("added")
    asyncio.sleep(0)
    assert.are.equal("a1 b awaited added late", log.str())
  end)

  it("refuses to await itself", function()
    local t
    t = asyncio.create_task(function() return pcall(t.await, t) end)
    local ok, err = t:await()
    assert.is_false(ok)
    assert.matches("cannot await itself", err)
  end)

  it("asyncio.run inside a task runs the function as a task and waits", function()
    local r1, r2 = asyncio.run(function(x) asyncio.sleep(0.01) return x, x + 1 end, 1)
    assert.are.same({1, 2}, {r1, r2})
    local ok, err = pcall(asyncio.run, function() error("in run", 0) end)
    assert.is_false(ok)
    assert.are.equal("in run", err)
  end)

  it("fails a task that yields with coroutine.yield instead of suspending", function()
    local t = asyncio.create_task(function() coroutine.yield() end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("attempt to yield from outside a coroutine", err)
  end)

  it("gives a task lua.c's main-chunk view of coroutines: yield is a catchable error", function()
    local t = asyncio.create_task(function()
      local ok, err = pcall(coroutine.yield, 1)
      local co, ismain = coroutine.running()
      return ok, err, coroutine.isyieldable(), type(co), ismain, coroutine.status(co)
    end)
    assert.are.same({false, "attempt to yield from outside a coroutine", false, "thread", true, "running"},
      {t:await()})
    -- a plain coroutine inside a task is still a coroutine
    local co = coroutine.wrap(function() return coroutine.isyieldable(), select(2, coroutine.running()) end)
    assert.are.same({true, false}, {co()})
  end)

  it("refuses coroutine.resume and coroutine.close on a task's thread", function()
    local b = asyncio.create_task(function() asyncio.sleep(0.02) return "b" end)
    local co
    local a = asyncio.create_task(function()
      co = coroutine.running()
      local v = b:await()
      asyncio.sleep(0.01)
      return v
    end)
    asyncio.sleep(0)
    local ok, err = pcall(coroutine.resume, co)
    assert.is_false(ok)
    assert.matches("cannot resume a task's thread", err)
    ok, err = pcall(coroutine.close, co)
    assert.is_false(ok)
    assert.matches("cannot close a task's thread", err)
    assert.are.equal("b", a:await()) -- and the task went on unharmed
    -- plain coroutines still work
    assert.are.same({true, 3}, {coroutine.resume(coroutine.create(function() return 3 end))})
  end)

  it("does not treat plain coroutines inside a task as tasks", function()
    local co = coroutine.wrap(function() return pcall(asyncio.sleep, 0) end)
    local ok, err = co()
    assert.is_false(ok)
    assert.matches("sleep%(%) called outside a task", err)
  end)

  describe("bad arguments", function()
    it("create_task wants a function", function()
      local ok, err = pcall(asyncio.create_task, 42)
      assert.is_false(ok)
      -- Lua names it after a global path: asyncio.create_task or its alias
      assert.matches("bad argument #1 to 'asyncio%.[a-z_]+' %(function expected, got number%)", err)
    end)

    it("accepts a callable table", function()
      local obj = setmetatable({}, {__call = function(_, x) return x * 2 end})
      assert.are.equal(8, asyncio.create_task(obj, 4):await())
    end)

    it("await wants a Task", function()
      local t = asyncio.create_task(function() end)
      local ok, err = pcall(function() return t.await({}) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'await' %(asyncio.Task expected, got table%)", err)
      t:await()
    end)

    it("await and gather refuse every other userdata (the Task check reads the record)", function()
      local t = asyncio.create_task(function() return 1 end)
      for _, v in ipairs{io.stdout, asyncio.Queue(), asyncio.Lock(), asyncio.Event()} do
        local ok, err = pcall(function() local r = t.await(v); return r end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'await' %(asyncio.Task expected, got ", err)
        assert.has_error(function() asyncio.gather(t, v) end)
      end
      assert.are.equal(1, t:await())
      assert.are.same({1, 1}, asyncio.gather(t, t))
    end)

    it("suspending functions name themselves in a callback and suggest create_task", function()
      local msg
      asyncio.call_soon(function()
        local _, e = pcall(asyncio.sleep, 1)
        msg = e
      end)
      asyncio.sleep(0)
      asyncio.sleep(0)
      -- a callback cannot suspend: the message says to start a task
      assert.matches("asyncio: sleep%(%) called from a callback, which cannot suspend %(start a task: asyncio.create_task", msg)
    end)

    it("cannot suspend inside a non-yieldable C call", function()
      local ok, err = pcall(table.sort, {3, 2, 1}, function(a, b)
        asyncio.sleep(0)
        return a < b
      end)
      assert.is_false(ok)
      assert.matches("sleep%(%) cannot suspend here", err)
    end)
  end)
end)
