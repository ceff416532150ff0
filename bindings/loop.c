/* Scheduling callbacks (call_soon, call_later, call_at and their Handle),
 * the loop clock, and the old-style get_event_loop() object. */
#include <math.h>
#include <string.h>

#include "../host/host.h"

#define HOST(L) ((lasync_host *)lua_touserdata(L, lua_upvalueindex(1)))
#define HANDLE_MT "asyncio.Handle"

/* A scheduled callback.  Its function and arguments are packed in the
 * userdata's user value; the registry anchors it until it has run or been
 * cancelled and left the ready queue. */
typedef struct cb_handle {
  host_ready ready;
  host_timer timer;
  lasync_host *h;
  int ref;
  unsigned char cancelled, queued, ran;
} cb_handle;

static void release(cb_handle *c) {
  if (c->ref != LUA_NOREF) {
    luaL_unref(c->h->cbL, LUA_REGISTRYINDEX, c->ref);
    c->ref = LUA_NOREF;
  }
}

static int cb_msgh(lua_State *L) {
  host_push_report(L, L, 1);
  return 1;
}

static void run_callback(lasync_host *h, host_ready *r) {
  cb_handle *c = host_container_of(r, cb_handle, ready);
  lua_State *L = h->cbL;
  c->queued = 0;
  if (!c->cancelled && !c->ran) {
    c->ran = 1;
    int top = lua_gettop(L);
    lua_pushcfunction(L, cb_msgh);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    lua_Integer n = luaL_len(L, -1);
    luaL_checkstack(L, (int)n, "callback arguments");
    for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, top + 2, i);
    lua_remove(L, top + 2);
    lua_State *outer = h->current;
    h->current = L;
    int status = lua_pcall(L, (int)n - 1, 0, top + 1);
    h->current = outer;
    if (status != LUA_OK) {
      lua_pushfstring(L, "Exception in callback: %s", lua_tostring(L, -1));
      host_report(h, lua_tostring(L, -1));
    }
    lua_settop(L, top);
  }
  release(c);
}

static void queue(cb_handle *c) {
  c->queued = 1;
  host_ready_push(c->h, &c->ready);
}

static void timer_fire(lasync_host *h, host_timer *tm) {
  (void)h;
  queue(host_container_of(tm, cb_handle, timer));
}

/* [fn args...] -> [handle] */
static cb_handle *new_handle(lasync_host *h, lua_State *L, int nargs) {
  if (h->stopped) luaL_error(L, "asyncio: the event loop is closed");
  lua_createtable(L, nargs + 1, 0);
  lua_insert(L, -(nargs + 2));
  for (int i = nargs + 1; i >= 1; i--) lua_rawseti(L, -(i + 1), i);
  cb_handle *c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->h = h;
  host_timer_init(&c->timer, timer_fire);
  c->ready.run = run_callback;
  luaL_setmetatable(L, HANDLE_MT);
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -1);
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return c;
}

void host_call_soon(lasync_host *h, lua_State *L, int nargs) {
  queue(new_handle(h, L, nargs));
  lua_pop(L, 1);
}

static void check_function(lua_State *L, int idx) {
  int ok = lua_isfunction(L, idx);
  if (!ok && luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    ok = 1;
  }
  luaL_argexpected(L, ok, idx, "function");
}

static int l_call_soon(lua_State *L) {
  check_function(L, 1);
  queue(new_handle(HOST(L), L, lua_gettop(L) - 1));
  return 1;
}

static int schedule_at(lua_State *L, lasync_host *h, uint64_t due) {
  cb_handle *c = new_handle(h, L, lua_gettop(L) - 1);
  if (host_timer_start(h, &c->timer, due))
    return luaL_error(L, "asyncio: out of memory");
  return 1;
}

static double check_seconds(lua_State *L, int idx) {
  lua_Number s = luaL_checknumber(L, idx);
  luaL_argcheck(L, s == s, idx, "delay is NaN");
  return s;
}

static int l_call_later(lua_State *L) {
  lasync_host *h = HOST(L);
  double delay = check_seconds(L, 1);
  check_function(L, 2);
  lua_remove(L, 1);
  return schedule_at(L, h, host_deadline(h, delay));
}

static int l_call_at(lua_State *L) {
  lasync_host *h = HOST(L);
  double when = check_seconds(L, 1);
  check_function(L, 2);
  lua_remove(L, 1);
  return schedule_at(L, h, host_deadline(h, when - (double)uv_hrtime() / 1e9));
}

static int l_time(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* ---- Handle methods --------------------------------------------------- */

static int handle_cancel(lua_State *L) {
  cb_handle *c = luaL_checkudata(L, 1, HANDLE_MT);
  if (c->cancelled || c->ran) return 0;
  c->cancelled = 1;
  host_timer_stop(c->h, &c->timer);
  if (!c->queued) release(c); /* a queued one is released when reached */
  return 0;
}

static int handle_cancelled(lua_State *L) {
  cb_handle *c = luaL_checkudata(L, 1, HANDLE_MT);
  lua_pushboolean(L, c->cancelled);
  return 1;
}

static int handle_when(lua_State *L) {
  cb_handle *c = luaL_checkudata(L, 1, HANDLE_MT);
  if (!c->timer.due) return 0;
  lua_pushnumber(L, (lua_Number)c->timer.due / 1e9);
  return 1;
}

static int handle_gc(lua_State *L) {
  cb_handle *c = lua_touserdata(L, 1);
  host_timer_stop(c->h, &c->timer); /* only when the state closes */
  return 0;
}

static const luaL_Reg handle_methods[] = {{"cancel", handle_cancel},
                                          {"cancelled", handle_cancelled},
                                          {"when", handle_when},
                                          {NULL, NULL}};
static const luaL_Reg handle_meta[] = {{"__gc", handle_gc}, {NULL, NULL}};

/* ---- the old-style loop object ---------------------------------------- */

int host_run_until_complete(lua_State *L, int idx);

static int loop_run_until_complete(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  return host_run_until_complete(L, 2);
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
                                        "time",        NULL};

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
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "lasync.loop");
  return 1;
}

static const luaL_Reg funcs[] = {{"call_soon", l_call_soon},
                                 {"call_later", l_call_later},
                                 {"call_at", l_call_at},
                                 {"time", l_time},
                                 {NULL, NULL}};

/* Registers into the module table at the top of the stack. */
void host_open_loop(lua_State *L, lasync_host *h) {
  host_new_type(L, HANDLE_MT, handle_methods, handle_meta, 0);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_get_event_loop, 2);
  lua_setfield(L, -2, "get_event_loop");
}
