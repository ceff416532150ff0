-- The lua5.4 oracle of the command-line specs (spec/lua_differential_spec.lua,
-- spec/cli_oracle_spec.lua): each case runs under the real lua5.4 and under
-- lasync, in the same fresh directory with the same files, environment and
-- stdin; stdout, stderr and the exit status must be the same once the
-- program name is written as "lua" in both.
--
-- What is normalised, each one a documented difference or noise:
--  1. `-v` (and the REPL's banner) names lasync and libuv before lua.c's
--     own line, which it ends with ("lasync 0.1.0 (libuv 1.44.2) -- Lua
--     5.4.4  Copyright ..."): the binary is lasync, and scripts that read
--     `lua -v` find what they look for.
--  2. Addresses in "table: 0x..." differ from run to run anyway.
--  3. After a Lua stack overflow, the traceback's "(skipping N levels)"
--     may differ by a few levels: a task's thread starts with an empty
--     stack, lua.c's main chunk above pmain's frames.
local helper = require "spec.helper"
local assert = require "luassert"
local q = helper.quote

local oracle = {LUA = "lua5.4"}

function oracle.have_lua54()
  local _, _, status = helper.sh("command -v " .. oracle.LUA .. " >/dev/null")
  return status == 0
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

local function normalise(text, progname)
  text = text:gsub(escape(progname), "lua")
  text = text:gsub("lasync [%d.]+ %(libuv [%d.]+%) %-%- ", "") -- difference 1
  text = text:gsub("0x%x+", "0xADDR") -- difference 2
  text = text:gsub("%(skipping %d+ levels%)", "(skipping N levels)") -- difference 3
  return text
end

-- Every variable either program reads, unset unless the case sets it.
local UNSET = "env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH -u LUA_PATH_5_4"
  .. " -u LUA_CPATH -u LUA_CPATH_5_4"

-- case.args are shell words after the program (they may end with a
-- redirection or a pipe); case.env: name = value; case.stdin: its text, or
-- false for no redirection of stdin (the case's args may close it: <&-).
local function run(case, dir, prog, progname)
  local env = {UNSET}
  for k, v in pairs(case.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
  local stdin = case.stdin == false and "" or " < " .. q(dir .. "/stdin.txt")
  local cmd = ("cd %s && %s %s %s%s"):format(q(dir), table.concat(env, " "),
    prog, case.args, stdin)
  local out, err, status = helper.sh(cmd)
  return normalise(out, progname), normalise(err, progname), status
end

-- Writes the case's script (script.lua), files (name = text) and stdin
-- into dir, then runs its setup shell command there, if any.
function oracle.prepare(case, dir)
  local write = helper.write_file
  if case.script then write(dir .. "/script.lua", case.script) end
  for name, text in pairs(case.files or {}) do write(dir .. "/" .. name, text) end
  if case.stdin ~= false then write(dir .. "/stdin.txt", case.stdin or "") end
  if case.setup then
    local _, err, status = helper.sh("cd " .. q(dir) .. " && " .. case.setup)
    assert.are.equal(0, status, err)
  end
end

-- Runs case under the oracle lua5.4 and under prog (whose name in its
-- messages is progname), in dir; asserts that stdout, stderr and the exit
-- status are the same.
function oracle.same_as_lua54(case, dir, prog, progname)
  local out1, err1, st1 = run(case, dir, oracle.LUA, oracle.LUA)
  local out2, err2, st2 = run(case, dir, prog, progname)
  assert.are.same({stdout = out1, stderr = err1, status = st1},
                  {stdout = out2, stderr = err2, status = st2})
end

-- A fresh directory for each test: register tmp.make with before_each and
-- tmp.remove with after_each (busted's functions are the spec file's, not
-- this module's); tmp.path is the directory.
function oracle.tmpdir()
  local tmp = {}
  function tmp.make()
    tmp.path = helper.tmpname("")
    assert(os.execute("mkdir -p " .. q(tmp.path)))
  end
  function tmp.remove()
    os.execute("rm -rf " .. q(tmp.path))
  end
  return tmp
end

-- The test of one case, with its directory from tmp: the case under
-- lasync against lua5.4.  case.bare: lasync runs without the valgrind
-- wrapper (valgrind itself exits 127 when started with stderr closed).
function oracle.test(case, tmp)
  local prog = case.bare and q(helper.lasync) or helper.cmd
  return function()
    oracle.prepare(case, tmp.path)
    oracle.same_as_lua54(case, tmp.path, prog, helper.lasync)
  end
end

return oracle
