/* Debug mode as Lua sets it: set_debug/get_debug, and asyncio.run's
 * options ({debug =, slow_callback_duration =}).  The watchdog and the
 * reports are host/debug.c's. */
#include "diag.h"

/* The field slow_callback_duration of the options at idx (argument
 * `arg` of fname): seconds, or 0 when absent. */
static double opt_slow(lua_State *L, int idx, int arg) {
  double slow = 0;
  lua_getfield(L, idx, "slow_callback_duration");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, arg, lua_pushfstring(L, "slow_callback_duration: "
                    "number expected, got %s", luaL_typename(L, -1)));
    slow = lua_tonumber(L, -1);
    if (!(slow > 0 && slow < 1e6))
      luaL_argerror(L, arg, "slow_callback_duration: a positive number of "
                            "seconds expected");
  }
  lua_pop(L, 1);
  return slow;
}

static void set_debug(lua_State *L, int on, double slow, const char *fname) {
  int rc = host_debug_set(HOST(L), on, slow);
  if (rc) host_raise_oserror(L, rc, fname, NULL);
}

/* set_debug(enabled [, {slow_callback_duration = s}]) */
static int l_set_debug(lua_State *L) {
  static const char *const known[] = {"slow_callback_duration", NULL};
  luaL_checkany(L, 1);
  host_check_options(L, 2, known);
  double slow = lua_istable(L, 2) ? opt_slow(L, 2, 2) : 0;
  set_debug(L, lua_toboolean(L, 1), slow, "set_debug");
  return 0;
}

/* asyncio.run(fn, {debug =, slow_callback_duration =}, ...): Python's
 * asyncio.run(main, debug=True).  run passes its other arguments to fn,
 * so the table is run's options only when it is a plain table (no
 * metatable) with one of those two fields; then every key must be one of
 * them.  debug = nil leaves debug mode as it is, as Python's None. */
int l_run_options(lua_State *L, int idx) {
  static const char *const known[] = {"debug", "slow_callback_duration",
                                      NULL};
  if (lua_type(L, idx) != LUA_TTABLE || lua_getmetatable(L, idx)) {
    if (lua_type(L, idx) == LUA_TTABLE) lua_pop(L, 1);
    return 0;
  }
  int is_opts = lua_getfield(L, idx, "debug") != LUA_TNIL;
  is_opts |= lua_getfield(L, idx, "slow_callback_duration") != LUA_TNIL;
  lua_pop(L, 2);
  if (!is_opts) return 0;
  host_check_options(L, idx, known);
  double slow = opt_slow(L, idx, idx);
  int on = host_debug_on(HOST(L));
  int type = lua_getfield(L, idx, "debug");
  if (type != LUA_TNIL && type != LUA_TBOOLEAN)
    luaL_argerror(L, idx, lua_pushfstring(L, "debug: boolean expected, got "
                                          "%s", luaL_typename(L, -1)));
  if (type == LUA_TBOOLEAN) on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  set_debug(L, on, slow, "run");
  return 1;
}

/* get_debug() -> enabled, slow_callback_duration */
static int l_get_debug(lua_State *L) {
  lasync_host *h = HOST(L);
  lua_pushboolean(L, host_debug_on(h));
  lua_pushnumber(L, host_debug_slow(h));
  return 2;
}

const luaL_Reg diag_debug_funcs[] = {{"set_debug", l_set_debug},
                                     {"get_debug", l_get_debug},
                                     {NULL, NULL}};
