/* The trace timeline: LASYNC_TRACE=out.json records the loop's events in a
 * ring buffer and writes them, when the host stops, as a Chrome trace
 * event file (Perfetto and chrome://tracing load it; `lasync trace-view`
 * draws it):
 *
 *   - one track per task (tid = the task's id; its name in metadata),
 *     each step a complete event named by the task and the line where the
 *     step ended (where it waits next);
 *   - flows from the waker (a task's step, or the loop itself, track 0)
 *     to the step of the task it woke;
 *   - instants for cancellations and for wake-ups that came from the loop;
 *   - instants for timers firing (on the track of the task the timer woke
 *     or cancelled, else the loop's), I/O completing (read, write,
 *     accept, connect, UDP send and receive: bytes, peer, error) and HTTP
 *     transfers (method, URL, status, bytes, duration, error; also an
 *     async slice from request to response).
 *
 * Recording is a few stores per event into a fixed array of 48-byte
 * records (the oldest are overwritten when it is full: the file keeps the
 * last LASYNC_TRACE_EVENTS, 262144 by default); text is made only when the
 * file is written, but for a peer's address and an HTTP transfer's URL,
 * which are copied when they happen (they do not outlive the event). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

enum { EV_STEP, EV_WAKE, EV_CANCEL, EV_NAME, EV_TIMER, EV_IO, EV_HTTP };

typedef struct trace_ev {
  uint64_t ts;        /* uv_hrtime(); EV_HTTP: when the request started */
  uint64_t dur;       /* EV_STEP, EV_HTTP: duration; EV_TIMER: lateness;
                         EV_IO: bytes */
  const char *where;  /* EV_STEP: the interned source, or NULL; EV_NAME:
                         the name; EV_IO: the peer or NULL; EV_HTTP:
                         "method\0url\0error" (owned: see owns_text) */
  uint32_t task;      /* the track */
  uint32_t flow;      /* EV_WAKE: the flow started; EV_STEP: ended;
                         EV_HTTP: bytes (saturated) */
  int32_t line;       /* EV_STEP: its line; EV_WAKE: 1 if a timer woke it;
                         EV_IO, EV_HTTP: the status (libuv error, HTTP
                         status) */
  uint32_t from;      /* EV_WAKE, EV_CANCEL: the waker's or canceller's
                         track (0: the loop); EV_IO: the operation;
                         EV_TIMER: 1 for call_later */
  unsigned char type;
} trace_ev;

struct host_trace {
  char *path;
  trace_ev *ev;
  size_t cap, n;      /* n: events recorded (the last cap are kept) */
  size_t timer_ev;    /* 1 + the index of a timer event still without a
                         track, while its fire runs; 0 otherwise */
  uint64_t t0;
  uint32_t next_flow;
  /* The flow each pending task's next step ends, by its slot in the
   * pending table (t->ref: small and dense, and a task is pending from
   * its wake to its step), so that the task record needs no field for
   * it; flows[0] is unused. */
  uint32_t *flows;
  size_t nflows;
};

/* The flow slot of pending task t, or NULL (no memory: the flow is not
 * drawn). */
static uint32_t *flow_of(host_trace *tr, const host_task *t) {
  size_t i = t->ref > 0 ? (size_t)t->ref : 0;
  if (i == 0) return NULL;
  if (i >= tr->nflows) {
    size_t n = tr->nflows ? tr->nflows : 64;
    while (n <= i) n *= 2;
    uint32_t *f = realloc(tr->flows, n * sizeof *f);
    if (!f) return NULL;
    memset(f + tr->nflows, 0, (n - tr->nflows) * sizeof *f);
    tr->flows = f;
    tr->nflows = n;
  }
  return &tr->flows[i];
}

static int owns_text(const trace_ev *e) {
  return e->type == EV_NAME || e->type == EV_IO || e->type == EV_HTTP;
}

static trace_ev *next_ev(host_trace *tr) {
  trace_ev *e = &tr->ev[tr->n % tr->cap];
  if (tr->n >= tr->cap && owns_text(e)) free((char *)e->where);
  tr->n++;
  return e;
}

/* The timer firing now (if it is the last event recorded) is t's: the
 * instant goes on t's track. */
static int claim_timer(host_trace *tr, host_task *t) {
  if (!tr->timer_ev || tr->timer_ev != tr->n) return 0;
  tr->ev[(tr->timer_ev - 1) % tr->cap].task = t->id;
  tr->timer_ev = 0;
  return 1;
}

int host_trace_start(lasync_host *h, const char *path) {
  host_trace *tr = calloc(1, sizeof *tr);
  const char *cap = getenv("LASYNC_TRACE_EVENTS");
  if (!tr) return UV_ENOMEM;
  tr->cap = cap ? strtoul(cap, NULL, 10) : 262144;
  if (tr->cap < 16 || tr->cap > 100000000) tr->cap = 262144;
  tr->ev = calloc(tr->cap, sizeof *tr->ev);
  tr->path = strdup(path);
  if (!tr->ev || !tr->path) {
    free(tr->ev);
    free(tr->path);
    free(tr);
    return UV_ENOMEM;
  }
  tr->t0 = uv_hrtime();
  h->trace = tr;
  return 0;
}

void host_trace_step(lasync_host *h, host_task *t, uint64_t start,
                     uint64_t end) {
  host_trace *tr = h->trace;
  trace_ev *e = next_ev(tr);
  host_where w = {NULL, 0};
  if (t->state != TASK_DONE && lua_status(t->co) == LUA_YIELD)
    host_where_note(h, t->co, &w);
  e->type = EV_STEP;
  e->ts = start;
  e->dur = end - start;
  e->task = t->id;
  e->where = w.src;
  e->line = w.line;
  uint32_t *flow = flow_of(tr, t);
  e->flow = flow ? *flow : 0;
  if (flow) *flow = 0;
}

void host_trace_wake(lasync_host *h, host_task *t) {
  host_trace *tr = h->trace;
  host_task *from = h->current ? host_task_of(h->current) : NULL;
  int by_timer = claim_timer(tr, t);
  trace_ev *e = next_ev(tr);
  e->type = EV_WAKE;
  e->ts = uv_hrtime();
  e->task = t->id;
  e->from = from ? from->id : 0;
  e->line = by_timer;
  uint32_t *flow = flow_of(tr, t);
  e->flow = ++tr->next_flow;
  if (flow) *flow = e->flow;
}

void host_trace_cancel(lasync_host *h, host_task *t) {
  host_trace *tr = h->trace;
  host_task *from = h->current ? host_task_of(h->current) : NULL;
  claim_timer(tr, t);
  trace_ev *e = next_ev(tr);
  e->type = EV_CANCEL;
  e->ts = uv_hrtime();
  e->task = t->id;
  e->from = from ? from->id : 0;
}

void host_trace_timer(lasync_host *h, int callback, uint64_t due,
                      uint64_t now) {
  host_trace *tr = h->trace;
  trace_ev *e = next_ev(tr);
  e->type = EV_TIMER;
  e->ts = uv_hrtime();
  e->task = 0;
  e->dur = now > due ? now - due : 0;
  e->from = (uint32_t)callback;
  tr->timer_ev = callback ? 0 : tr->n;
}

void host_trace_timer_end(lasync_host *h) { h->trace->timer_ev = 0; }

/* The track of an I/O event: the task it is for, else the running one,
 * else the loop. */
static uint32_t track_of(lasync_host *h, host_task *t) {
  if (!t && h->current) t = host_task_of(h->current);
  return t ? t->id : 0;
}

void host_trace_io(lasync_host *h, host_task *t, int op, uint64_t bytes,
                   int status, const char *peer) {
  trace_ev *e = next_ev(h->trace);
  e->type = EV_IO;
  e->ts = uv_hrtime();
  e->task = track_of(h, t);
  e->from = (uint32_t)op;
  e->dur = bytes;
  e->line = status;
  e->where = peer ? strdup(peer) : NULL;
}

void host_trace_io_addr(lasync_host *h, host_task *t, int op, uint64_t bytes,
                        int status, const struct sockaddr *sa) {
  char ip[64] = "", peer[80];
  const char *text = NULL;
  if (sa && sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(peer, sizeof peer, "%s:%d", ip, ntohs(a->sin_port));
    text = peer;
  } else if (sa && sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(peer, sizeof peer, "[%s]:%d", ip, ntohs(a->sin6_port));
    text = peer;
  }
  host_trace_io(h, t, op, bytes, status, text);
}

void host_trace_http(lasync_host *h, host_task *t, uint64_t start,
                     const char *method, const char *url, long status,
                     uint64_t bytes, const char *error) {
  size_t m = strlen(method) + 1, u = strlen(url) + 1;
  size_t r = error ? strlen(error) + 1 : 0;
  char *text = malloc(m + u + r + 1);
  trace_ev *e = next_ev(h->trace);
  uint64_t now = uv_hrtime();
  e->type = EV_HTTP;
  e->ts = start && start <= now ? start : now;
  e->dur = now - e->ts;
  e->task = track_of(h, t);
  e->line = (int32_t)status;
  e->flow = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
  e->where = text;
  if (!text) return;
  memcpy(text, method, m);
  memcpy(text + m, url, u);
  if (error) memcpy(text + m + u, error, r);
  text[m + u + r] = '\0'; /* no error: an empty third field */
}

void host_trace_name(lasync_host *h, host_task *t, const char *name) {
  trace_ev *e = next_ev(h->trace);
  e->type = EV_NAME;
  e->ts = uv_hrtime();
  e->task = t->id;
  e->where = strdup(name);
}

/* ---- writing ---------------------------------------------------------------- */

static void put_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static double us(host_trace *tr, uint64_t ts) {
  return (double)(ts - tr->t0) / 1e3;
}

/* Opens an instant event; the caller adds ",\"args\":{...}}" or "}". */
static void instant(FILE *f, host_trace *tr, uint32_t tid, uint64_t ts,
                    const char *cat, const char *name) {
  fprintf(f, "{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,"
          "\"cat\":\"%s\",\"name\":", tid, us(tr, ts), cat);
  put_string(f, name);
}

static const char *const IO_NAMES[] = {"read",    "write", "write done",
                                       "accept",  "connect", "recv",
                                       "send"};

static void write_io(FILE *f, host_trace *tr, const trace_ev *e) {
  const char *op = e->from < sizeof IO_NAMES / sizeof *IO_NAMES
                       ? IO_NAMES[e->from] : "io";
  char name[64];
  if (e->line == UV_EOF)
    snprintf(name, sizeof name, "%s EOF", op);
  else if (e->line < 0)
    snprintf(name, sizeof name, "%s %s", op, uv_err_name(e->line));
  else if (e->dur || e->from == HOST_IO_READ || e->from == HOST_IO_WRITE ||
           e->from == HOST_IO_WRITTEN || e->from == HOST_IO_RECV ||
           e->from == HOST_IO_SEND)
    snprintf(name, sizeof name, "%s %llu B", op, (unsigned long long)e->dur);
  else
    snprintf(name, sizeof name, "%s", op);
  instant(f, tr, e->task, e->ts, "io", name);
  fprintf(f, ",\"args\":{\"op\":\"%s\",\"bytes\":%llu", op,
          (unsigned long long)e->dur);
  if (e->line < 0)
    fprintf(f, ",\"error\":\"%s\"", e->line == UV_EOF ? "EOF"
                                                    : uv_err_name(e->line));
  if (e->where) {
    fputs(",\"peer\":", f);
    put_string(f, e->where);
  }
  fputs("}}", f);
}

/* An HTTP transfer: an async slice from request to response (Perfetto
 * draws it on a track of its own) and an instant when it ends, with the
 * figures in its args. */
static void write_http(FILE *f, host_trace *tr, const trace_ev *e) {
  const char *method = e->where ? e->where : "?";
  const char *url = e->where ? method + strlen(method) + 1 : "?";
  const char *err = e->where ? url + strlen(url) + 1 : "";
  char name[64];
  if (*err)
    snprintf(name, sizeof name, "http %.16s failed", method);
  else
    snprintf(name, sizeof name, "http %.16s %d", method, (int)e->line);
  fprintf(f, "{\"ph\":\"b\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,"
          "\"cat\":\"http\",\"id\":\"http%zu\",\"name\":", e->task,
          us(tr, e->ts), (size_t)(e - tr->ev));
  put_string(f, url);
  fprintf(f, "},\n{\"ph\":\"e\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,"
          "\"cat\":\"http\",\"id\":\"http%zu\",\"name\":", e->task,
          us(tr, e->ts + e->dur), (size_t)(e - tr->ev));
  put_string(f, url);
  fputs("},\n", f);
  instant(f, tr, e->task, e->ts + e->dur, "http", name);
  fputs(",\"args\":{\"method\":", f);
  put_string(f, method);
  fputs(",\"url\":", f);
  put_string(f, url);
  fprintf(f, ",\"status\":%d,\"bytes\":%u,\"ms\":%.3f", (int)e->line,
          e->flow, (double)e->dur / 1e6);
  if (*err) {
    fputs(",\"error\":", f);
    put_string(f, err);
  }
  fputs("}}", f);
}

static void write_ev(FILE *f, host_trace *tr, const trace_ev *e) {
  switch (e->type) {
  case EV_STEP:
    fprintf(f, "{\"ph\":\"X\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,\"dur\":%.3f,"
            "\"cat\":\"step\",\"name\":", e->task, us(tr, e->ts),
            (double)e->dur / 1e3);
    if (e->where) {
      char name[300];
      snprintf(name, sizeof name, "Task-%u %s:%d", e->task, e->where,
               e->line);
      put_string(f, name);
    } else {
      fprintf(f, "\"Task-%u (ends)\"", e->task);
    }
    fputs("}", f);
    if (e->flow)
      fprintf(f, ",\n{\"ph\":\"f\",\"bp\":\"e\",\"pid\":1,\"tid\":%u,"
              "\"ts\":%.3f,\"id\":%u,\"cat\":\"wake\",\"name\":\"wake\"}",
              e->task, us(tr, e->ts), e->flow);
    break;
  case EV_WAKE:
    fprintf(f, "{\"ph\":\"s\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,\"id\":%u,"
            "\"cat\":\"wake\",\"name\":\"wake\"}", e->from, us(tr, e->ts),
            e->flow);
    if (!e->from)
      fprintf(f, ",\n{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":0,"
              "\"ts\":%.3f,\"cat\":\"loop\",\"name\":\"wake Task-%u "
              "(%s)\"}", us(tr, e->ts), e->task,
              e->line ? "timer" : "I/O or callback");
    break;
  case EV_CANCEL:
    instant(f, tr, e->task, e->ts, "cancel", "cancel");
    if (e->from)
      fprintf(f, ",\"args\":{\"by\":\"Task-%u\"}}", e->from);
    else
      fputs(",\"args\":{\"by\":\"loop\"}}", f);
    break;
  case EV_TIMER:
    instant(f, tr, e->task, e->ts, "timer",
            e->from ? "timer call_later" : "timer");
    fprintf(f, ",\"args\":{\"kind\":\"%s\",\"late_ms\":%.3f}}",
            e->from ? "call_later" : "deadline", (double)e->dur / 1e6);
    break;
  case EV_IO:
    write_io(f, tr, e);
    break;
  case EV_HTTP:
    write_http(f, tr, e);
    break;
  case EV_NAME:
    fprintf(f, "{\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"name\":\"thread_name\","
            "\"args\":{\"name\":", e->task);
    put_string(f, e->where);
    fputs("}}", f);
    break;
  }
}

void host_trace_finish(lasync_host *h) {
  host_trace *tr = h->trace;
  if (!tr) return;
  h->trace = NULL;
  FILE *f = fopen(tr->path, "w");
  if (!f) {
    char text[512];
    snprintf(text, sizeof text, "lasync: LASYNC_TRACE: cannot write '%s'",
             tr->path);
    host_warn(h, text);
  } else {
    size_t first = tr->n > tr->cap ? tr->n - tr->cap : 0;
    fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n"
          "{\"ph\":\"M\",\"pid\":1,\"tid\":0,\"name\":\"thread_name\","
          "\"args\":{\"name\":\"event loop\"}}", f);
    for (size_t i = first; i < tr->n; i++) {
      fputs(",\n", f);
      write_ev(f, tr, &tr->ev[i % tr->cap]);
    }
    fprintf(f, "\n],\"otherData\":{\"events_recorded\":%zu,"
            "\"events_kept\":%zu}}\n", tr->n, tr->n - first);
    fclose(f);
  }
  for (size_t i = 0; i < tr->cap && i < tr->n; i++)
    if (owns_text(&tr->ev[i])) free((char *)tr->ev[i].where);
  free(tr->ev);
  free(tr->flows);
  free(tr->path);
  free(tr);
}
