-- http.url: parse/build/join (libcurl's URL API) and quoting/query strings,
-- compared with Python's urllib.parse (spec/fixtures/url_oracle.py, run by
-- this spec on the same inputs), with RFC 3986 5.4's table for join, and
-- against hostile input.
local helper = require "spec.helper"
local servers = require "spec.http_servers"
local http = require "asyncio.http"
local url = http.url

local function tohex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function fromhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

-- Python's answers for the request (bytes passed as hex).
local function oracle(req)
  local dk = require "dkjson"
  local inp = helper.tmpname(".json")
  helper.write_file(inp, dk.encode(req))
  local out, err, status = helper.sh(("python3 %s/url_oracle.py < %s"):format(
    helper.quote(servers.fixtures), helper.quote(inp)))
  os.remove(inp)
  assert.are.equal(0, status, err)
  return dk.decode(out, 1, nil)
end

local PARSE = {
  "http://user:pw@example.com:8080/a/b/../c?x=1&y=%20#frag",
  "https://example.com/",
  "https://[::1]:8443/p",
  "http://127.0.0.1/a%2Fb?q=%E2%82%AC",
  "http://h/p?",
  "http://h/p?a=1#",
  "foo://bar.baz/qux",
  "HTTP://Example.com/Path",
  "http://u@h/",
  "http://u:@h/",
  "http://h:0/",
  "file:///etc/passwd",
  "http://h/a;b=c/d",
  "https://h/%zz",
  "ws://h:65535/x?y#z",
}

local RFC_BASE = "http://a/b/c/d;p?q"
-- RFC 3986 5.4.1 and 5.4.2 (the oracle for join; Python agrees on each but
-- writes "http://g" for "//g", which curl writes with its root path "/").
local RFC = {
  {"g", "http://a/b/c/g"}, {"./g", "http://a/b/c/g"}, {"g/", "http://a/b/c/g/"},
  {"/g", "http://a/g"}, {"//g", "http://g/"}, {"?y", "http://a/b/c/d;p?y"},
  {"g?y", "http://a/b/c/g?y"}, {"#s", "http://a/b/c/d;p?q#s"},
  {"g#s", "http://a/b/c/g#s"}, {"g?y#s", "http://a/b/c/g?y#s"},
  {";x", "http://a/b/c/;x"}, {"g;x", "http://a/b/c/g;x"},
  {"g;x?y#s", "http://a/b/c/g;x?y#s"}, {"", "http://a/b/c/d;p?q"},
  {".", "http://a/b/c/"}, {"./", "http://a/b/c/"}, {"..", "http://a/b/"},
  {"../", "http://a/b/"}, {"../g", "http://a/b/g"}, {"../..", "http://a/"},
  {"../../", "http://a/"}, {"../../g", "http://a/g"},
  {"../../../g", "http://a/g"}, {"../../../../g", "http://a/g"},
  {"/./g", "http://a/g"}, {"/../g", "http://a/g"}, {"g.", "http://a/b/c/g."},
  {".g", "http://a/b/c/.g"}, {"g..", "http://a/b/c/g.."}, {"..g", "http://a/b/c/..g"},
  {"./../g", "http://a/b/g"}, {"./g/.", "http://a/b/c/g/"},
  {"g/./h", "http://a/b/c/g/h"}, {"g/../h", "http://a/b/c/h"},
  {"g;x=1/./y", "http://a/b/c/g;x=1/y"}, {"g;x=1/../y", "http://a/b/c/y"},
  {"g?y/./x", "http://a/b/c/g?y/./x"}, {"g?y/../x", "http://a/b/c/g?y/../x"},
  {"g#s/./x", "http://a/b/c/g#s/./x"}, {"g#s/../x", "http://a/b/c/g#s/../x"},
  {"https://other.example/x", "https://other.example/x"},
}

local BYTES = {"", "abc", "a b", "a+b", "/path/to file", "100%", "~user._-",
  "caf\xc3\xa9", "\0\1\2\255", "?&=#", "[x]:@!$'()*,;", "\r\n\t"}

describe("http.url", function()
  after_each(helper.no_leaks)

  describe("against Python's urllib.parse", function()
    local py
    setup(function()
      local req = {parse = PARSE, join = {}, quote = {}, unquote = {}, encode = {}, decode = {}}
      for _, c in ipairs(RFC) do req.join[#req.join + 1] = {RFC_BASE, c[1]} end
      for _, s in ipairs(BYTES) do
        req.quote[#req.quote + 1] = {tohex(s), "/"}
        req.quote[#req.quote + 1] = {tohex(s), ""}
        req.quote[#req.quote + 1] = {tohex(s), "/:?=&"}
        req.unquote[#req.unquote + 1] = tohex(s)
        req.unquote[#req.unquote + 1] = tohex(url.quote(s, ""))
        req.encode[#req.encode + 1] = {{tohex(s), tohex(s .. "v")}, {"61", tohex(s)}}
      end
      for _, q in ipairs{"a=1&b=2&a=3", "a&b=&=c", "x=a+b%20c&&y=%zz", "k=%00%FF", "", "&&&",
                         "a=1=2", "%41%42=%43"} do
        req.decode[#req.decode + 1] = tohex(q)
      end
      py = oracle(req)
    end)

    it("parse gives urlsplit's parts", function()
      for i, s in ipairs(PARSE) do
        local mine, theirs = url.parse(s), py.parse[i]
        assert.are.equal(theirs.scheme, mine.scheme, s)
        assert.are.equal(theirs.path, mine.path, s)
        assert.are.equal(theirs.query, mine.query or "", s)
        assert.are.equal(theirs.fragment, mine.fragment or "", s)
        assert.are.equal(theirs.user, mine.user, s)
        assert.are.equal(theirs.password, mine.password, s)
        -- urlsplit's hostname is lower-cased; parse gives the host as written
        assert.are.equal(theirs.host, mine.host and mine.host:lower(), s)
        assert.are.equal(theirs.port, mine.port, s)
        assert.is_true(mine.port == nil or math.type(mine.port) == "integer")
      end
    end)

    it("join resolves RFC 3986's examples as Python's urljoin does", function()
      for i, c in ipairs(RFC) do
        assert.are.equal(c[2], url.join(RFC_BASE, c[1]), "ref " .. c[1])
        local theirs = py.join[i]
        if c[1] == "//g" then theirs = theirs .. "/" end
        assert.are.equal(theirs, url.join(RFC_BASE, c[1]), "ref " .. c[1])
      end
    end)

    it("quote and unquote match quote() and unquote_to_bytes() byte for byte", function()
      local q, u = 0, 0
      for _, s in ipairs(BYTES) do
        for _, safe in ipairs{"/", "", "/:?=&"} do
          q = q + 1
          assert.are.equal(py.quote[q], url.quote(s, safe), ("%q safe %q"):format(s, safe))
        end
        assert.are.equal(py.quote[q - 2], url.quote(s)) -- safe defaults to "/"
        u = u + 1
        assert.are.equal(fromhex(py.unquote[u]), url.unquote(s))
        u = u + 1
        assert.are.equal(fromhex(py.unquote[u]), url.unquote(url.quote(s, "")))
        assert.are.equal(s, url.unquote(url.quote(s, "")))
      end
    end)

    it("encode_query matches urlencode; decode_query matches parse_qsl", function()
      for i, s in ipairs(BYTES) do
        assert.are.equal(py.encode[i], url.encode_query{{s, s .. "v"}, {"a", s}})
      end
      for i, q in ipairs{"a=1&b=2&a=3", "a&b=&=c", "x=a+b%20c&&y=%zz", "k=%00%FF", "", "&&&",
                         "a=1=2", "%41%42=%43"} do
        local _, list = url.decode_query(q)
        local want = {}
        for j, p in ipairs(py.decode[i]) do want[j] = {fromhex(p[1]), fromhex(p[2])} end
        assert.are.same(want, list, q)
      end
    end)
  end)

  describe("parse and build", function()
    it("gives absent parts as nil and the port as an integer", function()
      local p = url.parse("https://example.com")
      assert.are.same({scheme = "https", host = "example.com", path = "/"}, p)
      p = url.parse("http://u:p@[2001:db8::1]:81/x?y#z")
      assert.are.same({scheme = "http", user = "u", password = "p", host = "2001:db8::1",
                       port = 81, path = "/x", query = "y", fragment = "z"}, p)
    end)

    it("keeps dot segments and percent-escapes as written", function()
      assert.are.equal("/a/./b/../%7e", url.parse("http://h/a/./b/../%7e").path)
    end)

    it("build puts parse's parts back together", function()
      for _, s in ipairs{"http://user:pw@example.com:8080/a/c?x=1&y=%20#frag",
                         "https://[::1]:8443/p", "ws://h/x?y#z", "http://h/"} do
        assert.are.equal(s, url.build(url.parse(s)))
      end
      assert.are.equal("https://example.com:8443/a%20b?q=1",
        url.build{scheme = "https", host = "example.com", port = 8443, path = "/a%20b", query = "q=1"})
      assert.are.equal("http://h/p", url.build{scheme = "http", host = "h", path = "p"})
    end)

    it("refuses what curl cannot read with http.Error kind invalid_url", function()
      for _, s in ipairs{"not a url", "http://h:99999/", "http://h/a b", "mailto:x@y", "",
                         "http://[::1/", "/relative/path", ("http://h/" .. ("x"):rep(9e6))} do
        local e = helper.error_of(url.parse, s)
        assert.is_true(asyncio.is(e, http.Error), tostring(e))
        assert.are.equal("invalid_url", e.kind)
        assert.matches("http.url.parse", e.message)
      end
      local e = helper.error_of(url.join, "relative/base", "x")
      assert.are.equal("invalid_url", e.kind)
    end)

    it("takes a huge but valid URL whole", function()
      local long = "http://h/" .. ("a"):rep(1e6)
      assert.are.equal(#long - 8, #url.parse(long).path)
      local q = ("k=v&"):rep(50000)
      local map, list = url.decode_query(q)
      assert.are.equal(50000, #map.k)
      assert.are.equal(50000, #list)
    end)
  end)

  describe("query strings", function()
    it("encode_query: sorted keys, list values repeat their key, pairs keep their order", function()
      assert.are.equal("a=1&b=x+y&c=1&c=2", url.encode_query{c = {1, 2}, b = "x y", a = 1})
      assert.are.equal("z=1&a=2&z=3", url.encode_query{{"z", 1}, {"a", 2}, {"z", 3}})
      assert.are.equal("t=true", url.encode_query{t = true})
      assert.are.equal("", url.encode_query{})
    end)

    it("decode_query: repeated keys become lists in order, blanks kept", function()
      local map, list = url.decode_query("b=2&a=1&b=3&c&b=4&d=")
      assert.are.same({b = {"2", "3", "4"}, a = "1", c = "", d = ""}, map)
      assert.are.same({{"b", "2"}, {"a", "1"}, {"b", "3"}, {"c", ""}, {"b", "4"}, {"d", ""}}, list)
    end)

    it("round-trips any bytes", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      local s = table.concat(all)
      local map = url.decode_query(url.encode_query{[s] = s})
      assert.are.equal(s, map[s])
    end)
  end)

  describe("hostile input", function()
    it("names the function and the argument on wrong types", function()
      helper.fails_with("bad argument #1 to 'parse'", url.parse, nil)
      helper.fails_with("bad argument #1 to 'parse'", url.parse, {})
      helper.fails_with("bad argument #1 to 'build'", url.build, "x")
      helper.fails_with("bad argument #2 to 'join'", url.join, "http://h/", 1 == 1)
      helper.fails_with("bad argument #1 to 'quote'", url.quote, 5)
      helper.fails_with("bad argument #2 to 'quote'", url.quote, "x", 5)
      helper.fails_with("bad argument #1 to 'unquote'", url.unquote, nil)
      helper.fails_with("bad argument #1 to 'encode_query'", url.encode_query, "a=1")
      helper.fails_with("bad argument #1 to 'decode_query'", url.decode_query, {})
      helper.fails_with("bad argument #1 to 'encode_query' %(the value of key 'f' must be a string, number or boolean, got function%)",
        url.encode_query, {f = print})
      helper.fails_with("pair #2 must be a table", url.encode_query, {{"a", 1}, "b"})
    end)

    it("refuses NUL bytes where curl would cut the string", function()
      helper.fails_with("bad argument #1 to 'parse'.*NUL", url.parse, "http://h/\0x")
      helper.fails_with("bad argument #2 to 'join'.*NUL", url.join, "http://h/", "a\0b")
      helper.fails_with("field 'path' contains a NUL byte", url.build,
        {scheme = "http", host = "h", path = "/a\0b"})
      -- quoting is byte work: a NUL is just a byte there
      assert.are.equal("%00", url.quote("\0"))
    end)

    it("quotes and unquotes megabytes in linear time", function()
      local s = ("a b/\0\255"):rep(400000) -- 2.4 MB
      local t0 = os.clock()
      local q = url.quote(s)
      assert.are.equal(#s + 400000 * 2 * 3, #q) -- " ", NUL and 255 take 3 bytes each
      assert.are.equal(s, url.unquote(q))
      local map = url.decode_query(url.encode_query{k = s})
      assert.are.equal(s, map.k)
      -- linear: a quadratic pass over 2.4 MB would take hours; the bound is
      -- loose because valgrind runs this Lua loop some 50 times slower
      assert.is_true(os.clock() - t0 < 20 * helper.slow, "took " .. (os.clock() - t0))
    end)

    it("build refuses unknown keys, bad ports and bad parts", function()
      helper.fails_with("unknown option 'hostname'", url.build, {scheme = "http", hostname = "h"})
      helper.fails_with("field 'port' must be an integer in 0..65535", url.build,
        {scheme = "http", host = "h", port = 70000})
      helper.fails_with("field 'port'", url.build, {scheme = "http", host = "h", port = "80"})
      helper.fails_with("field 'host'", url.build, {scheme = "http", host = "a b"})
      helper.fails_with("field 'scheme'", url.build, {scheme = 5, host = "h"})
      helper.fails_with("bad argument #1 to 'build'", url.build, {host = "h"})
    end)
  end)
end)
