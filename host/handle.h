/* The one lifetime protocol for "Lua value + C record + libuv handle".
 *
 * A binding's record embeds a host_handle.  The record has two owners:
 * its libuv handle(s), which let go in their close callback, and the Lua
 * value (a userdata box holding a pointer to the record), which lets go
 * in __gc.  Other holders (a pending request, a second Lua wrapper) may
 * take a hold of their own.  The record is freed by the last one to let
 * go, so its memory never goes before the handle's close callback has run
 * (libuv's rule) and never while Lua can still reach it.
 *
 * Closing is one idempotent operation shared by __close, __gc, an
 * explicit close() and lasync_stop (through the host's closeables).  Once
 * closed, the operations that need the handle raise InvalidStateError
 * through one check; a box whose record is gone raises it too.  Nothing
 * here touches the host after its handles closed, so a finalizer that
 * runs late (while the state closes, after the host stopped) is safe.
 *
 * "Handle" may be any resource whose close ends in a loop callback: fs's
 * File holds a descriptor, closed by a uv_fs request whose callback calls
 * host_handle_after_close (or its close hook calls it at once when there
 * is nothing left to close). */
#ifndef LASYNC_HANDLE_H
#define LASYNC_HANDLE_H

#include "host.h"

typedef struct host_handle host_handle;

typedef struct host_handle_type {
  const char *tname; /* metatable name of the Lua value */
  const char *what;  /* "server", "process"...: for error messages */
  /* Starts closing: uv_close the handle(s) and return 1, or return 0 to
   * leave the handle open for now (a running child keeps its handle until
   * it exits); it is asked again when the host stops.  Drops registry refs
   * when L is not NULL; with L == NULL (the host stops) it must run no
   * Lua and must return 1. */
  int (*close)(host_handle *hd, lua_State *L);
  /* Frees the record (the last hold is gone). */
  void (*free)(host_handle *hd);
} host_handle_type;

struct host_handle {
  host_closeable closer;        /* lasync_stop closes it */
  const host_handle_type *type;
  host_handle **box;            /* the Lua value's slot, NULL once it let go */
  lasync_host *h;               /* NULL once the host stopped (detached) */
  int holds;                    /* the handle, the box, other holders */
  unsigned char closing;        /* the handle is closing (or closed) */
  unsigned char closed;         /* the handle's close callback has run */
  host_where created;           /* where the Lua code opened it */
};

/* The handle of a closeable, or NULL when it is another kind of resource. */
host_handle *host_handle_of_closeable(host_closeable *c);

/* Makes the metatable type->tname (made already) known to the checks
 * below.  Call once per type after making its metatable.  [-0, +0] */
void host_handle_register(lua_State *L, const host_handle_type *type);
/* Starts the protocol for a record whose handle is initialised on h's loop:
 * one hold for the handle; the host closes it when it stops. */
void host_handle_init(host_handle *hd, const host_handle_type *type,
                      lasync_host *h);
/* Pushes a new userdata box for hd (with nuv user values) whose metatable is
 * type->tname; it takes a hold.  [-0, +1, m] */
host_handle **host_handle_push(lua_State *L, host_handle *hd, int nuv);
/* The same in two steps, for a value made before its record: an empty
 * box of metatable tname (it raises "finalized" until attached), then
 * the record it holds.  [-0, +1, m] / [-0, +0] */
host_handle **host_handle_newbox(lua_State *L, const char *tname, int nuv);
void host_handle_attach(host_handle **box, host_handle *hd);
/* Calls fn for every handle of h that is not closing yet (asyncio.testing
 * lists what a test left open).  fn must not close handles, nor run Lua
 * finalizers (which may): the walk would lose its place. */
void host_handle_each(lasync_host *h, void (*fn)(host_handle *hd, void *ud),
                      void *ud);
/* The idempotent close; L may be NULL (no Lua may run). */
void host_handle_close(host_handle *hd, lua_State *L);
/* Call from the handle's close callback: the handle's hold goes (which may
 * free the record: touch it no more after this call). */
void host_handle_after_close(host_handle *hd);
void host_handle_hold(host_handle *hd);
void host_handle_drop(host_handle *hd);

/* The record of the box at idx: raises InvalidStateError "<fname>(): the
 * <what> is closed" when `open` and the handle is closing or closed, or
 * when the record is gone (its box was finalized).  The one check every
 * method of a handle type goes through.  [-0, +0, v] */
host_handle *host_handle_check(lua_State *L, int idx,
                               const host_handle_type *type,
                               const char *fname, int open);
/* The same, for the methods of a type called on every read or write: the
 * type's metatable is at mtidx (an upvalue of the method), so the common
 * case is one comparison, without a registry lookup.  mtidx 0: none. */
host_handle *host_handle_check_at(lua_State *L, int idx,
                                  const host_handle_type *type, int mtidx,
                                  const char *fname, int open);
/* The record of the box at idx, or NULL when it is gone.  [-0, +0, v] */
host_handle *host_handle_test(lua_State *L, int idx,
                              const host_handle_type *type);
/* __gc of every handle type: closes the record and lets go of it. */
int host_handle_gc(lua_State *L);
/* The same with no Lua state for the close hook, for a type whose close()
 * wakes waiting tasks: nothing can wait on an unreachable value, and the
 * host may be gone (http.c's sessions, redis.c's connections). */
int host_handle_gc_quiet(lua_State *L);
/* Closes and lets go of the record of the box at idx (what __gc does,
 * for a box that is dropped before it is collected).  [-0, +0] */
void host_handle_release(lua_State *L, int idx);

#endif
