/* asyncio.http.url, the C half: parsing, building and joining URLs with
 * libcurl's URL API (curl_url), so that the URLs http.fetch sends and the
 * ones a program takes apart follow the same parser.  Quoting and query
 * strings are plain byte work, done in http.lua.
 *
 * Parts are given and returned as they stand in the URL (percent-encoded,
 * like Python's urllib.parse.urlsplit); an IPv6 host is given and returned
 * without its brackets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "http.h"

/* Any scheme (urlsplit takes "foo://x" too); the path kept as written
 * (urlsplit removes no dot segments).  Joining resolves dot segments, as
 * RFC 3986 5.2 says. */
#define PARSE_FLAGS (CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS)
#define JOIN_FLAGS CURLU_NON_SUPPORT_SCHEME

static const struct {
  const char *name;
  CURLUPart part;
} PARTS[] = {{"scheme", CURLUPART_SCHEME},   {"user", CURLUPART_USER},
             {"password", CURLUPART_PASSWORD}, {"host", CURLUPART_HOST},
             {"port", CURLUPART_PORT},       {"path", CURLUPART_PATH},
             {"query", CURLUPART_QUERY},     {"fragment", CURLUPART_FRAGMENT}};
#define NPARTS (sizeof PARTS / sizeof PARTS[0])

static const char *const BUILD_KEYS[] = {"scheme", "user", "password", "host",
                                         "port",   "path", "query", "fragment",
                                         NULL};

static CURLU *new_url(lua_State *L) {
  CURLU *u = curl_url();
  if (!u) luaL_error(L, "asyncio.http: out of memory");
  return u;
}

/* Raises http.Error kind "invalid_url": "<fname>: <curl's reason> (<url>)". */
static int url_error(lua_State *L, CURLU *u, const char *fname, CURLUcode rc,
                     const char *url) {
  char msg[160];
  curl_url_cleanup(u);
  snprintf(msg, sizeof msg, "http.url.%s: %s", fname, curl_url_strerror(rc));
  host_http_push_error(L, "invalid_url", url, 0, msg);
  return lua_error(L);
}

/* Pushes part p of u as its field in the table on top (absent: no field). */
static void get_part(lua_State *L, CURLU *u, int i) {
  char *v = NULL;
  if (curl_url_get(u, PARTS[i].part, &v, 0) != CURLUE_OK || !v) return;
  size_t len = strlen(v);
  if (PARTS[i].part == CURLUPART_PORT) {
    lua_pushinteger(L, strtol(v, NULL, 10));
  } else if (PARTS[i].part == CURLUPART_HOST && len >= 2 && v[0] == '[') {
    lua_pushlstring(L, v + 1, len - 2);
  } else {
    lua_pushlstring(L, v, len);
  }
  curl_free(v);
  lua_setfield(L, -2, PARTS[i].name);
}

/* http.url.parse(s) -> {scheme=, user=, password=, host=, port=, path=,
 * query=, fragment=}: an absolute URL taken apart; absent parts are nil. */
static int l_url_parse(lua_State *L) {
  const char *s = host_check_cstring(L, 1, NULL);
  CURLU *u = new_url(L);
  CURLUcode rc = curl_url_set(u, CURLUPART_URL, s, PARSE_FLAGS);
  if (rc) return url_error(L, u, "parse", rc, s);
  lua_createtable(L, 0, NPARTS);
  for (size_t i = 0; i < NPARTS; i++) get_part(L, u, (int)i);
  curl_url_cleanup(u);
  return 1;
}

/* The value of field name in the table at 1 as a C string for curl (a
 * port may be an integer; an IPv6 host gets its brackets), or NULL when
 * absent.  Raises on a wrong type or a NUL byte.  Leaves one value on the
 * stack, which anchors the string. */
static const char *build_field(lua_State *L, const char *name) {
  int t = lua_getfield(L, 1, name);
  if (t == LUA_TNIL) return NULL;
  if (strcmp(name, "port") == 0) {
    lua_Integer port = lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1) || port < 0 || port > 65535)
      luaL_argerror(L, 1, "field 'port' must be an integer in 0..65535");
    lua_pushfstring(L, "%d", (int)port);
    lua_replace(L, -2);
    return lua_tostring(L, -1);
  }
  char what[32]; /* not pushed: the value must stay at -1 */
  snprintf(what, sizeof what, "field '%s'", name);
  const char *v = host_opt_cstring(L, -1, 1, what);
  if (strcmp(name, "host") == 0 && strchr(v, ':') && v[0] != '[') {
    lua_pushfstring(L, "[%s]", v);
    lua_replace(L, -2);
    v = lua_tostring(L, -1);
  }
  return v;
}

/* http.url.build(t) -> string: the parts of t (as parse gives them) put
 * together by curl, which checks each.  Every Lua check comes before the
 * curl handle exists, so an error leaks nothing. */
static int l_url_build(lua_State *L) {
  const char *v[NPARTS];
  luaL_checktype(L, 1, LUA_TTABLE);
  host_check_options(L, 1, BUILD_KEYS);
  lua_settop(L, 1);
  luaL_checkstack(L, NPARTS + 2, NULL);
  for (size_t i = 0; i < NPARTS; i++) v[i] = build_field(L, PARTS[i].name);
  CURLU *u = new_url(L);
  CURLUcode rc = CURLUE_OK;
  size_t bad = NPARTS; /* the part curl refused, if one was */
  for (size_t i = 0; i < NPARTS && !rc; i++)
    if (v[i] && (rc = curl_url_set(u, PARTS[i].part, v[i],
                                   CURLU_NON_SUPPORT_SCHEME)))
      bad = i;
  char *out = NULL;
  if (!rc) rc = curl_url_get(u, CURLUPART_URL, &out, 0);
  curl_url_cleanup(u);
  if (rc) {
    if (bad < NPARTS)
      return luaL_argerror(L, 1, lua_pushfstring(L, "field '%s': %s",
                                                 PARTS[bad].name,
                                                 curl_url_strerror(rc)));
    return luaL_argerror(L, 1, curl_url_strerror(rc));
  }
  lua_pushstring(L, out);
  curl_free(out);
  return 1;
}

/* http.url.join(base, ref) -> the absolute URL ref names, relative to the
 * absolute URL base (RFC 3986 5.2, by curl).  Session's base_url uses it. */
static int l_url_join(lua_State *L) {
  const char *base = host_check_cstring(L, 1, NULL);
  const char *ref = host_check_cstring(L, 2, NULL);
  CURLU *u = new_url(L);
  char *out = NULL;
  CURLUcode rc = curl_url_set(u, CURLUPART_URL, base, JOIN_FLAGS);
  if (rc) return url_error(L, u, "join", rc, base);
  /* A reference of a fragment alone (or nothing) keeps the base's path
   * and query (RFC 3986 5.2.2); curl 7.88 would drop the last segment and
   * the query, so it gets the fragment as a part. */
  if (ref[0] == '\0' || ref[0] == '#')
    rc = curl_url_set(u, CURLUPART_FRAGMENT, ref[0] ? ref + 1 : NULL, 0);
  else
    rc = curl_url_set(u, CURLUPART_URL, ref, JOIN_FLAGS);
  if (!rc) rc = curl_url_get(u, CURLUPART_URL, &out, 0);
  if (rc) return url_error(L, u, "join", rc, ref);
  lua_pushstring(L, out);
  curl_free(out);
  curl_url_cleanup(u);
  return 1;
}

void host_http_url_funcs(lua_State *L) {
  static const luaL_Reg funcs[] = {{"url_parse", l_url_parse},
                                   {"url_build", l_url_build},
                                   {"url_join", l_url_join},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
