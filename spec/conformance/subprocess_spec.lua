-- CPython's Lib/test/test_asyncio/test_subprocess.py (3.13), restated for
-- lasync: the Process API and its cancellation.  Each `it` names the
-- CPython test it comes from.  Children are python3 (as CPython's tests
-- use sys.executable) or sh.
local helper = require "spec.helper"

local PY = "python3"
-- a program blocking, and one copying its input to its output
local BLOCKED = {"-c", "import time; time.sleep(3600)"}
local CAT = {"-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"}
local LEN = {"-c", "import sys; data = sys.stdin.read(); print(len(data))"}
local PIPE_MAX_SIZE = 4 * 1024 * 1024 + 1 -- CPython's support.PIPE_MAX_SIZE

local raises = helper.raises

-- Runs LEN with stdin, stdout and stderr as stdio names them ("pipe" where
-- it does not), communicates input and asserts that it exits 0; returns
-- what it printed (trimmed; nil when stdout is not a pipe) and stderr.
local function run_len(stdio, input)
  local p = asyncio.create_subprocess_exec(PY, LEN, {stdin = stdio.stdin or "pipe",
    stdout = stdio.stdout or "pipe", stderr = stdio.stderr or "pipe"})
  local out, err = p:communicate(input)
  assert.are.equal(0, p:wait())
  return out and out:match("^%s*(.-)%s*$"), err
end

describe("test_subprocess (SubprocessTransportTests)", function()
  after_each(helper.no_leaks)

  it("test_proc_exited: the exit status, then signals raise ProcessLookupError", function()
    local p = asyncio.create_subprocess_exec("sh", {"-c", "exit 6"})
    assert.are.equal(6, p:wait())
    assert.are.equal(6, p.returncode)
    raises(asyncio.ProcessLookupError, p.send_signal, p, "SIGTERM")
    raises(asyncio.ProcessLookupError, p.terminate, p)
    raises(asyncio.ProcessLookupError, p.kill, p)
  end)

  it("test_subprocess_repr: running, then the returncode", function()
    local p = asyncio.create_subprocess_exec("sh", {"-c", "read x; exit 6"}, {stdin = "pipe"})
    assert.are.equal(("<Process %d running>"):format(p.pid), tostring(p))
    p.stdin:close()
    p:wait()
    assert.are.equal(("<Process %d returncode=6>"):format(p.pid), tostring(p))
  end)
end)

describe("test_subprocess (SubprocessMixin)", function()
  after_each(helper.no_leaks)

  it("test_stdin_stdout: write, drain, close stdin; read stdout; wait", function()
    local res = asyncio.wait_for(function()
      local p = asyncio.create_subprocess_exec(PY, CAT, {stdin = "pipe", stdout = "pipe"})
      p.stdin:write("some data")
      p.stdin:drain()
      p.stdin:close()
      local data = p.stdout:read()
      return {p:wait(), data}
    end, 60)
    assert.are.same({0, "some data"}, res)
  end)

  it("test_communicate: input in, stdout out", function()
    local p = asyncio.create_subprocess_exec(PY, CAT, {stdin = "pipe", stdout = "pipe"})
    local out, err = p:communicate("some data")
    assert.are.equal("some data", out)
    assert.is_nil(err)
    assert.are.equal(0, p.returncode)
  end)

  it("test_shell: create_subprocess_shell('exit 7')", function()
    local p = asyncio.create_subprocess_shell("exit 7")
    assert.are.equal(7, p:wait())
  end)

  it("test_kill: returncode is -SIGKILL", function()
    local p = asyncio.create_subprocess_exec(PY, BLOCKED)
    p:kill()
    assert.are.equal(-9, p:wait())
  end)

  it("test_terminate: returncode is -SIGTERM", function()
    local p = asyncio.create_subprocess_exec(PY, BLOCKED)
    p:terminate()
    assert.are.equal(-15, p:wait())
  end)

  it("test_send_signal: the child gets the default SIGHUP", function()
    local p = asyncio.create_subprocess_exec(PY,
      {"-c", "import time; print('sleeping', flush=True); time.sleep(3600)"},
      {stdout = "pipe"})
    assert.are.equal("sleeping\n", p.stdout:readline())
    p:send_signal("SIGHUP")
    assert.are.equal(-1, p:wait())
  end)

  it("test_stdin_broken_pipe: drain() raises BrokenPipeError or ConnectionResetError", function()
    local p = asyncio.create_subprocess_exec(PY, {"-c", "pass"}, {stdin = "pipe"})
    p:wait() -- the reading end is gone (a fixed sleep could end first under load)
    local ok, err = pcall(function()
      p.stdin:write(string.rep("x", PIPE_MAX_SIZE))
      p.stdin:drain()
    end)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.BrokenPipeError)
      or asyncio.is(err, asyncio.ConnectionResetError), tostring(err))
    p:wait()
  end)

  it("test_communicate_ignore_broken_pipe: communicate() ignores BrokenPipeError", function()
    local p = asyncio.create_subprocess_exec(PY, {"-c", "pass"}, {stdin = "pipe"})
    p:communicate(string.rep("x", PIPE_MAX_SIZE))
    assert.are.equal(0, p:wait())
  end)

  it("test_pause_reading: output over twice the limit is read whole", function()
    local limit = 10
    local size = limit * 2 + 1
    local p = asyncio.create_subprocess_exec(PY,
      {"-c", ("import sys; sys.stdout.write('x' * %d); sys.stdout.flush()"):format(size)},
      {stdin = "pipe", stdout = "pipe", limit = limit})
    local out = p:communicate()
    assert.are.equal(string.rep("x", size), out)
  end)

  it("test_stdin_not_inheritable: communicate() does not hang on stdin", function()
    assert.are.equal("3", (run_len({}, "abc")))
  end)

  it("test_empty_input: communicate('') closes stdin", function()
    assert.are.equal("0", (run_len({}, "")))
  end)

  it("test_devnull_input: stdin from devnull", function()
    assert.are.equal("0", (run_len({stdin = "devnull"})))
  end)

  it("test_devnull_output: stdout to devnull gives nil", function()
    assert.is_nil((run_len({stdout = "devnull"}, "abc")))
  end)

  it("test_devnull_error: stderr to devnull gives nil", function()
    local out, err = run_len({stderr = "devnull"}, "abc")
    assert.are.equal("3", out)
    assert.is_nil(err)
  end)

  it("test_cancel_process_wait: a cancelled wait() leaves the process waitable", function()
    local p = asyncio.create_subprocess_exec(PY, BLOCKED)
    local t = asyncio.create_task(function() return p:wait() end)
    asyncio.call_soon(function() t:cancel() end)
    raises(asyncio.CancelledError, t.await, t)
    t:cancel() -- cancelling it again is harmless
    assert.is_true(t:cancelled())
    assert.is_nil(p.returncode)
    p:kill()
    assert.are.equal(-9, p:wait())
  end)

  it("test_cancel_make_subprocess_transport_exec: cancelling the task that owns a child ends it", function()
    local child
    local t = asyncio.create_task(function()
      local p <close> = asyncio.create_subprocess_exec(PY, BLOCKED)
      child = p
      asyncio.sleep(3600)
    end)
    asyncio.call_soon(function() t:cancel() end)
    raises(asyncio.CancelledError, t.await, t)
    assert.are.equal(-9, child.returncode)
  end)

  it("test_close_kill_running: closing a running child kills it", function()
    local p = asyncio.create_subprocess_exec(PY, BLOCKED)
    local before = p.returncode
    getmetatable(p).__close(p)
    assert.is_nil(before)
    assert.are.equal(-9, p.returncode)
  end)

  it("test_close_dont_kill_finished: closing a finished child keeps its status", function()
    local p = asyncio.create_subprocess_exec("sh", {"-c", "exit 0"})
    p:wait()
    getmetatable(p).__close(p)
    assert.are.equal(0, p.returncode)
  end)

  it("test_popen_error: a failed spawn raises and leaves nothing behind", function()
    raises(asyncio.FileNotFoundError, asyncio.create_subprocess_exec,
      "/nonexistent/program", {"-c", "pass"})
  end)

  it("test_popen_error_with_stdin_pipe: the same with a stdin pipe", function()
    raises(asyncio.FileNotFoundError, asyncio.create_subprocess_exec,
      "/nonexistent/program", {"-c", "pass"}, {stdin = "pipe"})
  end)

  it("test_read_stdout_after_process_exit: reading on after the child exited", function()
    local p = asyncio.create_subprocess_exec(PY, {"-c", [[
import sys
for _ in range(64):
    sys.stdout.write("x" * 4096)
sys.stdout.flush()
sys.exit(1)]]}, {stdout = "pipe"})
    local total = 0
    while true do
      local data = p.stdout:read(65536)
      if data == "" then break end
      total = total + #data
      asyncio.sleep(0.05)
    end
    assert.are.equal(64 * 4096, total)
    assert.are.equal(1, p:wait())
  end)

  it("test_create_subprocess_exec_text_mode_fails: text/encoding/errors are refused", function()
    for _, key in ipairs{"text", "encoding", "errors"} do
      helper.fails_with("unknown option '" .. key .. "'", asyncio.create_subprocess_exec, PY, {}, {[key] = true})
    end
  end)

  it("test_create_subprocess_shell_text_mode_fails: the same for the shell", function()
    for _, key in ipairs{"text", "encoding", "errors"} do
      helper.fails_with("unknown option '" .. key .. "'", asyncio.create_subprocess_shell, "true", {[key] = true})
    end
  end)
end)
