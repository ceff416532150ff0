/* Lua values as bytes, and back (copy.h).  The format is a tag byte per
 * value: 'n' nil, 'f' false, 't' true, 'i' integer (8 bytes), 'd' float
 * (8 bytes), 's' string (length, bytes), 'F' function (length, bytecode),
 * 'T' table (key, value pairs, then 'E').  Both ends are this file, in one
 * process: numbers and lengths travel in native byte order. */
#include <string.h>

#include "copy.h"

typedef struct enc {
  lua_State *L;
  host_buf *out;
  size_t limit;
  int visiting;       /* stack index: the tables on the current path */
  int depth;
  int nsegs;          /* path segments pushed while unwinding a failure */
  const char *why;    /* what is wrong with the value that failed */
  int oom;
  int in_key;         /* it was a table key */
} enc;

static int put(enc *e, const void *p, size_t n) {
  if (n > e->limit || e->out->len > e->limit - n) {
    e->why = "too large";
    return -1;
  }
  if (host_buf_add(e->out, p, n)) {
    e->oom = 1;
    return -1;
  }
  return 0;
}

static int put_tag(enc *e, char tag) { return put(e, &tag, 1); }

static int put_bytes(enc *e, char tag, const char *s, size_t len) {
  if (put_tag(e, tag) || put(e, &len, sizeof len)) return -1;
  return put(e, s, len);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  return put(ud, p, sz) ? 1 : 0;
}

/* A Lua function whose upvalues are at most _ENV (which the worker's
 * globals replace), as its bytecode with debug information kept (so
 * errors in the worker name lines). */
static int put_function(enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_iscfunction(L, idx)) {
    e->why = "is a C function (only Lua functions can be copied)";
    return -1;
  }
  for (int i = 1;; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    if (!name) break;
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0) {
      lua_pushfstring(L, "is a function with upvalue '%s' (only globals "
                         "can be used: pass values as arguments)", name);
      lua_replace(L, e->visiting + 1); /* the message slot */
      e->why = NULL;
      return -1;
    }
  }
  size_t mark = e->out->len;
  char tag = 'F';
  size_t len = 0;
  if (put(e, &tag, 1) || put(e, &len, sizeof len)) return -1;
  lua_pushvalue(L, idx);
  int rc = lua_dump(L, dump_writer, e, 0);
  lua_pop(L, 1);
  if (rc) return -1;
  len = e->out->len - mark - 1 - sizeof len;
  memcpy(e->out->p + mark + 1, &len, sizeof len);
  return 0;
}

static int put_value(enc *e, int idx);

/* Pushes the path segment for the key at idx: .name, [3], ["a b"]. */
static void push_segment(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    int ident = len > 0 && !(s[0] >= '0' && s[0] <= '9');
    for (size_t i = 0; i < len && ident; i++)
      ident = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_';
    if (ident) lua_pushfstring(L, ".%s", s);
    else lua_pushfstring(L, "[\"%s\"]", s);
  } else if (lua_isinteger(L, idx)) {
    lua_pushfstring(L, "[%I]", lua_tointeger(L, idx));
  } else {
    lua_pushfstring(L, "[%s key]", luaL_typename(L, idx));
  }
}

static int put_table(enc *e, int idx) {
  lua_State *L = e->L;
  if (e->depth >= COPY_MAX_DEPTH) {
    e->why = "nested too deeply (more than 200 levels)";
    return -1;
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->visiting) != LUA_TNIL) {
    lua_pop(L, 1);
    e->why = "a cycle (a table that contains itself)";
    return -1;
  }
  lua_pop(L, 1);
  if (!lua_checkstack(L, 6)) {
    e->oom = 1;
    return -1;
  }
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, e->visiting);
  e->depth++;
  if (put_tag(e, 'T')) return -1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int v = lua_gettop(L), k = v - 1;
    if (put_value(e, k)) {
      e->in_key = 1; /* the key itself: the path ends at this table */
      return -1;
    }
    if (put_value(e, v)) {
      /* above the segments a failure deeper down pushed: they stay on
       * top, innermost first (each needs room of its own: the room the
       * deeper levels checked for is used up by the time they unwind) */
      if (!lua_checkstack(L, 4)) {
        e->oom = 1;
        return -1;
      }
      push_segment(L, k);
      e->nsegs++;
      return -1;
    }
    lua_pop(L, 1);
  }
  e->depth--;
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, e->visiting);
  return put_tag(e, 'E');
}

static int put_value(enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return put_tag(e, 'n');
  case LUA_TBOOLEAN:
    return put_tag(e, lua_toboolean(L, idx) ? 't' : 'f');
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      return put_tag(e, 'i') || put(e, &i, sizeof i);
    } else {
      lua_Number d = lua_tonumber(L, idx);
      return put_tag(e, 'd') || put(e, &d, sizeof d);
    }
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_bytes(e, 's', s, len);
  }
  case LUA_TTABLE:
    return put_table(e, lua_absindex(L, idx));
  case LUA_TFUNCTION:
    return put_function(e, lua_absindex(L, idx));
  case LUA_TUSERDATA:
  case LUA_TLIGHTUSERDATA:
    e->why = "is a userdata";
    return -1;
  case LUA_TTHREAD:
    e->why = "is a thread";
    return -1;
  default:
    e->why = "cannot be copied";
    return -1;
  }
}

/* Arguments: enc, what, first, limit-message slot; then the values. */
static int encode_p(lua_State *L) {
  enc *e = lua_touserdata(L, 1);
  const char *what = lua_tostring(L, 2);
  int first = (int)lua_tointeger(L, 3);
  int n = lua_gettop(L) - 3;
  e->L = L;
  lua_newtable(L);
  e->visiting = lua_gettop(L);
  lua_pushnil(L); /* visiting + 1: a message made by put_function */
  for (int i = 1; i <= n; i++) {
    e->nsegs = e->in_key = 0;
    e->why = NULL;
    if (!put_value(e, 3 + i)) continue;
    if (e->oom) return luaL_error(L, "not enough memory");
    /* the segments were pushed innermost first: join them outermost first */
    int top = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int s = top; s > top - e->nsegs; s--) {
      lua_pushvalue(L, s);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    const char *path = lua_tostring(L, -1);
    if (*path == '.') path++;
    const char *why = e->why;
    if (why && strcmp(why, "too large") == 0)
      lua_pushfstring(L, "is too large to copy (more than %I bytes in all; "
                         "asyncio.to_thread_limit(bytes) raises the cap)",
                      (lua_Integer)e->limit);
    else if (why)
      lua_pushfstring(L, "%s%s", strncmp(why, "is", 2) == 0 ? "" : "is ", why);
    else
      lua_pushvalue(L, e->visiting + 1);
    if (e->in_key) {
      lua_pushfstring(L, "has a key that %s", lua_tostring(L, -1));
      lua_remove(L, -2);
    }
    if (*path)
      lua_pushfstring(L, "%s #%d field '%s' %s", what, first + i - 1, path,
                      lua_tostring(L, -1));
    else
      lua_pushfstring(L, "%s #%d %s", what, first + i - 1,
                      lua_tostring(L, -1));
    return lua_error(L);
  }
  return 0;
}

int copy_encode(lua_State *L, int n, host_buf *out, size_t limit,
                const char *what, int first) {
  enc e;
  memset(&e, 0, sizeof e);
  e.out = out;
  e.limit = limit;
  if (!lua_checkstack(L, n + 4)) {
    lua_pushliteral(L, "not enough memory");
    return -1;
  }
  int base = lua_gettop(L) - n;
  lua_pushcfunction(L, encode_p);
  lua_pushlightuserdata(L, &e);
  lua_pushstring(L, what);
  lua_pushinteger(L, first);
  for (int i = 1; i <= n; i++) lua_pushvalue(L, base + i);
  if (lua_pcall(L, n + 3, 0, 0) != LUA_OK) {
    host_buf_free(out);
    return -1;
  }
  return 0;
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct dec {
  const char *p, *end;
} dec;

static int get(dec *d, void *dst, size_t n) {
  if ((size_t)(d->end - d->p) < n) return -1;
  memcpy(dst, d->p, n);
  d->p += n;
  return 0;
}

static void bad(lua_State *L) { luaL_error(L, "to_thread: corrupt copy"); }

static void get_value(lua_State *L, dec *d);

static void get_table(lua_State *L, dec *d) {
  luaL_checkstack(L, 4, "nested tables");
  lua_newtable(L);
  while (d->p < d->end && *d->p != 'E') {
    get_value(L, d);
    get_value(L, d);
    if (lua_isnil(L, -2)) bad(L);
    lua_rawset(L, -3);
  }
  if (d->p >= d->end) bad(L);
  d->p++;
}

static void get_value(lua_State *L, dec *d) {
  char tag = 0;
  if (get(d, &tag, 1)) bad(L);
  switch (tag) {
  case 'n': lua_pushnil(L); return;
  case 'f': lua_pushboolean(L, 0); return;
  case 't': lua_pushboolean(L, 1); return;
  case 'i': {
    lua_Integer i = 0;
    if (get(d, &i, sizeof i)) bad(L);
    lua_pushinteger(L, i);
    return;
  }
  case 'd': {
    lua_Number n = 0;
    if (get(d, &n, sizeof n)) bad(L);
    lua_pushnumber(L, n);
    return;
  }
  case 's':
  case 'F': {
    size_t len = 0;
    if (get(d, &len, sizeof len) || (size_t)(d->end - d->p) < len) bad(L);
    if (tag == 's') lua_pushlstring(L, d->p, len);
    else if (luaL_loadbufferx(L, d->p, len, "=to_thread", "b") != LUA_OK)
      lua_error(L);
    d->p += len;
    return;
  }
  case 'T': get_table(L, d); return;
  default: bad(L);
  }
}

static int decode_p(lua_State *L) {
  dec *d = lua_touserdata(L, 1);
  lua_pop(L, 1);
  while (d->p < d->end) {
    luaL_checkstack(L, 2, "to_thread values");
    get_value(L, d);
  }
  return lua_gettop(L);
}

int copy_decode(lua_State *L, const char *buf, size_t len) {
  dec d = {buf, buf + len};
  int top = lua_gettop(L);
  lua_pushcfunction(L, decode_p);
  lua_pushlightuserdata(L, &d);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) return -1;
  return lua_gettop(L) - top;
}
