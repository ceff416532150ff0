/* Opening the libraries: lasync_openlibs (the one call the host makes
 * into bindings/, when lasync_new makes the state), the lazy asyncio.fs and
 * asyncio.http submodules, and luaopen_asyncio, the module table assembled
 * from each area's registrar.  luaopen_asyncio serves the lasync binary
 * (preloaded), embedders and asyncio.so under a stock lua5.4 (which then
 * gets a host of its own). */
#include <string.h>

#include <lualib.h>

#include "init.h"
#include "io.h"
#include "tls.h"

/* Runs the compiled-in Lua part with (module, internals). */
static void open_lua_part(lua_State *L, lasync_host *h) {
  int m = lua_gettop(L);
  l_load_lua_part(L, "sync");
  lua_pushvalue(L, m);
  l_push_wait_internals(L, h);
  luaL_getmetatable(L, HOST_TASK_MT);
  lua_setfield(L, -2, "TaskMT");
  luaL_getmetatable(L, "asyncio.Lock");
  lua_setfield(L, -2, "LockMT");
  l_push_future_task(L, h);
  lua_setfield(L, -2, "future_task");
  luaL_getmetatable(L, "asyncio.Future");
  lua_setfield(L, -2, "FutureMT");
  l_load_lua_part(L, "argcheck");
  lua_setfield(L, -2, "argcheck");
  lua_call(L, 2, 0);
}

/* ---- the coroutine library around tasks ----------------------------------
 *
 * A task's thread is the scheduler's: coroutine.resume and coroutine.close
 * refuse it (resuming it would run it behind the scheduler's back, closing
 * it would leave it registered with whatever it waits on).  And a task is
 * not a coroutine its code may yield from: inside one, coroutine.yield
 * raises lua.c's "attempt to yield from outside a coroutine",
 * isyieldable() is false and running() says "main", as for lua.c's main
 * chunk.  The replacements are lcorolib's own code plus these checks: no
 * extra C level (the C stack limit for nested coroutines stays lua5.4's),
 * and argument errors name 'resume' as lua5.4 does. */

static lua_State *getco(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "thread");
  return co;
}

/* h->current follows the resume, so that the binary's Ctrl-C hook lands
 * on the coroutine that runs, not on its task's thread, which waits. */
static int auxresume(lua_State *L, lua_State *co, int narg) {
  lasync_host *h = HOST(L);
  int status, nres;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  lua_State *outer = h->current;
  if (outer) h->current = co;
  status = lua_resume(co, L, narg, &nres);
  if (outer) h->current = outer;
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

enum { COS_RUN, COS_DEAD, COS_YIELD, COS_NORM };
static const char *const statname[] = {"running", "dead", "suspended",
                                       "normal"};

static int auxstatus(lua_State *L, lua_State *co) {
  if (L == co) return COS_RUN;
  switch (lua_status(co)) {
  case LUA_YIELD:
    return COS_YIELD;
  case LUA_OK: {
    lua_Debug ar;
    if (lua_getstack(co, 0, &ar)) return COS_NORM;
    return lua_gettop(co) == 0 ? COS_DEAD : COS_YIELD;
  }
  default:
    return COS_DEAD;
  }
}

/* A task's thread that is suspended (parked, not started, or done) is the
 * scheduler's; a running or normal one gets lua5.4's own message. */
static void refuse_task(lua_State *L, lua_State *co, const char *op) {
  int status = auxstatus(L, co);
  if (host_task_of(co) && (status == COS_YIELD || status == COS_DEAD))
    luaL_error(L, "cannot %s a task's thread (use task:await() or "
                  "task:cancel())", op);
}

static int co_resume(lua_State *L) {
  lua_State *co = getco(L);
  refuse_task(L, co, "resume");
  int r = auxresume(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int co_close(lua_State *L) {
  lua_State *co = getco(L);
  refuse_task(L, co, "close");
  int status = auxstatus(L, co);
  if (status != COS_DEAD && status != COS_YIELD)
    return luaL_error(L, "cannot close a %s coroutine", statname[status]);
  if (host_closethread(co, L) == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

static int auxwrap(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(2));
  int r = auxresume(L, co, lua_gettop(L));
  if (r < 0) {
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) { /* an error in the coroutine */
      stat = host_closethread(co, L);
      lua_xmove(co, L, 1);
    }
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the host */
  lua_insert(L, -2);
  lua_pushcclosure(L, auxwrap, 2);
  return 1;
}

static int co_yield(lua_State *L) {
  if (host_task_of(L)) { /* lua_yield's own message: no position (the
                          * raiser is a C function), even at the top */
    lua_pushliteral(L, "attempt to yield from outside a coroutine");
    return lua_error(L);
  }
  return lua_yield(L, lua_gettop(L));
}

static int co_isyieldable(lua_State *L) {
  lua_State *co = lua_isnone(L, 1) ? L : getco(L);
  lua_pushboolean(L, !host_task_of(co) && lua_isyieldable(co));
  return 1;
}

static int co_running(lua_State *L) {
  int ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain || host_task_of(L) != NULL);
  return 2;
}

static void guard_coroutines(lua_State *L, lasync_host *h) {
  static const luaL_Reg ops[] = {{"resume", co_resume},
                                 {"wrap", co_wrap},
                                 {"close", co_close},
                                 {"yield", co_yield},
                                 {"isyieldable", co_isyieldable},
                                 {"running", co_running},
                                 {NULL, NULL}};
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    lua_pushlightuserdata(L, h);
    luaL_setfuncs(L, ops, 1);
  }
  lua_pop(L, 1);
}

LASYNC_API int luaopen_asyncio(lua_State *L) {
  lasync_host *h = host_for_module(L);
  guard_coroutines(L, h);
  lua_newtable(L);
  host_errors_open(L);
  /* the classes the synchronisation primitives raise besides asyncio's */
  host_error_class(L, "RuntimeError", NULL);
  lua_setfield(L, -2, "RuntimeError");
  host_error_class(L, "ValueError", NULL);
  lua_setfield(L, -2, "ValueError");
  l_open_task(L, h);
  l_open_time(L, h);
  l_open_loop(L, h);
  l_open_queue(L, h);
  l_open_sync(L, h);
  l_open_wait(L, h);
  l_open_future(L, h);
  l_open_thread(L, h);
  l_open_diag(L, h);
  open_lua_part(L, h);
  /* areas a sandbox may leave out (lasync_openlibs_only) */
  if (h->libs & LASYNC_LIB_NET) {
    io_open_stream(L, h);
    io_open_net(L, h);
    io_open_server(L, h);
    io_open_unix(L, h);
    io_open_pipe(L, h);
    io_open_udp(L, h);
    io_open_ssl(L, h);
  }
  if (h->libs & LASYNC_LIB_PROCESS) {
    io_open_process(L, h);
    io_open_signal(L, h);
  }
  lua_pushliteral(L, LASYNC_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}

/* ---- libraries ---------------------------------------------------------- */

static void preload(lua_State *L, const char *name, lua_CFunction open) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

static const struct {
  unsigned lib;
  const char *name;
  lua_CFunction open;
} STD_LIBS[] = {
    {LASYNC_LIB_BASE, LUA_GNAME, luaopen_base},
    {LASYNC_LIB_PACKAGE, LUA_LOADLIBNAME, luaopen_package},
    {LASYNC_LIB_BASE, LUA_COLIBNAME, luaopen_coroutine},
    {LASYNC_LIB_BASE, LUA_TABLIBNAME, luaopen_table},
    {LASYNC_LIB_IO, LUA_IOLIBNAME, luaopen_io},
    {LASYNC_LIB_OS, LUA_OSLIBNAME, luaopen_os},
    {LASYNC_LIB_BASE, LUA_STRLIBNAME, luaopen_string},
    {LASYNC_LIB_BASE, LUA_MATHLIBNAME, luaopen_math},
    {LASYNC_LIB_BASE, LUA_UTF8LIBNAME, luaopen_utf8},
    {LASYNC_LIB_DEBUG, LUA_DBLIBNAME, luaopen_debug},
};

/* __index of the asyncio table: asyncio.fs / asyncio.http = require them. */
static int lazy_submodule(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  lasync_host *h = host_get(L);
  if (!k || !h) return 0;
  if (!((strcmp(k, "fs") == 0 && (h->libs & LASYNC_LIB_FS)) ||
        (strcmp(k, "http") == 0 && (h->libs & LASYNC_LIB_HTTP)) ||
        (strcmp(k, "redis") == 0 && (h->libs & LASYNC_LIB_NET))))
    return 0;
  lua_getglobal(L, "require");
  lua_pushfstring(L, "asyncio.%s", k);
  lua_call(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

/* The standard libraries among `libs`: the host's state's, and
 * to_thread's workers' (a sandbox's worker gets no more than it has). */
void l_open_std(lua_State *L, unsigned libs) {
  for (size_t i = 0; i < sizeof STD_LIBS / sizeof *STD_LIBS; i++) {
    if (!(libs & STD_LIBS[i].lib)) continue;
    luaL_requiref(L, STD_LIBS[i].name, STD_LIBS[i].open, 1);
    lua_pop(L, 1);
  }
  if ((libs & LASYNC_LIB_BASE) && !(libs & LASYNC_LIB_IO)) {
    /* a sandbox without io must not read files through the base library */
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
  }
}

LASYNC_API void lasync_openlibs_only(lasync_host *h, unsigned libs) {
  lua_State *L = h->L;
  h->libs = libs;
  l_open_std(L, libs);
  if (libs & LASYNC_LIB_PACKAGE) {
    preload(L, "asyncio", luaopen_asyncio);
    if (libs & LASYNC_LIB_HTTP) preload(L, "asyncio.http", luaopen_asyncio_http);
    if (libs & LASYNC_LIB_HTTP)
      preload(L, "asyncio.http.server", luaopen_asyncio_http_server);
    if (libs & LASYNC_LIB_HTTP)
      preload(L, "asyncio.websocket", luaopen_asyncio_websocket);
    if (libs & LASYNC_LIB_FS) preload(L, "asyncio.fs", luaopen_asyncio_fs);
    preload(L, "asyncio.testing", luaopen_asyncio_testing);
    if (libs & LASYNC_LIB_NET) preload(L, "asyncio.redis", luaopen_asyncio_redis);
  }
  if (libs & LASYNC_LIB_ASYNCIO) {
    luaL_requiref(L, "asyncio", luaopen_asyncio, 1);
    if (libs & LASYNC_LIB_PACKAGE) {
      /* asyncio.fs and asyncio.http load on first use (curl and OpenSSL
       * are not worth loading for a script that never fetches) */
      lua_createtable(L, 0, 1);
      lua_pushcfunction(L, lazy_submodule);
      lua_setfield(L, -2, "__index");
      lua_setmetatable(L, -2);
    } else { /* no require in this state: load what was asked for now */
      if (libs & LASYNC_LIB_HTTP) {
        luaL_requiref(L, "asyncio.http", luaopen_asyncio_http, 0);
        lua_setfield(L, -2, "http");
      }
      if (libs & LASYNC_LIB_FS) {
        luaL_requiref(L, "asyncio.fs", luaopen_asyncio_fs, 0);
        lua_setfield(L, -2, "fs");
      }
    }
    lua_pop(L, 1);
  }
}

LASYNC_API void lasync_openlibs(lasync_host *h) {
  lasync_openlibs_only(h, LASYNC_LIB_ALL);
}
