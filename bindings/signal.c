/* add_signal_handler / remove_signal_handler over uv_signal_t.
 *
 * One record per caught signal, malloc'd and freed in its close callback.
 * The libuv callback only counts the delivery and queues the record on
 * the ready queue; on the scheduler's turn the Lua handler is handed to
 * call_soon.  Signal handles are unref'd: they never keep the loop alive. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "handle.h"

#define SIGNAL_MT "asyncio.SignalHandler"
#define SIGNALS_KEY "lasync.signals"

static const struct {
  const char *name;
  int num;
} NAMES[] = {{"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
             {"SIGILL", SIGILL},   {"SIGTRAP", SIGTRAP},   {"SIGABRT", SIGABRT},
             {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},     {"SIGKILL", SIGKILL},
             {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},   {"SIGUSR2", SIGUSR2},
             {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM},
             {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},   {"SIGSTOP", SIGSTOP},
             {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},
             {"SIGURG", SIGURG},   {"SIGXCPU", SIGXCPU},   {"SIGXFSZ", SIGXFSZ},
             {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF},
             {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},     {"SIGSYS", SIGSYS},
             {NULL, 0}};

int io_check_signal(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 1 && n < 65, idx, "invalid signal number");
    return (int)n;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_typeerror(L, idx, "signal name or number");
  const char *name = host_check_cstring(L, idx, NULL);
  for (int i = 0; NAMES[i].name; i++)
    if (strcmp(name, NAMES[i].name) == 0 ||
        strcmp(name, NAMES[i].name + 3) == 0)
      return NAMES[i].num;
  return luaL_argerror(L, idx,
                       lua_pushfstring(L, "unknown signal name '%s'", name));
}

/* ---- SIGPIPE ---------------------------------------------------------- */

/* A write to a socket or pipe whose peer is gone raises SIGPIPE, whose
 * default action kills the process: one client that disconnects while a
 * server writes would end the server.  The loop's writes must instead fail
 * with EPIPE (BrokenPipeError at drain()).  SIG_IGN would do that, but it
 * would also change lua.c's behaviour for `lasync script | head` (print
 * into a closed pipe must end the program, exit status 141, not loop on
 * silently) and it is inherited across exec by io.popen/os.execute
 * children.  So the handler decides: when stdout or stderr is the broken
 * pipe it restores the default action and lets the signal kill the process
 * as lua.c would; otherwise it returns and the write sees EPIPE.  A handler
 * (unlike SIG_IGN) is reset to the default by exec, so children are as
 * they would be under lua.c.  We install it only over SIG_DFL: an
 * embedder that chose its own disposition keeps it. */
static volatile sig_atomic_t sigpipe_ours;

/* Is fd a pipe or socket whose reading side is gone?  (poll is
 * async-signal-safe; a write end without readers polls as POLLERR.) */
static int fd_broken(int fd) {
  struct pollfd p;
  p.fd = fd;
  p.events = POLLOUT;
  p.revents = 0;
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

static void on_sigpipe(int sig) {
  int saved = errno;
  if (fd_broken(1) || fd_broken(2)) {
    /* blocked while this handler runs: delivered, with the default
     * action, as soon as it returns */
    signal(sig, SIG_DFL);
    raise(sig);
  }
  errno = saved;
}

void io_guard_sigpipe(void) {
  struct sigaction old, sa;
  if (sigaction(SIGPIPE, NULL, &old) != 0) return;
  if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigpipe;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGPIPE, &sa, NULL) == 0) sigpipe_ours = 1;
}

/* libuv puts SIG_DFL back when the last watcher of a signal stops: after
 * remove_signal_handler("SIGPIPE") our guard must come back. */
static void restore_sigpipe_guard(int signum) {
  if (signum == SIGPIPE && sigpipe_ours) io_guard_sigpipe();
}

typedef struct sig_rec {
  host_handle hd;        /* lifetime: handle.h */
  uv_signal_t handle;
  host_posted post;
  lasync_host *h;
  int fn_ref;     /* registry: {fn, args...} */
  int pending;    /* deliveries not yet handed to call_soon */
} sig_rec;

/* The last hold went: the handle closed, the box was collected and no
 * delivery is queued (a queued one holds the record, see on_signal). */
static void sig_free(host_handle *hd) {
  free(host_container_of(hd, sig_rec, hd));
}

static void on_sig_closed(uv_handle_t *handle) {
  sig_rec *s = handle->data;
  /* a stopping host never runs its ready queue again: the queued
   * delivery lets go of the record here instead */
  if (host_closing(s->h) && s->post.queued) {
    s->post.queued = 0;
    host_handle_drop(&s->hd);
  }
  host_handle_after_close(&s->hd);
}

static void deliver(lasync_host *h, host_posted *p) {
  sig_rec *s = host_container_of(p, sig_rec, post);
  lua_State *L = h->cbL;
  for (; s->pending > 0 && s->fn_ref != LUA_NOREF; s->pending--) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
    int n = (int)lua_rawlen(L, -1);
    luaL_checkstack(L, n, "signal handler arguments");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);
    host_call_soon(h, L, n - 1);
  }
  s->pending = 0;
  host_handle_drop(&s->hd); /* the hold on_signal took; may free s */
}

static void on_signal(uv_signal_t *handle, int signum) {
  sig_rec *s = handle->data;
  (void)signum;
  s->pending++;
  /* the queued entry lives in the record: it holds the record until the
   * ready queue reaches it (the box may be collected meanwhile) */
  if (!s->post.queued) host_handle_hold(&s->hd);
  host_post(s->h, &s->post);
}

/* Stops watching; L is NULL when the host stops (the handler's ref then
 * goes with the state). */
static int sig_close(host_handle *hd, lua_State *L) {
  sig_rec *s = host_container_of(hd, sig_rec, hd);
  if (L) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->fn_ref);
    s->fn_ref = LUA_NOREF;
  }
  int signum = s->handle.signum;
  if (signum == SIGINT) s->h->sigint_handlers--;
  uv_close((uv_handle_t *)&s->handle, on_sig_closed);
  restore_sigpipe_guard(signum);
  return 1;
}

/* The Lua side of a record: a box in registry[SIGNALS_KEY][signum]. */
static const host_handle_type SIGNAL_TYPE = {SIGNAL_MT, "signal handler",
                                             sig_close, sig_free};

static void push_signals(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, SIGNALS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, SIGNALS_KEY);
  }
}

static int l_add_signal_handler(lua_State *L) {
  lasync_host *h = io_live_host(L, "add_signal_handler");
  int signum = io_check_signal(L, 1);
  host_check_callable(L, 2);
  if (signum == SIGKILL || signum == SIGSTOP)
    return luaL_argerror(L, 1, "SIGKILL and SIGSTOP cannot be caught");
  int n = lua_gettop(L) - 1;
  lua_createtable(L, n, 0); /* {fn, args...} */
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, i + 1);
    lua_rawseti(L, -2, i);
  }
  int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  push_signals(L);
  if (lua_rawgeti(L, -1, signum) == LUA_TUSERDATA) {
    host_handle *hd = *(host_handle **)lua_touserdata(L, -1);
    if (hd && !hd->closing) { /* replace the handler of a live watcher */
      sig_rec *s = host_container_of(hd, sig_rec, hd);
      luaL_unref(L, LUA_REGISTRYINDEX, s->fn_ref);
      s->fn_ref = fn_ref;
      return 0;
    }
    /* its record is gone (finalized, or closed at stop): watch anew */
  }
  lua_pop(L, 1);
  sig_rec *s = calloc(1, sizeof *s);
  if (!s) {
    luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
    return luaL_error(L, "asyncio: out of memory");
  }
  s->h = h;
  s->fn_ref = fn_ref;
  host_posted_init(&s->post, deliver);
  int rc = uv_signal_init(h->loop, &s->handle);
  if (rc) {
    free(s);
    luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
    return host_raise_oserror(L, rc, "signal",
                              lua_pushfstring(L, "%d", signum));
  }
  s->handle.data = s;
  host_handle_init(&s->hd, &SIGNAL_TYPE, h);
  host_handle_push(L, &s->hd, 0);
  rc = uv_signal_start(&s->handle, on_signal, signum);
  if (rc) {
    host_handle_release(L, -1);
    return host_raise_oserror(L, rc, "signal",
                              lua_pushfstring(L, "%d", signum));
  }
  uv_unref((uv_handle_t *)&s->handle);
  if (signum == SIGINT) h->sigint_handlers++; /* asyncio.run's Ctrl-C off */
  lua_rawseti(L, -2, signum);
  return 0;
}

/* Returns true when a handler was removed. */
static int l_remove_signal_handler(lua_State *L) {
  int signum = io_check_signal(L, 1);
  push_signals(L);
  if (lua_rawgeti(L, -1, signum) != LUA_TUSERDATA) {
    lua_pushboolean(L, 0);
    return 1;
  }
  host_handle_release(L, -1);
  lua_pushnil(L);
  lua_rawseti(L, -3, signum);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"add_signal_handler", l_add_signal_handler},
    {"remove_signal_handler", l_remove_signal_handler},
    {NULL, NULL}};

void io_open_signal(lua_State *L, lasync_host *h) {
  io_guard_sigpipe();
  static const luaL_Reg meta[] = {{"__gc", host_handle_gc},
                                  {"__close", host_handle_gc},
                                  {NULL, NULL}};
  host_new_type(L, SIGNAL_MT, NULL, meta, 0);
  host_handle_register(L, &SIGNAL_TYPE);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
