/* Lua-visible C types: one way for every binding to make its metatable. */
#include "host.h"

void host_new_type(lua_State *L, const char *tname, const luaL_Reg *methods,
                   const luaL_Reg *meta, int nup) {
  if (!luaL_newmetatable(L, tname)) { /* made already (another state part) */
    lua_pop(L, 1 + nup);
    return;
  }
  lua_insert(L, -(nup + 1)); /* the metatable below the upvalues */
  if (methods) {
    lua_createtable(L, 0, 8);
    for (int i = 0; i < nup; i++) lua_pushvalue(L, -(nup + 1));
    luaL_setfuncs(L, methods, nup);
    lua_setfield(L, -(nup + 2), "__index");
  }
  if (meta) luaL_setfuncs(L, meta, nup); /* pops the upvalues */
  else lua_pop(L, nup);
  lua_pop(L, 1);
}
