#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds the embedding
# example as a separate program against it, once with pkg-config and once
# with CMake's find_package(lasync), and runs both.
# usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/$(gcc -print-multiarch)/pkgconfig"

fail() { echo "not ok - $*"; exit 1; }
check_run() { # program
  out=$("$1")
  grep -q "4 reads in" <<<"$out" || fail "$1 did not gather the reads: $out"
  grep -q "TimeoutError" <<<"$out" || fail "$1 did not time out the slow read"
}

# 1. pkg-config
cc -Wall -Wextra -Werror -o "$tmp/sensors_pc" "$src/examples/embed/sensors.c" \
   -DSENSORS_DEMO="\"$src/examples/embed/demo.lua\"" \
   $(pkg-config --cflags --libs lasync) -Wl,-rpath,"$tmp/prefix/lib"
# ldd's output is captured first: `ldd | grep -q` under pipefail fails at
# random when grep exits at its first match and ldd gets SIGPIPE.
libs=$(ldd "$tmp/sensors_pc")
grep -qF "$tmp/prefix/lib/liblasync.so" <<<"$libs" || fail "not linked to the installed library: $libs"
check_run "$tmp/sensors_pc"
echo "ok 1 - built with pkg-config against the installed library and ran"

# 2. find_package(lasync)
mkdir -p "$tmp/app"
cat > "$tmp/app/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(sensors_app C)
find_package(lasync REQUIRED)
add_executable(sensors_cm "$src/examples/embed/sensors.c")
target_compile_definitions(sensors_cm PRIVATE SENSORS_DEMO="$src/examples/embed/demo.lua")
target_link_libraries(sensors_cm PRIVATE lasync::lasync)
CMAKE
cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_BUILD_RPATH="$tmp/prefix/lib" >/dev/null
cmake --build "$tmp/app/build" >/dev/null
check_run "$tmp/app/build/sensors_cm"
echo "ok 2 - built with find_package(lasync) and ran"

# 3. the installed module in a stock lua5.4, and the installed binary
LUA_CPATH="$tmp/prefix/lib/lua/5.4/?.so" lua5.4 -e \
  'assert(require("asyncio").run(function() return 7 end) == 7)' || fail "module"
[ "$("$tmp/prefix/bin/lasync" -e 'asyncio.sleep(0) print(6 * 7)')" = 42 ] || fail "binary"
echo "ok 3 - installed asyncio.so and lasync run"
echo "3 passed, 0 failed"
