-- Small helpers shared by the course scripts: `--name value` options and a
-- progress bar.  Nothing asynchronous here.
local course = {}

-- Parses `--name value` pairs from the script's `arg` into a copy of
-- defaults (numbers stay numbers).  The convention of every course script:
-- -h/--help prints the usage on stdout and exits 0; a bad option prints the
-- message and the usage on stderr and exits 2.
function course.usage(text, msg)
  local out = msg and io.stderr or io.stdout
  if msg then out:write(arg[0]:match("[^/]*$"), ": ", msg, "\n") end
  out:write("usage: ", text, "\n")
  os.exit(msg and 2 or 0)
end

function course.options(defaults, usage)
  local opts, rest = {}, {}
  for k, v in pairs(defaults) do opts[k] = v end
  local function fail(msg)
    local names = {}
    for k, v in pairs(defaults) do names[#names + 1] = ("[--%s %s]"):format(k, tostring(v)) end
    table.sort(names)
    course.usage(arg[0]:match("[^/]*$") .. " " .. table.concat(names, " ") ..
      (usage and (" " .. usage) or ""), msg)
  end
  local i = 1
  while i <= #arg do
    local name = arg[i]:match("^%-%-(.+)$")
    if name == "help" or arg[i] == "-h" then fail() end
    if name then
      if defaults[name] == nil then fail("unknown option --" .. name) end
      local v = arg[i + 1]
      if v == nil then fail("--" .. name .. " needs a value") end
      if type(defaults[name]) == "number" then
        v = tonumber(v)
        if not v then fail("--" .. name .. " needs a number") end
      end
      opts[name] = v
      i = i + 2
    else
      rest[#rest + 1] = arg[i]
      i = i + 1
    end
  end
  return opts, rest
end

course.tty = os.execute("test -t 1") == true

-- "label [#####.....]  5/10": redrawn in place on a terminal; elsewhere
-- only the finished bar is printed, once.
function course.progress(label, done, total)
  if not course.tty and done < total then return end
  local width = 30
  local filled = total > 0 and width * done // total or width
  io.write(("\r%-12s [%s%s] %d/%d"):format(label, ("#"):rep(filled),
    ("."):rep(width - filled), done, total))
  if done >= total then io.write("\n") end
  io.flush()
end

return course
