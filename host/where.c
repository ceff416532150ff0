/* Where things happen in the user's code: the first frame of a thread's
 * stack that is Lua code of the user's, skipping C functions and asyncio's
 * own Lua parts (chunks named "=asyncio/...").
 *
 * A task records where it was created (host_where_note, at every spawn, so
 * it must stay cheap: one lua_getinfo and, almost always, one short strcmp
 * against the last source seen); deadlocks, timeouts, the call graph and
 * `lasync ps` say where a task waits (host_where_of on its suspended
 * thread).  Any other record that wants a "created at" (a handle, a
 * server) can keep a host_where and call host_where_note too. */
#include <stdio.h>
#include <string.h>

#include "host.h"

#define WHERE_DEPTH 12 /* frames searched for user code */
static const char SOURCES_KEY[] = "lasync.where_sources";

static int is_user_frame(const lua_Debug *ar) {
  return ar->currentline > 0 &&
         (ar->source[0] != '=' || strncmp(ar->source, "=asyncio/", 9) != 0);
}

int host_where_frame(lua_State *L, int level, lua_Debug *ar) {
  for (int i = level; i < level + WHERE_DEPTH; i++) {
    if (!lua_getstack(L, i, ar)) return -1;
    lua_getinfo(L, "Sl", ar);
    if (is_user_frame(ar)) return i;
  }
  return -1;
}

/* The short source, kept in a registry table for the state's life so the
 * record may point at it (and another thread may read it: ps).  The chunk
 * last seen is known by its source string itself when Lua interns it (a
 * short one, up to 40 bytes: "@dir/file.lua"): that string is anchored
 * in the same table, so its address stays its own, and a spawn from the
 * same chunk as the last one compares one pointer instead of the text. */
static const char *intern(lasync_host *h, lua_State *L, const lua_Debug *ar) {
  if (ar->source == h->where_source) return h->where_last;
  if (h->where_last && strcmp(h->where_last, ar->short_src) == 0)
    return h->where_last;
  if (!lua_checkstack(L, 4)) return NULL;
  if (lua_getfield(L, LUA_REGISTRYINDEX, SOURCES_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, SOURCES_KEY);
  }
  lua_pushstring(L, ar->short_src);
  lua_pushvalue(L, -1);
  lua_rawset(L, -3); /* the string is its own key: anchored */
  lua_pushstring(L, ar->short_src);
  lua_rawget(L, -2);
  h->where_last = lua_tostring(L, -1);
  lua_pop(L, 1);
  h->where_source = NULL;
  lua_pushstring(L, ar->source);
  if (lua_tostring(L, -1) == ar->source) { /* the chunk's own string */
    lua_pushvalue(L, -1);
    lua_rawset(L, -3);
    h->where_source = ar->source;
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return h->where_last;
}

/* Level 0 is never the user's code here: C code calling this runs on a C
 * frame of L (create_task, a handle's constructor), and a suspended thread
 * (the trace's steps) yielded from one.  Starting at level 1 saves a
 * lua_getinfo of every spawn (about 270 instructions). */
void host_where_note(lasync_host *h, lua_State *L, host_where *w) {
  lua_Debug ar;
  w->src = NULL;
  w->line = 0;
  if (host_where_frame(L, 1, &ar) < 0) return;
  w->src = intern(h, L, &ar);
  w->line = ar.currentline;
}

const char *host_push_where(lua_State *L, const host_where *w) {
  if (!w->src) return lua_pushliteral(L, "?");
  return lua_pushfstring(L, "%s:%d", w->src, w->line);
}

const char *host_push_where_of(lua_State *L, lua_State *co) {
  lua_Debug ar;
  if (host_where_frame(co, 0, &ar) < 0) return lua_pushliteral(L, "?");
  return lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
}

void host_where_waiting(lua_State *co, char *buf, size_t size) {
  lua_Debug ar;
  const char *fn = NULL;
  char name[40] = "";
  if (lua_getstack(co, 0, &ar)) {
    lua_getinfo(co, "Sn", &ar);
    if (*ar.what == 'C' && ar.name) {
      snprintf(name, sizeof name, "%s", ar.name);
      fn = name;
    }
  }
  if (host_where_frame(co, 0, &ar) < 0) {
    if (fn) snprintf(buf, size, "in '%s'", fn);
    else snprintf(buf, size, "at an unknown place");
  } else if (fn) {
    snprintf(buf, size, "in '%s' at %s:%d", fn, ar.short_src, ar.currentline);
  } else {
    snprintf(buf, size, "at %s:%d", ar.short_src, ar.currentline);
  }
}

const char *host_push_waiting_in(lua_State *L, lua_State *co) {
  char buf[160];
  host_where_waiting(co, buf, sizeof buf);
  return lua_pushstring(L, buf);
}
