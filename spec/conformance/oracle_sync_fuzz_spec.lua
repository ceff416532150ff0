-- A differential test with CPython as the oracle, for the synchronisation
-- primitives: random programs of a few tasks doing Event, Lock,
-- Semaphore, BoundedSemaphore, Condition or Barrier operations (with
-- sleeps of 0, 1 or 2 loop turns between them), started and cancelled at
-- chosen turns, are written twice from one seed (spec/sync_oracle_gen.lua),
-- as a Python asyncio script and as a lasync one, and both must print the
-- same log line for line: each operation's result or error class, who was
-- cancelled where, cancel()'s results, the turn each thing happened in.
-- ORACLE_SEEDS=n runs seeds 1..n (CI: 24, every kind four times; 12 under
-- valgrind),
-- ORACLE_SEED_FROM=m starts at m.
local helper = require "spec.helper"
local gen = require "spec.sync_oracle_gen"

-- The interpreter itself rather than a wrapper script (pyenv's shim costs
-- a second a run on a busy machine).
local function python()
  local out, _, status = helper.sh("python3 -c 'import sys; print(sys.executable)'")
  assert(status == 0, "python3 is needed for the oracle specs")
  return helper.quote((out:gsub("\n$", "")))
end

local function run_python(py_exe, text)
  local path = helper.tmpname(".py")
  helper.write_file(path, text)
  local out, err, status = helper.sh(py_exe .. " " .. helper.quote(path))
  os.remove(path)
  return out, err, status
end

local function side_by_side(want, got)
  local w, g, lines = {}, {}, {}
  for l in want:gmatch("[^\n]*\n") do w[#w + 1] = l:sub(1, -2) end
  for l in got:gmatch("[^\n]*\n") do g[#g + 1] = l:sub(1, -2) end
  for i = 1, math.max(#w, #g) do
    local a, b = w[i] or "", g[i] or ""
    lines[i] = ("%s %-34s | %s"):format(a == b and " " or "*", a, b)
  end
  return "python3 (left) and lasync (right):\n" .. table.concat(lines, "\n")
end

describe("conformance: oracle, random synchronisation programs against CPython", function()
  -- under valgrind (LASYNC_SLOW=10) each kind twice instead of four times
  local seeds = tonumber(os.getenv("ORACLE_SEEDS")) or (helper.slow >= 10 and 12 or 24)
  local from = tonumber(os.getenv("ORACLE_SEED_FROM")) or 1
  local py_exe

  it("python3 is there to ask", function()
    py_exe = python()
    local out, _, status = helper.sh(py_exe .. " -c 'import asyncio; print(1)'")
    assert.are.equal(0, status)
    assert.are.equal("1\n", out)
  end)

  it(("%d programs print the same log in both"):format(seeds), function()
    py_exe = py_exe or python()
    local same, events, kinds = 0, 0, {}
    for seed = from, from + seeds - 1 do
      local py, lua, kind = gen.program(seed)
      local want, perr, pstatus = run_python(py_exe, py)
      assert.are.equal(0, pstatus, ("seed %d (python3): %s\n%s"):format(seed, perr, py))
      local got, err, status = helper.run_script(lua)
      assert.are.equal(0, status, ("seed %d (lasync): %s\n%s"):format(seed, err, lua))
      if want ~= got then
        error(("seed %d (%s) differs; %s\n\nthe Lua program:\n%s"):format(
          seed, kind, side_by_side(want, got), lua), 0)
      end
      same = same + 1
      kinds[kind] = true
      for line in want:gmatch("[^\n]+") do
        if not line:match("^turn ") then events = events + 1 end
      end
    end
    assert.are.equal(seeds, same)
    assert.is_true(events > seeds * 5, "programs too small to tell")
    if seeds >= #gen.KINDS then
      for _, k in ipairs(gen.KINDS) do assert.is_true(kinds[k], k .. " never drawn") end
    end
  end)
end)
