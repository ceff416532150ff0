/* Diagnostics Lua calls, registered here from their parts: the exception
 * handler (diag_handler.c), a task's stack (diag_stack.c), the call graph
 * (diag_graph.c), per-task statistics (diag_stats.c), the answers to
 * `lasync ps/pstree` (diag_ps.c) and debug mode (diag_debug.c).  The
 * records behind them are the host's: host/exception.c (the handler),
 * host/origin.c (failure reports), host/where.c (places), host/debug.c. */
#include "diag.h"

/* Registers into the module table at the top of the stack (upvalue 2 of
 * each function: the module, for get_event_loop). */
void l_open_diag(lua_State *L, lasync_host *h) {
  const luaL_Reg *const funcs[] = {diag_handler_funcs, diag_graph_funcs,
                                   diag_debug_funcs};
  for (size_t i = 0; i < sizeof funcs / sizeof *funcs; i++) {
    lua_pushlightuserdata(L, h);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, funcs[i], 2);
  }
  h->inspect_answer = diag_inspect_answer;
  /* the Task methods: added to the type task.c made */
  luaL_getmetatable(L, HOST_TASK_MT);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, diag_stack_methods, 0);
  luaL_setfuncs(L, diag_stats_methods, 0);
  lua_pop(L, 2);
}
