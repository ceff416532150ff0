-- The interactive prompt (lasync -i, lasync on a terminal), driven through
-- a real terminal: tmux runs the program in a pseudo-terminal and gives
-- back the screen as a user sees it; spec/fixtures/pty_feed.py types raw
-- bytes for the hostile cases.  lua5.4 -i (built with readline on Debian)
-- is the oracle for what a line prints.
local helper = require "spec.helper"
local q = helper.quote

local function have(cmd)
  local _, _, status = helper.sh("command -v " .. cmd .. " >/dev/null")
  return status == 0
end

local SLOW = helper.slow
-- The environment of every program started here: no LUA_INIT, no user
-- readline configuration.
local ENV = "env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH -u LUA_PATH_5_4 INPUTRC=/dev/null "

-- ---- a program in a tmux pane ------------------------------------------------

local serial = 0
local Pane = {}
Pane.__index = Pane

local function tmux(socket, args)
  local out, err, status = helper.sh("tmux -L " .. socket .. " -f /dev/null " .. args)
  assert(status == 0, "tmux " .. args .. ": " .. err)
  return out
end

-- Starts `cmd` (shell words) in a 120x50 pane; its exit status is written
-- on the screen when it ends ("__status=N").
local function pane(cmd, dir)
  serial = serial + 1
  local socket = ("lasync-repl-%s-%d"):format(helper.tmpname(""):match("[^/]+$"), serial)
  local shell = (dir and ("cd " .. q(dir) .. " && ") or "") .. ENV .. cmd
    .. '; echo "__status=$?"; sleep 600'
  tmux(socket, "new-session -d -x 120 -y 50 " .. q(shell))
  return setmetatable({socket = socket}, Pane)
end

function Pane:screen()
  -- the scrollback too, without the blank lines below the text
  local text = tmux(self.socket, "capture-pane -p -S -1000")
  return (text:gsub("\n+$", "")) .. "\n"
end

-- Waits until the screen matches pattern (a Lua pattern); returns it.
function Pane:wait(pattern, seconds)
  local deadline = asyncio.time() + (seconds or 10) * SLOW
  while true do
    local s = self:screen()
    if s:find(pattern) then return s end
    if asyncio.time() > deadline then
      error(("screen never matched %q:\n%s"):format(pattern, s), 2)
    end
    asyncio.sleep(0.05)
  end
end

function Pane:type(text) tmux(self.socket, "send-keys -l -- " .. q(text)) end
function Pane:key(...) tmux(self.socket, "send-keys " .. table.concat({...}, " ")) end
function Pane:line(text) self:type(text) self:key("Enter") end
function Pane:kill()
  helper.sh("tmux -L " .. self.socket .. " kill-server; rm -f \"${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/"
    .. self.socket .. "\"")
end

-- The number of prompt lines on a screen ("> ..." and ">> ...").
local function prompts(s)
  local n = 0
  for l in s:gmatch("[^\n]*") do
    if l:match("^%w*>>?$") or l:match("^%w*>>? ") then n = n + 1 end
  end
  return n
end

-- The last line of the screen.
local function last_line(s) return s:match("([^\n]*)\n$") end

-- Types each line after the prompt for it was drawn (as a user would).
function Pane:lines(list)
  for _, l in ipairs(list) do
    local before = prompts(self:wait(">%s*\n$"))
    self:line(l)
    local deadline = asyncio.time() + 10 * SLOW
    while prompts(self:screen()) <= before or not self:screen():find(">%s*\n$") do
      assert(asyncio.time() < deadline, "no prompt after " .. l .. ":\n" .. self:screen())
      asyncio.sleep(0.05)
    end
  end
  return self:screen()
end

local LASYNC = helper.cmd

describe("the REPL on a terminal", function()
  if not have("tmux") then
    it("needs tmux (apt-get install tmux)", function() pending("no tmux") end)
    return
  end
  local panes = {}
  local function open(cmd, dir)
    local p = pane(cmd, dir)
    panes[#panes + 1] = p
    return p
  end
  after_each(function()
    for _, p in ipairs(panes) do p:kill() end
    panes = {}
  end)

  -- Lines whose screen must be lua5.4's, prompt for prompt.
  local oracle_lines = {
    "1 + 1",
    "=1, nil, 'two'",
    "nil",
    "return",
    "x = 10",
    "x, x * 2",
    "=x",
    "'a\\tb'",
    "math.maxinteger, 2^53, -0.0, 1/0",
    "setmetatable({}, {__name = 'Thing'})",
    "setmetatable({}, {__tostring = function() return 'custom' end})",
    "error('boom')",
    "error({})",
    "error(setmetatable({}, {__tostring = function() return 'E!' end}))",
    "x = = 1",
    "for i = 1, 2 do",
    "print(i)",
    "end",
    "local t = {",
    "1, 2,",
    "3} return #t",
    "function f(a,",
    "b) return a + b end",
    "f(1, 2)",
    "print((select('#', f(1, 2))))",
    "_PROMPT = 'lua> '",
    "1",
    "_PROMPT = nil",
  }

  local function normalise(s)
    s = s:gsub("0x%x+", "0xADDR")
    s = s:gsub("__status=%d+.*", "")
    -- the banner: lasync's names lasync and libuv before lua.c's line
    s = s:gsub("lasync [%d.]+ %(libuv [%d.]+%) %-%- ", "")
    return s
  end

  it("prints values, errors and continued chunks as lua5.4 -i does", function()
    if not have("lua5.4") then return pending("no lua5.4") end
    local ours = open(LASYNC .. " -i")
    local theirs = open("lua5.4 -i")
    local a = ours:lines(oracle_lines)
    local b = theirs:lines(oracle_lines)
    assert.are.equal(normalise(b), normalise(a))
    -- and the screen is what the user expects, not two empty ones
    assert.matches("\n> 1 %+ 1\n2\n", a)
    assert.matches("\n> =1, nil, 'two'\n1%s+nil%s+two\n", a)
    assert.matches("Thing: 0xADDR", normalise(a))
    assert.matches("stdin:1: boom\nstack traceback:\n", a)
    assert.matches("\n>> print%(i%)\n>> end\n1\n2\n", a)
    assert.matches("\nlua> 1\n1\n", a)
  end)

  it("starts with the banner (lasync and the Lua version) with no arguments", function()
    local p = open(LASYNC)
    local s = p:wait("\n>%s*\n$")
    assert.matches("^lasync [%d.]+ %(libuv [%d.]+%) %-%- Lua 5%.4%.%d+  Copyright", s)
  end)

  it("runs a line that suspends, and only then prompts again", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    local t0 = asyncio.time()
    p:line("local t0 = asyncio.time() asyncio.sleep(0.5) print('slept', asyncio.time() - t0 >= 0.5) return 'done'")
    local s = p:wait("\ndone\n>%s*\n$")
    assert.is_true(asyncio.time() - t0 >= 0.5)
    -- no prompt was drawn while the line slept
    assert.are.equal(2, prompts(s))
  end)

  it("keeps tasks of earlier lines running while the prompt waits and while a line sleeps", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    p:line("n = 0 t = asyncio.create_task(function() while true do n = n + 1 print('tick ' .. n) asyncio.sleep(0.05) end end)")
    -- typed but not entered: the line being typed stays below the output
    p:type("local typed = 1")
    local s = p:wait("tick 10\n.*typed = 1\n$")
    assert.are.equal("> local typed = 1", last_line(s))
    s = p:wait("tick 20\n.*\n> local typed = 1\n$")
    -- the prompt is drawn once, at the bottom, whatever was printed above it
    local _, count = s:gsub("> local typed", "")
    assert.are.equal(1, count)
    -- finish that line, then one that suspends: the ticks go on meanwhile
    p:key("C-u")
    -- (waits for five ticks: a fixed 0.5 s saw fewer on a loaded machine)
    p:line("local k = n repeat asyncio.sleep(0.05) until n - k >= 5 print('during', n - k >= 5)")
    p:wait("during%s+true\n")
    p:line("t:cancel()")
    p:line("=t:cancelled(), n > 20")
    p:wait("\ntrue%s+true\n>%s*\n$")
  end)

  it("puts output without a newline above the prompt too", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    -- the task writes when told (a file appears), once "abc" is typed: a
    -- loaded machine typed it after the task's fixed 0.3 s had passed
    local go = helper.tmpname(".go")
    p:line(("asyncio.create_task(function() "
      .. "local function go(n) repeat local f = io.open(%q .. n) if f then f:close() return end asyncio.sleep(0.01) until false end "
      .. "go(1) io.write('partial') go(2) io.stderr:write('err\\n') end)"):format(go))
    p:wait("\n>%s*\n$")
    p:type("abc")
    p:wait("\n> abc\n$")
    helper.write_file(go .. "1", "")
    local s = p:wait("\npartial\n> abc\n$")
    assert.are.equal("> abc", last_line(s))
    helper.write_file(go .. "2", "")
    s = p:wait("\npartial\nerr\n> abc\n$")
    os.remove(go .. "1")
    os.remove(go .. "2")
  end)

  it("tries an HTTP request at the prompt while a background task prints", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    p:lines({
      "srv = asyncio.start_server(function(r, w) repeat local l = r:readline() until l == '\\r\\n' or l == '' w:write('HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nhello') w:close() end, '127.0.0.1', 0)",
      "c = asyncio.create_task(function() for i = 1, 1000 do print('count ' .. i) asyncio.sleep(0.1) end end)",
    })
    p:line("asyncio.sleep(0.3) r = asyncio.http.fetch('http://127.0.0.1:' .. srv.port .. '/') return r.status, r.body")
    p:wait("\n200%s+hello\n")
    p:wait("count 5\n")
    p:line("c:cancel() srv:close()")
    p:wait("\n>%s*\n$")
  end)

  it("cancels the running line on Ctrl-C and goes back to the prompt", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    p:line("bg = asyncio.create_task(function() asyncio.sleep(100) end)")
    -- Ctrl-C once the line sleeps (it says so): a fixed pause could end
    -- before the line started on a loaded machine
    p:line("local ok <close> = setmetatable({}, {__close = function() print('closed') end}) print('sleeping') asyncio.sleep(100)")
    p:wait("\nsleeping\n$")
    local t0 = asyncio.time()
    p:key("C-c")
    local s = p:wait("CancelledError[^\n]*Ctrl%-C%)\n>%s*\n$")
    assert.is_true(asyncio.time() - t0 < 5 * SLOW)
    assert.matches("sleeping\n%^C\nclosed\nCancelledError", s)
    -- the REPL and the task of an earlier line are still there
    p:line("=1 + 1, bg:done()")
    p:wait("\n2%s+false\n>%s*\n$")
    -- busy Lua code gets lua.c's "interrupted!"
    p:line("print('spinning') while true do end")
    p:wait("\nspinning\n$")
    p:key("C-c")
    s = p:wait("interrupted!\nstack traceback:.*\n>%s*\n$")
    p:line("=2 + 2")
    p:wait("\n4\n>%s*\n$")
  end)

  it("clears the line typed so far on Ctrl-C at the prompt, as bash", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    p:type("this is not run")
    p:wait("> this is not run\n$")
    p:key("C-c")
    local s = p:wait("> this is not run%^C\n>%s*\n$")
    -- a continued chunk is dropped too: the next prompt is the first one
    p:line("for i = 1, 3 do")
    p:wait(">>%s*\n$")
    p:key("C-c")
    s = p:wait("\n>>%s*%^C\n>%s*\n$")
    p:line("=i")
    s = p:wait("\n> =i\nnil\n>%s*\n$")
    assert.is_nil(s:find("this is not run\n"))
  end)

  it("exits with status 0 on Ctrl-D, with tasks still running", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    p:line("asyncio.create_task(function() while true do asyncio.sleep(0.05) end end)")
    p:wait("\n>%s*\n$")
    local t0 = asyncio.time()
    p:key("C-d")
    p:wait("__status=0")
    assert.is_true(asyncio.time() - t0 < 5 * SLOW)
  end)

  it("exits with os.exit's status", function()
    local p = open(LASYNC)
    p:wait("\n>%s*\n$")
    p:line("os.exit(3)")
    p:wait("__status=3")
    p = open(LASYNC)
    p:wait("\n>%s*\n$")
    p:line("local c <close> = setmetatable({}, {__close = function() print('unwound') end}) os.exit(5, true)")
    p:wait("unwound\n__status=5")
  end)

  it("leaves the terminal usable after os.exit from a task while the prompt waits", function()
    local p = open("sh -c " .. q(LASYNC .. " ; stty -a | grep -o -- '-\\?icanon' ; echo end"))
    p:wait("\n>%s*\n$")
    p:line("asyncio.create_task(function() asyncio.sleep(0.3) os.exit(7) end)")
    local s = p:wait("\nend\n")
    assert.matches("\nicanon\n", s) -- not "-icanon": readline's raw mode is undone
  end)

  it("runs a script first with -i, then prompts", function()
    local dir = helper.tmpname("")
    assert(os.execute("mkdir -p " .. q(dir)))
    helper.write_file(dir .. "/script.lua", [[
      greeting = "hi from " .. arg[0] .. " " .. select(1, ...)
      ticker = asyncio.create_task(function() asyncio.sleep(0.2) print("script task ran") end)
    ]])
    local p = open(LASYNC .. " -i script.lua arg1", dir)
    local s = p:wait("\n>%s*\n$")
    assert.matches("^lasync [%d.]+", s) -- -i shows the banner, as lua.c's
    p:wait("script task ran\n>%s*\n$")
    p:line("=greeting")
    p:wait("\nhi from script.lua arg1\n>%s*\n$")
    os.execute("rm -rf " .. q(dir))
  end)

  it("recalls earlier lines with the up arrow (history within the session)", function()
    local p = open(LASYNC)
    p:lines({"x = 41", "=x + 1", "for i = 1, 2 do", "y = i end"})
    p:key("Up")
    -- a chunk comes back whole, as lua.c keeps it
    p:wait("> for i = 1, 2 do\ny = i end\n$")
    p:key("Up")
    p:wait("> return x %+ 1\n$") -- lua.c keeps "=x + 1" as what it ran
    p:key("Up")
    p:wait("> x = 41\n$")
    p:key("Enter")
    p:line("=x")
    p:wait("\n41\n>%s*\n$")
  end)

  it("reports EOF in the middle of a chunk and prompts again (Ctrl-D at >>)", function()
    local p = open(LASYNC)
    p:lines({"for i = 1, 2 do"})
    p:key("C-d")
    p:wait("\n>%s*\n$")
    p:line("=40 + 2")
    p:wait("\n42\n>%s*\n$")
    p:key("C-d")
    p:wait("__status=0")
  end)
end)

describe("the REPL with stdin not a terminal", function()
  it("reads a script from a pipe with -, as lua5.4", function()
    local out, err, status = helper.sh("echo 'print(1) print(...)' | " .. ENV .. LASYNC .. " - a b")
    assert.are.same({"1\na\tb\n", "", 0}, {out, err, status})
  end)

  it("runs a file on stdin with no arguments, as lua5.4", function()
    local path = helper.tmpname(".lua")
    helper.write_file(path, "asyncio.sleep(0.05) print('from a file', #arg)\n")
    local out, err, status = helper.sh(ENV .. LASYNC .. " < " .. q(path))
    local out54 = helper.sh(ENV .. "lua5.4 -e 'asyncio = {sleep = function() end}' - < " .. q(path))
    os.remove(path)
    assert.are.same({"from a file\t0\n", "", 0}, {out, err, status})
    assert.are.equal(out54, out)
  end)

  it("runs tasks of earlier lines while it waits for the next piped line", function()
    -- the second line is sent once "bg ran" is out (or after 10 s): a
    -- fixed pause could end before a loaded machine had started lasync
    local file = helper.tmpname(".out")
    local _, err, status = helper.sh("(echo 'asyncio.create_task(function() asyncio.sleep(0.1) print(\"bg ran\") end)'; "
      .. "i=0; while [ $i -lt " .. 1000 * SLOW .. " ] && ! grep -q '> bg ran' " .. q(file) .. "; do sleep 0.01; i=$((i+1)); done; "
      .. "echo 'print(\"second\")') | " .. ENV .. LASYNC .. " -i > " .. q(file))
    local out = helper.read_file(file)
    os.remove(file)
    assert.are.equal(0, status, err)
    -- "bg ran" came while the REPL waited for the second line
    assert.matches("\n> bg ran\nprint%(\"second\"%)\nsecond\n> \n$", out)
  end)

  it("reads a line of 1 MiB from a pipe", function()
    local path = helper.tmpname(".txt")
    helper.write_file(path, ("x = '%s'\n=#x\n"):format(("a"):rep(1024 * 1024)))
    local out, err, status = helper.sh(ENV .. LASYNC .. " -i < " .. q(path) .. " | tail -c 20")
    os.remove(path)
    assert.are.same({"\n> =#x\n1048576\n> \n", "", 0}, {out:match("\n> =#x.*$"), err, status})
  end)

  it("keeps NUL bytes of a piped line (lua.c would cut the line there)", function()
    local out, err, status = helper.sh("printf 'print(\"a\\000b\")\\n=#\"x\\000y\"\\n' | " .. ENV .. LASYNC .. " -i")
    assert.are.equal(0, status, err)
    assert.matches("\na%zb\n", out)
    assert.matches("\n3\n", out)
  end)

  it("reports an unfinished chunk at the end of the input and exits 0", function()
    local out, err, status = helper.sh("printf 'for i = 1, 2 do\\nprint(i)\\n' | " .. ENV .. LASYNC .. " -i")
    assert.are.equal(0, status)
    assert.matches(">> print%(i%)\n>> ", out)
    assert.are.equal("(null)\n", err) -- lua.c's own message there
  end)
end)

-- Raw bytes typed on a real terminal (spec/fixtures/pty_feed.py).
describe("the REPL on a terminal, against hostile input", function()
  if not have("python3") then return end
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
  local feeder = here .. "/fixtures/pty_feed.py"

  local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

  -- steps: {"send", bytes} / {"expect", bytes} / {"sleep", seconds}
  local function feed(steps)
    local path = helper.tmpname(".steps")
    local lines = {"timeout " .. 60 * SLOW}
    for _, s in ipairs(steps) do
      lines[#lines + 1] = s[1] .. " " .. (s[1] == "sleep" and tostring(s[2] * SLOW) or hex(s[2]))
    end
    helper.write_file(path, table.concat(lines, "\n") .. "\n")
    local out, err, status = helper.sh("python3 " .. q(feeder) .. " " .. q(path) .. " -- "
      .. "env -u LUA_INIT -u LUA_INIT_5_4 INPUTRC=/dev/null TERM=xterm sh -c " .. q("exec " .. LASYNC))
    os.remove(path)
    assert.are.equal(0, status, err)
    local exit = tonumber(out:match("__exit=(%d+)\n$"))
    assert.is_not_nil(exit, "pty_feed: " .. out:sub(-2000))
    return out, exit
  end

  it("takes a line of 1 MiB typed at the prompt", function()
    -- readline redraws the line as it grows: under the sanitizers and
    -- valgrind, smaller ones
    local n = SLOW >= 10 and 8 * 1024 or SLOW > 1 and 64 * 1024 or 1024 * 1024
    local out, exit = feed({
      {"expect", "> "},
      {"send", ("x = '%s'\r"):format(("a"):rep(n))},
      {"send", "#x\r"},
      {"expect", tostring(n) .. "\r\n"},
      {"expect", "> "}, -- Ctrl-D typed while a line runs is the terminal's
      {"send", "\4"},
    })
    assert.are.equal(0, exit)
    assert.matches("%D" .. n .. "\r\n", out)
  end)

  it("survives NUL bytes and binary garbage, then runs the next line", function()
    -- deterministic garbage: every byte readline takes as text (invalid
    -- UTF-8 included), NUL, tab and carriage return (each runs what came
    -- before as a line: syntax errors).  Control keys are the next test's:
    -- readline 8.2's callback interface was seen to crash on a stream of
    -- random ones (README, "Interactive prompt").
    local bytes, seed = {}, 12345
    for _ = 1, 20000 do
      seed = (seed * 1103515245 + 12345) % 2147483648
      local b = seed // 65536 % 256
      if b >= 0x20 or b == 0 or b == 9 or b == 13 then bytes[#bytes + 1] = string.char(b) end
    end
    local out, exit = feed({
      {"expect", "> "},
      {"send", "print('a\0b' .. #'\0\0')\r"},
      {"expect", "ab0\r\n"},
      {"expect", "> "}, -- keys typed while a line runs are the terminal's
      {"send", table.concat(bytes)},
      {"sleep", 0.5},
      {"send", "\3"}, -- Ctrl-C: drop what is left of the garbage
      {"sleep", 0.3},
      {"send", "print('al' .. 'ive')\r"},
      {"expect", "alive\r\n"},
      {"expect", "> "},
      {"send", "\4"},
    })
    assert.matches("stdin:1: unexpected symbol near", out)
    assert.matches("alive\r\n", out) -- the line typed was print('al' .. 'ive')
    assert.are.equal(0, exit)
  end)

  it("takes editing keys, searches and completion, then runs the next line", function()
    local out, exit = feed({
      {"expect", "> "},
      {"send", "x = 'found it'\r"},
      {"expect", "> "},
      {"send", "\18found"}, -- Ctrl-R: reverse search
      {"sleep", 0.2},
      {"send", "\7"}, -- Ctrl-G: abort it
      {"send", "pri\t\t"}, -- completion (file names)
      {"sleep", 0.2},
      {"send", "\1\11"}, -- Ctrl-A Ctrl-K: kill the line
      {"send", "\27[A\27[B\27[C\27[D\27[3~\27b\27f"}, -- arrows, delete, words
      {"send", "\21"}, -- Ctrl-U
      {"send", "=x\r"},
      {"expect", "found it\r\n"},
      {"expect", "> "},
      {"send", "\4"},
    })
    assert.matches("\nfound it\r\n", out)
    assert.are.equal(0, exit)
  end)

  -- readline 8.2 in callback mode crashes when a prefix key (C-x, ESC)
  -- arrives during a search (Debian's python3 -i does too): the host ends
  -- the search first (host/repl_input.c, search_safe_getc)
  it("survives a prefix key typed during a Ctrl-R search", function()
    local out, exit = feed({
      {"expect", "> "},
      {"send", "y = 'kept'\r"},
      {"expect", "> "},
      {"send", "\18kep\24\21"}, -- Ctrl-R kep, Ctrl-X Ctrl-U (undo)
      {"sleep", 0.2},
      {"send", "\18kep\27b\1\11"}, -- Ctrl-R kep, ESC b, Ctrl-A Ctrl-K
      {"sleep", 0.2},
      {"send", "=y\r"},
      {"expect", "kept\r\n"},
      {"expect", "> "},
      {"send", "\4"},
    })
    assert.truthy(out:find("kept\r\n", 1, true)) -- =y printed its value
    assert.are.equal(0, exit)
  end)
end)
