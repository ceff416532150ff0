/* lasync: Lua 5.4 tasks on a libuv loop, with asyncio's toolkit.
 *
 * The embedding API.  A host ties one lua_State to one uv_loop_t; either may
 * be the application's own.  Everything here is called on the thread that
 * runs the loop, unless a function says otherwise.
 *
 * - The host never calls exit(), never writes to stdout and installs no
 *   signal handler (unless asked to take Ctrl-C: lasync_handle_sigint).  Text it cannot hand back (a task failure nobody
 *   retrieved, an error in a callback) goes to the reporter (default:
 *   stderr) and is kept as the last error.
 * - The host has no global state: hosts on different loops, in different
 *   threads, are independent.
 * - With the application's loop, the host never runs the loop: its work
 *   happens inside the application's uv_run.  lasync_run and
 *   lasync_run_until_done are for applications that let the host drive.
 * - lasync owns LUA_EXTRASPACE: it sets the main thread's to NULL when the
 *   host is created (threads made afterwards copy it) and stores the task
 *   record in each task thread's.
 *
 * Stack effects are written as in the Lua manual: [-pop, +push]. */
#ifndef LASYNC_H
#define LASYNC_H

#include <uv.h>
#include <lua.h>

#if defined(_WIN32)
#define LASYNC_API __declspec(dllexport)
#else
#define LASYNC_API __attribute__((visibility("default")))
#endif

#define LASYNC_VERSION "0.1.0"

/* Return codes (besides 0). */
#define LASYNC_ERROR (-1)      /* see lasync_last_error() */
#define LASYNC_ECANCELLED (-2) /* the future's task was cancelled */
#define LASYNC_ECLOSED (-3)    /* the host was stopped or freed */
#define LASYNC_EDONE (-4)      /* the future was already completed */
#define LASYNC_ETHREAD (-5)    /* called from a thread that is not the
                                  loop's: futures are single-threaded */
#define LASYNC_EINTERRUPTED (-6) /* Ctrl-C ended the run
                                    (lasync_handle_sigint) */

typedef struct lasync_host lasync_host;
typedef struct lasync_future lasync_future;

/* Receives text the host could not return to a caller. */
typedef void (*lasync_report_fn)(void *ud, const char *text);

/* ---- life cycle --------------------------------------------------------- */

/* Creates a host.  loop NULL: the host makes and owns one.  L NULL: the host
 * makes and owns a state, with the standard libraries and asyncio opened
 * (lasync_openlibs).  With the application's L, open what you want with
 * lasync_openlibs or lasync_openlibs_only.  Returns NULL when out of memory
 * or when L already has a host. */
LASYNC_API lasync_host *lasync_new(uv_loop_t *loop, lua_State *L);

/* Cancels every task and closes every handle the host opened.  With the
 * host's own loop, it lets the cancelled tasks unwind first (their <close>
 * handlers and then their done callbacks run); with the application's loop
 * they unwind, and their done callbacks run, in its next uv_run turns, and
 * the host's handles close after that.  After this, asyncio functions in the state raise
 * "the event loop is closed".  Idempotent. */
LASYNC_API void lasync_stop(lasync_host *h);

/* Stops the host if needed and frees it.  Closes the state and the loop
 * only if the host made them.  With the application's state, the host's
 * remaining memory is released when that state is closed (before or after
 * this call); with the application's loop, the handles finish closing in
 * its next uv_run. */
LASYNC_API void lasync_free(lasync_host *h);

LASYNC_API lua_State *lasync_state(lasync_host *h);
LASYNC_API uv_loop_t *lasync_loop(lasync_host *h);
LASYNC_API lasync_host *lasync_from_state(lua_State *L);

/* ---- libraries ---------------------------------------------------------- */

#define LASYNC_LIB_BASE      0x0001u /* _G functions, coroutine, table,
                                        string, math, utf8 */
#define LASYNC_LIB_PACKAGE   0x0002u /* require and package */
#define LASYNC_LIB_IO        0x0004u
#define LASYNC_LIB_OS        0x0008u
#define LASYNC_LIB_DEBUG     0x0010u
#define LASYNC_LIB_ASYNCIO   0x0020u /* tasks, timers, sync primitives */
#define LASYNC_LIB_NET       0x0040u /* streams, servers, DNS (asyncio.*) */
#define LASYNC_LIB_PROCESS   0x0080u /* subprocesses and signal handlers */
#define LASYNC_LIB_FS        0x0100u /* asyncio.fs */
#define LASYNC_LIB_HTTP      0x0200u /* asyncio.http */
#define LASYNC_LIB_ALL       0xffffu
/* What a sandboxed script may have: no files, processes, OS or debug. */
#define LASYNC_LIB_SAFE (LASYNC_LIB_BASE | LASYNC_LIB_ASYNCIO)

/* Opens every standard library and asyncio (also as the global `asyncio`). */
LASYNC_API void lasync_openlibs(lasync_host *h);

/* Opens only the libraries in `libs`.  asyncio becomes the global
 * `asyncio` (and `require "asyncio"` when the package library is open);
 * the asyncio functions of areas left out are absent from it. */
LASYNC_API void lasync_openlibs_only(lasync_host *h, unsigned libs);

/* ---- running Lua -------------------------------------------------------- */

/* Starts a task: [-(nargs+1), +1] pops a function and its nargs arguments
 * from L (a thread of the host's state) and pushes the Task.  The task runs
 * on the next loop turn.  Never raises: returns LASYNC_ECLOSED on a stopped
 * host or LASYNC_ERROR when no function was given ([-(nargs+1), +0]). */
LASYNC_API int lasync_spawn(lasync_host *h, lua_State *L, int nargs);

/* Loads a chunk (a string, or a file; path NULL reads stdin) and starts it
 * as a task; [-0, +1] pushes the Task on the host's state.  Returns 0, or
 * LASYNC_ERROR (syntax error, missing file: see lasync_last_error) with
 * nothing pushed. */
LASYNC_API int lasync_spawn_string(lasync_host *h, const char *code,
                                   const char *chunkname);
LASYNC_API int lasync_spawn_file(lasync_host *h, const char *path);

/* Runs the loop until no task, timer or handle keeps it alive.  Returns 0,
 * or LASYNC_ERROR when a task failure was reported meanwhile. */
LASYNC_API int lasync_run(lasync_host *h);

/* [-1, +0] Runs the loop until the Task on top of the host's state ends;
 * returns 0 if it succeeded, LASYNC_ERROR if it failed (its error and
 * traceback are the last error), LASYNC_ECANCELLED if it was cancelled.
 * It returns once the task ends, also when that happens in turns it did not
 * start: a lasync_stop from the application's callback on the loop, or a
 * lasync_run_until_done for another task from a C function a task calls. */
LASYNC_API int lasync_run_until_done(lasync_host *h);

/* The text of the last error (message and traceback), or NULL.  Valid
 * until the next call into the host. */
LASYNC_API const char *lasync_last_error(lasync_host *h);

LASYNC_API void lasync_set_reporter(lasync_host *h, lasync_report_fn fn,
                                    void *ud);

/* ---- Ctrl-C ------------------------------------------------------------- */

/* Opt-in (off by default): the host takes Ctrl-C as Python's asyncio.run
 * and the lasync binary do.  While lasync_run_until_done, or asyncio.run
 * called on the host's state outside any task, drives the outermost run,
 * a SIGINT cancels that run's main task; once it has unwound (its <close>
 * handlers and except branches ran), lasync_run_until_done returns
 * LASYNC_EINTERRUPTED with the last error "interrupted!" and asyncio.run
 * raises "interrupted!".  Busy Lua code is stopped by "interrupted!" at
 * its next instruction, as in lua.c.  A main task that catches the
 * cancellation and returns has succeeded.  A second SIGINT in the same run
 * kills the process (SIG_DFL, as lua.c and Python do).  The SIGINT
 * disposition is the host's only during such a run: before and after it,
 * and with on = 0, it is whatever the application had (given back at the
 * end of each run); a SIGINT ignored (SIG_IGN, a background job) stays
 * ignored, and while Lua has asyncio.add_signal_handler("SIGINT"), Ctrl-C
 * is that handler's.  One run in the process takes SIGINT at a time.
 * lasync_run (no main task) and an application driving its own loop do
 * not take it. */
LASYNC_API void lasync_handle_sigint(lasync_host *h, int on);

/* ---- C futures ---------------------------------------------------------- */
/* An application exposes its own asynchronous operation to Lua as a
 * suspending function:
 *
 *     static int l_fetch(lua_State *L) {
 *       lasync_future *f = lasync_future_new(L, abort_fetch, my_request);
 *       start_my_request(my_request, f);   // completes later, on the loop
 *       return lasync_await(L, f);         // the task parks here
 *     }
 *     // later, in any libuv callback on the same loop:
 *     lua_State *S = lasync_future_begin(f);
 *     if (S) { lua_pushinteger(S, 42); lasync_future_resolve(f, 1); }
 *     else lasync_future_release(f);      // nobody waits any more
 *
 * The future is the same object as Lua's asyncio.Future: its Lua side may
 * be returned to Lua, awaited by several tasks, given to gather or
 * wait_for.  The application holds a share that ends with
 * lasync_future_resolve, _reject, _reject_msg or _release (exactly one of
 * them); the future's memory goes when that share and the Lua side are
 * both gone, so a late completion (after cancellation, after lasync_free,
 * which detaches the future from the host) is safe and simply returns an
 * error code.  Cancelling a task that awaits the future cancels the
 * future (on_cancel runs). */

/* Called, on the loop's thread, when the awaiting task is cancelled (or
 * the host stops) before the future completes: abort the work.  The
 * application must still end its share (usually lasync_future_release). */
typedef void (*lasync_cancel_fn)(lasync_future *f, void *ud);

/* [-0, +1] From a C function running in a task: a new pending future.  It
 * pushes the future's Lua side, which must stay on the stack until
 * lasync_await (then the wait keeps it).  Raises a Lua error outside a task
 * ("asyncio: future() called outside a task"). */
LASYNC_API lasync_future *lasync_future_new(lua_State *L,
                                            lasync_cancel_fn on_cancel,
                                            void *ud);

/* Suspends the running task until f completes: use as the C function's
 * `return lasync_await(L, f);`.  Returns the resolved values, or raises
 * the rejection.  If f already completed, returns at once. */
LASYNC_API int lasync_await(lua_State *L, lasync_future *f);

/* A thread to push the completion values on, or NULL when f can no longer
 * be completed (cancelled, host stopped): then call lasync_future_release. */
LASYNC_API lua_State *lasync_future_begin(lasync_future *f);

/* [-n, +0] on the lasync_future_begin thread: completes f with the n values
 * on top; ends the application's share.  Returns 0 or a LASYNC_E code. */
LASYNC_API int lasync_future_resolve(lasync_future *f, int n);

/* [-1, +0] completes f with the error value on top of the begin thread. */
LASYNC_API int lasync_future_reject(lasync_future *f);

/* Completes f with a string error (no begin needed). */
LASYNC_API int lasync_future_reject_msg(lasync_future *f, const char *msg);

/* Ends the application's share without completing f: a pending f fails
 * with "the future was released without a result" (a task waiting on it,
 * or awaiting it later, gets that error instead of waiting forever).
 * Returns 0 or a LASYNC_E code. */
LASYNC_API int lasync_future_release(lasync_future *f);

/* The user data given to lasync_future_new. */
LASYNC_API void *lasync_future_data(lasync_future *f);

#endif
