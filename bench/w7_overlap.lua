-- W7 latency overlap (shared/bench/README.md): runs w6_fetch.lua unchanged
-- with the tag W7.   usage: w7_overlap.lua URL N C EXPECTED_LEN
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
arg[5] = "W7"
dofile(dir .. "/w6_fetch.lua")
