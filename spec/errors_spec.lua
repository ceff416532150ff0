local helper = require "spec.helper"

describe("error classes", function()
  after_each(helper.no_leaks)

  local names = {"CancelledError", "TimeoutError", "InvalidStateError", "QueueEmpty",
                 "QueueFull", "QueueShutDown", "LimitOverrunError", "IncompleteReadError",
                 "BrokenBarrierError", "ExceptionGroup"}

  it("exports every documented class, each deriving from asyncio.Error", function()
    for _, name in ipairs(names) do
      local cls = asyncio[name]
      assert.is_table(cls, name)
      local e = cls("msg")
      assert.is_true(asyncio.is(e, cls), name)
      assert.is_true(asyncio.is(e, asyncio.Error), name)
      assert.are.equal(name .. ": msg", tostring(e))
      assert.are.equal("msg", e.message)
    end
  end)

  it("tells classes apart", function()
    local e = asyncio.TimeoutError("late")
    assert.is_false(asyncio.is(e, asyncio.CancelledError))
    assert.is_false(asyncio.is("a string", asyncio.TimeoutError))
    assert.is_false(asyncio.is(nil, asyncio.TimeoutError))
    assert.is_false(asyncio.is({}, asyncio.TimeoutError))
  end)

  it("prints just the class name without a message", function()
    assert.are.equal("CancelledError", tostring(asyncio.CancelledError()))
  end)

  it("copies extra fields given when made", function()
    local e = asyncio.IncompleteReadError("short", {partial = "ab", expected = 4})
    assert.are.equal("ab", e.partial)
    assert.are.equal(4, e.expected)
  end)

  it("raises runtime errors as class instances that pcall can inspect", function()
    local t = asyncio.create_task(function() asyncio.sleep(1) end)
    local ok, err = pcall(t.result, t)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.InvalidStateError))
    t:cancel()
    pcall(t.await, t)
  end)

  it("passes plain string errors from user code through unchanged", function()
    local t = asyncio.create_task(function() error("just text", 0) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.equal("just text", err)
  end)

  it("asyncio.is wants a class", function()
    local ok, err = pcall(asyncio.is, {}, "TimeoutError")
    assert.is_false(ok)
    assert.matches("error class expected, got string", err)
  end)
end)

describe("OS errors", function()
  after_each(helper.no_leaks)

  -- Python's OSError tree (PEP 3151), as docs/errors.md lists it.
  local tree = {
    OSError = "Error",
    ConnectionError = "OSError",
    ConnectionRefusedError = "ConnectionError",
    ConnectionResetError = "ConnectionError",
    ConnectionAbortedError = "ConnectionError",
    BrokenPipeError = "ConnectionError",
    BlockingIOError = "OSError",
    FileExistsError = "OSError",
    FileNotFoundError = "OSError",
    InterruptedError = "OSError",
    IsADirectoryError = "OSError",
    NotADirectoryError = "OSError",
    PermissionError = "OSError",
    ProcessLookupError = "OSError",
  }

  it("export Python's OSError tree", function()
    for name, parent in pairs(tree) do
      assert.is_table(asyncio[name], name)
      assert.are.equal(asyncio[parent], asyncio[name].parent, name)
      assert.is_true(asyncio.is(asyncio[name]("m"), asyncio.OSError), name)
    end
  end)

  -- A one-shot HTTP server in this process, so resp:save needs no peer.
  local function tiny_http()
    return asyncio.start_server(function(r, w)
      r:readuntil("\r\n\r\n")
      w:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
      w:drain()
      w:close()
    end, "127.0.0.1", 0)
  end

  it("give the same ENOENT the same class and fields from fs, subprocesses and http", function()
    local fs, http = require "asyncio.fs", require "asyncio.http"
    local missing = "/nonexistent-lasync-dir/x"
    local srv <close> = tiny_http()
    local resp = http.fetch(("http://127.0.0.1:%d/"):format(srv.port), {stream = true})
    local errs = {
      open = helper.raises(asyncio.FileNotFoundError, fs.open, missing),
      spawn = helper.raises(asyncio.FileNotFoundError, asyncio.create_subprocess_exec, missing, {}),
      save = helper.raises(asyncio.FileNotFoundError, resp.save, resp, missing),
    }
    resp:close()
    for what, e in pairs(errs) do
      assert.are.equal(asyncio.FileNotFoundError, getmetatable(e), what)
      assert.is_true(asyncio.is(e, fs.Error), what)
      assert.are.equal("ENOENT", e.code, what)
      assert.are.equal(2, e.errno, what)
      assert.are.equal(missing, e.path, what)
    end
    assert.are.equal("spawn", errs.spawn.op)
    assert.are.equal("FileNotFoundError: ENOENT: no such file or directory, open '" .. missing .. "'",
      tostring(errs.open))
    assert.are.equal(tostring(errs.open), tostring(errs.save))
    srv:close()
    srv:wait_closed()
  end)

  it("give a refused connection ConnectionRefusedError in the one message format", function()
    local srv = asyncio.start_server(function() end, "127.0.0.1", 0)
    local port = srv.port
    srv:close()
    srv:wait_closed()
    local e = helper.raises(asyncio.ConnectionRefusedError, asyncio.open_connection, "127.0.0.1", port)
    assert.are.equal("ECONNREFUSED", e.code)
    assert.are.equal("connect", e.op)
    assert.are.equal("ECONNREFUSED: connection refused, connect '127.0.0.1:" .. port .. "'", e.message)
  end)
end)

describe("closed objects", function()
  after_each(helper.no_leaks)

  it("raise InvalidStateError: an fs file, an http session and response", function()
    local fs, http = require "asyncio.fs", require "asyncio.http"
    local path = helper.tmpname(".txt")
    local f = fs.open(path, "w")
    f:close()
    os.remove(path)
    helper.raises(asyncio.InvalidStateError, f.write, f, "x")
    helper.raises(asyncio.InvalidStateError, f.read, f)
    local s = http.Session()
    s:close()
    helper.raises(asyncio.InvalidStateError, s.get, s, "http://127.0.0.1:1/")
  end)
end)
