-- The README, followed as a newcomer would: the code blocks and commands
-- it shows are extracted from README.md and run (the safe ones), so the
-- README cannot drift from what the project does. The commands that
-- install (make install, luarocks make) are checked by
-- spec/c/install_test.sh and spec/c/luarocks_test.sh, which do the same in
-- temporary prefixes.
local helper = require "spec.helper"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local readme = read("README.md")

-- The fenced ```lang blocks, in order: {lang =, text =}.
local function fenced()
  local blocks = {}
  for lang, text in readme:gmatch("\n```(%w*)\n(.-)\n```") do
    blocks[#blocks + 1] = {lang = lang, text = text}
  end
  return blocks
end

-- The first fenced Lua block whose first line contains `marker`.
local function lua_block(marker)
  for _, b in ipairs(fenced()) do
    if b.lang == "lua" and b.text:match("^[^\n]*") :find(marker, 1, true) then return b.text end
  end
  error("no ```lua block starting with " .. marker .. " in README.md")
end

-- The indented (4 spaces or more) command lines, continuation lines joined.
local function indented_commands()
  local cmds, cur = {}, nil
  for line in (readme .. "\n"):gmatch("([^\n]*)\n") do
    local body = line:match("^    +(%S.*)$")
    if body then
      if cur then cur = cur .. " " .. body else cur = body end
      if cur:sub(-1) == "\\" then cur = cur:sub(1, -2) else cmds[#cmds + 1] = cur; cur = nil end
    else
      cur = nil
    end
  end
  return cmds
end

local function command_starting(prefix)
  for _, c in ipairs(indented_commands()) do
    if c:sub(1, #prefix) == prefix then return c end
  end
  error("README.md shows no command starting with " .. prefix)
end

local function in_dir(dir, cmd) return "cd " .. helper.quote(dir) .. " && " .. cmd end

describe("README", function()
  after_each(helper.no_leaks)

  it("points nowhere outside the repository", function()
    assert.is_nil(readme:find("../shared", 1, true))
    for target in readme:gmatch("%]%(([^)#]+)[)#]") do
      if not target:match("^https?:") then
        assert.is_true(io.open(target) ~= nil, "README links to a missing " .. target)
      end
    end
  end)

  it("the first script runs as shown: hello, then world, in about 2 s", function()
    local path = helper.tmpname(".lua")
    helper.write_file(path, lua_block("hello.lua"))
    local t0 = asyncio.time()
    local out, err, status = helper.sh(helper.cmd .. " " .. helper.quote(path))
    local secs = asyncio.time() - t0
    os.remove(path)
    assert.are.equal(0, status, err)
    assert.are.equal("hello\nworld\n", out)
    assert.is_true(secs >= 1.9 and secs < 2.9 * helper.slow, tostring(secs))
  end)

  it("the stock-Lua snippet prints 42 with the LUA_CPATH given for the build tree", function()
    local dir = helper.tmpname("-stock")
    os.execute("mkdir -p " .. helper.quote(dir))
    helper.write_file(dir .. "/stock.lua", lua_block("stock.lua"))
    local cmd = command_starting("LUA_CPATH='build/?.so;;' lua5.4 stock.lua")
    -- run where the README runs it (the top of the tree), with the build
    -- this spec tests (build-asan under the sanitizers) and its wrappers
    cmd = cmd:gsub("build/", helper.module_dir .. "/"):gsub("lua5%.4 stock%.lua",
      helper.lua54_cmd() .. " " .. helper.quote(dir .. "/stock.lua"))
    local out, err, status = helper.sh(cmd)
    os.execute("rm -rf " .. helper.quote(dir))
    assert.are.equal(0, status, err)
    assert.are.equal("42\n", out)
  end)

  it("the embedding compile line against the build tree builds a program that runs", function()
    if (os.getenv("LASYNC_PRELOAD") or "") ~= "" then
      pending("a plain cc cannot link the sanitized library")
      return
    end
    local cmd = command_starting("cc -o sensors ")
    local exe = helper.tmpname("-sensors")
    local build = helper.module_dir
    cmd = cmd:gsub("%-o sensors", "-o " .. helper.quote(exe)):gsub("%-Lbuild", "-L" .. helper.quote(build))
      :gsub('"%$PWD/build"', helper.quote(build))
    local _, err, status = helper.sh(cmd)
    assert.are.equal(0, status, cmd .. "\n" .. err)
    assert.are.equal("./sensors", command_starting("./sensors"))
    local out, err2, status2 = helper.sh(helper.wrapper .. " " .. helper.quote(exe))
    os.remove(exe)
    assert.are.equal(0, status2, err2)
    assert.matches("4 reads in", out)
  end)

  it("the binary's usage block is what lasync prints", function()
    local block = readme:match("\n(    lasync %[options%] %[script %[args%]%]\n.-)\n\n")
    assert.is_truthy(block)
    local _, err = helper.sh(helper.cmd .. " --help")
    local usage = err:match("usage: %S+ (%[options%].*)$")
    local shown = {}
    for l in block:gmatch("[^\n]+") do shown[#shown + 1] = (l:gsub("^    ", "")) end
    local printed = {}
    for l in usage:gmatch("[^\n]+") do
      if not l:match("^Available") then printed[#printed + 1] = l end
    end
    shown[1] = shown[1]:gsub("^lasync ", "")
    assert.are.same(printed, shown)
  end)

  it("the man page renders", function()
    assert.is_truthy(readme:find("man -l docs/lasync.1", 1, true))
    if not os.execute("command -v man >/dev/null") then
      pending("man is not installed")
      return
    end
    local out, _, status = helper.sh("LC_ALL=C MANWIDTH=80 man -l docs/lasync.1")
    assert.are.equal(0, status)
    assert.matches("SYNOPSIS", out)
  end)

  it("every make target it names exists, and every ctest it names", function()
    local makefile = read("Makefile")
    for target in readme:gmatch("`make (%l+)") do
      assert.is_truthy(makefile:find("\n" .. target .. ":", 1, true), "no make target " .. target)
    end
    for _, c in ipairs(indented_commands()) do
      local target = c:match("^make (%l+)") or c:match("^sudo make (%l+)")
      if target then
        assert.is_truthy(makefile:find("\n" .. target .. ":", 1, true), "no make target " .. target)
      end
    end
    for name in readme:gmatch("ctest `([%w_]+)`") do
      assert.is_truthy(read("CMakeLists.txt"):find("NAME " .. name, 1, true), "no ctest " .. name)
    end
  end)

  it("the bad-argument message it quotes is the one sleep raises", function()
    local quoted = readme:match("Bad arguments raise Lua's standard message %(`(.-)`%)")
    assert.is_truthy(quoted)
    local _, err = pcall(asyncio.sleep, "x")
    assert.are.equal((quoted:gsub("%s+", " ")), err)
  end)

  it("says how long make test takes", function()
    assert.matches("`make test` takes about %d+ minutes", readme)
  end)
end)
