/* The handle lifetime protocol (handle.h): holds, one idempotent close,
 * one "is it still usable?" check. */
#include <stdlib.h>
#include <string.h>

#include "handle.h"

/* The host stops: the record detaches from it first (hd->h = NULL), so a
 * record that outlives the host (a C future the application completes
 * after lasync_free) can tell, and touches no freed memory. */
static void closer_close(host_closeable *c) {
  host_handle *hd = host_container_of(c, host_handle, closer);
  hd->h = NULL;
  host_handle_close(hd, NULL);
}

void host_handle_init(host_handle *hd, const host_handle_type *type,
                      lasync_host *h) {
  hd->type = type;
  hd->h = h;
  hd->box = NULL;
  hd->holds = 1;
  hd->closing = hd->closed = 0;
  host_list_init(&hd->closer.link);
  hd->closer.close = closer_close;
  host_closeable_add(h, &hd->closer);
  hd->created.src = NULL;
  hd->created.line = 0;
  if (h->current) host_where_note(h, h->current, &hd->created);
}

host_handle *host_handle_of_closeable(host_closeable *c) {
  return c->close == closer_close ? host_container_of(c, host_handle, closer)
                                  : NULL;
}

host_handle **host_handle_newbox(lua_State *L, const char *tname, int nuv) {
  host_handle **box = lua_newuserdatauv(L, sizeof *box, nuv);
  *box = NULL;
  luaL_setmetatable(L, tname);
  return box;
}

void host_handle_attach(host_handle **box, host_handle *hd) {
  *box = hd;
  hd->box = box;
  hd->holds++;
}

host_handle **host_handle_push(lua_State *L, host_handle *hd, int nuv) {
  host_handle **box = host_handle_newbox(L, hd->type->tname, nuv);
  host_handle_attach(box, hd);
  return box;
}

void host_handle_hold(host_handle *hd) { hd->holds++; }

void host_handle_drop(host_handle *hd) {
  if (--hd->holds == 0) {
    hd->type->free(hd);
  }
}

void host_handle_each(lasync_host *h, void (*fn)(host_handle *hd, void *ud),
                      void *ud) {
  host_link *l;
  for (l = h->closeables.next; l != &h->closeables; l = l->next) {
    host_closeable *c = host_container_of(l, host_closeable, link);
    if (c->close == closer_close)
      fn(host_container_of(c, host_handle, closer), ud);
  }
}

void host_handle_close(host_handle *hd, lua_State *L) {
  if (hd->closing) return;
  hd->holds++; /* the hook may finish the close at once (nothing open) */
  if (hd->type->close(hd, L)) {
    hd->closing = 1;
    /* the closeable is what lasync_stop walks: once closing, it has
     * nothing left to do with this record */
    host_closeable_remove(&hd->closer);
  }
  host_handle_drop(hd);
}

void host_handle_after_close(host_handle *hd) {
  hd->closing = hd->closed = 1;
  host_closeable_remove(&hd->closer);
  host_handle_drop(hd);
}

void host_handle_register(lua_State *L, const host_handle_type *type) {
  luaL_getmetatable(L, type->tname);
  lua_rawsetp(L, LUA_REGISTRYINDEX, type);
}

/* luaL_checkudata finds the metatable by name (hashing the name through
 * Lua's string cache on every call); stream reads and writes check their
 * wrapper on every call, so the metatable is found by the type's address. */
host_handle *host_handle_test(lua_State *L, int idx,
                              const host_handle_type *type) {
  void *box = lua_touserdata(L, idx);
  if (box && lua_getmetatable(L, idx)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, type);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return *(host_handle **)box;
  }
  luaL_typeerror(L, idx, type->tname);
  return NULL;
}

host_handle *host_handle_check_at(lua_State *L, int idx,
                                  const host_handle_type *type, int mtidx,
                                  const char *fname, int open) {
  host_handle *hd = NULL;
  void *box = lua_touserdata(L, idx);
  int same = 0;
  if (mtidx && box && lua_getmetatable(L, idx)) {
    same = lua_rawequal(L, -1, mtidx);
    lua_pop(L, 1);
  }
  hd = same ? *(host_handle **)box : host_handle_test(L, idx, type);
  if (!hd || (open && hd->closing))
    host_error_raise(L, "InvalidStateError", "%s(): the %s is %s", fname,
                     type->what, hd ? "closed" : "finalized");
  return hd;
}

host_handle *host_handle_check(lua_State *L, int idx,
                               const host_handle_type *type,
                               const char *fname, int open) {
  return host_handle_check_at(L, idx, type, 0, fname, open);
}

/* closer: the state the close hook gets (NULL: it runs no Lua). */
static void release(lua_State *L, int idx, lua_State *closer) {
  host_handle **box = lua_touserdata(L, idx);
  host_handle *hd = box ? *box : NULL;
  if (!hd) return;
  *box = NULL;
  hd->box = NULL;
  host_handle_close(hd, closer); /* no-op once it closed */
  host_handle_drop(hd);
}

void host_handle_release(lua_State *L, int idx) { release(L, idx, L); }

int host_handle_gc(lua_State *L) {
  release(L, 1, L);
  return 0;
}

int host_handle_gc_quiet(lua_State *L) {
  release(L, 1, NULL);
  return 0;
}
