-- CPython's Lib/test/test_asyncio/test_streams.py (3.13), restated for
-- lasync.  Each `it` names the CPython test it comes from.  The reader
-- tests use asyncio.StreamReader() fed from Lua (feed_data/feed_eof), as
-- CPython's do; the connection tests use lasync servers on loopback.
local helper = require "spec.helper"
local io_helper = require "spec.iohelper"

local DATA = "line1\nline2\nline3\n"

local raises = helper.raises

-- On the next loop turn (CPython's loop.call_soon), feeds stream reader s
-- each of the chunks in turn; EOF among them is feed_eof().
local EOF = {}
local function feed_soon(s, ...)
  local chunks = table.pack(...)
  asyncio.call_soon(function()
    for i = 1, chunks.n do
      if chunks[i] == EOF then s:feed_eof() else s:feed_data(chunks[i]) end
    end
  end)
end

-- A server on loopback answering one HTTP/1.0 request as CPython's
-- run_test_server does ("HTTP/1.0 200 OK ... Test message").
local function test_server()
  local srv = asyncio.start_server(function(r, w)
    while true do
      local line = r:readline()
      if line == "" or line == "\r\n" then break end
    end
    w:write("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nTest message")
    w:drain()
    w:close()
  end, "127.0.0.1", 0)
  return srv, srv.port
end

-- Starts test_server(), connects, sends a GET and checks the status line
-- that comes back; returns the server and the connection's reader, writer.
local function get_status_line()
  local srv, port = test_server()
  local r, w = asyncio.open_connection("127.0.0.1", port)
  w:write("GET / HTTP/1.0\r\n\r\n")
  assert.are.equal("HTTP/1.0 200 OK\r\n", r:readline())
  return srv, r, w
end

local stop = io_helper.close_server

describe("test_streams (StreamTests): reading a fed StreamReader", function()
  after_each(helper.no_leaks)

  it("test_feed_empty_data: feeding '' leaves the buffer empty", function()
    local s = asyncio.StreamReader()
    s:feed_data("")
    assert.are.equal(0, s:buffered())
  end)

  it("test_feed_nonempty_data: fed bytes are buffered as given", function()
    local s = asyncio.StreamReader()
    s:feed_data(DATA)
    assert.are.equal(#DATA, s:buffered())
    assert.are.equal(DATA, s:read(100))
  end)

  it("test_read_zero: read(0) returns '' and leaves the buffer", function()
    local s = asyncio.StreamReader()
    s:feed_data(DATA)
    assert.are.equal("", s:read(0))
    assert.are.equal(#DATA, s:buffered())
  end)

  it("test_read: read(30) waits for data fed later", function()
    local s = asyncio.StreamReader()
    local t = asyncio.create_task(function() return s:read(30) end)
    feed_soon(s, DATA)
    assert.are.equal(DATA, t:await())
    assert.are.equal(0, s:buffered())
  end)

  it("test_read_line_breaks: read(5) returns at most 5 bytes across feeds", function()
    local s = asyncio.StreamReader()
    s:feed_data("line1")
    s:feed_data("line2")
    assert.are.equal("line1", s:read(5))
    assert.are.equal(5, s:buffered())
    assert.are.equal("line2", s:read(5))
  end)

  it("test_read_eof: read(n) at EOF returns ''", function()
    local s = asyncio.StreamReader()
    local t = asyncio.create_task(function() return s:read(1024) end)
    feed_soon(s, EOF)
    assert.are.equal("", t:await())
    assert.are.equal(0, s:buffered())
  end)

  it("test_read_until_eof: read() collects everything up to EOF", function()
    local s = asyncio.StreamReader()
    local t = asyncio.create_task(function() return s:read() end)
    feed_soon(s, "chunk1\n", "chunk2", EOF)
    assert.are.equal("chunk1\nchunk2", t:await())
    assert.are.equal(0, s:buffered())
  end)

  it("test_read_exception: after set_exception, read raises it", function()
    local s = asyncio.StreamReader()
    s:feed_data("line\n")
    assert.are.equal("li", s:read(2))
    local exc = asyncio.ValueError("boom")
    s:set_exception(exc)
    local ok, err = pcall(s.read, s, 2)
    assert.is_false(ok)
    assert.are.equal(exc, err)
  end)

  it("test_invalid_limit: a limit <= 0 is refused", function()
    for _, v in ipairs{0, -1} do
      helper.fails_with("imit", asyncio.StreamReader, {limit = v})
    end
  end)

  it("test_read_limit: read(n) is not bounded by the limit", function()
    local s = asyncio.StreamReader{limit = 3}
    s:feed_data("chunk")
    assert.are.equal("chunk", s:read(5))
    assert.are.equal(0, s:buffered())
  end)

  it("test_readline: readline waits across several feeds", function()
    local s = asyncio.StreamReader()
    s:feed_data("chunk1 ")
    local t = asyncio.create_task(function() return s:readline() end)
    feed_soon(s, "chunk2 ", "chunk3 ", "\n chunk4")
    assert.are.equal("chunk1 chunk2 chunk3 \n", t:await())
    assert.are.equal(" chunk4", s:read(100))
  end)

  it("test_readline_limit_with_existing_data: ValueError, the rest stays buffered", function()
    local s = asyncio.StreamReader{limit = 3}
    s:feed_data("li")
    s:feed_data("ne1\nline2\n")
    raises(asyncio.ValueError, s.readline, s)
    assert.are.equal("line2\n", s:read(100))

    s = asyncio.StreamReader{limit = 3}
    s:feed_data("li")
    s:feed_data("ne1")
    s:feed_data("li")
    raises(asyncio.ValueError, s.readline, s)
    -- no newline: the whole buffer was consumed
    assert.are.equal(0, s:buffered())
  end)

  it("test_at_eof: at_eof only once EOF was fed and the buffer is empty", function()
    local s = asyncio.StreamReader()
    assert.is_false(s:at_eof())
    s:feed_data("some data\n")
    assert.is_false(s:at_eof())
    s:readline()
    assert.is_false(s:at_eof())
    s:feed_data("some data\n")
    s:feed_eof()
    s:readline()
    assert.is_true(s:at_eof())
  end)

  it("test_readline_limit: the limit counts the line without its separator", function()
    local s = asyncio.StreamReader{limit = 7}
    feed_soon(s, "chunk1", "chunk2", "chunk3\n", EOF)
    raises(asyncio.ValueError, s.readline, s)
    assert.are.equal(0, s:buffered())

    s = asyncio.StreamReader{limit = 7}
    feed_soon(s, "chunk1", "chunk2\n", "chunk3\n", EOF)
    raises(asyncio.ValueError, s.readline, s)
    assert.are.equal("chunk3\n", s:read(100))

    -- strictness: exactly the limit plus "\n" is accepted
    s = asyncio.StreamReader{limit = 7}
    s:feed_data("1234567\n")
    assert.are.equal("1234567\n", s:readline())
    assert.are.equal(0, s:buffered())
    s:feed_data("12345678\n")
    raises(asyncio.ValueError, s.readline, s)
    assert.are.equal(0, s:buffered())
    s:feed_data("12345678")
    raises(asyncio.ValueError, s.readline, s)
    assert.are.equal(0, s:buffered())
  end)

  it("test_readline_nolimit_nowait: the line is already buffered", function()
    local s = asyncio.StreamReader()
    s:feed_data(DATA:sub(1, 6))
    s:feed_data(DATA:sub(7))
    assert.are.equal("line1\n", s:readline())
    assert.are.equal("line2\nline3\n", s:read(100))
  end)

  it("test_readline_eof: a last line without newline", function()
    local s = asyncio.StreamReader()
    s:feed_data("some data")
    s:feed_eof()
    assert.are.equal("some data", s:readline())
  end)

  it("test_readline_empty_eof: '' at EOF", function()
    local s = asyncio.StreamReader()
    s:feed_eof()
    assert.are.equal("", s:readline())
  end)

  it("test_readline_read_byte_count: read(n) after readline", function()
    local s = asyncio.StreamReader()
    s:feed_data(DATA)
    s:readline()
    assert.are.equal("line2\nl", s:read(7))
    assert.are.equal("ine3\n", s:read(100))
  end)

  it("test_readline_exception: readline raises the stream's exception", function()
    local s = asyncio.StreamReader()
    s:feed_data("line\n")
    assert.are.equal("line\n", s:readline())
    local exc = asyncio.ValueError("x")
    s:set_exception(exc)
    local ok, err = pcall(s.readline, s)
    assert.is_false(ok)
    assert.are.equal(exc, err)
    assert.are.equal(0, s:buffered())
  end)

  it("test_readuntil_separator: an empty separator is refused", function()
    local s = asyncio.StreamReader()
    helper.fails_with("[Ss]eparator should be", s.readuntil, s, "")
  end)

  it("test_readuntil_multi_chunks: a multi-byte separator", function()
    local s = asyncio.StreamReader()
    s:feed_data("lineAAA")
    assert.are.equal("lineAAA", s:readuntil("AAA"))
    assert.are.equal(0, s:buffered())
    s:feed_data("lineAAA")
    assert.are.equal("lineAAA", s:readuntil("AAA"))
    assert.are.equal(0, s:buffered())
    s:feed_data("lineAAAxxx")
    assert.are.equal("lineAAA", s:readuntil("AAA"))
    assert.are.equal("xxx", s:read(100))
  end)

  it("test_readuntil_multi_chunks_1: separators split across feeds", function()
    local s = asyncio.StreamReader()
    local function feed_all(...)
      for _, c in ipairs{...} do s:feed_data(c) end
    end
    feed_all("QWEaa", "XYaa", "a")
    assert.are.equal("QWEaaXYaaa", s:readuntil("aaa"))
    assert.are.equal(0, s:buffered())
    feed_all("QWEaa", "XYa", "aa")
    assert.are.equal("QWEaaXYaaa", s:readuntil("aaa"))
    feed_all("aaa")
    assert.are.equal("aaa", s:readuntil("aaa"))
    feed_all("Xaaa")
    assert.are.equal("Xaaa", s:readuntil("aaa"))
    feed_all("XXX", "a", "a", "a")
    assert.are.equal("XXXaaa", s:readuntil("aaa"))
    assert.are.equal(0, s:buffered())
  end)

  it("test_readuntil_multi_chunks_1 (waiting): the separator completes after the call", function()
    local s = asyncio.StreamReader()
    s:feed_data("QWEaa")
    local t = asyncio.create_task(function() return s:readuntil("aaa") end)
    feed_soon(s, "XYa", "aa")
    assert.are.equal("QWEaaXYaaa", t:await())
  end)

  it("test_readuntil_eof: IncompleteReadError with partial and expected nil", function()
    local s = asyncio.StreamReader()
    s:feed_data("some dataAA")
    s:feed_eof()
    local e = raises(asyncio.IncompleteReadError, s.readuntil, s, "AAA")
    assert.matches("undefined expected bytes", tostring(e))
    assert.are.equal("some dataAA", e.partial)
    assert.is_nil(e.expected)
    assert.are.equal(0, s:buffered())
  end)

  it("test_readuntil_limit_found_sep: LimitOverrunError, data left buffered", function()
    local s = asyncio.StreamReader{limit = 3}
    s:feed_data("some dataAA")
    local e = raises(asyncio.LimitOverrunError, s.readuntil, s, "AAA")
    assert.matches("not found", tostring(e))
    assert.are.equal(#"some dataAA", s:buffered())
    s:feed_data("A")
    e = raises(asyncio.LimitOverrunError, s.readuntil, s, "AAA")
    assert.matches("is found", tostring(e))
    assert.are.equal(9, e.consumed)
    assert.are.equal("some dataAAA", s:read(100))
  end)

  it("test_readexactly_zero_or_less: 0 gives '', a negative size is refused", function()
    local s = asyncio.StreamReader()
    s:feed_data(DATA)
    assert.are.equal("", s:readexactly(0))
    assert.are.equal(#DATA, s:buffered())
    helper.fails_with("less than zero", s.readexactly, s, -1)
    assert.are.equal(#DATA, s:buffered())
  end)

  it("test_readexactly: waits until n bytes are there", function()
    local s = asyncio.StreamReader()
    local n = 2 * #DATA
    local t = asyncio.create_task(function() return s:readexactly(n) end)
    feed_soon(s, DATA, DATA, DATA)
    assert.are.equal(DATA .. DATA, t:await())
    assert.are.equal(DATA, s:read(100))
  end)

  it("test_readexactly_limit: not bounded by the limit", function()
    local s = asyncio.StreamReader{limit = 3}
    s:feed_data("chunk")
    assert.are.equal("chunk", s:readexactly(5))
    assert.are.equal(0, s:buffered())
  end)

  it("test_readexactly_eof: IncompleteReadError with partial, expected and message", function()
    local s = asyncio.StreamReader()
    local n = 2 * #DATA
    local t = asyncio.create_task(function() return s:readexactly(n) end)
    feed_soon(s, DATA, EOF)
    local e = raises(asyncio.IncompleteReadError, t.await, t)
    assert.are.equal(DATA, e.partial)
    assert.are.equal(n, e.expected)
    assert.matches("18 bytes read on a total of 36 expected bytes", tostring(e))
    assert.are.equal(0, s:buffered())
  end)

  it("test_readexactly_exception: readexactly raises the stream's exception", function()
    local s = asyncio.StreamReader()
    s:feed_data("line\n")
    assert.are.equal("li", s:readexactly(2))
    s:set_exception(asyncio.ValueError("x"))
    raises(asyncio.ValueError, s.readexactly, s, 2)
  end)

  it("test_exception: exception() is nil, then the value given", function()
    local s = asyncio.StreamReader()
    assert.is_nil(s:exception())
    local exc = asyncio.ValueError("v")
    s:set_exception(exc)
    assert.are.equal(exc, s:exception())
  end)

  it("test_exception_waiter: a waiting readline gets the exception", function()
    local s = asyncio.StreamReader()
    local t1 = asyncio.create_task(function() return s:readline() end)
    local t2 = asyncio.create_task(function() s:set_exception(asyncio.ValueError("w")) end)
    asyncio.wait({t1, t2})
    raises(asyncio.ValueError, t1.result, t1)
  end)

  it("test_exception_cancel: set_exception after a cancelled readline is harmless", function()
    local s = asyncio.StreamReader()
    local t = asyncio.create_task(function() return s:readline() end)
    asyncio.sleep(0)
    t:cancel()
    asyncio.sleep(0)
    s:set_exception(asyncio.RuntimeError("message"))
    asyncio.sleep(0)
    assert.is_true(t:cancelled())
    -- no waiter is left: a new reader is accepted (and gets the exception)
    assert.is_nil(tostring(s):match("waiter"))
    raises(asyncio.RuntimeError, s.read, s, 1)
  end)

  it("test_streamreader_constructor_use_running_loop: made inside a task", function()
    local r = asyncio.create_task(function() return asyncio.StreamReader() end):await()
    r:feed_data("x")
    assert.are.equal("x", r:read(1))
  end)

  it("test___repr__: <StreamReader>", function()
    assert.are.equal("<StreamReader>", tostring(asyncio.StreamReader()))
  end)

  it("test___repr__nondefault_limit: <StreamReader limit=123>", function()
    assert.are.equal("<StreamReader limit=123>", tostring(asyncio.StreamReader{limit = 123}))
  end)

  it("test___repr__eof: <StreamReader eof>", function()
    local s = asyncio.StreamReader()
    s:feed_eof()
    assert.are.equal("<StreamReader eof>", tostring(s))
  end)

  it("test___repr__data: <StreamReader 4 bytes>", function()
    local s = asyncio.StreamReader()
    s:feed_data("data")
    assert.are.equal("<StreamReader 4 bytes>", tostring(s))
  end)

  it("test___repr__exception: the exception is shown", function()
    local s = asyncio.StreamReader()
    s:set_exception(asyncio.RuntimeError("bad"))
    assert.matches("^<StreamReader exception=.*RuntimeError.*bad.*>$", tostring(s))
  end)

  it("test___repr__waiter: a waiting reader is shown, then gone", function()
    local s = asyncio.StreamReader()
    local t = asyncio.create_task(function() return s:read(1) end)
    asyncio.sleep(0)
    assert.are.equal("<StreamReader waiter>", tostring(s))
    s:feed_data("x")
    t:await()
    assert.are.equal("<StreamReader>", tostring(s))
  end)
end)

describe("test_streams (StreamTests): connections", function()
  after_each(helper.no_leaks)

  it("test_open_connection: request, status line, body", function()
    local srv, r, w = get_status_line()
    local data = r:read()
    assert.are.equal("\r\n\r\nTest message", data:sub(-16))
    w:close()
    stop(srv)
  end)

  it("test_open_connection_error: the reader raises the connection's exception", function()
    local srv, port = test_server()
    local r, w = asyncio.open_connection("127.0.0.1", port)
    -- CPython injects connection_lost(ZeroDivisionError()); here the
    -- exception is set on the reader the same way
    r:set_exception(asyncio.RuntimeError("division by zero"))
    raises(asyncio.RuntimeError, r.read, r)
    w:close()
    stop(srv)
  end)

  it("test_start_server: a handler task echoes a line", function()
    local srv = asyncio.start_server(function(cr, cw)
      local data = cr:readline()
      cw:write(data)
      cw:drain()
      cw:close()
      cw:wait_closed()
    end, "127.0.0.1", 0)
    local r, w = asyncio.open_connection("127.0.0.1", srv.port)
    w:write("hello world!\n")
    assert.are.equal("hello world!\n", r:readline())
    w:close()
    w:wait_closed()
    stop(srv)
  end)

  it("test_start_server (callback variant): a handler that starts its own task", function()
    local srv = asyncio.start_server(function(cr, cw)
      asyncio.create_task(function()
        cw:write(cr:readline())
        cw:drain()
        cw:close()
      end):await()
    end, "127.0.0.1", 0)
    local r, w = asyncio.open_connection("127.0.0.1", srv.port)
    w:write("hello world!\n")
    assert.are.equal("hello world!\n", r:readline())
    w:close()
    stop(srv)
  end)

  it("test_read_all_from_pipe_reader: read() past a limit of 1 from a pipe", function()
    local p = asyncio.create_subprocess_exec("sh", {"-c", "printf data"},
      {stdout = "pipe", limit = 1})
    p:wait()
    assert.are.equal("data", p.stdout:read())
  end)

  it("test_multiple_drain: ten tasks drain at once and all resume", function()
    local release = asyncio.Event()
    local srv = asyncio.start_server(function(cr, cw)
      release:wait()
      cr:read() -- now read everything
    end, "127.0.0.1", 0)
    local r, w = asyncio.open_connection("127.0.0.1", srv.port)
    for _ = 1, 64 do w:write(string.rep("d", 65536)) end
    local drained = 0
    local tasks = {}
    for i = 1, 10 do
      tasks[i] = asyncio.create_task(function() w:drain() drained = drained + 1 end)
    end
    asyncio.sleep(0.05)
    assert.are.equal(0, drained) -- paused: the peer does not read
    release:set()
    asyncio.gather(table.unpack(tasks))
    assert.are.equal(10, drained)
    w:close()
    stop(srv)
  end)

  it("test_drain_raises: writing to a peer that closed ends in a ConnectionError", function()
    -- as CPython: the peer is not on our loop (a Python thread server
    -- that closes each connection at once)
    local p, port = io_helper.py_server("pass")
    local r, w = asyncio.open_connection("127.0.0.1", port)
    local ok, err = pcall(function()
      for _ = 1, 1e6 do
        w:write("foo\n")
        w:drain()
      end
    end)
    assert.is_false(ok)
    assert.is_true(asyncio.is(err, asyncio.ConnectionResetError)
      or asyncio.is(err, asyncio.ConnectionAbortedError)
      or asyncio.is(err, asyncio.BrokenPipeError), tostring(err))
    w:close()
    io_helper.stop(p)
  end)

  it("test_wait_closed_on_close: is_closing, then wait_closed returns", function()
    local srv, r, w = get_status_line()
    assert.matches("Test message$", r:read())
    assert.is_false(w:is_closing())
    w:close()
    assert.is_true(w:is_closing())
    w:wait_closed()
    stop(srv)
  end)

  it("test_wait_closed_on_close_with_unread_data: closing with bytes unread", function()
    local srv, r, w = get_status_line()
    w:close()
    w:wait_closed()
    stop(srv)
  end)

  it("test_async_writer_api: write, read, close, wait_closed", function()
    local srv, r, w = get_status_line()
    assert.matches("\r\n\r\nTest message$", r:read())
    w:close()
    w:wait_closed()
    stop(srv)
  end)

  it("test_async_writer_api_exception_after_close: write after close fails at drain", function()
    local srv, r, w = get_status_line()
    assert.matches("Test message$", r:read())
    w:close()
    raises(asyncio.ConnectionResetError, function()
      w:write("data")
      w:drain()
    end)
    stop(srv)
  end)

  it("test_eof_feed_when_closing_writer: after close, the reader is at EOF", function()
    local srv, port = test_server()
    local r, w = asyncio.open_connection("127.0.0.1", port)
    w:close()
    w:wait_closed()
    assert.is_true(r:at_eof())
    assert.are.equal("", r:read())
    stop(srv)
  end)
end)
