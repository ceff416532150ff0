/* What the asyncio bindings share among themselves (host/ names none of
 * it): each area's registrar, called by luaopen_asyncio (init.c), and the
 * few functions one binding lends another. */
#ifndef LASYNC_BINDINGS_INIT_H
#define LASYNC_BINDINGS_INIT_H

#include "../host/host.h"

/* Registrars: each adds its functions to the table at the top of the
 * stack, with the host as upvalue 1 (HOST(L)). */
void l_open_task(lua_State *L, lasync_host *h);
void l_open_time(lua_State *L, lasync_host *h);
void l_open_loop(lua_State *L, lasync_host *h);
void l_open_queue(lua_State *L, lasync_host *h);
void l_open_sync(lua_State *L, lasync_host *h);
void l_open_wait(lua_State *L, lasync_host *h);
void l_open_future(lua_State *L, lasync_host *h);
void l_open_thread(lua_State *L, lasync_host *h);
/* Opens the standard libraries among libs (LASYNC_LIB_*) in L (init.c). */
void l_open_std(lua_State *L, unsigned libs);
/* Pushes a Task standing for the Future at idx (future.c), and the same
 * as a function for the Lua part. */
void l_future_task(lua_State *L, int idx);
void l_push_future_task(lua_State *L, lasync_host *h);
void l_open_diag(lua_State *L, lasync_host *h);
/* Pushes a table of internals for the compiled-in Lua part (sync.lua). */
void l_push_wait_internals(lua_State *L, lasync_host *h);

/* Applies asyncio.run's options at idx if the value there is its options
 * table (diag_debug.c): 1 if it was, else 0. */
int l_run_options(lua_State *L, int idx);

/* Pushes the compiled-in Lua part `name` (bindings/<name>.lua, chunk
 * name "=asyncio/<name>.lua") as a function, not yet called; raises when
 * there is no such part or it does not compile.  [-0, +1, e] */
void l_load_lua_part(lua_State *L, const char *name);
/* Pushes lua_part(name), the same for a Lua half that is made of several
 * parts (http.lua) or uses a shared one (argcheck.lua).  [-0, +1, -] */
void l_push_lua_part_loader(lua_State *L);

/* loop:run_until_complete(task_or_function at idx) (task.c). */
int l_run_until_complete(lua_State *L, int idx);
/* t is parked on task:await() and woken: the awaited task has finished, and
 * its results are a wake-up no cancel hook can give back (task.c). */
int l_task_await_woken(host_task *t);

/* The task that a done-listener belongs to (await: task.c; gather and
 * wait: wait.c), or NULL: the call graph's "awaited by". */
host_task *l_task_listener_owner(host_listener *l);
host_task *l_wait_listener_owner(host_listener *l);
/* Registry key of the table child Task -> its TaskGroup's task. */
#define L_GROUP_PARENTS "lasync.group_parents"

LASYNC_API int luaopen_asyncio(lua_State *L);
LASYNC_API int luaopen_asyncio_http(lua_State *L);
LASYNC_API int luaopen_asyncio_http_server(lua_State *L);
LASYNC_API int luaopen_asyncio_websocket(lua_State *L);
LASYNC_API int luaopen_asyncio_fs(lua_State *L);
LASYNC_API int luaopen_asyncio_testing(lua_State *L);
LASYNC_API int luaopen_asyncio_redis(lua_State *L);

#endif
