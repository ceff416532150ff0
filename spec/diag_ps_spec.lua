-- `lasync ps PID` / `lasync pstree PID` (issue 13, point 5): a process
-- that opted in answers over a per-user Unix socket, also while a task
-- blocks its loop (then: which task, and where).  Drives the binary.
local helper = require "spec.helper"
local q = helper.quote

local SCRIPT = [[
local function leaf() asyncio.sleep(30) end
asyncio.run(function()
  local g = asyncio.create_task(function() asyncio.gather(leaf, leaf) end)
  g:set_name("gatherer")
  local w = asyncio.create_task(function()
    local q = asyncio.Queue()
    q:get()
  end)
  w:set_name("getter")
  asyncio.sleep(0.05)
  print("ready"); io.stdout:flush()
  asyncio.sleep(tonumber(arg[1]) or 0.01)
  print("blocking"); io.stdout:flush()
  local t0 = asyncio.time()
  while asyncio.time() - t0 < 3 do end -- BLOCK
  print("unblocked"); io.stdout:flush()
  os.exit(0)
end)
]]

-- Starts the script with `start` (env and options), waits for `marker` in
-- its output, runs `cmds` (a shell snippet with $pid), then kills it.
local function with_process(start, marker, cmds, wait)
  local path = helper.tmpname(".lua")
  local out = helper.tmpname(".out")
  helper.write_file(path, SCRIPT)
  local cmd = ([[
    %s %s %s %s > %s 2>&1 & pid=$!
    i=0; while [ $i -lt 3000 ] && ! grep -q %s %s; do sleep 0.01; i=$((i+1)); done
    %s
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
    echo "--- process output"; cat %s
  ]]):format(start, helper.cmd, q(path), wait or "30", q(out), q(marker), q(out), cmds, q(out))
  local text, err = helper.sh("bash -c " .. q(cmd))
  os.remove(path)
  os.remove(out)
  return text, err
end

describe("lasync ps / pstree", function()
  local rundir
  before_each(function()
    rundir = helper.tmpname(".run")
    os.execute("mkdir -m 700 " .. q(rundir))
  end)
  after_each(function() os.execute("rm -rf " .. q(rundir)) end)

  it("lists the tasks: id, name, state, what each waits on, where created, busy time, wakes", function()
    local env = "XDG_RUNTIME_DIR=" .. q(rundir)
    local text = with_process(env .. " LASYNC_INSPECT=1", "ready",
      env .. " " .. helper.cmd .. [[ ps $pid; echo "status=$?"; ls -l ]] .. q(rundir) .. [[; stat -c %a ]] .. q(rundir) .. [[/lasync-$pid.sock]])
    assert.matches("status=0", text)
    assert.matches("^%s+ID%s+NAME%s+STATE%s+BUSY%(s%)%s+WAKES%s+WAITS ON%s+CREATED AT\n", text)
    assert.matches("\n%s+1%s+Task%-1%s+waiting%s+%d+%.%d+%s+%d+%s+in 'run' at [^\n]*:2%s+the host\n", text)
    assert.matches("\n%s+%d+%s+gatherer%s+waiting%s+%d+%.%d+%s+%d+%s+in 'gather' at [^\n]*:3%s+[^\n]*:3\n", text)
    assert.matches("\n%s+%d+%s+getter%s+waiting%s+[%d.]+%s+%d+%s+in 'get' at [^\n]*:7%s+[^\n]*:5\n", text)
    local _, leaves = text:gsub("in 'sleep' at [^\n]*:1 ", "")
    assert.are.equal(2, leaves)
    -- the socket: only its user may open it
    assert.matches("\n600\n", text)
  end)

  it("draws the await tree", function()
    local env = "XDG_RUNTIME_DIR=" .. q(rundir)
    local text, err = with_process(env, "ready", env .. " " .. helper.cmd .. [[ pstree $pid; echo "status=$?"]],
      "30")
    -- started without opting in: nothing listens
    assert.matches("status=1", text)
    assert.matches("pstree: no inspectable lasync process %d+ %(.*LASYNC_INSPECT=1 or lasync %-X inspect%)", err)
    text = with_process(env .. " LASYNC_INSPECT=1", "ready",
      env .. " " .. helper.cmd .. [[ pstree $pid; echo "status=$?"]])
    assert.matches("status=0", text)
    assert.matches("└── %(T%) Task%-1  in 'run' at [^\n]*:2\n    └── %(T%) Task%-2  in 'sleep' at [^\n]*:12\n", text)
    assert.matches("└── %(T%) gatherer  in 'gather' at [^\n]*:3\n    └── %(T%) Task%-%d+  in 'sleep' at [^\n]*:1\n    └── %(T%) Task%-%d+  in 'sleep' at [^\n]*:1\n", text)
    assert.matches("└── %(T%) getter  in 'get' at [^\n]*:7\n", text)
  end)

  -- valgrind runs one thread at a time, so the inspector thread cannot
  -- answer within its deadlines while the main thread spins (LASYNC_SLOW is
  -- 10 there); ASan and the plain build keep this check
  local while_blocked = helper.slow >= 10 and pending or it
  while_blocked("answers while a task blocks the loop: which task, and where", function()
    local env = "XDG_RUNTIME_DIR=" .. q(rundir)
    local text = with_process(env .. " LASYNC_INSPECT=1", "blocking",
      "sleep 0.2; s=$(date +%s.%N); " .. env .. " " .. helper.cmd .. [[ ps $pid; echo "status=$?"; e=$(date +%s.%N); echo "took=$(echo "$e - $s" | bc)"]],
      "0.01")
    assert.matches("status=0", text)
    assert.matches("the loop is blocked for %d+%.%d+ seconds by <Task name='Task%-2' created at [^>]*:2>\nstack traceback:\n", text)
    assert.matches(":15: in function <", text)
    -- answered during the 3 s block (the answer says for how long it was
    -- blocked), not after it
    local blocked = tonumber(text:match("the loop is blocked for ([%d.]+) seconds"))
    assert.is_true(blocked < 3, text)
    local took = tonumber(text:match("took=([%d.]+)"))
    assert.is_true(took and took < 5 * helper.slow, text)
    assert.is_nil(text:find("unblocked\n[^\n]*the loop is blocked"), text)
  end)

  it("uses /tmp/lasync-UID (0700) without XDG_RUNTIME_DIR, and -X inspect", function()
    local _, err = with_process("env -u XDG_RUNTIME_DIR", "ready",
      "env -u XDG_RUNTIME_DIR " .. helper.cmd .. [[ ps $pid | head -2; stat -c '%a %u' /tmp/lasync-$(id -u)]])
    assert.matches("no inspectable", err)
    local path = helper.tmpname(".lua")
    helper.write_file(path, SCRIPT)
    local out = helper.sh(([[
      env -u XDG_RUNTIME_DIR %s -X inspect %s 30 > %s.out 2>&1 & pid=$!
      i=0; while [ $i -lt 3000 ] && ! grep -q ready %s.out; do sleep 0.01; i=$((i+1)); done
      env -u XDG_RUNTIME_DIR %s ps $pid | head -2; stat -c '%%a %%u' /tmp/lasync-$(id -u)
      kill $pid; wait $pid; rm -f %s.out]]):format(helper.cmd, q(path), q(path), q(path), helper.cmd, q(path)))
    os.remove(path)
    assert.matches("ID%s+NAME", out)
    assert.matches("\n700 %d+\n", out)
  end)

  it("refuses other commands, and leaves `lasync ps` with other arguments to scripts", function()
    local env = "XDG_RUNTIME_DIR=" .. q(rundir)
    local text = with_process(env .. " LASYNC_INSPECT=1", "ready", ([[
      python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"rm -rf /\n"); print(s.recv(200).decode())' %s/lasync-$pid.sock
      python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.close()' %s/lasync-$pid.sock
      %s %s ps $pid; echo "status=$?"]]):format(q(rundir), q(rundir), env, helper.cmd))
    assert.matches("error: unknown command %(ps or pstree%)", text)
    -- still serving after a bad peer
    assert.matches("ID%s+NAME.*status=0", text)
    local _, err, status = helper.sh(helper.cmd .. " ps 12x")
    assert.are.equal(1, status)
    assert.matches("cannot open ps", err)
    _, err, status = helper.sh(helper.cmd .. " ps 999999999")
    assert.are.equal(1, status)
    assert.matches("ps: no inspectable lasync process 999999999", err)
  end)
end)
