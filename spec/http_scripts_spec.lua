-- scripts/download_images.lua and scripts/fetcher.lua, run as programs
-- against the python test server on 127.0.0.1.
local helper = require "spec.helper"
local servers = require "spec.http_servers"
local http = require "asyncio.http"

local function run(script, args)
  return helper.sh(helper.quote(helper.lasync) .. " scripts/" .. script .. " " .. args)
end

describe("http scripts", function()
  local py
  setup(function() py = servers.start_python() end)
  teardown(function() if py then py.stop() end end)
  after_each(helper.no_leaks)

  it("download_images.lua saves 10 images concurrently", function()
    local dir = helper.tmpname("-imgs")
    local out, err, status = run("download_images.lua", py.url .. " " .. helper.quote(dir))
    assert.are.equal(0, status, err)
    assert.matches("downloaded 10 images, 200000 bytes", out)
    for i = 1, 10 do
      local data = servers.read_file(("%s/%d.png"):format(dir, i))
      assert.are.equal(20000, #data)
      assert.are.equal("\137PNG", data:sub(1, 4))
    end
    -- concurrent: 10 images from a threaded server take about one round trip
    local secs = tonumber(out:match("in ([%d.]+) s"))
    assert.is_true(secs < 2 * helper.slow)
    os.execute("rm -rf " .. helper.quote(dir))
  end)

  it("download_images.lua explains its usage", function()
    local out, _, status = run("download_images.lua", "--help")
    assert.are.equal(0, status)
    assert.matches("usage: download_images.lua %[BASE_URL %[OUTDIR%]%]", out)
    local _, err, status2 = run("download_images.lua", "-x")
    assert.are.equal(2, status2)
    assert.matches("unknown option %-x\nusage: download_images.lua", err)
  end)

  it("fetcher.lua - reads the URLs from stdin", function()
    local list = helper.tmpname(".txt")
    helper.write_file(list, "# two\n" .. (py.url .. "/echo\n"):rep(2))
    local out, err, status = helper.sh(helper.quote(helper.lasync) .. " scripts/fetcher.lua -c 2 - <"
      .. helper.quote(list))
    os.remove(list)
    assert.are.equal(0, status, err)
    assert.matches("fetched 2 urls in [%d.]+ s .*, 0 failed", out)
    assert.is_nil(out:find("URLs failed", 1, true))
  end)

  it("fetcher.lua -c 5 keeps at most 5 in flight and prints a summary", function()
    http.fetch(py.url .. "/reset")
    local list = helper.tmpname(".txt")
    local lines = {"# a comment", ""}
    -- each answer waits until 5 are in flight (a loaded machine sent them
    -- too slowly to overlap 50 ms answers: the server saw 4 at most)
    for _ = 1, 20 do lines[#lines + 1] = py.url .. "/inflight?ms=50&until=5" end
    helper.write_file(list, table.concat(lines, "\n") .. "\n")
    local out, err, status = run("fetcher.lua", "-c 5 " .. helper.quote(list))
    os.remove(list)
    assert.are.equal(0, status, err)
    assert.matches("fetched 20 urls in [%d.]+ s %([%d.]+ req/s%), 0 failed, 40 bytes, at most 5 in flight %(limit 5%)", out)
    assert.matches("results: 200 x20", out)
    assert.is_nil(out:find("\r", 1, true)) -- no progress line when not a terminal
    assert.are.equal(5, http.fetch(py.url .. "/stats"):json().max)
  end)

  it("fetcher.lua counts failures and exits 1", function()
    local list = helper.tmpname(".txt")
    helper.write_file(list, py.url .. "/status/404\nhttp://127.0.0.1:1/\n" .. py.url .. "/echo\n")
    local out, err, status = run("fetcher.lua", "-c 2 " .. helper.quote(list))
    os.remove(list)
    assert.are.equal(1, status)
    assert.matches("2 failed", out)
    assert.matches("; 2 of 3 URLs failed %(no answer, or 4xx/5xx%): exit status 1\n", out)
    assert.matches("results: 200 x1, 404 x1, connect x1", out)
    assert.matches("127.0.0.1:1/: HTTPError", err)
  end)

  it("fetcher.lua shows a progress line on a terminal", function()
    if not os.execute("command -v script >/dev/null") then
      pending("util-linux script(1) is not installed")
      return
    end
    local list = helper.tmpname(".txt")
    helper.write_file(list, (py.url .. "/echo\n"):rep(3))
    local out, _, status = helper.sh("script -qec " .. helper.quote(helper.quote(helper.lasync)
      .. " scripts/fetcher.lua -c 2 " .. helper.quote(list)) .. " /dev/null")
    os.remove(list)
    assert.are.equal(0, status)
    assert.matches("\r3/3 done, 0 failed", out)
    assert.matches("fetched 3 urls", out)
  end)
end)
