/* Scheduling callbacks (call_soon, call_later, call_at and the Handle
 * methods) and the old-style get_event_loop() object. */
#include <stdlib.h>

#include "init.h"

/* The callback record (host_callback) and its running are the
 * scheduler's: host/sched.c.  Here: what Lua calls. */

static int l_call_soon(lua_State *L) {
  host_check_callable(L, 1);
  host_post(HOST(L), &host_callback_new(HOST(L), L, lua_gettop(L) - 1)->post);
  return 1;
}

static int schedule_at(lua_State *L, lasync_host *h, uint64_t due,
                       double when) {
  host_callback *c = host_callback_new(h, L, lua_gettop(L) - 1);
  c->when = when;
  c->timed = 1;
  if (host_timer_start(h, &c->timer, due))
    return luaL_error(L, "asyncio: out of memory");
  return 1;
}

static int l_call_later(lua_State *L) {
  lasync_host *h = HOST(L);
  double delay = host_check_seconds(L, 1, "delay");
  host_check_callable(L, 2);
  lua_remove(L, 1);
  return schedule_at(L, h, host_deadline(h, delay),
                     (double)host_now(h) / 1e9 + (delay > 0 ? delay : 0));
}

static int l_call_at(lua_State *L) {
  lasync_host *h = HOST(L);
  double when = host_check_seconds(L, 1, "delay");
  host_check_callable(L, 2);
  lua_remove(L, 1);
  return schedule_at(L, h, host_deadline_at(h, when), when);
}

/* ---- Handle methods --------------------------------------------------- */

static host_callback *check_handle(lua_State *L) {
  return luaL_checkudata(L, 1, HOST_HANDLE_MT);
}

static int handle_cancel(lua_State *L) {
  host_callback_cancel(check_handle(L));
  return 0;
}

static int handle_cancelled(lua_State *L) {
  host_callback *c = check_handle(L);
  lua_pushboolean(L, c->cancelled);
  return 1;
}

static int handle_when(lua_State *L) {
  host_callback *c = check_handle(L);
  if (!c->timed) return 0; /* call_soon's */
  lua_pushnumber(L, c->when);
  return 1;
}

static const luaL_Reg handle_methods[] = {{"cancel", handle_cancel},
                                          {"cancelled", handle_cancelled},
                                          {"when", handle_when},
                                          {NULL, NULL}};

/* ---- the old-style loop object ---------------------------------------- */

static int loop_run_until_complete(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  return l_run_until_complete(L, 2);
}

/* loop:f(...) -> asyncio.f(...): the methods share the module functions. */
static int loop_forward(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_replace(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int loop_close(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushboolean(L, 1);
  lua_setfield(L, 1, "_closed");
  return 0;
}

static int loop_is_closed(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "_closed");
  lua_pushboolean(L, lua_toboolean(L, -1));
  return 1;
}

static int loop_is_running(lua_State *L) {
  lua_pushboolean(L, HOST(L)->running > 0);
  return 1;
}

static const char *const FORWARDED[] = {"create_task", "call_soon",
                                        "call_later",  "call_at",
                                        "time",
                                        "set_exception_handler",
                                        "get_exception_handler",
                                        "call_exception_handler",
                                        "default_exception_handler",
                                        "set_debug", "get_debug", NULL};

/* asyncio.get_event_loop(): one loop object per host (upvalue 2 caches it);
 * upvalue 3 is the module table. */
static int l_get_event_loop(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "lasync.loop") == LUA_TTABLE)
    return 1;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, HOST(L));
  lua_pushcclosure(L, loop_run_until_complete, 1);
  lua_setfield(L, -2, "run_until_complete");
  lua_pushcfunction(L, loop_close);
  lua_setfield(L, -2, "close");
  lua_pushcfunction(L, loop_is_closed);
  lua_setfield(L, -2, "is_closed");
  lua_pushlightuserdata(L, HOST(L));
  lua_pushcclosure(L, loop_is_running, 1);
  lua_setfield(L, -2, "is_running");
  for (const char *const *n = FORWARDED; *n; n++) {
    lua_pushlightuserdata(L, HOST(L));
    lua_getfield(L, lua_upvalueindex(2), *n);
    lua_pushcclosure(L, loop_forward, 2);
    lua_setfield(L, -2, *n);
  }
  lua_pushlightuserdata(L, HOST(L)); /* loop:create_future() = Future() */
  lua_getfield(L, lua_upvalueindex(2), "Future");
  lua_pushcclosure(L, loop_forward, 2);
  lua_setfield(L, -2, "create_future");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "lasync.loop");
  return 1;
}

/* `lasync --workers N` (host/workers.c) numbers its workers 1..N in the
 * environment; a process run otherwise is worker 0 of 1. */
static lua_Integer worker_env(const char *name, lua_Integer dflt) {
  const char *v = getenv(name);
  char *end;
  long n = v ? strtol(v, &end, 10) : 0;
  return v && *v && *end == '\0' && n >= 0 ? (lua_Integer)n : dflt;
}

/* asyncio.worker_id() -> 1..N under `lasync --workers N`, else 0 */
static int l_worker_id(lua_State *L) {
  lua_pushinteger(L, worker_env("LASYNC_WORKER_ID", 0));
  return 1;
}

/* asyncio.worker_count() -> N under `lasync --workers N`, else 1 */
static int l_worker_count(lua_State *L) {
  lua_Integer n = worker_env("LASYNC_WORKER_COUNT", 1);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

/* asyncio.get_running_loop(): the loop object, from a task or a callback
 * (upvalue 2 is get_event_loop); RuntimeError elsewhere, as asyncio. */
static int l_get_running_loop(lua_State *L) {
  if (!host_task_of(L) && !HOST(L)->running)
    return host_error_raise(L, "RuntimeError", "no running event loop");
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_call(L, 0, 1);
  return 1;
}

static const luaL_Reg funcs[] = {{"call_soon", l_call_soon},
                                 {"call_later", l_call_later},
                                 {"call_at", l_call_at},
                                 {"worker_id", l_worker_id},
                                 {"worker_count", l_worker_count},
                                 {NULL, NULL}};

/* Registers into the module table at the top of the stack. */
void l_open_loop(lua_State *L, lasync_host *h) {
  host_new_type(L, HOST_HANDLE_MT, handle_methods, NULL, 0);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_get_event_loop, 2);
  lua_setfield(L, -2, "get_event_loop");
  lua_pushlightuserdata(L, h);
  lua_getfield(L, -2, "get_event_loop");
  lua_pushcclosure(L, l_get_running_loop, 2);
  lua_setfield(L, -2, "get_running_loop");
}
