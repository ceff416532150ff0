-- Argument errors of the Lua halves of the bindings (compiled in, loaded
-- with core.lua_part "argcheck"), in Lua's own wording, "bad argument #1
-- to 'fetch' (string expected, got number)", raised at the caller's line
-- as luaL_argerror does for a C function.
--
-- argcheck(sources) -> argerror, checktype, raise for a module whose code
-- is in the chunks named in the set `sources` ("=asyncio/http.lua" =
-- true...): the error points at the first frame outside them (and outside
-- this file), however deep inside the module the check was made.  raise
-- is for a module's messages that are not in Lua's wording ("serve():
-- unknown option 'x'"): the same line, the message as given.
local error, type = error, type
local getinfo = debug and debug.getinfo
local HERE = "=asyncio/argcheck.lua"

return function(sources)
  -- Level 1 is argerror itself; its caller is level 2.  Without the debug
  -- library, the caller's caller: right for a check in the function the
  -- user called.
  local function level_out()
    if not getinfo then return 3 end
    local level = 3 -- argerror's caller, seen from here
    while true do
      local info = getinfo(level, "S")
      if not info or (info.source ~= HERE and not sources[info.source]) then break end
      level = level + 1
    end
    return level - 1 -- as argerror counts
  end

  -- Each calls level_out itself: its fallback level counts from them.
  local function argerror(n, fname, msg)
    error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level_out())
  end

  local function raise(msg)
    error(msg, level_out())
  end

  -- v when it has type `want` (or is nil and `optional`), else an error.
  local function checktype(v, n, fname, want, optional)
    if (v == nil and optional) or type(v) == want then return v end
    argerror(n, fname, ("%s expected, got %s"):format(want,
      v == nil and "no value" or type(v)))
  end

  return argerror, checktype, raise
end
