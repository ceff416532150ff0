/* Runtime-internal interface shared by host/ and bindings/.
 *
 * The model: a task is a Lua thread plus a host_task record (the record is
 * the memory of the Task userdata).  A task suspends by parking: it
 * registers itself with whatever will wake it (a timer, another task, a
 * queue...), records one cancel hook, and yields.  Whoever completes the
 * wait calls host_wake(), which only queues the task; the scheduler's check
 * callback is the one place that calls lua_resume.  */
#ifndef LASYNC_HOST_H
#define LASYNC_HOST_H

#include <stdint.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>

#include "lasync.h"
#include "list.h"

#if LUA_VERSION_RELEASE_NUM >= 50406
#define host_closethread(L, from) lua_closethread((L), (from))
#else
#define host_closethread(L, from) lua_resetthread(L)
#endif

typedef struct host_task host_task;

/* ---- where, in the user's code (where.c) -------------------------------- */

/* A place in the user's Lua code; src is kept alive by the state (and
 * never freed while it lives), so a record may keep it. */
typedef struct host_where {
  const char *src; /* the chunk's short source, or NULL: unknown */
  int line;
} host_where;

/* The first frame at or above `level` of L's stack that is the user's Lua
 * code (not C, not asyncio's own Lua parts); its level, or -1.  ar holds
 * "Sl" of that frame. */
int host_where_frame(lua_State *L, int level, lua_Debug *ar);
/* Records where L's running code is (its first user frame) in w: cheap
 * enough for every task spawn.  The one "created at" record: tasks keep
 * theirs in host_task.created; other records may keep one too. */
void host_where_note(lasync_host *h, lua_State *L, host_where *w);
/* Pushes "src:line" (or "?"); [-0, +1] */
const char *host_push_where(lua_State *L, const host_where *w);
/* Pushes "src:line" of the first user frame of the suspended thread co. */
const char *host_push_where_of(lua_State *L, lua_State *co);
/* Writes "in 'get' at x.lua:3" for the suspended thread co (the function
 * it waits in and the user's line that called it) into buf; allocates
 * nothing, so it may run in a libuv callback. */
void host_where_waiting(lua_State *co, char *buf, size_t size);
/* Pushes "in 'get' at x.lua:3" for the suspended thread co: the function
 * it waits in and the user's line that called it. */
const char *host_push_waiting_in(lua_State *L, lua_State *co);

/* ---- ready queue ------------------------------------------------------ */

/* Anything the scheduler runs on its turn: a task step or a call_soon
 * callback.  One FIFO keeps them in the order they were made ready. */
typedef struct host_ready {
  struct host_ready *next;
  void (*run)(lasync_host *h, struct host_ready *r);
} host_ready;

void host_ready_push(lasync_host *h, host_ready *r);
/* Keeps the loop's poll from blocking until the next check callback. */
void host_keep_turning(lasync_host *h);
/* Parks t until no other task or callback is ready after a poll
 * (asyncio.testing.wait_idle). */
int host_wait_idle(lua_State *L, host_task *t);

/* A ready-queue entry that coalesces wake-ups (a server's accepted
 * connections, a signal's deliveries, a callback): posting it while it is
 * queued does nothing; `run` sees everything that arrived before it ran. */
typedef struct host_posted {
  host_ready ready;
  void (*run)(lasync_host *h, struct host_posted *p);
  unsigned char queued;
} host_posted;

void host_posted_init(host_posted *p, void (*run)(lasync_host *, host_posted *));
void host_post(lasync_host *h, host_posted *p);

/* ---- timers ----------------------------------------------------------- */

#define HOST_TIMER_IDLE UINT32_MAX
#define HOST_TIMER_DUE 0x80000000u /* slot tag: out of the heap, about to fire */

/* A deadline in the host's heap; all of them share one uv_timer. */
typedef struct host_timer {
  uint64_t due;  /* host_now() nanoseconds */
  uint32_t seq;  /* equal deadlines fire first-in, first-out (compared
                    modulo 2^32: timers with one deadline are never 2^31
                    starts apart); 32 bits keep a task record 8 bytes
                    smaller, the timer being in every one */
  uint32_t slot; /* index in the heap, HOST_TIMER_DUE|i in the due list,
                    HOST_TIMER_IDLE when not armed */
  void (*fire)(lasync_host *h, struct host_timer *tm);
} host_timer;

static inline void host_timer_init(host_timer *tm,
                                   void (*fire)(lasync_host *, host_timer *)) {
  tm->slot = HOST_TIMER_IDLE;
  tm->fire = fire;
  tm->due = tm->seq = 0;
}
static inline int host_timer_armed(const host_timer *tm) {
  return tm->slot != HOST_TIMER_IDLE;
}
/* Returns 0 or UV_ENOMEM. */
int host_timer_start(lasync_host *h, host_timer *tm, uint64_t due);
void host_timer_stop(lasync_host *h, host_timer *tm);
/* Converts seconds from now to a deadline, saturating for huge values.
 * A negative delay gives a deadline in the past (so the heap keeps the
 * order of call_later(-2) before call_later(-1), as asyncio does). */
uint64_t host_deadline(lasync_host *h, double seconds);
/* The deadline at loop time `when` (asyncio.time() seconds): converted
 * on its own, not through the time left, so equal `when`s give equal
 * deadlines (and fire in the order they were set). */
uint64_t host_deadline_at(lasync_host *h, double when);
int host_timers_init(lasync_host *h);
/* The one clock every deadline is on (asyncio.time(), sleep, call_at,
 * timeouts), in nanoseconds.  On the real clock it is uv_hrtime() shifted
 * by what virtual time added before, so it never goes back; on a virtual
 * or manual clock it moves only when the host jumps it (asyncio.testing). */
enum { HOST_CLOCK_REAL = 0, HOST_CLOCK_VIRTUAL, HOST_CLOCK_MANUAL };
static inline uint64_t host_now(const lasync_host *h);
/* Switches the clock; the time goes on from where it is.  autojump_ns is
 * the real quiet time a virtual clock waits before it jumps. */
void host_clock_set(lasync_host *h, int mode, uint64_t autojump_ns);
/* Moves a virtual or manual clock forward by ns and fires what is due. */
void host_clock_advance(lasync_host *h, uint64_t ns);
/* The scheduler's check callback tells the clock where the turn is:
 * before the batch (after the poll) and after it. */
void host_clock_before_batch(lasync_host *h);
void host_clock_after_batch(lasync_host *h);
/* A libuv request of a chain ended (a step of a file operation): work in
 * flight moved, so a virtual clock's quiet time counts from now. */
void host_clock_progress(lasync_host *h);
void host_timers_close(lasync_host *h);

/* ---- tasks ------------------------------------------------------------ */

/* A done-listener: C code told synchronously when a task finishes
 * (await, gather, wait...).  The listener unlinks itself before fn runs. */
typedef struct host_listener {
  host_link link;
  void (*fn)(struct host_listener *l, host_task *done);
} host_listener;

/* Called when a parked task is cancelled.  woken is 0 while the task is
 * still registered (the hook must unregister it) and 1 when it was already
 * woken but has not run yet (the hook undoes whatever the wake gave it).
 * Return 1 only to say "I passed the cancellation on and will wake the
 * task myself" (await on a task does that); 0 delivers CancelledError now. */
typedef int (*host_cancel_fn)(host_task *t, int woken);
/* Continuation run when a parked task resumes (after the cancel check). */
typedef int (*host_k_fn)(lua_State *L, lua_KContext ctx);

/* Per-task statistics, kept always (about one uv_hrtime() per wake and
 * two per step): uv_hrtime() nanoseconds.  steps and wakes are in the
 * task record, beside its other 32-bit fields. */
typedef struct host_task_stats {
  uint64_t created;    /* when it was spawned */
  union {              /* a task that has ended is never ready again */
    uint64_t queued;   /* while pending: when it last became ready */
    uint64_t ended;    /* once done (state TASK_DONE): when it ended */
  };
  uint64_t last_wake;  /* when it was last woken, 0: never */
  uint64_t busy;       /* time spent running its steps */
  uint64_t scheduled;  /* time spent ready but not yet running */
} host_task_stats;

enum { TASK_PENDING = 0, TASK_DONE = 1 };
enum { OUTCOME_NONE = 0, OUTCOME_OK, OUTCOME_FAILED, OUTCOME_CANCELLED };

enum {
  TF_STARTED = 1 << 0,     /* the body has been resumed once */
  TF_PARKED = 1 << 1,      /* suspended in host_park */
  TF_QUEUED = 1 << 2,      /* on the ready queue */
  TF_MUST_CANCEL = 1 << 3, /* deliver CancelledError at the next resume/park */
  TF_THROW = 1 << 4,       /* the value pushed for the resume is an error */
  TF_RETRIEVED = 1 << 5,   /* the failure was looked at by someone */
  TF_HAS_MSG = 1 << 6,     /* has a cancel message (host_task_rare) */
  TF_CANCELLING = 1 << 7,   /* inside its cancel hook (await cycles) */
  TF_DEFER_CANCEL = 1 << 8, /* woken with a result: cancel at the next park */
  TF_NO_STACK = 1 << 9,     /* host_wake had no room for the values: raise */
  TF_WOKE_SELF = 1 << 10,   /* woken in its own step: ready at its end */
  TF_CTX_DATA = 1 << 11,    /* parked with ctx == data: k gets wait_data */
  TF_CTX_SLOT = 1 << 12,    /* parked with another ctx: on co at `base` */
  TF_MSG_FIXED = 1 << 13,   /* a cancel reached its wait: later ones keep
                             * that message (as asyncio: the awaited future
                             * got it) until the task resumes */
  TF_HAS_REPORT = 1 << 14,  /* has a failure's report (host_task_rare) */
  TF_UNDO_LATE = 1 << 15    /* set by a primitive before host_park: if
                             * woken, then cancelled, its cancel hook runs
                             * when it resumes, not in cancel() (asyncio:
                             * the waiter hands its turn on from its own
                             * except clause, a loop turn later); a hook
                             * called un-woken that leaves it set is
                             * called again, woken, at resume */
};

/* The record is most of what an idle task costs besides its Lua thread
 * (docs/performance.md, W2): pointers first, then the 32-bit fields
 * together, so that no padding is left. */
struct host_task {
  host_ready ready;        /* must stay first: run = task step */
  union {                  /* a task waits for one thing at a time */
    host_timer timer;        /* sleep() deadline */
    host_listener await_node;/* awaiting one task */
  };
  host_link qlink;         /* in a waitq (queue, lock, event...) */
  host_link awaiters;      /* host_listener list */
  lasync_host *h;
  lua_State *co;
  host_cancel_fn wait_cancel;
  void *wait_data;
  host_task_stats stats;   /* tokio-console's per-task figures */
  /* where create_task was called (where.c), a host_where kept as two
   * fields: the line sits among the 32-bit ones, not in the 4 bytes of
   * padding a host_where carries (host_task_created gives it whole) */
  const char *created_src;
  int created_line;
  int ref;                 /* slot in the host's pending table */
  int base;                /* co's stack top below the values its next
                              resume passes (its arguments: the wake's) */
  int ncancels;            /* Python's cancelling() */
  uint32_t steps, wakes;   /* stats: resumes, and wake-ups */
  uint32_t id;
  unsigned char state;
  unsigned char outcome;
  unsigned short flags;
  /* Not here, to keep the record at 184 bytes (the Task userdata in the
   * pool's 240-byte class): the cancel message and the failure's report
   * (task.c's rare values, TF_HAS_MSG / TF_HAS_REPORT), the wake flow a
   * traced task's next step ends (trace.c, by pending slot). */
};

#define HOST_TASK_MT "asyncio.Task"

static inline host_where host_task_created(const host_task *t) {
  host_where w = {t->created_src, t->created_line};
  return w;
}
/* Pushes "src:line" where t was created (or "?").  [-0, +1] */
static inline const char *host_push_created(lua_State *L, const host_task *t) {
  host_where w = host_task_created(t);
  return host_push_where(L, &w);
}

/* A task's rare values, kept outside the record in host tables keyed by
 * its address (task.c): the message of cancel(msg), the report of its
 * failure (origin.c). */
enum { HOST_RARE_MSG, HOST_RARE_REPORT };
/* Pushes t's value `which`, or nil (returns 0 then).  [-0, +1] */
int host_task_push_rare(lua_State *L, host_task *t, int which);
/* Sets t's value `which` to the value on top (popped); nil removes it.
 * Setting a new one may raise (out of memory); removing never does.
 * [-1, +0] */
void host_task_set_rare(lua_State *L, host_task *t, int which);

/* The running task of thread L, or NULL (plain coroutines and the main
 * thread are not tasks).  Task threads keep their record pointer in
 * LUA_EXTRASPACE. */
static inline host_task *host_task_of(lua_State *L) {
  return *(host_task **)lua_getextraspace(L);
}
/* The running task, or raises "<fname>() called outside a task" (or
 * "cannot suspend here").  Inline: every waiting primitive starts with it. */
host_task *host_check_task_fail(lua_State *L, const char *fname);
static inline host_task *host_check_task(lua_State *L, const char *fname) {
  host_task *t = host_task_of(L);
  if (t && lua_isyieldable(L)) return t;
  return host_check_task_fail(L, fname);
}
host_task *host_check_task_arg(lua_State *L, int idx);
host_task *host_test_task_arg(lua_State *L, int idx);

/* Creates a task for the function at idx-nargs... : pops fn and its nargs
 * arguments from L, pushes the Task object. */
host_task *host_task_spawn(lasync_host *h, lua_State *L, int nargs);
/* Before t's first step: the function on top of L (popped) replaces its
 * message handler, which must record the failure as the default one does
 * (host_task_record_failure). */
void host_task_set_msgh(host_task *t, lua_State *L);
void host_task_push(lua_State *L, host_task *t);
/* The scheduler's step for a task (the ready entry's run). */
void host_task_step(lasync_host *h, host_ready *r);
/* Ends t with the values on its thread as its outcome: listeners, done
 * callbacks, and the anchor go.  Runs inside the batch's protection. */
void host_task_finish(lasync_host *h, host_task *t);
/* Ends t with the error value on top of L (its thread or cbL). */
void host_task_fail(lasync_host *h, host_task *t, lua_State *L);
/* Pushes a CancelledError carrying t's cancel message. */
void host_task_push_cancelled(lua_State *L, host_task *t);
/* Pushes the name of the Task at idx (set_name's, or "Task-<id>"). */
void host_task_push_name(lua_State *L, int idx);
/* Cancels target on behalf of `from`, passing from's cancel message on
 * (asyncio's Task.cancel(msg) cancels the awaited future with msg). */
int host_task_cancel_for(host_task *target, host_task *from);
/* Makes the Task metatable (__gc, __tostring); asyncio adds the methods. */
void host_task_types(lua_State *L);

/* Parks the running task t (which is L's task); use as
 * `return host_park(L, t, cancel, data, k, ctx);`.  k may be NULL: then the
 * values the waker pushed are returned.  A ctx equal to data (the usual
 * case) is not stored twice: k gets t->wait_data as the resume finds it. */
int host_park(lua_State *L, host_task *t, host_cancel_fn cancel, void *data,
              host_k_fn k, lua_KContext ctx);
/* Queues a parked task with the n values on top of `from` (moved). */
void host_wake(host_task *t, lua_State *from, int n);
/* Queues a parked task so that it raises the value on top of `from`. */
void host_wake_error(host_task *t, lua_State *from);
/* Python's Task.cancel(); msgidx 0 for no message.  Returns 1 if the
 * request was taken (the task was pending). */
int host_task_cancel(host_task *t, lua_State *L, int msgidx);
/* Pushes the outcome of a finished task: its results (returns the count),
 * or raises its error.  Marks the failure as retrieved. */
int host_task_results(lua_State *L, host_task *t);
/* Pushes the first result (or nil) of a finished task, or its error value
 * if it failed (sets *failed). */
void host_task_first(lua_State *L, host_task *t, int *failed);
void host_task_listen(host_task *t, host_listener *l,
                      void (*fn)(host_listener *, host_task *));
void host_task_unlisten(host_listener *l);
/* ---- error origins (origin.c) ---- */
/* Records the report of pending task t's failure with the error at err:
 * message and traceback of thread `where` from `level`, continued by the
 * origin noted for that error (host_task_note_origin); sets the error's
 * field `traceback` when it is a table.  [-0, +0] */
void host_task_record_failure(lua_State *L, host_task *t, lua_State *where,
                              int level, int err);
/* Running task `me` (L's) re-raises the failure of `from` (error value at
 * err), at the place `level` of its stack: if `me` fails with it, its
 * report continues from's, and a table error's `traceback` says so now. */
void host_task_note_origin(lua_State *L, host_task *me, int err,
                           host_task *from, int level);
/* Pushes the report (message + traceback) of the Task at idx, or nil. */
void host_task_push_report(lua_State *L, int idx);
void host_task_push_report_of(lua_State *L, host_task *t);
/* Pushes the traceback part of t's report (no message), or nil. */
void host_task_push_traceback_of(lua_State *L, host_task *t);
/* Lets go of t's report (task_gc). */
void host_task_drop_report(lua_State *L, host_task *t);
/* ---- call_soon -------------------------------------------------------- */

#define HOST_HANDLE_MT "asyncio.Handle"

/* A scheduled callback, the memory of a Handle userdata. */
typedef struct host_callback {
  host_posted post;
  host_timer timer;        /* call_later / call_at */
  lasync_host *h;
  double when;             /* when(): the loop time as given (asyncio) */
  int ref;                 /* registry anchor until done */
  unsigned char cancelled, ran, timed; /* timed: call_later / call_at */
} host_callback;

/* [fn args...] -> [Handle]; not yet queued (host_post it, or start its
 * timer). */
host_callback *host_callback_new(lasync_host *h, lua_State *L, int nargs);
void host_callback_cancel(host_callback *c);
/* The callback whose call_later/call_at deadline tm is, or NULL. */
host_callback *host_callback_of(host_timer *tm);
/* call_soon for C: pops fn and nargs arguments from L. */
void host_call_soon(lasync_host *h, lua_State *L, int nargs);
/* Makes the Handle metatable (__gc); asyncio adds the methods. */
void host_callback_type(lua_State *L);
/* Cancels every pending task (used at shutdown). */
void host_cancel_all(lasync_host *h, lua_State *L);
/* Pushes the table of pending tasks (values are Tasks; other values are
 * luaL_ref's free list). */
void host_push_pending(lua_State *L, lasync_host *h);
/* Pushes a new weak-keyed table, also stored in the registry at key. */
void host_new_weak_registry(lua_State *L, const char *key);
/* Pushes the task's extras table (name, done callbacks, the report of its
 * failure), made on demand when `create`; pushes nil otherwise. */
void host_task_extras(lua_State *L, int task_idx, int create);

/* ---- errors ----------------------------------------------------------- */

/* Error classes live in the registry by name; instances are tables whose
 * metatable is their class. */
void host_errors_open(lua_State *L);
/* Creates (or returns the existing) class `name` deriving from `parent`
 * (NULL: asyncio.Error); pushes it. */
void host_error_class(lua_State *L, const char *name, const char *parent);
void host_error_push_class(lua_State *L, const char *name);
/* Pushes a new instance of class `name` with the formatted message. */
void host_error_new(lua_State *L, const char *name, const char *fmt, ...);
int host_error_raise(lua_State *L, const char *name, const char *fmt, ...);
/* Is the value at idx an instance of `name` (or of a subclass)? */
int host_error_is(lua_State *L, int idx, const char *name);
int host_is_cancelled_error(lua_State *L, int idx);
/* The one builder of OS errors, for every binding (streams, processes,
 * fs, http's save): pushes an instance of the OSError subclass Python
 * gives the libuv error `code` (negative): ENOENT -> FileNotFoundError,
 * ECONNREFUSED -> ConnectionRefusedError, ... (docs/errors.md).  Message
 * "ENOENT: no such file or directory, open '/x'"; fields code ("ENOENT"),
 * errno (2), op ("open") and, when not NULL, path (the file, address or
 * name the operation was on) and dest (rename's target). */
void host_push_oserror(lua_State *L, int code, const char *op,
                       const char *path);
void host_push_oserror_dest(lua_State *L, int code, const char *op,
                            const char *path, const char *dest);
int host_raise_oserror(lua_State *L, int code, const char *op,
                       const char *path);

/* ---- the host --------------------------------------------------------- */

/* ---- debug mode (debug.c) ---- */
typedef struct host_debug host_debug;
/* Turns debug mode on or off; slow > 0 sets slow_callback_duration (0.1 s
 * by default).  Starts or stops the watchdog thread.  0 or a UV_ code. */
int host_debug_set(lasync_host *h, int on, double slow);
double host_debug_slow(lasync_host *h);
/* Is debug mode on? */
int host_debug_on(lasync_host *h);
/* Step tracking for the inspector (inspect.c), without debug reports. */
int host_debug_inspect(lasync_host *h, int on);
/* From another thread: when a step is running, writes "the loop is
 * blocked for N seconds by <task>" and where (a hook takes the traceback;
 * waits up to `wait` seconds for it) into buf and returns 1; else 0. */
int host_debug_blocked(lasync_host *h, char *buf, size_t size, double wait);
void host_debug_free(lasync_host *h);
/* Around each task step and callback, in debug mode (h->debug). */
void host_debug_step_begin(host_debug *d, lua_State *L);
void host_debug_step_end(host_debug *d, lua_State *L);
/* Reports the tasks still pending (host_drain, in debug mode). */
void host_debug_report_pending(lasync_host *h, lua_State *L);
/* Reports the handles still open (lasync_stop, in debug mode). */
void host_debug_report_open(lasync_host *h);
/* A warning through the reporter (not an error: no last error). */
void host_warn(lasync_host *h, const char *text);

/* ---- the trace timeline (trace.c) ---- */
typedef struct host_trace host_trace;
/* Starts recording for `path` (written by host_trace_finish).  0 or UV_. */
int host_trace_start(lasync_host *h, const char *path);
/* Events, recorded only when h->trace is set. */
void host_trace_step(lasync_host *h, host_task *t, uint64_t start,
                     uint64_t end);
void host_trace_wake(lasync_host *h, host_task *t);
void host_trace_cancel(lasync_host *h, host_task *t);
void host_trace_name(lasync_host *h, host_task *t, const char *name);
/* A timer is about to fire (timer.c): a deadline (sleep, timeouts: the
 * instant goes on the track of the task it wakes or cancels) or a
 * call_later callback; `due` and `now` on the host clock. */
void host_trace_timer(lasync_host *h, int callback, uint64_t due,
                      uint64_t now);
/* ...and has fired: later wake-ups are not its. */
void host_trace_timer_end(lasync_host *h);
/* I/O that completed or was handed to the kernel, for task t (NULL: the
 * running task, or the loop): `status` 0 or a libuv error (UV_EOF for a
 * read at the end); `peer` is copied. */
enum { HOST_IO_READ, HOST_IO_WRITE, HOST_IO_WRITTEN, HOST_IO_ACCEPT,
       HOST_IO_CONNECT, HOST_IO_RECV, HOST_IO_SEND };
void host_trace_io(lasync_host *h, host_task *t, int op, uint64_t bytes,
                   int status, const char *peer);
/* The same with the peer as an address (NULL: none). */
void host_trace_io_addr(lasync_host *h, host_task *t, int op, uint64_t bytes,
                        int status, const struct sockaddr *sa);
/* An HTTP transfer ended (its response came, or it failed with `error`);
 * `start`: uv_hrtime() when it was sent (0: unknown).  Strings copied. */
void host_trace_http(lasync_host *h, host_task *t, uint64_t start,
                     const char *method, const char *url, long status,
                     uint64_t bytes, const char *error);
/* Writes the file and stops recording (the host stops). */
void host_trace_finish(lasync_host *h);

/* ---- the inspector (inspect.c) ---- */
typedef struct host_inspect host_inspect;
/* Listens for `lasync ps/pstree` on the per-user socket.  0 or a UV_ code. */
int host_inspect_start(lasync_host *h);
void host_inspect_stop(lasync_host *h);
/* The socket path of process pid (the directory is made, 0700, if it is
 * /tmp/lasync-UID).  0 or a UV_ code. */
int host_inspect_path(long pid, char *buf, size_t size);
/* lasync ps/pstree/trace-view: the command-line tools (tools.c); returns
 * the exit status, or -1 when argv is not a tool's command line. */
int host_tools_main(int argc, char **argv);

typedef struct host_pool host_pool;
/* A new state with the host's allocator (*pool is what to free after
 * lua_close, possibly NULL), panic and warning functions. */
lua_State *host_newstate(host_pool **pool);
/* Holds each of fds 0-2 that is closed with a descriptor that acts as a
 * closed one, so that the loop's own descriptors never take them
 * (stdfds.c).  Before uv_loop_init. */
void host_hold_std_fds(void);
void host_pool_free(host_pool *pool);

struct lasync_host {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  lua_State *L;           /* the state's main thread */
  lua_State *cbL;         /* thread that runs call_soon callbacks */
  int cbL_ref;
  uv_check_t check;       /* runs the ready queue after each poll */
  uv_idle_t idle;         /* keeps poll from blocking while work is ready */
  uv_timer_t timer;       /* the one timer behind the deadline heap */
  host_ready *ready_head;
  host_ready **ready_tail;
  host_timer **heap;
  uint32_t heap_len, heap_cap;
  host_timer **due;       /* timers taken out of the heap to fire now */
  uint32_t due_len, due_cap;
  uint64_t timer_seq;
  uint64_t timer_armed_due; /* what the uv timer is set for, 0 if stopped */
  /* the clock (timer.c): host time is uv_hrtime() + clock_offset on the
   * real clock, vnow on a virtual or manual one */
  int64_t clock_offset;
  uint64_t vnow;
  uint64_t autojump_ns;   /* real quiet time before a virtual jump */
  uint64_t quiet_since;   /* uv_hrtime() when the loop went quiet */
  unsigned char clock_mode;
  unsigned char quiet;      /* virtual: nothing ready since quiet_since */
  unsigned char grace_over; /* virtual: the quiet time has passed */
  host_link idle_waiters; /* tasks in asyncio.testing.wait_idle() */
  int tasks_ref;          /* registry ref of the pending table: each
                             pending Task anchored at its own slot */
  int task_mt_ref;        /* registry ref of the Task metatable (spawn sets
                             it without hashing its name) */
  int pending_free;       /* first free slot of the pending table, 0: none */
  int pending_size;       /* slots of the pending table ever used */
  lua_Integer next_task_id;
  size_t npending;
  /* Clock readings a step leaves for what comes next (sched.c), 0: none.
   * A uv_hrtime() costs about 30 ns, and a task takes 7 of them from spawn
   * to end without these: step_chain is the end of a step that parked,
   * the start of the next one when nothing ran between; step_end is the
   * end of a task's last step, its end time (task_end takes it). */
  uint64_t step_chain, step_end;
  host_task *run_target;  /* the task host_run_task runs the loop for */
  int open_handles;       /* internal handles not yet closed */
  int owns_loop, owns_state;
  int running;            /* inside a callback of ours */
  lua_State *volatile current; /* the thread running Lua code for us now
                             (a task, or cbL in a callback), or NULL: where
                             the binary's SIGINT handler sets its hook */
  unsigned char run_sigint; /* the outermost asyncio.run (and
                             lasync_run_until_done) takes Ctrl-C: asyncio.so's
                             own host, or lasync_handle_sigint (run_sigint.c) */
  volatile int sigint_handlers; /* add_signal_handler("SIGINT") watchers:
                             Ctrl-C is theirs then, not asyncio.run's */
  /* shutdown: see host.c */
  unsigned char stopping, stopped, state_closing, state_gone, app_done,
      loop_closed, in_free;
  unsigned libs;          /* LASYNC_LIB_* opened */
  host_link closeables;   /* bindings' resources to close at stop */
  char *last_error;
  const char *where_last; /* where.c: the last interned source */
  const char *where_source; /* where.c: its chunk's source string (anchored),
                               or NULL */
  /* The task t awaits (task:await(), asyncio.run inside a task), or NULL;
   * set by the task bindings, for the places that follow a chain of
   * awaits (deadlock messages, the call graph). */
  host_task *(*awaiting)(host_task *t);
  char deadlock_where[128];
  host_debug *debug;      /* debug mode's watchdog, or NULL (debug.c) */
  host_inspect *inspect;  /* the ps/pstree socket, or NULL (inspect.c) */
  host_trace *trace;      /* LASYNC_TRACE's recorder, or NULL (trace.c) */
  /* Pushes the answer to an inspector's command ("ps", "pstree"); set by
   * the bindings (the tables need the call graph's knowledge). */
  void (*inspect_answer)(lasync_host *h, lua_State *L, const char *cmd); /* where the task host_run_task gave up on
                               waited ("in 'get' at x.lua:3") */
  unsigned long nreports;
  host_pool *pool;         /* the owned state's allocator, or NULL */
  lasync_report_fn report;
  void *report_ud;
};

/* A resource of a binding (a server, a session...) that lasync_stop must
 * close; close() must not run Lua.  Remove it when it closes by itself. */
typedef struct host_closeable {
  host_link link;
  void (*close)(struct host_closeable *c);
} host_closeable;
void host_closeable_add(lasync_host *h, host_closeable *c);
void host_closeable_remove(host_closeable *c);

/* Runs the loop (from outside it) until t ends.  If nothing is left that
 * could ever wake t, cancels it, lets it end and returns 1. */
int host_run_task(lasync_host *h, host_task *t, lua_State *L);
/* Cancels every task and runs the loop until none is pending or nothing
 * can move (a bounded number of turns). */
void host_drain(lasync_host *h, lua_State *L);
void host_finish_stop(lasync_host *h);
/* host_finish_stop once a stopping host has nothing left to run. */
void host_stop_if_idle(lasync_host *h);

/* Makes the metatable `tname` once: `methods` becomes its __index table and
 * `meta` its metamethods (either may be NULL); both get the nup values on
 * top of the stack as upvalues.  [-nup, +0] */
void host_new_type(lua_State *L, const char *tname, const luaL_Reg *methods,
                   const luaL_Reg *meta, int nup);

/* Removes every element of the list (a sequence) at `list` that is raw
 * equal to the value at `value`, keeping the others' order; returns how
 * many went.  [-0, +0] */
lua_Integer host_list_remove_value(lua_State *L, int list, int value);
/* Is the value at idx a function, or has it a __call metamethod? */
int host_is_callable(lua_State *L, int idx);
/* Raises "bad argument #idx to 'f' (function expected, got T)" unless it
 * is callable. */
void host_check_callable(lua_State *L, int idx);
/* A number of seconds at idx, refused if NaN ("<what> is NaN"). */
double host_check_seconds(lua_State *L, int idx, const char *what);
/* The same for an optional argument: returns 0 (nothing set) for nil. */
int host_opt_seconds(lua_State *L, int idx, const char *what, double *out);

/* Raises "bad argument #idx to 'f' (unknown option 'k')" unless every key
 * of the options table at idx (nil and none are fine) is in `known`
 * (NULL-terminated).  [-0, +0, e] */
void host_check_options(lua_State *L, int idx, const char *const known[]);
/* The same test for callers that word the error themselves (a Lua half
 * naming its own function): the first key of the table at idx not in
 * `known`, pushed as a string, or NULL with nothing pushed.  [-0, +(0|1)] */
const char *host_unknown_option(lua_State *L, int idx, const char *const known[]);
/* luaL_checklstring that refuses a string with a NUL byte inside. */
const char *host_check_cstring(lua_State *L, int idx, size_t *len);
/* The string at idx (an option or list element, described as `what`, e.g.
 * "option 'cwd'"), refused with an error on argument arg if it is not a
 * string or holds a NUL byte. */
const char *host_opt_cstring(lua_State *L, int idx, int arg, const char *what);

/* Is the host shutting down?  Then resources close at once (no graceful
 * flush that could wait for a peer). */
static inline int host_closing(const lasync_host *h) {
  return h->stopping || h->state_closing;
}

/* The host of this Lua state (stored in the registry), or NULL. */
lasync_host *host_get(lua_State *L);
/* Reports text through the embedder's reporter (default: stderr). */
void host_report(lasync_host *h, const char *text);

int host_sched_init(lasync_host *h);
void host_sched_close(lasync_host *h);
void host_handle_closed(uv_handle_t *handle);

/* ---- the exception handler (exception.c) ---- */
/* Pushes asyncio's context table {message = message, exception = the value
 * at err}; the caller adds task, handle, traceback...  [-0, +1] */
void host_push_context(lua_State *L, const char *message, int err);
/* Gives the context table at ctx to the handler set by
 * asyncio.set_exception_handler, or prints it (the default handler).
 * Runs Lua: call it where a Lua error cannot escape (protected, or a
 * finalizer).  [-0, +0] */
void host_call_exception_handler(lasync_host *h, lua_State *L, int ctx);
/* The default handler's text for the context at ctx.  [-0, +1] */
const char *host_push_exception_text(lua_State *L, int ctx);
/* Sets (the value at idx; nil: the default) or pushes the handler. */
void host_set_exception_handler(lua_State *L, int idx);
void host_push_exception_handler(lua_State *L);

/* Pushes the traceback-carrying report text for an error at idx. */
void host_push_report(lua_State *L, lua_State *where, int idx);

/* A host on its own loop that takes ownership of L and of its pool (the
 * CLI's, made by host_newstate). */
lasync_host *host_new_owning(lua_State *L, host_pool *pool);
/* The host of L, created (and owned by the state) if L has none yet. */
lasync_host *host_for_module(lua_State *L);

/* Ctrl-C for the outermost asyncio.run of a host with run_sigint set
 * (run_sigint.c): from start to stop a SIGINT cancels `main` (or raises
 * "interrupted!" in busy Lua code), and a second one kills.  start gives
 * NULL when it does not apply (another run owns SIGINT, SIGINT ignored);
 * stop puts the previous disposition back and says whether a SIGINT
 * cancelled: 0 no, 1 the main task, 2 the other tasks, after main had
 * ended; 3 it raised "interrupted!" in the main task's busy Lua code.  */
typedef struct host_sigint host_sigint;
host_sigint *host_sigint_start(lasync_host *h, host_task *main);
int host_sigint_stop(host_sigint *s);

static inline uint64_t host_now(const lasync_host *h) {
  return h->clock_mode == HOST_CLOCK_REAL
             ? uv_hrtime() + (uint64_t)h->clock_offset
             : h->vnow;
}

/* The host of a binding's C function: upvalue 1, which every registrar
 * sets (lua_pushlightuserdata(L, h) before luaL_setfuncs). */
#define HOST(L) ((lasync_host *)lua_touserdata(L, lua_upvalueindex(1)))

/* Pushes HOST_DEADLOCK(who) followed by where the task waited, as
 * host_run_task found it (who is e.g. "the main task").  [-0, +1] */
const char *host_push_deadlock(lua_State *L, lasync_host *h, const char *who);

/* The one message for a wait nothing can end; who is e.g. "the task". */
#define HOST_DEADLOCK(who)                                                    \
  who " waits for something that can never happen (no task, timer or "       \
      "handle is left to wake it)"

#endif
