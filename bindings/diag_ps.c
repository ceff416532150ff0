/* The answers to `lasync ps` (one row per pending task) and `lasync
 * pstree` (each task under the task that awaits it), made in the loop
 * when host/inspect.c asks. */
#include <stdio.h>
#include <string.h>

#include "diag.h"

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
  diag_add_line(L, lines, "%s", row);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    int task = lua_gettop(L);
    host_task *t = lua_touserdata(L, task);
    char busy[32];
    snprintf(busy, sizeof busy, "%.3f", (double)t->stats.busy / 1e9);
    host_task_push_name(L, task);
    push_waits(L, t);
    if (t->created_src) host_push_created(L, t);
    else lua_pushliteral(L, "the host");
    snprintf(row, sizeof row, "%6d  %-20s %-8s %9s %7d  %-40s %s",
             (int)t->id, lua_tostring(L, -3), state_of_task(t), busy,
             (int)t->wakes, lua_tostring(L, -2), lua_tostring(L, -1));
    diag_add_line(L, lines, "%s", row);
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
  diag_add_line(L, lines, "%s└── (T) %s  %s", indent, lua_tostring(L, -2),
           lua_tostring(L, -1));
  lua_pop(L, 2);
  lua_pushvalue(L, task);
  if (lua_rawget(L, kids) == LUA_TTABLE && depth < DIAG_GRAPH_DEPTH) {
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
      host_task *owner = diag_awaiter_of(l);
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

void diag_inspect_answer(lasync_host *h, lua_State *L, const char *cmd) {
  if (strcmp(cmd, "ps") == 0) push_ps(L, h);
  else push_pstree(L, h);
  int lines = lua_gettop(L);
  diag_concat_lines(L, lines, 1);
  lua_remove(L, lines);
}
