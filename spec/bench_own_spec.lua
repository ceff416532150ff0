-- bench/own.sh: `make bench` in a plain clone (no ../shared/bench) runs all
-- seven workloads with the project's own servers and W5 load generator.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"

local q = helper.quote
local ECHO_CLIENT = helper.lasync:match("^(.*)/[^/]*$") .. "/w5_echo_client"

-- "RESULT workload=W5 n=1 ok=1 ..." -> {workload = "W5", n = "1", ...}
local function fields(line)
  local t = {}
  for k, v in line:gmatch("(%S+)=(%S+)") do t[k] = v end
  return t
end

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

describe("bench/own.sh", function()
  it("--quick runs W1-W7 in order, each checked (ok=1) with a positive figure", function()
    -- bash's `time` gives the CPU seconds of the run and its children:
    -- "quick" is judged by them, not by the wall time a loaded machine
    -- stretches (26.8 s against 20 at load 19, with the CPU the same)
    local out, err, status = helper.sh("bash -c " .. q("TIMEFORMAT='cpu %U %S'; time LASYNC=" .. q(helper.lasync) .. " bench/own.sh --quick"))
    assert.are.equal(0, status, err)
    local user, sys = err:match("cpu ([%d.]+) ([%d.]+)%s*$")
    assert.is_not_nil(user, err)
    assert.matches("NOT the peer comparison", out)
    local seen = {}
    for line in out:gmatch("RESULT [^\n]*") do seen[#seen + 1] = fields(line) end
    assert.are.equal(7, #seen, out)
    for i, r in ipairs(seen) do
      assert.are.equal("W" .. i, r.workload)
      assert.are.equal("1", r.ok, out)
      assert.is_true(tonumber(r.n) > 0, out)
    end
    for _, i in ipairs{1, 3, 4, 5, 6} do
      assert.is_true(tonumber(seen[i].rate) > 0, out)
    end
    if seen[2].bytes_per_task then -- GNU time at /usr/bin/time
      assert.is_true(tonumber(seen[2].bytes_per_task) > 0, out)
    end
    -- W7's server answers each request after 50 ms: no client beats that
    local w7 = tonumber(seen[7].seconds)
    assert.is_true(w7 >= 0.05, out)
    assert.are.equal("200", seen[7].n)
    local cpu = tonumber(user) + tonumber(sys)
    assert.is_true(cpu < 20 * helper.slow, ("%.1f CPU seconds"):format(cpu))
  end)

  it("stops a server that never listens by its PID, says which, exits 1", function()
    local fake = helper.tmpname(".sh")
    local pids = helper.tmpname(".pids")
    helper.write_file(fake, "#!/bin/sh\necho $$ >> " .. q(pids) .. "\nexec sleep 600\n")
    os.execute("chmod +x " .. q(fake))
    local t0 = asyncio.time()
    local out, err, status = helper.sh("OWN_START_TIMEOUT=1 LASYNC=" .. q(fake)
      .. " ECHO_CLIENT=" .. q(ECHO_CLIENT) .. " bench/own.sh --quick --only W5,W7")
    local took = asyncio.time() - t0
    assert.are.equal(1, status)
    assert.matches("W5 FAILED: its server %(.-w5_echo%.lua%) did not listen within 1 s", err)
    assert.matches("W7 FAILED: its server %(.-w7_slow%.lua%) did not listen within 1 s", err)
    assert.matches("own.sh: failed: W5 W7", err, 1, true)
    assert.is_nil(out:match("RESULT"))
    assert.is_true(took < 10 * helper.slow, "took " .. took .. " s")
    local started = 0
    for pid in helper.read_file(pids):gmatch("%d+") do
      started = started + 1
      assert.is_false(alive(pid), "server " .. pid .. " left running")
    end
    assert.are.equal(2, started)
    os.remove(fake)
    os.remove(pids)
  end)

  it("reports a server that dies at start with its status and stderr", function()
    local fake = helper.tmpname(".sh")
    helper.write_file(fake, "#!/bin/sh\necho 'no such module' >&2\nexit 3\n")
    os.execute("chmod +x " .. q(fake))
    local _, err, status = helper.sh("LASYNC=" .. q(fake) .. " bench/own.sh --only w6")
    os.remove(fake)
    assert.are.equal(1, status)
    assert.matches("W6 FAILED: its server %(.-w6_static%.lua%) exited with status 3 before listening", err)
    assert.matches("| no such module", err, 1, true)
  end)

  it("refuses an unknown workload or argument", function()
    local _, err, status = helper.sh("bench/own.sh --only W8")
    assert.are.equal(2, status)
    assert.matches("unknown workload 'W8'", err, 1, true)
    _, err, status = helper.sh("bench/own.sh --fast")
    assert.are.equal(2, status)
    assert.matches("unknown argument: --fast", err, 1, true)
  end)
end)

-- The W5 load generator against Python servers (the oracle: bytes.upper()
-- changes a-z only, like Lua's string.upper in the C locale).
describe("bench/w5_echo_client", function()
  -- Runs the client for 0.3 s against a Python server whose connections
  -- run `body` (Python, the accepted socket is `c`); returns its stdout,
  -- stderr and exit status.  The server's stderr is dropped: a client that
  -- stops (or gives up) mid-reply resets its sockets, and the tracebacks
  -- of its threads are noise.
  local function against(body)
    local srv, port = io_helper.py_server(body, nil, {stderr = "devnull"})
    local p = asyncio.create_subprocess_exec(ECHO_CLIENT,
      {"127.0.0.1", tostring(port), "4", "0.3"}, {stdout = "pipe", stderr = "pipe"})
    local out, err = p:communicate()
    io_helper.stop(srv)
    return out, err, p.returncode
  end
  local ECHO = "while True:\n    d = c.recv(65536)\n    if not d: break\n    c.sendall(%s)"

  it("counts checked round trips against an upper-casing echo server", function()
    local out, err, code = against(ECHO:format("d.upper()"))
    assert.are.equal(0, code, err)
    local r = fields(out:match("RESULT [^\n]*"))
    assert.are.equal("W5", r.workload)
    assert.are.equal("1", r.ok)
    assert.is_true(tonumber(r.n) > 0)
    -- the stop timer counts whole milliseconds of the loop's clock
    assert.is_true(tonumber(r.seconds) > 0.29 and tonumber(r.seconds) < 1 * helper.slow, out)
    assert.is_near(tonumber(r.n) / tonumber(r.seconds), tonumber(r.rate), 1)
  end)

  it("gives ok=0 when a reply is not the upper-cased message", function()
    local out, err, code = against(ECHO:format("d"))
    assert.are.equal(1, code)
    assert.matches("ok=0", out, 1, true)
    assert.matches("a reply is not the upper-cased message", err, 1, true)
  end)

  it("gives ok=0 when the server closes a connection", function()
    local out, err, code = against("c.recv(65536)")
    assert.are.equal(1, code)
    assert.matches("ok=0", out, 1, true)
    assert.matches("the server closed a connection", err, 1, true)
  end)
end)
