/* Error classes.  A class is a table that is also the metatable of its
 * instances: __index = the class, __tostring = "Name: message", .parent =
 * the base class.  Instances are tables {message = ...} plus whatever fields
 * the raiser adds (errors, partial, kind, url...).  Classes are kept by name
 * in a registry table so every binding finds the same ones.
 *
 * Every failure the OS reports (a libuv error code) is built by
 * host_push_oserror, whichever binding meets it: the same ENOENT is one
 * FileNotFoundError from fs.open, create_subprocess_exec and resp:save. */
#include <stdarg.h>
#include <string.h>

#include "host.h"

static const char CLASSES_KEY[] = "lasync.errors";
#define BASE_CLASS "Error"

static void push_classes(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, CLASSES_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CLASSES_KEY);
  }
}

static int message_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* "Name: message".  A message may be any value (cancel(5), cancel(obj)):
 * it is shown as tostring shows it, and a __tostring that fails gives a
 * placeholder rather than a second error while reporting the first. */
static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "__name");
  const char *name = lua_isstring(L, -1) ? lua_tostring(L, -1) : "Error";
  int type = lua_getfield(L, 1, "message");
  int msg = lua_gettop(L);
  if (type == LUA_TNIL || (type == LUA_TSTRING && lua_rawlen(L, msg) == 0)) {
    lua_pushstring(L, name);
    return 1;
  }
  if (type != LUA_TSTRING) {
    lua_pushcfunction(L, message_tostring);
    lua_pushvalue(L, msg);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushfstring(L, "(a %s whose __tostring failed)",
                      luaL_typename(L, msg));
    }
    msg = lua_gettop(L);
  }
  lua_pushfstring(L, "%s: %s", name, lua_tostring(L, msg));
  return 1;
}

/* Class(msg [, fields]) makes an instance; fields are copied in. */
static int error_call(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE); /* the class */
  lua_settop(L, 3);
  lua_createtable(L, 0, 2);
  if (!lua_isnil(L, 2)) {
    luaL_tolstring(L, 2, NULL);
    lua_setfield(L, -2, "message");
  }
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
  }
  lua_pushvalue(L, 1);
  lua_setmetatable(L, -2);
  return 1;
}

/* The classes every binding shares, each with its parent (NULL: Error).
 * The OSError tree is Python's (PEP 3151); TimeoutError stays asyncio's
 * one class, so ETIMEDOUT and wait_for's timeout are caught alike. */
static const char *const CLASSES[][2] = {
    {"CancelledError", NULL},        {"TimeoutError", NULL},
    {"InvalidStateError", NULL},     {"QueueEmpty", NULL},
    {"QueueFull", NULL},             {"QueueShutDown", NULL},
    {"LimitOverrunError", NULL},     {"IncompleteReadError", NULL},
    {"BrokenBarrierError", NULL},    {"ExceptionGroup", NULL},
    {"OSError", NULL},
    {"ConnectionError", "OSError"},
    {"ConnectionRefusedError", "ConnectionError"},
    {"ConnectionResetError", "ConnectionError"},
    {"ConnectionAbortedError", "ConnectionError"},
    {"BrokenPipeError", "ConnectionError"},
    {"BlockingIOError", "OSError"},  {"FileExistsError", "OSError"},
    {"FileNotFoundError", "OSError"},
    {"InterruptedError", "OSError"}, {"IsADirectoryError", "OSError"},
    {"NotADirectoryError", "OSError"}, {"PermissionError", "OSError"},
    {"ProcessLookupError", "OSError"}};

/* The parent a class is born with when its creator does not name one:
 * whichever binding first builds a FileNotFoundError, it is an OSError. */
static const char *known_parent(const char *name) {
  for (size_t i = 0; i < sizeof CLASSES / sizeof CLASSES[0]; i++)
    if (strcmp(CLASSES[i][0], name) == 0) return CLASSES[i][1];
  return NULL;
}

void host_error_class(lua_State *L, const char *name, const char *parent) {
  push_classes(L);
  if (lua_getfield(L, -1, name) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  if (!parent) parent = known_parent(name);
  lua_newtable(L); /* the class */
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  if (parent || strcmp(name, BASE_CLASS) != 0) {
    host_error_class(L, parent ? parent : BASE_CLASS, NULL);
    lua_setfield(L, -2, "parent");
  }
  /* Calling the class makes an instance; the class's own metatable. */
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, error_call);
  lua_setfield(L, -2, "__call");
  lua_pushfstring(L, "asyncio.%s class", name);
  lua_setfield(L, -2, "__name");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  lua_remove(L, -2);
}

void host_error_push_class(lua_State *L, const char *name) {
  host_error_class(L, name, NULL);
}

static void push_instance(lua_State *L, const char *name, const char *fmt,
                          va_list ap) {
  lua_createtable(L, 0, 2);
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  host_error_class(L, name, NULL);
  lua_setmetatable(L, -2);
}

void host_error_new(lua_State *L, const char *name, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_instance(L, name, fmt, ap);
  va_end(ap);
}

int host_error_raise(lua_State *L, const char *name, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_instance(L, name, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* Walks the parent chain of the value's metatable looking for `cls` (at
 * the top of the stack).  Pops nothing. */
static int instance_of(lua_State *L, int idx) {
  int cls = lua_gettop(L);
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  for (int depth = 0; depth < 32; depth++) {
    if (lua_rawequal(L, -1, cls)) {
      lua_pop(L, 1);
      return 1;
    }
    if (lua_getfield(L, -1, "parent") != LUA_TTABLE) {
      lua_pop(L, 2);
      return 0;
    }
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return 0;
}

int host_error_is(lua_State *L, int idx, const char *name) {
  idx = lua_absindex(L, idx);
  host_error_class(L, name, NULL);
  int r = instance_of(L, idx);
  lua_pop(L, 1);
  return r;
}

int host_is_cancelled_error(lua_State *L, int idx) {
  return host_error_is(L, idx, "CancelledError");
}

/* asyncio.is(err, Class): true when err is an instance of Class or of a
 * class derived from it. */
static int l_is(lua_State *L) {
  luaL_checkany(L, 1);
  luaL_argexpected(L, lua_istable(L, 2), 2, "error class");
  lua_settop(L, 2);
  lua_pushboolean(L, instance_of(L, 1));
  return 1;
}

/* Puts asyncio.Error, every class above and asyncio.is into the module
 * table at the top of the stack. */
void host_errors_open(lua_State *L) {
  host_error_class(L, BASE_CLASS, NULL);
  lua_setfield(L, -2, BASE_CLASS);
  for (size_t i = 0; i < sizeof CLASSES / sizeof CLASSES[0]; i++) {
    host_error_class(L, CLASSES[i][0], CLASSES[i][1]);
    lua_setfield(L, -2, CLASSES[i][0]);
  }
  lua_pushcfunction(L, l_is);
  lua_setfield(L, -2, "is");
}

/* ---- OS errors -------------------------------------------------------- */

/* Python's errno -> OSError subclass table (PEP 3151), over libuv's codes. */
static const char *oserror_class(int code) {
  switch (code) {
  case UV_ECONNREFUSED: return "ConnectionRefusedError";
  case UV_ECONNRESET: return "ConnectionResetError";
  case UV_ECONNABORTED: return "ConnectionAbortedError";
  case UV_EPIPE:
  case UV_ESHUTDOWN: return "BrokenPipeError";
  case UV_EAGAIN:
  case UV_EALREADY: return "BlockingIOError";
  case UV_EEXIST: return "FileExistsError";
  case UV_ENOENT: return "FileNotFoundError";
  case UV_EINTR: return "InterruptedError";
  case UV_EISDIR: return "IsADirectoryError";
  case UV_ENOTDIR: return "NotADirectoryError";
  case UV_EACCES:
  case UV_EPERM: return "PermissionError";
  case UV_ESRCH: return "ProcessLookupError";
  case UV_ETIMEDOUT: return "TimeoutError";
  default: return "OSError";
  }
}

void host_push_oserror_dest(lua_State *L, int code, const char *op,
                            const char *path, const char *dest) {
  const char *cls = oserror_class(code);
  const char *name = uv_err_name(code), *why = uv_strerror(code);
  if (dest)
    host_error_new(L, cls, "%s: %s, %s '%s' -> '%s'", name, why, op, path,
                   dest);
  else if (path)
    host_error_new(L, cls, "%s: %s, %s '%s'", name, why, op, path);
  else
    host_error_new(L, cls, "%s: %s, %s", name, why, op);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, -code);
  lua_setfield(L, -2, "errno");
  lua_pushstring(L, op);
  lua_setfield(L, -2, "op");
  if (path) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  if (dest) {
    lua_pushstring(L, dest);
    lua_setfield(L, -2, "dest");
  }
}

void host_push_oserror(lua_State *L, int code, const char *op,
                       const char *path) {
  host_push_oserror_dest(L, code, op, path, NULL);
}

int host_raise_oserror(lua_State *L, int code, const char *op,
                       const char *path) {
  host_push_oserror_dest(L, code, op, path, NULL);
  return lua_error(L);
}
