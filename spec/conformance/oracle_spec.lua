-- Edge cases the other conformance specs leave out, each checked against
-- CPython 3.11's asyncio by running the same program in both (the Python
-- result is quoted in each test).  Where asyncio 3.11 and 3.13 differ,
-- lasync follows 3.13 (docs/api.md) and the test says so.
local helper = require "spec.helper"
local a = asyncio

local function is_cancel(err) return a.is(err, a.CancelledError) end

local function fail_after(d, msg)
  return function() a.sleep(d) error(msg, 0) end
end

local function messages(eg)
  local out = {}
  for i, e in ipairs(eg.errors) do out[i] = tostring(e) end
  return out
end

describe("conformance: oracle (CPython as the oracle)", function()
  after_each(helper.no_leaks)

  describe("done callbacks and awaiters", function()
    -- Python: ['cb1', 'w1', 'cb2', 'cb3']: a task's awaiters are resumed
    -- by done callbacks of their own, so callbacks and awaiters run in the
    -- order they were registered.
    it("a callback added before a task awaits runs before that task resumes", function()
      local ev = {}
      local t = a.create_task(function() a.sleep(0.01) end)
      t:add_done_callback(function() ev[#ev + 1] = "cb1" end)
      local w1 = a.create_task(function() t:await() ev[#ev + 1] = "w1" end)
      a.sleep(0)
      t:add_done_callback(function() ev[#ev + 1] = "cb2" end)
      w1:await()
      t:add_done_callback(function() ev[#ev + 1] = "cb3" end)
      a.sleep(0)
      assert.are.same({"cb1", "w1", "cb2", "cb3"}, ev)
    end)

    -- Python: `t.add_done_callback(s.discard); await t` finds s empty.
    it("the set-discard idiom: after await the callback has run", function()
      local running = {}
      local t = a.create_task(function() a.sleep(0) return 5 end)
      running[t] = true
      t:add_done_callback(function(d) running[d] = nil end)
      assert.are.equal(5, t:await())
      assert.is_nil(next(running))
    end)

    -- Python: ['w1', 'cb1', 'w2', 'cb2']
    it("a Future's callbacks and awaiters keep registration order too", function()
      local ev = {}
      local f = a.Future()
      local function waiter(name)
        return a.create_task(function() f:await() ev[#ev + 1] = name end)
      end
      local w1 = waiter("w1")
      a.sleep(0)
      f:add_done_callback(function() ev[#ev + 1] = "cb1" end)
      local w2 = waiter("w2")
      a.sleep(0)
      f:add_done_callback(function() ev[#ev + 1] = "cb2" end)
      local removed = function() ev[#ev + 1] = "never" end
      f:add_done_callback(removed)
      assert.are.equal(1, f:remove_done_callback(removed))
      f:set_result(1)
      w1:await() w2:await()
      a.sleep(0)
      assert.are.same({"w1", "cb1", "w2", "cb2"}, ev)
    end)

    -- Python: ['cb1', "w1 cancelled ('m',)", "w2 cancelled ('m',)", 'cb2']:
    -- the cancelled awaiter cancels the future and is woken by it, in turn.
    it("cancelling a task that awaits a Future wakes everyone in registration order", function()
      local ev = {}
      local f = a.Future()
      f:add_done_callback(function() ev[#ev + 1] = "cb1" end)
      local function waiter(name)
        return a.create_task(function()
          local ok, err = pcall(f.await, f)
          ev[#ev + 1] = ok and name or (name .. " cancelled " .. tostring(err.message))
        end)
      end
      local w1, w2 = waiter("w1"), waiter("w2")
      a.sleep(0)
      f:add_done_callback(function() ev[#ev + 1] = "cb2" end)
      w2:cancel("m")
      w1:await() w2:await()
      a.sleep(0)
      assert.are.same({"cb1", "w1 cancelled m", "w2 cancelled m", "cb2"}, ev)
      assert.is_true(f:cancelled())
    end)
  end)

  describe("call_at / call_later handles", function()
    -- Python: ['first'] (CPython's heap keeps two equal deadlines in
    -- order; lasync promises FIFO for any number).
    it("callbacks at the same absolute time run in the order scheduled", function()
      local ev, hs = {}, {}
      local when = a.time() + 0.01
      for i = 1, 8 do
        hs[i] = a.call_at(when, function() ev[#ev + 1] = i end)
      end
      a.sleep(0.03)
      assert.are.same({1, 2, 3, 4, 5, 6, 7, 8}, ev)
      for i = 1, 8 do assert.are.equal(hs[1]:when(), hs[i]:when()) end
    end)

    -- Python: call_at(w).when() == w
    it("when() is the time given to call_at, exactly; call_later's is time() + delay", function()
      for i = 1, 200 do
        local when = a.time() + i * 0.0001234567
        local h = a.call_at(when, function() end)
        assert.are.equal(when, h:when())
        h:cancel()
      end
      local before = a.time()
      local h = a.call_later(0.5, function() end)
      assert.is_true(h:when() >= before + 0.5 and h:when() <= a.time() + 0.5)
      h:cancel()
      assert.is_nil(a.call_soon(function() end):when())
      h = a.call_at(0, function() end) -- long past: runs at once
      assert.are.equal(0, h:when())
      h:cancel()
    end)

    it("a callback can cancel one due at the same instant", function()
      local ev, second = {}, nil
      local when = a.time() + 0.01
      a.call_at(when, function() ev[#ev + 1] = "first" second:cancel() end)
      second = a.call_at(when, function() ev[#ev + 1] = "second" end)
      a.sleep(0.03)
      assert.are.same({"first"}, ev)
    end)

    -- Python: False None True None True; after it ran: False None True.
    it("cancel() returns nothing and marks the handle cancelled, even after it ran", function()
      local h = a.call_later(0.01, function() end)
      assert.is_false(h:cancelled())
      assert.are.equal(0, select("#", h:cancel()))
      assert.is_true(h:cancelled())
      h:cancel()
      assert.is_true(h:cancelled())
      local ran = false
      local h2 = a.call_soon(function() ran = true end)
      a.sleep(0)
      assert.is_true(ran)
      assert.is_false(h2:cancelled())
      h2:cancel()
      assert.is_true(h2:cancelled())
    end)

    -- Python: ['soon', 'at_past', 'later0', 'later0b']
    it("call_soon runs before call_later(0); a past call_at before later ones", function()
      local ev = {}
      local function add(x) return function() ev[#ev + 1] = x end end
      a.call_later(0, add("later0"))
      a.call_soon(add("soon"))
      a.call_later(0, add("later0b"))
      a.call_at(a.time() - 1, add("at_past"))
      a.sleep(0.01)
      assert.are.same({"soon", "at_past", "later0", "later0b"}, ev)
    end)
  end)

  describe("cancel messages and counts", function()
    -- Python: cancel1 True 1, cancel2 True 2, uncancel 1 1, done: False 1.
    it("cancel() is true and counts until the task is done, then false", function()
      local t = a.create_task(function() a.sleep(10) end)
      a.sleep(0)
      assert.is_true(t:cancel())
      assert.are.equal(1, t:cancelling())
      assert.is_true(t:cancel("m"))
      assert.are.equal(2, t:cancelling())
      assert.are.equal(1, t:uncancel())
      helper.await_cancelled(t)
      assert.is_false(t:cancel())
      assert.are.equal(1, t:cancelling())
      assert.are.equal(0, t:uncancel())
      assert.are.equal(0, t:uncancel()) -- never below 0
    end)

    -- Python: ('a',): the first cancel reached what the task awaited; a
    -- second one before the task ran changes nothing it will see.
    it("the message delivered is the first cancel's once the awaited task got it", function()
      local inner = a.create_task(function() a.sleep(10) end)
      local t = a.create_task(function() inner:await() end)
      a.sleep(0) a.sleep(0)
      t:cancel("a")
      t:cancel("b")
      local err = helper.await_cancelled(t)
      assert.are.equal("a", err.message)
      assert.is_true(inner:cancelled())
    end)

    -- Python: ('first',) for a sleeper (its sleep's future took the
    -- first); not started, nothing was delivered yet: the last wins, a
    -- cancel without a message included (('b',), ()).
    for _, case in ipairs{
      {"a sleeping task sees the first message", true, {"first", "second"}, "first"},
      {"before the task ran, the last message wins", false, {"a", "b"}, "b"},
      {"before the task ran, a cancel without a message drops the earlier one", false, {"a", nil}, ""},
    } do
      local name, started, msgs, want = case[1], case[2], case[3], case[4]
      it(name, function()
        local t = a.create_task(function() a.sleep(10) end)
        if started then a.sleep(0) end
        t:cancel(msgs[1])
        t:cancel(msgs[2])
        assert.are.equal(want, helper.await_cancelled(t).message)
      end)
    end

    -- Python: woken ('b',): woken by its event, nothing was delivered to
    -- a wait yet, so the last message wins.
    it("a task woken but not yet run takes the last message", function()
      local ev = a.Event()
      local t = a.create_task(function() ev:wait() a.sleep(0) end)
      a.sleep(0)
      ev:set()
      t:cancel("a")
      t:cancel("b")
      assert.are.equal("b", helper.await_cancelled(t).message)
    end)

    -- Python: selfext ('self',); first ('one',), second ('two',)
    it("a self-cancel's message is delivered at its next wait; a later cancel has its own", function()
      local t = a.create_task(function() a.current_task():cancel("self") a.sleep(1) end)
      a.sleep(0)
      t:cancel("ext")
      assert.are.equal("self", helper.await_cancelled(t).message)
      local first
      t = a.create_task(function()
        local _, err = pcall(a.sleep, 1)
        first = err.message
        a.sleep(1)
      end)
      a.sleep(0)
      t:cancel("one")
      a.sleep(0)
      t:cancel("two")
      assert.are.equal("two", helper.await_cancelled(t).message)
      assert.are.equal("one", first)
    end)

    -- Python: in catch 1, still 1, r3 7 False 1
    it("a task that catches its cancel keeps cancelling() at 1 and returns", function()
      local seen = {}
      local t = a.create_task(function()
        pcall(a.sleep, 10)
        seen[1] = a.current_task():cancelling()
        a.sleep(0)
        seen[2] = a.current_task():cancelling()
        return 7
      end)
      a.sleep(0)
      t:cancel()
      assert.are.equal(7, t:await())
      assert.is_false(t:cancelled())
      assert.are.same({1, 1}, seen)
      assert.are.equal(1, t:cancelling())
    end)
  end)

  describe("TaskGroup", function()
    -- Python: ['ValueError:in cleanup', "KeyError:'body'"]: the body's
    -- error is added once the children are done, after theirs.
    it("the body's error comes after the errors of the children it cancelled", function()
      local ok, eg = pcall(a.task_group, function(tg)
        tg:create_task(function()
          local slept = pcall(a.sleep, 1)
          if not slept then error("in cleanup", 0) end
        end)
        a.sleep(0)
        error("body", 0)
      end)
      assert.is_false(ok)
      assert.is_true(a.is(eg, a.ExceptionGroup))
      assert.are.same({"in cleanup", "body"}, messages(eg))
    end)

    -- Python: ['child', 'body err']
    it("a child's error, then the body's raised while it was cancelled", function()
      local ok, eg = pcall(a.task_group, function(tg)
        tg:create_task(fail_after(0, "child"))
        local slept, err = pcall(a.sleep, 1)
        assert.is_false(slept)
        assert.is_true(is_cancel(err))
        error("body err", 0)
      end)
      assert.is_false(ok)
      assert.are.same({"child", "body err"}, messages(eg))
    end)

    -- Python: ['a', 'c'] (b was cancelled before it failed)
    it("children failing in the same turn are listed in the order they failed", function()
      local ok, eg = pcall(a.task_group, function(tg)
        -- loop turns, not timers: a loaded machine can fire two 10 ms
        -- timers in different turns (Python prints the same for these)
        tg:create_task(fail_after(1, "b"))
        tg:create_task(fail_after(0, "a"))
        tg:create_task(fail_after(0, "c"))
      end)
      assert.is_false(ok)
      assert.are.same({"a", "c"}, messages(eg))
    end)

    -- Python: p eg ['on cancel'] 1
    it("cancelled from outside, a child failing in its cleanup gives the group error; cancelling() stays 1", function()
      local p = a.create_task(function()
        a.task_group(function(tg)
          tg:create_task(function()
            local slept = pcall(a.sleep, 1)
            if not slept then error("on cancel", 0) end
          end)
          tg:create_task(function() a.sleep(1) end)
          a.sleep(1)
        end)
      end)
      a.sleep(0.01)
      p:cancel()
      local err = helper.await_error(p)
      assert.is_true(a.is(err, a.ExceptionGroup))
      assert.are.same({"on cancel"}, messages(err))
      assert.are.equal(1, p:cancelling())
    end)
  end)

  describe("gather", function()
    -- Python: gather cancelled True 2: a cancelled gather raises
    -- CancelledError even with return_exceptions.
    it("cancelling a gather with return_exceptions raises CancelledError", function()
      local t1 = a.create_task(function() a.sleep(1) end)
      local t2 = a.create_task(function() return a.sleep(0, 2) end)
      local g = a.create_task(function()
        return a.gather{t1, t2, return_exceptions = true}
      end)
      -- t2 ends a loop turn after gather started: wait for that, not 10 ms
      repeat a.sleep(0) until t2:done()
      g:cancel()
      helper.await_cancelled(g)
      assert.is_true(t1:cancelled())
      assert.are.equal(2, t2:result())
    end)

    -- Python: dup ['d', 'd']
    it("the same task twice gives its result twice", function()
      local t = a.create_task(function() return a.sleep(0, "d") end)
      assert.are.same({"d", "d"}, a.gather(t, t))
    end)
  end)

  describe("wait and as_completed", function()
    -- Python: wait dup 1 0 (done is a set)
    it("wait() lists a task given twice once", function()
      local t = a.create_task(function() return a.sleep(0, 1) end)
      local done, pending = a.wait({t, t})
      assert.are.same({t}, done)
      assert.are.same({}, pending)
      local f = a.Future()
      a.call_soon(function() f:set_result(2) end)
      done, pending = a.wait({f, t, f})
      assert.are.same({f, t}, done)
    end)

    -- Python: ac dup 1
    it("as_completed() yields a task given twice once", function()
      local t = a.create_task(function() return a.sleep(0, 1) end)
      local n = 0
      for f in a.as_completed({t, t}) do
        assert.are.equal(t, f)
        n = n + 1
      end
      assert.are.equal(1, n)
    end)

    -- Python: ['cb1', 'task', 'cb2', 'other', 'cb3', 'task2']
    it("sleep(0) lets callbacks and tasks queued before it run first, in order", function()
      local ev = {}
      local function add(x) return function() ev[#ev + 1] = x end end
      a.call_soon(add("cb1"))
      a.sleep(0)
      ev[#ev + 1] = "task"
      a.call_soon(add("cb2"))
      a.create_task(add("other"))
      a.call_soon(add("cb3"))
      a.sleep(0)
      ev[#ev + 1] = "task2"
      assert.are.same({"cb1", "task", "cb2", "other", "cb3", "task2"}, ev)
    end)
  end)

  -- Python (3.11 `probe` script): which calls give the loop a turn when
  -- nothing has to be waited for.  A task made just before the call runs
  -- first only if the call yields.
  describe("yielding when nothing is awaited", function()
    local function runs_other_first(fn)
      local ev = {}
      a.create_task(function() ev[#ev + 1] = "other" end)
      fn()
      ev[#ev + 1] = "after"
      a.sleep(0) a.sleep(0)
      return ev[1] == "other"
    end

    it("gather and wait of finished tasks yield once (through done callbacks)", function()
      local t = a.create_task(function() a.sleep(0) return 1 end)
      t:await()
      local bad = a.create_task(function() error("boom", 0) end)
      pcall(bad.await, bad)
      assert.is_true(runs_other_first(function() a.gather(t) end))
      assert.is_true(runs_other_first(function() a.gather{t, bad, return_exceptions = true} end))
      assert.is_true(runs_other_first(function() pcall(a.gather, bad, t) end))
      assert.is_true(runs_other_first(function() a.wait({t}) end))
      assert.is_true(runs_other_first(function()
        a.wait({t, bad}, {return_when = "FIRST_EXCEPTION"})
      end))
      assert.are.same({}, a.gather()) -- nothing at all: done at once
      assert.is_false(runs_other_first(function() a.gather() end))
    end)

    it("await of a done task, a set Event, a free Lock/Semaphore and a ready Queue do not", function()
      local t = a.create_task(function() end)
      t:await()
      local e, l, s, q = a.Event(), a.Lock(), a.Semaphore(1), a.Queue()
      e:set()
      q:put_nowait(1)
      assert.is_false(runs_other_first(function() t:await() end))
      assert.is_false(runs_other_first(function() e:wait() end))
      assert.is_false(runs_other_first(function() l:acquire() l:release() end))
      assert.is_false(runs_other_first(function() s:acquire() s:release() end))
      assert.is_false(runs_other_first(function() q:get() end))
      assert.is_false(runs_other_first(function() q:put(2) end))
      assert.is_false(runs_other_first(function() a.shield(t):await() end))
      -- asyncio 3.12+: wait_for is a timeout around the await (3.11 yields)
      assert.is_false(runs_other_first(function() a.wait_for(t, 1) end))
    end)
  end)

  describe("synchronisation races", function()
    -- Python: w cancelled
    it("an Event wait cancelled after set() but before it ran raises CancelledError", function()
      local e = a.Event()
      local w = a.create_task(function() return e:wait() end)
      a.sleep(0)
      e:set()
      w:cancel()
      helper.await_cancelled(w)
      assert.is_true(e:is_set())
    end)

    -- Python: w2 True False
    it("set() then clear() before the waiter ran still wakes it with true", function()
      local e = a.Event()
      local w = a.create_task(function() return e:wait() end)
      a.sleep(0)
      e:set()
      e:clear()
      assert.is_true(w:await())
      assert.is_false(e:is_set())
    end)

    -- Python: timeout False, final locked False
    it("wait_for(lock:acquire(), t) racing a release leaves the lock free", function()
      local l = a.Lock()
      l:acquire()
      local r = a.create_task(function() a.sleep(0.01) l:release() end)
      local ok = pcall(a.wait_for, function() return l:acquire() end, 0.01)
      if ok then l:release() end
      r:await()
      assert.is_false(l:locked())
      l:acquire()
      l:release()
    end)

    for _, kind in ipairs{"Queue", "LifoQueue", "PriorityQueue"} do
      -- Python: g2 got 1, g1 cancelled True, qsize 0
      it(kind .. ": a getter cancelled after an item was handed to it passes the item on", function()
        local q = a[kind]()
        local g1 = a.create_task(function() return q:get() end)
        local g2 = a.create_task(function() return q:get() end)
        a.sleep(0)
        q:put_nowait(1)
        g1:cancel()
        assert.are.equal(1, g2:await())
        assert.is_true(g1:cancelled())
        assert.are.equal(0, q:qsize())
      end)
    end

    -- Deliberate difference (docs/api.md, Queues).  Python: stolen y,
    -- g done? False, then g gets z.  Here the item is the getter's.
    it("an item put for a waiting getter is reserved for it (asyncio lets get_nowait take it)", function()
      local q = a.Queue()
      local g = a.create_task(function() return q:get() end)
      a.sleep(0)
      q:put_nowait("y")
      assert.are.equal(0, q:qsize())
      assert.is_true(q:empty())
      helper.raises(a.QueueEmpty, q.get_nowait, q)
      assert.are.equal("y", g:await())
    end)

    -- Python: q after 1 5
    it("a get timed out by wait_for leaves no getter to eat the next item", function()
      local q = a.Queue()
      local ok, err = pcall(a.wait_for, function() return q:get() end, 0.01)
      assert.is_false(ok)
      assert.is_true(a.is(err, a.TimeoutError))
      q:put_nowait(5)
      assert.are.equal(1, q:qsize())
      assert.are.equal(5, q:get_nowait())
    end)

    -- w1 and w2 queue on p (a Lock held by the test, or a Semaphore(0));
    -- p is released and w1 cancelled in one turn, in the order `order`
    -- says; then three turns are logged.  As Python's
    --   async def waiter(name):
    --       try: await p.acquire(); log.append(f'{name} acquired'); p.release()
    --       except asyncio.CancelledError: log.append(f'{name} cancelled'); raise
    local function release_and_cancel(p, hold, order)
      local log = {}
      local function waiter(name) return function()
        local ok, err = pcall(p.acquire, p)
        if not ok then log[#log + 1] = name .. " cancelled" error(err, 0) end
        log[#log + 1] = name .. " acquired"
        p:release()
      end end
      if hold then p:acquire() end
      local w1 = a.create_task(waiter("w1"))
      a.create_task(waiter("w2"))
      a.sleep(0)
      if order == "cancel first" then w1:cancel() p:release()
      else p:release() w1:cancel() end
      for i = 0, 2 do
        log[#log + 1] = ("turn %d locked=%s"):format(i, p:locked() and "True" or "False")
        a.sleep(0)
      end
      return log
    end

    -- Found by spec/conformance/oracle_sync_fuzz_spec.lua: a waiter woken
    -- by release() and cancelled before it ran hands the lock on when it
    -- runs (its except clause in asyncio), so the next waiter runs a turn
    -- later.  Python 3.11 and 3.13: ['turn 0 locked=False', 'w1 cancelled',
    -- 'turn 1 locked=False', 'w2 acquired', 'turn 2 locked=False']
    it("Lock: a woken waiter cancelled before it ran hands over when it runs", function()
      assert.are.same({"turn 0 locked=False", "w1 cancelled", "turn 1 locked=False",
                       "w2 acquired", "turn 2 locked=False"},
                      release_and_cancel(a.Lock(), true, "release first"))
    end)

    -- Python keeps a cancelled waiter's future in the queue until the task
    -- runs; release() looks at the first future only, finds it done and
    -- wakes nobody, and the cancelled task wakes the next one when it
    -- runs.  Python 3.11 and 3.13: the same log as above.
    it("Lock: release() right after the first waiter was cancelled wakes the next a turn later", function()
      assert.are.same({"turn 0 locked=False", "w1 cancelled", "turn 1 locked=False",
                       "w2 acquired", "turn 2 locked=False"},
                      release_and_cancel(a.Lock(), true, "cancel first"))
    end)

    -- Python: a newcomer takes a free lock at once when every queued
    -- future is cancelled: ['main acquired, w1 done False', 'w1 cancelled']
    it("Lock: a newcomer takes a free lock whose only waiter was cancelled", function()
      local lock, log = a.Lock(), {}
      lock:acquire()
      local w1 = a.create_task(function()
        local ok, err = pcall(lock.acquire, lock)
        if not ok then log[#log + 1] = "w1 cancelled" error(err, 0) end
      end)
      a.sleep(0)
      w1:cancel()
      lock:release()
      lock:acquire()
      log[#log + 1] = "main acquired, w1 done " .. (w1:done() and "True" or "False")
      a.sleep(0)
      lock:release()
      assert.are.same({"main acquired, w1 done False", "w1 cancelled"}, log)
      assert.is_false(lock:locked())
    end)

    -- Found by the fuzz spec too: the same for a permit.  Python 3.11:
    -- ['turn 0 locked=True', 'w1 cancelled', 'turn 1 locked=True',
    -- 'w2 acquired', 'turn 2 locked=False']
    it("Semaphore: a woken waiter cancelled before it ran passes its permit when it runs", function()
      assert.are.same({"turn 0 locked=True", "w1 cancelled", "turn 1 locked=True",
                       "w2 acquired", "turn 2 locked=False"},
                      release_and_cancel(a.Semaphore(0), false, "release first"))
    end)

    -- Deliberate difference from 3.11 (docs/api.md: lasync follows 3.13,
    -- whose wait() passes a notification on when it leaves by an error,
    -- gh-112202).  Python 3.11 loses it: ['w1 cancelled', 'w2 done: False',
    -- 'w2 cancelled']; 3.13, and lasync: w2 is woken.  The fuzz spec's
    -- Python programs get 3.13's wait() on older Pythons for this reason.
    it("Condition: a notified waiter cancelled before it ran passes the notification on (3.13)", function()
      local cond, log = a.Condition(), {}
      local function waiter(name) return function()
        local _ <close> = cond:acquire()
        local ok, err = pcall(cond.wait, cond)
        if not ok then log[#log + 1] = name .. " cancelled" error(err, 0) end
        log[#log + 1] = name .. " woken"
      end end
      local w1 = a.create_task(waiter("w1"))
      local w2 = a.create_task(waiter("w2"))
      a.sleep(0)
      do local _ <close> = cond:acquire() cond:notify(1) end -- to w1
      w1:cancel() -- before w1 has run
      for _ = 1, 3 do a.sleep(0) end
      log[#log + 1] = "w2 done: " .. tostring(w2:done())
      assert.are.same({"w1 cancelled", "w2 woken", "w2 done: true"}, log)
    end)

    -- Deliberate difference from 3.11 (lasync follows 3.13, docs/api.md):
    -- n1 and n2 queue behind w1, woken but not run, while three permits
    -- are released; w1 takes one and wakes as many as are left.  Python
    -- 3.11 wakes one at a time: ['turn 0', 'w1 acquired', 'turn 1',
    -- 'n1 acquired', 'turn 2', 'n2 acquired', 'turn 3']; 3.13 and lasync
    -- wake n1 and n2 together.  The fuzz spec's Python programs get 3.13's
    -- rule on older Pythons for this reason.
    it("Semaphore: a waiter that takes its permit wakes one waiter per permit left (3.13)", function()
      local sem, log = a.Semaphore(0), {}
      local function waiter(name) return function()
        sem:acquire()
        log[#log + 1] = name .. " acquired"
      end end
      a.create_task(waiter("w1"))
      a.sleep(0)
      a.create_task(waiter("n1"))
      a.create_task(waiter("n2"))
      for _ = 1, 3 do sem:release() end
      for i = 0, 3 do log[#log + 1] = "turn " .. i a.sleep(0) end
      assert.are.same({"turn 0", "w1 acquired", "turn 1", "n1 acquired", "n2 acquired",
                       "turn 2", "turn 3"}, log)
    end)

    -- Python raises TypeError/AttributeError for these; here each names
    -- the method and the argument.
    it("Barrier methods called on something else name the method", function()
      local b = a.Barrier(1)
      for _, m in ipairs{"wait", "reset", "abort"} do
        local ok, err = pcall(function() return b[m](5) end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to '" .. m .. "' %(asyncio.Barrier expected, got number%)", err)
      end
    end)
  end)
end)
