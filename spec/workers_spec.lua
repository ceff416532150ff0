-- `lasync --workers N script`: the supervisor driven as a subprocess.
local helper = require "spec.helper"

local function tmpdir()
  local d = helper.tmpname("-workers")
  os.execute("mkdir -p " .. helper.quote(d))
  return d
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local wait_until = helper.wait_until

-- The pid a worker wrote to `path`, once it is there whole (the file
-- exists, empty, between the worker's open and its write).
local function pid_in(path)
  return tonumber(read(path) or "")
end

local function start(args)
  return asyncio.create_subprocess_exec(helper.lasync, args,
    {stdin = "devnull", stdout = "pipe", stderr = "pipe"})
end

-- Is the process running (a zombie waiting to be reaped is not)?
local function alive(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

describe("lasync --workers", function()
  after_each(helper.no_leaks)

  it("runs N copies numbered 1..N; worker_count() is N; exit 0 when all succeed", function()
    local dir = tmpdir()
    write(dir .. "/w.lua", [[print(asyncio.worker_id() .. "/" .. asyncio.worker_count() .. " " .. arg[1])]])
    local p = start{"--workers", "3", dir .. "/w.lua", "hi"}
    local out = p.stdout:read()
    assert.are.equal(0, p:wait())
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.are.same({"1/3 hi", "2/3 hi", "3/3 hi"}, lines)
    os.execute("rm -rf " .. helper.quote(dir))
  end)

  it("outside --workers a script is worker 0 of 1", function()
    local out, err, status = helper.run_script([[print(asyncio.worker_id(), asyncio.worker_count())]])
    assert.are.equal(0, status, err)
    assert.are.equal("0\t1\n", out)
  end)

  it("auto is one worker per core; a bad count or no script prints the usage", function()
    local nproc = tonumber((helper.sh("nproc")))
    local out = helper.sh(helper.cmd .. " --workers auto -e 'print(asyncio.worker_count())'")
    -- -e is an option of each worker's command line
    assert.matches(tostring(nproc), out)
    for _, args in ipairs{"--workers 0 x.lua", "--workers two x.lua", "--workers", "--workers 2"} do
      local _, err, status = helper.sh(helper.cmd .. " " .. args)
      assert.are.equal(1, status, args)
      assert.matches("usage: lasync %-%-workers N|auto script", err)
    end
  end)

  it("a crashed worker is started again; the run then succeeds", function()
    local dir = tmpdir()
    write(dir .. "/w.lua", ([[
      local mark = %q .. "/crashed." .. asyncio.worker_id()
      local f = io.open(mark)
      if not f then
        io.open(mark, "w"):close()
        os.exit(3)
      end
      f:close()
      print("ok " .. asyncio.worker_id())
    ]]):format(dir))
    local p = start{"--workers", "2", dir .. "/w.lua"}
    local out, err = p.stdout:read(), p.stderr:read()
    assert.are.equal(0, p:wait())
    assert.matches("ok 1", out)
    assert.matches("ok 2", out)
    assert.matches("worker 1 ended with status 3: restarting it", err)
    os.execute("rm -rf " .. helper.quote(dir))
  end)

  it("a worker that keeps crashing stops the rest; the status is its own", function()
    local dir = tmpdir()
    write(dir .. "/w.lua", [[
      if asyncio.worker_id() == 2 then os.exit(7) end
      asyncio.sleep(30)
    ]])
    local t0 = asyncio.time()
    local p = start{"--workers", "2", dir .. "/w.lua"}
    local err = p.stderr:read()
    assert.are.equal(7, p:wait())
    assert.matches("worker 2 keeps crashing %(status 7, 5 restarts in 10 s%): stopping", err)
    assert.is_true(asyncio.time() - t0 < 10 * helper.slow) -- worker 1 did not sleep 30 s
    os.execute("rm -rf " .. helper.quote(dir))
  end)

  describe("with a reuse_port server", function()
    local dir, p, port
    local script = [[
      local dir, port = arg[1], tonumber(arg[2])
      local id = asyncio.worker_id()
      local srv = asyncio.start_server(function(r, w)
        r:readline()
        w:write(id .. "\n")
        w:close()
      end, "127.0.0.1", port, {reuse_port = true})
      local f = io.open(dir .. "/pid." .. id, "w")
      f:write(tostring(io.open("/proc/self/stat"):read("n")))
      f:close()
      local ok, err = pcall(srv.serve_forever, srv)
      -- Ctrl-C cancels the main task: this cleanup runs
      local g = io.open(dir .. "/bye." .. id, "w")
      g:write("bye")
      g:close()
      error(err, 0)
    ]]

    local function ask()
      local r, w = asyncio.open_connection("127.0.0.1", port)
      w:write("who\n")
      local id = r:readline()
      w:close()
      return tonumber(id)
    end

    before_each(function()
      dir = tmpdir()
      write(dir .. "/srv.lua", script)
      -- the port stays bound (reuse_port, as the workers bind it) until
      -- both workers listen: no other process can take it in between
      local probe = asyncio.start_server(function() end, "127.0.0.1", 0, {reuse_port = true})
      port = probe.port
      p = start{"--workers", "2", dir .. "/srv.lua", dir, tostring(port)}
      wait_until(function() return pid_in(dir .. "/pid.1") and pid_in(dir .. "/pid.2") end, 10,
        "both workers")
      probe:close()
      probe:wait_closed()
    end)

    after_each(function()
      if p.returncode == nil then p:kill() p:wait() end
      os.execute("rm -rf " .. helper.quote(dir))
    end)

    it("both workers accept on one port", function()
      local seen = {}
      for _ = 1, 200 do
        seen[ask()] = true
        if seen[1] and seen[2] then break end
      end
      assert.is_true(seen[1] and seen[2])
    end)

    it("SIGINT reaches every worker once: cleanup runs, the status is 130", function()
      p:send_signal("SIGINT")
      assert.are.equal(130, p:wait())
      assert.are.equal("bye", read(dir .. "/bye.1"))
      assert.are.equal("bye", read(dir .. "/bye.2"))
    end)

    it("SIGTERM stops every worker and the supervisor", function()
      local pids = {tonumber(read(dir .. "/pid.1")), tonumber(read(dir .. "/pid.2"))}
      p:send_signal("SIGTERM")
      assert.are.equal(128 + 15, p:wait())
      for _, pid in ipairs(pids) do assert.is_false(alive(pid)) end
    end)

    it("a worker killed with SIGKILL is replaced; the port keeps serving", function()
      local old = tonumber(read(dir .. "/pid.1"))
      os.remove(dir .. "/pid.1")
      os.execute("kill -KILL " .. old)
      wait_until(function() return pid_in(dir .. "/pid.1") end, 10, "the new worker 1")
      assert.are_not.equal(old, tonumber(read(dir .. "/pid.1")))
      assert.is_not_nil(ask())
    end)

    it("a supervisor killed with SIGKILL leaves no worker behind", function()
      local pids = {tonumber(read(dir .. "/pid.1")), tonumber(read(dir .. "/pid.2"))}
      p:kill()
      p:wait()
      wait_until(function() return not alive(pids[1]) and not alive(pids[2]) end, 5,
        "the workers to end")
    end)
  end)
end)
