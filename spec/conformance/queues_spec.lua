-- CPython 3.13's Lib/test/test_asyncio/test_queues.py, restated for lasync:
-- each `it` names the CPython test (and its class) whose behaviour it
-- checks.  Python's private fields (_getters, _putters, _unfinished_tasks)
-- are read from tostring() or from what join()/task_done() do; tests of
-- Python-only features (GenericAlias) have no Lua counterpart.
local helper = require "spec.helper"
local a = asyncio

local raises = helper.raises

-- test_nonblocking_get and test_nonblocking_put (the same test in CPython).
local function put_nowait_then_get_nowait()
  local q = a.Queue()
  q:put_nowait(1)
  assert.are.equal(1, q:get_nowait())
end

local function field(q, name)
  return tonumber(tostring(q):match(name .. "=(%d+)")) or 0
end

describe("conformance: QueueBasicTests", function()
  after_each(helper.no_leaks)

  it("test_repr / test_str (QueueBasicTests): tostring names the class and counts getters, putters and items", function()
    local q = a.Queue()
    assert.matches("^<Queue maxsize=0 qsize=0>$", tostring(q))
    local getter = a.create_task(function() return q:get() end)
    a.sleep(0)
    assert.are.equal(1, field(q, "getters"))
    q:put_nowait(0)
    assert.are.equal(0, getter:await())
    q = a.Queue(1)
    q:put_nowait(1)
    local putter = a.create_task(function() q:put(2) end)
    a.sleep(0)
    assert.are.equal(1, field(q, "putters"))
    q:get_nowait()
    putter:await()
    q = a.Queue()
    q:put_nowait(1)
    assert.matches("qsize=1", tostring(q))
  end)

  it("test_empty (QueueBasicTests): empty() follows put and get", function()
    local q = a.Queue()
    assert.is_true(q:empty())
    q:put(1)
    assert.is_false(q:empty())
    assert.are.equal(1, q:get())
    assert.is_true(q:empty())
  end)

  it("test_full (QueueBasicTests): an unbounded queue is never full; Queue(1) is after one put", function()
    assert.is_false(a.Queue():full())
    local q = a.Queue{maxsize = 1}
    q:put(1)
    assert.is_true(q:full())
  end)

  it("test_order (QueueBasicTests): first in, first out", function()
    local q = a.Queue()
    for _, i in ipairs{1, 3, 2} do q:put(i) end
    assert.are.same({1, 3, 2}, {q:get(), q:get(), q:get()})
  end)

  it("test_maxsize (QueueBasicTests): a putter blocks at maxsize and resumes after a get", function()
    local q = a.Queue{maxsize = 2}
    assert.are.equal(2, q.maxsize)
    local have_been_put = {}
    local t = a.create_task(function()
      for i = 0, 2 do
        q:put(i)
        have_been_put[#have_been_put + 1] = i
      end
      return true
    end)
    for _ = 1, 2 do a.sleep(0) end
    assert.are.same({0, 1}, have_been_put)
    assert.are.equal(0, q:get())
    a.sleep(0)
    assert.are.same({0, 1, 2}, have_been_put)
    assert.are.equal(1, q:get())
    assert.are.equal(2, q:get())
    assert.is_true(t:done())
    assert.is_true(t:result())
  end)
end)

describe("conformance: QueueGetTests", function()
  after_each(helper.no_leaks)

  it("test_blocking_get (QueueGetTests): get returns a waiting item", function()
    local q = a.Queue()
    q:put_nowait(1)
    assert.are.equal(1, q:get())
  end)

  it("test_get_with_putters (QueueGetTests): a get wakes a waiting putter", function()
    local q = a.Queue(1)
    q:put(1)
    local putter = a.create_task(function() q:put(2) return "put" end)
    a.sleep(0)
    assert.is_false(putter:done())
    assert.are.equal(1, q:get())
    assert.are.equal("put", putter:await())
    assert.are.equal(2, q:get_nowait())
  end)

  it("test_blocking_get_wait (QueueGetTests): get waits for a later put", function()
    local q = a.Queue()
    local started = a.Event()
    local finished = false
    local t = a.create_task(function()
      started:set()
      local res = q:get()
      finished = true
      return res
    end)
    started:wait()
    assert.is_false(finished)
    a.call_later(0.01, function() q:put_nowait(1) end)
    assert.are.equal(1, t:await())
    assert.is_true(finished)
  end)

  it("test_nonblocking_get (QueueGetTests): get_nowait returns an item", put_nowait_then_get_nowait)

  it("test_nonblocking_get_exception (QueueGetTests): get_nowait on empty raises QueueEmpty", function()
    local q = a.Queue()
    raises(a.QueueEmpty, q.get_nowait, q)
  end)

  it("test_get_cancelled_race (QueueGetTests): a cancelled getter does not take the next item", function()
    local q = a.Queue()
    local t1 = a.create_task(function() return q:get() end)
    local t2 = a.create_task(function() return q:get() end)
    a.sleep(0)
    t1:cancel()
    a.sleep(0)
    assert.is_true(t1:done())
    q:put("a")
    a.sleep(0)
    assert.are.equal("a", t2:await())
  end)

  it("test_get_with_waiting_putters (QueueGetTests): waiting putters deliver in order", function()
    local q = a.Queue{maxsize = 1}
    local p1 = a.create_task(function() q:put("a") end)
    local p2 = a.create_task(function() q:put("b") end)
    assert.are.equal("a", q:get())
    assert.are.equal("b", q:get())
    p1:await() p2:await()
  end)

  it("test_why_are_getters_waiting (QueueGetTests): a producer and a consumer on Queue(1) finish", function()
    local q = a.Queue(1)
    local got = {}
    a.task_group(function(tg)
      tg:create_task(function() for i = 0, 4 do q:put(i) end end)
      tg:create_task(function() for _ = 1, 5 do got[#got + 1] = q:get() end end)
    end)
    assert.are.same({0, 1, 2, 3, 4}, got)
  end)

  it("test_cancelled_getters_not_being_held_in_self_getters (QueueGetTests): a timed-out get leaves no getter", function()
    local q = a.Queue{maxsize = 5}
    raises(a.TimeoutError, a.wait_for, function() return q:get() end, 0.01)
    assert.are.equal(0, field(q, "getters"))
  end)
end)

describe("conformance: QueuePutTests", function()
  after_each(helper.no_leaks)

  it("test_blocking_put (QueuePutTests): put on an unbounded queue does not block", function()
    local q = a.Queue()
    q:put(1)
    assert.are.equal(1, q:get())
  end)

  it("test_blocking_put_wait (QueuePutTests): put waits for room", function()
    local q = a.Queue{maxsize = 1}
    local started = a.Event()
    local finished = false
    a.call_later(0.01, function() q:get_nowait() end)
    local t = a.create_task(function()
      started:set()
      q:put(1)
      q:put(2)
      finished = true
    end)
    started:wait()
    assert.is_false(finished)
    t:await()
    assert.is_true(finished)
  end)

  it("test_nonblocking_put (QueuePutTests): put_nowait then get_nowait", put_nowait_then_get_nowait)

  it("test_get_cancel_drop_one_pending_reader (QueuePutTests): a reader cancelled after the put does not drop an item", function()
    local q = a.Queue()
    local reader = a.create_task(function() return q:get() end)
    a.sleep(0)
    q:put_nowait(1)
    q:put_nowait(2)
    reader:cancel()
    local ok, res = pcall(reader.await, reader)
    if not ok then
      reader = a.create_task(function() return q:get() end)
      res = reader:await()
    end
    assert.are.equal(1, res) -- 2 would mean 1 was dropped
  end)

  it("test_get_cancel_drop_many_pending_readers (QueuePutTests): the other readers get both items", function()
    local q = a.Queue()
    local r1, r2, r3
    a.task_group(function(tg)
      r1 = tg:create_task(function() return q:get() end)
      r2 = tg:create_task(function() return q:get() end)
      r3 = tg:create_task(function() return q:get() end)
      a.sleep(0)
      q:put_nowait(1)
      q:put_nowait(2)
      r1:cancel()
      raises(a.CancelledError, r1.await, r1)
      r3:await()
    end)
    local got = {r2:result(), r3:result()}
    table.sort(got)
    assert.are.same({1, 2}, got)
  end)

  it("test_put_cancel_drop (QueuePutTests): a writer cancelled after room appeared does not lose its slot's item", function()
    local q = a.Queue(1)
    q:put_nowait(1)
    local writer = a.create_task(function() q:put(2) end)
    a.sleep(0)
    assert.are.equal(1, q:get_nowait())
    writer:cancel()
    local ok = pcall(writer.await, writer)
    if not ok then
      writer = a.create_task(function() q:put(2) end)
      writer:await()
    end
    assert.are.equal(2, q:get_nowait())
    assert.are.equal(0, q:qsize())
  end)

  it("test_nonblocking_put_exception (QueuePutTests): put_nowait on a full queue raises QueueFull", function()
    local q = a.Queue{maxsize = 1}
    q:put_nowait(1)
    raises(a.QueueFull, q.put_nowait, q, 2)
  end)

  it("test_float_maxsize (QueuePutTests): maxsize 1.3 holds two items", function()
    local q = a.Queue{maxsize = 1.3}
    q:put_nowait(1)
    q:put_nowait(2)
    assert.is_true(q:full())
    raises(a.QueueFull, q.put_nowait, q, 3)
    q = a.Queue{maxsize = 1.3}
    q:put(1)
    q:put(2)
    assert.is_true(q:full())
  end)

  it("test_put_cancelled (QueuePutTests): a put task completes once its item is taken", function()
    local q = a.Queue()
    local t = a.create_task(function() q:put(1) return true end)
    assert.are.equal(1, q:get())
    assert.is_true(t:done())
    assert.is_true(t:result())
  end)

  it("test_put_cancelled_race (QueuePutTests): a cancelled putter does not take the free slot", function()
    local q = a.Queue{maxsize = 1}
    local put_a = a.create_task(function() q:put("a") end)
    local put_b = a.create_task(function() q:put("b") end)
    local put_c = a.create_task(function() q:put("X") end)
    a.sleep(0)
    assert.is_true(put_a:done())
    assert.is_false(put_b:done())
    put_c:cancel()
    a.sleep(0)
    assert.is_true(put_c:done())
    assert.are.equal("a", q:get_nowait())
    a.sleep(0)
    assert.are.equal("b", q:get_nowait())
    put_b:await()
  end)

  it("test_put_with_waiting_getters (QueuePutTests): a put goes to the waiting getter", function()
    local q = a.Queue()
    local t = a.create_task(function() return q:get() end)
    a.sleep(0)
    q:put("a")
    assert.are.equal("a", t:await())
  end)

  it("test_why_are_putters_waiting (QueuePutTests): four putters and a draining getter finish", function()
    local q = a.Queue(2)
    a.task_group(function(tg)
      tg:create_task(function()
        a.sleep(0)
        for _ = 1, q:qsize() do q:get_nowait() end
      end)
      for i = 0, 3 do tg:create_task(function() q:put(i) end) end
    end)
    assert.are.equal(2, q:qsize())
  end)

  it("test_cancelled_puts_not_being_held_in_self_putters (QueuePutTests): a cancelled put leaves no putter", function()
    local q = a.Queue{maxsize = 1}
    q:put_nowait(1)
    local put_task = a.create_task(function() q:put(1) end)
    a.sleep(0)
    assert.are.equal(1, field(q, "putters"))
    put_task:cancel()
    raises(a.CancelledError, put_task.await, put_task)
    assert.are.equal(0, field(q, "putters"))
  end)

  it("test_cancelled_put_silence_value_error_exception (QueuePutTests): a putter woken then cancelled raises CancelledError", function()
    local q = a.Queue(1)
    q:put_nowait(1)
    local put_task = a.create_task(function() q:put(1) end)
    a.sleep(0)
    q:get_nowait()
    put_task:cancel()
    raises(a.CancelledError, put_task.await, put_task)
    assert.is_true(q:empty())
  end)
end)

describe("conformance: LifoQueueTests", function()
  after_each(helper.no_leaks)

  it("test_order (LifoQueueTests): last in, first out", function()
    local q = a.LifoQueue()
    for _, i in ipairs{1, 3, 2} do q:put(i) end
    assert.are.same({2, 3, 1}, {q:get(), q:get(), q:get()})
  end)
end)

describe("conformance: PriorityQueueTests", function()
  after_each(helper.no_leaks)

  it("test_order (PriorityQueueTests): smallest first", function()
    local q = a.PriorityQueue()
    for _, i in ipairs{1, 3, 2} do q:put(i) end
    assert.are.same({1, 2, 3}, {q:get(), q:get(), q:get()})
  end)
end)

-- The join and shutdown mixins run for each of the three classes, as in
-- CPython (QueueJoinTests, LifoQueueJoinTests, PriorityQueueJoinTests...).
for _, class in ipairs{"Queue", "LifoQueue", "PriorityQueue"} do
  local new = a[class]
  local join_tests = class .. "JoinTests"
  local shutdown_tests = class .. "ShutdownTests"

  describe("conformance: " .. join_tests, function()
    after_each(helper.no_leaks)

    it(("test_task_done_underflow (%s): task_done without a put raises ValueError"):format(join_tests), function()
      local q = new()
      raises(a.ValueError, q.task_done, q)
    end)

    it(("test_task_done (%s): join returns once every item is done"):format(join_tests), function()
      local q = new()
      for i = 0, 99 do q:put_nowait(i) end
      local accumulator = 0
      local running = true
      a.task_group(function(tg)
        for _ = 1, 2 do
          tg:create_task(function()
            while running do
              accumulator = accumulator + q:get()
              q:task_done()
            end
          end)
        end
        q:join()
        assert.are.equal(4950, accumulator)
        running = false
        for _ = 1, 2 do q:put_nowait(0) end
      end)
    end)

    it(("test_join_empty_queue (%s): join on an empty queue returns at once, twice"):format(join_tests), function()
      local q = new()
      q:join()
      q:join()
    end)

    it(("test_format (%s): tostring shows maxsize"):format(join_tests), function()
      local q = new()
      assert.matches("^<" .. class .. " maxsize=0 qsize=0>$", tostring(q))
    end)
  end)

  describe("conformance: " .. shutdown_tests, function()
    after_each(helper.no_leaks)

    -- A queue that is shut down (and empty) refuses put, put_nowait, get and
    -- get_nowait with QueueShutDown.
    local function refuses_all(q)
      raises(a.QueueShutDown, q.put, q, "data")
      raises(a.QueueShutDown, q.put_nowait, q, "data")
      raises(a.QueueShutDown, q.get, q)
      raises(a.QueueShutDown, q.get_nowait, q)
    end

    it(("test_format (%s): tostring says shutdown"):format(shutdown_tests), function()
      local q = new()
      q:shutdown()
      assert.matches("^<" .. class .. " maxsize=0 qsize=0 shutdown>$", tostring(q))
    end)

    it(("test_shutdown_empty (%s): shutdown of an empty queue releases getters and join; put and get raise"):format(shutdown_tests), function()
      local q = new()
      local get_task = a.create_task(function() return q:get() end)
      a.sleep(0)
      q:shutdown(false)
      assert.are.equal(0, q:qsize())
      q:join()
      a.sleep(0)
      assert.is_true(get_task:done())
      raises(a.QueueShutDown, get_task.await, get_task)
      refuses_all(q)
    end)

    it(("test_shutdown_nonempty (%s): items left can still be got; join waits for them"):format(shutdown_tests), function()
      local q = new{maxsize = 1}
      q:put_nowait("data")
      local join_task = a.create_task(function() q:join() end)
      local put_task = a.create_task(function() q:put("data2") end)
      a.sleep(0)
      assert.is_false(put_task:done())
      q:shutdown(false)
      assert.are.equal(1, q:qsize())
      a.sleep(0)
      assert.is_true(put_task:done())
      raises(a.QueueShutDown, put_task.await, put_task)
      assert.are.equal("data", q:get())
      a.sleep(0)
      assert.is_false(join_task:done())
      refuses_all(q)
      q:task_done()
      a.sleep(0)
      assert.is_true(join_task:done())
      join_task:await()
      raises(a.ValueError, q.task_done, q)
    end)

    it(("test_shutdown_immediate (%s): the items are dropped and join returns"):format(shutdown_tests), function()
      local q = new()
      q:put_nowait("data")
      local join_task = a.create_task(function() q:join() end)
      q:shutdown(true)
      assert.are.equal(0, q:qsize())
      a.sleep(0)
      assert.is_true(join_task:done())
      join_task:await()
      refuses_all(q)
      raises(a.ValueError, q.task_done, q)
    end)

    it(("test_shutdown_immediate_with_unfinished (%s): items already got still count for join"):format(shutdown_tests), function()
      local q = new()
      q:put_nowait("data")
      q:put_nowait("data")
      local join_task = a.create_task(function() q:join() end)
      assert.are.equal("data", q:get())
      q:shutdown(true)
      assert.are.equal(0, q:qsize())
      a.sleep(0)
      assert.is_false(join_task:done())
      refuses_all(q)
      q:task_done()
      raises(a.ValueError, q.task_done, q)
      a.sleep(0)
      assert.is_true(join_task:done())
      join_task:await()
    end)
  end)
end
