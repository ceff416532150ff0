-- Subprocesses over uv_spawn.
local helper = require "spec.helper"

describe("subprocesses", function()
  after_each(helper.no_leaks)

  it("reads a child's stdout and its exit status", function()
    local p = asyncio.create_subprocess_exec("printf", {"a\\nb\\n"}, {stdout = "pipe"})
    assert.is_true(p.pid > 0)
    assert.is_nil(p.returncode)
    assert.are.equal("a\n", p.stdout:readline())
    assert.are.equal("b\n", p.stdout:read())
    assert.are.equal(0, p:wait())
    assert.are.equal(0, p.returncode)
  end)

  it("communicates: input in, stdout and stderr out", function()
    local p = asyncio.create_subprocess_exec("python3", {"-c", [[
import sys
data = sys.stdin.read()
sys.stdout.write(data.upper())
sys.stderr.write("len=%d" % len(data))
sys.exit(3)
]]}, {stdin = "pipe", stdout = "pipe", stderr = "pipe"})
    local big = string.rep("abc", 200000) -- more than a pipe holds
    local out, err = p:communicate(big)
    assert.are.equal(big:upper(), out)
    assert.are.equal("len=600000", err)
    assert.are.equal(3, p.returncode)
  end)

  it("merges stderr into stdout and reads from devnull", function()
    local p = asyncio.create_subprocess_shell("cat; echo out; echo err >&2",
      {stdin = "devnull", stdout = "pipe", stderr = "stdout"})
    local out = p:communicate()
    assert.are.equal("out\nerr\n", out)
    assert.are.equal(0, p.returncode)
  end)

  it("runs with cwd and env", function()
    local p = asyncio.create_subprocess_exec("/bin/sh", {"-c", "pwd; echo $FOO"},
      {stdout = "pipe", cwd = "/tmp", env = {FOO = "bar", PATH = "/usr/bin:/bin"}})
    assert.are.equal("/tmp\nbar\n", p:communicate())
  end)

  it("reports death by a signal as a negative returncode", function()
    local p = asyncio.create_subprocess_exec("sleep", {"10"})
    p:kill()
    assert.are.equal(-9, p:wait())
    p = asyncio.create_subprocess_exec("sleep", {"10"})
    p:terminate()
    assert.are.equal(-15, p:wait())
    -- the shell says when its trap is set: a SIGUSR1 before that would
    -- kill it (-10), which a loaded machine made possible after a fixed sleep
    p = asyncio.create_subprocess_shell("trap 'exit 7' USR1; echo trapped; while :; do sleep 0.02; done",
      {stdout = "pipe"})
    assert.are.equal("trapped\n", p.stdout:readline())
    p:send_signal("SIGUSR1")
    assert.are.equal(7, p:wait())
    -- after the exit, as asyncio: ProcessLookupError
    local ok, err = pcall(p.kill, p)
    assert.is_true(asyncio.is(err, asyncio.ProcessLookupError), tostring(err))
    assert.is_true(asyncio.is(err, asyncio.OSError))
  end)

  it("a missing program raises an error naming it and ENOENT", function()
    local ok, err = pcall(asyncio.create_subprocess_exec, "no-such-program-xyz", {})
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.FileNotFoundError))
    assert.is_true(asyncio.is(err, asyncio.OSError))
    assert.are.equal("ENOENT", err.code)
    assert.matches("no%-such%-program%-xyz", tostring(err))
  end)

  it("a cancelled wait leaves the process waitable", function()
    -- the child runs until we close its stdin: a child that ends by itself
    -- could end before the cancel on a loaded machine
    local p = asyncio.create_subprocess_exec("sh", {"-c", "read x; exit 0"}, {stdin = "pipe"})
    local t = asyncio.create_task(function() return p:wait() end)
    asyncio.sleep(0.05)
    t:cancel()
    local ok, err = pcall(t.await, t)
    assert.is_true(asyncio.is(err, asyncio.CancelledError))
    assert.is_nil(p.returncode)
    p.stdin:close()
    assert.are.equal(0, p:wait())
  end)

  it("checks its arguments", function()
    local ok, err = pcall(asyncio.create_subprocess_exec, {}, {})
    assert.matches("bad argument #1", err)
    ok, err = pcall(asyncio.create_subprocess_exec, "true", "x")
    assert.matches("bad argument #2", err)
    ok, err = pcall(asyncio.create_subprocess_exec, "true", {}, {stdout = "file"})
    assert.matches("bad option 'stdout'", err)
    ok, err = pcall(asyncio.create_subprocess_exec, "true", {}, {stdin = "stdout"})
    assert.matches("bad option 'stdin'", err)
    ok, err = pcall(asyncio.create_subprocess_exec, "true", {{}})
    assert.matches("string expected", err)
    local p = asyncio.create_subprocess_exec("true", {})
    ok, err = pcall(p.send_signal, p, "SIGNOPE")
    assert.matches("unknown signal name 'SIGNOPE'", err)
    p:wait()
  end)
end)

describe("processes and signal handlers at the end of the program (issue 10)", function()
  it("a Process used from a finalizer after its own __gc raises InvalidStateError", function()
    local out, err, status = helper.run_script([[
      local holder = setmetatable({}, {__gc = function(o)
        for _, m in ipairs{"kill", "terminate", "wait"} do
          local ok, e = pcall(o.p[m], o.p)
          print(m, ok, asyncio.is(e, asyncio.InvalidStateError))
        end
        print("pid", o.p.pid)
      end})
      holder.p = asyncio.create_subprocess_exec("true")
      holder.p:wait()
      holder = nil
    ]])
    assert.are.equal(0, status, err)
    assert.matches("kill\tfalse\ttrue\nterminate\tfalse\ttrue\nwait\tfalse\ttrue\npid\tnil", out)
  end)

  it("after the host stopped (stock lua5.4): errors, not a crash", function()
    local out, err, status = helper.lua54([[
      local holder = setmetatable({}, {__gc = function(o)
        local ok, e = pcall(o.p.kill, o.p)
        print("kill", ok, asyncio.is(e, asyncio.InvalidStateError))
        ok, e = pcall(asyncio.add_signal_handler, "SIGUSR1", print)
        print("add", ok, asyncio.is(e, asyncio.InvalidStateError), e)
        ok, e = pcall(asyncio.create_subprocess_exec, "true")
        print("exec", ok, asyncio.is(e, asyncio.InvalidStateError))
      end})
      asyncio = require "asyncio"
      asyncio.run(function()
        asyncio.add_signal_handler("SIGUSR1", print)
        holder.p = asyncio.create_subprocess_exec("sleep", {"5"})
      end)
    ]])
    assert.are.equal(0, status, err)
    assert.matches("kill\tfalse\ttrue", out)
    assert.matches("add\tfalse\ttrue\t.*event loop is closed", out)
    assert.matches("exec\tfalse\ttrue", out)
  end)

  it("re-adding a handler whose record was finalized watches anew", function()
    local out, err, status = helper.run_script([[
      local holder = setmetatable({}, {__gc = function()
        local ok, e = pcall(asyncio.add_signal_handler, "SIGUSR1", print)
        print("add", ok, asyncio.is(e, asyncio.InvalidStateError))
        print("remove", pcall(asyncio.remove_signal_handler, "SIGUSR1"))
      end})
      asyncio.add_signal_handler("SIGUSR1", print)
    ]])
    assert.are.equal(0, status, err)
    assert.matches("add\tfalse\ttrue\nremove\ttrue\ttrue", out)
  end)
end)

describe("to-be-closed processes and readers (issue 10)", function()
  after_each(helper.no_leaks)

  it("a <close> Process kills a child still running and reaps it", function()
    local p
    do
      local child <close> = asyncio.create_subprocess_exec("sleep", {"30"},
        {stdin = "pipe", stdout = "pipe"})
      p = child
    end
    assert.are.equal(-9, p.returncode)
    assert.is_true(p.stdin:is_closing())
    assert.are.equal("", p.stdout:read())
  end)

  it("a <close> Process that already exited keeps its status", function()
    local p
    do
      local child <close> = asyncio.create_subprocess_exec("sh", {"-c", "exit 3"})
      child:wait()
      p = child
    end
    assert.are.equal(3, p.returncode)
  end)

  it("a <close> StreamReader closes its stream", function()
    local p = asyncio.create_subprocess_exec("sh", {"-c", "echo hi; sleep 0.2; echo late"},
      {stdout = "pipe"})
    local first
    do
      local out <close> = p.stdout
      first = out:readline()
    end
    assert.are.equal("hi\n", first)
    assert.are.equal("", p.stdout:read())
    assert.is_true(p.stdout:at_eof())
    p:wait()
  end)
end)
