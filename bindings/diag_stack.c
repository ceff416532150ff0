/* A task's stack: its frames as tables (task:get_stack, and the call
 * graph's call_stack) and asyncio's print_stack. */
#include "diag.h"

/* Pushes {source, line, name, what} for the frame in ar (of thread co). */
static void push_frame(lua_State *L, lua_State *co, lua_Debug *ar) {
  lua_getinfo(co, "Sln", ar);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, ar->short_src);
  lua_setfield(L, -2, "source");
  if (ar->currentline > 0) {
    lua_pushinteger(L, ar->currentline);
    lua_setfield(L, -2, "line");
  }
  if (ar->name)
    lua_pushstring(L, ar->name);
  else if (*ar->what == 'm')
    lua_pushliteral(L, "main chunk");
  else if (*ar->what == 'C')
    lua_pushliteral(L, "?");
  else
    lua_pushfstring(L, "function <%s:%d>", ar->short_src, ar->linedefined);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, ar->what);
  lua_setfield(L, -2, "what");
}

/* The levels of t's stack worth showing: [*first, end).  The running
 * task's own stack starts above the caller (level 1 + skip); a task
 * thread's last frame is its C body, which says nothing. */
static int stack_levels(lua_State *L, host_task *t, int skip, int *first) {
  lua_Debug ar;
  lua_State *co = t->co;
  int n = 0;
  *first = (co == L ? 1 : 0) + skip;
  while (lua_getstack(co, n, &ar)) n++;
  if (n > 0 && lua_getstack(co, n - 1, &ar)) {
    lua_getinfo(co, "S", &ar);
    if (*ar.what == 'C') n--;
  }
  return n;
}

/* Pushes the list of t's frames, newest first (or oldest first), at most
 * limit (< 0: all) of them.  A finished task has none. */
void diag_push_stack(lua_State *L, host_task *t, int skip, int limit,
                       int oldest_first) {
  lua_Debug ar;
  int first, end = 0;
  if (t->state != TASK_DONE) end = stack_levels(L, t, skip, &first);
  else first = 0;
  int n = end > first ? end - first : 0;
  if (limit >= 0 && n > limit) n = limit;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    /* the newest n frames, in the order asked */
    int level = oldest_first ? first + n - 1 - i : first + i;
    if (!lua_getstack(t->co, level, &ar)) break;
    luaL_checkstack(L, 4, "stack");
    push_frame(L, t->co, &ar);
    lua_rawseti(L, -2, i + 1);
  }
}

/* opts {limit =} at idx: limit, or -1 for none. */
int diag_opt_limit(lua_State *L, int idx, const char *const known[]) {
  host_check_options(L, idx, known);
  if (lua_isnoneornil(L, idx)) return -1;
  lua_getfield(L, idx, "limit");
  int limit = -1;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
      luaL_argerror(L, idx, "limit: non-negative integer expected");
    limit = lua_tointeger(L, -1) > 1000000 ? 1000000
                                            : (int)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return limit;
}

/* task:get_stack([{limit = n}]): the frames of a pending task, oldest
 * first (asyncio's order), each {source, line, name, what}. */
static int task_get_stack(lua_State *L) {
  static const char *const known[] = {"limit", NULL};
  host_task *t = host_check_task_arg(L, 1);
  int limit = diag_opt_limit(L, 2, known);
  diag_push_stack(L, t, 0, limit, 1);
  return 1;
}

/* task:print_stack([{limit =, file =}]): asyncio's print_stack. */
static int task_print_stack(lua_State *L) {
  static const char *const known[] = {"limit", "file", NULL};
  host_task *t = host_check_task_arg(L, 1);
  int limit = diag_opt_limit(L, 2, known);
  int file = diag_opt_file(L, 2);
  lua_newtable(L);
  int lines = lua_gettop(L);
  diag_push_task_repr(L, 1);
  if (t->state == TASK_DONE && t->outcome == OUTCOME_FAILED) {
    diag_add_line(L, lines, "Traceback for %s (most recent call last):",
             lua_tostring(L, -1));
    host_task_push_report_of(L, t);
    if (lua_isstring(L, -1)) diag_add_line(L, lines, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
  } else {
    diag_push_stack(L, t, 0, limit, 1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n == 0)
      diag_add_line(L, lines, "No stack for %s", lua_tostring(L, -2));
    else
      diag_add_line(L, lines, "Stack for %s (most recent call last):",
               lua_tostring(L, -2));
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      diag_add_frame_line(L, lines, "  ", lua_gettop(L));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  diag_write_lines(L, lines, file);
  return 0;
}

const luaL_Reg diag_stack_methods[] = {{"get_stack", task_get_stack},
                                       {"print_stack", task_print_stack},
                                       {NULL, NULL}};
