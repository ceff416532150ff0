/* Per-task statistics (tokio-console's): task:stats(). */
#include "diag.h"

static void set_seconds(lua_State *L, const char *k, uint64_t ns) {
  lua_pushnumber(L, (double)ns / 1e9);
  lua_setfield(L, -2, k);
}

/* task:stats() -> {created, created_at, steps, wakes, busy, scheduled,
 * idle, last_wake, ended}: times in asyncio.time()'s clock, durations in
 * seconds. */
static int task_stats(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  const host_task_stats *s = &t->stats;
  int done = t->state == TASK_DONE; /* then s->ended is set (a union) */
  uint64_t end = done ? s->ended : uv_hrtime();
  uint64_t life = end - s->created, used = s->busy + s->scheduled;
  lua_createtable(L, 0, 9);
  set_seconds(L, "created", s->created);
  host_push_created(L, t);
  lua_setfield(L, -2, "created_at");
  lua_pushinteger(L, t->steps);
  lua_setfield(L, -2, "steps");
  lua_pushinteger(L, t->wakes);
  lua_setfield(L, -2, "wakes");
  set_seconds(L, "busy", s->busy);
  set_seconds(L, "scheduled", s->scheduled);
  set_seconds(L, "idle", life > used ? life - used : 0);
  if (s->last_wake) set_seconds(L, "last_wake", s->last_wake);
  if (done) set_seconds(L, "ended", s->ended);
  return 1;
}

const luaL_Reg diag_stats_methods[] = {{"stats", task_stats}, {NULL, NULL}};
