/* start_server and the Server it returns: listening sockets, one handler
 * task per accepted connection, close / wait_closed / serve_forever.
 * Name resolution comes from net.c. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "handle.h"
#include "tls.h"

#define SERVER_MT "asyncio.Server"

typedef struct server server;

typedef struct listener {
  union { /* same address: uv_close works on either */
    uv_tcp_t tcp;
    uv_pipe_t pipe; /* a Unix socket server (unix.c) */
  };
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

/* Lifetime (handle.h): the listening sockets hold the record until the
 * last one has closed, the Server value until it is collected, and each
 * accepted connection until its handler ends. */
struct server {
  host_handle hd;       /* closing: no longer listening */
  host_posted post;     /* hands accepted connections to handler tasks */
  lasync_host *h;
  listener **socks;
  int nsocks;
  int open_socks;       /* listening handles not yet closed */
  int nconns;           /* accepted connections whose handler runs */
  int handler_ref;      /* registry: the handler function */
  int self_ref;         /* registry: the Server userdata while open */
  int backlog;
  size_t limit;         /* each connection's reader limit, 0: default */
  int kind;             /* LSTREAM_TCP, or LSTREAM_PIPE for a Unix socket */
  char *path;           /* a Unix socket's file, removed by close() */
  conn *pending, **pending_tail;
  host_link forever;    /* serve_forever: woken by close() */
  host_link closers;    /* wait_closed: woken when all has ended */
  host_link live;       /* connections whose handler runs */
};

static void server_free(host_handle *hd) {
  server *srv = host_container_of(hd, server, hd);
  free(srv->socks);
  free(srv->path);
  free(srv);
}

/* Closed, and nothing left of it: no listener, handler or connection
 * waiting for one. */
static int server_ended(const server *srv) {
  return srv->hd.closing && srv->open_socks == 0 && srv->nconns == 0 &&
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
  if (srv->open_socks == 0) host_handle_after_close(&srv->hd);
}

static void handler_done(host_listener *l, host_task *t) {
  conn *c = host_container_of(l, conn, done);
  server *srv = c->srv;
  if (t->outcome == OUTCOME_FAILED) {
    /* listeners run before the task lets go of its anchor */
    lua_State *L = srv->h->cbL;
    int failed;
    host_task_first(L, t, &failed);
    lua_pushfstring(L, "Unhandled error in connection handler (Task-%I)",
                    (lua_Integer)t->id);
    host_push_context(L, lua_tostring(L, -1), -2);
    host_task_push(L, t);
    lua_setfield(L, -2, "task");
    host_task_push_report_of(L, t);
    lua_setfield(L, -2, "traceback");
    host_call_exception_handler(srv->h, L, -1);
    lua_pop(L, 3);
    t->flags |= TF_RETRIEVED;
  }
  host_list_remove(&c->live);
  lstream_close(c->s, t->outcome != OUTCOME_OK);
  lstream_unref(c->s);
  free(c);
  srv->nconns--;
  check_waiters(srv);
  host_handle_drop(&srv->hd);
}

/* Runs on the scheduler's turn: one handler task per accepted connection. */
static void start_handlers(lasync_host *h, host_posted *p) {
  server *srv = host_container_of(p, server, post);
  lua_State *L = h->cbL;
  host_handle_hold(&srv->hd); /* a connection's drop must not free it here */
  while (srv->pending) {
    conn *c = srv->pending;
    srv->pending = c->next;
    if (!srv->pending) srv->pending_tail = &srv->pending;
    if (srv->limit) lstream_set_limit(c->s, srv->limit);
    int rc = lstream_start(c->s);
    if (rc || srv->handler_ref == LUA_NOREF) {
      lstream_unref(c->s);
      free(c);
      host_handle_drop(&srv->hd);
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
  host_handle_drop(&srv->hd);
}

/* The peer is asked for only when tracing (a system call). */
static void trace_accept(lasync_host *h, lstream *s, int kind) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (kind == LSTREAM_TCP &&
      uv_tcp_getpeername((uv_tcp_t *)lstream_handle(s), (struct sockaddr *)&ss,
                         &len) == 0)
    host_trace_io_addr(h, NULL, HOST_IO_ACCEPT, 0, 0, (struct sockaddr *)&ss);
  else
    host_trace_io(h, NULL, HOST_IO_ACCEPT, 0, 0, NULL);
}

static void on_connection(uv_stream_t *ls, int status) {
  server *srv = ((listener *)ls->data)->srv;
  int rc;
  if (status < 0 || srv->hd.closing) return;
  lstream *s = lstream_new(srv->h, srv->kind, &rc);
  if (!s) return;
  if (uv_accept(ls, lstream_handle(s)) != 0) {
    lstream_unref(s);
    return;
  }
  if (srv->kind == LSTREAM_TCP) uv_tcp_nodelay((uv_tcp_t *)lstream_handle(s), 1);
  if (srv->h->trace) trace_accept(srv->h, s, srv->kind);
  conn *c = malloc(sizeof *c);
  if (!c) {
    lstream_unref(s);
    return;
  }
  host_handle_hold(&srv->hd); /* until the connection is let go */
  c->srv = srv;
  c->s = s;
  c->next = NULL;
  host_list_init(&c->live);
  *srv->pending_tail = c;
  srv->pending_tail = &c->next;
  host_post(srv->h, &srv->post);
}

static int server_close_hook(host_handle *hd, lua_State *L);

static const host_handle_type SERVER_TYPE = {SERVER_MT, "server",
                                             server_close_hook, server_free};

static server *check_server(lua_State *L, const char *fname) {
  host_handle *hd = host_handle_check(L, 1, &SERVER_TYPE, fname, 0);
  return host_container_of(hd, server, hd);
}

/* Stops listening; with L, lets go of the handler and of the anchor that
 * kept the open Server alive (L is NULL when the host stops). */
static int server_close_hook(host_handle *hd, lua_State *L) {
  server *srv = host_container_of(hd, server, hd);
  io_wake_all(&srv->forever); /* serve_forever ends with the listening */
  for (int i = 0; i < srv->nsocks; i++)
    uv_close((uv_handle_t *)&srv->socks[i]->tcp, on_listener_closed);
  if (srv->nsocks == 0) host_handle_after_close(hd); /* nothing to wait for */
  if (srv->path) io_unix_unlink(srv->path);
  if (L) {
    luaL_unref(L, LUA_REGISTRYINDEX, srv->handler_ref);
    srv->handler_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, srv->self_ref);
    srv->self_ref = LUA_NOREF;
  }
  return 1;
}

static void server_close(lua_State *L, server *srv) {
  host_handle_close(&srv->hd, L);
  check_waiters(srv);
}

static int server_close_m(lua_State *L) {
  server_close(L, check_server(L, "close"));
  return 0;
}

static int server_is_serving(lua_State *L) {
  lua_pushboolean(L, !check_server(L, "is_serving")->hd.closing);
  return 1;
}

/* Parks the running task until the server has ended (it is woken only
 * then). */
static int wait_ended(lua_State *L, server *srv) {
  if (server_ended(srv)) return 0;
  return io_wait(L, host_task_of(L), &srv->closers, NULL);
}

static int server_wait_closed(lua_State *L) {
  server *srv = check_server(L, "wait_closed");
  host_check_task(L, "wait_closed");
  lua_settop(L, 1);
  return wait_ended(L, srv);
}

/* Waits until the server is closed; cancelling it closes the server (as
 * Python does), via the to-be-closed guard the caller usually holds, or
 * here when it is cancelled. */
static int server_serve_forever(lua_State *L) {
  server *srv = check_server(L, "serve_forever");
  host_check_task(L, "serve_forever");
  lua_settop(L, 1);
  if (srv->hd.closing) return 0;
  return io_wait(L, host_task_of(L), &srv->forever, NULL);
}

static int server_tbc(lua_State *L) {
  server *srv = check_server(L, "close");
  server_close(L, srv);
  host_task *t = host_task_of(L);
  if (!t || !lua_isyieldable(L)) return 0;
  lua_settop(L, 1);
  return wait_ended(L, srv);
}

static int server_index(lua_State *L) {
  server *srv = check_server(L, "Server");
  const char *key = lua_tostring(L, 2);
  if (srv->kind != LSTREAM_TCP && key && (strcmp(key, "port") == 0 ||
                                          strcmp(key, "sockets") == 0))
    return io_unix_server_index(L, srv->hd.closing ? NULL : &srv->socks[0]->pipe,
                                key);
  if (key && strcmp(key, "port") == 0) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (srv->hd.closing || srv->nsocks == 0 ||
        uv_tcp_getsockname(&srv->socks[0]->tcp, (struct sockaddr *)&ss, &len))
      return 0;
    io_push_sockaddr(L, (struct sockaddr *)&ss);
    lua_getfield(L, -1, "port");
    return 1;
  }
  if (key && strcmp(key, "sockets") == 0) {
    lua_createtable(L, srv->nsocks, 0);
    for (int i = 0; !srv->hd.closing && i < srv->nsocks; i++) {
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

/* A listener whose handle is initialised becomes the server's. */
static void add_listener(server *srv, listener *ls) {
  ls->srv = srv;
  ls->tcp.data = ls; /* the same field for a pipe: the handle comes first */
  srv->socks[srv->nsocks++] = ls;
  srv->open_socks++;
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
  add_listener(srv, ls);
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
  char where[300];
  struct addrinfo *res = io_resolved(L, ctx, where, sizeof where);
  /* stack: handler host port opts box */
  server *srv = host_container_of(*(host_handle **)lua_touserdata(L, 5),
                                  server, hd);
  int n = 0, rc = 0, port = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) n++;
  srv->socks = calloc((size_t)n + 1, sizeof *srv->socks);
  if (!srv->socks) rc = UV_ENOMEM;
  if (srv->hd.closing) rc = UV_ECANCELED; /* the host stopped meanwhile */
  for (struct addrinfo *a = res; a && !rc; a = a->ai_next) {
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
  io_resolve_done(ctx);
  if (rc) {
    lua_pushvalue(L, 5);
    server_close(L, srv);
    host_push_oserror(L, rc, "listen", where);
    return lua_error(L);
  }
  io_server_arm(L, srv, 5, 1);
  lua_pushvalue(L, 5);
  return 1;
}

void io_server_arm(lua_State *L, server *srv, int boxidx, int hidx) {
  lua_pushvalue(L, boxidx);
  srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, hidx);
  srv->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* A new Server value, not yet listening (start_server, start_unix_server:
 * both are registered with the methods table as upvalue 2).  [-0, +1, m] */
server *io_server_push(lua_State *L, lasync_host *h, int backlog,
                       size_t limit) {
  host_handle **box = host_handle_newbox(L, SERVER_MT, 1);
  server *srv = calloc(1, sizeof *srv);
  if (!srv) return luaL_error(L, "asyncio: out of memory"), NULL;
  host_handle_init(&srv->hd, &SERVER_TYPE, h);
  host_handle_attach(box, &srv->hd);
  srv->h = h;
  host_list_init(&srv->live);
  host_posted_init(&srv->post, start_handlers);
  srv->handler_ref = srv->self_ref = LUA_NOREF;
  srv->backlog = backlog;
  srv->limit = limit;
  srv->pending_tail = &srv->pending;
  host_list_init(&srv->forever);
  host_list_init(&srv->closers);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setiuservalue(L, -2, 1);
  return srv;
}

int io_server_listen_unix(lua_State *L, server *srv, int fd,
                          const char *path) {
  listener *ls = malloc(sizeof *ls);
  srv->kind = LSTREAM_PIPE;
  srv->socks = calloc(1, sizeof *srv->socks);
  int rc = ls && srv->socks ? uv_pipe_init(srv->h->loop, &ls->pipe, 0)
                            : UV_ENOMEM;
  if (rc) {
    free(ls);
    close(fd);
    return rc;
  }
  add_listener(srv, ls);
  if (path && !(srv->path = strdup(path))) rc = UV_ENOMEM;
  int r2 = uv_pipe_open(&ls->pipe, fd);
  if (r2) close(fd);
  if (!rc) rc = r2;
  if (!rc) rc = uv_listen((uv_stream_t *)&ls->pipe, srv->backlog, on_connection);
  if (rc) server_close(L, srv);
  return rc;
}

int io_opt_backlog(lua_State *L, int idx, const char *fname) {
  int backlog = 511;
  if (lua_getfield(L, idx, "backlog") != LUA_TNIL) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
      return luaL_error(L, "bad option 'backlog' to '%s' "
                           "(positive integer expected)", fname);
    lua_Integer b = lua_tointeger(L, -1); /* the kernel caps it anyway */
    backlog = b > 65535 ? 65535 : (int)b;
  }
  lua_pop(L, 1);
  return backlog;
}

static int l_start_server(lua_State *L) {
  lasync_host *h = io_live_host(L, "start_server");
  host_check_callable(L, 1);
  const char *host = io_opt_host(L, 2);
  int port = io_check_port(L, 3);
  static const char *const known[] = {"backlog", "reuse_port", "limit", "ssl",
                                      "ssl_handshake_timeout", NULL};
  int backlog = 511, reuse_port = 0;
  size_t limit = 0;
  host_check_options(L, 4, known);
  if (!lua_isnoneornil(L, 4)) {
    limit = io_opt_limit(L, 4);
    backlog = io_opt_backlog(L, 4, "start_server");
    lua_getfield(L, 4, "reuse_port");
    reuse_port = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  host_task *t = host_check_task(L, "start_server");
  lua_settop(L, 4);
  tls_server_options(L, 4, "start_server"); /* ssl: handshake, then handler */
  io_server_push(L, h, backlog, limit);
  lua_pushinteger(L, port);
  lua_pushboolean(L, reuse_port);
  return io_resolve_passive(L, t, host, port, listen_k);
}

/* close_clients() / abort_clients() (Python 3.13): end the live
 * connections too, after sending what they queued, or at once.  Their
 * handlers then read EOF and see write errors. */
static int close_live(lua_State *L, int now) {
  server *srv = check_server(L, now ? "abort_clients" : "close_clients");
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

void io_open_server(lua_State *L, lasync_host *h) {
  static const luaL_Reg meta[] = {{"__index", server_index},
                                   {"__gc", host_handle_gc},
                                   {"__close", server_tbc},
                                   {NULL, NULL}};
  host_new_type(L, SERVER_MT, NULL, meta, 0);
  host_handle_register(L, &SERVER_TYPE);
  lua_pushlightuserdata(L, h);
  lua_newtable(L);
  luaL_setfuncs(L, server_methods, 0);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_start_unix_server, 2);
  lua_setfield(L, -4, "start_unix_server");
  lua_pushcclosure(L, l_start_server, 2);
  lua_setfield(L, -2, "start_server");
}
