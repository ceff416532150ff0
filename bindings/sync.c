/* asyncio.Lock, Semaphore, BoundedSemaphore and Event.
 *
 * Lock and the semaphores are one counter of permits (a Lock has one) with
 * a FIFO of parked tasks.  release() hands its permit straight to the first
 * waiter (the counter does not move), so a newcomer can never overtake a
 * waiter.  A waiter cancelled after it was handed the permit passes it on
 * from its cancel hook.  acquire() returns the object itself, whose __close
 * releases it: `local g <close> = lock:acquire()`. */
#include <string.h>

#include "waitq.h"

#define LOCK_MT "asyncio.Lock"
#define SEM_MT "asyncio.Semaphore"
#define EVENT_MT "asyncio.Event"

enum { K_LOCK, K_SEM, K_BOUNDED };

typedef struct sem {
  lua_Integer value; /* free permits */
  lua_Integer bound; /* BoundedSemaphore: the initial value */
  host_link waiters;
  int kind;
} sem;

/* Lock and semaphore methods have both metatables as upvalues 1 and 2:
 * comparing them is cheaper than luaL_checkudata's lookup by name, and
 * acquire/release are W4's hot path. */
static sem *check_sem(lua_State *L) {
  if (lua_getmetatable(L, 1)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1)) ||
             lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
    if (ok) return lua_touserdata(L, 1);
  }
  luaL_typeerror(L, 1, "asyncio.Lock or asyncio.Semaphore");
  return NULL;
}

/* Gives one released permit to the first waiter, or back to the counter. */
static void sem_hand_on(sem *s) {
  host_task *t = waitq_pop(&s->waiters);
  if (t)
    host_wake(t, NULL, 0);
  else
    s->value++;
}

static int sem_cancel(host_task *t, int woken) {
  sem *s = t->wait_data;
  if (woken)
    sem_hand_on(s); /* it was given a permit it will never use */
  else
    waitq_remove(t);
  return 0;
}

static int sem_acquire_k(lua_State *L, lua_KContext ctx) {
  (void)ctx;
  lua_settop(L, 1);
  return 1;
}

static int sem_acquire(lua_State *L) {
  sem *s = check_sem(L);
  lua_settop(L, 1);
  if (s->value > 0 && host_list_empty(&s->waiters)) {
    s->value--;
    return 1;
  }
  host_task *t = host_check_task(L, "acquire");
  waitq_push(&s->waiters, t);
  return host_park(L, t, sem_cancel, s, sem_acquire_k, 0);
}

static int sem_release(lua_State *L) {
  sem *s = check_sem(L);
  if (s->kind == K_LOCK && s->value > 0)
    return host_error_raise(L, "RuntimeError", "Lock is not acquired");
  if (s->kind == K_BOUNDED && s->value >= s->bound)
    return host_error_raise(L, "ValueError",
                            "BoundedSemaphore released too many times");
  sem_hand_on(s);
  return 0;
}

static int sem_locked(lua_State *L) {
  sem *s = check_sem(L);
  lua_pushboolean(L, s->value == 0 || !host_list_empty(&s->waiters));
  return 1;
}

static int sem_tostring(lua_State *L) {
  sem *s = check_sem(L);
  int waiters = 0;
  for (host_link *l = s->waiters.next; l != &s->waiters; l = l->next)
    waiters++;
  if (s->kind == K_LOCK)
    lua_pushfstring(L, "<Lock %s waiters=%d>",
                    s->value ? "unlocked" : "locked", waiters);
  else
    lua_pushfstring(L, "<%s value=%I waiters=%d>",
                    s->kind == K_BOUNDED ? "BoundedSemaphore" : "Semaphore",
                    s->value, waiters);
  return 1;
}

static sem *new_sem(lua_State *L, int kind, lua_Integer value,
                    const char *mt) {
  sem *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->value = s->bound = value;
  host_list_init(&s->waiters);
  luaL_setmetatable(L, mt);
  return s;
}

static int l_lock(lua_State *L) {
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

/* Fills the metatable `name` (created if needed) with the methods and
 * metamethods, each given the nup values on the stack (popped). */
static void new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                     lua_CFunction tostring, lua_CFunction close, int nup) {
  luaL_getmetatable(L, name);
  lua_newtable(L);
  for (int i = 0; i < nup; i++) lua_pushvalue(L, -2 - nup);
  luaL_setfuncs(L, methods, nup);
  lua_setfield(L, -2, "__index");
  for (int i = 0; i < nup; i++) lua_pushvalue(L, -1 - nup);
  lua_pushcclosure(L, tostring, nup);
  lua_setfield(L, -2, "__tostring");
  if (close) {
    for (int i = 0; i < nup; i++) lua_pushvalue(L, -1 - nup);
    lua_pushcclosure(L, close, nup);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1 + nup);
}

void host_open_sync(lua_State *L, lasync_host *h) {
  luaL_newmetatable(L, LOCK_MT);
  luaL_newmetatable(L, SEM_MT);
  luaL_newmetatable(L, EVENT_MT);
  lua_pop(L, 3);
  for (int i = 0; i < 2; i++) {
    luaL_getmetatable(L, LOCK_MT);
    luaL_getmetatable(L, SEM_MT);
    new_type(L, i ? SEM_MT : LOCK_MT, sem_methods, sem_tostring, sem_release,
             2);
  }
  new_type(L, EVENT_MT, event_methods, event_tostring, NULL, 0);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
