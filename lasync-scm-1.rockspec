-- luarocks make: builds the C module asyncio.so (host/ + bindings/, with
-- the bindings' .lua parts compiled in) and installs it in the rock tree.
-- Needs the Debian packages cmake, liblua5.4-dev, libuv1-dev,
-- libcurl4-openssl-dev, libhiredis-dev and libssl-dev.
rockspec_format = "3.0"
package = "lasync"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "asyncio for Lua 5.4: tasks on a libuv loop",
  detailed = [[
Python asyncio's toolkit (sleep, tasks, gather, wait_for, timeouts,
TaskGroup, queues, locks, streams, servers, subprocesses, files, HTTP)
for Lua 5.4 coroutines, on libuv. local asyncio = require "asyncio"
]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
-- libuv and libcurl are found by CMake with pkg-config (Debian keeps
-- curl.h under a multiarch directory LuaRocks' header check does not see);
-- a missing one stops the build with the apt-get line to run.
build = {
  type = "cmake",
  variables = {
    LASYNC_MODULE_ONLY = "ON",
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LASYNC_LUA_CMOD_DIR = "$(LIBDIR)",
    LUA_INCLUDE_DIR = "$(LUA_INCDIR)",
  },
}
