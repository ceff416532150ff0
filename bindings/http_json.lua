-- asyncio.http's JSON (a part of http.lua, compiled in): http.null, the
-- default codec, http.set_json and the codec a request or response uses.
local I = ...
local core, http = I.core, I.http
local argerror = I.argerror
local type, ipairs, error = type, ipairs, error
local find = string.find

-- JSON null, both ways (dkjson writes a table whose __tojson says "null").
http.null = setmetatable({}, {
  __name = "asyncio.http.null",
  __tostring = function() return "null" end,
  __tojson = function() return "null" end,
})

-- The default codec: lua-dkjson (with LPeg when it is there), because it
-- reads "9007199254740993" as that integer and "1.0" as a float, and
-- writes integers whole.  lua-cjson turns every number into a float and
-- writes 14 significant digits; it is faster, and a program can choose it
-- with http.set_json{encode = cjson.encode, decode = cjson.decode}.
local builtin_json
local function builtin()
  if builtin_json then return builtin_json end
  local ok, dk = pcall(require, "dkjson")
  if not ok then
    error("asyncio.http: JSON needs lua-dkjson, which is not installed "
          .. "(apt-get install lua-dkjson)", 0)
  end
  if pcall(require, "lpeg") then dk = dk.use_lpeg() end
  local null = http.null
  builtin_json = {
    encode = function(v) return dk.encode(v) end,
    decode = function(text)
      local v, pos, err = dk.decode(text, 1, null)
      if err then error(err, 0) end
      if pos and find(text, "%S", pos) then
        error(("trailing data at byte %d"):format(pos), 0)
      end
      return v
    end,
  }
  return builtin_json
end

local global_json -- http.set_json's codec, or nil

-- A codec table checked: {encode = f, decode = f}, either may be left out
-- (the next codec down gives it).  false/nil: none.
local function checkcodec(c, n, fname, what)
  if c == nil or c == false then return nil end
  if type(c) ~= "table" then
    argerror(n, fname, what .. " must be a table {encode =, decode =}")
  end
  local bad = core.unknown_option(c, "json")
  if bad then argerror(n, fname, ("unknown option '%s' in %s"):format(bad, what)) end
  for _, k in ipairs{"encode", "decode"} do
    if c[k] ~= nil and type(c[k]) ~= "function" then
      argerror(n, fname, ("%s: '%s' must be a function"):format(what, k))
    end
  end
  return {encode = c.encode, decode = c.decode}
end

-- The function for side "encode"/"decode": the request's codec, then the
-- session's, then http.set_json's, then the default.
local function codec_fn(side, c1, c2)
  return (c1 and c1[side]) or (c2 and c2[side])
    or (global_json and global_json[side]) or builtin()[side]
end

-- http.set_json{encode =, decode =}: the codec of every request and
-- response without one of its own; set_json(nil) goes back to the default.
function http.set_json(c)
  global_json = checkcodec(c, 1, "set_json", "the codec")
end

I.checkcodec, I.codec_fn = checkcodec, codec_fn
