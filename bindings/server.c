/* TCP: getaddrinfo, open_connection and start_server.
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

#define SERVER_MT "asyncio.Server"

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

static int check_port(lua_State *L, int idx) {
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
    return io_raise_oserror(L, rc, "cannot resolve %s:%d", host ? host : "*",
                            port);
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
  int st = op->status, mode = op->mode;
  char where[sizeof op->where];
  memcpy(where, op->where, sizeof where);
  op_maybe_free(op);
  if (st == UV_ETIMEDOUT && mode == OP_CONNECT)
    io_push_oserror(L, st, "%s %s timed out", what, where);
  else
    io_push_oserror(L, st, "%s %s failed", what, where);
  lua_pushstring(L, where);
  lua_setfield(L, -2, "address");
  return lua_error(L), NULL;
}

static const char *opt_host(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx) || (lua_type(L, idx) == LUA_TSTRING &&
                                  lua_rawlen(L, idx) == 0))
    return NULL;
  return host_check_cstring(L, idx, NULL);
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
  const char *host = opt_host(L, 1);
  int port = check_port(L, 2);
  host_task *t = host_check_task(L, "getaddrinfo");
  return start_op(L, t, OP_GETADDRINFO, host, port, host == NULL, -1, 0,
                  gai_k);
}

/* ---- open_connection -------------------------------------------------- */

static int connect_k(lua_State *L, lua_KContext ctx) {
  net_op *op = op_result(L, ctx, "connect to");
  lstream *s = op->s;
  op->s = NULL;
  if (op->limit) lstream_set_limit(s, op->limit);
  op_maybe_free(op);
  uv_tcp_nodelay((uv_tcp_t *)lstream_handle(s), 1);
  int rc = lstream_start(s);
  lstream_push_reader(L, s);
  lstream_push_writer(L, s);
  lstream_unref(s); /* the wrappers own it now */
  if (rc) return io_raise_oserror(L, rc, "cannot read from the connection");
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
  static const char *const known[] = {"timeout", "limit", NULL};
  const char *host = host_check_cstring(L, 1, NULL);
  int port = check_port(L, 2);
  host_check_options(L, 3, known); /* {ssl = true} must not give plaintext */
  double timeout = opt_timeout(L, 3, "open_connection");
  size_t limit = lua_istable(L, 3) ? io_opt_limit(L, 3) : 0;
  host_task *t = host_check_task(L, "open_connection");
  return start_op(L, t, OP_CONNECT, host, port, 0, timeout, limit,
                  connect_k);
}

/* ---- servers ---------------------------------------------------------- */

typedef struct server server;

typedef struct listener {
  uv_tcp_t tcp;
  server *srv;
} listener;

/* A connection accepted but not yet handed to a handler task. */
typedef struct conn {
  host_listener done; /* told when the handler task ends */
  host_link live;     /* in srv->live while its handler runs */
  struct conn *next;
  server *srv;
  lstream *s;
} conn;

struct server {
  host_ready ready;     /* hands accepted connections to handler tasks */
  host_closeable closer;/* lasync_stop stops it listening */
  lasync_host *h;
  listener **socks;
  int nsocks;
  int open_socks;       /* listening handles not yet closed */
  int nconns;           /* accepted connections whose handler runs */
  int handler_ref;      /* registry: the handler function */
  int self_ref;         /* registry: the Server userdata while open */
  int gone;             /* the userdata was collected */
  int queued;
  int closing;
  int backlog;
  size_t limit;         /* each connection's reader limit, 0: default */
  conn *pending, **pending_tail;
  host_link forever;    /* serve_forever: woken by close() */
  host_link closers;    /* wait_closed: woken when all has ended */
  host_link live;       /* connections whose handler runs */
};

static void server_maybe_free(server *srv) {
  if (srv->gone && srv->open_socks == 0 && srv->nconns == 0 &&
      !srv->pending && !srv->queued) {
    host_closeable_remove(&srv->closer);
    free(srv->socks);
    free(srv);
  }
}

/* Closed, and nothing left of it: no listener, handler or connection
 * waiting for one. */
static int server_ended(const server *srv) {
  return srv->closing && srv->open_socks == 0 && srv->nconns == 0 &&
         !srv->pending;
}

/* Called when one of server_ended's counts drops. */
static void check_waiters(server *srv) {
  if (server_ended(srv)) io_wake_all(&srv->closers);
}

static void on_listener_closed(uv_handle_t *handle) {
  listener *ls = handle->data;
  server *srv = ls->srv;
  free(ls);
  srv->open_socks--;
  check_waiters(srv);
  server_maybe_free(srv);
}

static void handler_done(host_listener *l, host_task *t) {
  conn *c = host_container_of(l, conn, done);
  server *srv = c->srv;
  if (t->outcome == OUTCOME_FAILED) {
    /* listeners run before the task lets go of its anchor */
    lua_State *L = srv->h->cbL;
    host_task_push(L, t);
    host_task_push_report(L, -1);
    lua_pushfstring(L, "Unhandled error in connection handler (Task-%I)\n%s",
                    (lua_Integer)t->id,
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    host_report(srv->h, lua_tostring(L, -1));
    lua_pop(L, 3);
    t->flags |= TF_RETRIEVED;
  }
  host_list_remove(&c->live);
  lstream_close(c->s, t->outcome != OUTCOME_OK);
  lstream_unref(c->s);
  free(c);
  srv->nconns--;
  check_waiters(srv);
  server_maybe_free(srv);
}

/* Runs on the scheduler's turn: one handler task per accepted connection. */
static void start_handlers(lasync_host *h, host_ready *r) {
  server *srv = host_container_of(r, server, ready);
  lua_State *L = h->cbL;
  srv->queued = 0;
  while (srv->pending) {
    conn *c = srv->pending;
    srv->pending = c->next;
    if (!srv->pending) srv->pending_tail = &srv->pending;
    if (srv->limit) lstream_set_limit(c->s, srv->limit);
    int rc = lstream_start(c->s);
    if (rc || srv->handler_ref == LUA_NOREF) {
      lstream_unref(c->s);
      free(c);
      continue;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, srv->handler_ref);
    lstream_push_reader(L, c->s);
    lstream_push_writer(L, c->s);
    host_task *t = host_task_spawn(h, L, 2);
    lua_pop(L, 1);
    srv->nconns++;
    host_list_push(&srv->live, &c->live);
    host_task_listen(t, &c->done, handler_done);
  }
  server_maybe_free(srv);
}

static void on_connection(uv_stream_t *ls, int status) {
  server *srv = ((listener *)ls->data)->srv;
  int rc;
  if (status < 0 || srv->closing) return;
  lstream *s = lstream_new(srv->h, LSTREAM_TCP, &rc);
  if (!s) return;
  if (uv_accept(ls, lstream_handle(s)) != 0) {
    lstream_unref(s);
    return;
  }
  uv_tcp_nodelay((uv_tcp_t *)lstream_handle(s), 1);
  conn *c = malloc(sizeof *c);
  if (!c) {
    lstream_unref(s);
    return;
  }
  c->srv = srv;
  c->s = s;
  c->next = NULL;
  host_list_init(&c->live);
  *srv->pending_tail = c;
  srv->pending_tail = &c->next;
  if (!srv->queued) {
    srv->queued = 1;
    host_ready_push(srv->h, &srv->ready);
  }
}

static server **check_server_box(lua_State *L) {
  return luaL_checkudata(L, 1, SERVER_MT);
}

static server *check_server(lua_State *L) {
  server *srv = *check_server_box(L);
  if (!srv)
    host_error_raise(L, "InvalidStateError", "the server was finalized");
  return srv;
}

/* Stops listening (libuv only: also safe when no Lua may run). */
static void close_listeners(server *srv) {
  host_closeable_remove(&srv->closer);
  if (srv->closing) return;
  srv->closing = 1;
  io_wake_all(&srv->forever); /* serve_forever ends with the listening */
  for (int i = 0; i < srv->nsocks; i++)
    uv_close((uv_handle_t *)&srv->socks[i]->tcp, on_listener_closed);
}

static void server_closer(host_closeable *c) {
  close_listeners(host_container_of(c, server, closer));
}

static void server_close(lua_State *L, server *srv) {
  if (srv->closing) return;
  close_listeners(srv);
  if (srv->handler_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, srv->handler_ref);
    srv->handler_ref = LUA_NOREF;
  }
  if (srv->self_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, srv->self_ref);
    srv->self_ref = LUA_NOREF;
  }
  check_waiters(srv);
}

static int server_close_m(lua_State *L) {
  server_close(L, check_server(L));
  return 0;
}

static int server_is_serving(lua_State *L) {
  lua_pushboolean(L, !check_server(L)->closing);
  return 1;
}

static int woken_k(lua_State *L, lua_KContext ctx) {
  (void)L;
  (void)ctx;
  return 0;
}

/* Parks the running task until the server has ended (it is woken only
 * then). */
static int wait_ended(lua_State *L, server *srv) {
  if (server_ended(srv)) return 0;
  return io_wait(L, host_task_of(L), &srv->closers, woken_k);
}

static int server_wait_closed(lua_State *L) {
  server *srv = check_server(L);
  host_check_task(L, "wait_closed");
  lua_settop(L, 1);
  return wait_ended(L, srv);
}

/* Waits until the server is closed; cancelling it closes the server (as
 * Python does), via the to-be-closed guard the caller usually holds, or
 * here when it is cancelled. */
static int server_serve_forever(lua_State *L) {
  server *srv = check_server(L);
  host_check_task(L, "serve_forever");
  lua_settop(L, 1);
  if (srv->closing) return 0;
  return io_wait(L, host_task_of(L), &srv->forever, woken_k);
}

static int server_tbc(lua_State *L) {
  server *srv = check_server(L);
  server_close(L, srv);
  host_task *t = host_task_of(L);
  if (!t || !lua_isyieldable(L)) return 0;
  lua_settop(L, 1);
  return wait_ended(L, srv);
}

static int server_gc(lua_State *L) {
  server **box = lua_touserdata(L, 1);
  server *srv = *box;
  if (!srv) return 0;
  *box = NULL;
  server_close(L, srv);
  srv->gone = 1;
  server_maybe_free(srv);
  return 0;
}

static int server_index(lua_State *L) {
  server *srv = check_server(L);
  const char *key = lua_tostring(L, 2);
  if (key && strcmp(key, "port") == 0) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (srv->closing || srv->nsocks == 0 ||
        uv_tcp_getsockname(&srv->socks[0]->tcp, (struct sockaddr *)&ss, &len))
      return 0;
    io_push_sockaddr(L, (struct sockaddr *)&ss);
    lua_getfield(L, -1, "port");
    return 1;
  }
  if (key && strcmp(key, "sockets") == 0) {
    lua_createtable(L, srv->nsocks, 0);
    for (int i = 0; !srv->closing && i < srv->nsocks; i++) {
      struct sockaddr_storage ss;
      int len = sizeof ss;
      if (uv_tcp_getsockname(&srv->socks[i]->tcp, (struct sockaddr *)&ss,
                             &len) == 0) {
        io_push_sockaddr(L, (struct sockaddr *)&ss);
        lua_rawseti(L, -2, i + 1);
      }
    }
    return 1;
  }
  lua_getiuservalue(L, 1, 1); /* methods */
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* Binds and listens on one address; 0 or a libuv error. */
static int listen_on(server *srv, const struct sockaddr *sa, int reuse_port) {
  listener *ls = malloc(sizeof *ls);
  if (!ls) return UV_ENOMEM;
  int rc = uv_tcp_init_ex(srv->h->loop, &ls->tcp, sa->sa_family);
  if (rc) {
    free(ls);
    return rc;
  }
  ls->srv = srv;
  ls->tcp.data = ls;
  srv->socks[srv->nsocks++] = ls;
  srv->open_socks++;
  if (reuse_port) {
#ifdef SO_REUSEPORT
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&ls->tcp, &fd) == 0)
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
#endif
  }
  rc = uv_tcp_bind(&ls->tcp, sa,
                   sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&ls->tcp, srv->backlog, on_connection);
  return rc;
}

static int listen_k(lua_State *L, lua_KContext ctx) {
  net_op *op = op_result(L, ctx, "start_server on");
  /* stack: handler host port opts box */
  server *srv = *(server **)lua_touserdata(L, 5);
  int n = 0, rc = 0, port = 0;
  for (struct addrinfo *a = op->res; a; a = a->ai_next) n++;
  srv->socks = calloc((size_t)n + 1, sizeof *srv->socks);
  if (!srv->socks) rc = UV_ENOMEM;
  for (struct addrinfo *a = op->res; a && !rc; a = a->ai_next) {
    struct sockaddr_storage ss;
    memcpy(&ss, a->ai_addr, a->ai_addrlen);
    if (port) { /* port 0: every address gets the first one's port */
      if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
      else if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    }
    rc = listen_on(srv, (struct sockaddr *)&ss, lua_toboolean(L, 7));
    if (rc == 0 && !port) {
      int len = sizeof ss;
      if (uv_tcp_getsockname(&srv->socks[srv->nsocks - 1]->tcp,
                             (struct sockaddr *)&ss, &len) == 0)
        port = ss.ss_family == AF_INET6
                   ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
  }
  char where[sizeof op->where];
  memcpy(where, op->where, sizeof where);
  op_maybe_free(op);
  if (rc) {
    lua_pushvalue(L, 5);
    server_close(L, srv);
    io_push_oserror(L, rc, "cannot listen on %s", where);
    return lua_error(L);
  }
  lua_pushvalue(L, 5);
  srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 1);
  srv->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 5);
  return 1;
}

static int l_start_server(lua_State *L) {
  lasync_host *h = io_live_host(L, "start_server");
  int ok = lua_isfunction(L, 1);
  if (!ok && luaL_getmetafield(L, 1, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    ok = 1;
  }
  luaL_argexpected(L, ok, 1, "function");
  const char *host = opt_host(L, 2);
  int port = check_port(L, 3);
  static const char *const known[] = {"backlog", "reuse_port", "limit", NULL};
  int backlog = 511, reuse_port = 0;
  size_t limit = 0;
  host_check_options(L, 4, known);
  if (!lua_isnoneornil(L, 4)) {
    limit = io_opt_limit(L, 4);
    if (lua_getfield(L, 4, "backlog") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
        return luaL_error(L, "bad option 'backlog' to 'start_server' "
                             "(positive integer expected)");
      lua_Integer b = lua_tointeger(L, -1); /* the kernel caps it anyway */
      backlog = b > 65535 ? 65535 : (int)b;
    }
    lua_getfield(L, 4, "reuse_port");
    reuse_port = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  host_task *t = host_check_task(L, "start_server");
  lua_settop(L, 4);
  server **box = lua_newuserdatauv(L, sizeof *box, 1);
  *box = NULL;
  server *srv = calloc(1, sizeof *srv);
  if (!srv) return luaL_error(L, "asyncio: out of memory");
  *box = srv;
  srv->h = h;
  host_list_init(&srv->live);
  host_list_init(&srv->closer.link);
  srv->closer.close = server_closer;
  host_closeable_add(h, &srv->closer);
  srv->ready.run = start_handlers;
  srv->handler_ref = srv->self_ref = LUA_NOREF;
  srv->backlog = backlog;
  srv->limit = limit;
  srv->pending_tail = &srv->pending;
  host_list_init(&srv->forever);
  host_list_init(&srv->closers);
  luaL_setmetatable(L, SERVER_MT);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setiuservalue(L, -2, 1);
  lua_pushinteger(L, port);
  lua_pushboolean(L, reuse_port);
  return start_op(L, t, OP_LISTEN, host, port, 1, -1, 0, listen_k);
}

/* close_clients() / abort_clients() (Python 3.13): end the live
 * connections too, after sending what they queued, or at once.  Their
 * handlers then read EOF and see write errors. */
static int close_live(lua_State *L, int now) {
  server *srv = check_server(L);
  if (!srv) return 0;
  for (host_link *l = srv->live.next; l != &srv->live; l = l->next)
    lstream_close(host_container_of(l, conn, live)->s, now);
  return 0;
}

static int server_close_clients(lua_State *L) { return close_live(L, 0); }
static int server_abort_clients(lua_State *L) { return close_live(L, 1); }

static const luaL_Reg server_methods[] = {
    {"close", server_close_m},
    {"close_clients", server_close_clients},
    {"abort_clients", server_abort_clients},
    {"wait_closed", server_wait_closed},
    {"serve_forever", server_serve_forever},
    {"is_serving", server_is_serving},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {{"getaddrinfo", l_getaddrinfo},
                                 {"open_connection", l_open_connection},
                                 {NULL, NULL}};

void io_open_server(lua_State *L, lasync_host *h) {
  luaL_newmetatable(L, SERVER_MT);
  lua_pushcfunction(L, server_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, server_tbc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  lua_pushlightuserdata(L, h);
  lua_newtable(L);
  luaL_setfuncs(L, server_methods, 0);
  lua_pushcclosure(L, l_start_server, 2);
  lua_setfield(L, -2, "start_server");
}
