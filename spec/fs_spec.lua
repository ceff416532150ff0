local helper = require "spec.helper"
local fs = require "asyncio.fs"

-- Open descriptors of this process (listdir itself holds one while it
-- scans, the same one every time).
local function nfds()
  return #fs.listdir("/proc/self/fd")
end

-- Waits (requests detached by cancellation finish on the thread pool)
-- until the descriptor count is back to `base`; returns the last count.
local function settle(base)
  local deadline = asyncio.time() + 2 * helper.slow
  local n = nfds()
  while n ~= base and asyncio.time() < deadline do
    asyncio.sleep(0.01)
    n = nfds()
  end
  return n
end

local function expect_fs_error(code, op, path, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.is_true(asyncio.is(err, fs.Error), "not an fs.Error: " .. tostring(err))
  assert.is_true(asyncio.is(err, asyncio.OSError))
  assert.is_true(asyncio.is(err, asyncio.Error))
  assert.are.equal(code, err.code)
  if op then assert.are.equal(op, err.op) end
  if path then assert.are.equal(path, err.path) end
  return err
end

local function mkfifo(path)
  assert.is_true(os.execute("mkfifo " .. helper.quote(path)))
end

local function cancel_and_check(task)
  asyncio.sleep(0.05 * helper.slow) -- let it reach the thread pool
  assert.is_false(task:done())
  local t0 = asyncio.time()
  task:cancel()
  local ok, err = pcall(task.await, task)
  assert.is_false(ok)
  assert.is_true(asyncio.is(err, asyncio.CancelledError), tostring(err))
  assert.is_true(asyncio.time() - t0 < 0.5 * helper.slow, "cancellation was not immediate")
end

describe("asyncio.fs", function()
  local dir
  before_each(function()
    dir = helper.tmpname(".d")
    fs.mkdir(dir)
  end)
  after_each(function()
    os.execute("rm -rf " .. helper.quote(dir))
    helper.no_leaks()
  end)

  describe("whole files", function()
    it("write_file and read_file round-trip any bytes", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local data = table.concat(bytes):rep(4000) -- ~1 MiB, NULs included
      fs.write_file(dir .. "/b", data)
      assert.are.equal(data, fs.read_file(dir .. "/b"))
      fs.write_file(dir .. "/e", "")
      assert.are.equal("", fs.read_file(dir .. "/e"))
      assert.are.equal(0, fs.stat(dir .. "/e").size)
    end)

    it("write_file truncates, append_file appends and creates", function()
      fs.write_file(dir .. "/f", "long old content")
      fs.write_file(dir .. "/f", "new")
      assert.are.equal("new", fs.read_file(dir .. "/f"))
      fs.append_file(dir .. "/f", "+1")
      fs.append_file(dir .. "/f", "+2")
      assert.are.equal("new+1+2", fs.read_file(dir .. "/f"))
      fs.append_file(dir .. "/g", "fresh")
      assert.are.equal("fresh", fs.read_file(dir .. "/g"))
    end)

    it("write_file sets the mode of a new file", function()
      fs.write_file(dir .. "/m", "x", {mode = tonumber("600", 8)})
      assert.are.equal(tonumber("600", 8), fs.stat(dir .. "/m").mode)
      fs.write_file(dir .. "/ma", "x", {atomic = true, mode = tonumber("640", 8)})
      assert.are.equal(tonumber("640", 8), fs.stat(dir .. "/ma").mode)
    end)

    it("read_file reads files whose size stat does not know", function()
      local text = fs.read_file("/proc/self/status")
      assert.truthy(text:match("Name:"))
    end)

    it("reports errors with the code, the operation and the path", function()
      local e = expect_fs_error("ENOENT", "open", "/nonexistent/x", fs.read_file, "/nonexistent/x")
      assert.are.equal("ENOENT: no such file or directory, open '/nonexistent/x'", e.message)
      assert.are.equal("FileNotFoundError: ENOENT: no such file or directory, open '/nonexistent/x'", tostring(e))
      assert.are.equal(2, e.errno)
      -- fs.Error is asyncio.OSError; each errno has Python's subclass
      assert.are.equal(asyncio.OSError, fs.Error)
      assert.is_true(asyncio.is(e, asyncio.FileNotFoundError))
      assert.is_true(asyncio.is(expect_fs_error("EISDIR", "read", dir, fs.read_file, dir),
        asyncio.IsADirectoryError))
      assert.is_true(asyncio.is(expect_fs_error("EEXIST", "mkdir", dir, fs.mkdir, dir),
        asyncio.FileExistsError))
      assert.is_true(asyncio.is(expect_fs_error("ENOTDIR", "open", dir .. "/f/x",
        function() fs.write_file(dir .. "/f", "") fs.read_file(dir .. "/f/x") end),
        asyncio.NotADirectoryError))
      expect_fs_error("EISDIR", "read", dir, fs.read_file, dir)
      expect_fs_error("ENOENT", "open", dir .. "/no/f", fs.write_file, dir .. "/no/f", "x")
      expect_fs_error("EISDIR", "open", dir, fs.write_file, dir, "x")
      expect_fs_error("ENOENT", "open", dir .. "/no/f", fs.append_file, dir .. "/no/f", "x")
    end)
  end)

  describe("atomic writes", function()
    it("replace the target whole and leave no temp file", function()
      fs.write_file(dir .. "/t", "old")
      fs.write_file(dir .. "/t", "new content", {atomic = true})
      assert.are.equal("new content", fs.read_file(dir .. "/t"))
      assert.are.same({"t"}, fs.listdir(dir))
      fs.write_file(dir .. "/u", "", {atomic = true})
      assert.are.equal("", fs.read_file(dir .. "/u"))
      assert.are.same({"t", "u"}, fs.listdir(dir))
    end)

    it("work on a relative path", function()
      -- the temp file goes beside the target, also without a directory part
      local name = "lasync_fs_rel_" .. tostring(os.time()) .. ".txt"
      fs.write_file(name, "rel", {atomic = true})
      assert.are.equal("rel", fs.read_file(name))
      fs.remove(name)
      assert.is_false(fs.exists(name))
    end)

    it("never let a reader see a half-written file", function()
      local old, new = ("A"):rep(1024 * 1024), ("B"):rep(8 * 1024 * 1024)
      fs.write_file(dir .. "/t", old)
      local writing, reads, seen = true, 0, {}
      local reader = asyncio.create_task(function()
        while writing do
          local s = fs.read_file(dir .. "/t")
          reads = reads + 1
          if s == old then seen.old = true
          elseif s == new then seen.new = true
          else error("half-written content of " .. #s .. " bytes") end
        end
      end)
      for _ = 1, 3 do fs.write_file(dir .. "/t", new, {atomic = true}) end
      writing = false
      reader:await()
      assert.is_true(reads > 0)
      assert.are.equal(new, fs.read_file(dir .. "/t"))
      assert.are.same({"t"}, fs.listdir(dir))
    end)

    it("clean up the temp file when they fail", function()
      fs.mkdir(dir .. "/sub")
      -- renaming a file over a directory fails after the temp file is written
      local e = expect_fs_error("EISDIR", "rename", dir .. "/sub", fs.write_file, dir .. "/sub", "x", {atomic = true})
      assert.truthy(e.message:match("^EISDIR: "))
      assert.are.same({"sub"}, fs.listdir(dir))
      expect_fs_error("ENOENT", "open", dir .. "/none/t", fs.write_file, dir .. "/none/t", "x", {atomic = true})
    end)
  end)

  describe("file objects", function()
    it("read in every format, nil at the end like io", function()
      fs.write_file(dir .. "/r", "line1\nline2\n\nlast")
      local f = fs.open(dir .. "/r")
      assert.are.equal("", f:read(0))
      assert.are.equal("li", f:read(2))
      assert.are.equal("ne1", f:read("l"))
      assert.are.equal("line2\n", f:read("L"))
      assert.are.equal("", f:read("l"))
      assert.are.equal("last", f:read("*l"))
      assert.is_nil(f:read("l"))
      assert.is_nil(f:read(1))
      assert.is_nil(f:read(0))
      assert.are.equal("", f:read("a"))
      assert.are.equal("", f:read())
      assert.are.equal(17, f:seek())
      assert.are.equal(0, f:seek("set"))
      assert.are.equal("line1\nline2\n\nlast", f:read())
      f:seek("set", 12)
      assert.are.equal("\nlast", f:read(100))
      assert.is_true(f:close())
    end)

    it("read(n) larger than the read-ahead and lines longer than it", function()
      local long = ("x"):rep(200 * 1024)
      fs.write_file(dir .. "/big", long .. "\nshort\n" .. long)
      local f = fs.open(dir .. "/big", "rb")
      local got = {}
      for l in f:lines() do got[#got + 1] = l end
      assert.are.same({long, "short", long}, got)
      f:seek("set", 0)
      assert.are.equal(long .. "\nsh", f:read(#long + 3))
      f:close()
    end)

    it("lines() with a format, and with a trailing newline", function()
      fs.write_file(dir .. "/l", "a\nb\n")
      local f = fs.open(dir .. "/l")
      local got = {}
      for l in f:lines("L") do got[#got + 1] = l end
      assert.are.same({"a\n", "b\n"}, got)
      f:seek("set")
      got = {}
      for l in f:lines(1) do got[#got + 1] = l end
      assert.are.same({"a", "\n", "b", "\n"}, got)
      f:close()
    end)

    it("w truncates and creates, write chains and returns the file", function()
      fs.write_file(dir .. "/w", "previous content")
      local f = fs.open(dir .. "/w", "w")
      assert.are.equal(f, f:write("one "):write("two"))
      assert.are.equal(7, f:seek())
      f:close()
      assert.are.equal("one two", fs.read_file(dir .. "/w"))
      local g = fs.open(dir .. "/new", "wb")
      g:write("made")
      g:close()
      assert.are.equal("made", fs.read_file(dir .. "/new"))
    end)

    it("a appends whatever the position, a+ reads too", function()
      fs.write_file(dir .. "/a", "start")
      local f = fs.open(dir .. "/a", "a")
      f:write("-1")
      assert.are.equal(7, f:seek())
      f:seek("set", 0)
      f:write("-2")
      assert.are.equal(9, f:seek())
      f:close()
      assert.are.equal("start-1-2", fs.read_file(dir .. "/a"))
      local g = fs.open(dir .. "/a", "a+")
      g:write("-3")
      g:seek("set", 0)
      assert.are.equal("start-1-2-3", g:read())
      g:close()
    end)

    it("r+ writes in place, w+ reads back what it wrote", function()
      fs.write_file(dir .. "/p", "0123456789")
      local f = fs.open(dir .. "/p", "r+")
      assert.are.equal("012", f:read(3))
      f:write("abc")
      assert.are.equal("678", f:read(3))
      f:seek("end", -1)
      f:write("Z")
      f:close()
      assert.are.equal("012abc678Z", fs.read_file(dir .. "/p"))
      local g = fs.open(dir .. "/p", "w+b")
      g:write("hello")
      assert.is_nil(g:read(1))
      g:seek("set", 1)
      assert.are.equal("ell", g:read(3))
      g:close()
    end)

    it("seek: set, cur, end, past the end, before the start", function()
      fs.write_file(dir .. "/s", "abcdef")
      local f = fs.open(dir .. "/s")
      assert.are.equal(0, f:seek())
      assert.are.equal(6, f:seek("end"))
      assert.are.equal(4, f:seek("end", -2))
      assert.are.equal("ef", f:read(2))
      assert.are.equal(3, f:seek("cur", -3))
      assert.are.equal("d", f:read(1))
      assert.are.equal(1, f:seek("set", 1))
      assert.are.equal("b", f:read(1))
      assert.are.equal(100, f:seek("set", 100))
      assert.is_nil(f:read(1))
      local e = expect_fs_error("EINVAL", "seek", dir .. "/s", f.seek, f, "cur", -1000)
      assert.are.equal("EINVAL: invalid argument, seek '" .. dir .. "/s'", e.message)
      assert.are.equal(100, f:seek())
      f:close()
    end)

    it("reports OS errors of reads and writes with the file's path", function()
      fs.write_file(dir .. "/ro", "x")
      local f = fs.open(dir .. "/ro", "r")
      expect_fs_error("EBADF", "write", dir .. "/ro", f.write, f, "y")
      f:close()
      local w = fs.open(dir .. "/wo", "w")
      expect_fs_error("EBADF", "read", dir .. "/wo", w.read, w, 1)
      w:close()
      local d = fs.open(dir, "r")
      expect_fs_error("EISDIR", "read", dir, d.read, d)
      d:close()
      expect_fs_error("ENOENT", "open", dir .. "/missing", fs.open, dir .. "/missing", "r")
      expect_fs_error("ENOENT", "open", dir .. "/missing", fs.open, dir .. "/missing", "r+")
    end)

    it("a closed file raises InvalidStateError", function()
      local f = fs.open(dir .. "/c", "w")
      assert.truthy(tostring(f):match("^fs%.File %(.*/c%)$"))
      f:close()
      assert.are.equal("fs.File (closed)", tostring(f))
      for _, m in ipairs {"read", "write", "lines", "seek", "close"} do
        local ok, err = pcall(f[m], f, "x")
        assert.is_false(ok)
        assert.is_true(asyncio.is(err, asyncio.InvalidStateError), tostring(err))
        assert.truthy(tostring(err):match("the file is closed"), tostring(err))
      end
    end)

    it("to-be-closed files are closed when the scope ends, also by an error", function()
      local base = nfds()
      local kept
      local ok, err = pcall(function()
        local f <close> = fs.open(dir .. "/tbc", "w")
        kept = f
        f:write("data")
        assert.are.equal(base + 1, nfds())
        error("boom", 0)
      end)
      assert.is_false(ok)
      assert.are.equal("boom", err)
      assert.are.equal("fs.File (closed)", tostring(kept))
      assert.is_false(pcall(kept.read, kept))
      assert.are.equal(base, settle(base))
      assert.are.equal("data", fs.read_file(dir .. "/tbc"))
      do
        local g <close> = fs.open(dir .. "/tbc")
        assert.are.equal("data", g:read())
      end
      assert.are.equal(base, settle(base))
    end)

    it("a collected file closes its descriptor without blocking", function()
      local base = nfds()
      do
        local f = fs.open(dir .. "/gc", "w")
        f:write("x")
        assert.are.equal(base + 1, nfds())
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(base, settle(base))
    end)

    it("queues operations of several tasks on one file", function()
      local f = fs.open(dir .. "/q", "w")
      local tasks = {}
      for i = 1, 4 do
        tasks[i] = asyncio.create_task(function()
          for _ = 1, 50 do f:write(tostring(i)) end
        end)
      end
      asyncio.gather(table.unpack(tasks))
      f:close()
      local s = fs.read_file(dir .. "/q")
      assert.are.equal(200, #s)
      for i = 1, 4 do
        assert.are.equal(50, select(2, s:gsub(tostring(i), "")))
      end
    end)
  end)

  describe("directories and metadata", function()
    it("stat tells type, size, mode and times; lstat sees links", function()
      fs.write_file(dir .. "/f", "12345")
      local before = os.time()
      local s = fs.stat(dir .. "/f")
      assert.are.equal("file", s.type)
      assert.are.equal(5, s.size)
      assert.are.equal("number", math.type(s.mode) and "number")
      assert.is_true(math.abs(s.mtime - before) < 5)
      assert.is_true(math.abs(s.atime - before) < 5)
      assert.is_true(math.abs(s.ctime - before) < 5)
      assert.are.equal("directory", fs.stat(dir).type)
      assert.is_true(os.execute("ln -s f " .. helper.quote(dir .. "/link")))
      assert.are.equal("file", fs.stat(dir .. "/link").type)
      assert.are.equal("link", fs.lstat(dir .. "/link").type)
      mkfifo(dir .. "/fifo")
      assert.are.equal("fifo", fs.stat(dir .. "/fifo").type)
      assert.are.equal("char", fs.stat("/dev/null").type)
      expect_fs_error("ENOENT", "stat", dir .. "/nope", fs.stat, dir .. "/nope")
      expect_fs_error("ENOTDIR", "stat", dir .. "/f/x", fs.stat, dir .. "/f/x")
      expect_fs_error("ENOENT", "lstat", dir .. "/nope", fs.lstat, dir .. "/nope")
    end)

    it("exists", function()
      fs.write_file(dir .. "/f", "")
      assert.is_true(fs.exists(dir))
      assert.is_true(fs.exists(dir .. "/f"))
      assert.is_false(fs.exists(dir .. "/g"))
      assert.is_false(fs.exists(dir .. "/f/under-a-file"))
    end)

    it("mkdir, with parents like mkdir -p, and its errors", function()
      fs.mkdir(dir .. "/one")
      assert.are.equal("directory", fs.stat(dir .. "/one").type)
      expect_fs_error("EEXIST", "mkdir", dir .. "/one", fs.mkdir, dir .. "/one")
      expect_fs_error("ENOENT", "mkdir", dir .. "/x/y", fs.mkdir, dir .. "/x/y")
      fs.mkdir(dir .. "/x/y//z/", {parents = true})
      assert.are.equal("directory", fs.stat(dir .. "/x/y/z").type)
      fs.mkdir(dir .. "/x/y/z", {parents = true}) -- exists: fine
      fs.mkdir(dir, {parents = true})
      fs.write_file(dir .. "/file", "")
      expect_fs_error("EEXIST", "mkdir", dir .. "/file", fs.mkdir, dir .. "/file", {parents = true})
      expect_fs_error("ENOTDIR", "mkdir", dir .. "/file/sub", fs.mkdir, dir .. "/file/sub", {parents = true})
      fs.mkdir(dir .. "/private", {mode = tonumber("700", 8)})
      assert.are.equal(tonumber("700", 8), fs.stat(dir .. "/private").mode)
    end)

    it("listdir returns sorted names without . and ..", function()
      assert.are.same({}, fs.listdir(dir))
      for _, n in ipairs {"b", "a", "C", "c10", "c2"} do fs.write_file(dir .. "/" .. n, "") end
      fs.mkdir(dir .. "/d")
      assert.are.same({"C", "a", "b", "c10", "c2", "d"}, fs.listdir(dir))
      expect_fs_error("ENOENT", "scandir", dir .. "/none", fs.listdir, dir .. "/none")
      expect_fs_error("ENOTDIR", "scandir", dir .. "/a", fs.listdir, dir .. "/a")
    end)

    it("remove deletes files and empty directories", function()
      fs.write_file(dir .. "/f", "")
      fs.mkdir(dir .. "/d")
      fs.write_file(dir .. "/d/inner", "")
      fs.remove(dir .. "/f")
      assert.is_false(fs.exists(dir .. "/f"))
      expect_fs_error("ENOTEMPTY", "rmdir", dir .. "/d", fs.remove, dir .. "/d")
      fs.remove(dir .. "/d/inner")
      fs.remove(dir .. "/d")
      assert.is_false(fs.exists(dir .. "/d"))
      expect_fs_error("ENOENT", "unlink", dir .. "/f", fs.remove, dir .. "/f")
    end)

    it("rename moves and reports both paths", function()
      fs.write_file(dir .. "/a", "content")
      fs.rename(dir .. "/a", dir .. "/b")
      assert.are.equal("content", fs.read_file(dir .. "/b"))
      assert.is_false(fs.exists(dir .. "/a"))
      local e = expect_fs_error("ENOENT", "rename", dir .. "/a", fs.rename, dir .. "/a", dir .. "/c")
      assert.are.equal(dir .. "/c", e.dest)
      assert.are.equal("ENOENT: no such file or directory, rename '" .. dir .. "/a' -> '" .. dir .. "/c'", e.message)
    end)
  end)

  describe("bad arguments", function()
    local function bad(pattern, fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok)
      assert.truthy(tostring(err):match(pattern), tostring(err))
    end

    it("use Lua's wording", function()
      bad("bad argument #1 to '.-read_file' %(string expected, got no value%)", fs.read_file)
      bad("bad argument #1 to '.-stat' %(string expected, got table%)", fs.stat, {})
      bad("bad argument #2 to '.-write_file' %(string expected, got table%)", fs.write_file, dir .. "/x", {})
      bad("bad argument #3 to '.-write_file' %(table expected, got string%)", fs.write_file, dir .. "/x", "", "atomic")
      bad("bad argument #3 to '.-write_file' %(field 'mode' must be an integer", fs.write_file, dir .. "/x", "", {mode = "rw"})
      bad("bad argument #2 to '.-mkdir' %(table expected, got boolean%)", fs.mkdir, dir .. "/x", true)
      bad("bad argument #1 to '.-open' %(string contains a NUL byte%)", fs.open, dir .. "/a\0b")
      bad("bad argument #2 to '.-open' %(invalid mode 'rw'%)", fs.open, dir .. "/x", "rw")
      bad("bad argument #2 to '.-open' %(invalid mode 'r%+%+'%)", fs.open, dir .. "/x", "r++")
      bad("bad argument #2 to '.-rename' %(string expected, got nil%)", fs.rename, dir .. "/x", nil)
      fs.write_file(dir .. "/f", "abc")
      local f = fs.open(dir .. "/f")
      bad("bad argument #1 to 'read' %(invalid format%)", function() return f:read("x") end)
      bad("bad argument #1 to 'read' %(negative count%)", function() return f:read(-1) end)
      bad("bad argument #1 to 'seek' %(invalid option 'middle'%)", function() return f:seek("middle") end)
      bad("bad argument #1 to 'write' %(string expected, got table%)", function() return f:write({}) end)
      bad("bad argument #1 to 'read' %(asyncio.fs.File expected, got FILE%*%)", function() return f.read(io.stdout) end)
      f:close()
      assert.are.equal(0, #fs.listdir(dir) - 1) -- nothing was created
    end)

    it("fs operations outside a task say so", function()
      local ok, err = coroutine.wrap(function() return pcall(fs.read_file, "/etc/hostname") end)()
      assert.is_false(ok)
      assert.truthy(tostring(err):match("read_file%(%) called outside a task"))
    end)
  end)

  describe("the thread pool", function()
    it("keeps the loop running while a 50 MiB write is in flight", function()
      local data = ("z"):rep(50 * 1024 * 1024)
      local ticks, done = 0, false
      local ticker = asyncio.create_task(function()
        while not done do asyncio.sleep(0.001); ticks = ticks + 1 end
      end)
      asyncio.sleep(0.005)
      local start = ticks
      fs.write_file(dir .. "/big", data)
      local during = ticks - start
      start = ticks
      local back = fs.read_file(dir .. "/big")
      local during_read = ticks - start
      done = true
      ticker:await()
      assert.are.equal(#data, #back)
      assert.is_true(back == data)
      assert.is_true(during >= 3, "only " .. during .. " ticks during the write")
      assert.is_true(during_read >= 1, "no tick during the read")
    end)
  end)

  describe("cancellation", function()
    it("of a task blocked in open: CancelledError at once, the late descriptor is closed", function()
      local fifo = dir .. "/fifo"
      mkfifo(fifo)
      local base = nfds()
      -- opening a FIFO for reading blocks until a writer comes
      local t = asyncio.create_task(fs.open, fifo, "r")
      cancel_and_check(t)
      local w = fs.open(fifo, "w") -- lets the detached open finish
      w:close()
      assert.are.equal(base, settle(base))
    end)

    it("of a task blocked in read: the file stays usable", function()
      local fifo = dir .. "/fifo"
      mkfifo(fifo)
      local base = nfds()
      local f = fs.open(fifo, "r+") -- O_RDWR: does not wait for a writer
      local t = asyncio.create_task(f.read, f, 5)
      cancel_and_check(t)
      local w = fs.open(fifo, "w")
      w:write("lost!") -- the detached read takes these
      asyncio.sleep(0.05 * helper.slow)
      local again = asyncio.create_task(f.read, f, 5)
      asyncio.sleep(0.02 * helper.slow)
      w:write("hello")
      assert.are.equal("hello", again:await())
      w:close()
      f:close()
      assert.are.equal(base, settle(base))
    end)

    it("of a task blocked in write: the file stays usable", function()
      local fifo = dir .. "/fifo"
      mkfifo(fifo)
      local base = nfds()
      local r = fs.open(fifo, "r+")
      local w = fs.open(fifo, "w")
      local big = ("w"):rep(1024 * 1024) -- far more than a pipe holds
      local t = asyncio.create_task(w.write, w, big)
      cancel_and_check(t)
      local tail = asyncio.create_task(function() w:write("tail") end)
      local got, total = {}, 0
      while total < #big + 4 do
        local s = r:read(math.min(65536, #big + 4 - total))
        got[#got + 1] = s
        total = total + #s
      end
      tail:await()
      local all = table.concat(got)
      assert.are.equal(big .. "tail", all)
      w:close()
      r:close()
      assert.are.equal(base, settle(base))
    end)

    it("of a task waiting for its turn on a busy file", function()
      local fifo = dir .. "/fifo"
      mkfifo(fifo)
      local f = fs.open(fifo, "r+")
      local first = asyncio.create_task(f.read, f, 3)
      asyncio.sleep(0.02 * helper.slow)
      local second = asyncio.create_task(f.read, f, 3)
      local third = asyncio.create_task(f.read, f, 3)
      cancel_and_check(second)
      local w = fs.open(fifo, "w")
      w:write("abc")
      assert.are.equal("abc", first:await())
      w:write("def")
      assert.are.equal("def", third:await())
      w:close()
      f:close()
    end)

    it("of whole-file operations in flight leaves no descriptor and no temp file", function()
      local big = ("q"):rep(4 * 1024 * 1024)
      fs.write_file(dir .. "/src", big)
      local base = nfds()
      local outcomes = {}
      for i = 1, 12 do
        local op = i % 3
        local t = asyncio.create_task(function()
          if op == 0 then return fs.read_file(dir .. "/src")
          elseif op == 1 then return fs.write_file(dir .. "/dst", big, {atomic = true})
          else return fs.write_file(dir .. "/plain", big) end
        end)
        for _ = 1, i % 4 do asyncio.sleep(0) end
        t:cancel()
        local ok, err = pcall(t.await, t)
        outcomes[#outcomes + 1] = ok and "done" or (asyncio.is(err, asyncio.CancelledError) and "cancelled" or tostring(err))
      end
      for _, o in ipairs(outcomes) do
        assert.truthy(o == "done" or o == "cancelled", o)
      end
      assert.are.equal(base, settle(base))
      -- temp files of cancelled atomic writes are removed
      local deadline = asyncio.time() + 2 * helper.slow
      local names
      repeat
        names = fs.listdir(dir)
        local tmp = false
        for _, n in ipairs(names) do if n:match("%.tmp$") then tmp = true end end
        if tmp then asyncio.sleep(0.01) end
      until not tmp or asyncio.time() > deadline
      for _, n in ipairs(names) do assert.is_nil(n:match("%.tmp$"), n) end
      if fs.exists(dir .. "/dst") then
        assert.is_true(fs.read_file(dir .. "/dst") == big, "half-written atomic target")
      end
    end)
  end)

  describe("under a stock lua5.4", function()
    it("asyncio.so serves require 'asyncio.fs'", function()
      local p = dir .. "/stock.txt"
      local script = ([[
        local asyncio = require "asyncio"
        local fs = require "asyncio.fs"
        asyncio.run(function()
          fs.write_file(%q, "from stock lua", {atomic = true})
          local f <close> = fs.open(%q)
          io.write(f:read("l"), "|", tostring(fs.exists(%q)), "|")
          local ok, e = pcall(fs.stat, "/nonexistent")
          io.write(e.code, "|", tostring(asyncio.is(e, fs.Error)))
        end)
      ]]):format(p, p, p)
      local out, err, status = helper.lua54(script)
      assert.are.equal("", err)
      assert.are.equal(0, status)
      assert.are.equal("from stock lua|true|ENOENT|true", out)
    end)
  end)
end)
