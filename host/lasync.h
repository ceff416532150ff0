/* lasync: Lua 5.4 tasks on a libuv loop, with asyncio's toolkit.
 *
 * The embedding API.  A host ties one lua_State to one uv_loop_t; either may
 * be the application's own.  The host never calls exit() and never prints to
 * stdout; errors it cannot hand back go to the reporter (default: stderr).
 * lasync owns LUA_EXTRASPACE: it sets the main thread's to NULL when the
 * host is created (threads created afterwards copy it) and stores the task
 * record in each task thread's. */
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

typedef struct lasync_host lasync_host;

/* Receives text the host could not return to a caller: a task's failure
 * nobody retrieved, an error in a call_soon callback. */
typedef void (*lasync_report_fn)(void *ud, const char *text);

/* Creates a host.  loop NULL: the host makes and owns one.  L NULL: the
 * host makes and owns a state with the standard libraries and asyncio
 * preloaded.  Returns NULL when out of memory or when L already has a
 * host. */
LASYNC_API lasync_host *lasync_new(uv_loop_t *loop, lua_State *L);

/* Cancels every task, closes every handle the host opened and frees it.
 * Closes the state and the loop only if the host made them. */
LASYNC_API void lasync_free(lasync_host *h);

LASYNC_API lua_State *lasync_state(lasync_host *h);
LASYNC_API uv_loop_t *lasync_loop(lasync_host *h);
LASYNC_API lasync_host *lasync_from_state(lua_State *L);

/* Opens the standard Lua libraries and makes `require "asyncio"` load the
 * built-in module. */
LASYNC_API void lasync_openlibs(lasync_host *h);

LASYNC_API void lasync_set_reporter(lasync_host *h, lasync_report_fn fn,
                                    void *ud);

/* Starts a task: [-(nargs+1), +1] pops a function and its nargs arguments
 * from L and pushes the Task.  The task runs on the next loop turn. */
LASYNC_API int lasync_spawn(lasync_host *h, lua_State *L, int nargs);

/* Runs the loop until no task, timer or handle keeps it alive. */
LASYNC_API int lasync_run(lasync_host *h);

#endif
