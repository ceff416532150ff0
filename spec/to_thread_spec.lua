-- asyncio.to_thread(fn, ...): a Lua function in a worker state on libuv's
-- thread pool.  What is copied and how, that the loop goes on meanwhile,
-- that calls run in parallel, errors, reuse of worker states, cancellation,
-- and hostile input (each refused with a message naming the argument).
local helper = require "spec.helper"
local a = asyncio
local fails_with = helper.fails_with
local slow = helper.slow

local function identity(...) return ... end

-- Blocks the worker's thread (not the CPU) for s seconds.
local function block(s)
  os.execute("sleep " .. s)
  return s
end

describe("asyncio.to_thread", function()
  after_each(helper.no_leaks)

  describe("copies", function()
    it("nil, booleans, integers and floats (kept apart), in argument order", function()
      local r = table.pack(a.to_thread(identity, nil, true, false, 3, 3.0,
        math.maxinteger, math.mininteger, 1 / 0, -1 / 0, 0.1, nil))
      assert.are.equal(11, r.n)
      assert.is_nil(r[1])
      assert.are.equal(true, r[2])
      assert.are.equal(false, r[3])
      assert.are.equal("integer", math.type(r[4]))
      assert.are.equal("float", math.type(r[5]))
      assert.are.equal(math.maxinteger, r[6])
      assert.are.equal(math.mininteger, r[7])
      assert.are.equal(1 / 0, r[8])
      assert.are.equal(-1 / 0, r[9])
      assert.are.equal(0.1, r[10])
      local nan = a.to_thread(function() return 0 / 0 end)
      assert.is_true(nan ~= nan)
    end)

    it("the types as the worker sees them", function()
      local types = a.to_thread(function(...)
        local t = {}
        for i = 1, select("#", ...) do
          local v = select(i, ...)
          t[i] = type(v) == "number" and math.type(v) or type(v)
        end
        return table.concat(t, " ")
      end, 1, 1.5, "s", {}, true)
      assert.are.equal("integer float string table boolean", types)
    end)

    it("strings with NUL bytes, and every byte value", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      local back, len = a.to_thread(function(s) return s, #s end, all)
      assert.are.equal(all, back)
      assert.are.equal(256, len)
      assert.are.equal("a\0b\0", a.to_thread(function(s) return s .. "\0" end, "a\0b"))
    end)

    it("nested tables both ways, without their metatables", function()
      local arg = {1, 2, {3, {4, deep = {"x"}}}, k = "v", [1.5] = "f", [true] = false}
      setmetatable(arg, {__index = function() return "meta" end})
      local back = a.to_thread(function(t)
        assert(getmetatable(t) == nil)
        t.added = {n = #t}
        return t
      end, arg)
      assert.are.same({1, 2, {3, {4, deep = {"x"}}}, k = "v", [1.5] = "f",
                       [true] = false, added = {n = 3}}, back)
      assert.is_nil(getmetatable(back))
    end)

    it("a table reached twice (not a cycle) is copied twice", function()
      local shared = {1}
      local same = a.to_thread(function(t) return t.a == t.b, t.a[1] end, {a = shared, b = shared})
      assert.is_false(same)
    end)

    it("Lua functions whose only upvalue is _ENV, also inside tables", function()
      local r = a.to_thread(function(ops, x) return ops.double(ops.inc(x)) end,
        {double = function(v) return v * 2 end, inc = function(v) return v + 1 end}, 20)
      assert.are.equal(42, r)
      local f = a.to_thread(function() return function(y) return y .. "!" end end)
      assert.are.equal("hi!", f("hi"))
    end)
  end)

  it("keeps the loop running while the worker works", function()
    local ticks, running = 0, true
    local ticker = a.create_task(function()
      while running do a.sleep(0.01) ticks = ticks + 1 end
    end)
    local t0 = a.time()
    assert.are.equal(0.3, a.to_thread(block, 0.3))
    local took = a.time() - t0
    running = false
    ticker:await()
    assert.is_true(took >= 0.29, took)
    assert.is_true(ticks >= 10, "the loop turned only " .. ticks .. " times")
  end)

  it("runs calls in parallel on the thread pool", function()
    local t0 = a.time()
    local r = a.gather(function() return a.to_thread(block, 0.3) end,
                       function() return a.to_thread(block, 0.3) end)
    local took = a.time() - t0
    assert.are.same({0.3, 0.3}, r)
    assert.is_true(took < 0.55 * slow, "two 0.3 s calls took " .. took .. " s")
  end)

  it("many concurrent calls beyond the thread pool's size all complete", function()
    local jobs = {}
    for i = 1, 40 do
      jobs[i] = function() return a.to_thread(function(n) return n * n end, i) end
    end
    local r = a.gather(jobs)
    for i = 1, 40 do assert.are.equal(i * i, r[i]) end
  end)

  it("reuses worker states (a pool) rather than making one per call", function()
    local ids = {}
    for _ = 1, 10 do
      local id = a.to_thread(function()
        WORKER_ID = WORKER_ID or tostring({}) -- a global of the worker state
        return WORKER_ID
      end)
      ids[id] = true
    end
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.are.equal(1, n)
    assert.is_nil(rawget(_G, "WORKER_ID"))
  end)

  describe("inside the worker", function()
    it("the standard libraries and require work, with the caller's package.path", function()
      local dir = helper.tmpname("")
      os.execute("mkdir -p " .. helper.quote(dir))
      helper.write_file(dir .. "/tt_mod.lua", "return { twice = function(x) return 2 * x end }")
      local saved = package.path
      package.path = dir .. "/?.lua;" .. saved
      local ok, r, s = pcall(a.to_thread, function(x)
        return require("tt_mod").twice(x), string.format("%05.1f", math.pi)
      end, 21)
      package.path = saved
      os.execute("rm -rf " .. helper.quote(dir))
      assert.is_true(ok, r)
      assert.are.equal(42, r)
      assert.are.equal("003.1", s)
    end)

    it("a caller without package, whose globals raise on unknown names (strict mode), still runs", function()
      -- to_thread reads package.path while it holds its job: no metamethod
      -- of the caller's globals may run there
      local G = _G
      local saved, mt = G.package, getmetatable(G)
      G.package = nil
      setmetatable(G, {__index = function(_, k) error("undefined global " .. tostring(k), 2) end})
      local ok, r = pcall(a.to_thread, function(x) return x + 1 end, 41)
      setmetatable(G, mt)
      G.package = saved
      assert.is_true(ok, tostring(r))
      assert.are.equal(42, r)
    end)

    it("asyncio is not available, and says so", function()
      local g = a.to_thread(function() return type(asyncio) end)
      assert.are.equal("nil", g)
      fails_with("asyncio is not available inside to_thread", a.to_thread,
                 function() return require("asyncio") end)
    end)
  end)

  describe("errors raised in the worker", function()
    it("come back with the worker's message and traceback", function()
      local err = helper.error_of(a.to_thread, function(x)
        if x then error("worker failed: " .. x) end
      end, "why")
      assert.matches("to_thread_spec.lua:%d+: worker failed: why", err)
      assert.matches("stack traceback:", err)
    end)

    it("error objects that can be copied come back as copies", function()
      local err = helper.error_of(a.to_thread, function() error({code = 7, why = "x"}) end)
      assert.are.same({code = 7, why = "x"}, err)
    end)

    it("other error values are described", function()
      fails_with("^%(error object is a userdata value%)$", a.to_thread,
                 function() error(io.stdout) end)
    end)

    it("a result that cannot be copied is an error naming it", function()
      fails_with("to_thread: result #2 field 'f' is a userdata", a.to_thread,
                 function() return 1, {f = io.stdout} end)
    end)
  end)

  describe("cancellation", function()
    it("the awaiting task gets CancelledError at once; the thread finishes", function()
      local t = a.create_task(a.to_thread, block, 0.4)
      a.sleep(0.05)
      local t0 = a.time()
      t:cancel()
      helper.await_cancelled(t)
      assert.is_true(a.time() - t0 < 0.2 * slow)
      -- the pool goes on working (the cancelled call's thread frees itself)
      assert.are.equal(5, a.to_thread(function() return 5 end))
      a.sleep(0.45) -- the blocked thread is done: nothing left behind
    end)

    it("cancelled before it starts (queued behind busy threads): never runs", function()
      local path = helper.tmpname(".mark")
      -- twice as many blocked calls as the pool has threads: the call
      -- below waits in libuv's queue however the threads are scheduled
      local busy = {}
      local nthreads = tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4
      -- (longer when slow: the cancel below must come before they end)
      for i = 1, 2 * nthreads do busy[i] = a.create_task(a.to_thread, block, 0.2 * helper.slow) end
      a.sleep(0.02)
      local t = a.create_task(a.to_thread, function(p)
        local f = io.open(p, "w") f:write("ran") f:close()
      end, path)
      a.sleep(0.02)
      t:cancel()
      helper.await_cancelled(t)
      a.gather(busy)
      a.sleep(0.05)
      assert.is_nil(io.open(path), "the cancelled call ran")
    end)

    it("wait_for gives up on a slow call with TimeoutError", function()
      helper.raises(a.TimeoutError, a.wait_for,
                    function() return a.to_thread(block, 0.3) end, 0.05)
      a.sleep(0.3)
    end)
  end)

  it("a program that ends while work runs waits for the thread, then exits cleanly", function()
    local mark = helper.tmpname(".mark")
    local out, err, status = helper.run_script(([[
      asyncio.create_task(asyncio.to_thread, function(path)
        os.execute("sleep 0.3")
        local f = io.open(path, "w") f:write("finished") f:close()
      end, %q)
      asyncio.sleep(0.05)
      print("main done")
    ]]):format(mark))
    local f = io.open(mark)
    local text = f and f:read("a")
    if f then f:close() end
    os.remove(mark)
    assert.are.equal(0, status, err)
    assert.are.equal("main done\n", out)
    assert.are.equal("", err)
    assert.are.equal("finished", text) -- the thread ran to its end first
  end)

  it("under a stock lua5.4 (asyncio.so), a call running when the state closes", function()
    local out, err, status = helper.lua54([[
      local asyncio = require "asyncio"
      print(asyncio.run(function() return asyncio.to_thread(function(x) return x * 2 end, 21) end))
      asyncio.run(function()
        asyncio.create_task(asyncio.to_thread, function()
          local t = os.clock() + 0.2 repeat until os.clock() >= t
        end)
        asyncio.sleep(0.02)
      end)
      print("script done")
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("42\nscript done\n", out)
  end)

  describe("hostile input", function()
    it("wants a Lua function", function()
      fails_with("bad argument #1 to 'to_thread' %(function expected, got number%)",
                 function() return a.to_thread(5) end)
      fails_with("function expected, got no value", function() return a.to_thread() end)
      fails_with("to_thread: argument #1 is a C function", a.to_thread, print)
      fails_with("to_thread: argument #2 field 'f' is a C function", a.to_thread,
                 identity, {f = print})
    end)

    it("refuses functions with upvalues other than _ENV, naming one", function()
      local captured = 1
      fails_with("to_thread: argument #1 is a function with upvalue 'captured'",
                 a.to_thread, function() return captured end)
      fails_with("to_thread: argument #3 field 'x%[2%]' is a function with upvalue 'captured'",
                 a.to_thread, identity, 1, {x = {0, function() return captured end}})
    end)

    it("refuses userdata, threads and cycles, with the argument and path", function()
      fails_with("to_thread: argument #2 field 'x.y' is a userdata", a.to_thread,
                 identity, {x = {y = io.stdout}})
      fails_with("to_thread: argument #2 is a thread", a.to_thread,
                 identity, coroutine.create(print))
      fails_with("to_thread: argument #3 is a userdata", a.to_thread,
                 identity, 1, io.stderr)
      local t = {}
      t.me = t
      fails_with("to_thread: argument #2 field 'me' is a cycle", a.to_thread, identity, t)
      local u = {list = {1, 2}}
      u.list[3] = u
      fails_with("to_thread: argument #2 field 'list%[3%]' is a cycle", a.to_thread, identity, u)
      fails_with("to_thread: argument #2 field '%[\"a b\"%]' is a userdata", a.to_thread,
                 identity, {["a b"] = io.stdout})
      fails_with("to_thread: argument #2 has a key that is a userdata", a.to_thread,
                 identity, {[io.stdout] = 1})
    end)

    it("refuses nesting deeper than 200 levels", function()
      local deep = {}
      local cur = deep
      for _ = 1, 300 do cur.n = {} cur = cur.n end
      fails_with("to_thread: argument #2 field 'n%.n.*' is nested too deeply", a.to_thread,
                 identity, deep)
    end)

    it("caps the bytes copied (64 MiB by default), raisable", function()
      assert.are.equal(64 * 1024 * 1024, a.to_thread_limit())
      local old = a.to_thread_limit(4096)
      local _ <close> = helper.finally(function() a.to_thread_limit(old) end)
      fails_with("to_thread: argument #2 is too large to copy %(more than 4096 bytes in all; "
                 .. "asyncio.to_thread_limit%(bytes%) raises the cap%)",
                 a.to_thread, identity, string.rep("x", 5000))
      fails_with("to_thread: result #1 is too large", a.to_thread,
                 function() return string.rep("y", 5000) end)
      a.to_thread_limit(1e6)
      assert.are.equal(5000, #a.to_thread(identity, string.rep("x", 5000)))
      fails_with("positive number of bytes", a.to_thread_limit, 0)
      fails_with("number expected, got string", a.to_thread_limit, "x")
    end)

    it("a huge string within the default cap crosses intact", function()
      local big = string.rep("0123456789abcdef", 2 ^ 20) -- 16 MiB
      local len, last = a.to_thread(function(s) return #s, s:sub(-4) end, big)
      assert.are.equal(#big, len)
      assert.are.equal("cdef", last)
    end)

    it("outside a task it says to start one", function()
      local out, err, status = helper.run_script([[
        asyncio.call_soon(function()
          print(select(2, pcall(asyncio.to_thread, function() end)))
        end)
        asyncio.sleep(0.01)
      ]])
      assert.are.equal(0, status, err)
      assert.matches("to_thread%(%) called from a callback", out)
    end)
  end)
end)
