/* Diagnostics Lua calls: the exception handler (set/get/call/default, as
 * the loop methods of asyncio), and a task's stack (get_stack,
 * print_stack).  The records behind them are the host's: host/exception.c
 * (the handler), host/origin.c (failure reports), host/where.c (places). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "init.h"

/* ---- the exception handler ---------------------------------------------- */

static int l_set_exception_handler(lua_State *L) {
  if (!lua_isnoneornil(L, 1) && !host_is_callable(L, 1))
    luaL_typeerror(L, 1, "function or nil");
  lua_settop(L, 1);
  /* the handler gets (loop, context): the loop object must exist */
  lua_getfield(L, lua_upvalueindex(2), "get_event_loop");
  lua_call(L, 0, 0);
  host_set_exception_handler(L, 1);
  return 0;
}

static int l_get_exception_handler(lua_State *L) {
  host_push_exception_handler(L);
  return 1;
}

static void check_context(lua_State *L, int idx, const char *fname) {
  if (!lua_istable(L, idx))
    luaL_typeerror(L, idx, "context table");
  if (lua_getfield(L, idx, "message") != LUA_TNIL && !lua_isstring(L, -1))
    luaL_error(L, "bad argument #%d to '%s' (context.message: string "
                  "expected, got %s)", idx, fname, luaL_typename(L, -1));
  lua_pop(L, 1);
}

static int l_call_exception_handler(lua_State *L) {
  check_context(L, 1, "call_exception_handler");
  host_call_exception_handler(HOST(L), L, 1);
  return 0;
}

static int l_default_exception_handler(lua_State *L) {
  check_context(L, 1, "default_exception_handler");
  host_report(HOST(L), host_push_exception_text(L, 1));
  return 0;
}

/* ---- stacks ------------------------------------------------------------- */

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
static void push_stack(lua_State *L, host_task *t, int skip, int limit,
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
static int opt_limit(lua_State *L, int idx, const char *const known[]) {
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
  int limit = opt_limit(L, 2, known);
  push_stack(L, t, 0, limit, 1);
  return 1;
}

/* Appends a formatted line to the list of lines at `lines`. */
static void add_line(lua_State *L, int lines, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_rawseti(L, lines, (lua_Integer)lua_rawlen(L, lines) + 1);
}

/* Appends "File 'x.lua', line 4, in fetch" for the frame table at frame. */
static void add_frame_line(lua_State *L, int lines, const char *indent,
                           int frame) {
  lua_getfield(L, frame, "what");
  lua_getfield(L, frame, "source");
  lua_getfield(L, frame, "line");
  lua_getfield(L, frame, "name");
  if (*lua_tostring(L, -4) == 'C')
    add_line(L, lines, "%s[C] in '%s'", indent, lua_tostring(L, -1));
  else
    add_line(L, lines, "%sFile '%s', line %d, in %s", indent,
             lua_tostring(L, -3), (int)lua_tointeger(L, -2),
             lua_tostring(L, -1));
  lua_pop(L, 4);
}

/* Writes the lines at idx, each ending in "\n", to file (or stdout). */
static void write_lines(lua_State *L, int lines, int file) {
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
static int opt_file(lua_State *L, int idx) {
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

static void push_task_repr(lua_State *L, int task) {
  host_task *t = lua_touserdata(L, task);
  host_task_push_name(L, task);
  lua_pushfstring(L, "Task(name='%s', id=%d)", lua_tostring(L, -1),
                  (int)t->id);
  lua_remove(L, -2);
}

/* task:print_stack([{limit =, file =}]): asyncio's print_stack. */
static int task_print_stack(lua_State *L) {
  static const char *const known[] = {"limit", "file", NULL};
  host_task *t = host_check_task_arg(L, 1);
  int limit = opt_limit(L, 2, known);
  int file = opt_file(L, 2);
  lua_newtable(L);
  int lines = lua_gettop(L);
  push_task_repr(L, 1);
  if (t->state == TASK_DONE && t->outcome == OUTCOME_FAILED) {
    add_line(L, lines, "Traceback for %s (most recent call last):",
             lua_tostring(L, -1));
    host_task_push_report_of(L, t);
    if (lua_isstring(L, -1)) add_line(L, lines, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
  } else {
    push_stack(L, t, 0, limit, 1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n == 0)
      add_line(L, lines, "No stack for %s", lua_tostring(L, -2));
    else
      add_line(L, lines, "Stack for %s (most recent call last):",
               lua_tostring(L, -2));
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      add_frame_line(L, lines, "  ", lua_gettop(L));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  write_lines(L, lines, file);
  return 0;
}

/* ---- the call graph (Python 3.14's capture_call_graph) -------------------- */

#define GRAPH_DEPTH 64 /* awaiting tasks followed, at most, per path */

static void push_graph(lua_State *L, int task, int skip, int limit, int seen,
                       int depth);

/* Adds the graph of the awaiting task `owner` to the list on top, once. */
static void add_awaiter(lua_State *L, host_task *owner, int limit, int seen,
                        int depth) {
  if (!owner || owner->state == TASK_DONE) return;
  host_task_push(L, owner);
  int task = lua_gettop(L);
  lua_pushvalue(L, task);
  if (lua_rawget(L, seen) != LUA_TNIL || depth >= GRAPH_DEPTH) {
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
  push_stack(L, t, skip, limit, 0);
  lua_setfield(L, -2, "call_stack");
  lua_newtable(L); /* awaited_by */
  for (host_link *k = t->awaiters.next; k != &t->awaiters; k = k->next) {
    host_listener *l = host_container_of(k, host_listener, link);
    host_task *owner = l_task_listener_owner(l);
    if (!owner) owner = l_wait_listener_owner(l);
    add_awaiter(L, owner, limit, seen, depth);
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
  int limit = opt_limit(L, idx, known);
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
  push_task_repr(L, lua_gettop(L));
  add_line(L, lines, "%s* %s", indent, lua_tostring(L, -1));
  lua_pop(L, 2);
  lua_pushfstring(L, "%s%s", indent, level > 0 ? "   " : "");
  const char *inner = lua_tostring(L, -1);
  lua_getfield(L, graph, "call_stack");
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  if (n > 0) add_line(L, lines, "%s+ Call stack:", inner);
  lua_pushfstring(L, "%s|   ", inner);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    add_frame_line(L, lines, lua_tostring(L, -2), lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  lua_getfield(L, graph, "awaited_by");
  n = (lua_Integer)lua_rawlen(L, -1);
  if (n > 0 && level < GRAPH_DEPTH) {
    add_line(L, lines, "%s+ Awaited by:", inner);
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
  int lines = graph_lines(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, lines);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\n');
    lua_rawgeti(L, lines, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 1;
}

/* print_call_graph([task [, {depth =, limit =, file =}]]): to stdout or
 * file. */
static int l_print_call_graph(lua_State *L) {
  lua_settop(L, 2);
  int file = opt_file(L, 2);
  int lines = graph_lines(L);
  write_lines(L, lines, file);
  return 0;
}

/* ---- statistics (tokio-console's) ----------------------------------------- */

static void set_seconds(lua_State *L, const char *k, uint64_t ns) {
  lua_pushnumber(L, (double)ns / 1e9);
  lua_setfield(L, -2, k);
}

/* task:stats() -> {created, created_at, steps, wakes, busy, scheduled,
 * idle, last_wake, ended}: times in asyncio.time()'s clock, durations in
 * seconds. */
static int task_stats(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  const host_task_stats *s = &t->stats;
  int done = t->state == TASK_DONE; /* then s->ended is set (a union) */
  uint64_t end = done ? s->ended : uv_hrtime();
  uint64_t life = end - s->created, used = s->busy + s->scheduled;
  lua_createtable(L, 0, 9);
  set_seconds(L, "created", s->created);
  host_push_where(L, &t->created);
  lua_setfield(L, -2, "created_at");
  lua_pushinteger(L, t->steps);
  lua_setfield(L, -2, "steps");
  lua_pushinteger(L, t->wakes);
  lua_setfield(L, -2, "wakes");
  set_seconds(L, "busy", s->busy);
  set_seconds(L, "scheduled", s->scheduled);
  set_seconds(L, "idle", life > used ? life - used : 0);
  if (s->last_wake) set_seconds(L, "last_wake", s->last_wake);
  if (done) set_seconds(L, "ended", s->ended);
  return 1;
}

/* ---- answers to `lasync ps` / `lasync pstree` (host/inspect.c) ----------- */

/* Pushes the pending Tasks, by id.  [-0, +1] */
static void push_tasks_by_id(lua_State *L, lasync_host *h) {
  lua_newtable(L);
  int list = lua_gettop(L);
  host_push_pending(L, h);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    host_task *t = host_test_task_arg(L, -1);
    if (t) lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
    else lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  for (lua_Integer i = 2; i <= n; i++) /* insertion sort: ps is rare */
    for (lua_Integer j = i; j > 1; j--) {
      lua_rawgeti(L, list, j);
      lua_rawgeti(L, list, j - 1);
      host_task *a = lua_touserdata(L, -2), *b = lua_touserdata(L, -1);
      if (a->id >= b->id) {
        lua_pop(L, 2);
        break;
      }
      lua_rawseti(L, list, j);
      lua_rawseti(L, list, j - 1);
    }
}

static const char *state_of_task(host_task *t) {
  if (t->state == TASK_DONE) return "done";
  if (t->flags & TF_QUEUED) return "ready";
  if (t->flags & TF_PARKED) return "waiting";
  return "running";
}

/* Pushes what t waits on ("in 'get' at x.lua:3", "ready"...). */
static void push_waits(lua_State *L, host_task *t) {
  if (!(t->flags & TF_STARTED)) lua_pushliteral(L, "(not started)");
  else if (t->flags & TF_PARKED) host_push_waiting_in(L, t->co);
  else lua_pushliteral(L, "-");
}

/* The rows of `lasync ps`.  [-0, +1] */
static void push_ps(lua_State *L, lasync_host *h) {
  push_tasks_by_id(L, h);
  int list = lua_gettop(L);
  lua_newtable(L);
  int lines = lua_gettop(L);
  char row[512];
  snprintf(row, sizeof row, "%6s  %-20s %-8s %9s %7s  %-40s %s", "ID", "NAME",
           "STATE", "BUSY(s)", "WAKES", "WAITS ON", "CREATED AT");
  add_line(L, lines, "%s", row);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    int task = lua_gettop(L);
    host_task *t = lua_touserdata(L, task);
    char busy[32];
    snprintf(busy, sizeof busy, "%.3f", (double)t->stats.busy / 1e9);
    host_task_push_name(L, task);
    push_waits(L, t);
    if (t->created.src) host_push_where(L, &t->created);
    else lua_pushliteral(L, "the host");
    snprintf(row, sizeof row, "%6d  %-20s %-8s %9s %7d  %-40s %s",
             (int)t->id, lua_tostring(L, -3), state_of_task(t), busy,
             (int)t->wakes, lua_tostring(L, -2), lua_tostring(L, -1));
    add_line(L, lines, "%s", row);
    lua_settop(L, lines);
  }
  lua_remove(L, list);
}

/* Adds Task `child` (at idx) to the children list of `owner` in the table
 * at kids. */
static void add_child(lua_State *L, int kids, host_task *owner, int child) {
  if (!owner || owner->state == TASK_DONE) return;
  host_task_push(L, owner);
  if (lua_rawget(L, kids) == LUA_TNIL) { /* kids[owner] = {} */
    lua_pop(L, 1);
    lua_newtable(L);
    host_task_push(L, owner);
    lua_pushvalue(L, -2);
    lua_rawset(L, kids);
  }
  lua_pushvalue(L, child);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

static void tree_lines(lua_State *L, int task, int kids, int seen, int lines,
                       const char *indent, int depth) {
  host_task *t = lua_touserdata(L, task);
  luaL_checkstack(L, 8, "pstree");
  lua_pushvalue(L, task);
  lua_pushboolean(L, 1);
  lua_rawset(L, seen);
  host_task_push_name(L, task);
  push_waits(L, t);
  add_line(L, lines, "%s└── (T) %s  %s", indent, lua_tostring(L, -2),
           lua_tostring(L, -1));
  lua_pop(L, 2);
  lua_pushvalue(L, task);
  if (lua_rawget(L, kids) == LUA_TTABLE && depth < GRAPH_DEPTH) {
    lua_pushfstring(L, "%s    ", indent);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -2);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -2, i);
      lua_pushvalue(L, -1);
      if (lua_rawget(L, seen) == LUA_TNIL)
        tree_lines(L, lua_gettop(L) - 1, kids, seen, lines,
                   lua_tostring(L, -3), depth + 1);
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* The await tree of `lasync pstree`: each task under the task that awaits
 * it; the roots are awaited by no one.  [-0, +1] */
static void push_pstree(lua_State *L, lasync_host *h) {
  push_tasks_by_id(L, h);
  int list = lua_gettop(L);
  lua_newtable(L);
  int kids = lua_gettop(L);
  lua_newtable(L);
  int awaited = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  lua_getfield(L, LUA_REGISTRYINDEX, L_GROUP_PARENTS);
  int groups = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    int task = lua_gettop(L);
    host_task *t = lua_touserdata(L, task);
    for (host_link *k = t->awaiters.next; k != &t->awaiters; k = k->next) {
      host_listener *l = host_container_of(k, host_listener, link);
      host_task *owner = l_task_listener_owner(l);
      if (!owner) owner = l_wait_listener_owner(l);
      if (owner && owner->state != TASK_DONE) {
        add_child(L, kids, owner, task);
        lua_pushvalue(L, task);
        lua_pushboolean(L, 1);
        lua_rawset(L, awaited);
      }
    }
    if (lua_istable(L, groups)) {
      lua_pushvalue(L, task);
      lua_rawget(L, groups);
      host_task *parent = host_test_task_arg(L, -1);
      lua_pop(L, 1);
      if (parent && parent->state != TASK_DONE) {
        add_child(L, kids, parent, task);
        lua_pushvalue(L, task);
        lua_pushboolean(L, 1);
        lua_rawset(L, awaited);
      }
    }
    lua_settop(L, groups);
  }
  lua_newtable(L);
  int seen = lua_gettop(L);
  lua_newtable(L);
  int lines = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, awaited) == LUA_TNIL)
      tree_lines(L, lua_gettop(L) - 1, kids, seen, lines, "", 0);
    lua_settop(L, lines);
  }
  lua_replace(L, list);
  lua_settop(L, list);
}

static void inspect_answer(lasync_host *h, lua_State *L, const char *cmd) {
  if (strcmp(cmd, "ps") == 0) push_ps(L, h);
  else push_pstree(L, h);
  int lines = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, lines);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, lines, i);
    luaL_addvalue(&b);
    luaL_addchar(&b, '\n');
  }
  luaL_pushresult(&b);
  lua_remove(L, lines);
}

static const luaL_Reg task_methods[] = {{"stats", task_stats},
                                        {"get_stack", task_get_stack},
                                        {"print_stack", task_print_stack},
                                        {NULL, NULL}};

/* ---- debug mode ------------------------------------------------------------ */

/* set_debug(enabled [, {slow_callback_duration = s}]) */
static int l_set_debug(lua_State *L) {
  static const char *const known[] = {"slow_callback_duration", NULL};
  luaL_checkany(L, 1);
  host_check_options(L, 2, known);
  double slow = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "slow_callback_duration");
    if (!lua_isnil(L, -1)) {
      if (!lua_isnumber(L, -1))
        luaL_argerror(L, 2, "slow_callback_duration: number expected");
      slow = lua_tonumber(L, -1);
      if (!(slow > 0 && slow < 1e6))
        luaL_argerror(L, 2, "slow_callback_duration: a positive number of "
                            "seconds expected");
    }
    lua_pop(L, 1);
  }
  int rc = host_debug_set(HOST(L), lua_toboolean(L, 1), slow);
  if (rc) return host_raise_oserror(L, rc, "set_debug", NULL);
  return 0;
}

/* get_debug() -> enabled, slow_callback_duration */
static int l_get_debug(lua_State *L) {
  lasync_host *h = HOST(L);
  lua_pushboolean(L, host_debug_on(h));
  lua_pushnumber(L, host_debug_slow(h));
  return 2;
}

static const luaL_Reg funcs[] = {
    {"set_debug", l_set_debug},
    {"get_debug", l_get_debug},
    {"capture_call_graph", l_capture_call_graph},
    {"format_call_graph", l_format_call_graph},
    {"print_call_graph", l_print_call_graph},
    {"set_exception_handler", l_set_exception_handler},
    {"get_exception_handler", l_get_exception_handler},
    {"call_exception_handler", l_call_exception_handler},
    {"default_exception_handler", l_default_exception_handler},
    {NULL, NULL}};

/* Registers into the module table at the top of the stack (upvalue 2 of
 * each function: the module, for get_event_loop). */
void l_open_diag(lua_State *L, lasync_host *h) {
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 2);
  h->inspect_answer = inspect_answer;
  /* the Task methods: added to the type task.c made */
  luaL_getmetatable(L, HOST_TASK_MT);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, task_methods, 0);
  lua_pop(L, 2);
}
