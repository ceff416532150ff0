-- The parts of asyncio's waiting and synchronisation toolkit that are
-- compositions of the C primitives rather than hot paths: wait_for, wait,
-- as_completed, shield, TaskGroup, Condition and Barrier.  Compiled into the
-- library; run once by luaopen_asyncio with (module table, internals).
local M, C = ...

local create_task, current_task = M.create_task, M.current_task
local wait_any, TaskMT, LockMT = C.wait_any, C.TaskMT, C.LockMT
local future_task, FutureMT = C.future_task, C.FutureMT
local note_origin, group_parents = C.note_origin, C.group_parents
local time, is = M.time, M.is
local getmetatable, setmetatable, error, pcall, type, tostring, pairs =
  getmetatable, setmetatable, error, pcall, type, tostring, pairs
local tremove, tconcat = table.remove, table.concat

-- "bad argument #n to 'f' (...)" at the caller's line (argcheck.lua).
local argerror = C.argcheck()({["=asyncio/sync.lua"] = true})

local function is_task(v) return getmetatable(v) == TaskMT end
local function is_future(v) return getmetatable(v) == FutureMT end

local function is_cancel(e) return is(e, M.CancelledError) end

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- A task, or a function started as one, or a task that ends as a Future
-- ends (cancelling that task cancels the future, as asyncio's wait_for and
-- gather cancel a future they were given).
local function to_task(aw, fname, argn)
  if is_task(aw) then return aw end
  if is_future(aw) then return future_task(aw) end
  if is_callable(aw) then return create_task(aw) end
  argerror(argn, fname, "task or function expected, got " .. type(aw))
end

local function check_number(v, fname, argn, what)
  if type(v) ~= "number" or v ~= v then
    argerror(argn, fname, ("%s expected, got %s")
      :format(what or "number", v ~= v and "NaN" or type(v)))
  end
end

-- A list of tasks from a list of tasks, futures or functions, and the
-- list of what the caller passed (a future stands for itself in results).
-- A task or future given twice counts once, as in asyncio (which makes a
-- set of them); each function is started as a task of its own.
local function task_list(list, fname)
  if type(list) ~= "table" or is_task(list) then
    argerror(1, fname, "list of tasks expected, got "
      .. (is_task(list) and "a task" or type(list)))
  end
  local tasks, given, seen, n = {}, {}, {}, 0
  for i = 1, #list do
    local aw, t = list[i], nil
    if seen[aw] then -- a duplicate: skipped
    elseif is_task(aw) then t = aw
    elseif is_future(aw) then t = future_task(aw)
    elseif is_callable(aw) then
      t = create_task(aw)
      aw = t
    else
      argerror(1, fname, ("item %d: task or function expected, got %s")
        :format(i, type(aw)))
    end
    if t then
      seen[aw] = true
      n = n + 1
      tasks[n], given[n] = t, aw
    end
  end
  return tasks, given
end

---------------------------------------------------------------------------
-- wait_for, wait, as_completed, shield
---------------------------------------------------------------------------

-- wait_for(aw, timeout): timeout + await (Python 3.12).  On expiry aw is
-- cancelled (and waited for) and TimeoutError is raised.
function M.wait_for(aw, timeout)
  if timeout ~= nil then check_number(timeout, "wait_for", 2) end
  local t = to_task(aw, "wait_for", 1)
  if timeout == nil then return t:await() end
  if timeout <= 0 then
    -- As 3.12+: no deadline to race; a finished task gives its result,
    -- anything else is cancelled (a function never starts) and waited for.
    if not t:done() then
      t:cancel()
      local list = { t }
      while not t:done() do wait_any(list) end
    end
    if t:cancelled() then
      error(M.TimeoutError("the deadline has passed"), 0)
    end
    return t:result()
  end
  local _ <close> = M.timeout(timeout)
  return t:await()
end

local RETURN_WHEN = { FIRST_COMPLETED = true, FIRST_EXCEPTION = true,
                      ALL_COMPLETED = true }

local function failed(t)
  if t:cancelled() then return false end
  local ok = pcall(t.result, t)
  return not ok
end

-- wait(list, {timeout=, return_when=}) -> done, pending (lists, in the
-- order of `list`).  Never cancels anything.
function M.wait(list, opts)
  local tasks, given = task_list(list, "wait")
  if #tasks == 0 then
    argerror(1, "wait", "the list of tasks is empty")
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(2, "wait", "table expected, got " .. type(opts))
  end
  opts = opts or {}
  local timeout, rw = opts.timeout, opts.return_when or "ALL_COMPLETED"
  if timeout ~= nil then check_number(timeout, "wait", 2, "timeout: number") end
  if not RETURN_WHEN[rw] then
    argerror(2, "wait", ("return_when: FIRST_COMPLETED, FIRST_EXCEPTION or "
      .. "ALL_COMPLETED expected, got %s"):format(tostring(rw)))
  end
  local deadline = timeout and time() + timeout
  local first = true
  while true do
    local done, pending, any_failed = {}, {}, false
    for i = 1, #tasks do
      local aw = given[i] -- a future is done before its stand-in task
      if aw:done() then
        done[#done + 1] = aw
        if rw == "FIRST_EXCEPTION" and failed(aw) then any_failed = true end
      else
        pending[#pending + 1] = aw
      end
    end
    local enough = #pending == 0 or (rw == "FIRST_COMPLETED" and #done > 0)
      or any_failed
    if enough and not first then return done, pending end
    local remaining = deadline and deadline - time()
    if enough then
      -- asyncio's wait learns even of tasks done already through done
      -- callbacks: it returns a loop turn later (and sees what ended then)
      M.sleep(0)
    elseif remaining and remaining <= 0 then
      return done, pending
    else
      local waiting = {}
      for i = 1, #tasks do
        if not given[i]:done() then waiting[#waiting + 1] = tasks[i] end
      end
      if not wait_any(waiting, remaining) then
        deadline = time() -- timed out: report what we have
      else
        -- asyncio learns of a completion through a done callback, one turn
        -- before the waiter runs: tasks finishing in that turn are done too
        M.sleep(0)
      end
    end
    first = false
  end
end

-- for t in as_completed(list [, timeout]) do ... t:await() end: the tasks
-- in the order they finish.  Raises TimeoutError from the iterator once
-- the timeout has passed with tasks still running.
function M.as_completed(list, timeout)
  local tasks, given = task_list(list, "as_completed")
  if timeout ~= nil then check_number(timeout, "as_completed", 2) end
  local deadline = timeout and time() + timeout
  local order = M.Queue()
  local left = #tasks
  for i = 1, #tasks do
    tasks[i]:add_done_callback(function() order:put_nowait(given[i]) end)
  end
  return function()
    if left == 0 then return nil end
    if order:empty() then
      local _ <close> = M.timeout_at(deadline)
      local t = order:get()
      left = left - 1
      return t
    end
    left = left - 1
    return order:get_nowait()
  end
end

-- shield(aw) -> a task that ends as aw ends, but whose cancellation does
-- not cancel aw.  asyncio.shield(t):await(), wait_for(shield(t), 1).
function M.shield(aw)
  local inner = to_task(aw, "shield", 1)
  if inner:done() then return inner end
  return create_task(function()
    local list = { inner }
    while not inner:done() do wait_any(list) end
    return inner:await()
  end)
end

---------------------------------------------------------------------------
-- TaskGroup
---------------------------------------------------------------------------

local function exception_group(errors, what)
  local parts = {}
  for i = 1, #errors do
    parts[i] = ("[%d] %s"):format(i, tostring(errors[i]))
  end
  return M.ExceptionGroup(("unhandled errors in %s (%d sub-exception%s): %s")
    :format(what, #errors, #errors == 1 and "" or "s", tconcat(parts, "; ")),
    { errors = errors })
end

local TaskGroup = { __name = "asyncio.TaskGroup" }
TaskGroup.__index = TaskGroup

function M.TaskGroup()
  local parent = current_task()
  if not parent then
    error("asyncio: TaskGroup() called outside a task (use asyncio.run)", 2)
  end
  return setmetatable({ _parent = parent, _tasks = {}, _seq = 0, _n = 0,
                        _errors = {}, _failed = {}, _aborting = false, _exiting = false,
                        _closed = false, _cancel_requested = false },
                      TaskGroup)
end

function TaskGroup:_abort()
  self._aborting = true
  for t in pairs(self._tasks) do
    if not t:done() then t:cancel() end
  end
end

-- A child has finished (called at most once per child).
function TaskGroup:_on_done(t)
  if not self._tasks[t] then return end
  self._tasks[t] = nil
  self._n = self._n - 1
  if self._n == 0 and self._all_done then self._all_done:set() end
  if t:cancelled() then return end
  local ok, err = pcall(t.result, t)
  if ok then return end
  self._errors[#self._errors + 1] = err
  self._failed[#self._failed + 1] = t
  if not self._aborting and not self._cancel_requested then
    self:_abort()
    local parent = self._parent
    if not parent:done() then
      -- interrupt the group's body (or its wait at the end, so that
      -- cancelling() counts as asyncio's); __close withdraws it
      self._cancel_requested = true
      parent:cancel()
    end
  end
end

function TaskGroup:create_task(fn, ...)
  if getmetatable(self) ~= TaskGroup then
    argerror(1, "create_task", "TaskGroup expected")
  end
  if not is_callable(fn) then
    argerror(2, "create_task", "function expected, got " .. type(fn))
  end
  if self._closed then error(M.RuntimeError("TaskGroup is finished"), 2) end
  if self._aborting then
    error(M.RuntimeError("TaskGroup is shutting down"), 2)
  end
  local t = create_task(fn, ...)
  self._seq = self._seq + 1
  self._tasks[t] = self._seq
  self._n = self._n + 1
  group_parents[t] = self._parent -- the call graph: awaited by the parent
  t:add_done_callback(function(d) self:_on_done(d) end)
  return t
end

-- Waits for every child.  Children are accounted for by their done
-- callbacks only, and the wait ends through an Event those callbacks set:
-- so, as in asyncio, every callback of children that finished in the same
-- turn has run (and requested its cancellations) before the parent
-- resumes.  Returns the cancellation to propagate (the parent was
-- cancelled while the group was not aborting) and the last one received.
function TaskGroup:_wait_children()
  local propagate, received
  while self._n > 0 do
    local ev = M.Event()
    self._all_done = ev
    local ok, err = pcall(ev.wait, ev)
    self._all_done = nil
    if not ok then
      if not is_cancel(err) then error(err, 0) end
      -- the parent was cancelled while waiting: cancel the children,
      -- keep waiting, then re-raise
      received = err
      if not self._aborting then
        propagate = err
        self:_abort()
      end
    end
  end
  return propagate, received
end

function TaskGroup:__close(err)
  self._exiting = true
  local propagate
  if err ~= nil then
    if is_cancel(err) then propagate = err end
    if not self._aborting then self:_abort() end
  end
  local during, received = self:_wait_children()
  propagate = during or propagate
  -- the body's own error goes after those of the children, which failed
  -- while the group waited for them (asyncio appends it there too)
  if err ~= nil and not is_cancel(err) then
    self._errors[#self._errors + 1] = err
  end
  self._closed = true
  local parent = self._parent
  if self._cancel_requested then
    self._cancel_requested = false
    if parent:uncancel() == 0 then
      propagate = nil -- only our own cancellation: swallowed
    elseif propagate == nil then
      propagate = received -- someone else's, received while waiting
    end
  end
  local errors = self._errors
  if #errors > 0 then
    self._errors = {}
    -- A cancellation from outside the group must survive the group's
    -- errors: re-request it, so the parent's next suspension raises it.
    if parent:cancelling() > 0 then
      parent:uncancel()
      parent:cancel()
    end
    local eg = exception_group(errors, "a TaskGroup")
    -- the group's report continues with each failed child's
    note_origin(eg, self._failed)
    self._failed = {}
    error(eg, 0)
  end
  if propagate then error(propagate, 0) end
end

function TaskGroup:__tostring()
  return ("<TaskGroup tasks=%d%s>"):format(self._n,
    self._aborting and " cancelling" or "")
end

-- task_group(function(tg) ... end): the group lives for the call.
function M.task_group(fn, ...)
  if not is_callable(fn) then
    argerror(1, "task_group", "function expected, got " .. type(fn))
  end
  local tg <close> = M.TaskGroup()
  return fn(tg, ...)
end

---------------------------------------------------------------------------
-- Condition
---------------------------------------------------------------------------

local Condition = { __name = "asyncio.Condition" }
Condition.__index = Condition

function M.Condition(lock)
  if lock == nil then
    lock = M.Lock()
  elseif getmetatable(lock) ~= LockMT then
    argerror(1, "Condition", "asyncio.Lock expected, got " .. type(lock))
  end
  return setmetatable({ _lock = lock, _waiters = {} }, Condition)
end

local function check_cond(self, fname)
  if getmetatable(self) ~= Condition then
    argerror(1, fname, "asyncio.Condition expected, got " .. type(self))
  end
end

function Condition:acquire()
  check_cond(self, "acquire")
  self._lock:acquire()
  return self
end

function Condition:release()
  check_cond(self, "release")
  self._lock:release()
end

function Condition:locked()
  check_cond(self, "locked")
  return self._lock:locked()
end

function Condition:__close() self._lock:release() end

local function remove_waiter(ws, ev)
  for i = 1, #ws do
    if ws[i] == ev then tremove(ws, i) return end
  end
end

local function notify(self, n)
  local ws = self._waiters
  while n > 0 and #ws > 0 do
    tremove(ws, 1):set()
    n = n - 1
  end
end

-- wait(): releases the lock, waits for a notify, re-acquires the lock
-- (even when cancelled: the lock is held whenever wait returns or raises).
-- Whatever error leaves wait, it may have come after this waiter was
-- notified, so it passes one notification on (as asyncio 3.13 does; a
-- spurious wake-up is allowed, a lost one is not).
function Condition:wait()
  check_cond(self, "wait")
  local lock = self._lock
  if not lock:locked() then
    error(M.RuntimeError("cannot wait on un-acquired lock"), 2)
  end
  local ev = M.Event()
  local ws = self._waiters
  ws[#ws + 1] = ev
  lock:release()
  local ok, err = pcall(ev.wait, ev)
  remove_waiter(ws, ev) -- still listed unless notify took it
  while true do
    local got, e2 = pcall(lock.acquire, lock)
    if got then break end
    if not is_cancel(e2) then
      notify(self, 1)
      error(e2, 0)
    end
    ok, err = false, e2 -- the most recent cancellation is the one raised
  end
  if not ok then
    notify(self, 1)
    error(err, 0)
  end
  return true
end

function Condition:wait_for(pred)
  check_cond(self, "wait_for")
  if not is_callable(pred) then
    argerror(1, "wait_for", "function expected, got " .. type(pred))
  end
  local r = pred()
  while not r do
    self:wait()
    r = pred()
  end
  return r
end

function Condition:notify(n)
  check_cond(self, "notify")
  if n == nil then n = 1 else check_number(n, "notify", 1) end
  if not self._lock:locked() then
    error(M.RuntimeError("cannot notify on un-acquired lock"), 2)
  end
  notify(self, n)
end

function Condition:notify_all()
  check_cond(self, "notify_all")
  if not self._lock:locked() then
    error(M.RuntimeError("cannot notify on un-acquired lock"), 2)
  end
  notify(self, #self._waiters)
end

function Condition:__tostring()
  return ("<Condition %s waiters=%d>"):format(
    self._lock:locked() and "locked" or "unlocked", #self._waiters)
end

---------------------------------------------------------------------------
-- Barrier (Python's state machine over a Condition)
---------------------------------------------------------------------------

local FILLING, DRAINING, RESETTING, BROKEN = 0, 1, 2, 3

local Barrier = { __name = "asyncio.Barrier" }
local BarrierMethods = {}

function M.Barrier(parties)
  if math.type(parties) ~= "integer" then
    argerror(1, "Barrier", "integer expected, got "
      .. (math.type(parties) or type(parties)))
  end
  if parties < 1 then
    argerror(1, "Barrier", "parties must be >= 1")
  end
  return setmetatable({ _cond = M.Condition(), _parties = parties,
                        _state = FILLING, _count = 0 }, Barrier)
end

function Barrier:__index(k)
  if k == "parties" then return self._parties
  elseif k == "n_waiting" then
    return self._state == FILLING and self._count or 0
  elseif k == "broken" then return self._state == BROKEN
  end
  return BarrierMethods[k]
end

local function broken_error()
  return M.BrokenBarrierError("the barrier is broken")
end

local function barrier_block(self)
  self._cond:wait_for(function()
    return self._state ~= DRAINING and self._state ~= RESETTING
  end)
  if self._state == BROKEN then error(broken_error(), 0) end
end

local function barrier_exit(self)
  if self._count == 0 then
    if self._state == RESETTING or self._state == DRAINING then
      self._state = FILLING
    end
    self._cond:notify_all()
  end
end

local function barrier_pass(self, index)
  if index + 1 == self._parties then
    self._state = DRAINING
    self._cond:notify_all()
  else
    self._cond:wait_for(function() return self._state ~= FILLING end)
    if self._state == BROKEN or self._state == RESETTING then
      error(broken_error(), 0)
    end
  end
end

local function check_barrier(self, fname)
  if getmetatable(self) ~= Barrier then
    argerror(1, fname, "asyncio.Barrier expected, got " .. type(self))
  end
end

-- wait() -> the arrival index, 0 .. parties-1 (as in Python).
function BarrierMethods:wait()
  check_barrier(self, "wait")
  local _ <close> = self._cond:acquire()
  barrier_block(self)
  local index = self._count
  self._count = index + 1
  local ok, err = pcall(barrier_pass, self, index)
  self._count = self._count - 1
  barrier_exit(self)
  if not ok then error(err, 0) end
  return index
end

function BarrierMethods:reset()
  check_barrier(self, "reset")
  local _ <close> = self._cond:acquire()
  if self._count > 0 then
    if self._state ~= RESETTING then self._state = RESETTING end
  else
    self._state = FILLING
  end
  self._cond:notify_all()
end

function BarrierMethods:abort()
  check_barrier(self, "abort")
  local _ <close> = self._cond:acquire()
  self._state = BROKEN
  self._cond:notify_all()
end

function Barrier:__tostring()
  local names = { [0] = "filling", "draining", "resetting", "broken" }
  return ("<Barrier %s waiters=%d/%d>"):format(names[self._state],
    self._state == FILLING and self._count or 0, self._parties)
end
