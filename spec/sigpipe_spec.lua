-- SIGPIPE (issue 10): a peer that goes away while we write must give
-- BrokenPipeError/ConnectionResetError at drain(), never kill the process;
-- but a dead stdout still ends the program as under lua.c (exit 141).
local helper = require "spec.helper"

-- the same body under the binary and under a stock lua5.4 with asyncio.so
local CHILD_GONE = [[
local p = asyncio.create_subprocess_exec("true", {}, {stdin = "pipe"})
p:wait()
p.stdin:write(string.rep("x", 200000)) -- never raises, as asyncio
local ok, e = pcall(p.stdin.drain, p.stdin)
print("drain", ok, asyncio.is(e, asyncio.BrokenPipeError), e and e.code)
]]

describe("SIGPIPE", function()
  it("a server whose client disconnects while it writes survives, drain() raises", function()
    local out, err, status = helper.run_script([[
      local got = asyncio.Event()
      local seen
      local srv = asyncio.start_server(function(r, w)
        for _ = 1, 1000 do
          w:write(string.rep("x", 65536))
          local ok, e = pcall(w.drain, w)
          if not ok then seen = e break end
        end
        got:set()
      end, "127.0.0.1", 0)
      local r, w = asyncio.open_connection("127.0.0.1", srv.port)
      r:readexactly(10)
      w:close()
      got:wait()
      srv:close()
      print("server saw", asyncio.is(seen, asyncio.ConnectionError), seen.code)
    ]])
    assert.are.equal(0, status, err)
    assert.matches("server saw\ttrue\tE[A-Z]+", out)
  end)

  it("write + drain to the stdin of a child that exited raises BrokenPipeError", function()
    local out, err, status = helper.run_script(CHILD_GONE)
    assert.are.equal(0, status, err)
    assert.matches("drain\tfalse\ttrue\tEPIPE", out)
  end)

  it("the guard comes back after add/remove_signal_handler('SIGPIPE')", function()
    -- libuv puts SIG_DFL back when its last SIGPIPE watcher stops
    local out, err, status = helper.run_script([[
      asyncio.add_signal_handler("SIGPIPE", function() end)
      asyncio.remove_signal_handler("SIGPIPE")
    ]] .. CHILD_GONE)
    assert.are.equal(0, status, err)
    assert.matches("drain\tfalse\ttrue\tEPIPE", out)
  end)

  it("the same in a stock lua5.4 with asyncio.so", function()
    local out, err, status = helper.lua54([[
      local asyncio = require "asyncio"
      asyncio.run(function()
    ]] .. CHILD_GONE .. [[
      end)
    ]])
    assert.are.equal(0, status, err)
    assert.matches("drain\tfalse\ttrue\tEPIPE", out)
  end)

  it("print into a closed pipe ends the program with 141, as lua5.4 does", function()
    local code = "for i = 1, 1e6 do print(i) end"
    local function run(cmd)
      return helper.sh("bash -c " .. helper.quote(cmd .. " -e " .. helper.quote(code)
        .. " | head -1; exit ${PIPESTATUS[0]}"))
    end
    local lua_out, _, lua_status = run("lua5.4")
    local out, err, status = run(helper.cmd)
    assert.are.equal("1\n", out, err)
    assert.are.equal(141, status, err)
    assert.are.same({lua_out, lua_status}, {out, status})
  end)

  it("stderr into a closed pipe too", function()
    local code = "for i = 1, 1e6 do io.stderr:write(i, '\\n') end"
    local out, err, status = helper.sh("bash -c " .. helper.quote(
      helper.cmd .. " -e " .. helper.quote(code) .. " 2>&1 >/dev/null | head -1; exit ${PIPESTATUS[0]}"))
    assert.are.equal("1\n", out, err)
    assert.are.equal(141, status)
  end)

  it("an ignored SIGPIPE stays ignored (the embedder's choice is kept)", function()
    -- under `trap '' PIPE` lua5.4 does not die either: print fails quietly
    local code = "for i = 1, 3000 do print(i) end io.stderr:write('ran to the end\\n')"
    local out, err, status = helper.sh("bash -c " .. helper.quote(
      "trap '' PIPE; " .. helper.cmd .. " -e " .. helper.quote(code)
      .. " | head -1; exit ${PIPESTATUS[0]}"))
    assert.are.equal("1\n", out)
    assert.are.equal(0, status, err)
    assert.matches("ran to the end", err)
  end)

  it("children started by os.execute get the default SIGPIPE", function()
    -- `yes` is killed quietly by SIGPIPE; with SIGPIPE ignored it would
    -- print "Broken pipe" and fail
    local out, err, status = helper.run_script([[
      print(os.execute("yes | head -1 >/dev/null"))
    ]])
    assert.are.equal(0, status, err)
    assert.matches("^true\texit\t0", out)
    assert.is_nil(err:match("Broken pipe"), err)
  end)
end)
