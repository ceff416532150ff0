/* An application that embeds lasync.
 *
 * It has its own libuv loop and its own asynchronous work (a "sensor" read
 * that completes on a uv timer), and exposes that work to Lua as the
 * suspending function sensors.read(name, ms).  The script gathers several
 * reads concurrently; the application, not lasync, runs the loop.
 *
 *   sensors [script.lua]     (default: the demo next to this file) */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lasync.h"

typedef struct reading {
  uv_timer_t timer;
  lasync_future *future;
  char name[32];
} reading;

static void reading_closed(uv_handle_t *h) { free(h->data); }

/* The application's work completes: hand the value to the waiting task. */
static void reading_ready(uv_timer_t *t) {
  reading *r = t->data;
  lua_State *S = lasync_future_begin(r->future);
  if (S) {
    lua_pushnumber(S, 20.0 + (double)(uv_now(t->loop) % 100) / 10.0);
    lua_pushstring(S, r->name);
    lasync_future_resolve(r->future, 2);
  } else { /* nobody waits any more */
    lasync_future_release(r->future);
  }
  uv_close((uv_handle_t *)t, reading_closed);
}

/* The task was cancelled: stop the work and let go of the future. */
static void reading_abort(lasync_future *f, void *ud) {
  reading *r = ud;
  uv_timer_stop(&r->timer);
  lasync_future_release(f);
  uv_close((uv_handle_t *)&r->timer, reading_closed);
}

/* sensors.read(name, ms) -> value, name   (suspends the calling task) */
static int sensors_read(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_Integer ms = luaL_optinteger(L, 2, 100);
  luaL_argcheck(L, ms >= 0, 2, "delay must be >= 0");
  reading *r = calloc(1, sizeof *r);
  if (!r) return luaL_error(L, "sensors.read: out of memory");
  snprintf(r->name, sizeof r->name, "%s", name);
  r->future = lasync_future_new(L, reading_abort, r);
  uv_timer_init(lasync_loop(lasync_from_state(L)), &r->timer);
  r->timer.data = r;
  uv_timer_start(&r->timer, reading_ready, (uint64_t)ms, 0);
  return lasync_await(L, r->future);
}

static void report(void *ud, const char *text) {
  (void)ud;
  fprintf(stderr, "[sensors] %s\n", text);
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : SENSORS_DEMO;
  uv_loop_t loop;
  uv_loop_init(&loop);

  /* The application's loop; lasync makes the Lua state. */
  lasync_host *h = lasync_new(&loop, NULL);
  if (!h) return 1;
  lasync_set_reporter(h, report, NULL);
  lua_State *L = lasync_state(h);
  static const luaL_Reg funcs[] = {{"read", sensors_read}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setglobal(L, "sensors");

  if (lasync_spawn_file(h, script) != 0) {
    fprintf(stderr, "sensors: %s\n", lasync_last_error(h));
    lasync_free(h);
    uv_loop_close(&loop);
    return 1;
  }
  lua_pop(L, 1); /* the Task */

  uv_run(&loop, UV_RUN_DEFAULT); /* the application drives */

  int rc = lasync_last_error(h) ? 1 : 0;
  lasync_free(h);
  uv_run(&loop, UV_RUN_DEFAULT); /* the host's handles finish closing */
  uv_loop_close(&loop);
  return rc;
}
