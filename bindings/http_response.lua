-- asyncio.http's responses (a part of http.lua, compiled in): the
-- Response metatable and its methods (read, json, save, iter_chunks...).
local I = ...
local core, http, Response = I.core, I.http, I.Response
local checktype, codec_fn, parse_headers = I.checktype, I.codec_fn, I.parse_headers
local tostring, error = tostring, error
local concat = table.concat

-- A response is a table: status, reason, url (final), method, headers
-- (parsed when first read), body (nil for a stream until it is read).
local rmethods = {}

function Response.__index(resp, k)
  if k == "headers" then
    local h = parse_headers(rawget(resp, "_head") or "")
    rawset(resp, "headers", h)
    return h
  end
  return rmethods[k]
end

function Response.__close(resp) rmethods.close(resp) end

function Response.__tostring(resp)
  return ("<http.Response %d %s %s>"):format(resp.status, resp.reason, resp.url)
end

local read, read_body = core.read, core.read_body

-- for chunk in resp:iter_chunks() do ... end: body pieces as they arrive.
-- curl is paused while the consumer lags (at most ~256 KiB are buffered).
function rmethods:iter_chunks()
  local x = rawget(self, "_xfer")
  if not x then
    local body, done = rawget(self, "body"), false
    return function()
      if done or body == nil or body == "" then return nil end
      done = true
      return body
    end
  end
  return read, x
end

local function too_large(self, cap)
  rmethods.close(self)
  return http.Error(("response body larger than max_body (%d bytes) (%s)")
    :format(cap, self.url), {kind = "body_too_large", url = self.url})
end

-- The whole body (for a stream: reads what is left, then keeps it, under
-- the request's max_body like any buffered body).
function rmethods:read()
  local body = rawget(self, "body")
  if body then return body end
  local x = rawget(self, "_xfer")
  local cap = rawget(self, "_max_body") or -1
  local parts, n, size = {}, 0, 0
  local chunk = read_body(x)
  while chunk do
    size = size + #chunk
    if cap >= 0 and size > cap then error(too_large(self, cap), 2) end
    n = n + 1
    parts[n] = chunk
    chunk = read_body(x)
  end
  body = concat(parts)
  rawset(self, "body", body)
  rawset(self, "_xfer", nil)
  return body
end
rmethods.text = rmethods.read

-- A body that is not JSON raises an http.Error naming the URL and the
-- content type (the usual cause: an HTML error page), at the caller's line.
function rmethods:json()
  local decode = codec_fn("decode", rawget(self, "_codec"))
  local ok, v = pcall(decode, self:read())
  if ok then return v end
  local ctype = self.headers["content-type"] or "none"
  error(http.Error(("%s: the body is not JSON (content type: %s): %s"):format(
    self.url, ctype, tostring(v)), {kind = "json", url = self.url}), 2)
end

-- Streams the body into a file through asyncio.fs (created or truncated;
-- its failures are asyncio.fs's: FileNotFoundError, PermissionError...).
-- Returns the number of bytes written.
function rmethods:save(path)
  checktype(path, 1, "save", "string")
  local fs = core.fs()
  if not fs then error("asyncio.http: save() needs asyncio.fs, which this state does not open", 2) end
  local f <close> = fs.open(path, "w")
  local n = 0
  for chunk in self:iter_chunks() do
    f:write(chunk)
    n = n + #chunk
  end
  f:close()
  return n
end

-- Stops a stream and frees its buffers (also on <close> and GC).
function rmethods:close()
  local x = rawget(self, "_xfer")
  if x then core.close_xfer(x) end
end

function rmethods:raise_for_status()
  local status = self.status
  if status >= 400 then
    error(http.StatusError(("%d %s for %s"):format(status, self.reason, self.url),
      {kind = "status", status = status, reason = self.reason, url = self.url}), 2)
  end
  return self
end

function rmethods:ok() return self.status < 400 end

I.rmethods = rmethods
