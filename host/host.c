/* The host: one lua_State tied to one uv_loop_t.  Creation, the registry
 * link between the two, reporting, and an orderly shutdown (tasks first,
 * then Lua objects, then the handles they closed, then the loop). */
#include <stdio.h>
#include <stdlib.h>

#include <lualib.h>

#include "host.h"

static const char HOST_KEY[] = "lasync.host";

lasync_host *host_get(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, HOST_KEY);
  lasync_host *h = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return h;
}

LASYNC_API lasync_host *lasync_from_state(lua_State *L) { return host_get(L); }
LASYNC_API lua_State *lasync_state(lasync_host *h) { return h->L; }
LASYNC_API uv_loop_t *lasync_loop(lasync_host *h) { return h->loop; }

LASYNC_API void lasync_set_reporter(lasync_host *h, lasync_report_fn fn,
                                    void *ud) {
  h->report = fn;
  h->report_ud = ud;
}

void host_report(lasync_host *h, const char *text) {
  if (h && h->report) {
    h->report(h->report_ud, text);
    return;
  }
  fprintf(stderr, "%s\n", text);
  fflush(stderr);
}

static void maybe_free(lasync_host *h) {
  if (h->open_handles == 0 && h->closing == 2) free(h);
}

void host_handle_closed(uv_handle_t *handle) {
  lasync_host *h = handle->data;
  h->open_handles--;
  maybe_free(h);
}

static void preload(lua_State *L, const char *name, lua_CFunction open) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

LASYNC_API void lasync_openlibs(lasync_host *h) {
  luaL_openlibs(h->L);
  preload(h->L, "asyncio", luaopen_asyncio);
  preload(h->L, "asyncio.fs", luaopen_asyncio_fs);
}

static lasync_host *create(uv_loop_t *loop, lua_State *L, int owns_state) {
  lasync_host *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  if (!loop) {
    if (uv_loop_init(&h->own_loop)) {
      free(h);
      return NULL;
    }
    loop = &h->own_loop;
    h->owns_loop = 1;
  }
  h->loop = loop;
  h->owns_state = owns_state;
  if (!L) {
    L = luaL_newstate();
    if (!L) goto fail;
    h->owns_state = 1;
  } else if (host_get(L)) {
    goto fail; /* one host per state */
  }
  h->L = L;
  /* lua_newstate leaves the main thread's extra space uninitialised and
   * every new thread copies it: zero it so that a plain coroutine is never
   * mistaken for a task. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  *(host_task **)lua_getextraspace(lua_tothread(L, -1)) = NULL;
  lua_pop(L, 1);
  if (host_sched_init(h)) goto fail_handles;
  lua_pushlightuserdata(L, h);
  lua_setfield(L, LUA_REGISTRYINDEX, HOST_KEY);
  h->cbL = lua_newthread(L);
  h->cbL_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  host_task_types(L, h);
  if (h->owns_state && !owns_state) lasync_openlibs(h);
  return h;

fail_handles:
  /* Handles that did open are closed; their callbacks free nothing. */
  h->closing = 1;
  if (h->open_handles) {
    host_sched_close(h);
    uv_run(h->loop, UV_RUN_DEFAULT);
  }
fail:
  if (h->owns_state && L && !owns_state) lua_close(L);
  if (h->owns_loop) uv_loop_close(&h->own_loop);
  free(h);
  return NULL;
}

LASYNC_API lasync_host *lasync_new(uv_loop_t *loop, lua_State *L) {
  return create(loop, L, 0);
}

lasync_host *host_new_owning(lua_State *L) {
  lasync_host *h = create(NULL, L, 1);
  if (h) lasync_openlibs(h);
  return h;
}

LASYNC_API int lasync_spawn(lasync_host *h, lua_State *L, int nargs) {
  luaL_checktype(L, -(nargs + 1), LUA_TFUNCTION);
  host_task_spawn(h, L, nargs);
  return 1;
}

LASYNC_API int lasync_run(lasync_host *h) {
  return uv_run(h->loop, UV_RUN_DEFAULT);
}

int host_run_once(lasync_host *h) { return uv_run(h->loop, UV_RUN_ONCE); }

int host_run_until(lasync_host *h, const int *flag) {
  while (!*flag) {
    int alive = uv_run(h->loop, UV_RUN_ONCE);
    if (!*flag && !alive && !h->ready_head) return -1;
  }
  return 0;
}

/* Cancels what is still pending and lets it unwind, a bounded number of
 * turns (a task may refuse to die; the rest of shutdown still happens). */
static void drain_tasks(lasync_host *h) {
  if (!h->npending || h->running) return;
  host_cancel_all(h, h->cbL);
  for (int turns = 0; h->npending && turns < 10000; turns++) {
    if (!uv_run(h->loop, UV_RUN_ONCE) && !h->ready_head) break;
    if (turns == 1000) host_cancel_all(h, h->cbL);
  }
}

/* Shutdown: tasks, then (for an owned state) every Lua object with its
 * handles, then our own handles, then the loop.  h itself is freed once
 * its last handle's close callback has run. */
static void host_close(lasync_host *h) {
  if (h->closing) return;
  h->closing = 1;
  if (h->owns_loop) drain_tasks(h);
  if (h->owns_state) {
    lua_close(h->L);
    h->L = h->cbL = NULL;
  } else {
    lua_pushnil(h->L);
    lua_setfield(h->L, LUA_REGISTRYINDEX, HOST_KEY);
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->cbL_ref);
  }
  host_sched_close(h);
  if (h->owns_loop) {
    uv_run(h->loop, UV_RUN_DEFAULT);
    uv_loop_close(h->loop);
  }
  h->closing = 2;
}

LASYNC_API void lasync_free(lasync_host *h) {
  if (!h) return;
  int owned = h->owns_loop;
  host_close(h);
  if (owned)
    free(h); /* every close callback has run inside host_close */
  else
    maybe_free(h);
}

/* When a stock lua5.4 loads asyncio.so, the module owns the host: this
 * finalizer runs at lua_close, after every Task and handle object made
 * later has been finalized (Lua finalizes in reverse order). */
static int module_host_gc(lua_State *L) {
  lasync_host **box = lua_touserdata(L, 1);
  if (*box) {
    lasync_host *h = *box;
    *box = NULL;
    h->owns_state = 0;
    lasync_free(h);
  }
  return 0;
}

lasync_host *host_for_module(lua_State *L) {
  lasync_host *h = host_get(L);
  if (h) return h;
  h = lasync_new(NULL, L);
  if (!h) luaL_error(L, "asyncio: cannot create the event loop (out of memory)");
  lasync_host **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = h;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, module_host_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "lasync.module_host");
  return h;
}
