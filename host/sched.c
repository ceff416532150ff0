/* The scheduler: the ready queue, the one place that resumes tasks, and the
 * park / wake / cancel protocol every waiting primitive goes through.
 *
 * A loop turn runs the entries that were ready when the turn began (as
 * asyncio's _run_once does): what becomes ready while they run waits for the
 * next turn, so I/O is polled between turns and no task can starve others
 * by yielding in a loop. */
#include <stdlib.h>
#include <string.h>

#include "host.h"

/* ---- ready queue ------------------------------------------------------ */

/* uv_idle_start rejects a NULL callback; ours only keeps the poll from
 * blocking while something is ready. */
static void on_idle(uv_idle_t *handle) { (void)handle; }

void host_ready_push(lasync_host *h, host_ready *r) {
  if (h->stopped || h->state_closing) return; /* nothing runs any more */
  r->next = NULL;
  *h->ready_tail = r;
  h->ready_tail = &r->next;
  if (!uv_is_active((uv_handle_t *)&h->idle)) uv_idle_start(&h->idle, on_idle);
}

static void on_check(uv_check_t *handle) {
  lasync_host *h = handle->data;
  host_ready *batch = h->ready_head;
  if (!batch) return;
  h->ready_head = NULL;
  h->ready_tail = &h->ready_head;
  h->running++;
  while (batch && !h->stopped) {
    host_ready *r = batch;
    batch = r->next;
    r->run(h, r);
  }
  h->running--;
  if (!h->ready_head && !h->stopped) uv_idle_stop(&h->idle);
  host_stop_if_idle(h);
}

/* A stopping host closes once no task is left and the done callbacks of
 * the cancelled tasks have run (an application may wait on one). */
void host_stop_if_idle(lasync_host *h) {
  if (h->stopping && !h->stopped && !h->npending && !h->ready_head)
    host_finish_stop(h);
}

int host_sched_init(lasync_host *h) {
  int rc;
  h->ready_head = NULL;
  h->ready_tail = &h->ready_head;
  lua_newtable(h->L);
  h->tasks_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
  if ((rc = uv_check_init(h->loop, &h->check))) return rc;
  h->check.data = h;
  h->open_handles++;
  uv_check_start(&h->check, on_check);
  uv_unref((uv_handle_t *)&h->check);
  if ((rc = uv_idle_init(h->loop, &h->idle))) return rc;
  h->idle.data = h;
  h->open_handles++;
  return host_timers_init(h);
}

void host_sched_close(lasync_host *h) {
  uv_close((uv_handle_t *)&h->check, host_handle_closed);
  uv_close((uv_handle_t *)&h->idle, host_handle_closed);
  host_timers_close(h);
  h->ready_head = NULL;
  h->ready_tail = &h->ready_head;
}

/* ---- errors and reports ----------------------------------------------- */

void host_push_report(lua_State *L, lua_State *where, int idx) {
  const char *msg;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
    msg = lua_tostring(L, idx);
  else if (luaL_callmeta(L, idx, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
    msg = lua_tostring(L, -1);
  else
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, idx));
  luaL_traceback(L, where, msg, 1);
}

/* The message keeps its type (cancel(5) gives 5, as asyncio's args do);
 * converting it here would run a __tostring outside any protection. */
static void push_cancelled(lua_State *L, host_task *t) {
  host_error_new(L, "CancelledError", "");
  if (t->cancel_msg_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->cancel_msg_ref);
    lua_setfield(L, -2, "message");
  }
}

/* Message handler of the task body: keeps the error value unchanged and
 * records the report text while the failing frames are still there. */
static int body_msgh(lua_State *L) {
  host_task *t = host_task_of(L);
  if (t && !host_is_cancelled_error(L, 1)) {
    host_push_report(L, L, 1);
    host_task_set_report(L, t);
  }
  lua_settop(L, 1);
  return 1;
}

/* ---- the task body ---------------------------------------------------- */

/* The user function runs under a yieldable pcall inside the task's own
 * thread, so that to-be-closed variables are closed by the unwinding pcall
 * (where __close may suspend) rather than by lua_resetthread (where it may
 * not), and a failure never leaves the thread half-unwound. */
static int body_k(lua_State *L, int status, lua_KContext ctx) {
  host_task *t = host_task_of(L);
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    t->outcome = OUTCOME_OK;
    return lua_gettop(L) - 1; /* all but the message handler */
  }
  t->outcome = host_is_cancelled_error(L, -1) ? OUTCOME_CANCELLED
                                              : OUTCOME_FAILED;
  return 1;
}

static int body(lua_State *L) {
  lua_pushcfunction(L, body_msgh);
  lua_insert(L, 1);
  int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 1, 0, body_k);
  return body_k(L, status, 0);
}

/* ---- finishing -------------------------------------------------------- */

static void finish(lasync_host *h, host_task *t) {
  lua_State *co = t->co;
  if (t->outcome == OUTCOME_OK && (t->flags & TF_MUST_CANCEL)) {
    /* Cancelled after its last suspension: it ends cancelled (asyncio). */
    lua_settop(co, 0);
    push_cancelled(co, t);
    t->outcome = OUTCOME_CANCELLED;
  }
  t->state = TASK_DONE;
  t->flags &= ~(TF_MUST_CANCEL | TF_PARKED | TF_THROW | TF_DEFER_CANCEL);
  t->wait_cancel = NULL;
  h->npending--;
  host_link *link;
  while ((link = host_list_first(&t->awaiters))) {
    host_listener *l = host_container_of(link, host_listener, link);
    host_list_remove(link);
    l->fn(l, t);
  }
  if (t->flags & TF_HAS_CALLBACKS) host_task_schedule_callbacks(h, t);
  host_push_pending(co, h);
  luaL_unref(co, -1, t->ref);
  lua_pop(co, 1);
  t->ref = LUA_NOREF;
  if (t->cancel_msg_ref != LUA_NOREF) {
    luaL_unref(co, LUA_REGISTRYINDEX, t->cancel_msg_ref);
    t->cancel_msg_ref = LUA_NOREF;
  }
  /* a stopping host closes after the done callbacks run (on_check) */
}

/* Ends a task whose thread cannot continue (a bare coroutine.yield, or an
 * error outside the body's pcall) with the error value on top of L. */
static void fail(lasync_host *h, host_task *t, lua_State *L) {
  lua_State *co = t->co;
  if (L != co) lua_xmove(L, co, 1);
  host_push_report(co, co, -1);
  host_task_set_report(co, t);
  lua_rotate(co, 1, 1);
  lua_settop(co, 1);
  t->outcome = host_is_cancelled_error(co, -1) ? OUTCOME_CANCELLED
                                                : OUTCOME_FAILED;
  finish(h, t);
}

/* ---- the one resume site ---------------------------------------------- */

static void step(lasync_host *h, host_ready *r) {
  host_task *t = host_container_of(r, host_task, ready);
  lua_State *co = t->co;
  int nres, status;
  t->flags &= ~TF_QUEUED;
  if (!(t->flags & TF_STARTED)) {
    if (t->flags & TF_MUST_CANCEL) { /* cancelled before it ever ran */
      lua_settop(co, 0);
      push_cancelled(co, t);
      t->outcome = OUTCOME_CANCELLED;
      finish(h, t);
      return;
    }
    t->flags |= TF_STARTED;
  } else if (t->flags & TF_MUST_CANCEL) {
    lua_pop(co, t->nargs);
    push_cancelled(co, t);
    t->nargs = 1;
    t->flags |= TF_THROW;
  }
  t->flags &= ~(TF_PARKED | TF_MUST_CANCEL);
  if (t->flags & TF_DEFER_CANCEL) /* the wake's values arrive first */
    t->flags = (unsigned short)((t->flags & ~TF_DEFER_CANCEL) | TF_MUST_CANCEL);
  t->wait_cancel = NULL;
  t->wait_data = NULL;
  lua_State *outer = h->current;
  h->current = co;
  status = lua_resume(co, h->cbL, t->nargs, &nres);
  h->current = outer;
  t->nargs = 0;
  if (status == LUA_YIELD) {
    if (t->flags & TF_PARKED) return;
    /* A coroutine.yield() straight from the task: nothing will wake it. */
    host_closethread(co, h->cbL);
    lua_settop(co, 0);
    lua_pushliteral(co, "coroutine.yield() called directly in a task "
                        "(use asyncio.sleep(0) to yield to the loop)");
    fail(h, t, co);
  } else if (status == LUA_OK) {
    int top = lua_gettop(co);
    if (top > nres) {
      lua_rotate(co, 1, nres);
      lua_settop(co, nres);
    }
    finish(h, t);
  } else {
    fail(h, t, co);
  }
}

/* ---- creating --------------------------------------------------------- */

host_task *host_task_spawn(lasync_host *h, lua_State *L, int nargs) {
  if (h->stopped) luaL_error(L, "asyncio: the event loop is closed");
  int fn = lua_gettop(L) - nargs;
  lua_State *co = lua_newthread(L);
  host_task *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  t->ready.run = step;
  host_list_init(&t->awaiters);
  host_timer_init(&t->timer, NULL);
  t->h = h;
  t->co = co;
  t->id = (uint32_t)++h->next_task_id;
  t->cancel_msg_ref = LUA_NOREF;
  luaL_setmetatable(L, HOST_TASK_MT);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 1); /* the Task keeps its thread */
  *(host_task **)lua_getextraspace(co) = t;
  lua_rotate(L, fn, 2); /* [thread task fn args...] */
  luaL_checkstack(co, nargs + 2, "task arguments");
  lua_pushcfunction(co, body);
  lua_xmove(L, co, nargs + 1);
  lua_remove(L, -2); /* the thread; the Task stays */
  host_push_pending(L, h);
  lua_pushvalue(L, -2);
  t->ref = luaL_ref(L, -2);
  lua_pop(L, 1);
  t->nargs = nargs + 1;
  h->npending++;
  t->flags |= TF_QUEUED;
  host_ready_push(h, &t->ready);
  return t;
}

void host_push_pending(lua_State *L, lasync_host *h) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->tasks_ref);
}

void host_task_push(lua_State *L, host_task *t) {
  host_push_pending(L, t->h);
  lua_rawgeti(L, -1, t->ref);
  lua_remove(L, -2);
}

/* ---- parking and waking ----------------------------------------------- */

/* The primitive's continuation and its context wait on the parked
 * thread's own stack (slots it has anyway) rather than in every task. */
static int park_k(lua_State *L, int status, lua_KContext base) {
  host_task *t = host_task_of(L);
  int b = (int)base;
  (void)status;
  if (t->flags & TF_PARKED) {
    /* step() clears TF_PARKED: this resume came from coroutine.resume on
     * the task's thread, not from the scheduler.  Stay parked. */
    lua_settop(L, b);
    return lua_yieldk(L, 0, base, park_k);
  }
  if (t->flags & TF_THROW) {
    t->flags &= ~TF_THROW;
    return lua_error(L);
  }
  host_k_fn k = (host_k_fn)(uintptr_t)lua_touserdata(L, b - 1);
  lua_KContext ctx = (lua_KContext)(uintptr_t)lua_touserdata(L, b);
  lua_rotate(L, b - 1, -2);
  lua_pop(L, 2);
  if (k) return k(L, ctx);
  return lua_gettop(L) - (b - 2);
}

int host_park(lua_State *L, host_task *t, host_cancel_fn cancel, void *data,
              host_k_fn k, lua_KContext ctx) {
  t->wait_cancel = cancel;
  t->wait_data = data;
  t->flags |= TF_PARKED;
  if (t->flags & TF_MUST_CANCEL) {
    /* The task asked for its own cancellation before this suspension: it is
     * delivered here, after the primitive undoes what it just set up. */
    int woken = (t->flags & TF_QUEUED) != 0;
    if (cancel && cancel(t, woken) && !woken) {
      t->flags &= ~TF_MUST_CANCEL; /* passed on: the awaited thing decides */
    } else {
      t->wait_cancel = NULL;
      if (!woken) {
        t->flags |= TF_QUEUED;
        host_ready_push(t->h, &t->ready);
      }
    }
  }
  luaL_checkstack(L, 2, "park");
  lua_pushlightuserdata(L, (void *)(uintptr_t)k);
  lua_pushlightuserdata(L, (void *)(uintptr_t)ctx);
  return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), park_k);
}

void host_wake(host_task *t, lua_State *from, int n) {
  if (n > 0) {
    lua_checkstack(t->co, n);
    lua_xmove(from, t->co, n);
  }
  t->nargs = n;
  t->flags |= TF_QUEUED;
  host_ready_push(t->h, &t->ready);
}

void host_wake_error(host_task *t, lua_State *from) {
  host_wake(t, from, 1);
  t->flags |= TF_THROW;
}

int host_task_cancel(host_task *t, lua_State *L, int msgidx) {
  if (t->state == TASK_DONE) return 0;
  t->ncancels++;
  if (msgidx && !lua_isnoneornil(L, msgidx)) {
    lua_pushvalue(L, msgidx);
    if (t->cancel_msg_ref != LUA_NOREF)
      luaL_unref(L, LUA_REGISTRYINDEX, t->cancel_msg_ref);
    t->cancel_msg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (!(t->flags & TF_PARKED)) { /* running, or not started yet */
    t->flags |= TF_MUST_CANCEL;
    return 1;
  }
  if (t->flags & TF_QUEUED) { /* woken, not run yet: undo the wake */
    if (t->wait_cancel) t->wait_cancel(t, 1);
    t->wait_cancel = NULL;
    t->flags &= ~TF_DEFER_CANCEL; /* delivered at once instead */
    t->flags |= TF_MUST_CANCEL;
    return 1;
  }
  /* A hook may cancel what the task awaits; through a cycle of awaits that
   * comes back here, and the task then takes the CancelledError itself. */
  if (t->flags & TF_CANCELLING) return 0;
  if (t->wait_cancel) {
    t->flags |= TF_CANCELLING;
    int passed = t->wait_cancel(t, 0);
    t->flags &= ~TF_CANCELLING;
    if (passed) return 1;
  }
  t->wait_cancel = NULL;
  t->flags |= TF_MUST_CANCEL | TF_QUEUED;
  t->nargs = 0;
  host_ready_push(t->h, &t->ready);
  return 1;
}

int host_run_task(lasync_host *h, host_task *t, lua_State *L) {
  int deadlock = 0;
  while (t->state != TASK_DONE) {
    if (!uv_run(h->loop, UV_RUN_ONCE) && t->state != TASK_DONE &&
        !h->ready_head) {
      if (deadlock) break; /* cancelled, and still nothing can move */
      deadlock = 1;
      host_task_cancel(t, L, 0);
    }
  }
  return deadlock;
}

void host_drain(lasync_host *h, lua_State *L) {
  if (!h->npending && !(h->stopping && h->ready_head)) return;
  host_cancel_all(h, L);
  /* when stopping, also until the done callbacks have run */
  for (int turns = 0;
       (h->npending || (h->stopping && h->ready_head)) && turns < 100000;
       turns++) {
    if (!uv_run(h->loop, UV_RUN_ONCE) && !h->ready_head) break;
    if (turns == 1000) host_cancel_all(h, L); /* asked twice, as Ctrl-C */
  }
}

void host_cancel_all(lasync_host *h, lua_State *L) {
  host_push_pending(L, h);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    host_task *t = luaL_testudata(L, -1, HOST_TASK_MT);
    lua_pop(L, 1);
    if (t) host_task_cancel(t, L, 0);
  }
  lua_pop(L, 1);
}

/* ---- outcomes --------------------------------------------------------- */

int host_task_results(lua_State *L, host_task *t) {
  lua_State *co = t->co;
  int n = lua_gettop(co);
  if (t->outcome != OUTCOME_OK) {
    t->flags |= TF_RETRIEVED;
    lua_pushvalue(co, 1);
    lua_xmove(co, L, 1);
    return lua_error(L);
  }
  luaL_checkstack(L, n, "too many results");
  lua_checkstack(co, n);
  for (int i = 1; i <= n; i++) lua_pushvalue(co, i);
  lua_xmove(co, L, n);
  return n;
}

void host_task_first(lua_State *L, host_task *t, int *failed) {
  lua_State *co = t->co;
  *failed = t->outcome != OUTCOME_OK;
  if (*failed) t->flags |= TF_RETRIEVED;
  if (lua_gettop(co) == 0) {
    lua_pushnil(L);
    return;
  }
  lua_pushvalue(co, 1);
  lua_xmove(co, L, 1);
}

void host_task_listen(host_task *t, host_listener *l,
                      void (*fn)(host_listener *, host_task *)) {
  l->fn = fn;
  host_list_push(&t->awaiters, &l->link);
}

void host_task_unlisten(host_listener *l) { host_list_remove(&l->link); }
