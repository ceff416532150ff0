/* Debug mode (asyncio's): a task step or callback that keeps the loop busy
 * longer than slow_callback_duration is reported with the traceback of
 * where it is stuck, taken while it is stuck; resources left open at exit
 * are reported with where they were opened.
 *
 * The traceback comes from a watchdog thread: it sleeps until the running
 * step's slow_callback_duration is over and, if that step still runs, sets a hook
 * on the Lua thread that runs it -- lua_sethook is the one call that may
 * be made from outside the running thread (lua.c makes it from its SIGINT
 * handler).  The hook runs on the loop's thread at the next instruction,
 * takes the traceback and prints it.  A step blocked in C (a blocking
 * read) gets its report when it is back in Lua, and the duration when it
 * ends.
 *
 * The loop thread marks each step's start and end under the watchdog's
 * mutex (only in debug mode), so the watchdog never hooks a thread whose
 * step ended (whose task may be gone).
 *
 * With no step to watch (the loop waits for I/O, the step was hooked, or
 * only the inspector uses this record) the watchdog sleeps without a
 * deadline and the next step's start wakes it: an idle program in debug
 * mode, or one `lasync ps` can ask, does not wake at all.  A busy loop
 * wakes it at most once per slow_callback_duration. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handle.h"
#include "host.h"

struct host_debug {
  lasync_host *h;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cond;     /* the inspector's probe is done */
  pthread_cond_t wake;     /* the watchdog: a step began, or quit */
  int dozing;              /* the watchdog sleeps without a deadline */
  uint64_t slow_ns;       /* slow_callback_duration */
  uint64_t step_start;    /* uv_hrtime() at the step's start, 0: none */
  lua_State *step_L;      /* the thread that runs the step */
  uint64_t step_seq;      /* steps begun */
  uint64_t hooked_seq;    /* the step the watchdog hooked */
  int hooked_reported;    /* its hook has run */
  int quit;
  int slow_on;            /* debug mode (else only step tracking, for
                             the inspector) */
  int inspect_on;         /* host_inspect runs */
  /* the inspector's question to a blocked step (inspect.c): the hook
   * writes who and where into `probe`, then sets probe_done */
  uint64_t probe_seq;
  int probe_done;
  char probe[4096];
};

/* Text for debug reports: through the reporter, but they are warnings:
 * neither the last error nor a failure of lasync_run. */
void host_warn(lasync_host *h, const char *text) {
  if (h->report) {
    h->report(h->report_ud, text);
    return;
  }
  fprintf(stderr, "%s\n", text);
  fflush(stderr);
}

/* "<Task name='x' created at y.lua:3>" for task t (pending), or "a
 * callback" for NULL.  [-0, +1] */
static const char *push_who(lua_State *L, host_task *t) {
  if (!t || t->state == TASK_DONE) return lua_pushliteral(L, "a callback");
  host_task_push(L, t);
  host_task_push_name(L, -1);
  if (t->created_src) host_push_created(L, t);
  else lua_pushliteral(L, "the host (a main chunk)");
  lua_pushfstring(L, "<Task name='%s' created at %s>", lua_tostring(L, -2),
                  lua_tostring(L, -1));
  lua_replace(L, -4);
  lua_pop(L, 2);
  return lua_tostring(L, -1);
}

/* ---- the hook: runs on the loop's thread, inside the stuck step ---------- */

static void stuck_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  lasync_host *h = host_get(L);
  host_debug *d = h ? h->debug : NULL;
  if (!d) return;
  pthread_mutex_lock(&d->mu);
  double secs = (double)(uv_hrtime() - d->step_start) / 1e9;
  d->hooked_reported = 1;
  pthread_mutex_unlock(&d->mu);
  luaL_checkstack(L, 6, "debug report");
  push_who(L, host_task_of(L));
  luaL_traceback(L, L, NULL, 0);
  char num[64];
  snprintf(num, sizeof num, "%.3f seconds (slow_callback_duration %.3f)",
           secs, (double)d->slow_ns / 1e9);
  lua_pushfstring(L, "Executing %s has kept the loop busy for %s; it is "
                     "at:\n%s",
                  lua_tostring(L, -2), num, lua_tostring(L, -1));
  host_warn(h, lua_tostring(L, -1));
  lua_pop(L, 3);
}

/* The inspector's probe: on the loop's thread, inside the blocked step. */
static void probe_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  lasync_host *h = host_get(L);
  host_debug *d = h ? h->debug : NULL;
  if (!d || !lua_checkstack(L, 6)) return;
  push_who(L, host_task_of(L));
  luaL_traceback(L, L, NULL, 0);
  pthread_mutex_lock(&d->mu);
  snprintf(d->probe, sizeof d->probe, "%s\n%s", lua_tostring(L, -2),
           lua_tostring(L, -1));
  d->probe_done = 1;
  pthread_cond_broadcast(&d->cond);
  pthread_mutex_unlock(&d->mu);
  lua_pop(L, 2);
}

int host_debug_blocked(lasync_host *h, char *buf, size_t size,
                       double wait) {
  host_debug *d = h->debug;
  if (!d) return 0;
  pthread_mutex_lock(&d->mu);
  if (!d->step_start || !d->step_L) {
    pthread_mutex_unlock(&d->mu);
    return 0;
  }
  uint64_t seq = d->step_seq;
  double secs = (double)(uv_hrtime() - d->step_start) / 1e9;
  host_task *t = host_task_of(d->step_L);
  if (d->probe_seq != seq) { /* one probe per step */
    d->probe_seq = seq;
    d->probe_done = 0;
    lua_sethook(d->step_L, probe_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)(wait * 1e9);
  ts.tv_sec += (time_t)(ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  while (!d->probe_done && d->step_seq == seq &&
         pthread_cond_timedwait(&d->cond, &d->mu, &ts) == 0) {
  }
  if (d->probe_done && d->probe_seq == seq)
    snprintf(buf, size, "the loop is blocked for %.3f seconds by %s", secs,
             d->probe);
  else if (t && d->step_seq == seq)
    snprintf(buf, size, "the loop is blocked for %.3f seconds by Task-%u "
             "(created at %s:%d), in C code (no Lua traceback yet)", secs,
             (unsigned)t->id, t->created_src ? t->created_src : "?",
             t->created_line);
  else if (d->step_seq == seq)
    snprintf(buf, size, "the loop is blocked for %.3f seconds by a "
             "callback, in C code", secs);
  else
    buf[0] = '\0'; /* it moved on meanwhile */
  pthread_mutex_unlock(&d->mu);
  return buf[0] != '\0';
}

/* ---- the watchdog thread -------------------------------------------------- */

static void *watchdog(void *arg) {
  host_debug *d = arg;
  pthread_mutex_lock(&d->mu);
  while (!d->quit) {
    if (!d->slow_on || !d->step_start || !d->step_L ||
        d->hooked_seq == d->step_seq) {
      d->dozing = 1; /* nothing to watch: until a step begins */
      pthread_cond_wait(&d->wake, &d->mu);
      d->dozing = 0;
      continue;
    }
    uint64_t now = uv_hrtime(), due = d->step_start + d->slow_ns;
    if (now > due) {
      d->hooked_seq = d->step_seq;
      d->hooked_reported = 0;
      lua_sethook(d->step_L, stuck_hook,
                  LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT,
                  1);
      continue;
    }
    /* until this step's deadline (a later step's is later still) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (due - now) + 1;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_cond_timedwait(&d->wake, &d->mu, &ts);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

/* ---- steps -------------------------------------------------------------- */

void host_debug_step_begin(host_debug *d, lua_State *L) {
  pthread_mutex_lock(&d->mu);
  d->step_seq++;
  d->step_L = L;
  d->step_start = uv_hrtime();
  if (d->dozing) {
    d->dozing = 0; /* once: the watchdog clears it too */
    pthread_cond_signal(&d->wake);
  }
  pthread_mutex_unlock(&d->mu);
}

void host_debug_step_end(host_debug *d, lua_State *L) {
  pthread_mutex_lock(&d->mu);
  /* 0: debug mode was turned on during this step */
  uint64_t took = d->step_start ? uv_hrtime() - d->step_start : 0;
  int hooked = d->hooked_seq == d->step_seq;
  if (hooked && !d->hooked_reported) /* still set: the step never ran Lua */
    lua_sethook(L, NULL, 0, 0);
  d->step_start = 0;
  d->step_L = NULL;
  pthread_mutex_unlock(&d->mu);
  lua_State *cb = d->h->cbL;
  if (!d->slow_on || took <= d->slow_ns || !lua_checkstack(cb, 4)) return;
  /* Python's message, once the step is over (built on cbL, as every value
   * the scheduler makes) */
  push_who(cb, L == cb ? NULL : host_task_of(L));
  char num[32];
  snprintf(num, sizeof num, "%.3f", (double)took / 1e9);
  lua_pushfstring(cb, "Executing %s took %s seconds", lua_tostring(cb, -1),
                  num);
  host_warn(d->h, lua_tostring(cb, -1));
  lua_pop(cb, 2);
}

/* ---- on and off ------------------------------------------------------------ */

/* The record behind debug mode and the inspector, made on first use. */
static host_debug *debug_get(lasync_host *h) {
  host_debug *d = h->debug;
  if (d) return d;
  d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->h = h;
  d->slow_ns = 100000000u;
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cond, NULL);
  pthread_cond_init(&d->wake, NULL);
  if (pthread_create(&d->thread, NULL, watchdog, d)) {
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
    pthread_cond_destroy(&d->wake);
    free(d);
    return NULL;
  }
  h->debug = d;
  return d;
}

static void debug_maybe_free(lasync_host *h) {
  if (h->debug && !h->debug->slow_on && !h->debug->inspect_on)
    host_debug_free(h);
}

int host_debug_set(lasync_host *h, int on, double slow) {
  host_debug *d = h->debug;
  if (!on && !d) return 0;
  if (!(d = debug_get(h))) return UV_ENOMEM;
  pthread_mutex_lock(&d->mu);
  if (slow > 0) d->slow_ns = (uint64_t)(slow * 1e9);
  d->slow_on = on;
  pthread_cond_signal(&d->wake); /* a step may be running already */
  pthread_mutex_unlock(&d->mu);
  debug_maybe_free(h);
  return 0;
}

int host_debug_on(lasync_host *h) { return h->debug && h->debug->slow_on; }

int host_debug_inspect(lasync_host *h, int on) {
  host_debug *d = h->debug;
  if (!on && !d) return 0;
  if (!(d = debug_get(h))) return UV_ENOMEM;
  d->inspect_on = on;
  debug_maybe_free(h);
  return 0;
}

double host_debug_slow(lasync_host *h) {
  return host_debug_on(h) ? (double)h->debug->slow_ns / 1e9 : 0.1;
}

void host_debug_free(lasync_host *h) {
  host_debug *d = h->debug;
  if (!d) return;
  pthread_mutex_lock(&d->mu);
  d->quit = 1;
  pthread_cond_signal(&d->wake);
  pthread_mutex_unlock(&d->mu);
  pthread_join(d->thread, NULL);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->cond);
  pthread_cond_destroy(&d->wake);
  h->debug = NULL;
  free(d);
}

/* ---- at exit ---------------------------------------------------------------- */

void host_debug_report_pending(lasync_host *h, lua_State *L) {
  if (!host_debug_on(h) || !lua_checkstack(L, 6)) return;
  host_push_pending(L, h);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    host_task *t = luaL_testudata(L, -1, HOST_TASK_MT);
    lua_pop(L, 1);
    if (!t || t->state == TASK_DONE) continue;
    char where[128];
    if (t->flags & TF_STARTED) host_where_waiting(t->co, where, sizeof where);
    else snprintf(where, sizeof where, "before it started");
    push_who(L, t);
    lua_pushfstring(L, "Task never awaited, still pending when the loop "
                       "ends (it is cancelled now): %s, waiting %s",
                    lua_tostring(L, -1), where);
    host_warn(h, lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

void host_debug_report_open(lasync_host *h) {
  char text[256];
  if (!host_debug_on(h)) return;
  for (host_link *l = h->closeables.next; l != &h->closeables; l = l->next) {
    host_closeable *c = host_container_of(l, host_closeable, link);
    host_handle *hd = host_handle_of_closeable(c);
    if (!hd) continue;
    if (hd->created.src)
      snprintf(text, sizeof text, "Resource left open at exit: %s created "
               "at %s:%d", hd->type->what, hd->created.src, hd->created.line);
    else
      snprintf(text, sizeof text, "Resource left open at exit: %s",
               hd->type->what);
    host_warn(h, text);
  }
}
