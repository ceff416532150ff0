/* The call graph (Python 3.14's capture_call_graph, format_call_graph,
 * print_call_graph): a task, its stack, and the graphs of the tasks that
 * await it. */
#include "diag.h"

host_task *diag_awaiter_of(host_listener *l) {
  host_task *owner = l_task_listener_owner(l);
  return owner ? owner : l_wait_listener_owner(l);
}

static void push_graph(lua_State *L, int task, int skip, int limit, int seen,
                       int depth);

/* Adds the graph of the awaiting task `owner` to the list on top, once. */
static void add_awaiter(lua_State *L, host_task *owner, int limit, int seen,
                        int depth) {
  if (!owner || owner->state == TASK_DONE) return;
  host_task_push(L, owner);
  int task = lua_gettop(L);
  lua_pushvalue(L, task);
  if (lua_rawget(L, seen) != LUA_TNIL || depth >= DIAG_GRAPH_DEPTH) {
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 1);
  push_graph(L, task, 0, limit, seen, depth + 1);
  lua_rawseti(L, task - 1, (lua_Integer)lua_rawlen(L, task - 1) + 1);
  lua_pop(L, 1);
}

/* Pushes {task, call_stack, awaited_by} for the Task at `task`. */
static void push_graph(lua_State *L, int task, int skip, int limit, int seen,
                       int depth) {
  host_task *t = lua_touserdata(L, task);
  luaL_checkstack(L, 8, "call graph");
  lua_pushvalue(L, task);
  lua_pushboolean(L, 1);
  lua_rawset(L, seen);
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, task);
  lua_setfield(L, -2, "task");
  diag_push_stack(L, t, skip, limit, 0);
  lua_setfield(L, -2, "call_stack");
  lua_newtable(L); /* awaited_by */
  for (host_link *k = t->awaiters.next; k != &t->awaiters; k = k->next) {
    host_listener *l = host_container_of(k, host_listener, link);
    add_awaiter(L, diag_awaiter_of(l), limit, seen, depth);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, L_GROUP_PARENTS);
  if (lua_istable(L, -1)) {
    lua_pushvalue(L, task);
    lua_rawget(L, -2);
    host_task *parent = host_test_task_arg(L, -1);
    lua_pop(L, 2);
    add_awaiter(L, parent, limit, seen, depth);
  } else {
    lua_pop(L, 1);
  }
  lua_setfield(L, -2, "awaited_by");
}

/* The task argument at idx, or the current task; 0 when there is none. */
static int task_or_current(lua_State *L, int idx) {
  if (!lua_isnoneornil(L, idx)) {
    host_check_task_arg(L, idx);
    return lua_absindex(L, idx);
  }
  host_task *t = host_task_of(L);
  if (!t) return 0;
  host_task_push(L, t);
  return lua_gettop(L);
}

static int graph_opts(lua_State *L, int idx, int *depth) {
  static const char *const known[] = {"depth", "limit", "file", NULL};
  int limit = diag_opt_limit(L, idx, known);
  *depth = 1;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "depth");
    if (!lua_isnil(L, -1)) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 ||
          lua_tointeger(L, -1) > 1000000)
        luaL_argerror(L, idx, "depth: non-negative integer expected");
      *depth = (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
  }
  return limit;
}

/* capture_call_graph([task [, {depth =, limit =}]]) -> {task, call_stack,
 * awaited_by = {graph...}}, or nil outside a task with no task given.
 * depth: frames of the current task to skip (1: capture_call_graph's
 * caller is the first); call_stack is newest first, as Python's. */
static int l_capture_call_graph(lua_State *L) {
  int depth;
  int limit = graph_opts(L, 2, &depth);
  int task = task_or_current(L, 1);
  if (!task) {
    lua_pushnil(L);
    return 1;
  }
  host_task *t = lua_touserdata(L, task);
  lua_newtable(L);
  push_graph(L, task, t->co == L ? depth - 1 : 0, limit, lua_gettop(L), 0);
  return 1;
}

/* Python's layout: a task's lines under its "* Task(...)" line are indented
 * by 3 more spaces, except at the top. */
static void format_graph(lua_State *L, int graph, int lines,
                         const char *indent, int level) {
  luaL_checkstack(L, 8, "call graph");
  lua_getfield(L, graph, "task");
  diag_push_task_repr(L, lua_gettop(L));
  diag_add_line(L, lines, "%s* %s", indent, lua_tostring(L, -1));
  lua_pop(L, 2);
  lua_pushfstring(L, "%s%s", indent, level > 0 ? "   " : "");
  const char *inner = lua_tostring(L, -1);
  lua_getfield(L, graph, "call_stack");
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  if (n > 0) diag_add_line(L, lines, "%s+ Call stack:", inner);
  lua_pushfstring(L, "%s|   ", inner);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    diag_add_frame_line(L, lines, lua_tostring(L, -2), lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  lua_getfield(L, graph, "awaited_by");
  n = (lua_Integer)lua_rawlen(L, -1);
  if (n > 0 && level < DIAG_GRAPH_DEPTH) {
    diag_add_line(L, lines, "%s+ Awaited by:", inner);
    lua_pushfstring(L, "%s   ", inner);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -2, i);
      format_graph(L, lua_gettop(L), lines, lua_tostring(L, -2), level + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

/* Pushes the lines of the graph of the task at 1 (or the current one). */
static int graph_lines(lua_State *L) {
  int depth;
  int limit = graph_opts(L, 2, &depth);
  int task = task_or_current(L, 1);
  lua_newtable(L);
  int lines = lua_gettop(L);
  if (!task) return lines;
  host_task *t = lua_touserdata(L, task);
  lua_newtable(L);
  push_graph(L, task, t->co == L ? depth - 1 : 0, limit, lua_gettop(L), 0);
  format_graph(L, lua_gettop(L), lines, "", 0);
  lua_settop(L, lines);
  return lines;
}

/* format_call_graph([task [, opts]]) -> the text print_call_graph prints. */
static int l_format_call_graph(lua_State *L) {
  diag_concat_lines(L, graph_lines(L), 0);
  return 1;
}

/* print_call_graph([task [, {depth =, limit =, file =}]]): to stdout or
 * file. */
static int l_print_call_graph(lua_State *L) {
  lua_settop(L, 2);
  int file = diag_opt_file(L, 2);
  int lines = graph_lines(L);
  diag_write_lines(L, lines, file);
  return 0;
}

const luaL_Reg diag_graph_funcs[] = {
    {"capture_call_graph", l_capture_call_graph},
    {"format_call_graph", l_format_call_graph},
    {"print_call_graph", l_print_call_graph},
    {NULL, NULL}};
