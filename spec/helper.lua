-- Shared by the specs: timing slack for slow runs (sanitizers, valgrind),
-- running the lasync binary as a subprocess, and a leak check.
local helper = {}
local assert = require "luassert"

-- Upper time bounds are multiplied by this under ASan (3) and valgrind (10).
helper.slow = tonumber(os.getenv("LASYNC_SLOW")) or 1

-- Waits (in the running task) until pred() returns a true value and
-- returns that value; fails, naming `what`, after `sec` seconds (scaled by
-- helper.slow).  For a condition another process, thread or task brings
-- about: a fixed sleep is too short on a loaded machine.
function helper.wait_until(pred, sec, what)
  local deadline = asyncio.time() + sec * helper.slow
  while true do
    local v = pred()
    if v then return v end
    if asyncio.time() > deadline then error("timed out waiting for " .. what, 2) end
    asyncio.sleep(0.01)
  end
end

-- A loopback port nobody listens on, kept that way: a process binds it
-- without listening (a connect is refused) and holds it, so no other
-- process can take it meanwhile, until release() is called.  (A port
-- freed again after bind(0) may be taken by anyone before it is used.)
-- Returns the port and release.
function helper.refusing_port()
  local holder = asyncio.create_subprocess_exec("python3", {"-c", [[
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
sys.stdin.read()]]}, {stdin = "pipe", stdout = "pipe"})
  local port = tonumber(holder.stdout:readline())
  return port, function()
    holder.stdin:close()
    holder:wait()
  end
end

-- A clock of the time this process's main thread has spent blocked
-- (asleep in a poll, a timer, a lock), in seconds: the wall clock less
-- what /proc/self/schedstat counts on a CPU and waiting for one.  The
-- difference of two readings is the time a program waited on its own,
-- which a loaded machine does not stretch (it stretches the wait for a
-- CPU instead): bound that, not the wall time, where the code's own
-- waiting is the point.
function helper.blocked_clock()
  local f = assert(io.open("/proc/self/schedstat"))
  local run, queued = f:read("n", "n")
  f:close()
  return asyncio.time() - (run + queued) / 1e9
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return (os.getenv("PWD") or ".") .. "/" .. path
end
helper.lasync = absolute(os.getenv("LASYNC") or "build/lasync")
helper.module_dir = absolute(os.getenv("LASYNC_MODULE_DIR") or "build")

-- make valgrind sets this so the binaries the specs start run under it too
helper.wrapper = os.getenv("LASYNC_WRAPPER") or ""

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helper.quote = shell_quote
-- The shell words that start the binary (under the wrapper, if any).
helper.cmd = (helper.wrapper ~= "" and helper.wrapper .. " " or "") .. shell_quote(helper.lasync)

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end
helper.write_file = write_file

-- A whole file's bytes.
function helper.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- A small deterministic random generator (an LCG) for the fuzz specs, so
-- that a seed gives the same program whatever math.random does:
-- r.float() in [0, 1), r.int(lo, hi).
function helper.lcg(seed)
  local state = seed * 2654435761 % 4294967296
  local function next_int()
    state = (state * 1103515245 + 12345) % 2147483648
    return state
  end
  return {
    float = function() return next_int() / 2147483648 end,
    int = function(lo, hi) return lo + next_int() % (hi - lo + 1) end,
  }
end

function helper.tmpname(suffix)
  local p = os.tmpname()
  os.remove(p)
  return p .. (suffix or "")
end

-- Runs a shell command; returns stdout, stderr and the exit status.
-- Blocking on purpose: the specs of the binary drive it from outside.
function helper.sh(cmd)
  local err = helper.tmpname(".err")
  local p = io.popen("(" .. cmd .. ") 2>" .. err .. "; echo \"__status=$?\"")
  local out = p:read("a")
  p:close()
  local f = io.open(err)
  local errtext = f and f:read("a") or ""
  if f then f:close() end
  os.remove(err)
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  out = out:gsub("__status=%d+%s*$", "")
  return out, errtext, status
end

-- Runs a Lua script text with the lasync binary.
function helper.run_script(text, args, prefix)
  local path = helper.tmpname(".lua")
  write_file(path, text)
  local out, err, status = helper.sh((prefix or "") .. helper.cmd
    .. " " .. shell_quote(path) .. " " .. (args or ""))
  os.remove(path)
  return out, err, status, path
end

-- For after_each: fails when a test leaves a task behind (every task but
-- busted's own main task), naming each with where it was made and where
-- it waits; asyncio.testing's public check.
function helper.no_leaks()
  require("asyncio.testing").check_leaks()
end

-- The shell words that start a stock lua5.4 able to load asyncio.so
-- (with the sanitizer runtime preloaded, and under the valgrind wrapper,
-- when the specs run that way); asyncio.so itself is found by package.cpath.
function helper.lua54_cmd()
  local preload = os.getenv("LASYNC_PRELOAD") or ""
  local env = preload ~= "" and ("LD_PRELOAD=" .. shell_quote(preload) .. " ASAN_OPTIONS=detect_leaks=0 ") or ""
  local wrap = helper.wrapper ~= "" and (helper.wrapper .. " ") or ""
  return env .. wrap .. "lua5.4"
end

-- Runs Lua code in a stock lua5.4 that finds asyncio.so in the build (with
-- the sanitizer runtime preloaded, and under the valgrind wrapper, when the
-- specs run that way).  Returns stdout, stderr and the exit status.
function helper.lua54(code)
  local prefix = ("package.cpath = %q .. '/?.so;' .. package.cpath\n"):format(helper.module_dir)
  local path = helper.tmpname(".lua")
  write_file(path, prefix .. code)
  local out, err, status = helper.sh(helper.lua54_cmd() .. " " .. shell_quote(path))
  os.remove(path)
  return out, err, status
end

-- Calls fn(...) and asserts that it raises; returns the error.
function helper.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- Calls fn() and asserts it raises "bad argument ..." (or a message that
-- starts with the pattern `lead`: "serve%(%): unknown option") at a line of
-- the spec file whose name matches `file` (a pattern: "redis_spec%.lua"),
-- not at a line of a compiled-in Lua part (asyncio/...); returns that line.
function helper.arg_error_line(fn, file, lead)
  local err = tostring(helper.error_of(fn))
  assert.is_nil(err:find("asyncio/", 1, true), err)
  local line = err:match("^[^:]*" .. file .. ":(%d+): " .. (lead or "bad argument"))
  assert.is_not_nil(line, err)
  return tonumber(line)
end

-- Calls fn(...) and asserts it raises an error of class cls (an asyncio
-- error class, checked with asyncio.is); returns the error.
function helper.raises(cls, fn, ...)
  local err = helper.error_of(fn, ...)
  assert.is_true(asyncio.is(err, cls), "wrong error: " .. tostring(err))
  return err
end

-- Calls fn(...) and asserts it raises an error whose text matches the Lua
-- pattern; returns the error.
function helper.fails_with(pattern, fn, ...)
  local err = helper.error_of(fn, ...)
  assert.matches(pattern, tostring(err))
  return err
end

-- Awaits task t and asserts that it fails; returns its error.
function helper.await_error(t)
  local ok, err = pcall(t.await, t)
  assert.is_false(ok, "expected the task to fail")
  return err
end

-- Awaits task t and asserts that it raises CancelledError; returns it.
function helper.await_cancelled(t)
  local err = helper.await_error(t)
  if not asyncio.is(err, asyncio.CancelledError) then
    error("not a CancelledError: " .. tostring(err), 2)  -- luassert has no assert.fail
  end
  return err
end

-- A value to hold in a `local _ <close>`: runs fn when the scope ends
-- (Python's try/finally).
function helper.finally(fn)
  return setmetatable({}, {__close = function() fn() end})
end

-- A task standing in for a Future that a test completes by hand: it waits
-- on an Event; set(v) completes it with v.  Returns the task and set.
function helper.future()
  local ev, value = asyncio.Event(), nil
  local t = asyncio.create_task(function() ev:wait() return value end)
  return t, function(v) value = v ev:set() end
end

-- A list that records events in order.
function helper.log()
  local l = {}
  function l.add(x) l[#l + 1] = x end
  function l.str() return table.concat(l, " ") end
  return l
end

-- Starts a script in the background, waits for it to print "ready", sends
-- it SIGINT, and (when `second` names a marker) a second SIGINT once that
-- marker is printed; returns its output and exit status.  Waits for
-- markers, not for fixed times, so a slow run (valgrind) stays correct.
-- opts.prog runs another interpreter (shell words: "lua5.4", the oracle,
-- or helper.lua54_cmd()); opts.fifo gives the script a stdin that stays
-- open and empty (a read blocks).
function helper.interrupt(script, second, opts)
  opts = opts or {}
  local path = helper.tmpname(".lua")
  local out = helper.tmpname(".out")
  local fifo = helper.tmpname(".fifo")
  write_file(path, script)
  local wait_for = [[i=0; while [ $i -lt 3000 ] && ! grep -q %s %s; do sleep 0.01; i=$((i+1)); done]]
  local stdin = opts.fifo and ("mkfifo %s; "):format(shell_quote(fifo)) or ""
  local cmd = ([[
    %s%s %s %s > %s 2>&1 & pid=$!
    %s
    %s
    %s
    kill -INT $pid
    %s
    (for i in $(seq %d); do sleep 0.1; kill -0 $pid || exit; done; kill -KILL $pid) >/dev/null 2>&1 &
    wait $pid; st=$?
    cat %s; echo "status=$st"
  ]]):format(stdin, opts.prog or helper.cmd, shell_quote(path), opts.fifo and ("< " .. shell_quote(fifo)) or "", shell_quote(out),
             opts.fifo and ("exec 3> " .. shell_quote(fifo)) or "",
             wait_for:format("ready", shell_quote(out)),
             -- a SIGINT sent before the read(2) starts would be consumed
             -- in Lua code and the read would then block (lua.c has the
             -- same window; valgrind widens it): wait until the process
             -- sits in read(0, ...) (syscall 0 on fd 0 in /proc/PID/syscall)
             opts.fifo and [[i=0; while [ $i -lt 3000 ] && ! grep -q '^0 0x0 ' /proc/$pid/syscall 2>/dev/null; do sleep 0.01; i=$((i+1)); done]] or "",
             second and (wait_for:format(shell_quote(second), shell_quote(out)) .. "; kill -INT $pid") or "",
             300 * helper.slow, shell_quote(out)) -- the watchdog: a missed SIGINT fails, not hangs
  local text = helper.sh("bash -c " .. shell_quote(cmd))
  os.remove(path)
  os.remove(out)
  os.remove(fifo)
  return text, tonumber(text:match("status=(%d+)"))
end

return helper
