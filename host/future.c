/* Futures: one core for an embedder's asynchronous operation (the C API of
 * lasync.h) and for asyncio.Future.  The lifetime and the outcome's place
 * are described in future.h. */
#include <stdlib.h>

#include "future.h"
#include "waitq.h"

#define BOXES_KEY "lasync.future_boxes"

/* ---- the record and its box --------------------------------------------- */

/* The completer's share ends once and for all (handle.h's "the handle
 * closed"): a done Lua future, or a C future the application let go. */
static void end_share(lasync_future *f) {
  if (!f->hd.closed) host_handle_after_close(&f->hd);
}

/* Closing: the box was collected, or the host stops (then hd.h is NULL
 * already, and no Lua may run).  Either way no task can wait on f any
 * more (a waiter keeps the box on its stack; the host cancelled its
 * tasks), so a pending future only becomes cancelled. */
static int future_close(host_handle *hd, lua_State *L) {
  lasync_future *f = host_container_of(hd, lasync_future, hd);
  (void)L;
  if (f->state == FUT_PENDING) {
    f->state = FUT_CANCELLED;
    /* the last access when on_cancel releases f (host_handle_close holds
     * the record until it returns) */
    if (f->app && f->on_cancel) f->on_cancel(f, f->ud);
  }
  if (!f->app) end_share(f);
  return 1;
}

static void future_free(host_handle *hd) {
  free(host_container_of(hd, lasync_future, hd));
}

static const host_handle_type FUTURE_TYPE = {HOST_FUTURE_MT, "future",
                                             future_close, future_free};

static int describe_p(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* A failure nobody looked at is reported when its future is collected,
 * as asyncio's "Future exception was never retrieved".  The record goes
 * first and the error value's __tostring runs protected: an error raised
 * there would end this finalizer, the record leaked and nothing said. */
static int future_gc(lua_State *L) {
  host_handle **box = lua_touserdata(L, 1);
  lasync_future *f = box && *box ? (lasync_future *)*box : NULL;
  lasync_host *h = NULL;
  if (f && f->state == FUT_REJECTED && !f->retrieved && f->hd.h &&
      !f->hd.h->stopped)
    h = f->hd.h;
  host_handle_gc(L);
  if (h) {
    lua_pushcfunction(L, describe_p);
    lua_getiuservalue(L, 1, 1); /* the weak table forgot the box already */
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_pop(L, 1);
      lua_pushliteral(L, "(an error object whose __tostring failed)");
    }
    lua_pushfstring(L, "Future exception was never retrieved\n%s",
                    lua_tostring(L, -1));
    host_report(h, lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  return 0;
}

/* The metatable (and its place in handle.h's checks), made once. */
void host_future_type(lua_State *L) {
  if (luaL_getmetatable(L, HOST_FUTURE_MT) == LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  static const luaL_Reg meta[] = {{"__gc", future_gc}, {NULL, NULL}};
  host_new_type(L, HOST_FUTURE_MT, NULL, meta, 0);
  host_handle_register(L, &FUTURE_TYPE);
}

/* Pushes the box of f, or nil once it is being collected. */
static int push_box(lua_State *L, lasync_future *f) {
  lua_getfield(L, LUA_REGISTRYINDEX, BOXES_KEY);
  lua_rawgetp(L, -1, f);
  lua_remove(L, -2);
  return !lua_isnil(L, -1);
}

lasync_future *host_future_new(lua_State *L, lasync_host *h) {
  if (!h || h->stopped) luaL_error(L, "asyncio: the event loop is closed");
  host_future_type(L);
  if (luaL_getsubtable(L, LUA_REGISTRYINDEX, BOXES_KEY) == 0) {
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  /* the box first: an allocation error after it cannot leak the record */
  host_handle **box = host_handle_newbox(L, HOST_FUTURE_MT, 2);
  lasync_future *f = calloc(1, sizeof *f);
  if (!f) luaL_error(L, "asyncio: out of memory");
  host_handle_init(&f->hd, &FUTURE_TYPE, h);
  host_handle_attach(box, &f->hd);
  host_list_init(&f->waiters);
  f->thread = uv_thread_self();
  f->state = FUT_PENDING;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, f);
  lua_remove(L, -2);
  return f;
}

lasync_future *host_future_test(lua_State *L, int idx) {
  if (!lua_isuserdata(L, idx) || !lua_getmetatable(L, idx)) return NULL;
  luaL_getmetatable(L, HOST_FUTURE_MT);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return NULL;
  return host_future_check(L, idx);
}

lasync_future *host_future_check(lua_State *L, int idx) {
  host_future_type(L);
  host_handle *hd = host_handle_check(L, idx, &FUTURE_TYPE, "future", 0);
  return host_container_of(hd, lasync_future, hd);
}

/* ---- settling ----------------------------------------------------------- */

int host_future_settle(lua_State *L, lasync_future *f, int state, int n) {
  int base = lua_gettop(L) - n;
  if (f->state != FUT_PENDING) {
    lua_settop(L, base);
    return 1;
  }
  luaL_checkstack(L, 6, "future");
  if (!push_box(L, f)) { /* collected meanwhile: nobody can see it */
    lua_settop(L, base);
    f->state = FUT_CANCELLED;
    return 1;
  }
  int box = lua_gettop(L);
  if (state == FUT_RESOLVED) {
    lua_createtable(L, n, 1);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(L, base + i);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
  } else {
    lua_pushvalue(L, base + 1);
  }
  lua_setiuservalue(L, box, 1);
  f->state = (unsigned char)state;
  /* Awaiters are woken and done callbacks run on the loop in the order
   * they came: each callback is a pair (fn, awaiters before it), see
   * bindings/future.c. */
  lua_Integer ncb = 0, next = 1, woken = 0;
  if (lua_getiuservalue(L, box, 2) == LUA_TTABLE) {
    ncb = (lua_Integer)lua_rawlen(L, -1);
    lua_pushnil(L);
    lua_setiuservalue(L, box, 2);
  }
  int cbs = lua_gettop(L);
  host_task *t;
  do {
    t = waitq_pop(&f->waiters);
    for (; next + 1 <= ncb; next += 2) {
      lua_rawgeti(L, cbs, next + 1);
      lua_Integer before = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (t && before > woken) break;
      lua_rawgeti(L, cbs, next);
      lua_pushvalue(L, box);
      host_call_soon(f->hd.h, L, 1);
    }
    if (t) {
      host_wake(t, NULL, 0);
      woken++;
    }
  } while (t);
  lua_settop(L, base);
  if (!f->app) end_share(f);
  return 0;
}

static void push_cancelled(lua_State *L, int msgidx) {
  host_error_new(L, "CancelledError", "");
  if (msgidx && !lua_isnoneornil(L, msgidx)) {
    lua_pushvalue(L, msgidx);
    lua_setfield(L, -2, "message");
  }
}

int host_future_cancel(lua_State *L, lasync_future *f, int msgidx) {
  if (f->state != FUT_PENDING) return 0;
  msgidx = msgidx ? lua_absindex(L, msgidx) : 0;
  push_cancelled(L, msgidx);
  host_future_settle(L, f, FUT_CANCELLED, 1);
  /* after the settling: on_cancel may release f; the box (on a Lua
   * stack: the caller's or the awaiting task's) keeps the record */
  if (f->app && f->on_cancel) f->on_cancel(f, f->ud);
  return 1;
}

void host_future_cancel_for(lasync_future *f, host_task *t) {
  if (f->state != FUT_PENDING) return;
  lua_State *L = t->h->cbL;
  int top = lua_gettop(L), msg = 0;
  if (host_task_push_rare(L, t, HOST_RARE_MSG))
    msg = lua_gettop(L);
  host_future_cancel(L, f, msg);
  lua_settop(L, top);
}

/* ---- outcomes ----------------------------------------------------------- */

void host_future_push_error(lua_State *L, lasync_future *f) {
  int found = push_box(L, f);
  if (found && lua_getiuservalue(L, -1, 1) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  /* cancelled without a stored error (the host stopped) */
  lua_pop(L, found ? 2 : 1);
  push_cancelled(L, 0);
}

int host_future_results(lua_State *L, lasync_future *f) {
  if (f->state != FUT_RESOLVED) {
    f->retrieved = 1;
    host_future_push_error(L, f);
    return lua_error(L);
  }
  push_box(L, f);
  lua_getiuservalue(L, -1, 1);
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  int packed = lua_gettop(L);
  luaL_checkstack(L, n, "future results");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, packed, i);
  lua_remove(L, packed);
  lua_remove(L, packed - 1);
  return n;
}

/* ---- awaiting ----------------------------------------------------------- */

static int await_k(lua_State *L, lua_KContext ctx) {
  return host_future_results(L, (lasync_future *)ctx);
}

/* A task awaiting a future is cancelled: so is the future, with the task's
 * message (asyncio's Task.cancel cancels the future it waits on).  A
 * future already settled keeps its outcome. */
static int await_cancel(host_task *t, int woken) {
  lasync_future *f = t->wait_data;
  if (!woken && !t->h->state_closing) {
    /* the task stays an awaiter: the settling wakes it in its turn, with
     * the future's CancelledError (asyncio), and awaiters only ever leave
     * a pending future this way (see the done callbacks' counts) */
    host_future_cancel_for(f, t);
    if (!waitq_linked(t)) return 1; /* passed on: woken by the settling */
  }
  waitq_remove(t);
  return 0;
}

int host_future_await(lua_State *L, lasync_future *f) {
  if (f->state != FUT_PENDING) return host_future_results(L, f);
  host_task *t = host_check_task(L, "await");
  waitq_push(&f->waiters, t);
  return host_park(L, t, await_cancel, f, await_k, (lua_KContext)f);
}

/* ---- the C API ---------------------------------------------------------- */

static int on_thread(lasync_future *f) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&f->thread, &self);
}

LASYNC_API lasync_future *lasync_future_new(lua_State *L,
                                            lasync_cancel_fn on_cancel,
                                            void *ud) {
  lasync_host *h = host_get(L);
  if (!h) luaL_error(L, "asyncio: no host for this state");
  host_check_task(L, "future");
  lasync_future *f = host_future_new(L, h);
  f->app = 1;
  f->on_cancel = on_cancel;
  f->ud = ud;
  f->retrieved = 1; /* the awaiting C function sees its failure */
  return f;
}

LASYNC_API void *lasync_future_data(lasync_future *f) { return f->ud; }

LASYNC_API int lasync_await(lua_State *L, lasync_future *f) {
  return host_future_await(L, f);
}

/* The host, while f can still be completed; hd.h is read only while the
 * future is pending, which it no longer is once the host detached it. */
static lasync_host *live_host(lasync_future *f) {
  if (f->state != FUT_PENDING || !f->hd.h || f->hd.h->stopped) return NULL;
  return f->hd.h;
}

LASYNC_API lua_State *lasync_future_begin(lasync_future *f) {
  if (!on_thread(f) || f->hd.closed) return NULL;
  lasync_host *h = live_host(f);
  return h ? h->cbL : NULL;
}

static int settle_p(lua_State *L) {
  lasync_future *f = lua_touserdata(L, 1);
  int state = (int)lua_tointeger(L, 2);
  host_future_settle(L, f, state, lua_gettop(L) - 2);
  return 0;
}

/* Settles f with the n values on top of the host's scratch thread, under
 * protection: this runs in the application's libuv callback, where an
 * error (out of memory) must not unwind. */
static void settle_protected(lasync_host *h, lasync_future *f, int state,
                             int n) {
  lua_State *S = h->cbL;
  lua_pushcfunction(S, settle_p);
  lua_pushlightuserdata(S, f);
  lua_pushinteger(S, state);
  lua_rotate(S, -(n + 3), 3);
  if (lua_pcall(S, n + 2, 0, 0) != LUA_OK) {
    host_report(h, "asyncio: completing a future: out of memory");
    lua_pop(S, 1);
  }
}

static int complete(lasync_future *f, int n, int state) {
  if (!on_thread(f)) return LASYNC_ETHREAD;
  if (f->hd.closed) return LASYNC_EDONE;
  lasync_host *h = live_host(f);
  int rc = 0;
  if (!h)
    rc = !f->hd.h || f->state == FUT_PENDING  ? LASYNC_ECLOSED
         : f->state == FUT_CANCELLED          ? LASYNC_ECANCELLED
                                              : LASYNC_EDONE;
  if (!rc) settle_protected(h, f, state, n);
  end_share(f); /* may free f */
  return rc;
}

LASYNC_API int lasync_future_resolve(lasync_future *f, int n) {
  return complete(f, n, FUT_RESOLVED);
}

LASYNC_API int lasync_future_reject(lasync_future *f) {
  return complete(f, 1, FUT_REJECTED);
}

LASYNC_API int lasync_future_reject_msg(lasync_future *f, const char *msg) {
  lua_State *S = lasync_future_begin(f);
  if (!S) return complete(f, 0, FUT_REJECTED);
  lua_pushstring(S, msg);
  return complete(f, 1, FUT_REJECTED);
}

LASYNC_API int lasync_future_release(lasync_future *f) {
  if (!on_thread(f)) return LASYNC_ETHREAD;
  if (f->hd.closed) return LASYNC_EDONE;
  lasync_host *h = live_host(f);
  if (h) { /* pending: an await must raise rather than wait forever */
    lua_pushliteral(h->cbL,
                    "asyncio: the future was released without a result");
    return complete(f, 1, FUT_REJECTED);
  }
  end_share(f);
  return 0;
}
