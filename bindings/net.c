/* TCP names and connections: getaddrinfo, open_connection, the name
 * resolution start_server uses (server.c), and socket address formatting.
 *
 * A network operation (net_op) is shared by two sides: the task that waits
 * for it and the libuv request in flight (resolution or connect).  Each
 * side lets go of it exactly once (the task in its k or cancel hook, libuv
 * in its callback); the last one frees it.  A timeout or a cancellation
 * only lets the task side go and aborts the request, whose callback then
 * cleans up. */
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "tls.h"

enum { OP_GETADDRINFO, OP_CONNECT, OP_LISTEN };

typedef struct net_op {
  uv_getaddrinfo_t gai;
  uv_connect_t connect;
  host_timer timer;
  lasync_host *h;
  host_task *t;         /* the waiting task, NULL once it let go */
  int mode;
  int in_flight;        /* a libuv request is pending */
  int done;             /* the task was woken (or left) */
  int status;           /* 0 or a libuv error */
  struct addrinfo *res, *cur;
  lstream *s;           /* the connection being made or made */
  size_t limit;         /* the reader's limit option, 0: default */
  char where[300];      /* "host:port" for messages */
} net_op;

static void op_maybe_free(net_op *op) {
  if (op->t || op->in_flight) return;
  host_timer_stop(op->h, &op->timer);
  if (op->res) uv_freeaddrinfo(op->res);
  if (op->s) lstream_unref(op->s);
  free(op);
}

static void op_finish(net_op *op, int status) {
  if (op->done) return;
  op->done = 1;
  op->status = status;
  host_timer_stop(op->h, &op->timer);
  if (op->t) host_wake(op->t, NULL, 0);
}

static void try_connect(net_op *op);

static void on_connect(uv_connect_t *req, int status) {
  net_op *op = req->data;
  op->in_flight = 0;
  if (op->h->trace && status != UV_ECANCELED)
    host_trace_io_addr(op->h, op->t, HOST_IO_CONNECT, 0, status,
                       op->cur ? op->cur->ai_addr : NULL);
  if (op->done) { /* abandoned: its stream was closed */
    op_maybe_free(op);
    return;
  }
  if (status == 0) {
    op_finish(op, 0);
    return;
  }
  lstream_unref(op->s);
  op->s = NULL;
  op->status = status;
  op->cur = op->cur->ai_next;
  try_connect(op);
}

/* Connects to op->cur or the next address that can be tried. */
static void try_connect(net_op *op) {
  for (; op->cur; op->cur = op->cur->ai_next) {
    int rc;
    op->s = lstream_new(op->h, LSTREAM_TCP, &rc);
    if (!op->s) break;
    op->connect.data = op;
    rc = uv_tcp_connect(&op->connect, (uv_tcp_t *)lstream_handle(op->s),
                        op->cur->ai_addr, on_connect);
    if (rc == 0) {
      op->in_flight = 1;
      return;
    }
    op->status = rc;
    lstream_unref(op->s);
    op->s = NULL;
  }
  op_finish(op, op->status ? op->status : UV_EAI_NONAME);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  net_op *op = req->data;
  op->in_flight = 0;
  op->res = res;
  if (op->done) {
    op_maybe_free(op);
    return;
  }
  if (status == 0 && op->mode == OP_CONNECT) {
    op->cur = res;
    op->status = 0;
    try_connect(op);
    return;
  }
  op_finish(op, status);
}

static void abort_flight(net_op *op) {
  if (!op->in_flight) return;
  if (op->s)
    lstream_close(op->s, 1); /* on_connect gets UV_ECANCELED */
  else
    uv_cancel((uv_req_t *)&op->gai);
}

static void on_timeout(lasync_host *h, host_timer *tm) {
  net_op *op = host_container_of(tm, net_op, timer);
  (void)h;
  op_finish(op, UV_ETIMEDOUT);
  abort_flight(op);
}

static int op_cancel(host_task *t, int woken) {
  net_op *op = t->wait_data;
  (void)woken;
  op->t = NULL;
  op->done = 1;
  host_timer_stop(op->h, &op->timer);
  abort_flight(op);
  op_maybe_free(op);
  return 0;
}

int io_check_port(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  int isnum;
  lua_Integer p = lua_tointegerx(L, idx, &isnum);
  if (!isnum && lua_type(L, idx) == LUA_TSTRING) { /* "8080" */
    luaL_argexpected(L, 0, idx, "port number");
  }
  if (!isnum) luaL_argexpected(L, 0, idx, "port number");
  luaL_argcheck(L, p >= 0 && p <= 65535, idx, "port out of range 0-65535");
  return (int)p;
}

/* Starts resolving host:port for op and parks the running task. */
static int start_op(lua_State *L, host_task *t, int mode, const char *host,
                    int port, int passive, double timeout, size_t limit,
                    host_k_fn k) {
  lasync_host *h = t->h;
  net_op *op = calloc(1, sizeof *op);
  if (!op) return luaL_error(L, "asyncio: out of memory");
  char service[16];
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  if (passive) hints.ai_flags = AI_PASSIVE;
  snprintf(service, sizeof service, "%d", port);
  snprintf(op->where, sizeof op->where, "%s:%d", host ? host : "*", port);
  op->h = h;
  op->t = t;
  op->mode = mode;
  op->limit = limit;
  host_timer_init(&op->timer, on_timeout);
  op->gai.data = op;
  int rc = uv_getaddrinfo(h->loop, &op->gai, on_resolved, host, service,
                          &hints);
  if (rc) {
    free(op);
    return host_raise_oserror(L, rc, "getaddrinfo", lua_pushfstring(
                                  L, "%s:%d", host ? host : "*", port));
  }
  op->in_flight = 1;
  if (timeout >= 0 && host_timer_start(h, &op->timer,
                                       host_deadline(h, timeout))) {
    op->t = NULL;
    op->done = 1;
    abort_flight(op);
    return luaL_error(L, "asyncio: out of memory");
  }
  return host_park(L, t, op_cancel, op, k, (lua_KContext)op);
}

/* The task side lets go; raises the op's error if it failed. */
static net_op *op_result(lua_State *L, lua_KContext ctx, const char *what) {
  net_op *op = (net_op *)ctx;
  op->t = NULL;
  if (op->status == 0) return op;
  int st = op->status;
  char where[sizeof op->where];
  memcpy(where, op->where, sizeof where);
  op_maybe_free(op);
  host_push_oserror(L, st, what, where);
  lua_pushstring(L, where);
  lua_setfield(L, -2, "address");
  return lua_error(L), NULL;
}

const char *io_opt_host(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx) || (lua_type(L, idx) == LUA_TSTRING &&
                                  lua_rawlen(L, idx) == 0))
    return NULL;
  return host_check_cstring(L, idx, NULL);
}

/* ---- for start_server ------------------------------------------------ */

int io_resolve_passive(lua_State *L, host_task *t, const char *host, int port,
                       host_k_fn k) {
  return start_op(L, t, OP_LISTEN, host, port, 1, -1, 0, k);
}

struct addrinfo *io_resolved(lua_State *L, lua_KContext ctx, char *where,
                             size_t size) {
  net_op *op = op_result(L, ctx, "listen");
  snprintf(where, size, "%s", op->where);
  return op->res;
}

void io_resolve_done(lua_KContext ctx) { op_maybe_free((net_op *)ctx); }

/* ---- socket addresses ------------------------------------------------- */

void io_push_sockaddr(lua_State *L, const struct sockaddr *sa) {
  char ip[64] = "";
  int port = 0;
  const char *fam = "unix";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    fam = "inet";
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    fam = "inet6";
  }
  lua_createtable(L, 2, 3);
  lua_pushstring(L, fam);
  lua_setfield(L, -2, "family");
  lua_pushstring(L, ip);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "address");
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, port);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "port");
  lua_rawseti(L, -2, 2);
}

/* ---- getaddrinfo ------------------------------------------------------ */

static int gai_k(lua_State *L, lua_KContext ctx) {
  net_op *op = op_result(L, ctx, "getaddrinfo");
  int i = 0;
  lua_newtable(L);
  for (struct addrinfo *a = op->res; a; a = a->ai_next) {
    io_push_sockaddr(L, a->ai_addr);
    lua_rawseti(L, -2, ++i);
  }
  op_maybe_free(op);
  return 1;
}

static int l_getaddrinfo(lua_State *L) {
  const char *host = io_opt_host(L, 1);
  int port = io_check_port(L, 2);
  host_task *t = host_check_task(L, "getaddrinfo");
  return start_op(L, t, OP_GETADDRINFO, host, port, host == NULL, -1, 0,
                  gai_k);
}

/* ---- open_connection -------------------------------------------------- */

static int connect_k(lua_State *L, lua_KContext ctx) {
  net_op *op = op_result(L, ctx, "connect");
  lstream *s = op->s;
  op->s = NULL;
  if (op->limit) lstream_set_limit(s, op->limit);
  op_maybe_free(op);
  uv_tcp_nodelay((uv_tcp_t *)lstream_handle(s), 1);
  int rc = lstream_start(s);
  if (rc == 0 && !lua_isnil(L, 4)) /* ssl: the TLS plan is at 4..6 */
    return tls_client_begin(L, s, 4);
  lstream_push_reader(L, s);
  lstream_push_writer(L, s);
  lstream_unref(s); /* the wrappers own it now */
  if (rc) return host_raise_oserror(L, rc, "read", NULL);
  return 2;
}

static double opt_timeout(lua_State *L, int idx, const char *fname) {
  double timeout = -1;
  if (lua_isnoneornil(L, idx)) return timeout;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lua_getfield(L, idx, "timeout") != LUA_TNIL) {
    if (!lua_isnumber(L, -1))
      luaL_error(L, "bad option 'timeout' to '%s' (number expected, got %s)",
                 fname, luaL_typename(L, -1));
    timeout = lua_tonumber(L, -1);
    if (!(timeout >= 0)) luaL_error(L, "bad option 'timeout' to '%s' "
                                       "(must be >= 0)", fname);
  }
  lua_pop(L, 1);
  return timeout;
}

static int l_open_connection(lua_State *L) {
  static const char *const known[] = {"timeout", "limit", "ssl",
                                      "server_hostname",
                                      "ssl_handshake_timeout", NULL};
  const char *host = host_check_cstring(L, 1, NULL);
  int port = io_check_port(L, 2);
  host_check_options(L, 3, known);
  double timeout = opt_timeout(L, 3, "open_connection");
  size_t limit = lua_istable(L, 3) ? io_opt_limit(L, 3) : 0;
  lua_settop(L, 3);
  tls_client_options(L, 3, host, "open_connection"); /* at 4..6 */
  host_task *t = host_check_task(L, "open_connection");
  return start_op(L, t, OP_CONNECT, host, port, 0, timeout, limit,
                  connect_k);
}

static const luaL_Reg funcs[] = {{"getaddrinfo", l_getaddrinfo},
                                 {"open_connection", l_open_connection},
                                 {NULL, NULL}};

void io_open_net(lua_State *L, lasync_host *h) {
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
