-- asyncio.http's argument checks shared by its parts (a part of http.lua,
-- compiled in): header lines, tokens, methods, URLs, the common options.
local I = ...
local core = I.core
local argerror, checktype = I.argerror, I.checktype
local ipairs, type = ipairs, type

-- A CR or LF in a header, the method or the URL would let the caller's
-- data end the line and start another header or a second request
-- (request smuggling); a NUL would cut the string where C reads it.
local function checkline(s, n, fname, what)
  if s:find("[%z\r\n]") then
    argerror(n, fname, what .. " contains a CR, LF or NUL byte")
  end
  return s
end

-- RFC 9110's token: what a method or a header name may be made of.
local function checktoken(s, n, fname, what)
  if not s:find("^[%w!#$%%&'*+%-.^_`|~]+$") then
    checkline(s, n, fname, what)
    argerror(n, fname, ("%s %q is not an HTTP token"):format(what, s))
  end
  return s
end

local function checkmethod(m, n, fname)
  checktype(m, n, fname, "string")
  return checktoken(m, n, fname, "method"):upper()
end

local function checkurl(url, n, fname)
  checktype(url, n, fname, "string")
  return checkline(url, n, fname, "url")
end

-- The timeout options: seconds, or false for none (nil: the default).
local TIMEOUTS = {"timeout", "connect_timeout", "read_timeout"}
local MAX_TIMEOUT = core.MAX_TIMEOUT
-- Flags: a string "no" or a 0 would be true to Lua, and verify = 0 would
-- leave verification on for a caller who meant off.
local FLAGS = {"follow_redirects", "verify", "stream"}

-- What a bad value was, for the message: a number as written, else its type.
local function shown(v)
  if v ~= v then return "nan" end
  return type(v) == "number" and ("%.14g"):format(v) or type(v)
end

-- Unknown keys, and the values that are checked before a request exists.
-- Each message names the option and what it was given.
local function checkoptions(opts, n, fname, which)
  local bad = core.unknown_option(opts, which)
  if bad then argerror(n, fname, ("unknown option '%s'"):format(bad)) end
  local function refuse(k, must)
    argerror(n, fname, ("option '%s' must be %s, got %s"):format(k, must, shown(opts[k])))
  end
  for _, k in ipairs{"proxy", "cafile"} do
    if opts[k] ~= nil then
      if type(opts[k]) ~= "string" then refuse(k, "a string") end
      checkline(opts[k], n, fname, ("option '%s'"):format(k))
    end
  end
  for _, k in ipairs(TIMEOUTS) do
    local v = opts[k]
    if v ~= nil and v ~= false and not (type(v) == "number" and v > 0 and v <= MAX_TIMEOUT) then
      refuse(k, ("a number of seconds in (0, %d] or false (no limit)"):format(MAX_TIMEOUT))
    end
  end
  for _, k in ipairs(FLAGS) do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then refuse(k, "true or false") end
  end
  local mr = opts.max_redirects
  if mr ~= nil and not (math.type(mr) == "integer" and mr >= 0) then
    refuse("max_redirects", "an integer >= 0")
  end
  local mb = opts.max_body
  if mb ~= nil and mb ~= false and not (math.type(mb) == "integer" and mb >= 0) then
    refuse("max_body", "an integer >= 0 or false")
  end
end

I.checkline, I.checktoken, I.checkmethod = checkline, checktoken, checkmethod
I.checkurl, I.checkoptions = checkurl, checkoptions
