/* The scheduler: the ready queue, the one place that resumes tasks, and the
 * park / wake / cancel protocol every waiting primitive goes through.
 *
 * A loop turn runs the entries that were ready when the turn began (as
 * asyncio's _run_once does): what becomes ready while they run waits for the
 * next turn, so I/O is polled between turns and no task can starve others
 * by yielding in a loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "waitq.h"

/* ---- ready queue ------------------------------------------------------ */

/* uv_idle_start rejects a NULL callback; ours only keeps the poll from
 * blocking while something is ready. */
static void on_idle(uv_idle_t *handle) { (void)handle; }

void host_keep_turning(lasync_host *h) {
  if (!uv_is_active((uv_handle_t *)&h->idle)) uv_idle_start(&h->idle, on_idle);
}

void host_ready_push(lasync_host *h, host_ready *r) {
  if (h->stopped || h->state_closing) return; /* nothing runs any more */
  r->next = NULL;
  *h->ready_tail = r;
  h->ready_tail = &r->next;
  host_keep_turning(h);
}

/* Coalesced entries: posting one that is already queued does nothing;
 * the flag drops just before it runs, so what arrives while it runs is
 * picked up on the next turn. */
static void run_posted(lasync_host *h, host_ready *r) {
  host_posted *p = host_container_of(r, host_posted, ready);
  p->queued = 0;
  p->run(h, p);
}

void host_posted_init(host_posted *p,
                      void (*run)(lasync_host *, host_posted *)) {
  p->ready.next = NULL;
  p->ready.run = run_posted;
  p->run = run;
  p->queued = 0;
}

void host_post(lasync_host *h, host_posted *p) {
  if (p->queued) return;
  p->queued = 1;
  host_ready_push(h, &p->ready);
}

/* What is left of the batch a check callback runs; `ending` is a task
 * whose resume has returned (it ended, or yielded without parking) and
 * that still has to be finished under protection. */
typedef struct batch {
  lasync_host *h;
  host_ready *next;
  host_task *ending;
  int status, nres;
} batch;

static int task_prepare(lasync_host *h, host_task *t);
static inline void task_ready_flags(host_task *t);
static inline int task_resume(lasync_host *h, host_task *t, int *nres);
static void task_after(lasync_host *h, host_task *t, int status, int nres);

/* Runs the rest of a batch inside lua_pcall on the callback thread, so
 * that an error an entry raises while building a value (out of memory: a
 * report, a callback's Handle, a connection's thread) stops that entry only
 * and never unwinds through libuv's frames. */
static int run_batch(lua_State *L) {
  batch *b = lua_touserdata(L, 1);
  lasync_host *h = b->h;
  if (b->ending) {
    host_task *t = b->ending;
    b->ending = NULL;
    task_after(h, t, b->status, b->nres);
  }
  while (b->next && !h->stopped) {
    host_ready *r = b->next;
    b->next = r->next;
    if (r->run != host_task_step) h->step_chain = 0; /* its time is not a task's */
    r->run(h, r);
  }
  return 0;
}

/* ---- waiting for the loop to go quiet ------------------------------------ */

/* Tasks in wait_idle() wake at a check that finds nothing ready after the
 * poll: every other task is blocked.  They wake before a virtual clock
 * would jump (Trio's wait_all_tasks_blocked has priority over autojump). */
static void wake_idle_waiters(lasync_host *h) {
  host_task *t;
  while ((t = waitq_pop(&h->idle_waiters))) host_wake(t, NULL, 0);
}

static int idle_cancel(host_task *t, int woken) {
  (void)woken;
  waitq_remove(t);
  return 0;
}

int host_wait_idle(lua_State *L, host_task *t) {
  waitq_push(&t->h->idle_waiters, t);
  host_keep_turning(t->h);
  return host_park(L, t, idle_cancel, NULL, NULL, 0);
}

/* A task step that only resumes the task until it parks again builds no
 * value outside lua_resume (which protects itself): the hot paths (a lock
 * passed on, a queue item handed over) run it without a lua_pcall.  The
 * first entry that may allocate switches the rest of the batch into
 * run_batch's protection. */
static void on_check(uv_check_t *handle) {
  lasync_host *h = handle->data;
  if (!h->ready_head) wake_idle_waiters(h);
  host_clock_before_batch(h);
  batch b = {h, h->ready_head, NULL, 0, 0};
  if (!b.next) {
    host_clock_after_batch(h);
    return;
  }
  h->ready_head = NULL;
  h->ready_tail = &h->ready_head;
  h->running++;
  h->step_chain = h->step_end = 0; /* the poll ran since */
  while (b.next && !h->stopped) {
    host_ready *r = b.next;
    if (r->run == host_task_step) {
      host_task *t = host_container_of(r, host_task, ready);
      if (!(t->flags & (TF_MUST_CANCEL | TF_NO_STACK))) {
        b.next = r->next;
        t->flags |= TF_STARTED; /* nothing to deliver: only flags change */
        task_ready_flags(t);
        b.status = task_resume(h, t, &b.nres);
        if (b.status == LUA_YIELD && (t->flags & TF_PARKED)) continue;
        b.ending = t;
      }
    }
    lua_State *L = h->cbL;
    int top = lua_gettop(L);
    lua_pushcfunction(L, run_batch);
    lua_pushlightuserdata(L, &b);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      /* no Lua here: building a message could fail the same way */
      const char *msg = lua_tostring(L, -1);
      char text[256];
      snprintf(text, sizeof text, "asyncio: error in the event loop: %s",
               msg ? msg : "(error object is not a string)");
      host_report(h, text);
      b.ending = NULL;
      h->step_end = 0; /* its task_end may not have run */
    }
    lua_settop(L, top);
  }
  h->running--;
  if (!h->ready_head && !h->stopped && host_list_empty(&h->idle_waiters))
    uv_idle_stop(&h->idle);
  host_clock_after_batch(h);
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

/* ---- the one resume site ---------------------------------------------- */

/* Values for a task's thread are built on the callback thread and moved:
 * an error raised on a thread that is not running (out of memory) would
 * escape to whatever protects the main thread, through libuv's frames;
 * raised on cbL, it stays inside the batch's lua_pcall. */
static void give_cancelled(lasync_host *h, host_task *t) {
  lua_State *L = h->cbL;
  host_task_push_cancelled(L, t);
  if (!lua_checkstack(t->co, 1)) luaL_error(L, "not enough memory");
  lua_xmove(L, t->co, 1);
}

/* Before a resume: delivers a pending cancellation (or a wake-up whose
 * values did not fit) as the error the task resumes with.  Returns 0 when
 * the task ended without running (cancelled before it ever ran). */
static int task_prepare(lasync_host *h, host_task *t) {
  lua_State *co = t->co;
  t->flags &= ~TF_QUEUED;
  if (!(t->flags & TF_STARTED)) {
    if (t->flags & TF_MUST_CANCEL) { /* cancelled before it ever ran */
      lua_settop(co, 0);
      give_cancelled(h, t);
      t->outcome = OUTCOME_CANCELLED;
      host_task_finish(h, t);
      return 0;
    }
    t->flags |= TF_STARTED;
  } else if (t->flags & (TF_MUST_CANCEL | TF_NO_STACK)) {
    lua_settop(co, t->base); /* the wake's values, if any, go */
    if (t->flags & TF_MUST_CANCEL) {
      give_cancelled(h, t);
    } else { /* host_wake found no room for the values on co's stack */
      lua_pushliteral(h->cbL, "not enough memory");
      if (!lua_checkstack(co, 1)) lua_error(h->cbL);
      lua_xmove(h->cbL, co, 1);
    }
    t->flags |= TF_THROW;
  }
  task_ready_flags(t);
  return 1;
}

/* The wait is over: the task is neither queued nor parked any more.
 * wait_data stays for park_k (it may be k's ctx), which clears it. */
static inline void task_ready_flags(host_task *t) {
  t->flags &= ~(TF_QUEUED | TF_PARKED | TF_MUST_CANCEL | TF_NO_STACK |
                TF_MSG_FIXED);
  if (t->flags & TF_DEFER_CANCEL) /* the wake's values arrive first */
    t->flags = (unsigned short)((t->flags & ~TF_DEFER_CANCEL) | TF_MUST_CANCEL);
  t->wait_cancel = NULL;
}

/* The one lua_resume; it counts the step's time (stats). */
static inline int task_resume(lasync_host *h, host_task *t, int *nres) {
  lua_State *outer = h->current;
  h->current = t->co;
  uint64_t t0 = h->step_chain ? h->step_chain : uv_hrtime();
  t->steps++;
  t->stats.scheduled += t0 - t->stats.queued;
  if (h->debug) host_debug_step_begin(h->debug, t->co);
  int status = lua_resume(t->co, h->cbL, lua_gettop(t->co) - t->base, nres);
  if (h->debug) host_debug_step_end(h->debug, t->co);
  uint64_t t1 = uv_hrtime();
  t->stats.busy += t1 - t0;
  if (t->flags & TF_WOKE_SELF) {
    t->flags &= ~TF_WOKE_SELF;
    t->stats.queued = t->stats.last_wake = t1;
  }
  if (h->trace) host_trace_step(h, t, t0, t1);
  h->current = outer;
  /* a task that parked is done with; one that did not ends now */
  if (status == LUA_YIELD && (t->flags & TF_PARKED)) {
    h->step_chain = t1;
  } else {
    h->step_chain = 0;
    h->step_end = t1;
  }
  return status;
}

/* After a resume that did not park: the task ended (or yielded straight to
 * the scheduler, which ends it too). */
static void task_after(lasync_host *h, host_task *t, int status, int nres) {
  lua_State *co = t->co;
  if (status == LUA_YIELD) {
    if (t->flags & TF_PARKED) return;
    /* A coroutine.yield() straight from the task: nothing will wake it. */
    host_closethread(co, h->cbL);
    lua_settop(co, 0);
    lua_pushliteral(h->cbL, "coroutine.yield() called directly in a task "
                            "(use asyncio.sleep(0) to yield to the loop)");
    host_task_fail(h, t, h->cbL);
  } else if (status == LUA_OK) {
    int top = lua_gettop(co);
    if (top > nres) {
      lua_rotate(co, 1, nres);
      lua_settop(co, nres);
    }
    host_task_finish(h, t);
  } else {
    host_task_fail(h, t, co);
  }
}

void host_task_step(lasync_host *h, host_ready *r) {
  host_task *t = host_container_of(r, host_task, ready);
  int nres;
  if (!task_prepare(h, t)) return;
  int status = task_resume(h, t, &nres);
  task_after(h, t, status, nres);
}

/* ---- parking and waking ----------------------------------------------- */

/* The primitive's continuation rides in the yield's own context (Lua
 * keeps it in the C frame), its ctx in the task's wait_data when it is
 * the same pointer (most primitives pass their object as both), and only
 * another ctx takes a slot of the parked thread's stack, at t->base.  The
 * wake's values lie above t->base: no API call moves or reads anything on
 * the usual park (it used to push and pop both as light userdata, about
 * 130 instructions a park). */
static int park_k(lua_State *L, int status, lua_KContext kctx) {
  host_task *t = host_task_of(L);
  (void)status;
  if (t->flags & TF_PARKED) {
    /* step() clears TF_PARKED: this resume came from outside the scheduler
     * (C code; the coroutine library refuses task threads).  Stay parked,
     * dropping what it passed. */
    lua_settop(L, t->base);
    return lua_yieldk(L, 0, kctx, park_k);
  }
  void *data = t->wait_data;
  t->wait_data = NULL;
  int base = t->base;
  if (t->flags & TF_THROW) {
    t->flags &= ~TF_THROW;
    return lua_error(L);
  }
  host_k_fn k = (host_k_fn)(uintptr_t)kctx;
  lua_KContext ctx = 0;
  if (t->flags & TF_CTX_DATA) {
    ctx = (lua_KContext)(uintptr_t)data;
  } else if (t->flags & TF_CTX_SLOT) {
    ctx = (lua_KContext)(uintptr_t)lua_touserdata(L, base);
    lua_remove(L, base);
    base--;
  }
  if (k) return k(L, ctx);
  return lua_gettop(L) - base;
}

int host_park(lua_State *L, host_task *t, host_cancel_fn cancel, void *data,
              host_k_fn k, lua_KContext ctx) {
  t->wait_cancel = cancel;
  t->wait_data = data;
  t->flags &= ~(TF_CTX_DATA | TF_CTX_SLOT);
  t->flags |= TF_PARKED;
  if (t->flags & TF_MUST_CANCEL) {
    /* The task asked for its own cancellation before this suspension: it is
     * delivered here, after the primitive undoes what it just set up. */
    int woken = (t->flags & TF_QUEUED) != 0;
    t->flags |= TF_MSG_FIXED;
    if (cancel && cancel(t, woken) && !woken) {
      t->flags &= ~TF_MUST_CANCEL; /* passed on: the awaited thing decides */
    } else {
      t->wait_cancel = NULL;
      if (!woken) {
        t->flags |= TF_QUEUED;
        t->stats.queued = uv_hrtime();
        host_ready_push(t->h, &t->ready);
      }
    }
  }
  if (k && ctx) {
    if (ctx == (lua_KContext)(uintptr_t)data) {
      t->flags |= TF_CTX_DATA;
    } else {
      luaL_checkstack(L, 1, "park");
      lua_pushlightuserdata(L, (void *)(uintptr_t)ctx);
      t->flags |= TF_CTX_SLOT;
    }
  }
  t->base = lua_gettop(L);
  return lua_yieldk(L, 0, (lua_KContext)(uintptr_t)k, park_k);
}

void host_wake(host_task *t, lua_State *from, int n) {
  if (n > 0) {
    if (lua_checkstack(t->co, n)) {
      lua_xmove(from, t->co, n);
    } else { /* the values are lost: the task raises instead (step) */
      lua_pop(from, n);
      n = 0;
      t->flags |= TF_NO_STACK;
    }
  }
  t->flags |= TF_QUEUED;
  t->wakes++;
  /* A task that wakes itself (sleep(0)) is ready when its step ends, which
   * task_resume reads anyway: a clock read less, and the rest of its step
   * is not counted both busy and scheduled. */
  if (t->co == t->h->current)
    t->flags |= TF_WOKE_SELF;
  else
    t->stats.queued = t->stats.last_wake = uv_hrtime();
  if (t->h->trace) host_trace_wake(t->h, t);
  host_ready_push(t->h, &t->ready);
}

void host_wake_error(host_task *t, lua_State *from) {
  host_wake(t, from, 1);
  t->flags |= TF_THROW;
}

int host_task_cancel(host_task *t, lua_State *L, int msgidx) {
  if (t->state == TASK_DONE) return 0;
  if (t->h->trace) host_trace_cancel(t->h, t);
  t->ncancels++;
  if (!(t->flags & TF_MSG_FIXED)) { /* else the first one was delivered */
    if (msgidx && !lua_isnoneornil(L, msgidx))
      lua_pushvalue(L, msgidx);
    else
      lua_pushnil(L);
    host_task_set_rare(L, t, HOST_RARE_MSG);
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
  t->flags |= TF_MSG_FIXED; /* delivered to what it waits on, or queued */
  if (t->wait_cancel) {
    t->flags |= TF_CANCELLING;
    int passed = t->wait_cancel(t, 0);
    t->flags &= ~TF_CANCELLING;
    if (passed) return 1;
  }
  t->wait_cancel = NULL;
  t->flags |= TF_MUST_CANCEL | TF_QUEUED;
  t->stats.queued = uv_hrtime();
  host_ready_push(t->h, &t->ready);
  return 1;
}

/* Where t waits, and where the task it awaits waits, down the chain:
 * "in 'run' at x.lua:1, which waits in 'get' at x.lua:3". */
static void deadlock_where(lasync_host *h, host_task *t) {
  char *buf = h->deadlock_where;
  size_t size = sizeof h->deadlock_where, len;
  host_where_waiting(t->co, buf, size);
  for (int depth = 0; h->awaiting && depth < 8; depth++) {
    host_task *next = h->awaiting(t);
    if (!next || next == t || next->state == TASK_DONE) break;
    t = next;
    len = strlen(buf);
    if (len + 20 >= size) break;
    memcpy(buf + len, ", which waits ", 15);
    host_where_waiting(t->co, buf + len + 14, size - len - 14);
  }
}

/* A uv_run of ours inside host_run_task's (a run or a stop from inside
 * the loop: a C function a task calls, an application's callback) may have
 * seen the awaited task end: task_end's uv_stop went to the inner run, and
 * the outer one, in UV_RUN_DEFAULT, would turn on until the loop went
 * quiet.  Called as the inner one is done with the loop. */
static void restop_outer(lasync_host *h) {
  if (h->run_target && h->run_target->state == TASK_DONE) uv_stop(h->loop);
}

/* uv_run(UV_RUN_DEFAULT) turns the loop until task_end stops it at t's end
 * (h->run_target): returning from uv_run(UV_RUN_ONCE) at every turn cost
 * a second clock update and timer run per turn (one extra turn's worth in
 * a sleep(0) or a lock hand-over).  uv_stop from elsewhere (Ctrl-C) only
 * brings us back here early. */
int host_run_task(lasync_host *h, host_task *t, lua_State *L) {
  int deadlock = 0;
  host_task *outer = h->run_target;
  h->run_target = t;
  while (t->state != TASK_DONE) {
    if (!uv_run(h->loop, UV_RUN_DEFAULT) && t->state != TASK_DONE &&
        !h->ready_head) {
      if (deadlock) break; /* cancelled, and still nothing can move */
      deadlock = 1;
      deadlock_where(h, t);
      host_task_cancel(t, L, 0);
    }
  }
  h->run_target = outer;
  restop_outer(h);
  return deadlock;
}

const char *host_push_deadlock(lua_State *L, lasync_host *h, const char *who) {
  return lua_pushfstring(L, "%s%s (it waits %s)", who,
                         HOST_DEADLOCK(""), h->deadlock_where);
}

void host_drain(lasync_host *h, lua_State *L) {
  if (!h->npending && !(h->stopping && h->ready_head)) return;
  host_debug_report_pending(h, L);
  host_cancel_all(h, L);
  /* when stopping, also until the done callbacks have run */
  for (int turns = 0;
       (h->npending || (h->stopping && h->ready_head)) && turns < 100000;
       turns++) {
    if (!uv_run(h->loop, UV_RUN_ONCE) && !h->ready_head) break;
    if (turns == 1000) host_cancel_all(h, L); /* asked twice, as Ctrl-C */
  }
  restop_outer(h);
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


/* ---- call_soon: the callback record ------------------------------------- */

/* The record is the memory of a Handle userdata; its function and
 * arguments are packed in the userdata's user value, and the registry
 * anchors it until it has run, or been cancelled and left the queue. */
static void callback_release(host_callback *c) {
  if (c->ref != LUA_NOREF) {
    luaL_unref(c->h->cbL, LUA_REGISTRYINDEX, c->ref);
    c->ref = LUA_NOREF;
  }
}

/* Keeps the error and its report: {err, report}. */
static int callback_msgh(lua_State *L) {
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  host_push_report(L, L, 1);
  lua_rawseti(L, -2, 2);
  return 1;
}

/* asyncio's "Exception in callback", through the exception handler; the
 * message handler's {err, report} (or a bare error: out of memory) on top. */
static void callback_failed(lasync_host *h, lua_State *L, host_callback *c) {
  int got = lua_gettop(L);
  if (lua_istable(L, got)) {
    lua_rawgeti(L, got, 1);
    lua_rawgeti(L, got, 2);
  } else {
    lua_pushvalue(L, got);
    lua_pushnil(L);
  }
  host_push_context(L, "Exception in callback", got + 1);
  lua_pushvalue(L, got + 2);
  lua_setfield(L, -2, "traceback");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  lua_setfield(L, -2, "handle");
  host_call_exception_handler(h, L, -1);
}

/* Runs inside the batch's protection (on_check); the callback itself runs
 * under a pcall of its own, whose failure is reported, as asyncio's
 * "Exception in callback". */
static void callback_run(lasync_host *h, host_posted *p) {
  host_callback *c = host_container_of(p, host_callback, post);
  lua_State *L = h->cbL;
  if (!c->cancelled && !c->ran) {
    c->ran = 1;
    int top = lua_gettop(L);
    lua_pushcfunction(L, callback_msgh);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    lua_Integer n = luaL_len(L, -1);
    luaL_checkstack(L, (int)n, "callback arguments");
    for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, top + 2, i);
    lua_remove(L, top + 2);
    lua_State *outer = h->current;
    h->current = L;
    if (h->debug) host_debug_step_begin(h->debug, L);
    int status = lua_pcall(L, (int)n - 1, 0, top + 1);
    if (h->debug) host_debug_step_end(h->debug, L);
    h->current = outer;
    if (status != LUA_OK) callback_failed(h, L, c);
    lua_settop(L, top);
  }
  callback_release(c);
}

static void callback_fire(lasync_host *h, host_timer *tm) {
  host_post(h, &host_container_of(tm, host_callback, timer)->post);
}

host_callback *host_callback_of(host_timer *tm) {
  return tm->fire == callback_fire ? host_container_of(tm, host_callback, timer)
                                   : NULL;
}

host_callback *host_callback_new(lasync_host *h, lua_State *L, int nargs) {
  if (h->stopped) luaL_error(L, "asyncio: the event loop is closed");
  lua_createtable(L, nargs + 1, 0);
  lua_insert(L, -(nargs + 2));
  for (int i = nargs + 1; i >= 1; i--) lua_rawseti(L, -(i + 1), i);
  host_callback *c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->h = h;
  host_timer_init(&c->timer, callback_fire);
  host_posted_init(&c->post, callback_run);
  luaL_setmetatable(L, HOST_HANDLE_MT);
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -1);
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return c;
}

void host_callback_cancel(host_callback *c) {
  if (c->cancelled) return;
  c->cancelled = 1; /* even after it ran: cancelled() is then true (asyncio) */
  if (c->ran) return; /* already released */
  host_timer_stop(c->h, &c->timer);
  if (!c->post.queued) callback_release(c); /* else when the queue gets it */
}

void host_call_soon(lasync_host *h, lua_State *L, int nargs) {
  host_post(h, &host_callback_new(h, L, nargs)->post);
  lua_pop(L, 1);
}

/* Only when the state closes: a Handle is anchored until it is done. */
static int callback_gc(lua_State *L) {
  host_callback *c = lua_touserdata(L, 1);
  host_timer_stop(c->h, &c->timer);
  return 0;
}

void host_callback_type(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", callback_gc}, {NULL, NULL}};
  host_new_type(L, HOST_HANDLE_MT, NULL, meta, 0);
}
