/* asyncio.Lock, Semaphore, BoundedSemaphore and Event.
 *
 * Lock and the semaphores are one counter of permits (a Lock has one) with
 * a FIFO of parked tasks and a count of waiters that were woken but have not
 * run yet, which keep their place as in asyncio 3.13's _waiters deque:
 *
 * - Semaphore: release() gives the permit to the first waiter at once (the
 *   counter does not move), so a woken waiter holds its permit and locked()
 *   stays true until it has run; newcomers queue behind woken waiters.
 * - Lock: release() unlocks (locked() is false) and wakes the first waiter,
 *   which locks when it runs; until then newcomers queue behind it, so
 *   fairness comes from the queue, not from handing ownership over.
 *
 * A waiter cancelled after it was woken gives its turn to the next one from
 * its cancel hook, which runs when the cancelled task resumes (TF_UNDO_LATE):
 * asyncio's waiter does that in its except clause, so the next one runs a
 * loop turn after the cancelled one, not in the same turn.  acquire() returns the object itself, whose __close
 * releases it: `local g <close> = lock:acquire()`. */
#include <string.h>

#include "../host/tag.h"
#include "../host/waitq.h"
#include "init.h"

#define LOCK_MT "asyncio.Lock"
#define SEM_MT "asyncio.Semaphore"
#define EVENT_MT "asyncio.Event"

enum { K_LOCK, K_SEM, K_BOUNDED };

typedef struct sem {
  const char *tag;    /* &SEM_TAG: see check_sem */
  lua_Integer value;  /* free permits (Lock: 1 unlocked, 0 locked) */
  lua_Integer bound;  /* BoundedSemaphore: the initial value */
  lua_Integer nwoken; /* woken waiters that have not run yet */
  lua_Integer nstale; /* Lock: cancelled first waiters not run yet */
  host_link waiters;
  int kind;
} sem;

/* Locks and semaphores (one record, told apart by kind) start with the
 * address of SEM_TAG (host/tag.h): two API calls, where comparing the
 * metatable with those of both types cost four and a lua_rawequal of 75 Ir
 * each; acquire and release are W4's hot path. */
static const char SEM_TAG = 'S';

static sem *check_sem(lua_State *L) {
  sem *s = host_tagged(L, 1, sizeof *s, &SEM_TAG);
  if (!s) luaL_typeerror(L, 1, "asyncio.Lock or asyncio.Semaphore");
  return s;
}

/* Can acquire() succeed without waiting?  Not while anyone queues, woken
 * or not (FIFO). */
static int sem_free(const sem *s) {
  return s->value > 0 && s->nwoken == 0 && host_list_empty(&s->waiters);
}

/* Wakes the first parked waiter; returns 0 if there is none.  A semaphore
 * waiter takes its permit now; a lock waiter locks when it runs. */
static int sem_wake_next(sem *s) {
  host_task *t = waitq_pop(&s->waiters);
  if (!t) return 0;
  if (s->kind != K_LOCK) s->value--;
  s->nwoken++;
  host_wake(t, NULL, 0);
  return 1;
}

/* Wakes as many waiters as there are free permits (a Lock: the first one,
 * unless one is already woken). */
static void sem_wake_all_free(sem *s) {
  if (s->kind == K_LOCK) {
    if (s->value > 0 && s->nwoken == 0 && s->nstale == 0) sem_wake_next(s);
    return;
  }
  while (s->value > 0 && sem_wake_next(s)) {
  }
}

/* A Lock's first waiter cancelled before it was woken: asyncio leaves its
 * future first in the queue until the task runs, and release() in the
 * meantime wakes nobody (it looks at the first future only); the task
 * wakes the next one when it runs.  Called then (TF_UNDO_LATE). */
static int sem_stale_done(host_task *t, int woken) {
  sem *s = t->wait_data;
  (void)woken;
  s->nstale--;
  sem_wake_all_free(s);
  return 0;
}

static int sem_cancel(host_task *t, int woken) {
  sem *s = t->wait_data;
  if (woken) {
    s->nwoken--;
    if (s->kind != K_LOCK) s->value++; /* the permit it will never use */
  } else {
    int first = s->waiters.next == &t->qlink;
    waitq_remove(t);
    if (s->kind == K_LOCK && first && (t->flags & TF_UNDO_LATE)) {
      s->nstale++; /* it runs sem_stale_done when it resumes */
      t->wait_cancel = sem_stale_done;
      return 0;
    }
    t->flags &= ~TF_UNDO_LATE;
  }
  sem_wake_all_free(s);
  return 0;
}

/* A woken waiter runs: a Lock locks now; a semaphore already holds its
 * permit, and wakes those that queued behind it while permits are free. */
static int sem_acquire_k(lua_State *L, lua_KContext ctx) {
  sem *s = (sem *)ctx;
  s->nwoken--;
  if (s->kind == K_LOCK)
    s->value = 0;
  else
    sem_wake_all_free(s);
  lua_settop(L, 1);
  return 1;
}

static int sem_acquire(lua_State *L) {
  sem *s = check_sem(L);
  lua_settop(L, 1);
  if (sem_free(s)) {
    s->value--;
    return 1;
  }
  host_task *t = host_check_task(L, "acquire");
  waitq_push(&s->waiters, t);
  t->flags |= TF_UNDO_LATE; /* sem_cancel(woken) when it runs, as asyncio */
  return host_park(L, t, sem_cancel, s, sem_acquire_k, (lua_KContext)s);
}

static int sem_release(lua_State *L) {
  sem *s = check_sem(L);
  switch (s->kind) {
  case K_LOCK:
    if (s->value > 0)
      return host_error_raise(L, "RuntimeError", "Lock is not acquired");
    break;
  case K_BOUNDED:
    if (s->value >= s->bound)
      return host_error_raise(L, "ValueError",
                              "BoundedSemaphore released too many times");
    break;
  default:
    break;
  }
  /* permits held by woken waiters count too: a cancelled one gives its
   * permit back, so the counter must leave room for them */
  if (s->kind != K_LOCK && s->value >= LUA_MAXINTEGER - s->nwoken)
    return host_error_raise(L, "ValueError",
                            "Semaphore released too many times (the "
                            "counter would exceed math.maxinteger)");
  s->value++;
  /* one waiter per release, as asyncio; a woken semaphore waiter wakes
   * more when it runs if permits are still free */
  if (s->kind != K_LOCK || (s->nwoken == 0 && s->nstale == 0))
    sem_wake_next(s);
  return 0;
}

/* Lock: is it locked?  Semaphore: would acquire() wait? */
static int sem_locked(lua_State *L) {
  sem *s = check_sem(L);
  lua_pushboolean(L, s->kind == K_LOCK ? s->value == 0 : !sem_free(s));
  return 1;
}

static int sem_tostring(lua_State *L) {
  sem *s = check_sem(L);
  lua_Integer waiters = s->nwoken + s->nstale; /* asyncio counts them */
  for (host_link *l = s->waiters.next; l != &s->waiters; l = l->next)
    waiters++;
  if (s->kind == K_LOCK)
    lua_pushfstring(L, "<Lock %s waiters=%I>",
                    s->value ? "unlocked" : "locked", waiters);
  else
    lua_pushfstring(L, "<%s value=%I waiters=%I>",
                    s->kind == K_BOUNDED ? "BoundedSemaphore" : "Semaphore",
                    s->value, waiters);
  return 1;
}

static sem *new_sem(lua_State *L, int kind, lua_Integer value,
                    const char *mt) {
  sem *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->tag = &SEM_TAG;
  s->kind = kind;
  s->value = s->bound = value;
  host_list_init(&s->waiters);
  luaL_setmetatable(L, mt);
  return s;
}

/* Lock() and Event() take nothing; asyncio refuses loop= and the like, so
 * a stray argument is an error rather than silently ignored. */
static void check_no_args(lua_State *L) {
  if (lua_gettop(L) > 0) luaL_argerror(L, 1, "no arguments expected");
}

static int l_lock(lua_State *L) {
  check_no_args(L);
  new_sem(L, K_LOCK, 1, LOCK_MT);
  return 1;
}

static int make_semaphore(lua_State *L, int kind) {
  lua_Integer v = luaL_optinteger(L, 1, 1);
  luaL_argcheck(L, v >= 0, 1, "initial value must be >= 0");
  new_sem(L, kind, v, SEM_MT);
  return 1;
}

static int l_semaphore(lua_State *L) { return make_semaphore(L, K_SEM); }
static int l_bounded(lua_State *L) { return make_semaphore(L, K_BOUNDED); }

/* ---- Event ------------------------------------------------------------ */

typedef struct event {
  host_link waiters;
  int set;
} event;

static event *check_event(lua_State *L) {
  return luaL_checkudata(L, 1, EVENT_MT);
}

static int event_cancel(host_task *t, int woken) {
  if (!woken) waitq_remove(t);
  return 0;
}

static int event_wait_k(lua_State *L, lua_KContext ctx) {
  (void)ctx;
  lua_pushboolean(L, 1);
  return 1;
}

static int event_wait(lua_State *L) {
  event *e = check_event(L);
  if (e->set) return event_wait_k(L, 0);
  host_task *t = host_check_task(L, "wait");
  lua_settop(L, 1);
  waitq_push(&e->waiters, t);
  return host_park(L, t, event_cancel, e, event_wait_k, 0);
}

static int event_set(lua_State *L) {
  event *e = check_event(L);
  host_task *t;
  e->set = 1;
  while ((t = waitq_pop(&e->waiters))) host_wake(t, NULL, 0);
  return 0;
}

static int event_clear(lua_State *L) {
  check_event(L)->set = 0;
  return 0;
}

static int event_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L)->set);
  return 1;
}

static int event_tostring(lua_State *L) {
  lua_pushfstring(L, "<Event %s>", check_event(L)->set ? "set" : "unset");
  return 1;
}

static int l_event(lua_State *L) {
  check_no_args(L);
  event *e = lua_newuserdatauv(L, sizeof *e, 0);
  host_list_init(&e->waiters);
  e->set = 0;
  luaL_setmetatable(L, EVENT_MT);
  return 1;
}

/* ---- registration ----------------------------------------------------- */

static const luaL_Reg sem_methods[] = {{"acquire", sem_acquire},
                                       {"release", sem_release},
                                       {"locked", sem_locked},
                                       {NULL, NULL}};

static const luaL_Reg event_methods[] = {{"wait", event_wait},
                                         {"set", event_set},
                                         {"clear", event_clear},
                                         {"is_set", event_is_set},
                                         {NULL, NULL}};

static const luaL_Reg funcs[] = {{"Lock", l_lock},
                                 {"Semaphore", l_semaphore},
                                 {"BoundedSemaphore", l_bounded},
                                 {"Event", l_event},
                                 {NULL, NULL}};

void l_open_sync(lua_State *L, lasync_host *h) {
  static const luaL_Reg sem_meta[] = {{"__tostring", sem_tostring},
                                      {"__close", sem_release},
                                      {NULL, NULL}};
  static const luaL_Reg event_meta[] = {{"__tostring", event_tostring},
                                        {NULL, NULL}};
  host_new_type(L, LOCK_MT, sem_methods, sem_meta, 0);
  host_new_type(L, SEM_MT, sem_methods, sem_meta, 0);
  host_new_type(L, EVENT_MT, event_methods, event_meta, 0);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
