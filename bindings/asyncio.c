/* luaopen_asyncio: the module table, assembled from each area's registrar.
 * The same function serves the lasync binary (preloaded), embedders and
 * asyncio.so under a stock lua5.4 (which then gets a host of its own). */
#include "io.h"

LASYNC_API int luaopen_asyncio(lua_State *L) {
  lasync_host *h = host_for_module(L);
  lua_newtable(L);
  host_errors_open(L);
  host_open_task(L, h);
  host_open_loop(L, h);
  io_open_stream(L, h);
  io_open_server(L, h);
  io_open_process(L, h);
  io_open_signal(L, h);
  lua_pushliteral(L, LASYNC_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
