#!/usr/bin/env bash
# The VM floor of W1 and W2 (docs/performance.md, "The VM floor"): the
# least any runtime on the stock liblua5.4 can do, next to lasync and, when
# the shared bench is beside the project (../shared/bench), LuaJIT + luv.
#
# Rows: vm_floor (bench/floor/vm_floor.c: a thread per task, spawn = new
# thread + anchor, sleep = lua_yield, a C loop resuming them) with a
# realloc allocator and with host/state.c's pool; the same in plain Lua
# (bench/floor/vm_floor.lua under lua5.4: coroutine.create/resume/yield);
# lasync's bench/w1_spawn.lua and bench/w2_idle.lua; the shared bench's
# peers/w1_spawn/lua_luv.lua and peers/w2_idle/lua_luv.lua under luajit.
# Every program runs RUNS times (default 3), interleaved (run 1 of every
# row, then run 2, ...), pinned to one CPU like the shared bench, and the
# medians are printed: the machine's speed drifts, so only figures from one
# run of this script compare.
#
# W1: seconds from the RESULT line (wall clock, spawning .. sum checked)
#     and cpu = user+sys of the whole process (GNU time), which moves less
#     when other programs share the CPU.
# W2: bytes per task = (peak RSS at N - peak RSS at N=0) / N, each run's
#     pair taken together, as the shared bench computes it.
#     Then the blocks one suspended task holds on the Lua heap, by size
#     (vm_floor's counting allocator).
# --ir: instead, callgrind instructions per W1 task (total at N=20000 minus
#     total at N=0, over N, as bench/ir.sh counts), which do not drift.
#
# usage: bench/floor.sh [--ir] [LASYNC]   (default build/lasync; vm_floor is
#        taken from LASYNC's folder, or compiled with cc + pkg-config)
# knobs: RUNS (3), W1_N (100000), W2_N (100000), IR_N (20000), SHARED_BENCH
#        (where the shared bench is; default ../shared/bench)
set -eu -o pipefail
cd "$(dirname "$0")/.."

ir_mode=0
if [ "${1:-}" = --ir ]; then
  ir_mode=1
  shift
fi
lasync=${1:-build/lasync}
runs=${RUNS:-3}
w1_n=${W1_N:-100000}
w2_n=${W2_N:-100000}
ir_n=${IR_N:-20000}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lasync-floor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

[ -x "$lasync" ] || { echo "floor.sh: no lasync at $lasync (build first)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "floor.sh: needs GNU time (/usr/bin/time)" >&2; exit 1; }

floor=$(dirname "$lasync")/vm_floor
if [ ! -x "$floor" ]; then
  floor=$tmp/vm_floor
  # shellcheck disable=SC2046 # pkg-config's flags are words
  cc -O2 -Wall -Wextra -Ihost -o "$floor" bench/floor/vm_floor.c \
    host/state.c $(pkg-config --cflags --libs lua5.4 libuv)
fi
lua=$(command -v lua5.4 || true)
peers=${SHARED_BENCH:-../shared/bench}/peers
luajit=""
if [ -d "$peers" ] && command -v luajit >/dev/null &&
  luajit -e 'require "luv"' 2>/dev/null; then
  luajit=$(command -v luajit)
fi
pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin=(taskset -c 1)
fi

# The rows: a name and a command; @W (w1/w2), @WU (W1/W2), @S (the
# benchmark's script name) and @N are filled in for each run.
names=("vm_floor C, realloc" "vm_floor C, pool" "vm_floor lua5.4 coroutines"
       "lasync")
cmds=("$floor @W @N plain" "$floor @W @N pool"
      "$lua bench/floor/vm_floor.lua @WU @N" "$lasync bench/@S.lua @N")
[ -n "$lua" ] || { names[2]=""; }
if [ -n "$luajit" ]; then
  names+=("luajit + luv (shared bench)")
  cmds+=("$luajit $peers/@S/lua_luv.lua @N")
fi

cmd_for() { # row workload(w1|w2) n -> the command line
  local s=w1_spawn
  [ "$2" = w2 ] && s=w2_idle
  local c=${cmds[$1]//@WU/${2^^}}
  c=${c//@W/$2}
  c=${c//@S/$s}
  printf '%s\n' "${c//@N/$3}"
}

run() { # row workload n -> "seconds cpu rss_kb"; fails on a bad RESULT line
  local line t
  # shellcheck disable=SC2046 # the command line is words
  /usr/bin/time -f '%M %U %S' -o "$tmp/time" "${pin[@]}" \
    $(cmd_for "$1" "$2" "$3") >"$tmp/out" 2>"$tmp/err" ||
    { echo "floor.sh: ${names[$1]} failed: $(tail -1 "$tmp/err")" >&2; exit 1; }
  line=$(tail -1 "$tmp/out")
  case $line in
    *" ok=1"*) ;;
    *) echo "floor.sh: ${names[$1]}: $line" >&2; exit 1 ;;
  esac
  t=$(tail -1 "$tmp/time")
  echo "$line" | sed 's/.*seconds=\([0-9.]*\).*/\1/' | tr '\n' ' '
  echo "$t" | awk '{ printf "%.2f %d\n", $2 + $3, $1 }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
  print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
spread() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
  m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  if (NR < 2 || m == 0) print "-"; else printf "%.0f%%\n", (a[NR] - a[1]) / m * 100 }'; }

rows=()
for i in "${!names[@]}"; do [ -n "${names[$i]}" ] && rows+=("$i"); done

if [ "$ir_mode" = 1 ]; then
  echo "W1, callgrind instructions per task (total at N=$ir_n minus at N=0, over N)"
  for i in "${rows[@]}"; do
    [ "${names[$i]}" = "luajit + luv (shared bench)" ] && continue
    ir=()
    for n in 0 "$ir_n"; do
      # shellcheck disable=SC2046 # the command line is words
      ir+=("$(valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
        $(cmd_for "$i" w1 "$n") 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')")
    done
    printf '  %-30s %8d Ir\n' "${names[$i]}" $(((ir[1] - ir[0]) / ir_n))
  done
  exit 0
fi

declare -A secs cpu bpt rss rss0
for r in $(seq "$runs"); do
  for i in "${rows[@]}"; do
    read -r s c _ < <(run "$i" w1 "$w1_n")
    secs[$i]+="$s " cpu[$i]+="$c "
  done
  for i in "${rows[@]}"; do
    read -r _ _ k0 < <(run "$i" w2 0)
    read -r _ _ k < <(run "$i" w2 "$w2_n")
    bpt[$i]+="$(((k - k0) * 1024 / w2_n)) " rss[$i]+="$k " rss0[$i]+="$k0 "
  done
  echo "run $r of $runs done" >&2
done

echo "W1 spawn, N=$w1_n: $runs interleaved runs, medians" \
  "(seconds: the RESULT line's wall clock; cpu: user+sys of the process)"
printf '  %-30s %9s %7s %7s %9s  %s\n' row seconds spread cpu "x floor" "seconds of each run"
base=""
for i in "${rows[@]}"; do
  # shellcheck disable=SC2086 # the runs are words
  m=$(median ${secs[$i]})
  base=${base:-$m}
  # shellcheck disable=SC2086
  printf '  %-30s %9.3f %7s %7.2f %9.2f  %s\n' "${names[$i]}" "$m" \
    "$(spread ${secs[$i]})" "$(median ${cpu[$i]})" \
    "$(awk -v a="$m" -v b="$base" 'BEGIN { print a / b }')" "${secs[$i]}"
done
echo "W2 idle, N=$w2_n: bytes per task = (peak RSS at N - at N=0) / N," \
  "$runs interleaved runs, medians"
printf '  %-30s %7s %13s %13s  %s\n' row B/task "peak RSS MiB" "N=0 RSS MiB" "B/task of each run"
for i in "${rows[@]}"; do
  # shellcheck disable=SC2086
  printf '  %-30s %7d %13.1f %13.1f  %s\n' "${names[$i]}" "$(median ${bpt[$i]})" \
    "$(awk -v k="$(median ${rss[$i]})" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$(median ${rss0[$i]})" 'BEGIN { print k / 1024 }')" "${bpt[$i]}"
done
echo "W2 on the Lua heap: the blocks each suspended vm_floor task holds" \
  "(counting allocator)"
"$floor" w2 "$w2_n" count 2>&1 >/dev/null | sed 's/^/  /'
