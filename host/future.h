/* The one future core, for C (lasync_future_*, lasync.h) and Lua
 * (asyncio.Future, bindings/future.c).
 *
 * A future is a C record behind a Lua box, over the lifetime protocol of
 * handle.h.  Its "handle" is the completer's share: the application's for a
 * C future (it ends with lasync_future_resolve, _reject, _reject_msg or
 * _release), Lua's own for asyncio.Future() (it ends when the future is
 * done).  The box is the other hold.  While the completer's share lasts
 * the record is one of the host's closeables: when the host stops, the
 * record is detached (hd.h becomes NULL) and the future cancelled, so a
 * completion that comes after lasync_free gets an error code and touches
 * no freed memory.
 *
 * The outcome lives in the box (user value 1: {n = count, values...}, or
 * the error value for a failure or cancellation) and so do the Lua done
 * callbacks (user value 2); a weak registry table finds the box of a
 * record, for completions that come from C. */
#ifndef LASYNC_FUTURE_H
#define LASYNC_FUTURE_H

#include "handle.h"

#define HOST_FUTURE_MT "asyncio.Future"

enum { FUT_PENDING, FUT_RESOLVED, FUT_REJECTED, FUT_CANCELLED };

struct lasync_future {
  host_handle hd;           /* lifetime: handle.h */
  host_link waiters;        /* parked tasks (waitq.h) */
  lasync_cancel_fn on_cancel;
  void *ud;
  uv_thread_t thread;       /* the loop's thread (C futures check it) */
  unsigned char state;      /* FUT_* */
  unsigned char app;        /* made by lasync_future_new */
  unsigned char retrieved;  /* its failure was looked at */
};

/* Makes the Future metatable (__gc) once; asyncio adds the methods. */
void host_future_type(lua_State *L);
/* A new pending future of host h; pushes its Lua value.  [-0, +1, m] */
lasync_future *host_future_new(lua_State *L, lasync_host *h);
/* The future at idx (raises a type error, or InvalidStateError for a
 * finalized one); host_future_test returns NULL for other values. */
lasync_future *host_future_check(lua_State *L, int idx);
lasync_future *host_future_test(lua_State *L, int idx);
/* Settles a pending future with the n values on top of L: FUT_RESOLVED
 * (its results), FUT_REJECTED (one error value) or FUT_CANCELLED (one
 * CancelledError).  Wakes every awaiting task and hands the done callbacks
 * to call_soon.  Returns 0, or 1 (values popped) if f was not pending.
 * [-n, +0, m] */
int host_future_settle(lua_State *L, lasync_future *f, int state, int n);
/* Cancels a pending future (CancelledError carrying the message at msgidx,
 * 0 for none; the application's on_cancel runs).  Returns 1 if it was
 * pending.  [-0, +0, m] */
int host_future_cancel(lua_State *L, lasync_future *f, int msgidx);
/* Cancels f on behalf of task t, with t's cancel message (asyncio's
 * Task.cancel cancels the future the task waits on).  Builds the error on
 * the host's callback thread: call where the batch's protection holds. */
void host_future_cancel_for(lasync_future *f, host_task *t);
/* Pushes the results of a done future, or raises its error.  [-0, +n, e] */
int host_future_results(lua_State *L, lasync_future *f);
/* Pushes the error value of a failed or cancelled future.  [-0, +1] */
void host_future_push_error(lua_State *L, lasync_future *f);
/* Waits for f from the running task: `return host_future_await(L, f);`.
 * The future's box must stay on L's stack (it keeps the record). */
int host_future_await(lua_State *L, lasync_future *f);

#endif
