/* Deadlines and multi-task waits: asyncio.timeout / timeout_at (to-be-
 * closed deadline objects), gather, and the internal wait_any() that
 * wait(), as_completed(), shield() and TaskGroup (bindings/sync.lua) build
 * on.
 *
 * A timeout cancels its task when the deadline passes (Python 3.11+): the
 * CancelledError unwinds to the scope's end, where __close sees that the
 * cancellation was its own (the task's cancel count drops back to where it
 * was on entry) and raises TimeoutError instead. */
#include <stdlib.h>
#include <string.h>

#include "../host/future.h"
#include "../host/waitq.h"
#include "init.h"

#define TIMEOUT_MT "asyncio.Timeout"

enum { TM_ACTIVE, TM_EXPIRING, TM_EXPIRED, TM_EXITED };

typedef struct tmo {
  host_timer timer;
  lasync_host *h;
  host_task *task;
  uint64_t when;  /* host_now() deadline; meaningful if has_when */
  double when_s;  /* the deadline as given, in loop seconds (when()) */
  int cancelling; /* the task's cancel count on entry */
  int state;
  int has_when;
  char waited[128]; /* where the task waited when the deadline passed */
} tmo;

static tmo *check_tmo(lua_State *L) {
  return luaL_checkudata(L, 1, TIMEOUT_MT);
}

/* The deadline passed while the task waited.  A task already woken by
 * the end of the task it awaits carries that task's results, which a
 * cancellation now would throw away (wait_for(function() return
 * reader:read(n) end, t) lost the bytes read): it gets them, and the
 * cancellation at its next suspension, or none if it leaves the scope
 * first (then the scope ends normally, as asyncio's does when the awaited
 * thing completed).  Other primitives undo a queued wake-up themselves
 * (the item stays in the queue, the lock passes on), as asyncio does. */
static void tmo_fire(lasync_host *h, host_timer *tm) {
  tmo *o = host_container_of(tm, tmo, timer);
  host_task *t = o->task;
  if (o->state != TM_ACTIVE) return;
  o->state = TM_EXPIRING;
  host_where_waiting(t->co, o->waited, sizeof o->waited);
  if (!(t->flags & TF_MUST_CANCEL) && l_task_await_woken(t)) {
    t->ncancels++;
    t->flags |= TF_DEFER_CANCEL;
    return;
  }
  host_task_cancel(t, h->cbL, 0);
}

/* A deadline already passed on entry (timeout(0), timeout_at(past)) is
 * handled as asyncio's call_soon(_on_timeout): queued before the task's
 * own next wake-up, so even a sleep(0) inside the scope is interrupted. */
static int tmo_expire_soon(lua_State *L) {
  tmo *o = luaL_checkudata(L, 1, TIMEOUT_MT);
  if (o->state != TM_ACTIVE || !o->has_when || host_timer_armed(&o->timer))
    return 0; /* exited, or rescheduled meanwhile */
  o->state = TM_EXPIRING;
  host_where_waiting(o->task->co, o->waited, sizeof o->waited);
  host_task_cancel(o->task, L, 0);
  return 0;
}

/* The loop clock (asyncio.time()). */
static double loop_now(lasync_host *h) { return (double)host_now(h) / 1e9; }

/* Arms the tmo at idx for its deadline. */
static void tmo_arm(lua_State *L, int idx) {
  tmo *o = lua_touserdata(L, idx);
  host_timer_stop(o->h, &o->timer);
  if (!o->has_when) return;
  if (o->when_s <= loop_now(o->h)) {
    lua_pushcfunction(L, tmo_expire_soon);
    lua_pushvalue(L, idx);
    host_call_soon(o->h, L, 1);
  } else if (host_timer_start(o->h, &o->timer, o->when)) {
    luaL_error(L, "asyncio: timeout(): out of memory");
  }
}

/* Sets the deadline to loop time `when`, kept exactly for when(). */
static void tmo_set_when(tmo *o, double when) {
  o->has_when = 1;
  o->when_s = when;
  o->when = host_deadline_at(o->h, when);
}

static int new_timeout(lua_State *L, int absolute, const char *fname) {
  lasync_host *h = HOST(L);
  double v = 0;
  int has = host_opt_seconds(L, 1, "delay", &v);
  host_task *t = host_check_task(L, fname);
  tmo *o = lua_newuserdatauv(L, sizeof *o, 1);
  memset(o, 0, sizeof *o);
  host_timer_init(&o->timer, tmo_fire);
  o->h = h;
  o->task = t;
  o->cancelling = t->ncancels;
  o->state = TM_ACTIVE;
  if (has) tmo_set_when(o, absolute ? v : loop_now(h) + v);
  luaL_setmetatable(L, TIMEOUT_MT);
  host_task_push(L, t); /* the timeout keeps its task alive */
  lua_setiuservalue(L, -2, 1);
  tmo_arm(L, lua_gettop(L));
  return 1;
}

static int l_timeout(lua_State *L) { return new_timeout(L, 0, "timeout"); }
static int l_timeout_at(lua_State *L) {
  return new_timeout(L, 1, "timeout_at");
}

/* tm:reschedule(when): a new absolute deadline (nil: none). */
static int tmo_reschedule(lua_State *L) {
  tmo *o = check_tmo(L);
  double v = 0;
  int has = host_opt_seconds(L, 2, "when", &v);
  if (o->state != TM_ACTIVE)
    return host_error_raise(L, "RuntimeError",
                            "cannot reschedule an expired or closed timeout");
  o->has_when = 0;
  if (has) tmo_set_when(o, v);
  tmo_arm(L, 1);
  return 0;
}

static int tmo_when(lua_State *L) {
  tmo *o = check_tmo(L);
  if (!o->has_when) return 0;
  lua_pushnumber(L, o->when_s);
  return 1;
}

static int tmo_expired(lua_State *L) {
  tmo *o = check_tmo(L);
  lua_pushboolean(L, o->state == TM_EXPIRING || o->state == TM_EXPIRED);
  return 1;
}

/* __close(tm, err): ends the scope.  If the deadline cancelled the task
 * and the error leaving the scope is that cancellation, raises
 * TimeoutError in its place. */
static int tmo_close(lua_State *L) {
  tmo *o = check_tmo(L);
  host_timer_stop(o->h, &o->timer);
  if (o->state != TM_EXPIRING) {
    if (o->state == TM_ACTIVE) o->state = TM_EXITED;
    return 0;
  }
  o->state = TM_EXPIRED;
  host_task *t = o->task;
  if (t->ncancels > 0) t->ncancels--;
  /* Ours alone: a cancellation not yet delivered is withdrawn too. */
  if (t->ncancels == 0 && t->state != TASK_DONE && host_task_of(L) == t)
    t->flags &= ~TF_MUST_CANCEL;
  if (t->ncancels <= o->cancelling && host_is_cancelled_error(L, 2))
    return host_error_raise(L, "TimeoutError",
                            "the deadline has passed (the task was waiting "
                            "%s)", o->waited);
  return 0;
}

static int tmo_gc(lua_State *L) {
  tmo *o = lua_touserdata(L, 1);
  host_timer_stop(o->h, &o->timer);
  return 0;
}

static int tmo_tostring(lua_State *L) {
  tmo *o = check_tmo(L);
  static const char *const names[] = {"active", "expiring", "expired",
                                      "exited"};
  if (o->has_when)
    lua_pushfstring(L, "<Timeout %s when=%f>", names[o->state], o->when_s);
  else
    lua_pushfstring(L, "<Timeout %s when=nil>", names[o->state]);
  return 1;
}

/* ---- wait_any ----------------------------------------------------------- */

typedef struct any_wait any_wait;
typedef struct any_child {
  host_listener l;
  any_wait *w;
} any_child;

struct any_wait {
  host_task *parent;
  host_timer timer;
  uint32_t n;
  unsigned char woken, timed_out;
  any_child child[];
};

static void any_release(any_wait *w) {
  for (uint32_t i = 0; i < w->n; i++) host_task_unlisten(&w->child[i].l);
  host_timer_stop(w->parent->h, &w->timer);
  free(w);
}

static void any_wake(any_wait *w, int timed_out) {
  if (w->woken) return;
  w->woken = 1;
  w->timed_out = (unsigned char)timed_out;
  host_wake(w->parent, NULL, 0);
}

static void any_child_done(host_listener *l, host_task *done) {
  (void)done;
  any_wake(((any_child *)l)->w, 0);
}

static void any_fire(lasync_host *h, host_timer *tm) {
  (void)h;
  any_wake(host_container_of(tm, any_wait, timer), 1);
}

static int any_cancel(host_task *t, int woken) {
  (void)woken;
  any_release(t->wait_data);
  return 0;
}

static int any_k(lua_State *L, lua_KContext ctx) {
  any_wait *w = (any_wait *)ctx;
  int timed_out = w->timed_out;
  any_release(w);
  lua_pushboolean(L, !timed_out);
  return 1;
}

/* wait_any(tasks [, timeout]): suspends until one of the tasks is done
 * (true) or the timeout passes (false).  Never cancels the tasks. */
static int l_wait_any(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double timeout = 0;
  int has = host_opt_seconds(L, 2, "timeout", &timeout);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    host_task *c = host_test_task_arg(L, -1);
    if (!c)
      return luaL_error(L, "bad argument #1 to 'wait_any' (item %d: task "
                           "expected, got %s)", (int)i, luaL_typename(L, -1));
    lua_pop(L, 1);
    if (c->state == TASK_DONE) {
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  host_task *t = host_check_task(L, "wait");
  if (has && timeout <= 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  any_wait *w = malloc(sizeof *w + (size_t)n * sizeof(any_child));
  if (!w) return luaL_error(L, "asyncio: wait(): out of memory");
  w->parent = t;
  w->n = (uint32_t)n;
  w->woken = w->timed_out = 0;
  host_timer_init(&w->timer, any_fire);
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    host_task *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    w->child[i].w = w;
    host_list_init(&w->child[i].l.link);
    host_task_listen(c, &w->child[i].l, any_child_done);
  }
  if (has && host_timer_start(t->h, &w->timer, host_deadline(t->h, timeout))) {
    any_release(w);
    return luaL_error(L, "asyncio: wait(): out of memory");
  }
  lua_settop(L, 1); /* the list keeps the tasks alive */
  return host_park(L, t, any_cancel, w, any_k, (lua_KContext)w);
}

/* ---- gather ----------------------------------------------------------- */

typedef struct gather_child {
  union {
    host_listener l; /* once l_gather has taken every argument */
    host_task *task; /* until then: the child, read back from no table */
  };
  uint32_t index;
} gather_child;

typedef struct gather_state {
  host_task *parent;
  uint32_t n, remaining;
  int64_t failed;          /* index of the first failed child, or -1 */
  unsigned char return_exceptions, woken, cancelled;
  gather_child child[];
} gather_state;

static gather_state *state_of(gather_child *c) {
  return (gather_state *)((char *)(c - c->index) -
                          offsetof(gather_state, child));
}

static void gather_wake(gather_state *g) {
  if (g->woken) return;
  g->woken = 1;
  host_wake(g->parent, NULL, 0);
}

static void gather_child_done(host_listener *l, host_task *done) {
  gather_child *c = (gather_child *)l;
  gather_state *g = state_of(c);
  g->remaining--;
  if (done->outcome != OUTCOME_OK && !g->return_exceptions && g->failed < 0) {
    g->failed = c->index;
    gather_wake(g);
  } else if (g->remaining == 0) {
    gather_wake(g);
  }
}

/* g itself is a userdata on the gathering task's stack (slot 2), which
 * the collector frees once gather is done with it. */
static void gather_release(gather_state *g) {
  for (uint32_t i = 0; i < g->n; i++) host_task_unlisten(&g->child[i].l);
}

/* Cancelling the gathering task cancels the children still running; it
 * goes on waiting until they end, then raises CancelledError. */
static int gather_cancel(host_task *t, int woken) {
  gather_state *g = t->wait_data;
  lua_State *L = t->co;
  int passed = 0;
  if (!woken) {
    g->cancelled = 1;
    /* the children table is the gathering task's stack slot 1 */
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, 1, i);
      host_task *c = lua_touserdata(L, -1);
      lua_pop(L, 1);
      if (c->state != TASK_DONE && host_task_cancel_for(c, t)) passed = 1;
    }
    if (passed) return 1;
  }
  t->wait_data = NULL;
  gather_release(g);
  return 0;
}

/* Stack: [children], all done; turns the list into the list of first
 * results (a failure's error value in its place), each in its task's slot.
 * The children table is gather's own copy, never seen outside, and has
 * the results' size: a second table of n slots per gather cost W1 about
 * 600 instructions a task, mostly in the collector's steps that the
 * allocation brought.  Without return_exceptions none of them failed:
 * l_gather raised for one that had failed before, and a child that fails
 * later wakes gather_k with g->failed set. */
static int gather_collect(lua_State *L) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    int failed;
    lua_rawgeti(L, 1, i);
    host_task_first(L, lua_touserdata(L, -1), &failed);
    lua_rawseti(L, 1, i); /* the result over its task: no allocation */
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  return 1;
}

/* The gathering task was cancelled: raises the CancelledError of the
 * first cancelled child, so its message comes through (asyncio). */
static int gather_raise_cancelled(lua_State *L) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    host_task *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (c->state == TASK_DONE && c->outcome == OUTCOME_CANCELLED)
      return host_task_results(L, c);
  }
  host_task_push_cancelled(L, host_task_of(L));
  return lua_error(L);
}

static int gather_k(lua_State *L, lua_KContext ctx) {
  gather_state *g = (gather_state *)ctx;
  int cancelled = g->cancelled;
  int64_t failed = g->failed;
  gather_release(g);
  lua_settop(L, 1);
  if (cancelled) return gather_raise_cancelled(L);
  if (failed >= 0) {
    lua_rawgeti(L, 1, failed + 1);
    return host_task_results(L, lua_touserdata(L, -1));
  }
  return gather_collect(L);
}

/* Every child had ended before the gather, or one had failed (its index
 * from 1 is `failed`, 0 if none): asyncio's gather still learns of them
 * through done callbacks, so it returns (or raises that failure) a loop
 * turn later, and so does this one. */
static int gather_ready_k(lua_State *L, lua_KContext failed) {
  lua_settop(L, 1);
  if (failed) {
    lua_rawgeti(L, 1, (lua_Integer)failed);
    return host_task_results(L, lua_touserdata(L, -1));
  }
  return gather_collect(L);
}

/* gather(a, b, ...) or gather{a, b, ..., return_exceptions = true}: a, b
 * are tasks or functions (started as tasks). */
static int l_gather(lua_State *L) {
  lasync_host *h = HOST(L);
  int return_exceptions = 0, nargs = lua_gettop(L), list = 0;
  if (nargs == 1 && lua_type(L, 1) == LUA_TTABLE && !host_test_task_arg(L, 1)) {
    list = 1;
    lua_getfield(L, 1, "return_exceptions");
    return_exceptions = lua_toboolean(L, -1);
    lua_pop(L, 1);
    nargs = (int)lua_rawlen(L, 1);
  }
  host_task *parent = host_check_task(L, "gather");
  lua_createtable(L, nargs, 0); /* the children, as tasks */
  int children = lua_gettop(L);
  if (nargs == 0) return 1; /* asyncio: done at once, with {} */
  /* The record is made at the first child still pending, so that the
   * loop below notes each child in it (reading them back from the children
   * table cost about 90 instructions a child); a userdata in the slot
   * `record`, so that an argument refused half way leaves nothing to free,
   * and nothing listens before the loop ends. */
  gather_state *g = NULL;
  lua_pushnil(L);
  int record = lua_gettop(L);
  uint32_t pending = 0;
  int failed = 0; /* the first child already failed, in order (from 1) */
  for (int i = 1; i <= nargs; i++) {
    int item;
    if (list) {
      lua_rawgeti(L, 1, i);
      item = lua_gettop(L);
    } else {
      item = i;
    }
    host_task *c = host_test_task_arg(L, item);
    if (!c && host_future_test(L, item)) {
      l_future_task(L, item); /* a task that ends as the future does */
      c = lua_touserdata(L, -1);
    } else if (!c) {
      if (!host_is_callable(L, item)) {
        if (list)
          return luaL_error(L, "bad argument #1 to 'gather' (item %d: task "
                               "or function expected, got %s)",
                            i, luaL_typename(L, item));
        luaL_typeerror(L, i, "task or function");
      }
      lua_pushvalue(L, item);
      c = host_task_spawn(h, L, 0);
    } else {
      lua_pushvalue(L, item);
    }
    if (c->state != TASK_DONE) {
      if (!g) {
        g = lua_newuserdatauv(
            L, sizeof *g + (size_t)nargs * sizeof(gather_child), 0);
        lua_replace(L, record); /* the child stays on top */
        for (int j = 0; j < i - 1; j++) g->child[j].task = NULL; /* done */
      }
      g->child[i - 1].task = c;
      pending++;
    } else {
      if (g) g->child[i - 1].task = NULL;
      if (c->outcome != OUTCOME_OK && !failed) failed = i;
    }
    lua_rawseti(L, children, i);
    if (list) lua_pop(L, 1);
  }
  lua_copy(L, children, 1); /* [children, record]: parked with them */
  lua_copy(L, record, 2);
  lua_settop(L, 2);
  if (pending == 0 || (failed && !return_exceptions)) {
    lua_settop(L, 1);
    host_wake(parent, NULL, 0);
    return host_park(L, parent, NULL, NULL, gather_ready_k,
                     return_exceptions ? 0 : (lua_KContext)failed);
  }
  g->parent = parent;
  g->n = (uint32_t)nargs;
  g->remaining = pending;
  g->failed = -1;
  g->return_exceptions = (unsigned char)return_exceptions;
  g->woken = g->cancelled = 0;
  for (int i = 0; i < nargs; i++) {
    gather_child *c = &g->child[i];
    host_task *ct = c->task;
    c->index = (uint32_t)i;
    host_list_init(&c->l.link);
    if (ct) host_task_listen(ct, &c->l, gather_child_done); /* pending */
  }
  return host_park(L, parent, gather_cancel, g, gather_k, (lua_KContext)g);
}

host_task *l_wait_listener_owner(host_listener *l) {
  if (l->fn == gather_child_done) return state_of((gather_child *)l)->parent;
  if (l->fn == any_child_done) return ((any_child *)l)->w->parent;
  return NULL;
}

static const luaL_Reg tmo_methods[] = {{"reschedule", tmo_reschedule},
                                       {"when", tmo_when},
                                       {"expired", tmo_expired},
                                       {NULL, NULL}};

static const luaL_Reg funcs[] = {{"timeout", l_timeout},
                                 {"timeout_at", l_timeout_at},
                                 {"gather", l_gather},
                                 {NULL, NULL}};

void l_open_wait(lua_State *L, lasync_host *h) {
  static const luaL_Reg tmo_meta[] = {{"__close", tmo_close},
                                      {"__gc", tmo_gc},
                                      {"__tostring", tmo_tostring},
                                      {NULL, NULL}};
  host_new_type(L, TIMEOUT_MT, tmo_methods, tmo_meta, 0);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}

/* note_origin(err, tasks): the running task raises err because the tasks
 * failed (a TaskGroup's ExceptionGroup): its report continues theirs. */
static int l_note_origin(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  host_task *me = host_task_of(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = 1; me && i <= n; i++) {
    lua_rawgeti(L, 2, i);
    host_task *t = host_test_task_arg(L, -1);
    lua_pop(L, 1);
    if (t && t->outcome == OUTCOME_FAILED) host_task_note_origin(L, me, 1, t, 1);
  }
  return 0;
}

/* Pushes the internal helpers the Lua part uses (a table). */
void l_push_wait_internals(lua_State *L, lasync_host *h) {
  lua_newtable(L);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_wait_any, 1);
  lua_setfield(L, -2, "wait_any");
  lua_pushcfunction(L, l_note_origin);
  lua_setfield(L, -2, "note_origin");
  /* child Task -> the task of its TaskGroup (weak keys), for the graph */
  host_new_weak_registry(L, L_GROUP_PARENTS);
  lua_setfield(L, -2, "group_parents");
}
