/* `lasync --workers N script.lua [args]`: a supervisor that runs N copies
 * of the program (each a plain `lasync script.lua [args]`), so a server
 * started with start_server(..., {reuse_port = true}) spreads over N cores.
 *
 * The supervisor runs no Lua: a libuv loop with one uv_process_t per
 * worker and two uv_signal_t.  Workers are started in a session of their
 * own, so a Ctrl-C in the terminal reaches the supervisor alone, which
 * passes SIGINT (or SIGTERM) on once: each worker stops as `lasync` does
 * (the main task is cancelled, cleanup runs).  A worker that crashes (dies
 * of a signal, or exits with a status other than 0 or 130) is started
 * again, unless it crashed MAX_RESTARTS times within RESTART_WINDOW
 * seconds: then every worker is stopped and the supervisor exits with the
 * crashing worker's status.  Otherwise it exits once every worker has
 * ended, with the highest status among them (0 when all succeeded; a
 * death by signal s counts as 128 + s).
 *
 * Each worker finds its number and the count in LASYNC_WORKER_ID (1..N)
 * and LASYNC_WORKER_COUNT (asyncio.worker_id() / worker_count()), and
 * asks the kernel for SIGTERM when the supervisor dies (so a killed
 * supervisor leaves no orphans): host_workers_child. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <uv.h>

#include "workers.h"

#define MAX_RESTARTS 5
#define RESTART_WINDOW 10.0 /* seconds */
#define MAX_WORKERS 1024

typedef struct worker {
  uv_process_t proc;
  struct supervisor *sup;
  int id;
  int running;
  int status;               /* exit status once ended */
  double restarts[MAX_RESTARTS];
  int nrestarts;            /* entries used in restarts[] (a ring) */
} worker;

typedef struct supervisor {
  uv_loop_t *loop;
  uv_signal_t sigint, sigterm;
  worker *w;
  int n, alive;
  int stopping;             /* a signal came, or a worker gave up */
  int status;               /* the exit status so far */
  int gave_up;              /* status is a crashing worker's: keep it */
  char exe[4096];
  char **args;              /* argv for the workers (exe, then the rest) */
  char count[32];
} supervisor;

static double now_s(uv_loop_t *loop) { return (double)uv_now(loop) / 1e3; }

static void stop_all(supervisor *s, int sig) {
  for (int i = 0; i < s->n; i++)
    if (s->w[i].running) uv_process_kill(&s->w[i].proc, sig);
}

static int start_worker(supervisor *s, worker *w);

static void on_proc_closed(uv_handle_t *h) {
  worker *w = h->data;
  supervisor *s = w->sup;
  if (!s->stopping && w->status != 0 && w->status != 130) {
    if (start_worker(s, w) == 0) return;
  }
  if (!s->gave_up && w->status > s->status) s->status = w->status;
  if (--s->alive == 0) {
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
  }
}

/* Has this worker crashed too often lately?  Records this crash. */
static int too_many_restarts(supervisor *s, worker *w) {
  double t = now_s(s->loop);
  int k = 0;
  for (int i = 0; i < w->nrestarts; i++)
    if (t - w->restarts[i] < RESTART_WINDOW) w->restarts[k++] = w->restarts[i];
  w->nrestarts = k;
  if (k >= MAX_RESTARTS) return 1;
  w->restarts[w->nrestarts++] = t;
  return 0;
}

static void on_exit_(uv_process_t *p, int64_t code, int sig) {
  worker *w = p->data;
  supervisor *s = w->sup;
  w->running = 0;
  w->status = sig ? 128 + sig : (int)code;
  if (!s->stopping && w->status != 0 && w->status != 130) {
    if (too_many_restarts(s, w)) {
      fprintf(stderr, "lasync: worker %d keeps crashing (status %d, %d "
              "restarts in %g s): stopping\n", w->id, w->status,
              MAX_RESTARTS, RESTART_WINDOW);
      s->stopping = s->gave_up = 1;
      s->status = w->status;
      stop_all(s, SIGTERM);
    } else {
      fprintf(stderr, "lasync: worker %d ended with status %d: restarting it\n",
              w->id, w->status);
    }
  }
  uv_close((uv_handle_t *)p, on_proc_closed);
}

static int start_worker(supervisor *s, worker *w) {
  char id[32];
  snprintf(id, sizeof id, "%d", w->id);
  setenv("LASYNC_WORKER_ID", id, 1);
  uv_stdio_container_t stdio[3] = {{UV_IGNORE, {0}},
                                   {UV_INHERIT_FD, {.fd = 1}},
                                   {UV_INHERIT_FD, {.fd = 2}}};
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = s->exe;
  o.args = s->args;
  o.exit_cb = on_exit_;
  o.stdio = stdio;
  o.stdio_count = 3;
  /* a session of its own: the terminal's Ctrl-C goes to the supervisor
   * only, which passes it on once */
  o.flags = UV_PROCESS_DETACHED;
  w->proc.data = w;
  int rc = uv_spawn(s->loop, &w->proc, &o);
  if (rc) {
    fprintf(stderr, "lasync: cannot start worker %d: %s\n", w->id,
            uv_strerror(rc));
    return rc;
  }
  w->running = 1;
  return 0;
}

static void on_signal(uv_signal_t *h, int sig) {
  supervisor *s = h->data;
  s->stopping = 1;
  stop_all(s, sig);
}

static int parse_count(const char *v) {
  if (strcmp(v, "auto") == 0) return (int)uv_available_parallelism();
  char *end;
  long n = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || n < 1 || n > MAX_WORKERS) return -1;
  return (int)n;
}

int host_workers_main(int argc, char **argv) {
  static supervisor s;
  const char *v = NULL;
  int rest = 2;
  if (strncmp(argv[1], "--workers=", 10) == 0) v = argv[1] + 10;
  else if (argc > 2) v = argv[2], rest = 3;
  s.n = v ? parse_count(v) : -1;
  if (s.n < 1 || rest >= argc) {
    fprintf(stderr, "usage: lasync --workers N|auto script [args]\n"
            "  N: 1..%d workers; auto: one per core (%u here)\n",
            MAX_WORKERS, uv_available_parallelism());
    return EXIT_FAILURE;
  }
  size_t size = sizeof s.exe;
  if (uv_exepath(s.exe, &size)) {
    fprintf(stderr, "lasync: cannot find its own executable\n");
    return EXIT_FAILURE;
  }
  s.loop = uv_default_loop();
  s.args = calloc((size_t)(argc - rest + 2), sizeof *s.args);
  s.w = calloc((size_t)s.n, sizeof *s.w);
  if (!s.args || !s.w) return EXIT_FAILURE;
  s.args[0] = s.exe;
  for (int i = rest; i < argc; i++) s.args[i - rest + 1] = argv[i];
  snprintf(s.count, sizeof s.count, "%d", s.n);
  setenv("LASYNC_WORKER_COUNT", s.count, 1);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  setenv("LASYNC_SUPERVISOR_PID", pid, 1);
  uv_signal_init(s.loop, &s.sigint);
  uv_signal_init(s.loop, &s.sigterm);
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  for (int i = 0; i < s.n; i++) {
    s.w[i].sup = &s;
    s.w[i].id = i + 1;
    if (start_worker(&s, &s.w[i])) {
      s.stopping = 1;
      s.status = EXIT_FAILURE;
      stop_all(&s, SIGTERM);
      break;
    }
    s.alive++;
  }
  if (s.alive == 0) {
    uv_close((uv_handle_t *)&s.sigint, NULL);
    uv_close((uv_handle_t *)&s.sigterm, NULL);
  }
  uv_run(s.loop, UV_RUN_DEFAULT);
  uv_loop_close(s.loop);
  free(s.args);
  free(s.w);
  return s.status;
}

void host_workers_child(void) {
  const char *sup = getenv("LASYNC_SUPERVISOR_PID");
  if (!sup || !getenv("LASYNC_WORKER_ID")) return;
  long ppid = strtol(sup, NULL, 10);
  /* the worker's own subprocesses are not workers of this supervisor */
  unsetenv("LASYNC_SUPERVISOR_PID");
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
  /* the supervisor may have died before the request was made */
  if ((long)getppid() != ppid) raise(SIGTERM);
}
