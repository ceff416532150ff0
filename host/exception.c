/* The exception handler (asyncio's loop.set_exception_handler): every error
 * the host cannot hand back to a caller (a task failure nobody retrieved, a
 * callback that raised, a connection handler that failed) is described by
 * asyncio's context table -- message, exception, task or handle, plus
 * `traceback`, the report text -- and given to the handler the program
 * set, or printed through the reporter as before (the default handler).
 *
 * The handler is called as handler(loop, context), Python's signature,
 * under lua_pcall: if it raises, both its error and the original context
 * are printed by the default handler, as asyncio logs them. */
#include "host.h"

static const char HANDLER_KEY[] = "lasync.exception_handler";

const char *host_push_exception_text(lua_State *L, int ctx) {
  ctx = lua_absindex(L, ctx);
  luaL_checkstack(L, 4, "exception context");
  lua_getfield(L, ctx, "message");
  const char *msg = lua_isstring(L, -1) ? lua_tostring(L, -1)
                                        : "Unhandled error in the event loop";
  if (lua_getfield(L, ctx, "traceback") != LUA_TSTRING) {
    lua_pop(L, 1);
    if (lua_getfield(L, ctx, "exception") == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushstring(L, msg);
      lua_remove(L, -2);
      return lua_tostring(L, -1);
    }
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
  }
  /* a callback's report stays on the message's line, as before */
  int inline_report = lua_getfield(L, ctx, "handle") != LUA_TNIL;
  lua_pop(L, 1);
  const char *text = lua_pushfstring(L, inline_report ? "%s: %s" : "%s\n%s",
                                     msg, lua_tostring(L, -1));
  lua_replace(L, -3);
  lua_pop(L, 1);
  return text;
}

static void report_default(lasync_host *h, lua_State *L, int ctx) {
  host_report(h, host_push_exception_text(L, ctx));
  lua_pop(L, 1);
}

static int push_handler(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, HANDLER_KEY) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  return 0;
}

static int handler_msgh(lua_State *L) {
  host_push_report(L, L, 1);
  return 1;
}

void host_call_exception_handler(lasync_host *h, lua_State *L, int ctx) {
  ctx = lua_absindex(L, ctx);
  int top = lua_gettop(L);
  if (h->state_closing || !lua_checkstack(L, 6) || !push_handler(L)) {
    lua_settop(L, top);
    report_default(h, L, ctx);
    return;
  }
  lua_pushcfunction(L, handler_msgh);
  lua_insert(L, -2);
  lua_getfield(L, LUA_REGISTRYINDEX, "lasync.loop");
  lua_pushvalue(L, ctx);
  if (lua_pcall(L, 2, 0, top + 1) != LUA_OK) {
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "Unhandled error in exception handler");
    lua_setfield(L, -2, "message");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "traceback");
    report_default(h, L, lua_gettop(L));
    report_default(h, L, ctx);
  }
  lua_settop(L, top);
}

void host_set_exception_handler(lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  lua_setfield(L, LUA_REGISTRYINDEX, HANDLER_KEY);
}

void host_push_exception_handler(lua_State *L) {
  if (!push_handler(L)) lua_pushnil(L);
}

void host_push_context(lua_State *L, const char *message, int err) {
  err = lua_absindex(L, err);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, err);
  lua_setfield(L, -2, "exception");
}
