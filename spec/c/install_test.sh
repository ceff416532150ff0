#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds the embedding
# example as a separate program against it, once with pkg-config and once
# with CMake's find_package(lasync), and runs both without LD_LIBRARY_PATH;
# checks that asyncio.so lands on a stock lua5.4's default package.cpath
# for the configured prefix (/usr/local by default) and that the man page
# is installed and renders.
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
   $(pkg-config --cflags --libs lasync)
# ldd's output is captured first: `ldd | grep -q` under pipefail fails at
# random when grep exits at its first match and ldd gets SIGPIPE.
libs=$(ldd "$tmp/sensors_pc")
# (the relocatable .pc file gives PREFIX/lib/pkgconfig/../../lib: resolve it)
lib=$(sed -n 's/^\s*liblasync\.so\.0 => \(\S*\) .*/\1/p' <<<"$libs")
[ -n "$lib" ] && [ "$(realpath "$lib")" = "$(realpath "$tmp/prefix/lib/liblasync.so.0")" ] ||
  fail "not linked to the installed library: $libs"
unset LD_LIBRARY_PATH  # the .pc file's rpath must be enough
check_run "$tmp/sensors_pc"
echo "ok 1 - built with pkg-config against the installed library and ran without LD_LIBRARY_PATH"

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

# 4. after a default install (PREFIX/lib/lua/5.4), `require "asyncio"` needs
# no LUA_CPATH: the installed path, with the configured prefix in place of
# the temporary one, matches one of lua5.4's built-in cpath templates.
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
mod=$(cd "$tmp/prefix" && find . -name asyncio.so | sed 's|^\./||')
templates=$(env -u LUA_CPATH -u LUA_CPATH_5_4 lua5.4 -e 'print((package.cpath:gsub(";", "\n")))')
grep -qxF "$prefix/${mod%asyncio.so}?.so" <<<"$templates" ||
  fail "$prefix/$mod is not on lua5.4's default package.cpath: $templates"
echo "ok 4 - $prefix/$mod is on lua5.4's default package.cpath"

# 5. the man page
page="$tmp/prefix/share/man/man1/lasync.1"
[ -f "$page" ] || fail "no man page at $page"
if command -v man >/dev/null; then
  text=$(LC_ALL=C MANWIDTH=80 man -l "$page" 2>&1)
  for section in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT "EXIT STATUS" "SEE ALSO"; do
    grep -q "^$section" <<<"$text" || fail "man page has no $section section"
  done
  # every option of the binary's usage message is in OPTIONS
  usage=$("$tmp/prefix/bin/lasync" --bad-option 2>&1 || true)
  for opt in $(sed -n 's/^  \(-[a-zA-Z-]*\).*/\1/p' <<<"$usage" | sort -u); do
    grep -qe "^ *$opt\( \|\$\)" <<<"$text" || fail "option $opt missing from the man page"
  done
fi
echo "ok 5 - man page installed with lua(1)'s sections and every option"
echo "5 passed, 0 failed"
