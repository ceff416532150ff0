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
 *   - instants for cancellations and for wake-ups that came from the loop
 *     (timers, I/O).
 *
 * Recording is a few stores per event into a fixed array of 40-byte
 * records (the oldest are overwritten when it is full: the file keeps the
 * last LASYNC_TRACE_EVENTS, 262144 by default); text is made only when the
 * file is written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

enum { EV_STEP, EV_WAKE, EV_CANCEL, EV_NAME };

typedef struct trace_ev {
  uint64_t ts;        /* uv_hrtime() */
  uint64_t dur;       /* EV_STEP: its duration */
  const char *where;  /* EV_STEP: the interned source, or NULL; EV_NAME:
                         the malloc'd name */
  uint32_t task;      /* the track */
  uint32_t flow;      /* EV_WAKE: the flow started; EV_STEP: ended */
  int32_t line;
  uint32_t from;      /* EV_WAKE: the waker's track (0: the loop) */
  unsigned char type;
} trace_ev;

struct host_trace {
  char *path;
  trace_ev *ev;
  size_t cap, n;      /* n: events recorded (the last cap are kept) */
  uint64_t t0;
  uint32_t next_flow;
};

static trace_ev *next_ev(host_trace *tr) {
  trace_ev *e = &tr->ev[tr->n % tr->cap];
  if (tr->n >= tr->cap && e->type == EV_NAME) free((char *)e->where);
  tr->n++;
  return e;
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
  e->flow = t->trace_flow;
  t->trace_flow = 0;
}

void host_trace_wake(lasync_host *h, host_task *t) {
  host_trace *tr = h->trace;
  host_task *from = h->current ? host_task_of(h->current) : NULL;
  trace_ev *e = next_ev(tr);
  e->type = EV_WAKE;
  e->ts = uv_hrtime();
  e->task = t->id;
  e->from = from ? from->id : 0;
  e->flow = t->trace_flow = ++tr->next_flow;
}

void host_trace_cancel(lasync_host *h, host_task *t) {
  trace_ev *e = next_ev(h->trace);
  e->type = EV_CANCEL;
  e->ts = uv_hrtime();
  e->task = t->id;
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
              "(timer or I/O)\"}", us(tr, e->ts), e->task);
    break;
  case EV_CANCEL:
    fprintf(f, "{\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,"
            "\"cat\":\"cancel\",\"name\":\"cancel\"}", e->task,
            us(tr, e->ts));
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
    if (tr->ev[i].type == EV_NAME) free((char *)tr->ev[i].where);
  free(tr->ev);
  free(tr->path);
  free(tr);
}
