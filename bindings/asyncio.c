/* luaopen_asyncio: the module table, assembled from each area's registrar.
 * The same function serves the lasync binary (preloaded), embedders and
 * asyncio.so under a stock lua5.4 (which then gets a host of its own). */
#include "io.h"

extern const unsigned char lasync_sync_lua[];
extern const size_t lasync_sync_lua_len;

/* Runs the compiled-in Lua part with (module, internals). */
static void open_lua_part(lua_State *L, lasync_host *h) {
  int m = lua_gettop(L);
  if (luaL_loadbufferx(L, (const char *)lasync_sync_lua, lasync_sync_lua_len,
                       "=asyncio/sync.lua", "t") != LUA_OK)
    lua_error(L);
  lua_pushvalue(L, m);
  host_push_wait_internals(L, h);
  luaL_getmetatable(L, HOST_TASK_MT);
  lua_setfield(L, -2, "TaskMT");
  luaL_getmetatable(L, "asyncio.Lock");
  lua_setfield(L, -2, "LockMT");
  lua_call(L, 2, 0);
}

LASYNC_API int luaopen_asyncio(lua_State *L) {
  lasync_host *h = host_for_module(L);
  lua_newtable(L);
  host_errors_open(L);
  /* the classes the synchronisation primitives raise besides asyncio's */
  host_error_class(L, "RuntimeError", NULL);
  lua_setfield(L, -2, "RuntimeError");
  host_error_class(L, "ValueError", NULL);
  lua_setfield(L, -2, "ValueError");
  host_open_task(L, h);
  host_open_loop(L, h);
  host_open_queue(L, h);
  host_open_sync(L, h);
  host_open_wait(L, h);
  open_lua_part(L, h);
  io_open_stream(L, h);
  io_open_server(L, h);
  io_open_process(L, h);
  io_open_signal(L, h);
  lua_pushliteral(L, LASYNC_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
