/* The compiled-in Lua parts of the bindings (the .lua files of
 * bindings/, embedded by CMakeLists.txt's lasync_embed_lua) found by name,
 * so that each C half loads its Lua half, and a Lua half the parts it is
 * made of, one way. */
#include "init.h"

/* gen/lua_parts.c: the part's bytes, or NULL when there is none. */
const unsigned char *l_lua_part_code(const char *name, size_t *len);

void l_load_lua_part(lua_State *L, const char *name) {
  size_t len;
  const unsigned char *code = l_lua_part_code(name, &len);
  if (!code) luaL_error(L, "asyncio: no compiled-in Lua part '%s'", name);
  /* the chunk name is what argument errors and tracebacks show */
  const char *chunk = lua_pushfstring(L, "=asyncio/%s.lua", name);
  int rc = luaL_loadbufferx(L, (const char *)code, len, chunk, "t");
  lua_remove(L, -2);
  if (rc != LUA_OK) lua_error(L);
}

/* lua_part(name) -> the part's chunk, not yet run. */
static int l_lua_part(lua_State *L) {
  l_load_lua_part(L, luaL_checkstring(L, 1));
  return 1;
}

void l_push_lua_part_loader(lua_State *L) {
  lua_pushcfunction(L, l_lua_part);
}
