#!/bin/sh
# W8: wrk -c 50 -d 5 against a hello-world handler, each server pinned to
# one core (taskset -c 0), wrk on the other.  Peers: lasync
# (asyncio.http.server), Node's http, nginx (the ceiling), aiohttp on
# uvloop (python3-aiohttp, python3-uvloop) and lua-http (lua-http, on
# lua5.1) when installed.  usage: bench/w8/run.sh [build/lasync]
set -u
LASYNC=${1:-build/lasync}
DIR=$(dirname "$0")
PORT=18480
DUR=${W8_DURATION:-5}
run_one() { # name, command...
  name=$1; shift
  taskset -c 0 "$@" >/dev/null 2>&1 &
  pid=$!
  sleep 1
  rps=$(taskset -c 1 wrk -t 1 -c 50 -d "$DUR" "http://127.0.0.1:$PORT/" 2>&1 |
        awk '/Requests\/sec/ {print $2}')
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  echo "$name ${rps:-failed}"
  PORT=$((PORT + 1))
}
run_one lasync "$LASYNC" "$DIR/../w8_hello.lua" "$PORT"
run_one node node "$DIR/node_hello.js" "$PORT"
conf=$(mktemp); sed "s/PORT/$PORT/" "$DIR/nginx.conf" > "$conf"
run_one nginx nginx -c "$conf"; rm -f "$conf"
# Debian's python3-aiohttp/-uvloop are for /usr/bin/python3
if /usr/bin/python3 -c "import aiohttp" 2>/dev/null; then
  run_one aiohttp /usr/bin/python3 "$DIR/aiohttp_hello.py" "$PORT"
fi
if lua5.1 -e 'require "http.server"' 2>/dev/null; then
  run_one lua-http lua5.1 "$DIR/luahttp_hello.lua" "$PORT"
fi
