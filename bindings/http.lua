-- asyncio.http, the Lua half (compiled into the binary by CMake): options,
-- responses, headers and sessions.  The C half (`core`, bindings/http.c)
-- drives libcurl's multi-socket API on the host's loop.  This file builds
-- the module from its parts, one job each (PARTS, in the order they need
-- each other), and holds http.fetch; the parts share the table I.
local core, Response = ...

local http = {
  Error = core.Error,              -- class "HTTPError": kind, url, code, message
  StatusError = core.StatusError,  -- class "HTTPStatusError" (an http.Error): status, url
  curl_version = core.curl_version,
}

local PARTS = {"http_check", "http_url", "http_json", "http_headers",
               "http_response", "http_retry", "http_request", "http_session"}

-- Argument errors point at the caller's line: the first level outside
-- these chunks.
local sources = {["=asyncio/http.lua"] = true}
for _, part in ipairs(PARTS) do sources["=asyncio/" .. part .. ".lua"] = true end

local I = {core = core, http = http, Response = Response}
I.argerror, I.checktype = core.lua_part("argcheck")()(sources)
for _, part in ipairs(PARTS) do core.lua_part(part)(I) end

local checktype, checkmethod, checkurl = I.checktype, I.checkmethod, I.checkurl
local prepare, send = I.prepare, I.send
local perform = core.perform

-- ---- fetch -----------------------------------------------------------------------

local default_session

-- The shared session behind http.fetch (keep-alive across calls).
function http.default_session()
  if not default_session or default_session.closed then
    default_session = http.Session()
  end
  return default_session
end

-- http.fetch(url [, opts]) -> response (opts.method defaults to "GET")
function http.fetch(url, opts)
  checkurl(url, 1, "fetch")
  checktype(opts, 2, "fetch", "table", true)
  local sess = default_session
  if not sess or sess.closed then sess = http.default_session() end
  if opts == nil then return perform(sess._core, "GET", url) end
  local m = opts.method
  if m ~= nil then m = checkmethod(m, 2, "fetch") end
  local u, o, policy, codec = prepare(sess, url, opts, "fetch")
  return send(sess._core, m or "GET", u, o, policy, codec)
end

return http
