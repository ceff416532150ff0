/* Lua-visible C types: one way for every binding to make its metatable. */
#include <string.h>

#include "host.h"

/* A type may be made in two parts: the host makes its runtime records'
 * metatables with __gc when it is created (a task can be spawned before
 * any library is open), and asyncio adds the methods later.  So a second
 * call adds to the metatable instead of replacing it. */
void host_new_type(lua_State *L, const char *tname, const luaL_Reg *methods,
                   const luaL_Reg *meta, int nup) {
  luaL_newmetatable(L, tname);
  lua_insert(L, -(nup + 1)); /* the metatable below the upvalues */
  if (methods) {
    if (lua_getfield(L, -(nup + 1), "__index") != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_createtable(L, 0, 8);
      lua_pushvalue(L, -1);
      lua_setfield(L, -(nup + 3), "__index");
    }
    for (int i = 0; i < nup; i++) lua_pushvalue(L, -(nup + 1));
    luaL_setfuncs(L, methods, nup);
    lua_pop(L, 1);
  }
  if (meta) luaL_setfuncs(L, meta, nup); /* pops the upvalues */
  else lua_pop(L, nup);
  lua_pop(L, 1);
}

int host_is_callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return 1;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

void host_check_callable(lua_State *L, int idx) {
  luaL_argexpected(L, host_is_callable(L, idx), idx, "function");
}

/* A NaN delay would compare false with every deadline and wait forever or
 * never, depending on the comparison; it is refused where it enters. */
double host_check_seconds(lua_State *L, int idx, const char *what) {
  lua_Number s = luaL_checknumber(L, idx);
  if (s != s) luaL_argerror(L, idx, lua_pushfstring(L, "%s is NaN", what));
  return (double)s;
}

int host_opt_seconds(lua_State *L, int idx, const char *what, double *out) {
  if (lua_isnoneornil(L, idx)) return 0;
  *out = host_check_seconds(L, idx, what);
  return 1;
}

/* Options tables come from users who misspell keys (`stdot`) or pass keys
 * another runtime knows (`ssl` before TLS exists); ignoring them silently
 * gives a program that looks right and does something else. */
const char *host_unknown_option(lua_State *L, int idx, const char *const known[]) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (int i = 0; known[i] && !ok; i++) ok = strcmp(k, known[i]) == 0;
    }
    if (!ok) {
      const char *k = luaL_tolstring(L, -1, NULL);
      lua_remove(L, -2);
      return k;
    }
  }
  return NULL;
}

void host_check_options(lua_State *L, int idx, const char *const known[]) {
  if (lua_isnoneornil(L, idx)) return;
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  const char *k = host_unknown_option(L, idx, known);
  if (k) luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s'", k));
}

/* C strings end at the first NUL: a Lua string with one inside would reach
 * the OS cut short ("file\0.txt" opening "file"), so it is refused. */
const char *host_check_cstring(lua_State *L, int idx, size_t *len) {
  size_t n;
  const char *s = luaL_checklstring(L, idx, &n);
  if (strlen(s) != n) luaL_argerror(L, idx, "string contains a NUL byte");
  if (len) *len = n;
  return s;
}

const char *host_opt_cstring(lua_State *L, int idx, int arg, const char *what) {
  size_t n;
  /* the type first: lua_tolstring would turn a number into a string */
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: string expected, got %s",
                                          what, luaL_typename(L, idx)));
  const char *s = lua_tolstring(L, idx, &n);
  if (strlen(s) != n)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s contains a NUL byte", what));
  return s;
}

/* Done callbacks (of tasks and futures) are lists: removing one removes
 * every registration of it, keeping the order of the others. */
lua_Integer host_list_remove_value(lua_State *L, int list, int value) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, list), j = 1, removed = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    if (lua_rawequal(L, -1, value)) {
      removed++;
      lua_pop(L, 1);
    } else {
      lua_rawseti(L, list, j++);
    }
  }
  for (; j <= n; j++) {
    lua_pushnil(L);
    lua_rawseti(L, list, j);
  }
  return removed;
}
