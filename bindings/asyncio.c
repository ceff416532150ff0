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

/* coroutine.resume and coroutine.close refuse a task's thread: only the
 * scheduler may resume a task, and closing one behind its back would leave
 * it registered with whatever it waits on. */
static int guarded_coroutine_op(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co && host_task_of(co))
    return luaL_error(L, "cannot %s a task's thread (use task:await() or "
                         "task:cancel())",
                      lua_tostring(L, lua_upvalueindex(2)));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void guard_coroutines(lua_State *L) {
  static const char *const ops[] = {"resume", "close", NULL};
  int top = lua_gettop(L);
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    for (const char *const *op = ops; *op; op++) {
      if (lua_getfield(L, top + 1, *op) != LUA_TFUNCTION ||
          lua_tocfunction(L, -1) == guarded_coroutine_op) { /* done already */
        lua_pop(L, 1);
        continue;
      }
      lua_pushstring(L, *op);
      lua_pushcclosure(L, guarded_coroutine_op, 2);
      lua_setfield(L, top + 1, *op);
    }
  }
  lua_settop(L, top);
}

LASYNC_API int luaopen_asyncio(lua_State *L) {
  lasync_host *h = host_for_module(L);
  guard_coroutines(L);
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
  /* areas a sandbox may leave out (lasync_openlibs_only) */
  if (h->libs & LASYNC_LIB_NET) {
    io_open_stream(L, h);
    io_open_server(L, h);
  }
  if (h->libs & LASYNC_LIB_PROCESS) {
    io_open_process(L, h);
    io_open_signal(L, h);
  }
  lua_pushliteral(L, LASYNC_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
