-- lasync against lua5.4 (the oracle), case by case: spec/lua54_oracle.lua
-- runs each under both and compares stdout, stderr and the exit status
-- (what it normalises, and why, is listed there).  More command-line
-- cases: spec/cli_oracle_spec.lua.
--
-- Behaviour not compared here, and why:
--  - The exact C-stack depth for nested coroutines may differ by one level
--    (a task starts from the scheduler, not from lua.c's pmain); the cases
--    check that the limit and its message are lua5.4's.
--  - os.exit(code, true) inside a pcall: lasync unwinds the main task so
--    that its <close> variables run, and a pcall on the way catches that.
--  - Ctrl-C: spec/cli_spec.lua (it needs a running process).
local helper = require "spec.helper"
local oracle = require "spec.lua54_oracle"
local q = helper.quote

local LUA = oracle.LUA
local have_lua54 = oracle.have_lua54

local mod_ok = [[
local main = not pcall(debug.getlocal, 4, 1)
print("mod loaded", ..., main)
return {answer = 42}
]]

-- Each case: args (shell words after the program), and optionally
-- script (written to script.lua), stdin, env (name = value), files.
local cases = {
  -- options before the script must not skip it
  {"-W before the script", args = "-W script.lua a", script = "print('ran', ...) warn('w1')"},
  {"-E before the script", args = "-E script.lua a b", script = "print('ran', ...)"},
  {"-- before the script", args = "-- script.lua x", script = "print('ran', ...)"},
  {"-v before the script", args = "-v script.lua", script = "print('ran')"},
  {"-E - reads stdin", args = "-E - x y", stdin = "print('stdin', ...)"},
  {"- reads stdin", args = "- a", stdin = "print('stdin', ...)"},
  {"no arguments and a pipe: stdin is the chunk", args = "", stdin = "print('piped')\nprint(#arg, arg[0] ~= nil)"},
  {"-- - runs a file named -", args = "-- -", files = {["-"] = "print('file named dash')"}},
  {"-W -e -W", args = "-W -e \"warn('a', 'b')\" -e \"warn('@off') warn('hidden')\""},
  {"-v alone prints the version and exits", args = "-v"},
  {"-v -e", args = "-v -e 'print(1)'"},
  {"-i implies -v (piped REPL)", args = "-i", stdin = "print(1 + 1)\n"},

  -- -e and -l
  {"-e", args = "-e 'print(1)'"},
  {"-e chunks in order", args = "-e 'x = 1' -e 'print(x + 1)'"},
  {"-e glued to its argument", args = "'-eprint(10)' -ea=3 -e 'print(a)'"},
  {"-e has no varargs", args = "-e 'print(select(\"#\", ...))' script.lua a", script = "print(...)"},
  {"-l mod", args = "-l mod -e 'print(mod.answer)'", files = {["mod.lua"] = mod_ok}},
  {"-l glued", args = "-lmod -e 'print(mod.answer)'", files = {["mod.lua"] = mod_ok}},
  {"-l g=mod", args = "-l g=mod -e 'print(g.answer, mod)'", files = {["mod.lua"] = mod_ok}},
  {"-l standard library into a new global", args = "-l str=string -e 'print(str.upper(\"alo\"))'"},
  {"-l a missing module", args = "-l nosuchmod_xyz"},
  {"-l a module that fails", args = "-l bad -e 'print(\"not reached\")'",
   files = {["bad.lua"] = "local function f() error('mod failed') end\nf()"}},
  {"-l stops at the first error", args = "-e 'print(1)' -e 'error(\"e2\")' -e 'print(3)'"},
  {"a module required from the script is not main", args = "script.lua",
   script = "require 'mod'", files = {["mod.lua"] = mod_ok}},

  -- bad options and usage
  {"--help", args = "--help"},
  {"unknown option", args = "-z"},
  {"--x", args = "--x"},
  {"-W with extra characters", args = "-Wx script.lua", script = "print('no')"},
  {"-vx", args = "-vx"},
  {"-E with extra characters", args = "-Ex"},
  {"-i with extra characters", args = "-ix"},
  {"-e without its argument", args = "-e"},
  {"-e followed by an option", args = "-e -x"},
  {"-l without its argument", args = "-l"},
  {"a bad option after the script is the script's", args = "script.lua -z", script = "print(...)"},

  -- arg and ...
  {"arg with negative indices", args = "-e '' script.lua a b",
   script = "for i = -3, #arg do print(i, arg[i]) end print(...)"},
  {"arg without a script", args = "-e 'for i = -2, 2 do print(i, arg[i]) end'"},
  {"arg with stdin as the script", args = "- p q", stdin = "print(arg[0], arg[1], arg[2], ...)"},
  {"many arguments", args = "script.lua" .. (" a"):rep(40), script = "print(select('#', ...), #arg)"},

  -- chunks failing
  {"an error in the script", args = "script.lua",
   script = "local function inner() error('kaboom') end\nlocal function outer() inner() end\nouter()"},
  {"an error with level 2", args = "script.lua", script = "local function f() error('lvl', 2) end\nf()"},
  {"a runtime error", args = "script.lua", script = "local t = nil\nprint(t.x)"},
  {"an error from -e", args = "-e 'error(\"x\")'"},
  {"an error in stdin", args = "-", stdin = "print('before')\nerror('in stdin')"},
  {"error(nil)", args = "-e 'error()'"},
  {"error(42)", args = "-e 'error(42)'"},
  {"an error table without __tostring", args = "script.lua", script = "error({})"},
  {"an error table with __tostring", args = "script.lua",
   script = "error(setmetatable({}, {__tostring = function() return 'custom' end}))"},
  {"__tostring sees the stack of the error", args = "script.lua",
   script = "local m = setmetatable({}, {__tostring = function()\n  return tostring(debug.getinfo(4).currentline)\nend})\n\nerror(m)"},
  {"__tostring returning a non-string", args = "script.lua",
   script = "error(setmetatable({}, {__tostring = function() return 1 end}))"},
  {"a stack overflow", args = "script.lua", script = "local function f() return 1 + f() end\nf()"},
  {"a syntax error in the script", args = "script.lua", script = "x = = 1"},
  {"a syntax error in -e", args = "-e 'x = '"},
  {"a syntax error at <eof>", args = "script.lua", script = "for i = 1, 2 do"},
  {"a missing script", args = "/nonexistent/dir/script.lua"},
  {"a directory as the script", args = "."},
  {"an error in __close at the end", args = "script.lua",
   script = "local x <close> = setmetatable({}, {__close = function() error('in close') end})\nprint('body')"},
  {"<close> runs at the end of the main chunk", args = "script.lua",
   script = "local x <close> = setmetatable({}, {__close = function(_, e) print('closed', e) end})\nprint('body')"},
  {"a shebang line", args = "script.lua", script = "#!/usr/bin/env lua\nprint(debug.getinfo(1).currentline)"},
  {"the script's return values are ignored", args = "script.lua", script = "return 1, 2"},
  {"'arg' that is not a table", args = "-e 'arg = 1' script.lua", script = "print('no')"},
  {"a traceback taken in the main chunk", args = "script.lua", script = "print(debug.traceback('here'))"},
  {"debug.getinfo of the main chunk", args = "script.lua",
   script = "local i = debug.getinfo(1, 'S') print(i.what, i.short_src)"},

  -- LUA_INIT
  {"LUA_INIT", args = "script.lua 3.5", script = "print(X)", env = {LUA_INIT = "X = tonumber(arg[1])"}},
  {"LUA_INIT_5_4 first", args = "script.lua", script = "print(X)",
   env = {LUA_INIT_5_4 = "X = 10", LUA_INIT = "X = 3"}},
  {"LUA_INIT=@file", args = "script.lua", script = "print(Y)",
   env = {LUA_INIT = "@init.lua"}, files = {["init.lua"] = "Y = 'from init file'"}},
  {"LUA_INIT failing stops the rest", args = "script.lua", script = "print('no')",
   env = {LUA_INIT = "error('msg')"}},
  {"LUA_INIT with a syntax error", args = "-e 'print(1)'", env = {LUA_INIT = "x = = 1"}},
  {"LUA_INIT=@missing", args = "-e 'print(1)'", env = {LUA_INIT = "@no_such_init.lua"}},
  {"-E ignores LUA_INIT and LUA_PATH", args = "-E script.lua",
   script = "print(X, package.path:find('xxx') == nil)", env = {LUA_INIT = "X = 1", LUA_PATH = "xxx"}},
  {"LUA_PATH", args = "script.lua", script = "print(package.path)", env = {LUA_PATH = "x;;"}},

  -- os.exit
  {"os.exit()", args = "-e 'os.exit() print(1)'"},
  {"os.exit(3)", args = "-e 'io.write(\"unflushed\") os.exit(3)'"},
  {"os.exit(true)", args = "-e 'os.exit(true)'"},
  {"os.exit(false)", args = "-e 'os.exit(false)'"},
  {"os.exit(2, true) runs pending <close>", args = "script.lua",
   script = "local x <close> = setmetatable({}, {__close = function(_, e) print('closed', e) end})\nlocal function f() os.exit(2, true) end\nf()\nprint('not reached')"},
  {"os.exit(0, true) runs finalizers", args = "script.lua",
   script = "setmetatable({}, {__gc = function() print('gc') end})\nos.exit(0, true)"},
  {"os.exit(false, true)", args = "-e 'os.exit(false, true)'"},
  {"os.exit(0, true) in a finalizer at close", args = "script.lua",
   script = "print('creating 1')\nsetmetatable({}, {__gc = function() print(1) end})\nsetmetatable({}, {__gc = function() print(2) os.exit(0, true) end})"},

  -- warnings
  {"warnings are off by default", args = "-e 'warn(\"hidden\")'"},
  {"-W turns warnings on", args = "-W -e 'warn(\"a \", \"b\") warn(\"c\")'"},
  {"@on from the script", args = "script.lua", script = "warn('@on') warn('shown') warn('@off') warn('no')"},
  {"an error in a finalizer is a warning", args = "-W script.lua",
   script = "setmetatable({}, {__gc = function() error('in gc') end}) collectgarbage()"},

  -- coroutines in the main chunk
  {"pcall(coroutine.yield) in the main chunk", args = "script.lua",
   script = "print(pcall(coroutine.yield, 1))\nprint('still running')"},
  {"coroutine.running and isyieldable in the main chunk", args = "script.lua",
   script = "local co, main = coroutine.running()\nprint(type(co), main, coroutine.isyieldable(), coroutine.status(co))"},
  {"the main-script idiom in the script", args = "script.lua", script = "print(pcall(debug.getlocal, 4, 1))"},
  {"the main-script idiom in -e", args = "-e 'print(pcall(debug.getlocal, 4, 1))'"},
  {"the main-script idiom in stdin", args = "-", stdin = "print(pcall(debug.getlocal, 4, 1))"},
  {"coroutine.resume argument errors", args = "script.lua",
   script = "print(pcall(coroutine.resume, 1))\nprint(pcall(coroutine.resume))\nprint(pcall(coroutine.close, {}))\ncoroutine.resume(0)"},
  {"resuming dead and running coroutines", args = "script.lua",
   script = [[
local co = coroutine.create(function() return 1 end)
print(coroutine.resume(co))
print(coroutine.resume(co))
local self
self = coroutine.create(function() return coroutine.resume(self) end)
print(coroutine.resume(self))
print(coroutine.resume(coroutine.running()))
print(pcall(coroutine.close, coroutine.running()))
local main = coroutine.running()
print(coroutine.wrap(function() return pcall(coroutine.close, main) end)())
]]},
  {"coroutine.close with pending <close>", args = "script.lua",
   script = [[
local co = coroutine.create(function()
  local x <close> = setmetatable({}, {__close = function() print('closed') end})
  coroutine.yield(1)
end)
print(coroutine.resume(co))
print(coroutine.close(co), coroutine.status(co))
local co2 = coroutine.create(function()
  local x <close> = setmetatable({}, {__close = function() error('close err', 0) end})
  coroutine.yield()
end)
coroutine.resume(co2)
print(coroutine.close(co2))
]]},
  {"coroutine.wrap errors get a position", args = "script.lua",
   script = "local f = coroutine.wrap(function() error('in wrap') end)\nprint(pcall(f))\nf = coroutine.wrap(function() end) f()\nprint(pcall(f))"},
  {"yield across a pcall inside a coroutine", args = "script.lua",
   script = "local co = coroutine.wrap(function() print(pcall(coroutine.yield, 'y')) return 'done' end)\nprint(co())\nprint(co('back'))"},
  {"nested coroutines hit lua5.4's C stack limit", args = "script.lua",
   script = [[
local depth = 0
local function f() depth = depth + 1 return coroutine.wrap(f)() end
local ok, e = pcall(f)
print(ok, e:match("C stack overflow$"), depth > 150, depth < 260)
local function g() return select(2, coroutine.resume(coroutine.create(g))) end
print(g())
]]},

  -- the state as lua.c makes it
  {"generational GC, as lua.c sets it", args = "-e 'print(collectgarbage(\"incremental\"), collectgarbage(\"incremental\"))'"},
  {"_VERSION", args = "-e 'print(_VERSION)'"},
  {"stdin read by the script", args = "script.lua", script = "print(io.read('n', 'l', 'a'))", stdin = "42 rest\nmore\n"},
  {"stdout and stderr", args = "script.lua", script = "io.stderr:write('to stderr\\n') print('to stdout')"},

  -- the REPL (stdin not a terminal: lua5.4 shows each line after its prompt)
  {"REPL: statements and expressions", args = "-i", stdin = "x = 1\nprint(x + 1)\nx\n=x + 10\n1, nil, 'two'\n"},
  {"REPL: continuation lines", args = "-i", stdin = "for i = 1, 2 do\nprint(i)\nend\nlocal s = [[a\nb]] return s\n"},
  {"REPL: errors keep it going", args = "-i", stdin = "error('boom')\nx = = 1\nerror({})\nprint('after')\n"},
  {"REPL: prompts from _PROMPT", args = "-e \"_PROMPT='lua> ' _PROMPT2='...> '\" -i", stdin = "if true then\nprint(1)\nend\n"},
  {"REPL: after the script", args = "-i script.lua a", script = "y = select(1, ...)", stdin = "print(y)\n"},
  {"REPL: print that fails", args = "-i", stdin = "print = nil\n1\n"},
  {"REPL: an unfinished chunk at the end", args = "-i", stdin = "for i = 1, 2 do\n"},
  {"REPL: os.exit", args = "-i", stdin = "print(1)\nos.exit(4)\nprint(2)\n"},
  {"REPL: the main-script idiom and yield", args = "-i", stdin = "pcall(debug.getlocal, 4, 1)\npcall(coroutine.yield)\n"},
}

-- The prefix that makes a stock lua5.4 load asyncio.so from the build
-- (with the sanitizer runtime and the valgrind wrapper when the specs run
-- that way).
local function lua54_with_module()
  local code = ("package.cpath = %q .. '/?.so;' .. package.cpath; require 'asyncio'"):format(helper.module_dir)
  return helper.lua54_cmd() .. " -e " .. q(code)
end

describe("lasync behaves as lua5.4 (differential)", function()
  if not have_lua54() then
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

-- asyncio.so replaces coroutine functions (to guard tasks' threads): in a
-- stock lua5.4 they must still behave as lua5.4's own.
describe("a stock lua5.4 after require 'asyncio' keeps its coroutines (differential)", function()
  if not have_lua54() then return end
  local tmp = oracle.tmpdir()
  before_each(tmp.make)
  after_each(tmp.remove)

  for _, case in ipairs(cases) do
    if case[1]:find("coroutine") and case.script then
      it(case[1], function()
        oracle.prepare({script = case.script}, tmp.path)
        oracle.same_as_lua54(case, tmp.path, lua54_with_module(), LUA)
      end)
    end
  end
end)
