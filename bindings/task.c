/* asyncio tasks: run, sleep, create_task/spawn, the Task methods,
 * current_task, all_tasks and gather. */
#include <stdlib.h>
#include <string.h>

#include "../host/host.h"

#define HOST(L) ((lasync_host *)lua_touserdata(L, lua_upvalueindex(1)))

host_task *host_check_task(lua_State *L, const char *fname) {
  host_task *t = host_task_of(L);
  if (!t)
    luaL_error(L, "asyncio: %s() called outside a task (use asyncio.run)",
               fname);
  if (!lua_isyieldable(L))
    luaL_error(L,
               "asyncio: %s() cannot suspend here (inside a metamethod, "
               "iterator or C function that cannot yield)",
               fname);
  return t;
}

host_task *host_test_task_arg(lua_State *L, int idx) {
  return luaL_testudata(L, idx, HOST_TASK_MT);
}

host_task *host_check_task_arg(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, HOST_TASK_MT);
}

static int is_callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return 1;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

static void check_callable(lua_State *L, int idx) {
  luaL_argexpected(L, is_callable(L, idx), idx, "function");
}

/* ---- sleep ------------------------------------------------------------ */

static void sleep_fire(lasync_host *h, host_timer *tm) {
  (void)h;
  host_wake(host_container_of(tm, host_task, timer), NULL, 0);
}

static int sleep_cancel(host_task *t, int woken) {
  (void)woken;
  host_timer_stop(t->h, &t->timer);
  return 0;
}

static int sleep_k(lua_State *L, lua_KContext ctx) {
  (void)ctx;
  lua_settop(L, 2);
  return lua_isnil(L, 2) ? 0 : 1;
}

static int l_sleep(lua_State *L) {
  lua_Number sec = luaL_checknumber(L, 1);
  luaL_argcheck(L, sec == sec, 1, "delay is NaN");
  host_task *t = host_check_task(L, "sleep");
  lua_settop(L, 2);
  if (sec <= 0) { /* one trip through the loop */
    host_wake(t, NULL, 0);
    return host_park(L, t, NULL, NULL, sleep_k, 0);
  }
  host_timer_init(&t->timer, sleep_fire); /* shares memory with await_node */
  if (host_timer_start(t->h, &t->timer, host_deadline(t->h, sec)))
    return luaL_error(L, "asyncio: sleep(): out of memory");
  return host_park(L, t, sleep_cancel, NULL, sleep_k, 0);
}

/* ---- awaiting one task ------------------------------------------------ */

static void await_done(host_listener *l, host_task *done) {
  (void)done;
  host_wake(host_container_of(l, host_task, await_node), NULL, 0);
}

/* Cancels target on behalf of `from`, passing from's cancel message on
 * (asyncio's Task.cancel(msg) cancels the awaited future with msg). */
static int cancel_on_behalf(host_task *target, host_task *from) {
  lua_State *L = from->h->cbL;
  if (from->cancel_msg_ref == LUA_NOREF) return host_task_cancel(target, L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, from->cancel_msg_ref);
  int passed = host_task_cancel(target, L, lua_gettop(L));
  lua_pop(L, 1);
  return passed;
}

/* Cancelling a task that awaits another cancels the awaited one (as
 * asyncio does); the awaiter then gets whatever that one ends with. */
static int await_cancel(host_task *t, int woken) {
  host_task *target = t->wait_data;
  if (woken || !host_list_linked(&t->await_node.link)) return 0;
  if (cancel_on_behalf(target, t)) return 1;
  host_task_unlisten(&t->await_node);
  return 0;
}

/* True when t was woken because the task it awaits finished: a result
 * that no cancel hook can give back to anyone (wait.c's deadlines). */
int host_task_await_woken(host_task *t) {
  return (t->flags & (TF_PARKED | TF_QUEUED)) == (TF_PARKED | TF_QUEUED) &&
         t->wait_cancel == await_cancel;
}

static int await_k(lua_State *L, lua_KContext ctx) {
  host_task *target = (host_task *)ctx;
  return host_task_results(L, target);
}

/* Waits for the task at idx and returns its results, or raises its error. */
static int await_task(lua_State *L, int idx, const char *fname) {
  host_task *target = host_check_task_arg(L, idx);
  if (target->state == TASK_DONE) return host_task_results(L, target);
  host_task *t = host_check_task(L, fname);
  if (t == target) return luaL_error(L, "asyncio: a task cannot await itself");
  lua_settop(L, idx); /* keeps the target alive while we wait */
  host_task_listen(target, &t->await_node, await_done);
  return host_park(L, t, await_cancel, target, await_k, (lua_KContext)target);
}

static int task_await(lua_State *L) { return await_task(L, 1, "await"); }

/* ---- creating and running --------------------------------------------- */

static int l_create_task(lua_State *L) {
  check_callable(L, 1);
  host_task_spawn(HOST(L), L, lua_gettop(L) - 1);
  return 1;
}

/* Drives the loop from outside any task until t is done; then, like
 * Python's asyncio.run, cancels what is left and lets it unwind. */
static int run_outside(lua_State *L, lasync_host *h, host_task *t,
                       int cleanup) {
  int deadlock = host_run_task(h, t, L);
  if (cleanup) host_drain(h, L);
  if (deadlock)
    return luaL_error(L,
                      "asyncio.run(): the main task waits for something that "
                      "can never happen (no task, timer or handle is left to "
                      "wake it)");
  return host_task_results(L, t);
}

static int run_task(lua_State *L, int cleanup, const char *fname) {
  lasync_host *h = HOST(L);
  int top = lua_gettop(L);
  if (host_task_of(L)) return await_task(L, top, fname);
  if (h->running)
    return luaL_error(L, "asyncio: %s() cannot be called from a running "
                         "event loop", fname);
  host_task *t = host_check_task_arg(L, top);
  return run_outside(L, h, t, cleanup);
}

static int l_run(lua_State *L) {
  check_callable(L, 1);
  host_task_spawn(HOST(L), L, lua_gettop(L) - 1);
  return run_task(L, 1, "run");
}

/* loop:run_until_complete(task_or_function): like run, without cancelling
 * the other tasks at the end. */
int host_run_until_complete(lua_State *L, int idx) {
  if (!host_test_task_arg(L, idx)) {
    check_callable(L, idx);
    lua_pushvalue(L, idx);
    host_task_spawn(HOST(L), L, 0);
  } else {
    lua_pushvalue(L, idx);
  }
  return run_task(L, 0, "run_until_complete");
}

/* ---- Task methods ----------------------------------------------------- */

/* Names and done callbacks are rare: they live in a weak-keyed side
 * table, not in every task. */
void host_task_extras(lua_State *L, int task_idx, int create) {
  task_idx = lua_absindex(L, task_idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "lasync.task_extras") != LUA_TTABLE) {
    lua_pop(L, 1);
    if (!create) {
      lua_pushnil(L);
      return;
    }
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "lasync.task_extras");
  }
  lua_pushvalue(L, task_idx);
  if (lua_rawget(L, -2) != LUA_TTABLE && create) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, task_idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
}

static void push_extras(lua_State *L, int task_idx) {
  host_task_extras(L, task_idx, 1);
}

void host_task_set_report(lua_State *L, host_task *t) {
  host_task_push(L, t);
  host_task_extras(L, -1, 1);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "report");
  lua_pop(L, 3);
}

void host_task_push_report(lua_State *L, int idx) {
  host_task_extras(L, idx, 0);
  if (lua_istable(L, -1)) lua_getfield(L, -1, "report");
  else lua_pushnil(L);
  lua_remove(L, -2);
}

static int task_cancel(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  lua_pushboolean(L, host_task_cancel(t, L, lua_isnoneornil(L, 2) ? 0 : 2));
  return 1;
}

static int task_done(lua_State *L) {
  lua_pushboolean(L, host_check_task_arg(L, 1)->state == TASK_DONE);
  return 1;
}

static int task_cancelled(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  lua_pushboolean(L, t->state == TASK_DONE && t->outcome == OUTCOME_CANCELLED);
  return 1;
}

static void check_done(lua_State *L, host_task *t, const char *what) {
  if (t->state != TASK_DONE)
    host_error_raise(L, "InvalidStateError", "%s is not set", what);
}

static int task_result(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  check_done(L, t, "Result");
  return host_task_results(L, t);
}

static int task_exception(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  int failed;
  check_done(L, t, "Exception");
  if (t->outcome == OUTCOME_CANCELLED) return host_task_results(L, t);
  if (t->outcome == OUTCOME_OK) return 0;
  host_task_first(L, t, &failed);
  return 1;
}

static int task_add_done_callback(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  check_callable(L, 2);
  if (t->state == TASK_DONE) {
    lua_settop(L, 2);
    lua_pushvalue(L, 1);
    host_call_soon(t->h, L, 1);
    return 0;
  }
  push_extras(L, 1);
  if (lua_getfield(L, -1, "callbacks") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "callbacks");
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  t->flags |= TF_HAS_CALLBACKS;
  return 0;
}

static int task_remove_done_callback(lua_State *L) {
  host_check_task_arg(L, 1);
  lua_Integer removed = 0;
  host_task_extras(L, 1, 0);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "callbacks") == LUA_TTABLE) {
    int cbs = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, cbs), j = 1;
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, cbs, i);
      if (lua_rawequal(L, -1, 2)) {
        removed++;
        lua_pop(L, 1);
      } else {
        lua_rawseti(L, cbs, j++);
      }
    }
    for (; j <= n; j++) {
      lua_pushnil(L);
      lua_rawseti(L, cbs, j);
    }
  }
  lua_pushinteger(L, removed);
  return 1;
}

void host_task_schedule_callbacks(lasync_host *h, host_task *t) {
  lua_State *L = h->cbL;
  int top = lua_gettop(L);
  host_task_push(L, t);
  host_task_extras(L, top + 1, 0);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "callbacks") == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, top + 3, i);
      lua_pushvalue(L, top + 1);
      host_call_soon(h, L, 1);
    }
    lua_pushnil(L);
    lua_setfield(L, top + 2, "callbacks");
  }
  lua_settop(L, top);
  t->flags &= ~TF_HAS_CALLBACKS;
}

static int task_get_name(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  host_task_extras(L, 1, 0);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "name") != LUA_TNIL)
    return 1;
  lua_pushfstring(L, "Task-%I", (lua_Integer)t->id);
  return 1;
}

static int task_set_name(lua_State *L) {
  host_check_task_arg(L, 1);
  luaL_checkany(L, 2);
  push_extras(L, 1);
  luaL_tolstring(L, 2, NULL);
  lua_setfield(L, -2, "name");
  return 0;
}

static int task_cancelling(lua_State *L) {
  lua_pushinteger(L, host_check_task_arg(L, 1)->ncancels);
  return 1;
}

static int task_uncancel(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  if (t->ncancels > 0) t->ncancels--;
  /* back to 0: a cancellation not yet delivered is withdrawn (3.13).  A
   * parked task's wait was already undone for it: that one stays. */
  if (t->ncancels == 0)
    t->flags &= (unsigned short)~(TF_DEFER_CANCEL |
                                  (t->flags & TF_PARKED ? 0 : TF_MUST_CANCEL));
  lua_pushinteger(L, t->ncancels);
  return 1;
}

static int task_tostring(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  const char *state = t->state != TASK_DONE ? "pending"
                      : t->outcome == OUTCOME_CANCELLED ? "cancelled"
                      : t->outcome == OUTCOME_FAILED ? "failed"
                                                      : "finished";
  lua_pushcfunction(L, task_get_name);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_pushfstring(L, "<Task %s name='%s'>", state, lua_tostring(L, -1));
  return 1;
}

/* A task is collected only once it is done and unreferenced, or when the
 * state closes.  A failure nobody looked at is reported here, like
 * asyncio's "Task exception was never retrieved". */
static int task_gc(lua_State *L) {
  host_task *t = lua_touserdata(L, 1);
  lasync_host *h = t->h;
  if (t->state != TASK_DONE) {
    /* A pending task is anchored: it is collected only when the state
     * closes.  Nothing may be queued to run any more; what it waits on
     * must forget it, and what waits on it (C listeners: a server's
     * connection record, a gather) is told it ended. */
    h->state_closing = 1;
    if ((t->flags & (TF_PARKED | TF_QUEUED)) == TF_PARKED && t->wait_cancel)
      t->wait_cancel(t, 0); /* stops its timer or leaves what it awaits */
    t->wait_cancel = NULL;
    t->state = TASK_DONE;
    t->outcome = OUTCOME_CANCELLED;
    host_link *l;
    while ((l = host_list_first(&t->awaiters))) {
      host_listener *li = host_container_of(l, host_listener, link);
      host_list_remove(l);
      li->fn(li, t);
    }
    h->npending--;
  } else if (t->outcome == OUTCOME_FAILED && !(t->flags & TF_RETRIEVED)) {
    /* weak-keyed entries of an object being finalized are still there */
    host_task_push_report(L, 1);
    lua_pushfstring(L, "Task exception was never retrieved (Task-%I)\n%s",
                    (lua_Integer)t->id,
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    host_report(h, lua_tostring(L, -1));
  }
  return 0;
}

static const luaL_Reg task_methods[] = {
    {"await", task_await},
    {"cancel", task_cancel},
    {"cancelled", task_cancelled},
    {"done", task_done},
    {"result", task_result},
    {"exception", task_exception},
    {"add_done_callback", task_add_done_callback},
    {"remove_done_callback", task_remove_done_callback},
    {"get_name", task_get_name},
    {"set_name", task_set_name},
    {"cancelling", task_cancelling},
    {"uncancel", task_uncancel},
    {NULL, NULL}};

static const luaL_Reg task_meta[] = {{"__tostring", task_tostring},
                                     {"__gc", task_gc},
                                     {NULL, NULL}};

void host_task_types(lua_State *L, lasync_host *h) {
  (void)h;
  host_new_type(L, HOST_TASK_MT, task_methods, task_meta, 0);
}

/* ---- current_task / all_tasks ----------------------------------------- */

static int l_current_task(lua_State *L) {
  host_task *t = host_task_of(L);
  if (t)
    host_task_push(L, t);
  else
    lua_pushnil(L);
  return 1;
}

static int l_all_tasks(lua_State *L) {
  lasync_host *h = HOST(L);
  lua_createtable(L, (int)h->npending, 0);
  host_push_pending(L, h);
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (host_test_task_arg(L, -1))
      lua_rawseti(L, -4, ++i);
    else
      lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* ---- gather ----------------------------------------------------------- */

typedef struct gather_child {
  host_listener l;
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

static void gather_release(gather_state *g) {
  for (uint32_t i = 0; i < g->n; i++) host_task_unlisten(&g->child[i].l);
  free(g);
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
      if (c->state != TASK_DONE && cancel_on_behalf(c, t)) passed = 1;
    }
    if (passed) return 1;
  }
  t->wait_data = NULL;
  gather_release(g);
  return 0;
}

/* Stack: [children]; builds the list of first results (or raises). */
static int gather_collect(lua_State *L, int return_exceptions) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (!return_exceptions) { /* the first failure in argument order */
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, 1, i);
      host_task *c = lua_touserdata(L, -1);
      lua_pop(L, 1);
      if (c->state == TASK_DONE && c->outcome != OUTCOME_OK)
        return host_task_results(L, c);
    }
  }
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    int failed;
    lua_rawgeti(L, 1, i);
    host_task_first(L, lua_touserdata(L, -1), &failed);
    lua_rawseti(L, -3, i);
    lua_pop(L, 1);
  }
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
  host_task *self = host_task_of(L);
  host_error_new(L, "CancelledError", "");
  if (self && self->cancel_msg_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->cancel_msg_ref);
    lua_setfield(L, -2, "message");
  }
  return lua_error(L);
}

static int gather_k(lua_State *L, lua_KContext ctx) {
  gather_state *g = (gather_state *)ctx;
  int cancelled = g->cancelled, return_exceptions = g->return_exceptions;
  int64_t failed = g->failed;
  gather_release(g);
  lua_settop(L, 1);
  if (cancelled) return gather_raise_cancelled(L);
  if (failed >= 0) {
    lua_rawgeti(L, 1, failed + 1);
    return host_task_results(L, lua_touserdata(L, -1));
  }
  return gather_collect(L, return_exceptions);
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
  uint32_t pending = 0;
  for (int i = 1; i <= nargs; i++) {
    int item;
    if (list) {
      lua_rawgeti(L, 1, i);
      item = lua_gettop(L);
    } else {
      item = i;
    }
    host_task *c = host_test_task_arg(L, item);
    if (!c) {
      if (!is_callable(L, item)) {
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
    if (c->state != TASK_DONE) pending++;
    lua_rawseti(L, children, i);
    if (list) lua_pop(L, 1);
  }
  lua_replace(L, 1);
  lua_settop(L, 1);
  if (!return_exceptions) { /* an already failed child fails it now */
    for (int i = 1; i <= nargs; i++) {
      lua_rawgeti(L, 1, i);
      host_task *c = lua_touserdata(L, -1);
      lua_pop(L, 1);
      if (c->state == TASK_DONE && c->outcome != OUTCOME_OK)
        return host_task_results(L, c);
    }
  }
  if (pending == 0) return gather_collect(L, return_exceptions);
  gather_state *g =
      malloc(sizeof *g + (size_t)nargs * sizeof(gather_child));
  if (!g) return luaL_error(L, "asyncio: gather(): out of memory");
  g->parent = parent;
  g->n = (uint32_t)nargs;
  g->remaining = pending;
  g->failed = -1;
  g->return_exceptions = (unsigned char)return_exceptions;
  g->woken = g->cancelled = 0;
  for (int i = 0; i < nargs; i++) {
    gather_child *c = &g->child[i];
    c->index = (uint32_t)i;
    host_list_init(&c->l.link);
    lua_rawgeti(L, 1, i + 1);
    host_task *ct = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (ct->state != TASK_DONE) host_task_listen(ct, &c->l, gather_child_done);
  }
  return host_park(L, parent, gather_cancel, g, gather_k, (lua_KContext)g);
}

static const luaL_Reg funcs[] = {
    {"run", l_run},
    {"sleep", l_sleep},
    {"create_task", l_create_task},
    {"current_task", l_current_task},
    {"all_tasks", l_all_tasks},
    {"gather", l_gather},
    {NULL, NULL}};

void host_open_task(lua_State *L, lasync_host *h) {
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  lua_getfield(L, -1, "create_task");
  lua_setfield(L, -2, "spawn");
}
