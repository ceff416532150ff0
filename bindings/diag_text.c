/* Reports as lists of lines (a Lua table of strings): made by the stack,
 * call graph and ps code, then written to a file or stdout, or joined. */
#include <stdarg.h>
#include <stdio.h>

#include "diag.h"

/* Appends a formatted line to the list of lines at `lines`. */
void diag_add_line(lua_State *L, int lines, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_rawseti(L, lines, (lua_Integer)lua_rawlen(L, lines) + 1);
}

/* Appends "File 'x.lua', line 4, in fetch" for the frame table at frame. */
void diag_add_frame_line(lua_State *L, int lines, const char *indent,
                           int frame) {
  lua_getfield(L, frame, "what");
  lua_getfield(L, frame, "source");
  lua_getfield(L, frame, "line");
  lua_getfield(L, frame, "name");
  if (*lua_tostring(L, -4) == 'C')
    diag_add_line(L, lines, "%s[C] in '%s'", indent, lua_tostring(L, -1));
  else
    diag_add_line(L, lines, "%sFile '%s', line %d, in %s", indent,
             lua_tostring(L, -3), (int)lua_tointeger(L, -2),
             lua_tostring(L, -1));
  lua_pop(L, 4);
}

/* Writes the lines at idx, each ending in "\n", to file (or stdout). */
void diag_write_lines(lua_State *L, int lines, int file) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, lines);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, lines, i);
    if (file) {
      lua_getfield(L, file, "write");
      lua_pushvalue(L, file);
      lua_pushvalue(L, -3);
      lua_pushliteral(L, "\n");
      lua_call(L, 3, 0);
    } else {
      fputs(lua_tostring(L, -1), stdout);
      fputc('\n', stdout);
    }
    lua_pop(L, 1);
  }
  if (!file) fflush(stdout);
}

/* The `file` option of the options at idx (a file, or any value with a
 * write method), pushed; its index, or 0 (stdout) without one. */
int diag_opt_file(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || lua_getfield(L, idx, "file") == LUA_TNIL) {
    if (lua_istable(L, idx)) lua_pop(L, 1);
    return 0;
  }
  int file = lua_gettop(L), ok = 0;
  if (lua_istable(L, file)) { /* a table's field */
    lua_getfield(L, file, "write");
    ok = lua_isfunction(L, -1);
  } else { /* a file's method */
    int type = luaL_getmetafield(L, file, "__index");
    if (type == LUA_TTABLE) {
      lua_getfield(L, -1, "write");
      ok = lua_isfunction(L, -1);
    }
  }
  if (!ok) luaL_argerror(L, idx, "file: a file (with a write method) expected");
  lua_settop(L, file);
  return file;
}

void diag_push_task_repr(lua_State *L, int task) {
  host_task *t = lua_touserdata(L, task);
  host_task_push_name(L, task);
  lua_pushfstring(L, "Task(name='%s', id=%d)", lua_tostring(L, -1),
                  (int)t->id);
  lua_remove(L, -2);
}

void diag_concat_lines(lua_State *L, int lines, int last_newline) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, lines);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\n');
    lua_rawgeti(L, lines, i);
    luaL_addvalue(&b);
  }
  if (last_newline && n > 0) luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
}
