-- asyncio.testing, the Lua half: run (a test under a chosen clock, a
-- real-time limit and a leak check), the fixtures (stream_pair,
-- http_server) and the busted integration.  The clock, the real-time
-- guard and the lists of what is open are the C half (bindings/testing.c).
local M, argcheck = ...
local asyncio = require "asyncio"

local CLOCKS = {real = true, virtual = true, manual = true}

-- "bad argument #i to 'f' (...)", raised at the caller's line: the first
-- outside this file, however deep the check (argcheck.lua).
local argerror = argcheck()({["=asyncio/testing.lua"] = true})

-- The options table at argument i of fname: nil or a table whose keys
-- are all in `known` (a set).
-- "file:line: " of the first Lua frame from `level` levels above the
-- caller outwards (a pcall in between is skipped).
local function where(level)
  for l = level + 1, level + 10 do
    local info = debug.getinfo(l, "Sl")
    if not info then break end
    if info.currentline > 0 then return info.short_src .. ":" .. info.currentline .. ": " end
  end
  return ""
end

local function check_options(opts, i, fname, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    argerror(i, fname, "table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not known[k] then argerror(i, fname, ("unknown option '%s'"):format(tostring(k))) end
  end
  return opts
end

local function check_seconds(v, i, fname, what, allow_zero)
  if type(v) ~= "number" then
    argerror(i, fname, ("%s: number expected, got %s"):format(what, type(v)))
  elseif v ~= v then
    argerror(i, fname, what .. " is NaN")
  elseif v < 0 or (v == 0 and not allow_zero) then
    argerror(i, fname, what .. (allow_zero and " must not be negative" or " must be positive"))
  elseif v == math.huge then
    argerror(i, fname, what .. " must be finite")
  end
  return v
end

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

-- ---- what a test leaves behind ---------------------------------------------

-- Where a task waits now: the innermost frame of its thread outside the
-- compiled-in asyncio parts.
local function waiting_at(task)
  local co = debug.getuservalue(task, 1)
  if type(co) ~= "thread" then return nil end
  for level = 0, 50 do
    local info = debug.getinfo(co, level, "Sl")
    if not info then break end
    if info.currentline and info.currentline > 0 and not info.source:find("^=asyncio/") then
      return info.short_src .. ":" .. info.currentline
    end
  end
end

-- Anonymous inodes (the loop's epoll, eventfd, signalfd) and /dev/null
-- (libuv's reserve for EMFILE, opened at the first listen) come with
-- libuv's own lazy set-up; they are never a test's.
local function interesting_fd(target)
  return not (target:find("^anon_inode:") or target == "/dev/null")
end

-- The shared session behind http.fetch is made on first use and lives on
-- (keep-alive): it is nobody's leak.  It is made before a test starts if
-- asyncio.http is loaded; returns its handle id.
local function shared_session()
  local http = package.loaded["asyncio.http"]
  if not http then return nil end
  local ok, s = pcall(http.default_session)
  return ok and type(s) == "table" and M._handle_id(rawget(s, "_core")) or nil
end

-- The readers of stream_pair hold no OS resource: not worth a report.
local memory_readers = setmetatable({}, {__mode = "k"})

-- What is open now: tasks, handles, timed callbacks, file descriptors.
function M.snapshot()
  local s = {shared = shared_session(), tasks = {}, handles = {}, callbacks = {}}
  s.fds = M._fds() or {}
  for _, t in ipairs(asyncio.all_tasks()) do s.tasks[t] = true end
  for _, hd in ipairs(M._handles()) do s.handles[hd.id] = hd end
  for _, cb in ipairs(M._callbacks()) do s.callbacks[cb.handle] = cb end
  return s
end

local function fn_where(fn)
  local info = debug.getinfo(fn, "S")
  return info and (info.short_src .. ":" .. info.linedefined) or "?"
end

-- The list of what was opened since snapshot `before` and is still open
-- (the running task excepted): each item {kind=, text=, task= | handle=}.
function M.leaks(before)
  if type(before) ~= "table" or type(before.tasks) ~= "table" then
    argerror(1, "leaks", "snapshot expected, got " .. type(before))
  end
  local list, me = {}, asyncio.current_task()
  local now = M.snapshot()
  for _, t in ipairs(asyncio.all_tasks()) do
    if t ~= me and not before.tasks[t] then
      local text = tostring(t)
      local origin, at = M._task_origin(t), waiting_at(t)
      if origin then text = text .. ", created at " .. origin end
      if at then text = text .. ", waiting at " .. at end
      list[#list + 1] = {kind = "task", text = text, task = t}
    end
  end
  local new_shared = now.shared and now.shared ~= before.shared
  for id, hd in pairs(now.handles) do
    if not before.handles[id] and id ~= now.shared and not memory_readers[id] then
      list[#list + 1] = {kind = "handle", id = id,
        text = hd.what .. (hd.origin and (", created at " .. hd.origin) or "")}
    end
  end
  local clock = asyncio.time()
  for h, cb in pairs(now.callbacks) do
    if not before.callbacks[h] then
      list[#list + 1] = {kind = "callback", handle = h,
        text = ("call_later/call_at callback (function at %s), due in %.3f s")
          :format(fn_where(cb.fn), cb.when - clock)}
    end
  end
  for fd, target in pairs(now.fds) do
    -- a shared session made during the test keeps its curl sockets
    if before.fds[fd] ~= target and interesting_fd(target)
       and not (new_shared and target:find("^socket:")) then
      list[#list + 1] = {kind = "fd", text = ("file descriptor %d (%s)"):format(fd, target)}
    end
  end
  table.sort(list, function(a, b) return a.text < b.text end)
  return list
end

-- Ends what a leak check found, so that the next test starts clean:
-- tasks are cancelled (and given a moment to unwind), callbacks
-- cancelled, handles closed.
function M.clean(list)
  local tasks = {}
  for _, item in ipairs(list) do
    if item.kind == "task" then
      item.task:cancel()
      tasks[#tasks + 1] = item.task
    elseif item.kind == "callback" then
      item.handle:cancel()
    elseif item.kind == "handle" then
      M._close_handle(item.id)
    end
  end
  if #tasks > 0 then pcall(asyncio.wait, tasks, {timeout = 1}) end
end

local function leak_report(list)
  if #list == 0 then return nil end
  local lines = {("the test left %d thing%s behind:"):format(#list, #list == 1 and "" or "s")}
  for _, item in ipairs(list) do lines[#lines + 1] = "  " .. item.text end
  lines[#lines + 1] = "(if that is intended: testing.allow_leaks() in the test, or {leaks = false})"
  return table.concat(lines, "\n")
end

-- testing.check_leaks([before]): raises the list of what was opened since
-- the snapshot `before` (testing.snapshot()) and is still open, after
-- letting what was let go end its last steps; without `before`, every
-- task but the running one is a leak.  Cleans up what it lists.
function M.check_leaks(before)
  if before ~= nil and (type(before) ~= "table" or type(before.tasks) ~= "table") then
    argerror(1, "check_leaks", "snapshot expected, got " .. type(before))
  end
  if asyncio.current_task() then M.wait_idle() end
  local tasks_only = before == nil
  if tasks_only then
    before = M.snapshot()
    before.tasks = {}
  end
  local list = M.leaks(before)
  if tasks_only then
    -- with no snapshot only tasks can be told apart: two listings of the
    -- fds taken now may differ while another thread (libuv's pool, a
    -- to_thread worker) opens and closes files
    local only = {}
    for _, item in ipairs(list) do
      if item.kind == "task" then only[#only + 1] = item end
    end
    list = only
  end
  if #list > 0 then
    M.clean(list)
    error(where(2) .. leak_report(list), 0)
  end
end

-- ---- run ----------------------------------------------------------------------

local RUN_OPTIONS = {clock = true, autojump_threshold = true, timeout = true, leaks = true}
local current -- the innermost run: {leaks = bool}

-- testing.allow_leaks(): the running test may leave things behind.
function M.allow_leaks()
  if not current then error("allow_leaks(): not inside testing.run", 2) end
  current.leaks = false
end

local function check_run_options(opts, i, fname)
  opts = check_options(opts, i, fname, RUN_OPTIONS)
  local clock = opts.clock
  if clock == nil then clock = "virtual" end
  if type(clock) ~= "string" or not CLOCKS[clock] then
    argerror(i, fname, ("option 'clock': \"real\", \"virtual\" or \"manual\" expected, got %s")
      :format(type(clock) == "string" and ("%q"):format(clock) or type(clock)))
  end
  local thr = opts.autojump_threshold
  if thr ~= nil then check_seconds(thr, i, fname, "option 'autojump_threshold'", true) end
  local timeout = opts.timeout
  if timeout ~= nil and timeout ~= false then check_seconds(timeout, i, fname, "option 'timeout'") end
  local leaks = opts.leaks
  if leaks ~= nil and type(leaks) ~= "boolean" then
    argerror(i, fname, "option 'leaks': boolean expected, got " .. type(leaks))
  end
  return {clock = clock, autojump_threshold = thr or 0, timeout = timeout or nil,
          leaks = leaks ~= false}
end

local function timeout_error(where, sec, trace)
  return asyncio.TimeoutError(("%sthe test did not finish within %g s of real time; it was at:\n%s")
    :format(where, sec, trace or "?"))
end


local function run_in_task(fn, o)
  local saved_mode, saved_thr = M.clock()
  local outer = current
  local me = {leaks = o.leaks}
  current = me
  local before = o.leaks and M.snapshot()
  M._set_clock(o.clock, o.autojump_threshold)
  local t = asyncio.create_task(fn)
  local guard = o.timeout and M._guard(t, o.timeout)
  local res = table.pack(pcall(t.await, t))
  if not t:done() then -- we were cancelled while waiting: so is the test
    t:cancel()
    pcall(asyncio.wait, {t}, {timeout = 1})
  end
  local fired, trace
  if guard then
    fired, trace = guard:fired()
    guard:cancel()
  end
  local leaked
  if o.leaks then
    M.wait_idle() -- what the test let go ends its last steps
    leaked = M.leaks(before)
    if #leaked > 0 then M.clean(leaked) end
  end
  M._set_clock(saved_mode, saved_thr)
  current = outer
  if fired then error(timeout_error(o.where, o.timeout, trace), 0) end
  if not res[1] then error(res[2], 0) end
  if leaked and #leaked > 0 and me.leaks then error(o.where .. leak_report(leaked), 0) end
  return table.unpack(res, 2, res.n)
end

-- testing.run(fn [, {clock =, autojump_threshold =, timeout =, leaks =}]):
-- runs fn in a task of its own and returns its results.
function M.run(fn, opts)
  if not callable(fn) then argerror(1, "run", "function expected, got " .. type(fn)) end
  local o = check_run_options(opts, 2, "run")
  o.where = where(2)
  if not asyncio.current_task() then
    return asyncio.run(function() return run_in_task(fn, o) end)
  end
  return run_in_task(fn, o)
end

-- testing.run_with_timeout(fn, seconds): fn's results, or TimeoutError
-- when it takes longer than `seconds` of real time (whatever the clock).
function M.run_with_timeout(fn, sec)
  if not callable(fn) then argerror(1, "run_with_timeout", "function expected, got " .. type(fn)) end
  check_seconds(sec, 2, "run_with_timeout", "seconds")
  local mode, thr = M.clock()
  local o = {clock = mode, autojump_threshold = thr, timeout = sec, leaks = false, where = where(2)}
  if not asyncio.current_task() then
    return asyncio.run(function() return run_in_task(fn, o) end)
  end
  return run_in_task(fn, o)
end

-- ---- stream_pair ------------------------------------------------------------

-- One direction of a pair: a writer whose bytes a pump task feeds to the
-- peer's StreamReader, `chunk` bytes at a time with a loop turn between
-- (so a reader sees the pieces), never more than `limit` bytes ahead of
-- what the peer has read (back-pressure).
local Pipe = {}
Pipe.__index = Pipe

local function new_pipe(o)
  return setmetatable({
    reader = asyncio.StreamReader{limit = o.limit},
    limit = o.limit, chunk = o.chunk,
    pending = {}, npending = 0, waiting = 0,
    consumed = asyncio.Event(), flushed = asyncio.Event(),
    closing = false, eof_sent = false,
  }, Pipe)
end

function Pipe:pump()
  while true do
    local data = table.remove(self.pending, 1)
    if not data then break end
    -- a reader blocked for more bytes gets them past the limit, as
    -- asyncio's reader resumes a paused transport when it waits
    while self.reader:buffered() >= self.limit and self.waiting == 0 do
      self.consumed:clear()
      self.consumed:wait()
    end
    local n = self.limit - self.reader:buffered()
    if n <= 0 then n = self.limit end
    if self.chunk and self.chunk < n then n = self.chunk end
    local piece = data
    if #data > n then
      piece = data:sub(1, n)
      table.insert(self.pending, 1, data:sub(n + 1))
    end
    self.npending = self.npending - #piece
    self.reader:feed_data(piece)
    asyncio.sleep(0)
  end
  self.pumping = nil
  if self.closing and not self.eof_sent then
    self.eof_sent = true
    self.reader:feed_eof()
  end
  self.flushed:set()
end

function Pipe:kick()
  self.flushed:clear()
  if not self.pumping then
    self.pumping = asyncio.create_task(function() self:pump() end)
    self.pumping:set_name("testing.stream_pair pump")
  end
end

-- The reader side: the StreamReader's own reads, and a word to the pump
-- before each (a reader may be about to wait) and after (the peer may
-- have room again).
local Reader = {}
local function reader_call(name)
  return function(self, ...)
    local pipe = self._pipe
    pipe.waiting = pipe.waiting + 1
    pipe.consumed:set()
    local r = table.pack(pcall(self._r[name], self._r, ...))
    pipe.waiting = pipe.waiting - 1
    pipe.consumed:set()
    if not r[1] then error(r[2], 0) end
    return table.unpack(r, 2, r.n)
  end
end
for _, name in ipairs{"read", "readline", "readexactly", "readuntil"} do
  Reader[name] = reader_call(name)
end
for _, name in ipairs{"at_eof", "buffered", "exception", "set_exception", "set_limit"} do
  Reader[name] = function(self, ...) return self._r[name](self._r, ...) end
end
function Reader:lines()
  return function()
    local line = self:readline()
    if line ~= "" then return line end
  end
end
local ReaderMT = {__index = Reader, __name = "asyncio.testing.MemoryReader"}
function ReaderMT.__tostring(self) return "<memory " .. tostring(self._r):sub(2) end
function ReaderMT.__close() end

local Writer = {}
local WriterMT = {__index = Writer, __name = "asyncio.testing.MemoryWriter"}
function WriterMT.__tostring(self)
  return ("<memory StreamWriter%s>"):format(self._p.closing and " closing" or "")
end
function WriterMT.__close(self) self:close() end

local function check_writer(self, fname)
  if getmetatable(self) ~= WriterMT then
    argerror(1, fname, "memory StreamWriter expected, got " .. type(self))
  end
  return self._p
end

function Writer:write(data)
  local p = check_writer(self, "write")
  if type(data) ~= "string" then argerror(2, "write", "string expected, got " .. type(data)) end
  if p.closing then error(asyncio.InvalidStateError("write(): the writer is closed"), 2) end
  if #data == 0 then return end
  p.pending[#p.pending + 1] = data
  p.npending = p.npending + #data
  p:kick()
end
function Writer:writelines(list)
  check_writer(self, "writelines")
  for _, s in ipairs(list) do self:write(s) end
end
-- drain(): returns once the peer's reader has taken every byte written.
function Writer:drain()
  local p = check_writer(self, "drain")
  if p.npending > 0 then p.flushed:wait() end
end
function Writer:close()
  local p = check_writer(self, "close")
  if p.closing then return end
  p.closing = true
  p:kick()
end
Writer.write_eof = Writer.close
function Writer:can_write_eof() check_writer(self, "can_write_eof") return true end
function Writer:is_closing() return check_writer(self, "is_closing").closing end
function Writer:wait_closed()
  local p = check_writer(self, "wait_closed")
  if not p.eof_sent then p.flushed:wait() end
end
function Writer:buffer_size() return check_writer(self, "buffer_size").npending end
function Writer:get_extra_info(name, default)
  check_writer(self, "get_extra_info")
  if name == "peername" or name == "sockname" then return "memory" end
  return default
end

local PAIR_OPTIONS = {chunk = true, limit = true}

local function check_size(v, fname, what)
  if type(v) ~= "number" or v ~= v or math.type(v) ~= "integer" and v ~= math.floor(v) then
    local got = type(v) ~= "number" and type(v) or v ~= v and "NaN" or tostring(v)
    argerror(1, fname, ("option '%s': integer expected, got %s"):format(what, got))
  end
  if v < 1 or v > 2^40 then argerror(1, fname, ("option '%s' out of range 1-2^40"):format(what)) end
  return math.tointeger(v)
end

-- testing.stream_pair([{chunk =, limit =}]) -> a, b: two ends, each
-- {reader =, writer =}; what a.writer writes, b.reader reads, and back.
function M.stream_pair(opts)
  opts = check_options(opts, 1, "stream_pair", PAIR_OPTIONS)
  local o = {limit = 64 * 1024}
  if opts.limit ~= nil then o.limit = check_size(opts.limit, "stream_pair", "limit") end
  if opts.chunk ~= nil then o.chunk = check_size(opts.chunk, "stream_pair", "chunk") end
  local ab, ba = new_pipe(o), new_pipe(o)
  for _, p in ipairs{ab, ba} do
    local id = M._handle_id(p.reader)
    if id then memory_readers[id] = true end
  end
  local function side(inp, out)
    return {reader = setmetatable({_r = inp.reader, _pipe = inp}, ReaderMT),
            writer = setmetatable({_p = out}, WriterMT)}
  end
  return side(ba, ab), side(ab, ba)
end

-- ---- http_server ------------------------------------------------------------

local REASONS = {[200] = "OK", [201] = "Created", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified",
  [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [413] = "Content Too Large",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [501] = "Not Implemented", [503] = "Service Unavailable"}

local MAX_HEADERS, MAX_BODY, IO_TIMEOUT = 100, 1024 * 1024, 10

local function send(writer, status, headers, body)
  body = body or ""
  local out = {("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Status")}
  local has_type = false
  for k, v in pairs(headers or {}) do
    k, v = tostring(k), tostring(v)
    if k:find("[%c:]") or v:find("[\r\n%z]") then error("http_server: bad header " .. ("%q"):format(k), 0) end
    local lk = k:lower()
    if lk ~= "content-length" and lk ~= "connection" then
      if lk == "content-type" then has_type = true end
      out[#out + 1] = k .. ": " .. v .. "\r\n"
    end
  end
  if not has_type then out[#out + 1] = "Content-Type: text/plain\r\n" end
  out[#out + 1] = ("Content-Length: %d\r\nConnection: close\r\n\r\n"):format(#body)
  out[#out + 1] = body
  writer:write(table.concat(out))
  writer:drain()
end

-- Reads one request; returns it, or nil plus the status to answer with.
local function read_request(reader)
  local line = reader:readline()
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n$")
  if not method then return nil, 400 end
  local headers, n = {}, 0
  while true do
    local h = reader:readline()
    if h == "\r\n" or h == "\n" then break end
    if h == "" then return nil, 400 end
    n = n + 1
    if n > MAX_HEADERS then return nil, 431 end
    local k, v = h:match("^([^%s:]+):[ \t]*(.-)[ \t]*\r?\n$")
    if not k then return nil, 400 end
    k = k:lower()
    headers[k] = headers[k] and (headers[k] .. ", " .. v) or v
  end
  if headers["transfer-encoding"] then return nil, 501 end
  local len = headers["content-length"]
  local body = ""
  if len then
    len = tonumber(len:match("^%d+$"))
    if not len then return nil, 400 end
    if len > MAX_BODY then return nil, 413 end
    body = reader:readexactly(len)
  end
  local path, query = target:match("^([^?]*)%??(.*)$")
  return {method = method, target = target, path = path, query = query,
          headers = headers, body = body}
end

local function respond(server, route, req)
  if type(route) == "table" then return route end
  local ok, res = pcall(route, req)
  if not ok then
    server.errors[#server.errors + 1] = res
    return {status = 500, body = "handler failed: " .. tostring(res)}
  end
  if type(res) == "string" then return {body = res} end
  if type(res) ~= "table" then
    server.errors[#server.errors + 1] = "handler returned " .. type(res)
    return {status = 500, body = "handler returned " .. type(res)}
  end
  return res
end

local function serve(server, routes, reader, writer)
  local ok, req, status = pcall(function()
    local _ <close> = asyncio.timeout(IO_TIMEOUT)
    return read_request(reader)
  end)
  if not ok then -- a limit (LimitOverrunError), a timeout, a reset
    if asyncio.is(req, asyncio.CancelledError) then error(req, 0) end
    pcall(send, writer, asyncio.is(req, asyncio.TimeoutError) and 408 or 400)
    return
  end
  if not req then pcall(send, writer, status) return end
  server.requests[#server.requests + 1] = req
  local route = routes[req.path]
  if route == nil then pcall(send, writer, 404, nil, "no route for " .. req.path) return end
  local res = respond(server, route, req)
  local status = math.tointeger(res.status or 200)
  if not status or status < 100 or status > 999 then status = 500 end
  local body = res.body
  if body ~= nil and type(body) ~= "string" then body = tostring(body) end
  if req.method == "HEAD" then body = "" end
  pcall(send, writer, status, res.headers, body)
end

local Server = {}
local ServerMT = {__index = Server, __name = "asyncio.testing.HttpServer"}
function ServerMT.__close(self) self:close() end
function ServerMT.__tostring(self) return "<testing.http_server " .. self.url .. ">" end
function Server:close()
  if self._closed then return end
  self._closed = true
  self._server:close()
  self._server:close_clients()
  self._server:wait_closed()
end

-- testing.http_server{ ["/path"] = function(req) return {status =,
-- headers =, body =} end | {status =, ...} | "body" } -> server with
-- .url ("http://127.0.0.1:<port>"), .port, .requests, .errors, :close().
function M.http_server(routes)
  if type(routes) ~= "table" then argerror(1, "http_server", "table expected, got " .. type(routes)) end
  for k, v in pairs(routes) do
    if type(k) ~= "string" or k:sub(1, 1) ~= "/" then
      argerror(1, "http_server", ("route %s: a path starting with '/' expected"):format(
        type(k) == "string" and ("%q"):format(k) or type(k)))
    end
    if type(v) ~= "table" and not callable(v) then
      argerror(1, "http_server", ("route %q: function or table expected, got %s"):format(k, type(v)))
    end
  end
  local copy = {}
  for k, v in pairs(routes) do copy[k] = v end
  local server = setmetatable({requests = {}, errors = {}}, ServerMT)
  server._server = asyncio.start_server(function(reader, writer)
    serve(server, copy, reader, writer)
  end, "127.0.0.1", 0, {limit = 16 * 1024})
  server.port = server._server.port
  server.url = "http://127.0.0.1:" .. server.port
  return server
end

-- ---- busted ----------------------------------------------------------------------

-- Options set with testing.configure in a file or describe block, innermost
-- last, over the defaults: the helper's arguments (-Xhelper) for every
-- file, or testing.busted's for the file that called it.
local scopes = {}
local helper_defaults, file_defaults = nil, {}
local installed = false

local function defaults_for(element)
  local at = element.trace
  local file = at and at.short_src
  return file_defaults[file] or helper_defaults, file
end

-- testing.configure{clock =, autojump_threshold =, timeout =, leaks =}:
-- options for the tests of the describe block (or file) it is called in.
function M.configure(opts)
  if not installed then
    error("configure(): asyncio.testing is not driving busted (--helper=asyncio.testing, or testing.busted() in the spec file)", 2)
  end
  check_run_options(opts, 1, "configure")
  local top = scopes[#scopes]
  if not top then error("configure(): call it in a file or describe block", 2) end
  for k, v in pairs(opts) do top.opts[k] = v end
end

local function merged(defaults)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for _, s in ipairs(scopes) do
    for k, v in pairs(s.opts) do o[k] = v end
  end
  return check_run_options(o, 1, "configure")
end

-- Parses the helper's arguments: clock=real, timeout=30, leaks=off, ...
local function helper_args(args)
  local o = {clock = "virtual", timeout = 60, leaks = true}
  for _, a in ipairs(args or {}) do
    local k, v = tostring(a):match("^([%w_]+)=(.*)$")
    if not k or not RUN_OPTIONS[k] then
      error(("asyncio.testing: unknown helper argument %q (clock=, autojump_threshold=, timeout=, leaks=)"):format(tostring(a)), 0)
    end
    if k == "leaks" then v = not (v == "off" or v == "false" or v == "0")
    elseif k == "timeout" and (v == "off" or v == "false") then v = false
    elseif k ~= "clock" then v = tonumber(v) end
    o[k] = v
  end
  return o
end

local function install()
  if installed then return end
  installed = true
  local busted = require "busted"
  local function push(element)
    scopes[#scopes + 1] = {element = element, opts = {}}
    return nil, true
  end
  local function pop(element)
    if scopes[#scopes] and scopes[#scopes].element == element then scopes[#scopes] = nil end
    return nil, true
  end
  busted.subscribe({"file", "start"}, push)
  busted.subscribe({"file", "end"}, pop)
  busted.subscribe({"describe", "start"}, push)
  busted.subscribe({"describe", "end"}, pop)
  -- busted runs element.run right after publishing the start of the test:
  -- the body is swapped for one that runs it through testing.run.
  local originals = setmetatable({}, {__mode = "k"})
  busted.subscribe({"test", "start"}, function(element)
    local defaults, file = defaults_for(element)
    if not defaults then return nil, true end
    local body = originals[element] or element.run
    originals[element] = body
    local o = merged(defaults)
    o.where = file and (file .. ":" .. element.trace.currentline .. ": ") or ""
    element.run = function(...)
      local args = table.pack(...)
      return run_in_task(function() return body(table.unpack(args, 1, args.n)) end, o)
    end
    return nil, true
  end)
end

-- testing.busted([defaults]): the tests of the calling spec file (every
-- file, when loaded as busted's helper) run through testing.run: each in
-- a task of its own, under a virtual clock, with a leak check and a time
-- limit of real time.  defaults: {clock =, autojump_threshold =,
-- timeout =, leaks =} (defaults: "virtual", 0, 60, true).
function M.busted(defaults)
  defaults = check_options(defaults, 1, "busted", RUN_OPTIONS)
  local o = {clock = "virtual", timeout = 60, leaks = true}
  for k, v in pairs(defaults) do o[k] = v end
  check_run_options(o, 1, "busted")
  local info = debug.getinfo(2, "S")
  file_defaults[info and info.short_src or "?"] = o
  install()
  return M
end

-- Loaded by busted's --helper=asyncio.testing: every file, with the
-- helper's arguments (--Xhelper=clock=real,timeout=30) as defaults.
local function loaded_as_helper()
  for level = 3, 12 do
    local info = debug.getinfo(level, "S")
    if not info then return false end
    if info.source:find("busted/modules/helper_loader%.lua$") then return true end
  end
  return false
end
if package.loaded["busted"] and loaded_as_helper() then
  helper_defaults = helper_args(_G.arg)
  check_run_options(helper_defaults, 1, "busted")
  install()
end

return M
