-- asyncio.http's requests (a part of http.lua, compiled in): session
-- defaults and request options merged into what core.perform reads, and
-- the send under a retry policy.
local I = ...
local core = I.core
local argerror, checktype = I.argerror, I.checktype
local checkline, checktoken, checkoptions = I.checkline, I.checktoken, I.checkoptions
local checkretry, checkcodec, codec_fn = I.checkretry, I.checkcodec, I.codec_fn
local encode_query, retrying = I.encode_query, I.retrying
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local perform = core.perform

-- Merges session defaults and request options into the table core.perform
-- reads: headers as "Name: value" lines, body as a string, the rest as is.
-- Also returns the retry policy and the JSON codec that apply.
local NOT_FOR_CORE = {headers = true, json = true, query = true, method = true,
                      retry = true, json_codec = true}

local function prepare(sess, url, opts, fname, argn)
  argn = argn or 2
  local o = {}
  local d = sess._defaults
  if d then for k, v in pairs(d) do o[k] = v end end
  local policy, codec = sess._retry, sess._json
  local hdr_set = {} -- lower name -> {name, value}
  local order = {}
  local function add_headers(t, argn)
    for name, value in pairs(t) do
      if type(name) ~= "string" then
        argerror(argn, fname, "header names must be strings")
      end
      checktoken(name, argn, fname, "header name")
      local what = ("header '%s'"):format(name)
      if type(value) == "table" then
        for _, v in ipairs(value) do checkline(tostring(v), argn, fname, what) end
      elseif value ~= false then
        checkline(tostring(value), argn, fname, what)
      end
      local key = name:lower()
      if not hdr_set[key] then order[#order + 1] = key end
      hdr_set[key] = {name, value}
    end
  end
  if sess.headers then add_headers(sess.headers, 1) end
  if opts then
    checkoptions(opts, argn, fname, "request")
    for k, v in pairs(opts) do
      if not NOT_FOR_CORE[k] then o[k] = v end
    end
    if opts.retry ~= nil then policy = checkretry(opts.retry, argn, fname) end
    if opts.json_codec ~= nil then
      codec = checkcodec(opts.json_codec, argn, fname, "option 'json_codec'") or codec
    end
    if opts.headers ~= nil then
      checktype(opts.headers, argn, fname, "table")
      add_headers(opts.headers, argn)
    end
    if opts.query ~= nil then
      local q = opts.query
      if type(q) == "table" then q = encode_query(q, argn, fname) end
      checktype(q, argn, fname, "string")
      checkline(q, argn, fname, "query")
      if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
    end
    local body = opts.body
    if opts.json ~= nil then
      local ok, text = pcall(codec_fn("encode", codec), opts.json)
      if not ok or type(text) ~= "string" then
        argerror(argn, fname, ("option 'json' cannot be encoded: %s"):format(
          ok and ("the codec gave a " .. type(text)) or tostring(text)))
      end
      body = text
      if not hdr_set["content-type"] then
        add_headers({["Content-Type"] = "application/json"}, argn)
      end
    elseif type(body) == "table" then
      body = encode_query(body, argn, fname)
      if not hdr_set["content-type"] then
        add_headers({["Content-Type"] = "application/x-www-form-urlencoded"}, argn)
      end
    elseif body ~= nil and type(body) ~= "string" then
      argerror(argn, fname, "body must be a string or a table")
    end
    o.body = body
  end
  if #order > 0 then
    local lines = {}
    for _, key in ipairs(order) do
      local name, value = hdr_set[key][1], hdr_set[key][2]
      if type(value) == "table" then
        for _, v in ipairs(value) do lines[#lines + 1] = name .. ": " .. tostring(v) end
      elseif value == false then
        lines[#lines + 1] = name .. ":" -- removes a header curl would send
      else
        lines[#lines + 1] = name .. ": " .. tostring(value)
      end
    end
    if o.body then lines[#lines + 1] = "Expect:" end
    o.headers = lines
  elseif o.body then
    o.headers = {"Expect:"}
  end
  return url, o, policy, codec
end

-- Sends a prepared request (under its retry policy, if its method is one
-- the policy sends again); the response remembers its JSON codec.
local function send(cs, method, u, o, policy, codec)
  local resp
  if policy and policy.methods[method] then
    resp = retrying(policy, cs, method, u, o)
  else
    resp = perform(cs, method, u, o)
  end
  if codec then rawset(resp, "_codec", codec) end
  return resp
end

I.prepare, I.send = prepare, send
