/* The exception handler as Lua sees it (set/get/call/default, the loop
 * methods of asyncio); the handler itself is host/exception.c's. */
#include "diag.h"

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

const luaL_Reg diag_handler_funcs[] = {
    {"set_exception_handler", l_set_exception_handler},
    {"get_exception_handler", l_get_exception_handler},
    {"call_exception_handler", l_call_exception_handler},
    {"default_exception_handler", l_default_exception_handler},
    {NULL, NULL}};
