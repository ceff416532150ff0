/* asyncio.to_thread(fn, ...): runs a Lua function in a worker Lua state on
 * libuv's thread pool (uv_queue_work) while the loop goes on.
 *
 * The function and its arguments are copied into bytes on the loop's
 * thread (copy.c), the worker decodes them into its own state, runs the
 * call and encodes the results (or the error) the same way; the loop's
 * thread turns those bytes back into values.  So no Lua state is ever
 * touched by two threads.  The awaiting task waits on a C future (the one
 * future core): cancelling it gets CancelledError at once, while the
 * thread finishes its call and the result is dropped.
 *
 * Worker states are kept in a per-host pool, a record over handle.h's
 * lifetime: its "handle" is the work in flight, so a pool whose host stops
 * while calls run is freed by the last one to come back. */
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "../host/future.h"
#include "copy.h"
#include "init.h"

#define POOL_MT "asyncio.ThreadPool"
#define POOL_IDLE_MAX 8                        /* idle worker states kept */
#define DEFAULT_LIMIT ((size_t)64 * 1024 * 1024) /* bytes copied each way */

typedef struct pool {
  host_handle hd;              /* lifetime: handle.h */
  lua_State *idle[POOL_IDLE_MAX];
  int nidle;
  int busy;                    /* calls in flight */
  size_t limit;
} pool;

typedef struct job {
  uv_work_t req;
  pool *p;
  lasync_future *future;       /* NULL once nobody waits */
  lua_State *W;                /* the worker state (NULL: make one) */
  host_buf in, out;            /* encoded call; encoded results or error */
  char *path, *cpath;          /* the caller's package.path and cpath */
  size_t limit;
  unsigned libs;               /* the host's standard libraries */
  int failed;                  /* out holds the error value */
  const char *fatal;           /* the worker could not even start */
} job;

/* ---- the pool --------------------------------------------------------- */

static void close_idle(pool *p) {
  while (p->nidle > 0) lua_close(p->idle[--p->nidle]);
}

/* Runs no Lua of the host (it closes worker states only). */
static int pool_close(host_handle *hd, lua_State *L) {
  pool *p = host_container_of(hd, pool, hd);
  (void)L;
  close_idle(p);
  if (p->busy == 0) host_handle_after_close(hd); /* nothing in flight */
  return 1;
}

static void pool_free(host_handle *hd) {
  free(host_container_of(hd, pool, hd));
}

static const host_handle_type POOL_TYPE = {POOL_MT, "thread pool", pool_close,
                                           pool_free};

static pool *check_pool(lua_State *L) {
  if (HOST(L)->stopped) luaL_error(L, "asyncio: the event loop is closed");
  host_handle *hd = host_handle_check(L, lua_upvalueindex(2), &POOL_TYPE,
                                      "to_thread", 1);
  return host_container_of(hd, pool, hd);
}

/* The call is back: its worker state returns to the pool (or is closed
 * when the pool is full or closed). */
static void pool_put(pool *p, lua_State *W) {
  if (W && !p->hd.closing && p->nidle < POOL_IDLE_MAX) {
    p->idle[p->nidle++] = W;
  } else if (W) {
    lua_close(W);
  }
  p->busy--;
  if (p->hd.closing && !p->hd.closed && p->busy == 0)
    host_handle_after_close(&p->hd);
  host_handle_drop(&p->hd); /* the call's hold; may free p */
}

/* ---- in the worker thread -------------------------------------------- */

/* require "asyncio" in a worker: asyncio lives on the loop's thread. */
static int no_asyncio(lua_State *L) {
  return luaL_error(L, "asyncio is not available inside to_thread (the "
                       "worker runs outside the event loop; return values "
                       "to the task instead)");
}

static int open_worker(lua_State *W) {
  l_open_std(W, (unsigned)lua_tointeger(W, 1));
  luaL_getsubtable(W, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(W, no_asyncio);
  lua_setfield(W, -2, "asyncio");
  return 0;
}

/* A worker state with the standard libraries the host's state has (a
 * sandbox's calls get no io or os it does not have). */
static lua_State *new_worker(unsigned libs) {
  lua_State *W = luaL_newstate();
  if (!W) return NULL;
  lua_pushcfunction(W, open_worker);
  lua_pushinteger(W, (lua_Integer)libs);
  if (lua_pcall(W, 1, 0, 0) != LUA_OK) {
    lua_close(W);
    return NULL;
  }
  return W;
}

/* Message handler: a string error gets the worker's traceback. */
static int worker_msgh(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING)
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

static void set_paths(lua_State *W, job *j) {
  if (lua_getglobal(W, "package") == LUA_TTABLE) {
    if (j->path) lua_pushstring(W, j->path), lua_setfield(W, -2, "path");
    if (j->cpath) lua_pushstring(W, j->cpath), lua_setfield(W, -2, "cpath");
  }
  lua_pop(W, 1);
}

/* Stack: [msgh, results...] or [msgh, error]: into j->out. */
static void encode_outcome(lua_State *W, job *j) {
  int nres = lua_gettop(W) - 1;
  if (j->failed && lua_type(W, -1) != LUA_TSTRING) {
    /* a copyable error object (a table) travels as it is */
    if (copy_encode(W, 1, &j->out, j->limit, "error", 1) == 0) return;
    lua_pop(W, 1); /* the encoder's message */
    lua_pushfstring(W, "(error object is a %s value)", luaL_typename(W, -1));
    lua_remove(W, -2);
  }
  if (!j->failed && copy_encode(W, nres, &j->out, j->limit, "result", 1)) {
    j->failed = 1; /* the encoder's message names the result */
    lua_pushfstring(W, "to_thread: %s", lua_tostring(W, -1));
  }
  if (j->failed && copy_encode(W, 1, &j->out, (size_t)-1, "error", 1))
    j->fatal = "to_thread: out of memory";
}

static void work_cb(uv_work_t *req) {
  job *j = req->data;
  if (!j->W && !(j->W = new_worker(j->libs))) {
    j->fatal = "to_thread: cannot make a worker state (out of memory)";
    return;
  }
  lua_State *W = j->W;
  lua_settop(W, 0);
  set_paths(W, j);
  lua_pushcfunction(W, worker_msgh);
  int n = copy_decode(W, j->in.p, j->in.len);
  host_buf_free(&j->in);
  if (n < 0) {
    j->failed = 1;
  } else if (lua_pcall(W, n - 1, LUA_MULTRET, 1) != LUA_OK) {
    j->failed = 1;
  }
  encode_outcome(W, j);
  lua_settop(W, 0);
  lua_gc(W, LUA_GCCOLLECT); /* here, not on the loop's thread */
}

/* ---- back on the loop's thread ---------------------------------------- */

static void job_free(job *j) {
  if (!j) return;
  host_buf_free(&j->in);
  host_buf_free(&j->out);
  free(j->path);
  free(j->cpath);
  free(j);
}

static void deliver(job *j) {
  lasync_future *f = j->future;
  lua_State *S = lasync_future_begin(f);
  if (!S) {
    lasync_future_release(f);
    return;
  }
  if (j->fatal) {
    lasync_future_reject_msg(f, j->fatal);
    return;
  }
  int n = copy_decode(S, j->out.p, j->out.len);
  if (n < 0 || j->failed)
    lasync_future_reject(f); /* the decoding's error, or the worker's */
  else
    lasync_future_resolve(f, n);
}

static void after_work(uv_work_t *req, int status) {
  job *j = req->data;
  if (j->future) {
    if (status == UV_ECANCELED) lasync_future_release(j->future);
    else deliver(j);
  }
  pool_put(j->p, j->W);
  job_free(j);
}

/* The awaiting task was cancelled (or the host stops): nobody waits any
 * more.  A call not yet started is taken off the queue; a running one
 * finishes in its thread, and after_work drops its results. */
static void job_cancel(lasync_future *f, void *ud) {
  job *j = ud;
  j->future = NULL;
  lasync_future_release(f);
  uv_cancel((uv_req_t *)&j->req);
}

static char *package_string(lua_State *L, const char *field) {
  char *s = NULL;
  int top = lua_gettop(L);
  if (lua_getglobal(L, "package") == LUA_TTABLE &&
      lua_getfield(L, -1, field) == LUA_TSTRING)
    s = strdup(lua_tostring(L, -1));
  lua_settop(L, top);
  return s;
}

/* Fails a call that could not start: the future (made first, so that
 * nothing after it raises while the job is unowned) and the job go. */
static int start_failed(lua_State *L, lasync_future *f, job *j) {
  lasync_future_release(f);
  job_free(j);
  return lua_error(L);
}

static int l_to_thread(lua_State *L) {
  pool *p = check_pool(L);
  lasync_host *h = HOST(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L);
  host_check_task(L, "to_thread");
  luaL_checkstack(L, nargs + 1, "to_thread arguments");
  lasync_future *f = lasync_future_new(L, NULL, NULL); /* pushed: not copied */
  job *j = calloc(1, sizeof *j);
  if (!j) {
    lua_pushliteral(L, "to_thread: out of memory");
    return start_failed(L, f, NULL);
  }
  j->limit = p->limit;
  j->libs = h->libs;
  for (int i = 1; i <= nargs; i++) lua_pushvalue(L, i); /* above the box */
  if (copy_encode(L, nargs, &j->in, p->limit, "argument", 1)) {
    lua_pushfstring(L, "to_thread: %s", lua_tostring(L, -1));
    return start_failed(L, f, j);
  }
  lua_pop(L, nargs);
  j->path = package_string(L, "path");
  j->cpath = package_string(L, "cpath");
  j->req.data = j;
  j->p = p;
  j->future = f;
  f->on_cancel = job_cancel;
  f->ud = j;
  if (p->nidle > 0) j->W = p->idle[--p->nidle]; /* before the thread runs */
  int rc = uv_queue_work(h->loop, &j->req, work_cb, after_work);
  if (rc) {
    if (j->W) p->idle[p->nidle++] = j->W;
    f->on_cancel = NULL;
    host_push_oserror(L, rc, "to_thread", NULL);
    return start_failed(L, f, j);
  }
  p->busy++;
  host_handle_hold(&p->hd);
  return lasync_await(L, f);
}

/* asyncio.to_thread_limit([bytes]): the cap on the bytes copied each way
 * (arguments, results); returns the cap in force before the call. */
static int l_to_thread_limit(lua_State *L) {
  pool *p = check_pool(L);
  lua_Integer old = (lua_Integer)p->limit;
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n > 0, 1, "a positive number of bytes expected");
    p->limit = (size_t)n;
  }
  lua_pushinteger(L, old);
  return 1;
}

void l_open_thread(lua_State *L, lasync_host *h) {
  static const luaL_Reg meta[] = {{"__gc", host_handle_gc}, {NULL, NULL}};
  host_new_type(L, POOL_MT, NULL, meta, 0);
  host_handle_register(L, &POOL_TYPE);
  pool *p = calloc(1, sizeof *p);
  if (!p) luaL_error(L, "asyncio: out of memory");
  p->limit = DEFAULT_LIMIT;
  host_handle_init(&p->hd, &POOL_TYPE, h);
  lua_pushlightuserdata(L, h);
  host_handle_push(L, &p->hd, 0); /* upvalue 2 of both functions */
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_to_thread, 2);
  lua_setfield(L, -4, "to_thread");
  lua_pushcclosure(L, l_to_thread_limit, 2);
  lua_setfield(L, -2, "to_thread_limit");
}
