#!/bin/sh
# The cost per trace event (LASYNC_TRACE): instructions (callgrind) that
# recording adds per event, and that writing the file costs per event, for
# bench/trace_cost.lua's two workloads (steps: sleep(0) in a loop; io: TCP
# round trips).  Recording = (run traced minus run untraced at N, minus the
# same difference at N=0) / events, with host_trace_finish (the writing)
# left out of the count; writing = the instructions inside
# host_trace_finish / events.  Instruction counts, unlike seconds, do not
# move with the machine's load.  Then seconds: the best of 3 runs each way.
# usage: bench/trace_cost.sh [LASYNC]   (default: build/lasync; needs valgrind)
set -eu
cd "$(dirname "$0")/.."
lasync=${1:-build/lasync}
tmp=${TMPDIR:-/tmp}
json=$tmp/lasync-trace-cost.json

ir() { # trace(0|1) collect-options... -- args... -> instructions
  trace=$1
  shift
  opts=
  while [ "$1" != -- ]; do opts="$opts $1"; shift; done
  shift
  ( # (not through env(1): valgrind would count env, not lasync)
    if [ "$trace" = 1 ]; then export LASYNC_TRACE="$json"
    else unset LASYNC_TRACE; fi
    # shellcheck disable=SC2086
    valgrind --tool=callgrind $opts --callgrind-out-file=/dev/null \
      "$lasync" "$@" 2>&1 >/dev/null
  ) | sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}

events() { sed -n 's/.*"events_recorded":\([0-9]*\).*/\1/p' "$json"; }

best() { # trace(0|1) args... -> the least seconds of 3 runs
  trace=$1
  shift
  for _ in 1 2 3; do
    if [ "$trace" = 1 ]; then LASYNC_TRACE=$json "$lasync" bench/trace_cost.lua "$@"
    else env -u LASYNC_TRACE "$lasync" bench/trace_cost.lua "$@"; fi
  done | sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' | sort -n | head -1
}

# (--toggle-collect first: it resets --collect-atstart to no)
skip="--toggle-collect=host_trace_finish --collect-atstart=yes"
only="--toggle-collect=host_trace_finish --collect-atstart=no"
for mode in steps io; do
  n=20000
  off0=$(ir 0 $skip -- bench/trace_cost.lua "$mode" 0)
  on0=$(ir 1 $skip -- bench/trace_cost.lua "$mode" 0)
  e0=$(events)
  off=$(ir 0 $skip -- bench/trace_cost.lua "$mode" "$n")
  on=$(ir 1 $skip -- bench/trace_cost.lua "$mode" "$n")
  e=$(events)
  write=$(ir 1 $only -- bench/trace_cost.lua "$mode" "$n")
  ev=$((e - e0))
  echo "$mode: $ev events for N=$n; recording $((((on - on0) - (off - off0)) / ev))" \
    "instructions per event, writing the file $((write / e)) per event;" \
    "untraced $(((off - off0) / n)) instructions per iteration"
  s_off=$(best 0 "$mode" 100000)
  s_on=$(best 1 "$mode" 100000)
  e=$(events)
  echo "$mode: N=100000 best of 3: untraced ${s_off}s, traced ${s_on}s:" \
    "$(echo "($s_on - $s_off) * 1000000000 / $e" | bc) ns per event"
done
rm -f "$json"
