/* Deadlines: a binary min-heap of host_timer pointers behind one uv_timer.
 * A timer per sleeping task would cost ~150 bytes and a syscall-free but
 * still O(log n) libuv heap node each; one heap of 8-byte slots is cheaper
 * and lets equal deadlines fire in FIFO order. */
#include <math.h>
#include <stdlib.h>

#include "host.h"

static int earlier(const host_timer *a, const host_timer *b) {
  return a->due < b->due || (a->due == b->due && (int32_t)(a->seq - b->seq) < 0);
}

static void place(lasync_host *h, uint32_t i, host_timer *tm) {
  h->heap[i] = tm;
  tm->slot = i;
}

static void sift_up(lasync_host *h, uint32_t i) {
  host_timer *tm = h->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!earlier(tm, h->heap[parent])) break;
    place(h, i, h->heap[parent]);
    i = parent;
  }
  place(h, i, tm);
}

static void sift_down(lasync_host *h, uint32_t i) {
  host_timer *tm = h->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= h->heap_len) break;
    if (c + 1 < h->heap_len && earlier(h->heap[c + 1], h->heap[c])) c++;
    if (!earlier(h->heap[c], tm)) break;
    place(h, i, h->heap[c]);
    i = c;
  }
  place(h, i, tm);
}

static void on_timer(uv_timer_t *handle);
static void on_grace(uv_timer_t *handle);

/* Sets the uv timer for the earliest deadline, in loop milliseconds,
 * rounding up so a timer never fires before its deadline; stops it when no
 * deadline is left (an armed timer keeps the loop alive).  `exact` re-arms
 * even when the timer is already set earlier.  A virtual or manual clock
 * never sets it for a deadline: time moves by jumps (below). */
static void arm(lasync_host *h, int exact) {
  if (h->clock_mode != HOST_CLOCK_REAL) return;
  if (h->heap_len == 0) {
    if (h->timer_armed_due) {
      uv_timer_stop(&h->timer);
      h->timer_armed_due = 0;
    }
    return;
  }
  uint64_t due = h->heap[0]->due;
  if (h->timer_armed_due && (h->timer_armed_due == due ||
                             (!exact && h->timer_armed_due < due)))
    return;
  /* back to uv_hrtime()'s scale, which uv_now() follows in milliseconds */
  int64_t real = (int64_t)due - h->clock_offset;
  uint64_t rdue = real > 0 ? (uint64_t)real : 0;
  uint64_t due_ms = rdue / 1000000 + (rdue % 1000000 != 0);
  uint64_t now_ms = uv_now(h->loop);
  h->timer_armed_due = due;
  uv_timer_start(&h->timer, on_timer, due_ms > now_ms ? due_ms - now_ms : 0,
                 0);
}

/* Takes tm out of the heap without touching the uv timer. */
static void heap_remove(lasync_host *h, host_timer *tm) {
  uint32_t i = tm->slot;
  tm->slot = HOST_TIMER_IDLE;
  host_timer *last = h->heap[--h->heap_len];
  if (i == h->heap_len) return;
  place(h, i, last);
  if (i > 0 && earlier(last, h->heap[(i - 1) / 2]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

/* Fires every timer due at host time `now`.  Due timers are moved out of
 * the heap before any fires (as libuv's uv__run_timers does): a fire may
 * start or stop timers, and the heap must not change under the loop that
 * pops it.  A timer stopped while waiting in the due list is taken out of
 * it (its entry becomes NULL).  Fires only queue work (wake a task, post a
 * callback, cancel a task), so this may run inside a task too (advance). */
static void fire_due(lasync_host *h, uint64_t now) {
  uint32_t n = 0;
  if (h->due_len) return; /* already firing (a fire that advanced the clock) */
  while (h->heap_len > 0 && h->heap[0]->due <= now) {
    if (n == h->due_cap) {
      uint32_t cap = h->due_cap ? h->due_cap * 2 : 64;
      host_timer **due = realloc(h->due, cap * sizeof *due);
      if (!due) break; /* the rest fire on the next turn (arm below) */
      h->due = due;
      h->due_cap = cap;
    }
    host_timer *tm = h->heap[0];
    heap_remove(h, tm);
    h->due[n] = tm;
    tm->slot = HOST_TIMER_DUE | n;
    h->due_len = ++n;
  }
  h->running++;
  for (uint32_t i = 0; i < n; i++) {
    host_timer *tm = h->due[i];
    if (!tm) continue; /* stopped by an earlier fire */
    h->due[i] = NULL;
    tm->slot = HOST_TIMER_IDLE;
    if (h->trace) host_trace_timer(h, host_callback_of(tm) != NULL, tm->due, now);
    tm->fire(h, tm);
    if (h->trace) host_trace_timer_end(h);
  }
  h->due_len = 0;
  h->running--;
}

static void on_timer(uv_timer_t *handle) {
  lasync_host *h = handle->data;
  h->timer_armed_due = 0;
  fire_due(h, host_now(h));
  arm(h, 0);
}

int host_timer_start(lasync_host *h, host_timer *tm, uint64_t due) {
  if (host_timer_armed(tm)) host_timer_stop(h, tm);
  if (h->stopped) return UV_ECANCELED;
  if (h->heap_len == h->heap_cap) {
    uint32_t cap = h->heap_cap ? h->heap_cap * 2 : 64;
    host_timer **heap = realloc(h->heap, cap * sizeof *heap);
    if (!heap) return UV_ENOMEM;
    h->heap = heap;
    h->heap_cap = cap;
  }
  tm->due = due;
  tm->seq = (uint32_t)h->timer_seq++;
  place(h, h->heap_len++, tm);
  sift_up(h, tm->slot);
  if (tm->slot == 0) arm(h, 0);
  return 0;
}

void host_timer_stop(lasync_host *h, host_timer *tm) {
  if (tm->slot == HOST_TIMER_IDLE) return;
  if (tm->slot & HOST_TIMER_DUE) { /* waiting to fire in on_timer */
    uint32_t i = tm->slot & ~HOST_TIMER_DUE;
    if (i < h->due_len && h->due[i] == tm) h->due[i] = NULL;
    tm->slot = HOST_TIMER_IDLE;
    return;
  }
  if (tm->slot >= h->heap_len || h->heap[tm->slot] != tm) {
    tm->slot = HOST_TIMER_IDLE; /* the heap is gone (host stopped) */
    return;
  }
  int was_first = tm->slot == 0;
  heap_remove(h, tm);
  if (was_first) arm(h, 1);
}

uint64_t host_deadline(lasync_host *h, double seconds) {
  uint64_t now = host_now(h);
  if (seconds != seconds) return now; /* callers reject NaN */
  if (seconds <= 0) {
    double past = ceil(-seconds * 1e9);
    return past >= (double)now ? 0 : now - (uint64_t)past;
  }
  double ns = ceil(seconds * 1e9);
  if (ns >= (double)(UINT64_MAX / 2)) return UINT64_MAX / 2;
  return now + (uint64_t)ns;
}

uint64_t host_deadline_at(lasync_host *h, double when) {
  if (when != when) return host_now(h); /* callers reject NaN */
  if (when <= 0) return 0;
  double ns = ceil(when * 1e9);
  if (ns >= (double)(UINT64_MAX / 2)) return UINT64_MAX / 2;
  return (uint64_t)ns;
}

int host_timers_init(lasync_host *h) {
  int rc = uv_timer_init(h->loop, &h->timer);
  if (rc) return rc;
  h->timer.data = h;
  h->open_handles++;
  host_list_init(&h->idle_waiters);
  return 0;
}

void host_timers_close(lasync_host *h) {
  free(h->heap);
  h->heap = NULL;
  h->heap_len = h->heap_cap = 0;
  free(h->due);
  h->due = NULL;
  h->due_len = h->due_cap = 0;
  uv_close((uv_handle_t *)&h->timer, host_handle_closed);
}

/* ---- the virtual clock ---------------------------------------------------
 *
 * A virtual clock jumps to the next deadline as soon as nothing can run
 * (Trio's MockClock with autojump): no task or callback is ready, and a
 * poll for I/O that came after the loop went quiet found nothing that
 * woke one.  The uv timer, which the virtual clock does not need for
 * deadlines, becomes the "quiet time" timer: it keeps the loop alive while
 * a deadline is pending and bounds the poll, so I/O that arrives within
 * autojump_ns of real time is seen before the clock moves.  While a libuv
 * request is in flight (a file operation on the thread pool, a DNS lookup,
 * a connect, a write the kernel has not taken) it waits at least
 * HOST_REQUEST_GRACE_NS (250 ms, which a loaded machine needs for a
 * thread-pool job): such work ends by itself, usually at once.  The wait
 * counts from the last step that ended (host_clock_progress), not from
 * when the loop went quiet: read_file is four thread-pool jobs in a row,
 * which a loaded machine (ASan, ctest -j6 on two busy cores) did not
 * finish within one grace, and the clock jumped past a 1 s wait_for. */
#define HOST_REQUEST_GRACE_NS 250000000u

static void on_grace(uv_timer_t *handle) {
  lasync_host *h = handle->data;
  h->grace_over = 1;
  host_keep_turning(h); /* the poll after this must not block */
}

static void quiet_end(lasync_host *h) {
  if (h->quiet) uv_timer_stop(&h->timer);
  h->quiet = h->grace_over = 0;
}

static void quiet_wait(lasync_host *h, uint64_t ns) {
  h->grace_over = 0;
  uv_timer_start(&h->timer, on_grace, ns / 1000000 + (ns % 1000000 != 0), 0);
}

static uint64_t quiet_needed(lasync_host *h) {
  uint64_t need = h->autojump_ns;
  /* active_reqs is uv_loop_t's own count, what uv_loop_alive() reads */
  if (h->loop->active_reqs.count && need < HOST_REQUEST_GRACE_NS)
    need = HOST_REQUEST_GRACE_NS;
  return need;
}

void host_clock_before_batch(lasync_host *h) {
  if (h->clock_mode != HOST_CLOCK_VIRTUAL) return;
  if (h->ready_head || h->heap_len == 0) {
    quiet_end(h);
    return;
  }
  if (!h->quiet || !h->grace_over) return;
  uint64_t quiet = uv_hrtime() - h->quiet_since, need = quiet_needed(h);
  if (quiet < need) {
    quiet_wait(h, need - quiet);
    return;
  }
  quiet_end(h);
  /* a saturated deadline (sleep(1e300)) is "never", as on the real clock */
  if (h->heap[0]->due >= UINT64_MAX / 2) return;
  if (h->heap[0]->due > h->vnow) h->vnow = h->heap[0]->due;
  fire_due(h, h->vnow);
}

void host_clock_progress(lasync_host *h) {
  if (h->clock_mode == HOST_CLOCK_VIRTUAL && h->quiet)
    h->quiet_since = uv_hrtime(); /* before_batch waits the rest again */
}

void host_clock_after_batch(lasync_host *h) {
  if (h->clock_mode != HOST_CLOCK_VIRTUAL || h->quiet) return;
  if (h->ready_head || h->heap_len == 0 || h->stopped) return;
  if (h->heap[0]->due >= UINT64_MAX / 2) return; /* never: nothing to jump to */
  h->quiet = 1;
  h->quiet_since = uv_hrtime();
  quiet_wait(h, h->autojump_ns);
}

void host_clock_set(lasync_host *h, int mode, uint64_t autojump_ns) {
  if (h->stopped) return;
  quiet_end(h);
  if (h->clock_mode == HOST_CLOCK_REAL && mode != HOST_CLOCK_REAL) {
    /* from the next whole second: asyncio.time() then reads whole numbers
     * and differences of whole seconds are exact in a double */
    h->vnow = (host_now(h) / 1000000000u + 1) * 1000000000u;
    uv_timer_stop(&h->timer);
    h->timer_armed_due = 0;
  } else if (h->clock_mode != HOST_CLOCK_REAL && mode == HOST_CLOCK_REAL) {
    /* the real clock goes on from the virtual time, never back */
    h->clock_offset = (int64_t)(h->vnow - uv_hrtime());
  }
  h->clock_mode = (unsigned char)mode;
  h->autojump_ns = autojump_ns;
  if (mode == HOST_CLOCK_REAL) {
    arm(h, 1);
  } else if (mode == HOST_CLOCK_VIRTUAL && !h->ready_head) {
    host_clock_after_batch(h); /* maybe quiet already */
  }
}

void host_clock_advance(lasync_host *h, uint64_t ns) {
  if (h->clock_mode == HOST_CLOCK_REAL || h->stopped) return;
  h->vnow = ns > UINT64_MAX / 2 - h->vnow ? UINT64_MAX / 2 : h->vnow + ns;
  fire_due(h, h->vnow);
}
