/* C futures: an embedder's asynchronous operation as a suspending Lua
 * function.  A future has two owners.  The Lua side is a small userdata box
 * on the stack of the C function that made it (so a Lua error between
 * lasync_future_new and lasync_await cannot leak it); the application side
 * ends with resolve, reject or release.  The record is freed when both are
 * gone, which makes a late completion (after a cancellation, after the host
 * was freed) safe: it just gets an error code. */
#include <stdlib.h>

#include "host.h"

#define FUTURE_MT "asyncio.Future"

enum { F_PENDING, F_RESOLVED, F_REJECTED, F_CANCELLED };

struct lasync_future {
  host_link link;          /* in h->futures while the host lives */
  lasync_host *h;          /* NULL once the host is gone */
  host_task *task;         /* the parked task, or NULL */
  lasync_cancel_fn on_cancel;
  void *ud;
  uv_thread_t thread;      /* the loop's thread */
  int values_ref;          /* completion that came before the await */
  unsigned char state;
  unsigned char lua_owned, app_owned;
};

static void maybe_free(lasync_future *f) {
  if (f->lua_owned || f->app_owned) return;
  host_list_remove(&f->link);
  if (f->h && f->values_ref != LUA_NOREF && !f->h->stopped)
    luaL_unref(f->h->cbL, LUA_REGISTRYINDEX, f->values_ref);
  free(f);
}

static int on_thread(lasync_future *f) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&f->thread, &self);
}

static int box_gc(lua_State *L) {
  lasync_future **box = lua_touserdata(L, 1);
  if (*box) {
    (*box)->lua_owned = 0;
    maybe_free(*box);
    *box = NULL;
  }
  return 0;
}

LASYNC_API lasync_future *lasync_future_new(lua_State *L,
                                            lasync_cancel_fn on_cancel,
                                            void *ud) {
  lasync_host *h = host_get(L);
  if (!h) luaL_error(L, "asyncio: no host for this state");
  host_check_task(L, "future");
  lasync_future **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  static const luaL_Reg box_meta[] = {{"__gc", box_gc}, {NULL, NULL}};
  host_new_type(L, FUTURE_MT, NULL, box_meta, 0);
  luaL_setmetatable(L, FUTURE_MT);
  lasync_future *f = calloc(1, sizeof *f);
  if (!f) luaL_error(L, "asyncio: out of memory");
  f->h = h;
  f->on_cancel = on_cancel;
  f->ud = ud;
  f->thread = uv_thread_self();
  f->values_ref = LUA_NOREF;
  f->lua_owned = f->app_owned = 1;
  host_list_push(&h->futures, &f->link);
  *box = f; /* stays on the C function's stack, through the wait */
  return f;
}

LASYNC_API void *lasync_future_data(lasync_future *f) { return f->ud; }

/* The task was cancelled while parked on f: tell the application. */
static int future_cancel(host_task *t, int woken) {
  lasync_future *f = t->wait_data;
  if (woken) return 0; /* it had completed: nothing to abort */
  f->task = NULL;
  if (f->state == F_PENDING) {
    f->state = F_CANCELLED;
    if (f->on_cancel) f->on_cancel(f, f->ud);
  }
  return 0;
}

/* Pushes a completion stored before the await. */
static int push_stored(lua_State *L, lasync_future *f) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->values_ref);
  int packed = lua_gettop(L);
  lua_getfield(L, packed, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "future results");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, packed, i);
  lua_remove(L, packed);
  if (f->state == F_REJECTED) return lua_error(L);
  return n;
}

LASYNC_API int lasync_await(lua_State *L, lasync_future *f) {
  if (f->state == F_RESOLVED || f->state == F_REJECTED)
    return push_stored(L, f);
  if (f->state == F_CANCELLED || !f->h)
    return host_error_raise(L, "CancelledError", "");
  if (!f->app_owned) /* released before the await: nothing will come */
    return luaL_error(L, "asyncio: the future was released without a result");
  host_task *t = host_check_task(L, "await");
  f->task = t;
  return host_park(L, t, future_cancel, f, NULL, 0);
}

static lua_State *begin(lasync_future *f) {
  if (!on_thread(f) || !f->h || f->h->stopped || f->state != F_PENDING)
    return NULL;
  return f->h->cbL;
}

LASYNC_API lua_State *lasync_future_begin(lasync_future *f) {
  return begin(f);
}

static int check_completable(lasync_future *f) {
  if (!on_thread(f)) return LASYNC_ETHREAD;
  if (!f->app_owned) return LASYNC_EDONE;
  if (!f->h || f->h->stopped) return LASYNC_ECLOSED;
  if (f->state == F_CANCELLED) return LASYNC_ECANCELLED;
  if (f->state != F_PENDING) return LASYNC_EDONE;
  return 0;
}

/* Completes f with the n values (or, rejected, the one error value) on top
 * of the host's scratch thread. */
static int complete(lasync_future *f, int n, int rejected) {
  int rc = check_completable(f);
  lua_State *S = f->h && !f->h->stopped ? f->h->cbL : NULL;
  if (rc) {
    if (S && rc != LASYNC_ETHREAD) lua_pop(S, n);
    if (rc != LASYNC_ETHREAD && f->app_owned) {
      f->app_owned = 0;
      maybe_free(f);
    }
    return rc;
  }
  f->state = rejected ? F_REJECTED : F_RESOLVED;
  if (f->task) {
    host_task *t = f->task;
    f->task = NULL;
    if (rejected)
      host_wake_error(t, S);
    else
      host_wake(t, S, n);
  } else { /* completed before the await: keep the values */
    lua_createtable(S, n, 1);
    lua_insert(S, -(n + 1));
    for (int i = n; i >= 1; i--) lua_rawseti(S, -(i + 1), i);
    lua_pushinteger(S, n);
    lua_setfield(S, -2, "n");
    f->values_ref = luaL_ref(S, LUA_REGISTRYINDEX);
  }
  f->app_owned = 0;
  maybe_free(f);
  return 0;
}

LASYNC_API int lasync_future_resolve(lasync_future *f, int n) {
  return complete(f, n, 0);
}

LASYNC_API int lasync_future_reject(lasync_future *f) {
  return complete(f, 1, 1);
}

LASYNC_API int lasync_future_reject_msg(lasync_future *f, const char *msg) {
  lua_State *S = begin(f);
  if (!S) return complete(f, 0, 1);
  lua_pushstring(S, msg);
  return complete(f, 1, 1);
}

LASYNC_API int lasync_future_release(lasync_future *f) {
  if (!on_thread(f)) return LASYNC_ETHREAD;
  if (!f->app_owned) return LASYNC_EDONE;
  if (f->task && f->state == F_PENDING && f->h && !f->h->stopped) {
    /* a task still waits: it must not wait forever */
    lua_pushliteral(f->h->cbL,
                    "asyncio: the future was released without a result");
    return complete(f, 1, 1);
  }
  f->app_owned = 0;
  maybe_free(f);
  return 0;
}

/* The host is going away: pending futures are cancelled (their tasks were
 * cancelled already) and forget the host. */
void host_futures_orphan(lasync_host *h) {
  host_link *l;
  while ((l = host_list_first(&h->futures))) {
    lasync_future *f = host_container_of(l, lasync_future, link);
    host_list_remove(l);
    if (f->values_ref != LUA_NOREF && h->cbL && !h->stopped)
      luaL_unref(h->cbL, LUA_REGISTRYINDEX, f->values_ref);
    f->values_ref = LUA_NOREF;
    f->h = NULL;
    if (f->state == F_PENDING) {
      f->state = F_CANCELLED;
      f->task = NULL;
      /* the last access: on_cancel may release (and so free) f */
      if (f->on_cancel) f->on_cancel(f, f->ud);
    }
  }
}
