/* Ctrl-C during asyncio.run in a stock lua5.4 (asyncio.so's own host).
 *
 * lua.c's SIGINT handler sets a hook on the main Lua thread; while the
 * loop waits (epoll) no Lua code runs, so the hook never fires, and while
 * a task runs the hook is on the wrong thread (hooks are per coroutine).
 * For the outermost asyncio.run we therefore do what Python's does: a
 * SIGINT cancels the main task (its cleanup runs) and asyncio.run raises
 * "interrupted!", lua.c's message.
 *
 * A uv_signal_t wakes the loop; our sigaction handler sits in front of
 * libuv's so that it can also do lua.c's part for busy Lua code: the hook
 * goes on the thread that runs Lua for us now (h->current), as the lasync
 * binary does, and SIGINT goes back to SIG_DFL so that a second Ctrl-C
 * kills the process, as in lua.c.  lua.c's disposition is restored when
 * the run ends (libuv leaves SIG_DFL when its last SIGINT handle stops).
 * While the program has its own asyncio.add_signal_handler("SIGINT"),
 * Ctrl-C is that handler's alone (Python's add_signal_handler replaces
 * asyncio.run's handler too).
 *
 * An embedding application opts in with lasync_handle_sigint (off by
 * default: lasync.h promises no signal handler unasked); then
 * lasync_run_until_done's outermost run takes Ctrl-C the same way and
 * returns LASYNC_EINTERRUPTED (host.c). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "host.h"

struct host_sigint {
  uv_signal_t handle;          /* freed with the struct in its close cb */
  lasync_host *h;
  host_task *main;
  struct sigaction saved;      /* lua.c's, put back at the end */
  void (*uv_handler)(int);     /* libuv's, which ours calls */
  /* set by the handler, taken by whichever comes first: the hook (Lua code
   * was running) or the uv callback (the loop was waiting) */
  volatile sig_atomic_t pending;
  lua_State *hit;              /* where the hook raised "interrupted!" */
  int interrupted;             /* the uv callback cancelled: 1 the main
                                  task, 2 the rest after it had ended; 3
                                  the hook raised in the main task */
};

/* One run at a time owns SIGINT, process-wide (a signal handler has no
 * other way to find it); `claimed` settles a race between two states'
 * runs on two threads. */
static host_sigint *volatile active;
static int claimed;

static void lstop(lua_State *L, lua_Debug *ar) {
  host_sigint *s = active;
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (!s || !s->pending) return; /* the loop took this Ctrl-C already */
  s->pending = 0;
  s->hit = L;
  host_task *t = host_task_of(L);
  /* another task (or a callback) was running: the Ctrl-C is reported
   * once, by asyncio.run, not again as that task's unretrieved error */
  if (L == s->main->co) s->interrupted = 3;
  else if (t) t->flags |= TF_RETRIEVED;
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  host_sigint *s = active;
  int saved = errno;
  if (s && s->h->sigint_handlers) { /* the application's, as in Python */
    s->uv_handler(sig);
  } else if (s) {
    struct sigaction dfl;
    dfl.sa_handler = SIG_DFL; /* a second Ctrl-C kills, as lua.c's */
    dfl.sa_flags = 0;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGINT, &dfl, NULL);
    s->pending = 1;
    lua_State *L = s->h->current;
    if (L)
      lua_sethook(L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE |
                                LUA_MASKCOUNT, 1);
    s->uv_handler(sig);
  }
  errno = saved;
}

/* In the loop: unless the hook gave the main task its "interrupted!",
 * the main task is cancelled (every task, if it had ended: the run is
 * cleaning up). */
static void on_signal(uv_signal_t *handle, int signum) {
  host_sigint *s = handle->data;
  int took = s->pending;
  lua_State *hit = s->hit;
  (void)signum;
  s->pending = 0;
  s->hit = NULL;
  if (s->h->sigint_handlers) return; /* add_signal_handler's turn */
  /* (hit is only compared: that coroutine may be gone by now) */
  if (!took && hit == s->main->co) return; /* asyncio.run raises it */
  if (s->main->state != TASK_DONE) {
    s->interrupted = 1;
    host_task_cancel(s->main, s->h->cbL, 0);
  } else {
    s->interrupted = 2;
    host_cancel_all(s->h, s->h->cbL);
  }
}

static void closed(uv_handle_t *handle) {
  host_sigint *s = handle->data;
  uv_handle_t owner; /* host_handle_closed reads only .data: the host */
  owner.data = s->h;
  free(s);
  host_handle_closed(&owner);
}

host_sigint *host_sigint_start(lasync_host *h, host_task *main) {
  if (!h->run_sigint || __atomic_exchange_n(&claimed, 1, __ATOMIC_ACQ_REL))
    return NULL;
  host_sigint *s = calloc(1, sizeof *s);
  if (!s || sigaction(SIGINT, NULL, &s->saved) != 0 ||
      s->saved.sa_handler == SIG_IGN) { /* started in the background */
    free(s);
    __atomic_store_n(&claimed, 0, __ATOMIC_RELEASE);
    return NULL;
  }
  s->h = h;
  s->main = main;
  s->handle.data = s;
  uv_signal_init(h->loop, &s->handle);
  h->open_handles++;
  struct sigaction uv;
  if (uv_signal_start(&s->handle, on_signal, SIGINT) != 0 ||
      sigaction(SIGINT, NULL, &uv) != 0 || (uv.sa_flags & SA_SIGINFO) ||
      uv.sa_handler == SIG_DFL || uv.sa_handler == SIG_IGN) {
    uv_close((uv_handle_t *)&s->handle, closed);
    sigaction(SIGINT, &s->saved, NULL);
    __atomic_store_n(&claimed, 0, __ATOMIC_RELEASE);
    return NULL;
  }
  uv_unref((uv_handle_t *)&s->handle); /* a deadlock is still one */
  s->uv_handler = uv.sa_handler;
  uv.sa_handler = on_sigint;
  active = s;
  sigaction(SIGINT, &uv, NULL);
  return s;
}

int host_sigint_stop(host_sigint *s) {
  if (!s) return 0;
  int interrupted = s->interrupted;
  uv_signal_stop(&s->handle);
  struct sigaction now;
  if (sigaction(SIGINT, NULL, &now) == 0 && now.sa_handler == on_sigint) {
    /* another SIGINT handle keeps libuv's handler: leave it libuv's */
    now.sa_handler = s->uv_handler;
    sigaction(SIGINT, &now, NULL);
  } else {
    sigaction(SIGINT, &s->saved, NULL);
  }
  active = NULL;
  __atomic_store_n(&claimed, 0, __ATOMIC_RELEASE);
  uv_close((uv_handle_t *)&s->handle, closed);
  return interrupted;
}
