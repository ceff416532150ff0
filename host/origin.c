/* Where a failure started, kept as it travels between tasks.
 *
 * When a task fails, its report (the message and the traceback of its
 * thread, taken while the failing frames exist) is recorded once, on the
 * failure path only.  A task that re-raises another task's failure
 * (task:await(), gather, wait_for, task:result(), a TaskGroup) notes that
 * task as the origin of the error; if the error then ends the awaiting task
 * too, its report is the origin's report followed by
 *
 *     task 'fetch-3' awaited by 'main' at:
 *         <the awaiting task's frames: the line that waited>
 *
 * so the first frames printed are those where the error was raised.  An
 * error object (a table) gets the same text, without the message, in its
 * field `traceback`; a string error has the text in the printed report.
 *
 * A task's report is a registry ref in its record, to a table
 * {report, traceback, name}: it survives the task's end (whoever awaits
 * it later reads it) and goes with the Task (task_gc). */
#include <string.h>

#include "host.h"

enum { R_REPORT = 1, R_TRACEBACK, R_NAME };

/* The message an error value shows: a string, __tostring's, or a
 * placeholder.  [-0, +1] */
static const char *push_message(lua_State *L, int err) {
  if (lua_type(L, err) == LUA_TSTRING || lua_type(L, err) == LUA_TNUMBER)
    return lua_pushstring(L, lua_tostring(L, err));
  if (luaL_callmeta(L, err, "__tostring")) {
    if (lua_type(L, -1) == LUA_TSTRING) return lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  return lua_pushfstring(L, "(error object is a %s value)",
                         luaL_typename(L, err));
}

void host_push_report(lua_State *L, lua_State *where, int idx) {
  idx = lua_absindex(L, idx);
  const char *msg = push_message(L, idx);
  luaL_traceback(L, where, msg, 1);
  lua_remove(L, -2);
}

/* The frames of where's stack from level on, without luaL_traceback's
 * "stack traceback:" heading, nor, when they continue a chain on a task's
 * thread, the last frame ("[C]: in ?": the task's body, which says
 * nothing; a lone traceback keeps it, as lua.c's does).  [-0, +1] */
static void push_frames(lua_State *L, lua_State *where, int level,
                        int chained) {
  static const char body[] = "\n\t[C]: in ?";
  luaL_traceback(L, where, NULL, level);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len), *nl = strchr(s, '\n');
  const char *from = nl ? nl + 1 : s + len, *end = s + len;
  if (chained && host_task_of(where) && len >= sizeof body - 1 &&
      strcmp(end - (sizeof body - 1), body) == 0)
    end -= sizeof body - 1;
  lua_pushlstring(L, from, (size_t)(end > from ? end - from : 0));
  lua_remove(L, -2);
}

/* Pushes the name of pending task t.  [-0, +1] */
static void push_name(lua_State *L, host_task *t) {
  host_task_push(L, t);
  host_task_push_name(L, -1);
  lua_remove(L, -2);
}

/* Pushes the record {report, traceback, name} of t's failure, or nil. */
static int push_record(lua_State *L, host_task *t) {
  return host_task_push_rare(L, t, HOST_RARE_REPORT);
}

void host_task_push_report_of(lua_State *L, host_task *t) {
  if (push_record(L, t)) {
    lua_rawgeti(L, -1, R_REPORT);
    lua_remove(L, -2);
  }
}

void host_task_push_report(lua_State *L, int idx) {
  host_task_push_report_of(L, host_check_task_arg(L, idx));
}

void host_task_push_traceback_of(lua_State *L, host_task *t) {
  if (push_record(L, t)) {
    lua_rawgeti(L, -1, R_TRACEBACK);
    lua_remove(L, -2);
  }
}

void host_task_drop_report(lua_State *L, host_task *t) {
  if (!(t->flags & TF_HAS_REPORT)) return;
  lua_pushnil(L);
  host_task_set_rare(L, t, HOST_RARE_REPORT);
}

/* Pushes the origin list noted for the error at err (its reports' records),
 * or nothing (returns 0) when the error did not come from another task. */
static int push_origin(lua_State *L, host_task *t, int err) {
  int top = lua_gettop(L);
  host_task_push(L, t);
  host_task_extras(L, -1, 0);
  lua_remove(L, -2);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "origin") == LUA_TTABLE) {
    lua_remove(L, -2);
    lua_getfield(L, -1, "err");
    int same = lua_rawequal(L, -1, err);
    lua_pop(L, 1);
    if (same) return 1;
  }
  lua_settop(L, top);
  return 0;
}

/* The chain text for the origin list at idx, as seen from the running task
 * `me` on thread L (which waits where the error reached it): the origin's
 * traceback followed by "task 'x' awaited by 'me' at:" and me's frames;
 * several origins (a TaskGroup) follow me's frames, each under a heading.
 * [-0, +1] */
static void push_chain(lua_State *L, host_task *me, int list, int level) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  int top = lua_gettop(L);
  luaL_checkstack(L, 8, "error report");
  push_name(L, me);
  push_frames(L, L, level, n == 1);
  int name = top + 1, frames = top + 2;
  if (n == 1) {
    lua_rawgeti(L, list, 1);
    lua_rawgeti(L, -1, R_TRACEBACK);
    lua_rawgeti(L, -2, R_NAME);
    lua_pushfstring(L, "\ntask '%s' awaited by '%s' at:\n",
                    lua_tostring(L, -1), lua_tostring(L, name));
    lua_remove(L, -2);
    lua_remove(L, -3); /* the record */
  } else {
    lua_pushliteral(L, "stack traceback:\n");
  }
  lua_pushvalue(L, frames);
  lua_concat(L, n == 1 ? 3 : 2);
  for (lua_Integer i = 1; i <= n && n > 1; i++) {
    lua_rawgeti(L, list, i);
    lua_rawgeti(L, -1, R_NAME);
    lua_pushfstring(L, "\n[%I] in task '%s', awaited by '%s': ", i,
                    lua_tostring(L, -1), lua_tostring(L, name));
    lua_remove(L, -2);
    lua_rawgeti(L, -2, R_REPORT);
    lua_remove(L, -3);
    lua_concat(L, 3); /* what was built so far, heading, report */
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* The traceback text of t's failure: the chain noted for this error, or
 * its own frames.  [-0, +1] */
static void push_traceback(lua_State *L, host_task *t, lua_State *where,
                           int level, int err) {
  if (push_origin(L, t, err)) {
    lua_getfield(L, -1, "chain");
    lua_remove(L, -2);
    if (lua_isstring(L, -1)) return;
    lua_pop(L, 1);
  }
  luaL_traceback(L, where, NULL, level);
}

/* Sets the field `traceback` of a table error at err to the string on top
 * (rawset: a class's __newindex must not run here).  [-0, +0] */
static void set_field(lua_State *L, int err) {
  if (lua_type(L, err) != LUA_TTABLE) return;
  lua_pushliteral(L, "traceback");
  lua_pushvalue(L, -2);
  lua_rawset(L, err);
}

void host_task_record_failure(lua_State *L, host_task *t, lua_State *where,
                              int level, int err) {
  int top = lua_gettop(L);
  err = lua_absindex(L, err);
  luaL_checkstack(L, 12, "error report");
  lua_createtable(L, 3, 0);
  int rec = top + 1;
  push_traceback(L, t, where, level, err);
  push_message(L, err);
  lua_pushfstring(L, "%s\n%s", lua_tostring(L, -1), lua_tostring(L, -2));
  lua_rawseti(L, rec, R_REPORT);
  lua_pop(L, 1);
  set_field(L, err);
  lua_rawseti(L, rec, R_TRACEBACK);
  push_name(L, t);
  lua_rawseti(L, rec, R_NAME);
  host_task_set_rare(L, t, HOST_RARE_REPORT); /* replaces an earlier one */
  lua_settop(L, top);
}

void host_task_note_origin(lua_State *L, host_task *me, int err,
                           host_task *from, int level) {
  if (!(from->flags & TF_HAS_REPORT) || me->state == TASK_DONE) return;
  int top = lua_gettop(L);
  err = lua_absindex(L, err);
  luaL_checkstack(L, 6, "error report");
  host_task_push(L, me);
  host_task_extras(L, -1, 1);
  int extras = lua_gettop(L);
  if (push_origin(L, me, err) == 0) { /* a new error: a new list */
    lua_createtable(L, 1, 1);
    lua_pushvalue(L, err);
    lua_setfield(L, -2, "err");
    lua_pushvalue(L, -1);
    lua_setfield(L, extras, "origin");
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) { /* noted once per task */
    lua_rawgeti(L, -1, i);
    push_record(L, from);
    int seen = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (seen) {
      lua_settop(L, top);
      return;
    }
  }
  push_record(L, from);
  lua_rawseti(L, -2, n + 1);
  push_chain(L, me, lua_gettop(L), level);
  set_field(L, err);
  lua_setfield(L, -2, "chain");
  lua_settop(L, top);
}
