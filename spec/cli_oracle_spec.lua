-- The lasync command line against lua5.4 (the oracle), the cases that
-- spec/lua_differential_spec.lua does not hold: option corners, odd
-- arguments, error objects of every type, LUA_INIT in all its forms,
-- os.exit from everywhere, <close> at the end of the main chunk, big and
-- interleaved output.  Each case runs under both in the same fresh
-- directory (spec/lua54_oracle.lua): stdout, stderr and the exit status
-- must be the same, byte for byte, once the program name reads "lua".
-- SIGPIPE on a closed stdout is spec/sigpipe_spec.lua's; Ctrl-C,
-- spec/cli_spec.lua's.
local oracle = require "spec.lua54_oracle"

local args_lua = "for i = -3, #arg do io.write(i, '=', arg[i], '|') end print(...)"
local count_lua = "print(select('#', ...), #arg, arg[#arg])"
local close_print = "local x <close> = setmetatable({}, {__close = function(_, e) print('closed', e) end})\n"
-- printf(1) escapes: the shell that runs the cases is /bin/sh (no $'...')
local odd = [["$(printf '\377\376')" '' "$(printf 'a\tb\001')" "$(printf 'x\ny')" ' ' '%s' '\']]

local cases = {
  -- options
  {"-- alone: stdin is the chunk", args = "--", stdin = "print('stdin after --', #arg, arg[0])"},
  {"-e then - reads stdin", args = "-e 'x = 1' -", stdin = "print(x, ...)"},
  {"-l followed by -", args = "-l -"},
  {"-e followed by -", args = "-e -"},
  {"-l followed by -e", args = "-l -e 'print(1)'"},
  {"-v twice", args = "-v -v"},
  {"-vi is one bad option", args = "-vi"},
  {"-i -e with a piped stdin", args = "-i -e 'print(1)'", stdin = "print(2)\n"},
  {"a failing -e skips -i", args = "-e 'error()' -i", stdin = "print(2)\n"},
  {"-i - reads the script then the REPL from stdin", args = "-i -", stdin = "print(5)\n"},
  {"- then -i: -i is the script's", args = "- -i", stdin = "print(...)"},
  {"-E -W -- before the script", args = "-W -E -- args.lua x", files = {["args.lua"] = args_lua}},
  {"-l a-b: 5.4.4 keeps the whole name as the global", args = "-l a-b -e 'print(_G[\"a-b\"], a)'",
   files = {["a-b.lua"] = "return 'hyphen'"}},
  {"an unknown option after -e", args = "-e 'print(1)' -q"},
  {"an unknown long option", args = "--workersx script.lua", script = "print('no')"},
  {"-X is not lua.c's, but takes an argument in lasync", args = "-X", skip_reason = "lasync's -X"},

  -- odd arguments
  {"an empty script name", args = "''"},
  {"odd bytes in arguments", args = "args.lua " .. odd, files = {["args.lua"] = args_lua}},
  {"odd bytes after --", args = "-W -E -- args.lua " .. odd, files = {["args.lua"] = args_lua}},
  {"100000 arguments to a script", args = "count.lua $(seq 1 100000)", files = {["count.lua"] = count_lua}},
  {"100000 arguments after -e", args = "-e 'print(select(\"#\", ...), #arg, arg[#arg])' $(seq 1 100000)"},
  {"200000 arguments to stdin", args = "- $(seq 1 200000)", stdin = count_lua},
  {"arg of a script named by a relative path", args = "./count.lua a", files = {["count.lua"] = "print(arg[0], ...)"}},

  -- scripts as files
  {"a shebang line on stdin", args = "-", stdin = "#!/bin/sh\nprint(debug.getinfo(1).currentline)"},
  {"a file with only a comment line", args = "c.lua", files = {["c.lua"] = "# comment only"}},
  {"a UTF-8 BOM", args = "bom.lua", files = {["bom.lua"] = "\239\187\191print('bom ok')"}},
  {"a precompiled chunk", args = "one.luac a", files = {["one.lua"] = "print('compiled', ...)"},
   setup = "luac5.4 -o one.luac one.lua"},
  {"a truncated binary chunk", args = "bin.lua", files = {["bin.lua"] = "\27Lua"}},
  {"an empty file", args = "empty.lua", files = {["empty.lua"] = ""}},
  {"empty stdin", args = "-"},

  -- error objects of every type
  {"error(true)", args = "-e 'error(true)'"},
  {"error(4.5)", args = "-e 'error(4.5)'"},
  {"error(2^63)", args = "-e 'error(2^63)'"},
  {"error(-0.0)", args = "-e 'error(-0.0)'"},
  {"error(1/0)", args = "-e 'error(1/0)'"},
  {"error(print)", args = "-e 'error(print)'"},
  {"error(io.stdout), a userdata with __tostring", args = "-e 'error(io.stdout)'"},
  {"error(a thread)", args = "-e 'error(coroutine.create(print))'"},
  {"an error table with __name only", args = "-e 'error(setmetatable({}, {__name = \"MyT\"}))'"},
  {"an error whose __tostring fails", args = "script.lua",
   script = "error(setmetatable({}, {__tostring = function() error('tostring fails') end}))"},
  {"an error whose __tostring text holds a traceback header", args = "script.lua",
   script = "error(setmetatable({}, {__tostring = function() return 'a\\nstack traceback:\\nb' end}))"},
  {"an error string that holds a traceback header", args = "-e 'error(\"a\\nstack traceback:\\nb\")'"},
  {"an error string of 100000 bytes", args = "-e 'error((\"x\"):rep(100000))'"},
  {"an error with level 0", args = "-e 'error(\"no position\", 0)'"},
  {"an error raised in a coroutine.wrap", args = "script.lua",
   script = "local f = coroutine.wrap(function() local t = nil return t.x end)\nf()"},
  {"an error raised through table.sort", args = "script.lua",
   script = "table.sort({3, 2, 1}, function(a, b) error('in sort') end)"},
  {"coroutine.yield at the top of the main chunk", args = "-e 'coroutine.yield(1)'"},
  {"coroutine.yield at the top of a script", args = "script.lua", script = "print('before')\nprint(coroutine.yield())"},

  -- LUA_INIT
  {"LUA_INIT_5_4=@file", args = "-e 'print(Z)' a", env = {LUA_INIT_5_4 = "@init.lua"},
   files = {["init.lua"] = "Z = 'from file' print('init', ...)"}},
  {"LUA_INIT_5_4=@file over LUA_INIT", args = "-e 'print(Z)'",
   env = {LUA_INIT_5_4 = "@init.lua", LUA_INIT = "Z = 1"}, files = {["init.lua"] = "Z = 'from file'"}},
  {"an empty LUA_INIT_5_4 still wins", args = "-e 'print(Z)'", env = {LUA_INIT_5_4 = "", LUA_INIT = "Z = 1"}},
  {"LUA_INIT=@file that fails", args = "-e 'print(Z)'", env = {LUA_INIT = "@bad.lua"},
   files = {["bad.lua"] = "local function f() error('init file fails') end\nf()"}},
  {"LUA_INIT=@file raising a table", args = "-e 'print(Z)'", env = {LUA_INIT = "@bad.lua"},
   files = {["bad.lua"] = "error({code = 1})"}},
  {"LUA_INIT=@file with a syntax error", args = "-e 'print(Z)'", env = {LUA_INIT = "@bad.lua"},
   files = {["bad.lua"] = "x = = 1"}},
  {"LUA_INIT_5_4=@missing", args = "-e 'print(Z)'", env = {LUA_INIT_5_4 = "@nonexistent.lua"}},
  {"LUA_INIT=@ alone reads stdin", args = "-e 'print(Z)'", env = {LUA_INIT = "@"}, stdin = "Z = 'stdin'"},
  {"LUA_INIT that calls os.exit", args = "-e 'print(Z)'", env = {LUA_INIT = "io.write('w') os.exit(7)"}},
  {"LUA_INIT that calls os.exit(n, true)", args = "-e 'print(Z)'", env = {LUA_INIT = close_print .. "os.exit(7, true)"}},
  {"LUA_INIT has no varargs, but arg", args = "script.lua a", script = "",
   env = {LUA_INIT = "print(select('#', ...), arg[0], arg[1], arg[-1] ~= nil)"}},
  {"-v prints before LUA_INIT runs", args = "-v -e 'print(1)'", env = {LUA_INIT = "print('init')"}},
  {"LUA_INIT before the REPL", args = "-i", env = {LUA_INIT = "print('init')"}, stdin = "print(2)\n"},
  {"a failing LUA_INIT skips the REPL", args = "-i", env = {LUA_INIT = "error('i')"}, stdin = "print(2)\n"},
  {"-E ignores LUA_INIT_5_4", args = "-E -e 'print(Z)'", env = {LUA_INIT_5_4 = "error()"}},
  {"a syntax error in LUA_INIT_5_4 skips stdin", args = "", env = {LUA_INIT_5_4 = "return 1 +"}, stdin = "print('no')"},
  {"unflushed output of LUA_INIT before an error", args = "-e 'error(1)'", env = {LUA_INIT = "io.write('noflush')"}},
  {"LUA_PATH_5_4 over LUA_PATH", args = "-e 'print(package.path)'", env = {LUA_PATH_5_4 = "p54;;", LUA_PATH = "p"}},
  {"LUA_CPATH_5_4 over LUA_CPATH", args = "-e 'print(package.cpath)'", env = {LUA_CPATH_5_4 = "c54;;", LUA_CPATH = "c"}},
  {"-E ignores LUA_PATH_5_4 and LUA_CPATH_5_4", args = "-E -e 'print(package.cpath, package.path)'",
   env = {LUA_CPATH_5_4 = "c54;;", LUA_PATH_5_4 = "x"}},
  {"-E: os.getenv still works", args = "-E -e 'print(os.getenv(\"LUA_INIT\"))'", env = {LUA_INIT = "x = 1"}},

  -- os.exit
  {"os.exit(3.5)", args = "-e 'os.exit(3.5)'"},
  {"os.exit('x')", args = "-e 'os.exit(\"x\")'"},
  {"os.exit(2^40)", args = "-e 'os.exit(2^40)'"},
  {"os.exit(-1)", args = "-e 'os.exit(-1)'"},
  {"os.exit(263)", args = "-e 'os.exit(256 + 7)'"},
  {"os.exit(nil, true)", args = "-e 'os.exit(nil, true)'"},
  {"os.exit(true, 1)", args = "-e 'os.exit(true, 1)'"},
  {"os.exit in a coroutine.wrap", args = "script.lua", script = close_print .. "coroutine.wrap(function() os.exit(5) end)()"},
  {"os.exit(n, true) in a coroutine.wrap runs the main chunk's <close>", args = "script.lua",
   script = close_print .. [[
coroutine.wrap(function()
  local y <close> = setmetatable({}, {__close = function() print('coroutine closed') end})
  os.exit(5, true)
end)()
print('not reached')]]},
  {"os.exit(false, true) in coroutine.resume runs the main chunk's <close>", args = "script.lua",
   script = close_print .. "print(coroutine.resume(coroutine.create(function() os.exit(false, true) end)))"},
  {"os.exit(n, true) two coroutines deep", args = "script.lua",
   script = close_print .. "coroutine.wrap(function() coroutine.wrap(function() os.exit(9, true) end)() end)()"},
  {"os.exit(n, true) with a failing __close", args = "script.lua",
   script = "local x <close> = setmetatable({}, {__close = function(_, e) print('c', e) error('in close') end})\nos.exit(6, true)"},
  {"os.exit(n, true) with two <close>, the first failing", args = "script.lua",
   script = close_print .. "local y <close> = setmetatable({}, {__close = function() error('y fails') end})\nos.exit(6, true)"},
  {"os.exit in -l's module", args = "-l m -e 'print(1)'", files = {["m.lua"] = "io.write('m') os.exit(2)"}},

  -- <close> at the end of the main chunk
  {"__close sees lua.c's message after an error", args = "script.lua",
   script = close_print .. "local function f() error('body') end\nf()"},
  {"__close sees lua.c's message for an error table", args = "script.lua",
   script = "local x <close> = setmetatable({}, {__close = function(_, e) print('closed', type(e), e) end})\nerror({})"},
  {"__close sees lua.c's message for a __tostring error", args = "script.lua",
   script = "local x <close> = setmetatable({}, {__close = function(_, e) print('closed', type(e), e) end})\n"
     .. "error(setmetatable({}, {__tostring = function() return 'TS' end}))"},
  {"__close failing after an error", args = "-e 'local x <close> = setmetatable({}, {__close = function(_, e) print(\"c\", e) error(\"close too\") end}) error(\"body\")'"},
  {"__close raising a __tostring object", args = "-e 'local x <close> = setmetatable({}, {__close = function() error(setmetatable({}, {__tostring = function() return \"TS\" end})) end})'"},
  {"__close raising nil", args = "-e 'local x <close> = setmetatable({}, {__close = function() error() end})'"},
  {"a non-closable value", args = "-e 'local x <close> = 42'"},
  {"<close> in -e, in order", args = "-e '" .. close_print .. "local y <close> = setmetatable({}, {__close = function() print(\"y\") end})'"},

  -- output
  {"print of 7000 values", args = "-e 'print(table.unpack({}, 1, 7000))'"},
  {"print of 300000 values", args = "-e 'print(table.unpack({}, 1, 300000))'"},
  {"a main chunk returning 300000 values", args = "-e 'return table.unpack({}, 1, 300000)'"},
  {"a REPL line giving 10000 values", args = "-i", stdin = "return table.unpack({}, 1, 10000)\n"},
  {"stdout and stderr through one pipe, os.exit", args = "-e 'io.write(\"a\") io.stderr:write(\"b\") io.write(\"c\\n\") os.exit(1)' 2>&1"},
  {"stdout and stderr through one pipe, an error", args = "-e 'io.write(\"a\") io.stderr:write(\"b\") print(\"c\") error(\"x\")' 2>&1"},
  {"stdout unbuffered", args = "-e 'io.stdout:setvbuf(\"no\") io.write(\"a\") io.stderr:write(\"b\") print(\"c\")' 2>&1"},
  {"stdout line-buffered", args = "-e 'io.stdout:setvbuf(\"line\") io.write(\"a\") io.stderr:write(\"b\") print(\"c\") io.write(\"d\")' 2>&1"},
  {"output left in the buffer at the end", args = "-e 'io.write(string.rep(\"x\", 10000), \"end\")'"},
  {"stdout closed by the script", args = "-e 'io.stdout:close() print(1)'"},
  {"io.output() switched to a file", args = "-e 'io.output(\"o.txt\") io.write(\"to file\")' -e 'io.output(io.stdout) print(io.open(\"o.txt\"):read(\"a\"))'"},

  -- finalizers at the end (lua_close)
  {"__gc at close after unterminated output", args = "script.lua",
   script = "setmetatable({}, {__gc = function() print('gc at close') end})\nio.write('no newline')"},
  {"__gc failing at close, warnings off", args = "script.lua",
   script = "setmetatable({}, {__gc = function() error('in gc at close') end})\nprint('end')"},
  {"__gc failing at close, -W", args = "-W script.lua",
   script = "setmetatable({}, {__gc = function() error('in gc at close') end})\nprint('end')"},
  {"__gc raising a table at close, -W", args = "-W script.lua",
   script = "setmetatable({}, {__gc = function() error({}) end})\nprint('end')"},
  {"warn in __gc at close, -W", args = "-W -e 'setmetatable({}, {__gc = function() warn(\"in gc\") end})'"},
  {"os.exit in __gc at close", args = "-W -e 'setmetatable({}, {__gc = function() print(\"gc\") os.exit(3) end})'"},
  {"__gc that yields, -W", args = "-W -e 'local t = setmetatable({}, {__gc = function() coroutine.yield() end}) t = nil collectgarbage()'"},
  {"__gc after an error in the script", args = "script.lua",
   script = "setmetatable({}, {__gc = function() print('gc') end})\nerror('e')"},
  {"-W with a failing __gc during the run", args = "-W -e 'setmetatable({}, {__gc = function() error(\"run gc\") end}) collectgarbage() print(\"after\")'"},

  -- the standard descriptors closed (libuv must not take them)
  {"stdin closed, no arguments", args = "<&-", stdin = false},
  {"stdin closed, - as the script", args = "- <&-", stdin = false},
  {"stdin closed, io.read", args = "-e 'print(io.read())' <&-", stdin = false},
  {"stdin closed, a task on the loop", args = "-e 'asyncio = asyncio or {sleep = function() end} asyncio.sleep(0.01) print(io.read())' <&-", stdin = false},
  {"stdout closed", args = "-e 'print(1) io.stderr:write(\"on stderr\\n\")' >&-"},
  {"stdout closed, an error", args = "-e 'print(1) error(\"x\")' >&-"},
  {"stderr closed, an error", args = "-e 'print(1) error(\"x\")' 2>&-", bare = true},
  {"all three closed", args = "-e 'print(io.read()) error(\"x\")' <&- >&- 2>&-; echo \"status $?\"", stdin = false},
  {"a child of os.execute sees the closed stdin", args = "-e 'print(os.execute(\"cat\"))' <&- 2>&1", stdin = false},
  {"stdout is /dev/full", args = "-e 'print(1)' >/dev/full"},
  {"stdout is /dev/full, io.write's result", args = "-e 'print(io.stdout:write(\"x\"))' >/dev/full 2>&1"},

  -- the chunk from stdin (no arguments, not a terminal): lua.c 5.4.4
  -- reports its failure but exits 0
  {"a failing chunk from stdin without arguments", args = "", stdin = "print('a') error('x')"},
  {"a syntax error from stdin without arguments", args = "", stdin = "x = = 1"},
  {"a failing chunk from stdin with -", args = "-", stdin = "error('x')"},
  {"os.exit(3, true) in a chunk from stdin", args = "", stdin = "os.exit(3, true)"},

  -- the state lua.c makes
  {"a read-only _G refuses -l's global", args = "-e 'setmetatable(_G, {__newindex = function() error(\"ro\") end})' -l str=string"},
  {"require removed before -l", args = "-e 'require = nil' -l string"},
  {"debug.traceback in -e", args = "-e 'print(debug.traceback())'"},
  {"debug.getinfo above the main chunk", args = "-e 'print(debug.getinfo(2))'"},
  {"package.loaded holds lua.c's libraries", args = "script.lua",
   script = "for _, n in ipairs{'_G', 'coroutine', 'debug', 'io', 'math', 'os', 'package', 'string', 'table', 'utf8'} do io.write(n, '=', tostring(package.loaded[n] == (n == '_G' and _G or _G[n])), ' ') end print()"},
}

-- lasync's own extras that lua5.4 does not have (not compared: listed so
-- that they are seen): -X.
for i = #cases, 1, -1 do
  if cases[i].skip_reason then table.remove(cases, i) end
end

describe("the lasync command line as lua5.4's (oracle)", function()
  if not oracle.have_lua54() then
    it("needs lua5.4 (apt-get install lua5.4)", function() pending("no lua5.4") end)
    return
  end
  local tmp = oracle.tmpdir()
  before_each(tmp.make)
  after_each(tmp.remove)
  for _, case in ipairs(cases) do
    it(case[1] .. ": lasync " .. case.args, oracle.test(case, tmp))
  end
end)

-- The same guard in a stock lua5.4 that loads asyncio.so: its loop must not
-- take the closed stdin either (libuv aborted when it closed it).
describe("asyncio.so in a stock lua5.4 with stdin closed", function()
  if not oracle.have_lua54() then return end
  local helper = require "spec.helper"

  it("reads EBADF from stdin, as lua5.4 alone, and exits cleanly", function()
    local code = ("package.cpath = %q .. '/?.so;' .. package.cpath\n"):format(helper.module_dir)
      .. "local asyncio = require 'asyncio'\n"
      .. "print(asyncio.run(function() asyncio.sleep(0.01) return io.read() end))"
    local out, err, status = helper.sh(helper.lua54_cmd() .. " -e " .. helper.quote(code) .. " <&-")
    local out54, err54, status54 = helper.sh("lua5.4 -e 'print(io.read())' <&-")
    assert.are.same({out54, err54, status54}, {out, err, status})
    assert.are.equal("nil\tBad file descriptor\t9\n", out)
  end)
end)
