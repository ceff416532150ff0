/* asyncio.sleep and asyncio.time: waiting for a deadline, and the clock
 * deadlines are read on. */
#include "init.h"

static void sleep_fire(lasync_host *h, host_timer *tm) {
  (void)h;
  host_wake(host_container_of(tm, host_task, timer), NULL, 0);
}

static int sleep_cancel(host_task *t, int woken) {
  (void)woken;
  host_timer_stop(t->h, &t->timer);
  return 0;
}

/* Two continuations rather than a lua_settop(L, 2) on the way in and
 * another on the way out (about 70 instructions of every sleep(0)). */
static int sleep_k(lua_State *L, lua_KContext ctx) {
  (void)L;
  (void)ctx;
  return 0;
}

static int sleep_result_k(lua_State *L, lua_KContext ctx) {
  (void)ctx;
  lua_settop(L, 2);
  return 1;
}

/* sleep(delay [, result]): the task's own timer slot is the deadline, so
 * sleeping allocates nothing. */
static int l_sleep(lua_State *L) {
  double sec = host_check_seconds(L, 1, "delay");
  host_task *t = host_check_task(L, "sleep");
  host_k_fn k = lua_type(L, 2) > LUA_TNIL ? sleep_result_k : sleep_k;
  if (sec <= 0) { /* one trip through the loop */
    host_wake(t, NULL, 0);
    return host_park(L, t, NULL, NULL, k, 0);
  }
  host_timer_init(&t->timer, sleep_fire); /* shares memory with await_node */
  if (host_timer_start(t->h, &t->timer, host_deadline(t->h, sec)))
    return luaL_error(L, "asyncio: sleep(): out of memory");
  return host_park(L, t, sleep_cancel, NULL, k, 0);
}

/* The loop clock, in seconds (asyncio.time(), loop:time()): the host's
 * one clock, which asyncio.testing may make virtual. */
static int l_time(lua_State *L) {
  lua_pushnumber(L, (lua_Number)host_now(HOST(L)) / 1e9);
  return 1;
}

void l_open_time(lua_State *L, lasync_host *h) {
  static const luaL_Reg funcs[] = {{"sleep", l_sleep},
                                   {"time", l_time},
                                   {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
