/* The request records of asyncio.http.server, as Lua sees them.
 *
 * A record has two owners: libmicrohttpd (until on_completed) and the Lua
 * value (until __gc).  The last to let go frees it.  A request dropped by
 * Lua without an answer gets a 500, so a connection is never left
 * suspended forever.  A streamed response is a byte buffer between the
 * handler's write() and libmicrohttpd's content reader: write() parks the
 * task while the buffer is over the high-water mark; the reader suspends
 * the connection while the buffer is empty. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_server.h"
#include "io.h"

#define OUT_HIGH (64 * 1024)
#define OUT_LOW (16 * 1024)

void web_request_free(web_request *rq) {
  if (rq->resp) MHD_destroy_response(rq->resp);
  if (rq->up_fd >= 0) close(rq->up_fd);
  if (rq->urh) MHD_upgrade_action(rq->urh, MHD_UPGRADE_ACTION_CLOSE);
  free(rq->up_extra);
  free(rq->method); /* path and version are in the same block */
  free(rq->body);
  free(rq->out);
  free(rq);
}

void web_request_suspend(web_request *rq) {
  if (rq->suspended || rq->gone) return;
  MHD_suspend_connection(rq->c);
  rq->suspended = 1;
}

void web_request_resume(web_request *rq) {
  if (!rq->suspended || rq->gone) return;
  rq->suspended = 0;
  MHD_resume_connection(rq->c);
  web_server_kick(rq->srv);
}

void web_request_answered(web_request *rq) {
  if (rq->suspended) web_request_resume(rq);
  else if (!rq->gone) web_server_kick(rq->srv);
}

static void wake_writer(web_request *rq) {
  host_task *t = rq->writer;
  if (!t) return;
  rq->writer = NULL;
  host_wake(t, NULL, 0);
}

static void wake_upgrader(web_request *rq) {
  host_task *t = rq->upgrader;
  if (!t) return;
  rq->upgrader = NULL;
  host_wake(t, NULL, 0);
}

void web_request_wake_reader(web_request *rq) {
  host_task *t = rq->reader;
  if (!t) return;
  rq->reader = NULL;
  host_wake(t, NULL, 0);
}

void web_request_completed(web_request *rq) {
  host_list_remove(&rq->link);
  host_list_init(&rq->link);
  rq->gone = 1;
  rq->suspended = 0;
  rq->srv = NULL;
  rq->c = NULL;
  wake_writer(rq);
  wake_upgrader(rq);
  web_request_wake_reader(rq);
  if (!rq->lua) web_request_free(rq);
}

static web_request *check_request(lua_State *L) {
  web_request **box = luaL_checkudata(L, 1, WEB_REQUEST_MT);
  if (!*box) luaL_error(L, "the request is finalized");
  return *box;
}

void web_request_push(lua_State *L, web_request *rq) {
  web_request **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = rq;
  rq->lua = 1;
  luaL_setmetatable(L, WEB_REQUEST_MT);
}

/* ---- what was asked ------------------------------------------------------ */

/* meta() -> method, path, version, remote ip, remote port.  The handler
 * task's first call (http_server.lua's new_request): from then on a
 * request not answered yet is suspended (on_access). */
static int l_meta(lua_State *L) {
  web_request *rq = check_request(L);
  rq->started = 1;
  char ip[64] = "";
  int port = 0;
  lua_pushstring(L, rq->method);
  lua_pushstring(L, rq->path);
  lua_pushstring(L, rq->version);
  if (!rq->gone) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET6) {
      const struct sockaddr_in6 *a = (const void *)sa;
      uv_ip6_name(a, ip, sizeof ip);
      port = ntohs(a->sin6_port);
    } else if (sa && sa->sa_family == AF_INET) {
      const struct sockaddr_in *a = (const void *)sa;
      uv_ip4_name(a, ip, sizeof ip);
      port = ntohs(a->sin_port);
    }
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 5;
}

/* Header names are case-insensitive: stored in lower case.  A repeated
 * name's values are joined with ", " in arrival order. */
static enum MHD_Result add_field(void *cls, enum MHD_ValueKind kind,
                                 const char *key, size_t klen,
                                 const char *value, size_t vlen) {
  lua_State *L = cls;
  if (kind == MHD_HEADER_KIND) {
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, klen);
    for (size_t i = 0; i < klen; i++) p[i] = (char)tolower((unsigned char)key[i]);
    luaL_pushresultsize(&b, klen);
  } else {
    lua_pushlstring(L, key, klen);
  }
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) == LUA_TSTRING) {
    lua_pushliteral(L, ", ");
    lua_pushlstring(L, value ? value : "", value ? vlen : 0);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, value ? value : "", value ? vlen : 0);
  }
  lua_rawset(L, -3);
  return MHD_YES;
}

/* fields(headers_mt) -> headers, query: the request's header fields (lower
 * case names, headers_mt as metatable) and its decoded query as maps,
 * repeated names joined with ", ".  One call instead of flat lists a Lua
 * loop copies: the handler's request is built on every request. */
static int l_fields(lua_State *L) {
  web_request *rq = check_request(L);
  lua_settop(L, 2);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, 2);
  lua_setmetatable(L, -2);
  if (!rq->gone)
    MHD_get_connection_values_n(rq->c, MHD_HEADER_KIND, add_field, L);
  lua_newtable(L);
  if (!rq->gone)
    MHD_get_connection_values_n(rq->c, MHD_GET_ARGUMENT_KIND, add_field, L);
  return 2;
}

static int gone_error(lua_State *L) {
  return host_raise_oserror(L, UV_ECONNRESET, "write", NULL);
}

static int read_cancel(host_task *t, int woken) {
  web_request *rq = t->wait_data;
  if (!woken && rq->reader == t) rq->reader = NULL;
  return 0;
}

/* libmicrohttpd 0.9.75 takes a read shorter than asked for as "the
 * socket is drained" and waits for the next edge of its (edge-triggered)
 * epoll; a FIN that came in with the last bytes makes no further edge,
 * so a client gone mid-body went unnoticed until idle_timeout.  Before a
 * reader waits: if the socket is at its end, shutting its reading side
 * (a no-op for the data, the peer is done) wakes the epoll again and
 * libmicrohttpd reads the end. */
static void notice_eof(web_request *rq) {
  const union MHD_ConnectionInfo *ci;
  char b;
  if (rq->gone || !rq->c || rq->suspended) return;
  ci = MHD_get_connection_info(rq->c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (ci && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
    shutdown(ci->connect_fd, SHUT_RD);
}

/* Takes up to max unread body bytes; resumes a streamed upload that was
 * suspended for back-pressure once its buffer is drained. */
static int read_k(lua_State *L, lua_KContext ctx) {
  web_request *rq = *(web_request **)lua_touserdata(L, 1);
  size_t max = (size_t)ctx, have = rq->body_len - rq->body_off;
  if (have) {
    size_t n = have < max ? have : max;
    lua_pushlstring(L, rq->body + rq->body_off, n);
    rq->body_off += n;
    if (rq->body_off == rq->body_len) rq->body_off = rq->body_len = 0;
    if (!rq->body_done && !rq->queued) web_request_resume(rq);
    return 1;
  }
  if (rq->body_done) return lua_pushliteral(L, ""), 1;
  if (rq->gone) return host_raise_oserror(L, UV_ECONNRESET, "read", NULL);
  host_task *t = host_check_task(L, "read");
  rq->reader = t;
  if (!rq->queued) web_request_resume(rq);
  notice_eof(rq);
  return host_park(L, t, read_cancel, rq, read_k, ctx);
}

/* read(max) -> up to max bytes of the body as they arrive; "" at its
 * end; ConnectionResetError if the client left before sending it all. */
static int l_read(lua_State *L) {
  web_request *rq = check_request(L);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max > 0, 2, "read(): size must be a positive integer");
  if (rq->reader) return luaL_error(L, "read(): another task is reading");
  lua_settop(L, 1);
  return read_k(L, (lua_KContext)max);
}

/* ---- the answer ---------------------------------------------------------- */

static int valid_header_text(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

/* Adds the name and value at the top of the stack (popped); raises on
 * CR, LF or NUL. */
static void add_header(lua_State *L, struct MHD_Response *r) {
  size_t kl, vl;
  const char *k = lua_tolstring(L, -2, &kl);
  const char *v = lua_tolstring(L, -1, &vl);
  if (!k || !v || kl == 0 || !valid_header_text(k, kl) ||
      !valid_header_text(v, vl) || strchr(k, ':') || strchr(k, ' ')) {
    MHD_destroy_response(r);
    luaL_error(L, "respond(): bad response header %s",
               k ? lua_pushfstring(L, "'%s'", k) : "name");
  }
  MHD_add_response_header(r, k, v);
  lua_pop(L, 2);
}

/* Adds the pairs of the flat list at idx. */
static void add_headers(lua_State *L, int idx, struct MHD_Response *r) {
  lua_Integer n = (lua_Integer)luaL_len(L, idx);
  for (lua_Integer i = 1; i + 1 <= n; i += 2) {
    lua_rawgeti(L, idx, i);
    lua_rawgeti(L, idx, i + 1);
    add_header(L, r);
  }
}

/* A handler's headers: the map at idx (or nil) in pairs() order, then
 * "Connection: close" when close; the handler's names and values are
 * strings or numbers.  Checked before the response is made (r is made
 * by make and destroyed on an error), read without a flat copy. */
static void add_header_map(lua_State *L, int idx, struct MHD_Response *r,
                           int close) {
  if (!lua_isnil(L, idx)) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2); /* key, key, value: add_header pops the last two */
      add_header(L, r);
    }
  }
  if (close) MHD_add_response_header(r, "Connection", "close");
}

/* The headers argument at idx: a flat list, or with map a handler's map
 * or nil and the closing flag at close_idx.  A map's names must be strings,
 * its values strings or numbers: checked first, whatever else is wrong
 * (as the Lua layer did when it flattened the map). */
static void check_headers_arg(lua_State *L, int idx, int map) {
  if (!map) {
    luaL_checktype(L, idx, LUA_TTABLE);
    return;
  }
  if (lua_isnil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int vt = lua_type(L, -1);
    if (lua_type(L, -2) != LUA_TSTRING ||
        (vt != LUA_TSTRING && vt != LUA_TNUMBER))
      luaL_error(L, "handler: response header names and values must be strings");
    lua_pop(L, 1);
  }
}

static void add_headers_arg(lua_State *L, int idx, struct MHD_Response *r,
                            int map, int close_idx) {
  if (map)
    add_header_map(L, idx, r, lua_toboolean(L, close_idx));
  else
    add_headers(L, idx, r);
}

static int check_status(lua_State *L, int idx) {
  lua_Integer st = luaL_checkinteger(L, idx);
  luaL_argcheck(L, st >= 100 && st <= 999, idx,
                "status must be an integer from 100 to 999");
  return (int)st;
}

static int give(lua_State *L, web_request *rq, struct MHD_Response *r,
                int status) {
  rq->resp = r;
  rq->status = (unsigned)status;
  rq->queued = 1;
  web_request_answered(rq);
  lua_pushboolean(L, 1);
  return 1;
}

static int respond(lua_State *L, int map) {
  web_request *rq = check_request(L);
  int status = check_status(L, 2);
  size_t len;
  check_headers_arg(L, 3, map);
  const char *body = luaL_optlstring(L, 4, "", &len);
  if (rq->queued) return luaL_error(L, "respond(): already answered");
  if (rq->gone) return lua_pushboolean(L, 0), 1;
  struct MHD_Response *r = MHD_create_response_from_buffer(
      len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return luaL_error(L, "not enough memory");
  add_headers_arg(L, 3, r, map, 5);
  return give(L, rq, r, status);
}

/* respond(status, headers, body) -> true, or false when the client left;
 * headers a flat list {name1, value1, ...} */
static int l_respond(lua_State *L) { return respond(L, 0); }

/* respond_map(status, headers, body, closing): headers a handler's map
 * (or nil); closing adds "Connection: close". */
static int l_respond_map(lua_State *L) { return respond(L, 1); }

static ssize_t read_out(void *cls, uint64_t pos, char *buf, size_t max) {
  web_request *rq = cls;
  (void)pos;
  if (rq->out_len) {
    size_t n = rq->out_len < max ? rq->out_len : max;
    memcpy(buf, rq->out, n);
    memmove(rq->out, rq->out + n, rq->out_len - n);
    rq->out_len -= n;
    if (rq->out_len <= OUT_LOW) wake_writer(rq);
    return (ssize_t)n;
  }
  if (rq->out_done) return MHD_CONTENT_READER_END_OF_STREAM;
  web_request_suspend(rq); /* until write() or finish() */
  return 0;
}

static int start(lua_State *L, int map) {
  web_request *rq = check_request(L);
  int status = check_status(L, 2);
  check_headers_arg(L, 3, map);
  if (rq->queued) return luaL_error(L, "start(): already answered");
  if (rq->gone) return lua_pushboolean(L, 0), 1;
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 16 * 1024, read_out, rq, NULL);
  if (!r) return luaL_error(L, "not enough memory");
  add_headers_arg(L, 3, r, map, 4);
  return give(L, rq, r, status);
}

/* start(status, headers): a chunked response written with write();
 * start_map(status, headers, closing) as respond_map. */
static int l_start(lua_State *L) { return start(L, 0); }

/* check_headers(map): raises as respond_map would on a bad map. */
static int l_check_headers(lua_State *L) {
  check_request(L);
  check_headers_arg(L, 2, 1);
  return 0;
}
static int l_start_map(lua_State *L) { return start(L, 1); }

static int write_cancel(host_task *t, int woken) {
  web_request *rq = t->wait_data;
  if (!woken && rq->writer == t) rq->writer = NULL;
  return 0;
}

static int write_k(lua_State *L, lua_KContext ctx) {
  web_request *rq = (web_request *)ctx;
  if (rq->gone) return gone_error(L);
  return 0;
}

/* write(data): waits while more than 64 KiB are unsent (back-pressure);
 * raises ConnectionResetError once the client is gone. */
static int l_write(lua_State *L) {
  web_request *rq = check_request(L);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  host_task *t = host_check_task(L, "write");
  if (!rq->queued || rq->out_done)
    return luaL_error(L, "write(): no stream started, or it is finished");
  if (rq->gone) return gone_error(L);
  if (rq->out_len + n > rq->out_cap) {
    size_t cap = rq->out_cap ? rq->out_cap : 4096;
    while (cap < rq->out_len + n) cap *= 2;
    char *b = realloc(rq->out, cap);
    if (!b) return luaL_error(L, "not enough memory");
    rq->out = b;
    rq->out_cap = cap;
  }
  memcpy(rq->out + rq->out_len, data, n);
  rq->out_len += n;
  web_request_resume(rq);
  if (rq->out_len <= OUT_HIGH) return 0;
  rq->writer = t;
  return host_park(L, t, write_cancel, rq, write_k, (lua_KContext)rq);
}

static int l_finish(lua_State *L) {
  web_request *rq = check_request(L);
  rq->out_done = 1;
  web_request_resume(rq);
  return 0;
}

/* A request Lua lets go of unanswered gets a 500: its connection would
 * otherwise stay suspended. */
static int l_gc(lua_State *L) {
  web_request **box = luaL_checkudata(L, 1, WEB_REQUEST_MT);
  web_request *rq = *box;
  if (!rq) return 0;
  *box = NULL;
  rq->lua = 0;
  if (rq->gone) {
    web_request_free(rq);
    return 0;
  }
  if (!rq->queued) {
    static const char msg[] = "internal server error\n";
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    if (r) {
      rq->resp = r;
      rq->status = 500;
      rq->queued = 1;
    }
  }
  rq->out_done = 1;
  web_request_answered(rq);
  return 0;
}

/* ---- upgrade: the socket after a 101 ------------------------------------ */

/* libmicrohttpd hands the socket over: we keep a duplicate (a lasync
 * stream owns it from now on) and the bytes already read past the
 * request head, and let libmicrohttpd close and forget its own. */
static void on_upgrade(void *cls, struct MHD_Connection *c, void *con_cls,
                       const char *extra, size_t extra_len, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh) {
  web_request *rq = cls;
  (void)c, (void)con_cls;
  rq->up_fd = dup(sock);
  if (extra_len && (rq->up_extra = malloc(extra_len))) {
    memcpy(rq->up_extra, extra, extra_len);
    rq->up_extra_len = extra_len;
  }
  MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
  /* libmicrohttpd closes its descriptor in a later run: without one the
   * socket outlived our stream's close and the peer never saw the end */
  web_server_kick(rq->srv);
  wake_upgrader(rq);
}

static int upgrade_cancel(host_task *t, int woken) {
  web_request *rq = t->wait_data;
  if (!woken && rq->upgrader == t) rq->upgrader = NULL;
  return 0;
}

/* -> reader, writer, bytes already received */
static int upgrade_k(lua_State *L, lua_KContext ctx) {
  web_request *rq = (web_request *)ctx;
  int err = 0;
  if (rq->up_fd < 0) return gone_error(L);
  lstream *s = lstream_new(host_get(L), LSTREAM_TCP, &err);
  if (!s) return host_raise_oserror(L, err, "upgrade", NULL);
  err = uv_tcp_open((uv_tcp_t *)lstream_handle(s), rq->up_fd);
  if (!err) rq->up_fd = -1; /* the stream owns it */
  if (!err) err = lstream_start(s);
  if (err) {
    lstream_close(s, 1);
    lstream_unref(s);
    return host_raise_oserror(L, err, "upgrade", NULL);
  }
  lstream_push_reader(L, s);
  lstream_push_writer(L, s);
  lstream_unref(s);
  lua_pushlstring(L, rq->up_extra ? rq->up_extra : "", rq->up_extra_len);
  return 3;
}

/* upgrade(headers) -> reader, writer, early bytes: answers 101 Switching
 * Protocols with the headers and waits for the socket. */
static int l_upgrade(lua_State *L) {
  web_request *rq = check_request(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  host_task *t = host_check_task(L, "upgrade");
  if (rq->queued) return luaL_error(L, "upgrade(): already answered");
  if (rq->gone) return gone_error(L);
  struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, rq);
  if (!r) return luaL_error(L, "not enough memory");
  add_headers(L, 2, r);
  give(L, rq, r, MHD_HTTP_SWITCHING_PROTOCOLS);
  lua_pop(L, 1);
  rq->upgrader = t;
  return host_park(L, t, upgrade_cancel, rq, upgrade_k, (lua_KContext)rq);
}

void web_request_types(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"meta", l_meta},   {"fields", l_fields},   {"read", l_read},
      {"respond", l_respond}, {"start", l_start}, {"write", l_write},
      {"respond_map", l_respond_map}, {"start_map", l_start_map},
      {"check_headers", l_check_headers},
      {"finish", l_finish}, {"upgrade", l_upgrade}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
  host_new_type(L, WEB_REQUEST_MT, methods, meta, 0);
}
