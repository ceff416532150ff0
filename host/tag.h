/* Telling a userdata type from its own memory, for checks on hot paths.
 *
 * luaL_checkudata finds the metatable by name and compares it; comparing
 * against a metatable kept in an upvalue still costs lua_getmetatable,
 * lua_rawequal (75 Ir on tables) and a pop.  A record whose first field is
 * the address of a private static of its file ("the tag") can be told by
 * two API calls and no stack traffic: a full userdata of exactly the
 * record's size (lua_rawlen: a light userdata, a table or a string whose
 * pointer lua_touserdata does not give are ruled out before any memory is
 * read) that starts with the tag.  No other code can hold that address,
 * so no other userdata starts with it. */
#ifndef LASYNC_TAG_H
#define LASYNC_TAG_H

#include <lua.h>

/* The record at idx if it is a full userdata of `size` bytes whose first
 * field is `tag`; else NULL. */
static inline void *host_tagged(lua_State *L, int idx, size_t size,
                                const void *tag) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_rawlen(L, idx) == size && *(const void *const *)p == tag)
    return p;
  return NULL;
}

#endif
