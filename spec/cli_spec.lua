local helper = require "spec.helper"
local q = helper.quote
local lasync = helper.cmd

local interrupt = helper.interrupt

describe("the lasync binary", function()
  after_each(helper.no_leaks)

  it("runs the main chunk as a task: top-level sleep works", function()
    local out, err, status = helper.run_script([[
      local t0 = asyncio.time()
      asyncio.sleep(0.05)
      print(asyncio.current_task() ~= nil, asyncio.time() - t0 >= 0.05)
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("true\ttrue\n", out)
  end)

  it("passes arguments in arg and ... like lua.c", function()
    local out, err, status, path = helper.run_script([[
      print(select("#", ...), ...)
      print(arg[0] ~= nil, arg[1], arg[2], arg[-1] ~= nil, #arg)
    ]], "one 'two words'")
    assert.are.equal(0, status, err)
    assert.are.equal("2\tone\ttwo words\ntrue\tone\ttwo words\ttrue\t2\n", out)
    assert.is_string(path)
  end)

  it("runs -e chunks in order, and they may suspend", function()
    local out, _, status = helper.sh(lasync .. [[ -e 'x = 1' -e 'asyncio.sleep(0.01) print(x + 1)']])
    assert.are.equal(0, status)
    assert.are.equal("2\n", out)
  end)

  it("loads modules with -l into a global", function()
    local dir = helper.tmpname("")
    os.execute("mkdir -p " .. q(dir))
    helper.write_file(dir .. "/mymod.lua", "return {answer = 42}")
    local out, err, status = helper.sh("cd " .. q(dir) .. " && " .. lasync
      .. [[ -l mymod -l m2=mymod -e 'print(mymod.answer, m2.answer)']])
    os.execute("rm -rf " .. q(dir))
    assert.are.equal(0, status, err)
    assert.are.equal("42\t42\n", out)
  end)

  it("reads the script from stdin with - or without arguments", function()
    local out, _, status = helper.sh("echo 'print(\"from stdin\", ...)' | " .. lasync .. " - a")
    assert.are.equal(0, status)
    assert.are.equal("from stdin\ta\n", out)
    out, _, status = helper.sh("echo 'asyncio.sleep(0) print(\"piped\")' | " .. lasync)
    assert.are.equal(0, status)
    assert.are.equal("piped\n", out)
  end)

  it("prints its version with -v and usage with --help", function()
    local out, _, status = helper.sh(lasync .. " -v")
    assert.are.equal(0, status)
    assert.matches("^lasync %d+%.%d+%.%d+ .*Lua 5%.4", out)
    local _, err
    _, err, status = helper.sh(lasync .. " --help")
    assert.are.equal(1, status) -- as lua.c 5.4: --help is an unknown option
    assert.matches("usage: .* %[options%] %[script %[args%]%]", err)
    _, err, status = helper.sh(lasync .. " -z")
    assert.are.equal(1, status)
    assert.matches("unrecognized option '%-z'", err)
    _, err, status = helper.sh(lasync .. " -e")
    assert.are.equal(1, status)
    assert.matches("'%-e' needs argument", err)
  end)

  it("exits 1 with the message and a traceback with file:line on an error", function()
    local _, err, status, path = helper.run_script([[
      local function inner() error("kaboom") end
      asyncio.sleep(0)
      inner()
    ]])
    assert.are.equal(1, status)
    local name = path:gsub("%p", "%%%0")
    assert.matches(name .. ":1: kaboom", err)
    assert.matches("stack traceback:", err)
    assert.matches(name .. ":3: in main chunk", err)
  end)

  it("reports an error object through its __tostring", function()
    local _, err, status = helper.run_script([[
      error(setmetatable({}, {__tostring = function() return "custom object" end}))
    ]])
    assert.are.equal(1, status)
    assert.matches("custom object", err)
  end)

  it("reports syntax errors and missing scripts like lua.c, with status 1", function()
    local _, err, status = helper.run_script("x = = 1")
    assert.are.equal(1, status)
    assert.matches(":1: unexpected symbol near '='", err)
    assert.is_nil(err:match("traceback"))
    _, err, status = helper.sh(lasync .. " /nonexistent/script.lua")
    assert.are.equal(1, status)
    assert.matches("cannot open /nonexistent/script.lua", err)
  end)

  it("lives on while other tasks run after the main chunk ends", function()
    -- the task starts its sleep before the callback is scheduled, so its
    -- deadline comes first however late a loaded machine runs it (a
    -- margin of 30 ms was not enough under valgrind)
    local out, _, status = helper.run_script([[
      asyncio.create_task(function() asyncio.sleep(0.05) print("late task") end)
      asyncio.sleep(0)
      asyncio.call_later(0.08, print, "late callback")
      print("main done")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("main done\nlate task\nlate callback\n", out)
  end)

  it("exits as soon as nothing is left: a cancelled long sleep holds nothing", function()
    local t0 = asyncio.time()
    local out, _, status = helper.run_script([[
      local t = asyncio.create_task(function() asyncio.sleep(30) end)
      local h = asyncio.call_later(30, print, "never")
      asyncio.sleep(0.01)
      t:cancel()
      h:cancel()
      print("cancelled")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("cancelled\n", out)
    assert.is_true(asyncio.time() - t0 < 2 * helper.slow)
  end)

  it("reports a failed task nobody awaited, at the latest at exit", function()
    local out, err, status = helper.run_script([[
      asyncio.create_task(function() error("lost failure") end)
      asyncio.sleep(0.01)
      print("main ok")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("main ok\n", out)
    assert.matches("Task exception was never retrieved", err)
    assert.matches(":1: lost failure", err)
    assert.matches("stack traceback", err)
  end)

  it("does not report failures that were retrieved", function()
    local _, err, status = helper.run_script([[
      local t = asyncio.create_task(function() error("seen") end)
      pcall(t.await, t)
      local u = asyncio.create_task(function() error("seen too") end)
      asyncio.sleep(0)
      u:exception()
    ]])
    assert.are.equal(0, status)
    assert.are.equal("", err)
  end)

  it("exits 1 with a clear message when the main task can never finish", function()
    local _, err, status = helper.run_script([[
      local main = asyncio.current_task()
      local other = asyncio.create_task(function() main:await() end)
      other:await()
    ]])
    assert.are.equal(1, status)
    assert.matches("waits for something that can never happen", err)
  end)

  it("exits 130 on SIGINT after cancelling the main task so <close> runs", function()
    local out, status = interrupt([[
      local guard <close> = setmetatable({}, {__close = function(_, e)
        print("cleanup", asyncio.is(e, asyncio.CancelledError))
        io.stdout:flush()
      end})
      print("ready") io.stdout:flush()
      asyncio.sleep(30)
      print("not reached")
    ]])
    assert.are.equal(130, status)
    assert.matches("cleanup\ttrue", out)
    assert.is_nil(out:match("not reached"))
  end)

  it("cancels the other tasks too after SIGINT", function()
    local out, status = interrupt([[
      asyncio.create_task(function()
        local ok, e = pcall(asyncio.sleep, 30)
        print("worker", asyncio.is(e, asyncio.CancelledError)) io.stdout:flush()
      end)
      print("ready") io.stdout:flush()
      asyncio.sleep(30)
    ]])
    assert.are.equal(130, status)
    assert.matches("worker\ttrue", out)
  end)

  it("dies at once on a second SIGINT", function()
    local t0 = os.time()
    local out, status = interrupt([[
      local guard <close> = setmetatable({}, {__close = function()
        print("slow cleanup") io.stdout:flush()
        asyncio.sleep(30)
      end})
      print("ready") io.stdout:flush()
      asyncio.sleep(30)
    ]], "slow cleanup")
    assert.are.equal(130, status)
    assert.matches("slow cleanup", out)
    assert.is_true(os.time() - t0 < 10 * helper.slow)
  end)

  -- Ctrl-C in Lua code that runs: lua.c's hook gives "interrupted!" at the
  -- next instruction (exit status 1, the message and a traceback).
  local function same_as_lua54(script, second, opts)
    local out, status = interrupt(script, second, opts)
    opts = opts or {}
    opts.prog = "lua5.4"
    local out54, status54 = interrupt(script, second, opts)
    out = out:gsub(helper.quote(helper.lasync):sub(2, -2):gsub("%p", "%%%0"), "lua")
    out54 = out54:gsub("lua5%.4", "lua")
    out, out54 = out:gsub("[^%s:]+%.lua", "script.lua"), out54:gsub("[^%s:]+%.lua", "script.lua")
    assert.are.same({out54, status54}, {out, status})
    return out, status
  end

  it("interrupts busy Lua code at once on Ctrl-C, as lua.c", function()
    local out, status = same_as_lua54([[
      print("ready") io.stdout:flush()
      while true do end
    ]])
    assert.are.equal(1, status)
    assert.matches("lua: interrupted!\nstack traceback:", out)
  end)

  it("interrupts a blocked io.read on Ctrl-C, as lua.c", function()
    local out, status = same_as_lua54([[
      print("ready") io.stdout:flush()
      print(io.read())
    ]], nil, {fifo = true})
    assert.are.equal(1, status)
    assert.matches("interrupted!", out)
    assert.matches("in function 'io.read'", out)
  end)

  it("kills at once on a second Ctrl-C after the first was caught, as lua.c", function()
    local out, status = same_as_lua54([[
      print("ready") io.stdout:flush()
      local ok, err = pcall(function() while true do end end)
      print("caught", err) io.stdout:flush()
      while true do end
    ]], "caught")
    assert.are.equal(130, status) -- killed by SIGINT
    assert.matches("caught\t.*interrupted!", out)
  end)

  it("does not lose a Ctrl-C that lands in a busy task other than the main one", function()
    local out, status = interrupt([[
      local t = asyncio.create_task(function()
        print("ready") io.stdout:flush()
        while true do end
      end)
      local guard <close> = setmetatable({}, {__close = function() print("main cleanup") end})
      t:await()
    ]])
    assert.are.equal(130, status)
    assert.matches("main cleanup", out)
    assert.matches("interrupted", out)
  end)

  it("interrupts a busy plain coroutine inside the main task (lua.c would not)", function()
    local out, status = interrupt([[
      print("ready") io.stdout:flush()
      local co = coroutine.create(function() while true do end end)
      local ok, err = coroutine.resume(co)
      print("resume", ok, err) io.stdout:flush()
      coroutine.wrap(function() while true do end end)()
    ]], "resume")
    assert.are.equal(130, status) -- the second Ctrl-C, in the wrap, kills
    assert.matches("resume\tfalse\t[^\n]*interrupted!", out)
  end)

  it("uses no CPU while it sleeps (no polling)", function()
    if helper.wrapper ~= "" then return end -- valgrind's own start-up costs CPU
    local out = helper.sh("bash -c " .. q("TIMEFORMAT='%U %S'; time " .. lasync .. " -e 'asyncio.sleep(1)'") .. " 2>&1")
    local user, sys = out:match("([%d.]+) ([%d.]+)")
    assert.is_not_nil(user, out)
    assert.is_true(tonumber(user) + tonumber(sys) < 0.1 * helper.slow,
      "CPU seconds during a 1 s sleep: " .. out)
  end)
end)
