/* What the diagnostics files (bindings/diag*.c) share: the text helpers
 * (lines of a report, a `file` option), a task's frames, and the parts'
 * tables, which diag.c registers. */
#ifndef LASYNC_BINDINGS_DIAG_H
#define LASYNC_BINDINGS_DIAG_H

#include "init.h"

#define DIAG_GRAPH_DEPTH 64 /* awaiting tasks followed, at most, per path */

/* ---- diag_text.c: reports as lists of lines ---- */
/* Appends a formatted line to the list of lines at `lines`. */
void diag_add_line(lua_State *L, int lines, const char *fmt, ...);
/* Appends "File 'x.lua', line 4, in fetch" for the frame table at frame. */
void diag_add_frame_line(lua_State *L, int lines, const char *indent,
                         int frame);
/* Writes the lines at idx, each ending in "\n", to file (or stdout). */
void diag_write_lines(lua_State *L, int lines, int file);
/* Pushes the lines at idx as one string, joined by "\n" (and ending in
 * one if `last_newline`).  [-0, +1] */
void diag_concat_lines(lua_State *L, int lines, int last_newline);
/* The `file` option of the options at idx, pushed; its index, or 0
 * (stdout) without one. */
int diag_opt_file(lua_State *L, int idx);
/* Pushes "Task(name='x', id=3)" for the Task at `task`. */
void diag_push_task_repr(lua_State *L, int task);

/* ---- diag_stack.c: a task's frames ---- */
/* Pushes the list of t's frames, newest first (or oldest first), at most
 * limit (< 0: all) of them, skipping `skip` of the running task's. */
void diag_push_stack(lua_State *L, host_task *t, int skip, int limit,
                     int oldest_first);
/* opts {limit =} at idx (other keys: known): limit, or -1 for none. */
int diag_opt_limit(lua_State *L, int idx, const char *const known[]);

/* ---- diag_graph.c ---- */
/* The task that awaits through the done-listener l (await, gather,
 * wait), or NULL. */
host_task *diag_awaiter_of(host_listener *l);

/* ---- the parts' functions: module functions (upvalues: the host, the
 * module) and Task methods ---- */
extern const luaL_Reg diag_handler_funcs[]; /* diag_handler.c */
extern const luaL_Reg diag_graph_funcs[];   /* diag_graph.c */
extern const luaL_Reg diag_debug_funcs[];   /* diag_debug.c */
extern const luaL_Reg diag_stack_methods[]; /* diag_stack.c */
extern const luaL_Reg diag_stats_methods[]; /* diag_stats.c */
/* The answer to `lasync ps` / `lasync pstree` (diag_ps.c: host/inspect.c
 * calls it through h->inspect_answer).  [-0, +1] */
void diag_inspect_answer(lasync_host *h, lua_State *L, const char *cmd);

#endif
