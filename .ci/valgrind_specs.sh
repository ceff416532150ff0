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
run_one() {
  spec=$1
  log=$logs/$(echo "$spec" | tr / _).log
  start=$SECONDS
  # shellcheck disable=SC2086
  if $VALGRIND --error-exitcode=1 "$LASYNC" "$BUSTED" --ignore-lua -o utfTerminal "$spec" >"$log" 2>&1; then
    echo "valgrind ok   $spec ($((SECONDS - start)) s)"
  else
    echo "valgrind FAIL $spec ($((SECONDS - start)) s)"
    cat "$log"
    return 1
  fi
}
export -f run_one
# Largest files first, so that the last one to start is a short one.
if [ $# -gt 0 ]; then printf '%s\n' "$@"; else ls -S spec/*_spec.lua spec/conformance/*_spec.lua; fi |
  xargs -P "$jobs" -n 1 bash -c 'run_one "$1"' _
status=$?
[ $status = 0 ] && echo "valgrind: every spec file passed" || echo "valgrind: failures above"
exit $status
