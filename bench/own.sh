#!/usr/bin/env bash
# The project's own workloads W1-W7 (bench/w*_*.lua), for a plain clone:
# what `make bench` runs when the comparison harness (../shared/bench) is not
# beside the project.  Everything is the project's and on loopback: W5's
# server is bench/w5_echo.lua and its load generator bench/w5_echo_client.c
# (built by CMake); W6 and W7 fetch from lasync's own HTTP server
# (bench/servers/).  The workloads and their checks are the harness's
# (shared/bench/README.md); the figures are lasync's alone, not compared.
#
# usage: bench/own.sh [--quick] [--only W1,W5,...]
# environment: LASYNC (default build/lasync), ECHO_CLIENT (default
#   w5_echo_client beside LASYNC), OWN_START_TIMEOUT (seconds a server gets
#   to listen, default 10), OWN_TIMEOUT (seconds a client may run, default
#   300, 60 with --quick).
# Prints one RESULT line per workload (the scripts' own); exit status 0 only
# when every workload ran and its check passed (ok=1).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LASYNC=${LASYNC:-$(dirname "$HERE")/build/lasync}
ECHO_CLIENT=${ECHO_CLIENT:-$(dirname "$LASYNC")/w5_echo_client}
START_TIMEOUT=${OWN_START_TIMEOUT:-10}
QUICK=0
ONLY=W1,W2,W3,W4,W5,W6,W7
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --only) ONLY=${2:?--only needs a list, e.g. W5,W6}; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "own.sh: unknown argument: $1 (usage: bench/own.sh [--quick] [--only W1,W5,...])" >&2; exit 2 ;;
  esac
  shift
done
ONLY=$(printf '%s' "$ONLY" | tr 'a-z' 'A-Z' | tr -d ' ')
for w in ${ONLY//,/ }; do
  case $w in W[1-7]) ;; *) echo "own.sh: unknown workload '$w' in --only (W1..W7)" >&2; exit 2 ;; esac
done
wanted() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

# The harness's sizes (full and --quick), except W5's --quick duration.
if [ "$QUICK" = 1 ]; then
  W1_N=10000 W2_N=10000 W3_N=100000 W4_I=100 W5_D=1 W6_N=2000
  CLIENT_TIMEOUT=${OWN_TIMEOUT:-60}
else
  W1_N=100000 W2_N=100000 W3_N=1000000 W4_I=1000 W5_D=5 W6_N=20000
  CLIENT_TIMEOUT=${OWN_TIMEOUT:-300}
fi
W3_MAX=64 W4_T=100 W5_C=50 W5_MSG=64 W6_C=50 W6_LEN=10240 W7_N=200 W7_C=200

[ -x "$LASYNC" ] || { echo "own.sh: no lasync at $LASYNC (build it: make build)" >&2; exit 1; }
if wanted W5 && [ ! -x "$ECHO_CLIENT" ]; then
  echo "own.sh: no W5 load generator at $ECHO_CLIENT (build it: make build)" >&2
  exit 1
fi

# Server and client on different CPUs when there are two to pin to (as the
# harness does: W1-W4 on CPU 1, W5 server 0 / client 1, W6-W7 server 1 /
# client 0).
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null &&
   taskset -c 1 true 2>/dev/null; then
  PIN=1; PIN_NOTE="pinned with taskset"
else
  PIN=0; PIN_NOTE="not pinned (no taskset or fewer than 2 CPUs)"
fi
# pin_to CPU: PIN_TO holds the words that pin a command to CPU (none
# without pinning).
# A command started as "${PIN_TO[@]}" COMMAND & is exec'd by the background
# child (taskset execs it too), so $! is the command's own PID.
pin_to() {
  PIN_TO=()
  [ "$PIN" = 1 ] && PIN_TO=(taskset -c "$1")
  return 0
}
GNU_TIME=
[ -x /usr/bin/time ] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null && GNU_TIME=/usr/bin/time

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lasync-own.XXXXXX")
SRV_PID= CLI_PID=
# Whatever happens (a failure, Ctrl-C, a TERM), the processes this script
# started are stopped by their PIDs and the temp folder goes.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
cleanup() {
  [ -n "$CLI_PID" ] && stop_pid "$CLI_PID"
  [ -n "$SRV_PID" ] && stop_pid "$SRV_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FAILED=
failed() { # WORKLOAD MESSAGE [LOG]
  echo "own.sh: $1 FAILED: $2" >&2
  [ -n "${3:-}" ] && [ -s "$3" ] && sed 's/^/  | /' "$3" >&2
  FAILED="$FAILED $1"
}

# start_server WORKLOAD CPU SCRIPT ARGS...: the server listens on a free
# port (PORT 0) and names it on stderr; this polls for that line (no fixed
# sleep) and sets PORT, or fails when the server exits or stays silent.
start_server() {
  local w=$1 cpu=$2; shift 2
  local log=$TMP/$w.server.log
  pin_to "$cpu"
  "${PIN_TO[@]}" "$LASYNC" "$@" 0 >/dev/null 2>"$log" </dev/null &
  SRV_PID=$!
  local deadline=$((SECONDS + START_TIMEOUT))
  PORT=
  while :; do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$log" | head -n 1)
    [ -n "$PORT" ] && return 0
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
      wait "$SRV_PID"
      local status=$?
      SRV_PID=
      failed "$w" "its server ($*) exited with status $status before listening" "$log"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      stop_pid "$SRV_PID"
      SRV_PID=
      failed "$w" "its server ($*) did not listen within $START_TIMEOUT s" "$log"
      return 1
    fi
    sleep 0.02
  done
}

stop_server() {
  stop_pid "$SRV_PID"
  SRV_PID=
}

# run_client WORKLOAD CPU COMMAND...: runs it (bounded by CLIENT_TIMEOUT),
# checks its last stdout line is this workload's RESULT with ok=1 and sets
# RESULT to that line.  In the background with `wait` so that a signal to
# this script is handled at once.
run_client() {
  local w=$1 cpu=$2; shift 2
  local out=$TMP/$w.out err=$TMP/$w.err
  pin_to "$cpu"
  timeout "$CLIENT_TIMEOUT" "${PIN_TO[@]}" "$@" >"$out" 2>"$err" </dev/null &
  CLI_PID=$!
  wait "$CLI_PID"
  local status=$?
  CLI_PID=
  RESULT=$(tail -n 1 "$out")
  if [ "$status" = 124 ]; then
    failed "$w" "still running after $CLIENT_TIMEOUT s: $*" "$err"
  elif [[ ! "$RESULT" =~ ^RESULT\ workload=$w\ .*\ ok=1( |$) ]]; then
    failed "$w" "exit status $status, last line '${RESULT}': $*" "$err"
  else
    return 0
  fi
  return 1
}

echo "lasync's own workloads (bench/own.sh$([ "$QUICK" = 1 ] && echo ' --quick')): the project's figures on this machine alone,"
echo "NOT the peer comparison (that runs when ../shared/bench is beside the project)."
echo "  lasync: $LASYNC; servers on 127.0.0.1, $PIN_NOTE"
echo "  figure: W1 W3 W4 W5 W6 rate (tasks, items, rounds, messages, requests per second; higher is better),"
echo "          W2 bytes_per_task (peak RSS at N minus at N=0, over N; lower), W7 seconds (lower; ideal ~0.05)"

B=$HERE
if wanted W1 && run_client W1 1 "$LASYNC" "$B/w1_spawn.lua" "$W1_N"; then echo "$RESULT"; fi

if wanted W2; then
  if [ -n "$GNU_TIME" ]; then
    if run_client W2 1 "$GNU_TIME" -f %M -o "$TMP/rss0" "$LASYNC" "$B/w2_idle.lua" 0 &&
       run_client W2 1 "$GNU_TIME" -f %M -o "$TMP/rss" "$LASYNC" "$B/w2_idle.lua" "$W2_N"; then
      rss0=$(tail -n 1 "$TMP/rss0") rss=$(tail -n 1 "$TMP/rss")
      echo "$RESULT bytes_per_task=$(( (rss - rss0) * 1024 / W2_N )) peak_rss_kib=$rss"
    fi
  elif run_client W2 1 "$LASYNC" "$B/w2_idle.lua" "$W2_N"; then
    echo "$RESULT (no GNU time at /usr/bin/time: no bytes_per_task)"
  fi
fi

if wanted W3 && run_client W3 1 "$LASYNC" "$B/w3_queue.lua" "$W3_N" "$W3_MAX"; then echo "$RESULT"; fi
if wanted W4 && run_client W4 1 "$LASYNC" "$B/w4_lock.lua" "$W4_T" "$W4_I"; then echo "$RESULT"; fi

if wanted W5 && start_server W5 0 "$B/w5_echo.lua"; then
  run_client W5 1 "$ECHO_CLIENT" 127.0.0.1 "$PORT" "$W5_C" "$W5_D" "$W5_MSG" && echo "$RESULT"
  stop_server
fi

if wanted W6 && start_server W6 1 "$B/servers/w6_static.lua"; then
  run_client W6 0 "$LASYNC" "$B/w6_fetch.lua" "http://127.0.0.1:$PORT/" "$W6_N" "$W6_C" "$W6_LEN" &&
    echo "$RESULT"
  stop_server
fi

if wanted W7 && start_server W7 1 "$B/servers/w7_slow.lua"; then
  run_client W7 0 "$LASYNC" "$B/w7_overlap.lua" "http://127.0.0.1:$PORT/" "$W7_N" "$W7_C" 64 &&
    echo "$RESULT"
  stop_server
fi

if [ -n "$FAILED" ]; then
  echo "own.sh: failed:$FAILED" >&2
  exit 1
fi
