#!/bin/sh
# Instruction counts per unit of work for W1 (per task), W3 (per item), W4
# (per lock round: acquire, sleep(0) holding it, release) and the bytes per
# task of W2, as docs/performance.md reports them: unlike
# seconds they do not move with the machine's load.  Each count is the
# program's total (valgrind --tool=callgrind) minus the same program with
# N=0, divided by N; W2 is the shared bench's method (peak RSS at N minus
# at N=0, over N).
# usage: bench/ir.sh [LASYNC]   (default: build/lasync; needs valgrind and
#        /usr/bin/time; callgrind files are left in $TMPDIR for
#        callgrind_annotate)
set -eu
cd "$(dirname "$0")/.."
lasync=${1:-build/lasync}
tmp=${TMPDIR:-/tmp}

ir() { # out-file script args... -> total instructions
  out=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$out" "$lasync" "$@" \
    2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

per() { # name n units script args-at-n... (the same script is run with 0
         # first; units: how many units of work n gives)
  name=$1 n=$2 units=$3 script=$4
  shift 4
  base=$(ir "$tmp/lasync-ir.$name.0.out" "$script" 0 "$@")
  full=$(ir "$tmp/lasync-ir.$name.out" "$script" "$n" "$@")
  echo "$name: $(((full - base) / units)) instructions per unit" \
    "(callgrind: $tmp/lasync-ir.$name.out)"
}

rss() { # script n -> peak RSS in KB
  /usr/bin/time -f %M "$lasync" "$1" "$2" 2>&1 >/dev/null | tail -1
}

per W1-task 20000 20000 bench/w1_spawn.lua
per W3-item 200000 200000 bench/w3_queue.lua 64
per W4-round 20 20000 bench/w4_lock.lua 1000 # 20 tasks x 1000 rounds
r0=$(rss bench/w2_idle.lua 0)
r1=$(rss bench/w2_idle.lua 100000)
echo "W2: $(((r1 - r0) * 1024 / 100000)) bytes per task (peak RSS $r0 KB -> $r1 KB)"
