/* C tests of the embedding API (lasync.h): hosts on the application's loop
 * and state, C futures (resolve, reject, cancel, late completion after the
 * host is gone, the wrong thread), two hosts in two threads, the sandbox
 * subset and the reporter.  Prints TAP; exit status 0 when all pass. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lasync.h"

static int failures, count;

#define CHECK(cond, ...)                                  \
  do {                                                    \
    count++;                                              \
    if (cond) {                                           \
      printf("ok %d - ", count);                          \
    } else {                                              \
      failures++;                                         \
      printf("not ok %d - (%s:%d) ", count, __FILE__, __LINE__); \
    }                                                     \
    printf(__VA_ARGS__);                                  \
    printf("\n");                                         \
  } while (0)

/* ---- an application's asynchronous operation ---------------------------- */

/* app.compute(x, ms): resolves with x * 2 after ms milliseconds, from the
 * application's own uv timer. */
typedef struct job {
  uv_timer_t timer;
  lasync_future *future;
  lua_Integer x;
  int cancelled;
  int *cancel_count;
} job;

static void job_closed(uv_handle_t *h) { free(h->data); }

static void job_fire(uv_timer_t *t) {
  job *j = t->data;
  lua_State *S = lasync_future_begin(j->future);
  if (S) {
    if (j->x < 0) {
      lasync_future_reject_msg(j->future, "negative input");
    } else {
      lua_pushinteger(S, j->x * 2);
      lua_pushstring(S, "done");
      lasync_future_resolve(j->future, 2);
    }
  } else {
    lasync_future_release(j->future);
  }
  uv_close((uv_handle_t *)t, job_closed);
}

static void job_abort(lasync_future *f, void *ud) {
  job *j = ud;
  (void)f;
  j->cancelled = 1;
  if (j->cancel_count) (*j->cancel_count)++;
  uv_timer_stop(&j->timer);
  lasync_future_release(j->future);
  uv_close((uv_handle_t *)&j->timer, job_closed);
}

static int cancel_count;

static int l_compute(lua_State *L) {
  lua_Integer x = luaL_checkinteger(L, 1);
  lua_Integer ms = luaL_optinteger(L, 2, 10);
  job *j = calloc(1, sizeof *j);
  j->x = x;
  j->cancel_count = &cancel_count;
  j->future = lasync_future_new(L, job_abort, j);
  uv_timer_init(lasync_loop(lasync_from_state(L)), &j->timer);
  j->timer.data = j;
  uv_timer_start(&j->timer, job_fire, (uint64_t)ms, 0);
  return lasync_await(L, j->future);
}

/* app.now(x): completes before the await. */
static int l_now(lua_State *L) {
  lua_Integer x = luaL_checkinteger(L, 1);
  lasync_future *f = lasync_future_new(L, NULL, NULL);
  lua_State *S = lasync_future_begin(f);
  lua_pushinteger(S, x + 1);
  lasync_future_resolve(f, 1);
  return lasync_await(L, f);
}

static int l_interrupt(lua_State *L);
static int l_sigint_soon(lua_State *L);

static void register_app(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_compute);
  lua_setfield(L, -2, "compute");
  lua_pushcfunction(L, l_interrupt);
  lua_setfield(L, -2, "interrupt");
  lua_pushcfunction(L, l_sigint_soon);
  lua_setfield(L, -2, "sigint_soon");
  lua_pushcfunction(L, l_now);
  lua_setfield(L, -2, "now");
  lua_setglobal(L, "app");
}

static const char *global_string(lua_State *L, const char *name) {
  lua_getglobal(L, name);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

/* ---- tests -------------------------------------------------------------- */

static void test_own_everything(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  CHECK(h != NULL, "host with its own loop and state");
  lua_State *L = lasync_state(h);
  CHECK(lasync_spawn_string(h, "asyncio.sleep(0.01) result = 'slept'", "=t") == 0,
        "spawn_string");
  CHECK(lasync_run_until_done(h) == 0, "run_until_done succeeds");
  CHECK(strcmp(global_string(L, "result"), "slept") == 0, "the chunk ran");
  CHECK(lasync_spawn_string(h, "x = = 1", "=bad") == LASYNC_ERROR,
        "a syntax error is refused");
  CHECK(strstr(lasync_last_error(h), "unexpected symbol") != NULL,
        "last_error has the syntax error: %s", lasync_last_error(h));
  lasync_spawn_string(h, "local function f() error('deep') end f()", "=fail");
  CHECK(lasync_run_until_done(h) == LASYNC_ERROR, "a failing task");
  CHECK(strstr(lasync_last_error(h), "fail:1: deep") &&
            strstr(lasync_last_error(h), "stack traceback"),
        "last_error carries the message and traceback");
  CHECK(lasync_spawn_file(h, "/nonexistent.lua") == LASYNC_ERROR &&
            strstr(lasync_last_error(h), "cannot open"),
        "spawn_file of a missing file");
  lasync_free(h);
}

static void test_futures_on_app_loop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lua_State *L = luaL_newstate();
  lasync_host *h = lasync_new(&loop, L);
  CHECK(h != NULL, "host on the application's loop and state");
  lasync_openlibs(h);
  register_app(L);
  lasync_spawn_string(h,
    "local t0 = asyncio.time()\n"
    "local r = asyncio.gather(function() return app.compute(1, 30) end,\n"
    "  function() return app.compute(2, 30) end,\n"
    "  function() return app.compute(3, 30) end)\n"
    "sum = r[1] + r[2] + r[3]\n"
    "elapsed = asyncio.time() - t0\n"
    "local a, b = app.compute(5, 1) second = b\n"
    "early = app.now(41)\n"
    "local ok, e = pcall(app.compute, -1, 1) rejected = e\n",
    "=futures");
  lua_pop(L, 1);
  /* the host has not run anything: the application drives */
  lua_getglobal(L, "sum");
  CHECK(lua_isnil(L, -1), "nothing runs before the application's uv_run");
  lua_pop(L, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  lua_getglobal(L, "sum");
  CHECK(lua_tointeger(L, -1) == 12, "three futures resolved: sum %d",
        (int)lua_tointeger(L, -1));
  lua_getglobal(L, "elapsed");
  double el = lua_tonumber(L, -1);
  const char *slow = getenv("LASYNC_SLOW"); /* sanitizers, valgrind */
  double bound = 0.08 * (slow ? atof(slow) : 1.0);
  /* 30 ms timers; the loop clock's millisecond rounding may show 29 */
  CHECK(el >= 0.025 && el < bound, "they ran concurrently (%.3f s)", el);
  lua_pop(L, 2);
  CHECK(strcmp(global_string(L, "second"), "done") == 0,
        "several values come back");
  lua_getglobal(L, "early");
  CHECK(lua_tointeger(L, -1) == 42, "a future completed before the await");
  lua_pop(L, 1);
  CHECK(strcmp(global_string(L, "rejected"), "negative input") == 0,
        "a rejection raises in the task");
  lasync_free(h);
  uv_run(&loop, UV_RUN_DEFAULT); /* the host's handles finish closing */
  lua_close(L);
  CHECK(uv_loop_close(&loop) == 0, "the host left no handle on the loop");
}

static void test_cancel_pending_future(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  register_app(L);
  cancel_count = 0;
  lasync_spawn_string(h,
    "local t = asyncio.create_task(app.compute, 7, 10000)\n"
    "asyncio.sleep(0.01)\n"
    "t:cancel()\n"
    "local ok, e = pcall(t.await, t)\n"
    "cancelled = asyncio.is(e, asyncio.CancelledError)\n",
    "=cancel");
  CHECK(lasync_run_until_done(h) == 0, "the script ran");
  lua_getglobal(L, "cancelled");
  CHECK(lua_toboolean(L, -1), "the task got CancelledError");
  lua_pop(L, 1);
  CHECK(cancel_count == 1, "the future's cancel callback ran once");
  lasync_free(h);
}

/* A future left pending when the host is freed; the application completes
 * it later from its own timer. */
static lasync_future *orphan;
static int late_rc = 1;
static int l_hold(lua_State *L) {
  orphan = lasync_future_new(L, NULL, NULL);
  return lasync_await(L, orphan);
}
static void late_fire(uv_timer_t *t) {
  lua_State *S = lasync_future_begin(orphan);
  late_rc = S ? 0 : lasync_future_resolve(orphan, 0);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_resolve_after_stop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lasync_host *h = lasync_new(&loop, NULL);
  lua_State *L = lasync_state(h);
  lua_pushcfunction(L, l_hold);
  lua_setglobal(L, "hold");
  lasync_spawn_string(h, "hold()", "=hold");
  lua_pop(L, 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(orphan != NULL, "the task waits on a future");
  lasync_free(h);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, late_fire, 5, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(late_rc == LASYNC_ECLOSED, "a completion after the host was freed "
        "is refused safely (rc %d)", late_rc);
  CHECK(uv_loop_close(&loop) == 0, "no handle left on the application's loop");
}

/* ---- two hosts in two threads --------------------------------------------- */

typedef struct worker {
  uv_thread_t thread;
  int id;
  lua_Integer result;
  int rc;
} worker;

static void worker_main(void *arg) {
  worker *w = arg;
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  lua_pushinteger(L, w->id);
  lua_setglobal(L, "ID");
  lasync_spawn_string(h,
    "local total = 0\n"
    "local tasks = {}\n"
    "for i = 1, 200 do tasks[i] = asyncio.create_task(function()\n"
    "  asyncio.sleep(0.001 * (i % 5)) return i * ID end) end\n"
    "for _, v in ipairs(asyncio.gather(tasks)) do total = total + v end\n"
    "RESULT = total\n", "=worker");
  w->rc = lasync_run_until_done(h);
  lua_getglobal(L, "RESULT");
  w->result = lua_tointeger(L, -1);
  lua_pop(L, 1);
  lasync_free(h);
}

static void test_two_hosts_two_threads(void) {
  worker w[2] = {{.id = 1}, {.id = 3}};
  for (int i = 0; i < 2; i++) uv_thread_create(&w[i].thread, worker_main, &w[i]);
  for (int i = 0; i < 2; i++) uv_thread_join(&w[i].thread);
  CHECK(w[0].rc == 0 && w[0].result == 20100, "host in thread 1: %lld",
        (long long)w[0].result);
  CHECK(w[1].rc == 0 && w[1].result == 60300, "host in thread 2: %lld",
        (long long)w[1].result);
}

/* ---- completing from the wrong thread ------------------------------------- */

static lasync_future *cross;
static int cross_rc;
static void cross_thread(void *arg) {
  (void)arg;
  cross_rc = lasync_future_resolve(cross, 0);
}
static int l_cross(lua_State *L) {
  cross = lasync_future_new(L, NULL, NULL);
  uv_thread_t th;
  uv_thread_create(&th, cross_thread, NULL);
  uv_thread_join(&th);
  lua_State *S = lasync_future_begin(cross);
  lua_pushliteral(S, "same thread");
  lasync_future_resolve(cross, 1);
  return lasync_await(L, cross);
}

static void test_wrong_thread(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  lua_pushcfunction(L, l_cross);
  lua_setglobal(L, "cross");
  lasync_spawn_string(h, "answer = cross()", "=cross");
  CHECK(lasync_run_until_done(h) == 0, "ran");
  CHECK(cross_rc == LASYNC_ETHREAD, "another thread is refused (%d)", cross_rc);
  CHECK(strcmp(global_string(L, "answer"), "same thread") == 0,
        "the loop's thread completes it");
  lasync_free(h);
}

/* ---- sandbox and reporter --------------------------------------------------- */

static char reported[4096];
static void reporter(void *ud, const char *text) {
  (void)ud;
  snprintf(reported, sizeof reported, "%s", text);
}

static void test_sandbox_and_reporter(void) {
  lua_State *L = luaL_newstate();
  lasync_host *h = lasync_new(NULL, L);
  lasync_openlibs_only(h, LASYNC_LIB_SAFE);
  lasync_set_reporter(h, reporter, NULL);
  lasync_spawn_string(h,
    "have = table.concat({tostring(io), tostring(os), tostring(require),\n"
    "  tostring(dofile), tostring(loadfile), tostring(debug),\n"
    "  tostring(asyncio.http), tostring(asyncio.fs),\n"
    "  tostring(asyncio.start_server), tostring(asyncio.create_subprocess_exec)}, ',')\n"
    "asyncio.sleep(0)\n"
    "has_asyncio = type(asyncio.create_task) == 'function'\n"
    "worker_has = asyncio.to_thread(function() return table.concat({\n"
    "  tostring(io), tostring(os), tostring(require), tostring(dofile),\n"
    "  tostring(debug), tostring(string.rep('a', 2))}, ',') end)\n"
    "asyncio.create_task(function() error('unseen failure') end)\n"
    "asyncio.sleep(0.01)\n", "=sandbox");
  CHECK(lasync_run_until_done(h) == 0, "sandboxed script ran");
  CHECK(strcmp(global_string(L, "have"), "nil,nil,nil,nil,nil,nil,nil,nil,nil,nil") == 0,
        "no io, os, require, dofile, loadfile, debug, http, fs, net, process: %s",
        global_string(L, "have"));
  CHECK(strcmp(global_string(L, "worker_has"), "nil,nil,nil,nil,nil,aa") == 0,
        "a to_thread worker has no more than the sandbox: %s",
        global_string(L, "worker_has"));
  lua_getglobal(L, "has_asyncio");
  CHECK(lua_toboolean(L, -1), "asyncio is there");
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT);
  CHECK(strstr(reported, "Task exception was never retrieved") &&
            strstr(reported, "unseen failure"),
        "the reporter got the unretrieved failure");
  CHECK(lasync_last_error(h) && strstr(lasync_last_error(h), "unseen failure"),
        "and it is the last error");
  lasync_free(h);
  lua_close(L);
}

/* resp:save writes through asyncio.fs: a state given http but not fs
 * cannot write files through it. */
static void test_http_save_needs_fs(void) {
  lua_State *L = luaL_newstate();
  lasync_host *h = lasync_new(NULL, L);
  lasync_openlibs_only(h, LASYNC_LIB_SAFE | LASYNC_LIB_NET | LASYNC_LIB_HTTP);
  lasync_spawn_string(h,
    "local srv <close> = asyncio.start_server(function(r, w)\n"
    "  r:readuntil('\\r\\n\\r\\n')\n"
    "  w:write('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi')\n"
    "  w:drain() w:close() end, '127.0.0.1', 0)\n"
    "local resp = asyncio.http.fetch('http://127.0.0.1:' .. srv.port .. '/',\n"
    "  {stream = true})\n"
    "local ok, err = pcall(resp.save, resp, 'lasync-embed-save.txt')\n"
    "resp:close()\n"
    "saved = tostring(ok) .. ' ' .. tostring(err)\n", "=save");
  CHECK(lasync_run_until_done(h) == 0, "the save script ran");
  const char *saved = global_string(L, "saved");
  CHECK(saved && strstr(saved, "false") && strstr(saved, "needs asyncio.fs"),
        "save() is refused without asyncio.fs: %s", saved ? saved : "(nil)");
  CHECK(access("lasync-embed-save.txt", F_OK) != 0, "no file was written");
  lasync_free(h);
  lua_close(L);
}

static void test_stop_cancels_and_closes(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  lasync_spawn_string(h,
    "local g <close> = setmetatable({}, {__close = function()\n"
    "  asyncio.sleep(0) closed = true end})\n"
    "asyncio.sleep(100)\n", "=stop");
  lua_pop(L, 1);
  uv_run(lasync_loop(h), UV_RUN_NOWAIT);
  lasync_stop(h);
  lua_getglobal(L, "closed");
  CHECK(lua_toboolean(L, -1), "stop cancelled the task and its <close> ran");
  lua_pop(L, 1);
  CHECK(lasync_spawn_string(h, "x = 1", "=after") == LASYNC_ECLOSED,
        "nothing starts on a stopped host");
  lua_getglobal(L, "asyncio");
  lua_getfield(L, -1, "create_task");
  lua_getglobal(L, "print");
  int st = lua_pcall(L, 1, 1, 0);
  CHECK(st != LUA_OK && strstr(lua_tostring(L, -1), "event loop is closed"),
        "asyncio functions raise after stop: %s", lua_tostring(L, -1));
  lua_pop(L, 2);
  lasync_free(h);
}

/* Done callbacks of the tasks lasync_stop cancels still run (an
 * application may wait on one), on the host's loop and on the
 * application's loop alike. */
static const char STOP_CALLBACKS[] =
    "local t = asyncio.create_task(function() asyncio.sleep(100) end)\n"
    "t:add_done_callback(function(d)\n"
    "  seen = (seen or '') .. (d:cancelled() and 'cancelled' or 'other') end)\n"
    "asyncio.sleep(100)\n";

static void test_stop_runs_done_callbacks(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  lasync_spawn_string(h, STOP_CALLBACKS, "=stopcb");
  lua_pop(L, 1);
  uv_run(lasync_loop(h), UV_RUN_NOWAIT);
  uv_run(lasync_loop(h), UV_RUN_NOWAIT);
  lasync_stop(h);
  const char *seen = global_string(L, "seen");
  CHECK(seen && strcmp(seen, "cancelled") == 0,
        "stop (host's loop): the done callback ran once (%s)",
        seen ? seen : "never");
  lasync_free(h);

  uv_loop_t loop;
  uv_loop_init(&loop);
  L = luaL_newstate();
  h = lasync_new(&loop, L);
  lasync_openlibs(h);
  lasync_spawn_string(h, STOP_CALLBACKS, "=stopcb");
  lua_pop(L, 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
  lasync_stop(h);
  uv_run(&loop, UV_RUN_DEFAULT); /* the cancelled tasks unwind here */
  seen = global_string(L, "seen");
  CHECK(seen && strcmp(seen, "cancelled") == 0,
        "stop (application's loop): the done callback ran once (%s)",
        seen ? seen : "never");
  lasync_free(h);
  uv_run(&loop, UV_RUN_DEFAULT);
  lua_close(L);
  CHECK(uv_loop_close(&loop) == 0, "stop: no handle left on the loop");
}

/* ---- found by review: lifetimes at the edges ------------------------------ */

/* A Lua error between lasync_future_new and lasync_await, then the host is
 * freed while the application still holds the future: on_cancel releases
 * it and must be the last thing that touches it. */
static lasync_future *dropped;
static int dropped_cancels;
static void dropped_cancel(lasync_future *f, void *ud) {
  (void)ud;
  dropped_cancels++;
  lasync_future_release(f);
}
static int l_fail_after_new(lua_State *L) {
  dropped = lasync_future_new(L, dropped_cancel, NULL);
  return luaL_error(L, "failed before the await");
}

/* Released before the await: the await must not wait forever. */
static int l_release_then_await(lua_State *L) {
  lasync_future *f = lasync_future_new(L, NULL, NULL);
  lasync_future_release(f);
  return lasync_await(L, f);
}

static void test_future_edges(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  lua_pushcfunction(L, l_fail_after_new);
  lua_setglobal(L, "fail_after_new");
  lua_pushcfunction(L, l_release_then_await);
  lua_setglobal(L, "release_then_await");
  lasync_spawn_string(h,
    "local ok, e = pcall(fail_after_new) first = e\n"
    "collectgarbage() collectgarbage()\n"
    "ok, e = pcall(release_then_await) second = e\n", "=edges");
  CHECK(lasync_run_until_done(h) == 0, "ran");
  CHECK(strstr(global_string(L, "first"), "failed before the await") != NULL,
        "an error between new and await propagates");
  CHECK(strstr(global_string(L, "second"), "released without a result") != NULL,
        "await after release raises instead of hanging");
  lasync_free(h); /* the dropped future: on_cancel releases it */
  CHECK(dropped_cancels == 1, "the host's end cancelled the dropped future");
}

static void test_spawn_never_raises(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  lua_pushinteger(L, 5);
  CHECK(lasync_spawn(h, L, 0) == LASYNC_ERROR && lua_gettop(L) == 0,
        "spawning a non-function is an error code, not a panic");
  lasync_stop(h);
  lua_getglobal(L, "print");
  CHECK(lasync_spawn(h, L, 0) == LASYNC_ECLOSED && lua_gettop(L) == 0,
        "spawning on a stopped host is refused");
  lasync_free(h);
}

/* On the application's loop and state: runs `code` until it sets the
 * global `ready`, then frees the host and closes the state while what the
 * code started is still live; the loop must end with nothing left on it. */
static void teardown_while_live(const char *code, const char *what) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lua_State *L = luaL_newstate();
  lasync_host *h = lasync_new(&loop, L);
  lasync_openlibs(h);
  lasync_spawn_string(h, code, "=live");
  lua_pop(L, 1);
  for (int i = 0; i < 100; i++) {
    uv_run(&loop, UV_RUN_ONCE);
    lua_getglobal(L, "ready");
    int r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (r) break;
  }
  lasync_free(h);
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "%s", what);
}

/* A connection handler blocked in read when the host goes: every handle
 * and record must be released. */
static void test_teardown_with_live_connection(void) {
  teardown_while_live(
    "srv = asyncio.start_server(function(r, w) r:read() end, '127.0.0.1', 0)\n"
    "client_r, client_w = asyncio.open_connection('127.0.0.1', srv.port)\n"
    "asyncio.sleep(0.05) ready = true\n",
    "a live connection's handles are all closed after free + lua_close");
}

/* to_thread's call is still running in libuv's pool when the application
 * frees the host and closes its state: the thread finishes, the late
 * result is dropped, and the pool's record goes with the last call. */
static void test_to_thread_outlives_host(void) {
  teardown_while_live(
    "asyncio.create_task(asyncio.to_thread, function()\n"
    "  local t = os.clock() + 0.3 repeat until os.clock() >= t\n"
    "  return ('x'):rep(1000) end)\n"
    "asyncio.sleep(0.05) ready = true\n",
    "to_thread: nothing left on the loop after the late call returned");
}

/* SIGPIPE: an application's own disposition is kept; over the default, a
 * write to a dead pipe raises BrokenPipeError at drain() instead of
 * killing the application. */
static int app_sigpipes;
static void app_on_sigpipe(int sig) { (void)sig; app_sigpipes++; }

static void test_sigpipe(void) {
  struct sigaction sa, now;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = app_on_sigpipe;
  sigaction(SIGPIPE, &sa, NULL);
  lasync_host *h = lasync_new(NULL, NULL);
  sigaction(SIGPIPE, NULL, &now);
  CHECK(now.sa_handler == app_on_sigpipe,
        "the application's own SIGPIPE handler is kept");
  lasync_free(h);
  signal(SIGPIPE, SIG_DFL);
  h = lasync_new(NULL, NULL);
  sigaction(SIGPIPE, NULL, &now);
  CHECK(now.sa_handler != SIG_DFL && now.sa_handler != app_on_sigpipe,
        "over SIG_DFL the host installs its guard");
  lasync_spawn_string(h,
      "local p = asyncio.create_subprocess_exec('true', {}, {stdin='pipe'})\n"
      "p:wait()\n"
      "local ok, e = pcall(function()\n"
      "  p.stdin:write(string.rep('x', 200000)) p.stdin:drain() end)\n"
      "result = asyncio.is(e, asyncio.BrokenPipeError) and 'broken' or tostring(e)",
      "=pipe");
  CHECK(lasync_run_until_done(h) == 0, "the write to a dead child ran");
  const char *res = global_string(lasync_state(h), "result");
  CHECK(res && strcmp(res, "broken") == 0,
        "drain() raised BrokenPipeError: %s", res ? res : "(nothing)");
  lasync_free(h);
}

/* ---- out of memory in the loop's context -------------------------------- */

/* An application's allocator with a limit it can move. */
typedef struct mem {
  size_t used, limit;
} mem;

static void *limited_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  mem *m = ud;
  size_t old = p ? osize : 0;
  if (nsize == 0) {
    free(p);
    m->used -= old;
    return NULL;
  }
  if (nsize > old && m->used - old + nsize > m->limit) return NULL;
  void *q = realloc(p, nsize);
  if (q) m->used = m->used - old + nsize;
  return q;
}

static char oom_report[1024];
static void oom_reporter(void *ud, const char *text) {
  (void)ud;
  snprintf(oom_report, sizeof oom_report, "%s", text);
}

/* A task resumes and ends while the state has no memory left: building its
 * outcome fails in the scheduler's turn, where an error used to unwind
 * through libuv's frames (a panic: abort).  Now the turn reports it and the
 * host goes on. */
static void test_out_of_memory_in_loop(void) {
  mem m = {0, (size_t)-1};
  lua_State *L = lua_newstate(limited_alloc, &m);
  lasync_host *h = lasync_new(NULL, L);
  lasync_openlibs(h);
  lasync_set_reporter(h, oom_reporter, NULL);
  lasync_spawn_string(h,
      "t = asyncio.create_task(function() asyncio.sleep(0.02) end)\n"
      "t:add_done_callback(function() end)", "=oom");
  for (int i = 0; i < 5; i++) uv_run(lasync_loop(h), UV_RUN_NOWAIT);
  m.limit = 0; /* no block may grow: a collection cannot help */
  uv_run(lasync_loop(h), UV_RUN_DEFAULT);
  m.limit = (size_t)-1;

  CHECK(strstr(oom_report, "not enough memory") != NULL,
        "the failed turn is reported: %s", oom_report);
  CHECK(lasync_spawn_string(h, "after = 'ran'", "=after") == 0 &&
            lasync_run_until_done(h) == 0 &&
            strcmp(global_string(L, "after"), "ran") == 0,
        "the host goes on after it");
  lasync_free(h);
  lua_close(L);
}

/* A C function a task calls runs another task to its end
 * (lasync_run_until_done inside the loop, as a synchronous wrapper would):
 * the outer run must come back once its own task has ended meanwhile,
 * although a sleeping task keeps the loop alive.  The loop turns until
 * the awaited task's end stops it (sched.c): an outer task that ended
 * while the inner run was the target stopped nothing, and the outer run
 * turned until the sleeper woke. */
static lasync_host *nest_host;
static int nest_rc = 1;
static int l_run_nested(lua_State *L) {
  (void)L;
  if (lasync_spawn_string(nest_host, "asyncio.sleep(0.3) inner = 'done'",
                          "=inner") == 0)
    nest_rc = lasync_run_until_done(nest_host);
  return 0;
}

static void test_nested_run_until_done(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  nest_host = h;
  lua_pushcfunction(L, l_run_nested);
  lua_setglobal(L, "run_nested");
  lasync_spawn_string(h,
      "sleeper = asyncio.create_task(function() asyncio.sleep(20) end)\n"
      "asyncio.create_task(run_nested)\n"
      "asyncio.sleep(0.05) outer = 'done'", "=outer");
  uint64_t t0 = uv_hrtime();
  int rc = lasync_run_until_done(h);
  double el = (double)(uv_hrtime() - t0) / 1e9;
  CHECK(rc == 0 && nest_rc == 0, "both runs succeed (%d, %d)", rc, nest_rc);
  CHECK(strcmp(global_string(L, "outer"), "done") == 0 &&
            strcmp(global_string(L, "inner"), "done") == 0,
        "both tasks ran to their end");
  CHECK(el < 10, "the outer run came back when its task ended (%.3f s, "
                 "the sleeper wakes at 20 s)", el);
  lasync_free(h);
}

/* A task spawns a task with many arguments while memory is short: growing
 * the new thread's stack for them fails.  The error must be raised in the
 * spawning task (its pcall catches it), not on the new thread, which has
 * no handler: Lua then throws to the main thread's handler (none here: a
 * panic, abort), past the task's resume and libuv's frames. */
static mem *tight_mem;
static int l_spawn_tight(lua_State *L) {
  lasync_host *h = lasync_from_state(L);
  tight_mem->limit = tight_mem->used + 16384;
  lasync_spawn(h, L, lua_gettop(L) - 1);
  tight_mem->limit = (size_t)-1;
  return 1;
}
static int l_loose(lua_State *L) {
  (void)L;
  tight_mem->limit = (size_t)-1;
  return 0;
}

/* A host on a state whose memory spawn_tight(fn, ...) makes short (16 KiB
 * more than in use) while it spawns; loose() lifts the limit again. */
static lasync_host *tight_host(mem *m) {
  tight_mem = m;
  lua_State *L = lua_newstate(limited_alloc, m);
  lasync_host *h = lasync_new(NULL, L);
  lasync_openlibs(h);
  lua_pushcfunction(L, l_spawn_tight);
  lua_setglobal(L, "spawn_tight");
  lua_pushcfunction(L, l_loose);
  lua_setglobal(L, "loose");
  return h;
}

static void test_spawn_out_of_memory(void) {
  mem m = {0, (size_t)-1};
  lasync_host *h = tight_host(&m);
  lua_State *L = lasync_state(h);
  lasync_spawn_string(h,
      "local args = {} for i = 1, 100000 do args[i] = i end\n"
      "local ok, err = pcall(spawn_tight, select, table.unpack(args))\n"
      "loose()\n"
      "spawned = tostring(ok) .. ' ' .. tostring(err)", "=tight");
  CHECK(lasync_run_until_done(h) == 0, "the spawning task goes on");
  const char *got = global_string(L, "spawned");
  CHECK(got && strstr(got, "false") == got && strstr(got, "task arguments"),
        "its pcall caught the error: %s", got ? got : "(nil)");
  lasync_free(h);
  lua_close(L);
}

/* Tasks spawned with memory short until a spawn fails: wherever it fails,
 * no half-made Task may be left for the collector.  One that failed while
 * it was anchored already had its finalizer, which takes a pending Task
 * for the state closing: from then on no task was ever queued again. */
static void test_spawn_until_out_of_memory(void) {
  mem m = {0, (size_t)-1};
  lasync_host *h = tight_host(&m);
  lua_State *L = lasync_state(h);
  lasync_spawn_string(h,
      "local function idle() asyncio.sleep(100) end\n"
      "local ok, n = true, 0\n"
      "while ok and n < 100000 do ok = pcall(spawn_tight, idle) n = n + 1 end\n"
      "loose()\n"
      "spawns = n\n"
      "collectgarbage() collectgarbage()\n"
      "asyncio.sleep(0.01)\n"
      "after = 'woke'", "=many");
  int rc = lasync_run_until_done(h);
  lua_getglobal(L, "spawns");
  lua_Integer n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  const char *after = global_string(L, "after");
  CHECK(rc == 0 && n > 1 && n < 100000 && after && strcmp(after, "woke") == 0,
        "the host goes on after spawn %d ran out of memory (rc %d, %s)",
        (int)n, rc, after ? after : "(nil)");
  lasync_free(h);
  lua_close(L);
}

/* The application stops the host from a callback of its own on the host's
 * loop (a SIGTERM handler, say) while lasync_run_until_done waits: the
 * stop cancels the task and lets it unwind in turns of its own, and the
 * run must come back then, although the application's handle keeps the
 * loop alive.  The task's end, inside those turns, stopped them rather
 * than the run's uv_run, which turned until the handle closed. */
static int stop_ticks;
static void stop_tick(uv_timer_t *t) {
  if (stop_ticks++ == 0) lasync_stop(t->data);
  if (stop_ticks == 40) uv_timer_stop(t);
}

static void test_stop_from_app_callback(void) {
  lasync_host *h = lasync_new(NULL, NULL);
  uv_timer_t timer;
  uv_timer_init(lasync_loop(h), &timer);
  timer.data = h;
  uv_timer_start(&timer, stop_tick, 20, 50);
  lasync_spawn_string(h, "asyncio.sleep(30)", "=stopped");
  uint64_t t0 = uv_hrtime();
  int rc = lasync_run_until_done(h);
  double el = (double)(uv_hrtime() - t0) / 1e9;
  CHECK(rc == LASYNC_ECANCELLED, "the task was cancelled (%d)", rc);
  CHECK(stop_ticks < 10, "the run came back after the stop (%.3f s, %d "
                         "ticks of the application's timer)", el, stop_ticks);
  uv_close((uv_handle_t *)&timer, NULL);
  lasync_free(h);
}

/* ---- Ctrl-C (lasync_handle_sigint) -------------------------------------- */

static volatile sig_atomic_t app_sigints;
static void app_on_sigint(int sig) { (void)sig; app_sigints++; }

static void free_handle(uv_handle_t *h) { free(h); }

static void raise_sigint_once(uv_timer_t *t) {
  raise(SIGINT);
  uv_close((uv_handle_t *)t, free_handle);
}

/* A SIGINT from the loop 20 ms from now (the timer closes and frees
 * itself). */
static void sigint_later(lasync_host *h) {
  uv_timer_t *timer = malloc(sizeof *timer);
  uv_update_time(lasync_loop(h));
  uv_timer_init(lasync_loop(h), timer);
  uv_timer_start(timer, raise_sigint_once, 20, 0);
}


/* app.interrupt(): a Ctrl-C while Lua code runs (a busy task). */
static int l_interrupt(lua_State *L) {
  (void)L;
  raise(SIGINT);
  return 0;
}

/* app.sigint_soon(): a Ctrl-C from the loop 20 ms after the task got
 * here (so that it has started: under valgrind its first step may come
 * after a timer started before it). */
static int l_sigint_soon(lua_State *L) {
  sigint_later(lasync_from_state(L));
  return 0;
}

static void sigint_handler_is(void (*want)(int), const char *what) {
  struct sigaction now;
  sigaction(SIGINT, NULL, &now);
  CHECK(now.sa_handler == want, "%s", what);
}

/* Runs `code` (which calls app.sigint_soon()) as the main task; returns
 * lasync_run_until_done's code, its time in *el. */
static int run_with_sigint(lasync_host *h, const char *code, double *el) {
  lasync_spawn_string(h, code, "=main");
  uint64_t t0 = uv_hrtime();
  int rc = lasync_run_until_done(h);
  *el = (double)(uv_hrtime() - t0) / 1e9;
  return rc;
}

static const char *CLEANUP =
    "app.sigint_soon() local ok, e = pcall(asyncio.sleep, 30)\n"
    "cleanup = asyncio.is(e, asyncio.CancelledError) and 'cancelled' or tostring(e)\n"
    "error(e, 0)";

static void test_sigint_default_untouched(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = app_on_sigint;
  sigaction(SIGINT, &sa, NULL);
  app_sigints = 0;
  lasync_host *h = lasync_new(NULL, NULL);
  double el;
  register_app(lasync_state(h));
  int rc = run_with_sigint(h, "app.sigint_soon() asyncio.sleep(0.2) result = 'slept'", &el);
  CHECK(rc == 0 && app_sigints == 1,
        "by default Ctrl-C is the application's: the task runs on (%d), its "
        "handler ran %d time(s)", rc, (int)app_sigints);
  CHECK(strcmp(global_string(lasync_state(h), "result"), "slept") == 0,
        "the task finished");
  sigint_handler_is(app_on_sigint, "and its handler stays");
  lasync_free(h);
}

static void test_sigint_opt_in(void) {
  app_sigints = 0;
  lasync_host *h = lasync_new(NULL, NULL);
  lua_State *L = lasync_state(h);
  register_app(L);
  lasync_handle_sigint(h, 1);
  sigint_handler_is(app_on_sigint, "opting in installs nothing until a run");
  double el;
  int rc = run_with_sigint(h, CLEANUP, &el);
  CHECK(rc == LASYNC_EINTERRUPTED, "Ctrl-C ends the run with "
        "LASYNC_EINTERRUPTED (%d) after %.3f s", rc, el);
  CHECK(el < 5, "at once, not after the 30 s sleep (%.3f s)", el);
  const char *c = global_string(L, "cleanup");
  CHECK(c && strcmp(c, "cancelled") == 0,
        "the main task was cancelled and unwound: %s", c ? c : "(nothing)");
  const char *e = lasync_last_error(h);
  CHECK(e && strcmp(e, "interrupted!") == 0, "last error 'interrupted!': %s",
        e ? e : "(none)");
  CHECK(app_sigints == 0, "the application's handler did not get it");
  sigint_handler_is(app_on_sigint, "the application's handler is given back");

  /* a main task that catches the cancellation and returns: a success */
  rc = run_with_sigint(h, "app.sigint_soon() local ok = pcall(asyncio.sleep, 30) caught = not ok",
                       &el);
  CHECK(rc == 0 && lua_getglobal(L, "caught") && lua_toboolean(L, -1),
        "a main task that catches the cancellation succeeds (%d)", rc);
  lua_pop(L, 1);

  /* busy Lua code: the hook raises "interrupted!" at its next instruction */
  lasync_spawn_string(h, "app.interrupt() local n = 0 while true do n = n + 1 end",
                      "=busy");
  rc = lasync_run_until_done(h);
  e = lasync_last_error(h);
  CHECK(rc == LASYNC_EINTERRUPTED && e && strstr(e, "interrupted!"),
        "busy Lua code is interrupted (%d): %s", rc, e ? e : "(none)");
  sigint_handler_is(app_on_sigint, "given back again");

  /* asyncio.run from the host's state, outside any task, takes it too */
  int bad = luaL_dostring(L, "asyncio.run(function() app.sigint_soon() asyncio.sleep(30) end)");
  const char *msg = lua_tostring(L, -1);
  CHECK(bad && msg && strstr(msg, "interrupted!"),
        "asyncio.run raises 'interrupted!': %s", msg ? msg : "(nothing)");
  lua_pop(L, 1);

  /* opting out: the application's again */
  lasync_handle_sigint(h, 0);
  rc = run_with_sigint(h, "app.sigint_soon() asyncio.sleep(0.1) result = 'slept again'", &el);
  CHECK(rc == 0 && app_sigints == 1,
        "after opting out the run ignores Ctrl-C (%d), the application's "
        "handler ran %d time(s)", rc, (int)app_sigints);
  lasync_free(h);
  signal(SIGINT, SIG_DFL);
}

int main(void) {
  test_sigpipe();
  test_own_everything();
  test_futures_on_app_loop();
  test_cancel_pending_future();
  test_resolve_after_stop();
  test_two_hosts_two_threads();
  test_wrong_thread();
  test_sandbox_and_reporter();
  test_http_save_needs_fs();
  test_stop_cancels_and_closes();
  test_stop_runs_done_callbacks();
  test_future_edges();
  test_spawn_never_raises();
  test_teardown_with_live_connection();
  test_to_thread_outlives_host();
  test_out_of_memory_in_loop();
  test_nested_run_until_done();
  test_spawn_out_of_memory();
  test_spawn_until_out_of_memory();
  test_stop_from_app_callback();
  test_sigint_default_untouched();
  test_sigint_opt_in();
  printf("1..%d\n%d passed, %d failed\n", count, count - failures, failures);
  return failures != 0;
}
