/* asyncio.testing, the C half: the clock switch (the clock itself is the
 * host's, host/timer.c), waiting for the loop to go quiet, a real-time
 * guard that cancels a task which runs too long, and the lists a leak
 * check compares (handles, timers, file descriptors, task origins).  The
 * Lua half (bindings/testing.lua) builds run, the fixtures and the busted
 * integration on these. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"
#include "../host/handle.h"


#define HOST_MAX_ADVANCE 1e9

static const char *const CLOCKS[] = {"real", "virtual", "manual", NULL};

/* _set_clock(mode, autojump_threshold): the Lua half has checked both. */
static int l_set_clock(lua_State *L) {
  lasync_host *h = HOST(L);
  int mode = luaL_checkoption(L, 1, NULL, CLOCKS);
  double autojump = luaL_optnumber(L, 2, 0);
  host_clock_set(h, mode, (uint64_t)(autojump * 1e9));
  return 0;
}

/* clock() -> "real" | "virtual" | "manual", autojump_threshold */
static int l_clock(lua_State *L) {
  lasync_host *h = HOST(L);
  lua_pushstring(L, CLOCKS[h->clock_mode]);
  lua_pushnumber(L, (lua_Number)h->autojump_ns / 1e9);
  return 2;
}

/* advance(seconds): moves a virtual or manual clock forward and fires
 * what fell due; inside a task it then waits until the tasks that woke
 * have run and are blocked again (wait_idle), so the caller sees the
 * effects at once. */
static int l_advance(lua_State *L) {
  lasync_host *h = HOST(L);
  double sec = host_check_seconds(L, 1, "seconds");
  luaL_argcheck(L, sec >= 0, 1, "seconds must not be negative");
  luaL_argcheck(L, isfinite(sec), 1, "seconds must be finite");
  /* the clock never goes back: a jump of centuries would stay */
  luaL_argcheck(L, sec <= HOST_MAX_ADVANCE, 1,
                "seconds too large (at most 1e9, about 31 years)");
  if (h->clock_mode == HOST_CLOCK_REAL)
    return luaL_error(L, "advance(): the clock is real (run the code with "
                         "testing.run(fn, {clock = \"manual\"}) or "
                         "\"virtual\")");
  double ns = ceil(sec * 1e9);
  host_clock_advance(h, ns >= (double)(UINT64_MAX / 2) ? UINT64_MAX / 2
                                                      : (uint64_t)ns);
  host_task *t = host_task_of(L);
  if (!t || !lua_isyieldable(L)) return 0;
  lua_settop(L, 0);
  return host_wait_idle(L, t);
}

/* wait_idle(): returns once no other task or callback can run (every
 * task is blocked on a timer, I/O, or another task), before a virtual
 * clock would jump. */
static int l_wait_idle(lua_State *L) {
  host_task *t = host_check_task(L, "wait_idle");
  lua_settop(L, 0);
  return host_wait_idle(L, t);
}

/* real_time(): seconds of the real monotonic clock, which a virtual clock
 * does not move (for measuring how long a test really took). */
static int l_real_time(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* _task_origin(task) -> "file:line" where it was created, or nil (every
 * task and handle records it: host/where.c). */
static int l_task_origin(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  if (t->created_src) host_push_created(L, t);
  else lua_pushnil(L);
  return 1;
}

/* _task_bytes(task) -> the bytes of the Lua heap the Task object takes:
 * its record and the userdata around it (one user value: the thread),
 * measured by making one like it with the collector held.  What W2 pays
 * per task depends on it (docs/performance.md: the pool's size classes). */
static int l_task_bytes(lua_State *L) {
  size_t size = lua_rawlen(L, 1);
  host_check_task_arg(L, 1);
  int running = lua_gc(L, LUA_GCISRUNNING);
  lua_gc(L, LUA_GCSTOP);
  size_t before = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 +
                  (size_t)lua_gc(L, LUA_GCCOUNTB);
  lua_newuserdatauv(L, size, 1);
  size_t after = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 +
                 (size_t)lua_gc(L, LUA_GCCOUNTB);
  lua_pop(L, 1);
  if (running) lua_gc(L, LUA_GCRESTART);
  lua_pushinteger(L, (lua_Integer)(after - before));
  return 1;
}

/* ---- what is left open -------------------------------------------------- */

typedef struct each_ctx {
  lua_State *L;
  int n;
} each_ctx;

static void push_handle(host_handle *hd, void *ud) {
  each_ctx *c = ud;
  lua_createtable(c->L, 0, 2);
  lua_pushstring(c->L, hd->type->what);
  lua_setfield(c->L, -2, "what");
  if (hd->created.src) {
    host_push_where(c->L, &hd->created);
    lua_setfield(c->L, -2, "origin");
  }
  lua_pushlightuserdata(c->L, hd);
  lua_setfield(c->L, -2, "id");
  lua_rawseti(c->L, -2, ++c->n);
}

static int walk_handles(lua_State *L) {
  each_ctx c = {L, 0};
  lua_newtable(L);
  host_handle_each(lua_touserdata(L, 1), push_handle, &c);
  return 1;
}

/* _handles() -> { {what=, origin=, id=}, ... }: every handle (server,
 * stream, process, signal, file, http session) not closed yet.  The
 * tables it builds may start a collection whose finalizers close handles,
 * unlinking the one the walk stands on (the walk then went round that
 * record forever, growing the list until memory ran out): the collector
 * is stopped during the walk (an emergency collection calls no
 * finalizers), and restarted whatever happens. */
static int l_handles(lua_State *L) {
  int running = lua_gc(L, LUA_GCISRUNNING);
  lua_gc(L, LUA_GCSTOP);
  lua_pushcfunction(L, walk_handles);
  lua_pushlightuserdata(L, HOST(L));
  int status = lua_pcall(L, 1, 1, 0);
  if (running) lua_gc(L, LUA_GCRESTART);
  if (status != LUA_OK) return lua_error(L);
  return 1;
}

/* _callbacks() -> { {fn=, when=}, ... }: the call_later / call_at
 * callbacks still waiting for their deadline (a task's own timers belong
 * to the task, which the task list names). */
static int l_callbacks(lua_State *L) {
  lasync_host *h = HOST(L);
  int n = 0;
  lua_newtable(L);
  for (uint32_t i = 0; i < h->heap_len; i++) {
    host_callback *cb = host_callback_of(h->heap[i]);
    if (!cb || cb->ref == LUA_NOREF) continue;
    lua_createtable(L, 0, 2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cb->ref);
    lua_getiuservalue(L, -1, 1);
    lua_rawgeti(L, -1, 1);
    lua_setfield(L, -4, "fn");
    lua_pop(L, 1);
    lua_setfield(L, -2, "handle");
    lua_pushnumber(L, (lua_Number)h->heap[i]->due / 1e9);
    lua_setfield(L, -2, "when");
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

typedef struct close_ctx {
  lua_State *L;
  void *id;
  host_handle *found;
} close_ctx;

static void find_handle(host_handle *hd, void *ud) {
  close_ctx *c = ud;
  if ((void *)hd == c->id) c->found = hd;
}

/* _close_handle(id): closes the handle _handles() listed with that id, if
 * it is still open (a leak check ends what a test left open). */
static int l_close_handle(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  close_ctx c = {L, lua_touserdata(L, 1), NULL};
  host_handle_each(HOST(L), find_handle, &c);
  if (c.found) host_handle_close(c.found, L);
  lua_pushboolean(L, c.found != NULL);
  return 1;
}

/* _handle_id(value) -> the id _handles() gives the handle behind a Lua
 * value (a stream, a server, an http session's core...), or nil.  The box
 * is read only if its size is a box's, and the pointer is only compared
 * with the open handles, never followed. */
static int l_handle_id(lua_State *L) {
  if (lua_type(L, 1) != LUA_TUSERDATA || lua_rawlen(L, 1) != sizeof(void *))
    return 0;
  close_ctx c = {L, *(void **)lua_touserdata(L, 1), NULL};
  host_handle_each(HOST(L), find_handle, &c);
  if (!c.found) return 0;
  lua_pushlightuserdata(L, c.found);
  return 1;
}

/* _fds() -> { [fd] = "what it is", ... } from /proc/self/fd (Linux). */
static int l_fds(lua_State *L) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return 0;
  int self = dirfd(d);
  struct dirent *e;
  lua_newtable(L);
  while ((e = readdir(d))) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end || end == e->d_name || fd == self) continue;
    char path[64], target[256];
    snprintf(path, sizeof path, "/proc/self/fd/%ld", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    target[n > 0 ? n : 0] = '\0';
    lua_pushstring(L, target);
    lua_rawseti(L, -2, fd);
  }
  closedir(d);
  return 1;
}

/* ---- a real-time guard -------------------------------------------------- */

/* Cancels a task after some seconds of real time, whatever the host's
 * clock says: a test's time limit must hold under a virtual clock too. */
typedef struct guard {
  host_handle hd;
  uv_timer_t timer;
  int task_ref;           /* registry ref of the Task to cancel */
  int trace_ref;          /* where the task was when the time ran out */
  unsigned char fired;
} guard;

#define GUARD_MT "asyncio.testing.Guard"

static void guard_closed(uv_handle_t *handle) {
  host_handle_after_close(handle->data);
}

static int guard_close(host_handle *hd, lua_State *L) {
  guard *g = (guard *)hd;
  if (L) {
    luaL_unref(L, LUA_REGISTRYINDEX, g->task_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, g->trace_ref);
    g->task_ref = g->trace_ref = LUA_NOREF;
  }
  uv_close((uv_handle_t *)&g->timer, guard_closed);
  return 1;
}

static void guard_free(host_handle *hd) { free(hd); }

static const host_handle_type GUARD_TYPE = {GUARD_MT, "time limit",
                                            guard_close, guard_free};

static void guard_fire_fallback(guard *g, lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->task_ref);
  host_task *t = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (t) host_task_cancel(t, L, 0);
}

/* On the callback thread, protected: the traceback allocates. */
static int guard_fire_protected(lua_State *L) {
  guard *g = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->task_ref);
  host_task *t = lua_touserdata(L, -1);
  if (!t || t->state == TASK_DONE) return 0;
  luaL_traceback(L, t->co, NULL, 0);
  g->trace_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  host_task_cancel(t, L, 0);
  return 0;
}

static void guard_fire(uv_timer_t *tm) {
  guard *g = tm->data;
  lua_State *L = g->hd.h->cbL;
  g->fired = 1;
  if (!L || g->task_ref == LUA_NOREF) return;
  int top = lua_gettop(L);
  lua_pushcfunction(L, guard_fire_protected);
  lua_pushlightuserdata(L, g);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) /* out of memory: cancel anyway */
    guard_fire_fallback(g, L);
  lua_settop(L, top);
}

/* _guard(task, seconds) -> Guard: cancels task after seconds of real
 * time unless closed first; guard:fired() says whether it did. */
static int l_guard(lua_State *L) {
  lasync_host *h = HOST(L);
  host_check_task_arg(L, 1);
  double sec = host_check_seconds(L, 2, "seconds");
  luaL_argcheck(L, sec > 0, 2, "seconds must be positive");
  guard *g = calloc(1, sizeof *g);
  if (!g) return luaL_error(L, "asyncio.testing: out of memory");
  int rc = uv_timer_init(h->loop, &g->timer);
  if (rc) {
    free(g);
    return host_raise_oserror(L, rc, "uv_timer_init", NULL);
  }
  g->timer.data = g;
  g->task_ref = g->trace_ref = LUA_NOREF;
  host_handle_init(&g->hd, &GUARD_TYPE, h);
  host_handle_push(L, &g->hd, 0);
  lua_pushvalue(L, 1);
  g->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  double ms = ceil(sec * 1e3);
  uv_timer_start(&g->timer, guard_fire,
                 ms >= 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
  return 1;
}

/* guard:fired() -> whether the time ran out, and where the task was. */
static int guard_fired(lua_State *L) {
  guard *g = (guard *)host_handle_check(L, 1, &GUARD_TYPE, "fired", 0);
  lua_pushboolean(L, g->fired);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->trace_ref);
  return 2;
}

static int guard_cancel(lua_State *L) {
  host_handle *hd = host_handle_check(L, 1, &GUARD_TYPE, "cancel", 0);
  host_handle_close(hd, L);
  return 0;
}

/* ---- the module ---------------------------------------------------------- */

static const luaL_Reg funcs[] = {{"_set_clock", l_set_clock},
                                 {"clock", l_clock},
                                 {"advance", l_advance},
                                 {"wait_idle", l_wait_idle},
                                 {"real_time", l_real_time},
                                 {"_task_origin", l_task_origin},
                                 {"_task_bytes", l_task_bytes},
                                 {"_handles", l_handles},
                                 {"_close_handle", l_close_handle},
                                 {"_handle_id", l_handle_id},
                                 {"_callbacks", l_callbacks},
                                 {"_fds", l_fds},
                                 {"_guard", l_guard},
                                 {NULL, NULL}};

LASYNC_API int luaopen_asyncio_testing(lua_State *L) {
  lasync_host *h = host_get(L);
  if (!h) { /* a stock lua5.4 that has not loaded asyncio yet */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "asyncio");
    lua_call(L, 1, 0);
    h = host_get(L);
  }
  if (!h) return luaL_error(L, "asyncio.testing: the event loop is closed");
  static const luaL_Reg guard_methods[] = {{"fired", guard_fired},
                                           {"cancel", guard_cancel},
                                           {NULL, NULL}};
  static const luaL_Reg guard_meta[] = {{"__gc", host_handle_gc},
                                        {"__close", guard_cancel},
                                        {NULL, NULL}};
  host_new_type(L, GUARD_MT, guard_methods, guard_meta, 0);
  host_handle_register(L, &GUARD_TYPE);
  l_load_lua_part(L, "testing");
  lua_newtable(L);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  l_load_lua_part(L, "argcheck");
  lua_call(L, 2, 1);
  return 1;
}
