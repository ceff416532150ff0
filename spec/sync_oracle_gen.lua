-- Random programs over one synchronisation primitive (Event, Lock,
-- Semaphore, BoundedSemaphore, Condition, Barrier), written twice from one
-- seed: as a Python asyncio script and as a lasync one, which must print
-- the same log.  Used by spec/conformance/oracle_sync_fuzz_spec.lua.
--
-- A program is a few tasks, each a list of operations on the primitive
-- (with sleeps of 0, 1 or 2 loop turns between them), started at chosen
-- turns, and a main task that counts turns ("turn n" in the log) and
-- cancels tasks at chosen turns.  Every operation logs its result or the
-- class of its error; a cancelled task logs the operation it was in, then
-- releases what it holds.  At the end every task is cancelled and the
-- primitive's state is logged.
local M = {}

local rng = require("spec.helper").lcg

M.KINDS = { "Event", "Lock", "Semaphore", "BoundedSemaphore", "Condition",
            "Barrier" }

-- Each operation: its log name, the Python expression (awaited when it is a
-- coroutine) and the Lua function body, and how it changes what the task
-- holds (`hold`: +1 acquired, -1 released).
local function op(name, py, lua, hold)
  return { name = name, py = py, lua = lua, hold = hold }
end

local ACQUIRE = op("acquire", "P.acquire()", "P:acquire() return true", 1)
local RELEASE = op("release", "P.release()", "return P:release()", -1)
local LOCKED = op("locked", "P.locked()", "return P:locked()")

-- The operations a task may do next, by kind and by how many permits it
-- holds (a task mostly releases what it holds, sometimes what it does not).
local function choices(kind, r, held)
  if kind == "Event" then
    return { op("wait", "P.wait()", "return P:wait()"),
             op("set", "P.set()", "return P:set()"),
             op("clear", "P.clear()", "return P:clear()"),
             op("is_set", "P.is_set()", "return P:is_set()") }
  elseif kind == "Barrier" then
    local w = op("wait", "P.wait()", "return P:wait()")
    return { w, w, w, w,
             op("abort", "P.abort()", "return P:abort()"),
             op("reset", "P.reset()", "return P:reset()"),
             op("n_waiting", "P.n_waiting", "return P.n_waiting"),
             op("broken", "P.broken", "return P.broken") }
  elseif kind == "Condition" then
    if held > 0 then
      local v = r.int(1, 3)
      return {
        op("wait", "P.wait()", "return P:wait()"),
        op("wait", "P.wait()", "return P:wait()"),
        op("wait_for x>=" .. v, ("P.wait_for(lambda: x[0] >= %d)"):format(v),
           ("return P:wait_for(function() return x >= %d end)"):format(v)),
        op("notify", "P.notify()", "return P:notify()"),
        op("notify 2", "P.notify(2)", "return P:notify(2)"),
        op("notify_all", "P.notify_all()", "return P:notify_all()"),
        op("inc", "inc()", "return inc()"),
        RELEASE, RELEASE,
      }
    end
    return { ACQUIRE, ACQUIRE, ACQUIRE, LOCKED, op("inc", "inc()", "return inc()"),
             r.float() < 0.3 and RELEASE or ACQUIRE,
             r.float() < 0.2 and op("notify", "P.notify()", "return P:notify()")
               or ACQUIRE }
  end
  -- Lock, Semaphore, BoundedSemaphore
  if held > 0 then return { RELEASE, RELEASE, LOCKED, ACQUIRE } end
  return { ACQUIRE, ACQUIRE, ACQUIRE, LOCKED, r.float() < 0.3 and RELEASE or ACQUIRE }
end

function M.program(seed, opts)
  opts = opts or {}
  local r = rng(seed)
  local kind = opts.kind or M.KINDS[seed % #M.KINDS + 1]
  local ctor, state_py, state_lua
  if kind == "Semaphore" or kind == "BoundedSemaphore" then
    local v = r.int(0, 2)
    ctor = { ("%s(%d)"):format(kind, v), ("a.%s(%d)"):format(kind, v) }
    state_py, state_lua = "P.locked()", "P:locked()"
  elseif kind == "Barrier" then
    local n = r.int(1, 3)
    ctor = { ("asyncio.Barrier(%d)"):format(n), ("a.Barrier(%d)"):format(n) }
    state_py = "(P.n_waiting, P.broken)"
    state_lua = "'(' .. P.n_waiting .. ', ' .. fmt(P.broken) .. ')'"
  elseif kind == "Event" then
    ctor = { "asyncio.Event()", "a.Event()" }
    state_py, state_lua = "P.is_set()", "P:is_set()"
  elseif kind == "Condition" then
    ctor = { "Condition()", "a.Condition()" }
    state_py, state_lua = "P.locked()", "P:locked()"
  else
    ctor = { ("asyncio.%s()"):format(kind), ("a.%s()"):format(kind) }
    state_py, state_lua = "P.locked()", "P:locked()"
  end
  local py = {
    "import asyncio, sys",
    -- lasync follows asyncio 3.13 where 3.11 differs (docs/api.md), and
    -- on an older Python the oracle gets 3.13's rules from the subclasses
    -- below (spec/conformance/oracle_spec.lua pins both differences): a
    -- task leaving a Condition's wait() by an error (a cancellation)
    -- passes one notification on, as it may have been notified (3.11
    -- loses it),
    "Condition = asyncio.Condition",
    "if sys.version_info < (3, 13):",
    "    class Condition(asyncio.Condition):",
    "        async def wait(self):",
    "            if not self.locked(): return await super().wait()",
    "            try: return await super().wait()",
    "            except BaseException:",
    "                self.notify(1)",
    "                raise",
    -- and a task leaving Semaphore.acquire() (with the permit, cancelled
    -- or not) wakes as many waiters as there are free permits (3.11: one).
    "if sys.version_info < (3, 13):",
    "    class _Wake:",
    "        async def acquire(self):",
    "            try: return await super().acquire()",
    "            finally:",
    "                while self._value > 0:",
    "                    v = self._value",
    "                    self._wake_up_next()",
    "                    if self._value == v: break",
    "    class Semaphore(_Wake, asyncio.Semaphore): pass",
    "    class BoundedSemaphore(_Wake, asyncio.BoundedSemaphore): pass",
    "else:",
    "    Semaphore, BoundedSemaphore = asyncio.Semaphore, asyncio.BoundedSemaphore",
    "async def main():",
    "    P = " .. ctor[1],
    "    if isinstance(P, asyncio.Barrier): P._cond = Condition()",
    "    log = []",
    "    x = [0]",
    "    def inc():",
    "        x[0] += 1",
    "        return x[0]",
    "    async def run(i, name, f):",
    "        try:",
    "            r = f()",
    "            if asyncio.iscoroutine(r): r = await r",
    "            log.append(f't{i} {name} -> {r}')",
    "            return True",
    "        except asyncio.CancelledError:",
    "            log.append(f't{i} {name} cancelled')",
    "            raise",
    "        except Exception as e:",
    "            log.append(f't{i} {name} !{type(e).__name__}')",
    "            return False",
    "    async def cleanup(i, h):",
    "        for _ in range(h): await run(i, 'cleanup release', P.release)",
  }
  local lua = {
    "local a = asyncio",
    "a.run(function()",
    "  local P = " .. ctor[2],
    "  local log, x = {}, 0",
    "  local function L(s) log[#log + 1] = s end",
    "  local function inc() x = x + 1 return x end",
    "  local function fmt(v)",
    "    if v == true then return 'True' elseif v == false then return 'False'",
    "    elseif v == nil then return 'None' end",
    "    return tostring(v)",
    "  end",
    "  local function class(e)",
    "    for _, c in ipairs{'RuntimeError', 'ValueError', 'BrokenBarrierError'} do",
    "      if a.is(e, a[c]) then return c end",
    "    end",
    "    return tostring(e)",
    "  end",
    "  local function run(i, name, f)",
    "    local ok, r = pcall(f)",
    "    if ok then L(('t%d %s -> %s'):format(i, name, fmt(r))) return true end",
    "    if a.is(r, a.CancelledError) then L(('t%d %s cancelled'):format(i, name)) error(r, 0) end",
    "    L(('t%d %s !%s'):format(i, name, class(r)))",
    "    return false",
    "  end",
    "  local function cleanup(i, h)",
    "    for _ = 1, h do run(i, 'cleanup release', function() return P:release() end) end",
    "  end",
  }
  local function P(s) py[#py + 1] = s end
  local function Lu(s) lua[#lua + 1] = s end

  local ntasks = r.int(2, 5)
  local starts = {}
  for i = 0, ntasks - 1 do
    starts[i] = r.float() < 0.5 and 0 or r.int(0, 4)
    P(("    async def t%d():"):format(i))
    P("        h = 0")
    P("        try:")
    Lu(("  local function t%d()"):format(i))
    Lu("    local h = 0")
    Lu("    local ok, err = pcall(function()")
    local held = 0
    for _ = 1, r.int(1, 7) do
      local list = choices(kind, r, held)
      local o = list[r.int(1, #list)]
      local hold_py, hold_lua = "", ""
      if o.hold == 1 then
        hold_py, hold_lua = "h += 1", "h = h + 1"
      elseif o.hold == -1 then
        hold_py, hold_lua = "h -= 1", "h = h - 1"
      end
      if o.hold then held = math.max(0, held + o.hold) end
      P(("            if await run(%d, %q, lambda: %s): %s"):format(i, o.name, o.py,
        hold_py ~= "" and hold_py or "pass"))
      Lu(("      if run(%d, %q, function() %s end) then %s end"):format(i, o.name, o.lua,
        hold_lua))
      local s = r.int(0, 4)
      if s <= 2 then
        P(("            for _ in range(%d): await asyncio.sleep(0)"):format(s))
        Lu(("      for _ = 1, %d do a.sleep(0) end"):format(s))
      end
    end
    P(("            log.append('t%d done')"):format(i))
    P(("            await cleanup(%d, h)"):format(i))
    P("        except asyncio.CancelledError:")
    P(("            await cleanup(%d, h)"):format(i))
    P("            raise")
    Lu(("      L('t%d done')"):format(i))
    Lu(("      cleanup(%d, h) h = 0"):format(i))
    Lu("    end)")
    Lu(("    if not ok then cleanup(%d, h) error(err, 0) end"):format(i))
    Lu("  end")
  end
  -- the main task: starts and cancels tasks at chosen turns
  local turns = r.int(6, 24)
  local cancels = {}
  for _ = 1, r.int(0, 4) do
    local turn = r.int(0, turns - 1)
    cancels[turn] = cancels[turn] or {}
    local list = cancels[turn]
    list[#list + 1] = r.int(0, ntasks - 1)
  end
  P("    ts = {}")
  Lu("  local ts = {}")
  for turn = 0, turns - 1 do
    P(("    log.append('turn %d')"):format(turn))
    Lu(("  L('turn %d')"):format(turn))
    for i = 0, ntasks - 1 do
      if starts[i] == turn then
        P(("    ts[%d] = asyncio.create_task(t%d())"):format(i, i))
        Lu(("  ts[%d] = a.create_task(t%d)"):format(i, i))
      end
    end
    for _, k in ipairs(cancels[turn] or {}) do
      if starts[k] <= turn then
        P(("    log.append(f'cancel t%d -> {ts[%d].cancel()}')"):format(k, k))
        Lu(("  L('cancel t%d -> ' .. fmt(ts[%d]:cancel()))"):format(k, k))
      end
    end
    P("    await asyncio.sleep(0)")
    Lu("  a.sleep(0)")
  end
  P(("    log.append(f'state {%s}')"):format(state_py))
  P("    log.append('cancel all')")
  P("    for i in sorted(ts): ts[i].cancel()")
  P("    for _ in range(10): await asyncio.sleep(0)")
  P(("    log.append(f'state {%s}')"):format(state_py))
  P("    log.append('pending ' + ' '.join(f't{i}' for i, t in sorted(ts.items()) if not t.done()))")
  P("    print('\\n'.join(log))")
  P("asyncio.run(main())")
  Lu(("  L('state ' .. fmt(%s))"):format(state_lua))
  Lu("  L('cancel all')")
  Lu(("  for i = 0, %d do if ts[i] then ts[i]:cancel() end end"):format(ntasks - 1))
  Lu("  for _ = 1, 10 do a.sleep(0) end")
  Lu(("  L('state ' .. fmt(%s))"):format(state_lua))
  Lu("  local pending = {}")
  Lu(("  for i = 0, %d do if ts[i] and not ts[i]:done() then pending[#pending + 1] = 't' .. i end end"):format(ntasks - 1))
  Lu("  L('pending ' .. table.concat(pending, ' '))")
  Lu("  print(table.concat(log, '\\n'))")
  Lu("end)")
  return table.concat(py, "\n") .. "\n", table.concat(lua, "\n") .. "\n", kind
end

return M
