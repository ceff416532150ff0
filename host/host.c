/* The host: one lua_State tied to one uv_loop_t.  Creation, the registry
 * link between the two, reporting, and an orderly shutdown.
 *
 * Shutdown has two halves.  lasync_stop cancels the tasks, lets them unwind
 * (when the host may drive the loop), closes what the bindings opened and
 * then the host's own handles.  The struct itself is freed only when the
 * application is done with it (lasync_free), the state is done with it
 * (closed: a finalizer tells), and its last handle has closed; so Lua
 * closures that still point at it, and late future completions, stay safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void set_last_error(lasync_host *h, const char *text) {
  free(h->last_error);
  h->last_error = text ? strdup(text) : NULL;
}

LASYNC_API const char *lasync_last_error(lasync_host *h) {
  return h->last_error;
}

void host_report(lasync_host *h, const char *text) {
  if (!h) {
    fprintf(stderr, "%s\n", text);
    return;
  }
  h->nreports++;
  set_last_error(h, text);
  if (h->report) {
    h->report(h->report_ud, text);
    return;
  }
  fprintf(stderr, "%s\n", text);
  fflush(stderr);
}

/* ---- freeing ------------------------------------------------------------ */

static void maybe_free(lasync_host *h) {
  if (h->in_free) return; /* lasync_free finishes the job itself */
  host_debug_free(h);
  if (h->app_done && h->state_gone && h->open_handles == 0 &&
      !(h->owns_loop && !h->loop_closed)) {
    set_last_error(h, NULL);
    free(h);
  }
}

void host_handle_closed(uv_handle_t *handle) {
  lasync_host *h = handle->data;
  h->open_handles--;
  maybe_free(h);
}

/* ---- bindings' resources ------------------------------------------------ */

void host_closeable_add(lasync_host *h, host_closeable *c) {
  host_list_push(&h->closeables, &c->link);
}

void host_closeable_remove(host_closeable *c) { host_list_remove(&c->link); }

static void close_resources(lasync_host *h) {
  host_link *l;
  while ((l = host_list_first(&h->closeables))) {
    host_list_remove(l);
    host_closeable *c = host_container_of(l, host_closeable, link);
    c->close(c);
  }
}

/* ---- creating ----------------------------------------------------------- */

/* The state tells the host when it closes: from then on no Lua may run,
 * and the struct may go once the application is done with it too. */
static int state_gc(lua_State *L) {
  lasync_host **box = lua_touserdata(L, 1);
  lasync_host *h = *box;
  if (!h) return 0;
  *box = NULL;
  h->state_closing = 1;
  if (!h->stopped) lasync_stop(h);
  h->state_gone = 1;
  h->L = h->cbL = NULL;
  /* finalizers that run after this one must not find a host that may be
   * freed below (bindings look it up and refuse: the loop is closed) */
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, HOST_KEY);
  if (h->owns_loop && h->app_done && !h->loop_closed && !h->in_free) {
    /* asyncio.so in a stock lua5.4: nobody else will close the loop */
    uv_run(h->loop, UV_RUN_DEFAULT);
    uv_loop_close(h->loop);
    h->loop_closed = 1;
  }
  maybe_free(h);
  return 0;
}

/* LASYNC_DEBUG=1 turns debug mode on (as PYTHONASYNCIODEBUG) and
 * LASYNC_INSPECT=1 the inspector, unless the state ignores the environment
 * (lua -E). */
static void debug_from_env(lasync_host *h, lua_State *L) {
  int noenv = lua_getfield(L, LUA_REGISTRYINDEX, "LUA_NOENV") != LUA_TNIL;
  lua_pop(L, 1);
  const char *e = noenv ? NULL : getenv("LASYNC_DEBUG");
  if (e && *e && strcmp(e, "0") != 0) host_debug_set(h, 1, 0);
  e = noenv ? NULL : getenv("LASYNC_TRACE");
  if (e && *e && host_trace_start(h, e))
    host_warn(h, "lasync: LASYNC_TRACE: out of memory");
  e = noenv ? NULL : getenv("LASYNC_INSPECT");
  if (e && *e && strcmp(e, "0") != 0 && host_inspect_start(h))
    host_warn(h, "lasync: LASYNC_INSPECT: cannot listen for lasync ps");
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
  h->libs = LASYNC_LIB_ALL; /* until lasync_openlibs_only narrows it */
  host_list_init(&h->closeables);
  if (!L) {
    L = host_newstate(&h->pool);
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
  host_task_types(L);
  luaL_getmetatable(L, HOST_TASK_MT);
  h->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  host_callback_type(L);
  lasync_host **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = h;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "lasync.state_watch");
  if (h->owns_state && !owns_state) lasync_openlibs(h);
  debug_from_env(h, L);
  return h;

fail_handles:
  /* Handles that did open are closed; their callbacks free nothing. */
  h->stopped = 1;
  if (h->open_handles) {
    host_sched_close(h);
    uv_run(h->loop, UV_RUN_DEFAULT);
  }
fail:
  if (h->owns_state && L && !owns_state) {
    lua_close(L);
    host_pool_free(h->pool);
  }
  if (h->owns_loop) uv_loop_close(&h->own_loop);
  free(h);
  return NULL;
}

LASYNC_API lasync_host *lasync_new(uv_loop_t *loop, lua_State *L) {
  return create(loop, L, 0);
}

lasync_host *host_new_owning(lua_State *L, host_pool *pool) {
  lasync_host *h = create(NULL, L, 1);
  if (h) {
    h->pool = pool;
    lasync_openlibs(h);
  }
  return h;
}

/* asyncio.so in a stock lua5.4: the module makes the host, and the state
 * closing is its end (the application will never call lasync_free). */
lasync_host *host_for_module(lua_State *L) {
  lasync_host *h = host_get(L);
  if (h) return h;
  h = lasync_new(NULL, L);
  if (!h) luaL_error(L, "asyncio: cannot create the event loop (out of memory)");
  h->app_done = 1;
  h->run_sigint = 1; /* lua.c's Ctrl-C cannot reach a waiting loop */
  return h;
}

/* ---- running ------------------------------------------------------------ */

LASYNC_API int lasync_spawn(lasync_host *h, lua_State *L, int nargs) {
  int rc = 0;
  if (h->stopped || h->stopping) {
    rc = LASYNC_ECLOSED;
  } else if (lua_type(L, -(nargs + 1)) != LUA_TFUNCTION) {
    set_last_error(h, "lasync_spawn: a function expected");
    rc = LASYNC_ERROR;
  }
  if (rc) {
    lua_pop(L, nargs + 1);
    return rc;
  }
  host_task_spawn(h, L, nargs);
  return 0;
}

static int spawn_loaded(lasync_host *h, int status) {
  if (status != LUA_OK) {
    set_last_error(h, lua_tostring(h->L, -1));
    lua_pop(h->L, 1);
    return LASYNC_ERROR;
  }
  host_task_spawn(h, h->L, 0);
  return 0;
}

LASYNC_API int lasync_spawn_string(lasync_host *h, const char *code,
                                   const char *chunkname) {
  if (h->stopped) return LASYNC_ECLOSED;
  return spawn_loaded(h, luaL_loadbuffer(h->L, code, strlen(code),
                                         chunkname ? chunkname : code));
}

LASYNC_API int lasync_spawn_file(lasync_host *h, const char *path) {
  if (h->stopped) return LASYNC_ECLOSED;
  return spawn_loaded(h, luaL_loadfile(h->L, path));
}

LASYNC_API int lasync_run(lasync_host *h) {
  if (h->stopped) return LASYNC_ECLOSED;
  unsigned long before = h->nreports;
  uv_run(h->loop, UV_RUN_DEFAULT);
  return h->nreports != before ? LASYNC_ERROR : 0;
}

LASYNC_API int lasync_run_until_done(lasync_host *h) {
  lua_State *L = h->L;
  host_task *t = host_test_task_arg(L, -1);
  if (!t) {
    set_last_error(h, "lasync_run_until_done: no Task on top of the stack");
    return LASYNC_ERROR;
  }
  if (h->stopped) {
    lua_pop(L, 1);
    return LASYNC_ECLOSED;
  }
  /* the outermost run takes Ctrl-C if the application asked */
  host_sigint *sig = h->run_target ? NULL : host_sigint_start(h, t);
  int deadlock = host_run_task(h, t, h->cbL);
  int interrupted = host_sigint_stop(sig);
  int rc = 0;
  if (interrupted == 2 ||
      (interrupted == 1 && t->outcome == OUTCOME_CANCELLED)) {
    t->flags |= TF_RETRIEVED;
    set_last_error(h, "interrupted!");
    rc = LASYNC_EINTERRUPTED;
  } else if (t->outcome == OUTCOME_FAILED) {
    t->flags |= TF_RETRIEVED;
    host_task_push_report(L, -1);
    set_last_error(h, lua_tostring(L, -1));
    lua_pop(L, 1);
    /* 3: busy Lua code in the main task got "interrupted!" (the report
     * says where) */
    rc = interrupted == 3 ? LASYNC_EINTERRUPTED : LASYNC_ERROR;
  } else if (t->outcome == OUTCOME_CANCELLED) {
    rc = LASYNC_ECANCELLED;
  }
  if (deadlock) {
    set_last_error(h, host_push_deadlock(L, h, "the task"));
    lua_pop(L, 1);
    rc = LASYNC_ERROR;
  }
  lua_pop(L, 1);
  return rc;
}

LASYNC_API void lasync_handle_sigint(lasync_host *h, int on) {
  h->run_sigint = on != 0;
}

/* ---- stopping and freeing ----------------------------------------------- */

/* Closes the host's own handles once no task is left to run (called again
 * from the scheduler when the last cancelled task ends). */
void host_finish_stop(lasync_host *h) {
  if (h->stopped || h->npending) return;
  h->stopped = 1;
  host_trace_finish(h);
  host_inspect_stop(h);
  host_debug_free(h);
  close_resources(h);
  host_sched_close(h);
}

LASYNC_API void lasync_stop(lasync_host *h) {
  if (h->stopping) {
    if (h->state_closing && !h->stopped) { /* no Lua may run any more */
      h->npending = 0;
      host_finish_stop(h);
    }
    return;
  }
  h->stopping = 1;
  if (!h->state_closing) {
    lua_State *L = h->cbL;
    if (h->owns_loop && !h->running)
      host_drain(h, L); /* cancelled tasks unwind; their <close> runs */
    else
      host_cancel_all(h, L); /* they unwind in the application's uv_run */
    host_debug_report_open(h);
    close_resources(h);
  }
  if (h->state_closing || (h->owns_loop && !h->running)) {
    h->npending = 0;
    host_finish_stop(h);
  } else {
    host_stop_if_idle(h); /* else the scheduler does, when they are done */
  }
}

LASYNC_API void lasync_free(lasync_host *h) {
  if (!h || h->app_done) return;
  lasync_stop(h);
  h->app_done = 1;
  h->in_free = 1;
  if (h->owns_state && !h->state_gone) {
    lua_State *L = h->L;
    lua_close(L); /* state_gc runs: the state is gone */
    host_pool_free(h->pool);
    h->pool = NULL;
  }
  if (h->owns_loop && !h->loop_closed) {
    uv_run(h->loop, UV_RUN_DEFAULT); /* the close callbacks */
    uv_loop_close(h->loop);
    h->loop_closed = 1;
  }
  h->in_free = 0;
  maybe_free(h);
}
