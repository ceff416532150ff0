#!/usr/bin/env bash
# The README's LuaRocks steps: `luarocks --lua-version 5.4 make` with the
# project's rockspec into a temporary tree, then a stock lua5.4 with that
# tree's cpath requires asyncio (and asyncio.http, compiled in) and runs a task.
# Works on a copy of the sources: luarocks builds in build.luarocks/ beside
# the CMakeLists.txt.
# usage: luarocks_test.sh SOURCE_DIR
set -euo pipefail
src=$1
fail() { echo "not ok - $*"; exit 1; }
if ! command -v luarocks >/dev/null; then
  echo "skip - luarocks is not installed (apt-get install luarocks; make test installs it)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src"
cp -r "$src/CMakeLists.txt" "$src/cmake" "$src/host" "$src/bindings" \
      "$src/lasync-scm-1.rockspec" "$src/README.md" "$tmp/src/"
(cd "$tmp/src" && luarocks --lua-version 5.4 make --tree "$tmp/tree" lasync-scm-1.rockspec \
   >"$tmp/log" 2>&1) || { cat "$tmp/log"; fail "luarocks make"; }
[ -f "$tmp/tree/lib/lua/5.4/asyncio.so" ] || fail "no asyncio.so in the tree: $(find "$tmp/tree")"
echo "ok 1 - luarocks make built and installed asyncio.so"
out=$(LUA_CPATH="$tmp/tree/lib/lua/5.4/?.so" lua5.4 -e '
  local asyncio = require "asyncio"
  assert(type(require("asyncio.http").fetch) == "function")
  print(asyncio.run(function(x) asyncio.sleep(0.1) return x * 2 end, 21))')
[ "$out" = 42 ] || fail "lua5.4 with the tree's cpath printed: $out"
# `luarocks path` gives the same cpath
out=$(eval "$(luarocks --lua-version 5.4 path --tree "$tmp/tree")" &&
      lua5.4 -e 'print(require("asyncio").run(function() return "ok" end))')
[ "$out" = ok ] || fail "with luarocks path: $out"
echo "ok 2 - lua5.4 requires the rock's asyncio and runs a task"
echo "2 passed, 0 failed"
