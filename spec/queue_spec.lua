local helper = require "spec.helper"
-- each test in a task of its own, with a leak check and a time limit; on
-- the real clock: some tests hold the loop past a deadline (docs/testing.md)
require("asyncio.testing").busted{clock = "real"}
local a = asyncio

local function is(err, cls) return a.is(err, cls) end

-- True once nothing refers to the task any more (weak table + full GC).
local function collected(weak)
  collectgarbage() collectgarbage()
  return next(weak) == nil
end

describe("Queue", function()
  after_each(helper.no_leaks)

  it("is FIFO, reports qsize/empty/full and the maxsize attribute", function()
    local q = a.Queue(3)
    assert.are.equal(3, q.maxsize)
    assert.is_true(q:empty())
    assert.is_false(q:full())
    for i = 1, 3 do q:put(i) end
    assert.are.equal(3, q:qsize())
    assert.is_true(q:full())
    assert.are.same({1, 2, 3}, {q:get(), q:get(), q:get()})
    assert.is_true(q:empty())
    assert.are.equal(0, a.Queue().maxsize)
    assert.is_false(a.Queue():full())
    assert.matches("<Queue maxsize=3 qsize=0>", tostring(q))
  end)

  it("put_nowait / get_nowait raise QueueFull / QueueEmpty", function()
    local q = a.Queue(1)
    local ok, err = pcall(q.get_nowait, q)
    assert.is_false(ok)
    assert.is_true(is(err, a.QueueEmpty))
    q:put_nowait("x")
    ok, err = pcall(q.put_nowait, q, "y")
    assert.is_false(ok)
    assert.is_true(is(err, a.QueueFull))
    assert.matches("QueueFull", tostring(err))
    assert.are.equal("x", q:get_nowait())
  end)

  it("keeps nil-free values of every type, and grows when unbounded", function()
    local q = a.Queue()
    local t = {}
    for i = 1, 1000 do q:put(i) end
    q:put(t) q:put("s") q:put(false)
    for i = 1, 1000 do assert.are.equal(i, q:get()) end
    assert.are.equal(t, q:get())
    assert.are.equal("s", q:get())
    assert.are.equal(false, q:get())
  end)

  it("keeps its state out of Lua's reach: assigning a field is an error, never a crash", function()
    local q = a.Queue(2)
    q:put("a")
    for _, k in ipairs{0, 1, "maxsize", "put"} do
      local ok, err = pcall(function() q[k] = nil end)
      assert.is_false(ok)
      assert.matches("cannot assign field '" .. k .. "' of an asyncio.Queue", err)
    end
    assert.has_error(function() rawset(q, 0, nil) end)
    assert.are.equal("asyncio.Queue", getmetatable(q)) -- the tables stay hidden
    assert.has_error(function() setmetatable(q, nil) end)
    assert.has_error(function() q.put(a.Lock(), 1) end,
      "bad argument #1 to 'put' (asyncio.Queue expected, got asyncio.Lock)")
    assert.has_error(function() q.qsize(io.stdout) end)
    assert.are.equal(2, q.maxsize)
    assert.is_nil(q.nothing)
    q:put("b")
    assert.are.same({"a", "b"}, {q:get(), q:get()})
  end)

  it("maxsize is compared as a number, as in Python: Queue(1.3) holds 2 items", function()
    local q = a.Queue(1.3)
    assert.are.equal(1.3, q.maxsize)
    q:put_nowait(1)
    assert.is_false(q:full())
    q:put_nowait(2)
    assert.is_true(q:full())
    local ok, err = pcall(q.put_nowait, q, 3)
    assert.is_true(is(err, a.QueueFull))
    assert.matches("maxsize 1.3", tostring(err))
    assert.matches("<Queue maxsize=1.3 qsize=2>", tostring(q))
    assert.is_false(a.Queue(0.0):full())
    assert.are.equal(-1, a.Queue(-1).maxsize) -- <= 0: unbounded, kept as given
    local big = a.Queue(1 / 0)
    for i = 1, 100 do big:put_nowait(i) end
    assert.is_false(big:full())
    assert.is_false(a.Queue(0 / 0):full())
  end)

  -- a bounded queue up to 4096 items keeps them in user values of its
  -- own; a larger or unbounded one in a table that grows: both are covered
  it("wraps around its ring in order, whatever its size", function()
    for _, size in ipairs{1, 3, 4096, 4097} do
      local q = a.Queue(size)
      local nextin, nextout = 1, 1
      for _ = 1, 3 do -- fill, drain half, refill: the ring wraps
        while not q:full() do q:put_nowait(nextin) nextin = nextin + 1 end
        assert.are.equal(size, q:qsize())
        for _ = 1, (size + 1) // 2 do
          assert.are.equal(nextout, q:get_nowait())
          nextout = nextout + 1
        end
      end
      while not q:empty() do
        assert.are.equal(nextout, q:get())
        nextout = nextout + 1
      end
      assert.are.equal(nextin, nextout)
    end
  end)

  -- an unbounded queue (or one above 4096) starts with 16 slots of its
  -- own and moves its items to a table when a put finds them full
  it("keeps its order when it outgrows its first slots, wrapped or not", function()
    for _, q in ipairs{a.Queue(), a.Queue(10000)} do
      for i = 1, 10 do q:put(i) end
      for i = 1, 5 do assert.are.equal(i, q:get()) end
      for i = 11, 21 do q:put(i) end -- 16 held, wrapped around the ring
      assert.are.equal(16, q:qsize())
      for i = 22, 100 do q:put_nowait(i) end -- the move, then the table grows
      assert.are.equal(95, q:qsize())
      for i = 6, 100 do assert.are.equal(i, q:get_nowait()) end
      assert.is_true(q:empty())
      q:put("after") -- the table goes on serving
      assert.are.equal("after", q:get())
    end
    local l = a.LifoQueue()
    for i = 1, 40 do l:put(i) end
    for i = 40, 1, -1 do assert.are.equal(i, l:get()) end
  end)

  it("put stores its first argument only; extra arguments are ignored", function()
    for _, q in ipairs{a.Queue(2), a.Queue(), a.LifoQueue(2), a.PriorityQueue(2)} do
      q:put(1, "extra", "more")
      q:put_nowait(2, "extra")
      assert.are.equal(2, q:qsize())
      local first, second = q:get(), q:get_nowait()
      assert.are.same({1, 2}, {math.min(first, second), math.max(first, second)})
      assert.is_true(q:empty())
    end
    local q = a.Queue(1)
    q:put(nil, "extra") -- nil is an item
    assert.is_true(q:full())
    assert.is_nil(q:get())
  end)

  it("keeps no reference to an item it handed out or dropped", function()
    local function mk() return {a.Queue(4), a.Queue(5000), a.Queue(),
      a.LifoQueue(4), a.LifoQueue(), a.PriorityQueue(4)} end
    for _, q in ipairs(mk()) do
      local weak = setmetatable({}, {__mode = "k"})
      for i = 1, 3 do
        local item = {i}
        weak[item] = true
        q:put(item)
      end
      for _ = 1, 3 do q:get() end
      assert.is_true(collected(weak), tostring(q))
    end
    for _, q in ipairs(mk()) do
      local weak = setmetatable({}, {__mode = "k"})
      q:put("kept")
      q:get()
      for i = 1, 3 do
        local item = {i}
        weak[item] = true
        q:put(item)
      end
      q:shutdown(true)
      assert.is_true(collected(weak), tostring(q))
      assert.is_true(q:empty())
    end
  end)

  it("allocates nothing up front for a huge maxsize", function()
    collectgarbage()
    local before = collectgarbage("count")
    local q = a.Queue(1e12)
    local l = a.LifoQueue(math.maxinteger)
    assert.is_true(collectgarbage("count") - before < 64) -- KB
    q:put(1) l:put(2)
    assert.are.equal(1, q:get())
    assert.are.equal(2, l:get())
  end)

  it("refuses unknown option keys and a maxsize that is not a number", function()
    assert.has_error(function() a.Queue{maxsze = 3} end,
      "bad argument #1 to 'Queue' (unknown option 'maxsze')")
    assert.has_error(function() a.LifoQueue{key = print} end)
    assert.has_error(function() a.PriorityQueue{maxsize = 2, keys = print} end,
      "bad argument #1 to 'PriorityQueue' (unknown option 'keys')")
    assert.has_error(function() a.Queue{maxsize = "3"} end,
      "bad argument #1 to 'Queue' (maxsize: number expected, got string)")
    assert.are.equal(3, a.Queue{maxsize = 3}.maxsize)
  end)

  it("rejects misuse with Lua's wording", function()
    local q = a.Queue()
    assert.has_error(function() q.put({}, 1) end,
      "bad argument #1 to 'put' (asyncio.Queue expected, got table)")
    assert.has_error(function() q:put() end,
      "bad argument #1 to 'put' (value expected)")
    -- the queue check reads a tag in the C struct: any other value, a full
    -- userdata of another type included, is refused before it is read
    for _, v in ipairs{io.stdout, a.Lock(), coroutine.create(print), "q", 1} do
      local ok, err = pcall(function() local r = q.get_nowait(v); return r end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'get_nowait' %(asyncio.Queue expected, got ", err)
    end
    assert.has_error(function() q.put() end,
      "bad argument #1 to 'put' (asyncio.Queue expected, got no value)")
    -- a method is the queue's kind's behaviour, not the one it was fetched from
    local l = a.LifoQueue()
    l:put(1); l:put(2)
    assert.are.equal(2, q.get_nowait(l))
    assert.has_error(function() a.Queue("x") end)
  end)

  it("get waits for a put and put waits for room, first come first served", function()
    local q = a.Queue(1)
    local log = helper.log()
    local getters = {}
    for i = 1, 3 do
      getters[i] = a.create_task(function() local v = q:get() log.add("g" .. i .. "=" .. v) end)
    end
    a.sleep(0)
    for i = 1, 3 do q:put(i * 10) end -- the 2nd and 3rd puts wait for room
    for i = 1, 3 do getters[i]:await() end
    assert.are.equal("g1=10 g2=20 g3=30", log.str())
    -- putters queue in order too
    q:put("a")
    local p1 = a.create_task(function() q:put("b") end)
    local p2 = a.create_task(function() q:put("c") end)
    a.sleep(0)
    assert.is_false(p1:done())
    assert.are.same({"a", "b", "c"}, {q:get(), q:get(), q:get()})
    p1:await() p2:await()
  end)

  it("producer/consumer with task_done and join", function()
    local q = a.Queue(4)
    local seen = {}
    local function consumer()
      while true do
        local item = q:get()
        a.sleep(0)
        seen[#seen + 1] = item
        q:task_done()
      end
    end
    local workers = {}
    for i = 1, 3 do workers[i] = a.create_task(consumer) end
    for i = 1, 20 do q:put(i) end
    q:join()
    assert.are.equal(20, #seen)
    table.sort(seen)
    for i = 1, 20 do assert.are.equal(i, seen[i]) end
    for i = 1, 3 do workers[i]:cancel() end
    for i = 1, 3 do
      local ok, err = pcall(workers[i].await, workers[i])
      assert.is_false(ok)
      assert.is_true(is(err, a.CancelledError))
    end
  end)

  it("join returns at once when nothing is unfinished; task_done too often raises", function()
    local q = a.Queue()
    q:join()
    local ok, err = pcall(q.task_done, q)
    assert.is_false(ok)
    assert.is_true(is(err, a.ValueError))
  end)

  it("a getter cancelled while waiting takes nothing", function()
    local q = a.Queue()
    local g1 = a.create_task(function() return q:get() end)
    local g2 = a.create_task(function() return q:get() end)
    a.sleep(0)
    g1:cancel()
    a.sleep(0)
    q:put("item")
    assert.are.equal("item", g2:await())
    assert.is_true(g1:cancelled())
  end)

  it("a getter cancelled after being woken passes the item on (same turn)", function()
    local q = a.Queue()
    local g1 = a.create_task(function() return q:get() end)
    local g2 = a.create_task(function() return q:get() end)
    a.sleep(0)
    q:put("one")  -- wakes g1
    g1:cancel()   -- before it ran: the item goes to g2
    assert.are.equal("one", g2:await())
    local ok, err = pcall(g1.await, g1)
    assert.is_false(ok)
    assert.is_true(is(err, a.CancelledError))
    assert.are.equal(0, q:qsize())
  end)

  it("a get timing out at the same loop turn as its wake-up leaves the item", function()
    local q = a.Queue()
    local T = a.time() + 0.02 * helper.slow
    local g = a.create_task(function()
      local _ <close> = a.timeout_at(T)
      return q:get()
    end)
    a.sleep(0)
    while a.time() < T + 0.002 do end -- hold the loop past the deadline
    q:put("kept")  -- wakes g; its deadline fires before g runs
    local ok, err = pcall(g.await, g)
    assert.is_false(ok)
    assert.is_true(is(err, a.TimeoutError))
    assert.are.equal(1, q:qsize())
    assert.are.equal("kept", q:get_nowait())
  end)

  it("a putter cancelled after being woken does not put, the next one does", function()
    local q = a.Queue(1)
    q:put(0)
    local p1 = a.create_task(function() q:put(1) end)
    local p2 = a.create_task(function() q:put(2) end)
    a.sleep(0)
    assert.are.equal(0, q:get()) -- frees a slot: p1 woken
    p1:cancel()
    p2:await()
    assert.are.equal(2, q:get())
    assert.is_true(q:empty())
    assert.is_true(p1:cancelled())
  end)

  it("wait_for on get times out and never loses an item", function()
    local q = a.Queue()
    local ok, err = pcall(a.wait_for, function() return q:get() end, 0.01)
    assert.is_false(ok)
    assert.is_true(is(err, a.TimeoutError))
    q:put(1)
    assert.are.equal(1, q:get())
  end)

  it("holds no reference to a cancelled waiter", function()
    local q = a.Queue()
    local weak = setmetatable({}, {__mode = "k"})
    local t = a.create_task(function() return q:get() end)
    weak[t] = true
    a.sleep(0)
    t:cancel()
    a.sleep(0)
    assert.is_true(t:done())
    t = nil
    assert.is_true(collected(weak))
    q:put(1) -- the list is intact
    assert.are.equal(1, q:get())
  end)

  it("shutdown: put raises, get drains then raises, waiters are released", function()
    local q = a.Queue(1)
    local getter = a.create_task(function() return q:get() end)
    a.sleep(0)
    q:shutdown()
    local ok, err = pcall(getter.await, getter)
    assert.is_false(ok)
    assert.is_true(is(err, a.QueueShutDown))
    ok, err = pcall(q.put, q, 1)
    assert.is_true(is(err, a.QueueShutDown))

    local q2 = a.Queue(1)
    q2:put("left")
    local putter = a.create_task(function() q2:put("blocked") end)
    a.sleep(0)
    q2:shutdown()
    ok, err = pcall(putter.await, putter)
    assert.is_true(is(err, a.QueueShutDown))
    assert.are.equal("left", q2:get())
    ok, err = pcall(q2.get, q2)
    assert.is_true(is(err, a.QueueShutDown))
  end)

  it("shutdown(true) drops the items and releases join", function()
    local q = a.Queue()
    q:put(1) q:put(2)
    local joiner = a.create_task(function() q:join() return "joined" end)
    a.sleep(0)
    q:shutdown(true)
    assert.are.equal("joined", joiner:await())
    assert.is_true(q:empty())
    local ok, err = pcall(q.get_nowait, q)
    assert.is_true(is(err, a.QueueShutDown))
  end)

  it("a waiting put/get outside a task raises a clear error", function()
    local out = helper.run_script([[
      local q = asyncio.Queue(1)
      q:put(1)
      local co = coroutine.wrap(function() return pcall(q.put, q, 2) end)
      print(co())
    ]])
    assert.matches("put%(%) called outside a task", out)
  end)
end)

describe("PriorityQueue", function()
  after_each(helper.no_leaks)

  it("gives the smallest first; tables compare by [1]; ties stay FIFO", function()
    local q = a.PriorityQueue()
    q:put({3, "c"}) q:put({1, "a"}) q:put({2, "b1"}) q:put({2, "b2"}) q:put({0, "z"})
    local out = {}
    while not q:empty() do out[#out + 1] = q:get()[2] end
    assert.are.same({"z", "a", "b1", "b2", "c"}, out)
    for _, v in ipairs{5, 3, 9, 1, 7} do q:put(v) end
    assert.are.same({1, 3, 5, 7, 9}, {q:get(), q:get(), q:get(), q:get(), q:get()})
  end)

  it("takes a key function", function()
    local q = a.PriorityQueue{key = function(s) return #s end, maxsize = 5}
    assert.are.equal(5, q.maxsize)
    for _, s in ipairs{"ccc", "a", "bb"} do q:put(s) end
    assert.are.same({"a", "bb", "ccc"}, {q:get(), q:get(), q:get()})
  end)

  it("an incomparable item raises and leaves the queue usable", function()
    local q = a.PriorityQueue()
    q:put(1)
    assert.has_error(function() q:put("x") end)
    assert.are.equal(1, q:qsize())
    assert.are.equal(1, q:get())
  end)

  it("put and get are all-or-nothing when the keys' __lt raises", function()
    local fail = false
    local K = {__lt = function(x, y)
      if fail then error("no order today") end
      return x.v < y.v
    end}
    local function key(v) return setmetatable({v = v}, K) end
    local q = a.PriorityQueue()
    for _, v in ipairs{5, 3, 8, 1} do q:put({key(v), v}) end
    fail = true
    local ok, err = pcall(q.put, q, {key(0), 0})
    assert.is_false(ok)
    assert.matches("no order today", tostring(err))
    assert.are.equal(4, q:qsize())           -- nothing uncounted inside
    ok, err = pcall(q.get, q)
    assert.is_false(ok)
    assert.matches("no order today", tostring(err))
    assert.are.equal(4, q:qsize())           -- nothing lost either
    fail = false
    local out = {}
    for i = 1, 4 do out[i] = q:get()[2]; q:task_done() end
    assert.are.same({1, 3, 5, 8}, out)
    assert.is_true(q:empty())
    q:join()                                  -- unfinished count is right
    assert.has_error(function() q:task_done() end)
  end)

  it("a key function that uses its own queue gets an error, and the queue stays whole", function()
    local q
    q = a.PriorityQueue{key = function(v)
      if v == "sneaky" then q:put_nowait(0) end
      return v == "sneaky" and 0 or v
    end}
    q:put(2)
    local ok, err = pcall(q.put, q, "sneaky")
    assert.is_false(ok)
    assert.matches("used from its own key function", tostring(err))
    assert.are.equal(1, q:qsize())
    q:put(1)
    assert.are.same({1, 2}, {q:get(), q:get()})
  end)

  it("a woken getter whose get raises passes the item on to the next getter", function()
    local fail = 0 -- how many comparisons raise
    local K = {__lt = function(x, y)
      if fail > 0 then fail = fail - 1 error("no order today") end
      return x.v < y.v
    end}
    local q = a.PriorityQueue{key = function(item) return setmetatable({v = item}, K) end}
    local g = {}
    for i = 1, 4 do g[i] = a.create_task(function() return q:get() end) end
    a.sleep(0)
    q:put(2) q:put(1) q:put(3) -- reserved for g1, g2, g3; g4 waits
    fail = 1 -- g1's get compares (3 items) and raises
    local ok, err = pcall(g[1].await, g[1])
    assert.is_false(ok)
    assert.matches("no order today", tostring(err))
    -- g1's item went on to g4, which would otherwise wait for ever
    assert.are.same({1, 2, 3}, {g[2]:await(), g[3]:await(), g[4]:await()})
    assert.is_true(q:empty())
  end)
end)

describe("LifoQueue", function()
  after_each(helper.no_leaks)

  it("is last in, first out", function()
    local q = a.LifoQueue(3)
    q:put(1) q:put(2) q:put(3)
    assert.is_true(q:full())
    assert.are.same({3, 2, 1}, {q:get(), q:get(), q:get()})
    assert.matches("LifoQueue", tostring(q))
  end)

  it("is LIFO across interleaved puts and gets, bounded or not", function()
    for _, q in ipairs{a.LifoQueue(3), a.LifoQueue(5000), a.LifoQueue()} do
      q:put(1) q:put(2)
      assert.are.equal(2, q:get())
      q:put(3) q:put(4)
      assert.are.same({4, 3, 1}, {q:get(), q:get(), q:get()})
      assert.is_true(q:empty())
    end
  end)
end)
