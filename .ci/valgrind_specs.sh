#!/usr/bin/env bash
# Runs each spec file in its own busted process under valgrind, N at a time
# (make valgrind). Environment: VALGRIND, LASYNC, BUSTED, plus whatever the
# specs read (LASYNC_WRAPPER, LASYNC_SLOW...). Prints one line per file and
# the whole output of the files that failed.
# usage: valgrind_specs.sh [N [SPEC_FILE...]]
set -uo pipefail
jobs=${1:-2}
shift || true
cd "$(dirname "$0")/.."
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
export logs
# $1: a spec file, maybe followed by busted options (a --filter shard)
run_one() {
  set -f  # the filter patterns hold brackets
  spec=$1
  log=$logs/$(echo "$spec" | tr -c 'a-zA-Z0-9_.\n' _).log
  start=$SECONDS
  # TAP names each test as it ends, so a stalled file's log shows where
  # it stopped.
  # shellcheck disable=SC2086
  $VALGRIND --error-exitcode=1 "$LASYNC" "$BUSTED" --ignore-lua -o TAP $spec >"$log" 2>&1 &
  pid=$!
  # A file that stalls is stopped after SPEC_LIMIT seconds, with the
  # processes it left (what each waits in) in its log, instead of holding
  # the run until CI's own limit.
  (
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    sleep "${SPEC_LIMIT:-900}" &
    nap=$!
    wait "$nap"
    kill -0 "$pid" 2>/dev/null || exit 0
    echo "--- still running after ${SPEC_LIMIT:-900} s; processes:"
    ps -eo pid=,ppid=,stat=,etime=,wchan:20=,args= |
      awk -v top="$pid" '{ line[$1] = substr($0, 1, 240); kids[$2] = kids[$2] " " $1 }
        function show(p, depth,   n, k, i) {
          print depth line[p]; n = split(kids[p], k, " ")
          for (i = 1; i <= n; i++) show(k[i], depth "  ")
        }
        END { show(top, "") }'
    kill -TERM "$pid"
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      sleep 2
      kill -0 "$pid" 2>/dev/null || exit 0
    done
    kill -KILL "$pid"
  ) >>"$log" 2>&1 &
  watchdog=$!
  wait "$pid"
  status=$?
  kill "$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
  if [ $status = 0 ]; then
    echo "valgrind ok   $spec ($((SECONDS - start)) s)"
  else
    echo "valgrind FAIL $spec ($((SECONDS - start)) s, exit $status)"
    cat "$log"
    return 1
  fi
}
export -f run_one
# The slowest files first (those that start a valgrind-wrapped lasync per
# case), then the rest largest first, so that the last to start are short.
# lua_differential (100+ cases, each a valgrind-wrapped lasync) is split in
# two halves by test name, so that it is not the one long pole.
heavy="spec/lua_differential_spec.lua spec/cli_spec.lua spec/course_spec.lua spec/module_spec.lua"
shard="%(differential%)%s[-'a]"
order() {
  echo "spec/lua_differential_spec.lua --filter=$shard"
  echo "spec/lua_differential_spec.lua --filter-out=$shard"
  for f in $heavy; do [ -f "$f" ] && [ "$f" != spec/lua_differential_spec.lua ] && echo "$f"; done
  ls -S spec/*_spec.lua spec/conformance/*_spec.lua | grep -vxF -f <(tr ' ' '\n' <<<"$heavy")
}
if [ $# -gt 0 ]; then printf '%s\n' "$@"; else order; fi |
  xargs -d '\n' -P "$jobs" -n 1 bash -c 'run_one "$1"' _
status=$?
[ $status = 0 ] && echo "valgrind: every spec file passed" || echo "valgrind: failures above"
exit $status
