-- Lecture 001 (Углубленный Python, лекция 9): David Beazley's generator
-- event loop ("Python Concurrency From the Ground Up"), as a pure-Lua
-- coroutine scheduler.  Tasks are coroutines that yield ("read", sock) or
-- ("write", sock); the loop parks them in to_read / to_write and asks
-- select() which sockets are ready.  Lua 5.4 has no select() or
-- non-blocking sockets of its own here, so the sockets are in-memory pipes
-- and select() looks at their buffers -- the loop itself is the lecture's,
-- line for line.  No lasync involved: this is what lasync does for real,
-- with epoll underneath (see echo_server.lua).
--
-- usage: lasync scripts/generator_loop.lua     (also runs under plain lua5.4)

-- ---- in-memory sockets ------------------------------------------------
local seq = 0                                  -- orders select()'s answer
local function socketpair()
  seq = seq + 2
  local a, b = {inbox = {}, id = seq - 1}, {inbox = {}, id = seq}
  a.peer, b.peer = b, a
  return a, b
end
local function send(sock, data) table.insert(sock.peer.inbox, data) end
local function recv(sock)                      -- "" once the peer closed
  return table.remove(sock.inbox, 1) or ""
end
local function close(sock) sock.peer.eof = true end

local server_sock = {backlog = {}, id = 0}             -- listen(): pending connections
local function connect()
  local mine, theirs = socketpair()
  table.insert(server_sock.backlog, theirs)
  return mine
end
local function accept(sock) return table.remove(sock.backlog, 1) end

-- select(): the sockets that can be read without blocking; all can write
local function select(to_read, to_write)
  local r, w = {}, {}
  for sock in pairs(to_read) do
    if (sock.backlog and #sock.backlog > 0) or (sock.inbox and (#sock.inbox > 0 or sock.eof)) then
      r[#r + 1] = sock
    end
  end
  for sock in pairs(to_write) do w[#w + 1] = sock end
  local function by_id(x, y) return x.id < y.id end
  table.sort(r, by_id)
  table.sort(w, by_id)
  return r, w
end

-- ---- the loop ---------------------------------------------------------
local tasks, to_read, to_write = {}, {}, {}

local function event_loop()
  while #tasks > 0 or next(to_read) or next(to_write) do
    while #tasks == 0 do
      local ready_to_read, ready_to_write = select(to_read, to_write)
      if #ready_to_read == 0 and #ready_to_write == 0 then return end -- nothing can happen
      for _, sock in ipairs(ready_to_read) do
        tasks[#tasks + 1] = to_read[sock]
        to_read[sock] = nil
      end
      for _, sock in ipairs(ready_to_write) do
        tasks[#tasks + 1] = to_write[sock]
        to_write[sock] = nil
      end
    end
    local task = table.remove(tasks, 1)
    local ok, op_type, sock = coroutine.resume(task)    -- next(task)
    if not ok then error(op_type) end
    if op_type == "read" then
      to_read[sock] = task
    elseif op_type == "write" then
      to_write[sock] = task
    end                                                 -- dead: StopIteration
  end
end

-- ---- the upper-casing echo server as generators -------------------------
local function client_handler(client_sock)
  while true do
    coroutine.yield("read", client_sock)
    local data = recv(client_sock)
    if data == "" then break end
    coroutine.yield("write", client_sock)
    send(client_sock, data:upper())
  end
  close(client_sock)
end

local function server(n_clients)
  for _ = 1, n_clients do                       -- while True: (bounded here)
    coroutine.yield("read", server_sock)
    local client_sock = accept(server_sock)
    tasks[#tasks + 1] = coroutine.create(function() client_handler(client_sock) end)
  end
end

local function client(name, words)
  local sock = connect()
  for _, word in ipairs(words) do
    coroutine.yield("write", sock)
    send(sock, word)
    coroutine.yield("read", sock)
    print(("%s got %s"):format(name, recv(sock)))
  end
  close(sock)
end

tasks[#tasks + 1] = coroutine.create(function() server(2) end)
tasks[#tasks + 1] = coroutine.create(function() client("alice", {"one", "two", "three"}) end)
tasks[#tasks + 1] = coroutine.create(function() client("bob", {"uno", "dos", "tres"}) end)
event_loop()
print("no task left: the loop ends")
