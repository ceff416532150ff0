/* UDP: asyncio.create_datagram_endpoint{...} -> a DatagramEndpoint with
 * send / sendto, a suspending recv, close.
 *
 * Received datagrams wait in a bounded FIFO (max_queue datagrams and
 * max_queue_bytes bytes): one that arrives while it is full is dropped and
 * counted, so a flooding peer costs a bounded amount of memory, as the
 * kernel's own socket buffer does.  recv() takes the first datagram; a
 * waiting recv is woken, one per datagram, and takes it when it runs, so
 * a recv cancelled after its wake-up leaves the datagram queued (and
 * passes the wake-up on).  The record follows handle.h: the uv_udp_t and
 * the Lua value each hold it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "io.h"
#include "handle.h"

#define UDP_MT "asyncio.DatagramEndpoint"
#define DGRAM_MAX 65536 /* the largest UDP payload (IPv4: 65507) fits */
#define DEFAULT_MAX_QUEUE 1024
#define DEFAULT_MAX_BYTES (1024 * 1024)

typedef struct dgram {
  struct dgram *next;
  size_t len;
  struct sockaddr_storage from;
  char data[];
} dgram;

typedef struct udp_ep {
  host_handle hd;
  uv_udp_t udp;
  lasync_host *h;
  dgram *head, **tail;
  size_t nq, qbytes, max_queue, max_bytes;
  size_t sending;          /* bytes in uv_udp_send requests */
  uint64_t received, dropped, truncated, sent;
  int rerr;                /* an error the next recv raises (ICMP) */
  host_link waiters;       /* tasks in recv, first come first served */
  char rbuf[DGRAM_MAX];
} udp_ep;

typedef struct send_req {
  uv_udp_send_t req;
  udp_ep *ep;
  size_t n;
  char data[];
} send_req;

/* ---- lifetime ---------------------------------------------------------- */

static void ep_free(host_handle *hd) {
  udp_ep *ep = host_container_of(hd, udp_ep, hd);
  while (ep->head) {
    dgram *d = ep->head;
    ep->head = d->next;
    free(d);
  }
  free(ep);
}

static void on_closed(uv_handle_t *handle) {
  udp_ep *ep = handle->data;
  host_handle_after_close(&ep->hd);
}

/* Closing wakes every recv: it raises "closed" when it runs. */
static int ep_close(host_handle *hd, lua_State *L) {
  udp_ep *ep = host_container_of(hd, udp_ep, hd);
  (void)L;
  io_wake_all(&ep->waiters);
  uv_close((uv_handle_t *)&ep->udp, on_closed);
  return 1;
}

static const host_handle_type UDP_TYPE = {UDP_MT, "endpoint", ep_close,
                                          ep_free};

static udp_ep *check_ep(lua_State *L, const char *fname, int open) {
  host_handle *hd = host_handle_check(L, 1, &UDP_TYPE, fname, open);
  return host_container_of(hd, udp_ep, hd);
}

/* ---- receiving --------------------------------------------------------- */

/* An endpoint keeps the program alive only while a task waits in recv()
 * (as a task waiting on a timer does): one nobody listens on, or only
 * sends with, does not hold the loop open until it is collected. */
static void update_ref(udp_ep *ep) {
  if (ep->hd.closing) return;
  if (host_list_first(&ep->waiters)) uv_ref((uv_handle_t *)&ep->udp);
  else uv_unref((uv_handle_t *)&ep->udp);
}

static void wake_one(udp_ep *ep) {
  host_task *t = waitq_pop(&ep->waiters);
  if (t) host_wake(t, NULL, 0);
  update_ref(ep);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b) {
  udp_ep *ep = handle->data;
  (void)suggested;
  *b = uv_buf_init(ep->rbuf, sizeof ep->rbuf);
}

static void on_recv(uv_udp_t *handle, ssize_t n, const uv_buf_t *b,
                    const struct sockaddr *addr, unsigned flags) {
  udp_ep *ep = handle->data;
  (void)b;
  if (n < 0) { /* e.g. ECONNREFUSED from an ICMP error on a connected one */
    ep->rerr = (int)n;
    wake_one(ep);
    return;
  }
  if (!addr) return; /* nothing more to read now */
  if (ep->h->trace) host_trace_io_addr(ep->h, NULL, HOST_IO_RECV, n, 0, addr);
  ep->received++;
  if (flags & UV_UDP_PARTIAL) ep->truncated++;
  size_t len = (size_t)n;
  if (ep->nq >= ep->max_queue || (ep->nq && ep->qbytes + len > ep->max_bytes)) {
    ep->dropped++;
    return;
  }
  dgram *d = malloc(sizeof *d + len);
  if (!d) {
    ep->dropped++;
    return;
  }
  d->next = NULL;
  d->len = len;
  memset(&d->from, 0, sizeof d->from);
  memcpy(&d->from, addr, addr->sa_family == AF_INET6
                             ? sizeof(struct sockaddr_in6)
                             : sizeof(struct sockaddr_in));
  memcpy(d->data, ep->rbuf, len);
  *ep->tail = d;
  ep->tail = &d->next;
  ep->nq++;
  ep->qbytes += len;
  wake_one(ep);
}

/* Pushes data, host, port of the first datagram and drops it. */
static int pop_dgram(lua_State *L, udp_ep *ep) {
  dgram *d = ep->head;
  ep->head = d->next;
  if (!ep->head) ep->tail = &ep->head;
  ep->nq--;
  ep->qbytes -= d->len;
  lua_pushlstring(L, d->data, d->len);
  io_push_sockaddr(L, (struct sockaddr *)&d->from);
  free(d);
  lua_getfield(L, -1, "address");
  lua_getfield(L, -2, "port");
  lua_remove(L, -3);
  return 3;
}

static int recv_cancel(host_task *t, int woken) {
  udp_ep *ep = t->wait_data;
  waitq_remove(t);
  if (woken && ep->head) wake_one(ep); /* its datagram is someone else's */
  update_ref(ep);
  return 0;
}

static int recv_step(lua_State *L, udp_ep *ep, host_task *t);

static int recv_k(lua_State *L, lua_KContext ctx) {
  host_handle *hd = host_handle_check(L, 1, &UDP_TYPE, "recv", 1);
  (void)ctx;
  return recv_step(L, host_container_of(hd, udp_ep, hd), host_task_of(L));
}

static int recv_step(lua_State *L, udp_ep *ep, host_task *t) {
  if (ep->head) return pop_dgram(L, ep);
  if (ep->rerr) {
    int err = ep->rerr;
    ep->rerr = 0;
    return host_raise_oserror(L, err, "recv", NULL);
  }
  if (!t) t = host_check_task(L, "recv");
  waitq_push(&ep->waiters, t);
  update_ref(ep);
  return host_park(L, t, recv_cancel, ep, recv_k, 0);
}

/* ep:recv() -> data, host, port (suspends until a datagram is there) */
static int ep_recv(lua_State *L) {
  udp_ep *ep = check_ep(L, "recv", 1);
  lua_settop(L, 1);
  return recv_step(L, ep, NULL);
}

/* ---- addresses --------------------------------------------------------- */

/* A numeric IPv4/IPv6 address and port into ss; 0 or UV_EINVAL. */
static int numeric_addr(const char *host, int port,
                        struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
}

/* {host, port} at idx (argument arg) into ss; raises a clear error.
 * (Creation resolves names first; send wants numbers.) */
static void check_addr(lua_State *L, int idx, int arg, const char *what,
                       struct sockaddr_storage *ss) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx))
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: {host, port} expected, got "
                                             "%s", what, luaL_typename(L, idx)));
  lua_rawgeti(L, idx, 1);
  lua_rawgeti(L, idx, 2);
  const char *host = host_opt_cstring(L, -2, arg, what);
  int isint;
  lua_Integer port = lua_tointegerx(L, -1, &isint);
  if (lua_isnil(L, -1)) port = 0, isint = 1;
  if (lua_type(L, -1) == LUA_TSTRING || !isint || port < 0 || port > 65535)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: port must be an integer "
                                             "from 0 to 65535", what));
  if (numeric_addr(host, (int)port, ss))
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: '%s' is not a numeric IPv4 "
                                             "or IPv6 address (resolve names "
                                             "with asyncio.getaddrinfo)",
                                          what, host));
  lua_pop(L, 2);
}

static int ep_get_extra_info(lua_State *L) {
  udp_ep *ep = check_ep(L, "get_extra_info", 0);
  const char *what = host_check_cstring(L, 2, NULL);
  struct sockaddr_storage ss;
  int len = sizeof ss, r = UV_EINVAL;
  lua_settop(L, 3);
  if (ep->hd.closing) return 1;
  if (strcmp(what, "sockname") == 0)
    r = uv_udp_getsockname(&ep->udp, (struct sockaddr *)&ss, &len);
  else if (strcmp(what, "peername") == 0)
    r = uv_udp_getpeername(&ep->udp, (struct sockaddr *)&ss, &len);
  else
    return 1;
  if (r == UV_ENOTCONN) return 1; /* not connected: the default */
  if (r) return host_raise_oserror(L, r, "get_extra_info", what);
  io_push_sockaddr(L, (struct sockaddr *)&ss);
  return 1;
}

/* ---- sending ----------------------------------------------------------- */

static void on_sent(uv_udp_send_t *req, int status) {
  send_req *s = req->data;
  (void)status; /* as asyncio's transports: a late failure is not raised */
  s->ep->sending -= s->n;
  free(s);
}

/* Sends now if the kernel takes it, else queues a copy; raises the OS's
 * refusal (EMSGSIZE, EACCES for a broadcast not allowed...). */
static int send_to(lua_State *L, udp_ep *ep, const char *p, size_t n,
                   const struct sockaddr *sa) {
  if (n > DGRAM_MAX)
    return host_raise_oserror(L, UV_EMSGSIZE, "send", NULL);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = ep->sending ? UV_EAGAIN : uv_udp_try_send(&ep->udp, &b, 1, sa);
  if (r == UV_EAGAIN || r == UV_ENOSYS) {
    send_req *s = malloc(sizeof *s + n);
    if (!s) return luaL_error(L, "asyncio: out of memory");
    memcpy(s->data, p, n);
    s->ep = ep;
    s->n = n;
    s->req.data = s;
    b = uv_buf_init(s->data, (unsigned)n);
    r = uv_udp_send(&s->req, &ep->udp, &b, 1, sa, on_sent);
    if (r) free(s);
    else ep->sending += n;
  }
  if (ep->h->trace) host_trace_io_addr(ep->h, NULL, HOST_IO_SEND, n, r < 0 ? r : 0, sa);
  if (r < 0) return host_raise_oserror(L, r, "send", NULL);
  ep->sent++;
  return 0;
}

/* ep:send(data [, {host, port}]) */
static int ep_send(lua_State *L) {
  udp_ep *ep = check_ep(L, "send", 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  struct sockaddr_storage ss;
  if (lua_isnoneornil(L, 3)) return send_to(L, ep, p, n, NULL);
  check_addr(L, 3, 3, "address", &ss);
  return send_to(L, ep, p, n, (struct sockaddr *)&ss);
}

/* ep:sendto(data, host, port) */
static int ep_sendto(lua_State *L) {
  udp_ep *ep = check_ep(L, "sendto", 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  const char *host = host_check_cstring(L, 3, NULL);
  int port = io_check_port(L, 4);
  struct sockaddr_storage ss;
  if (numeric_addr(host, port, &ss))
    luaL_argerror(L, 3, "not a numeric IPv4 or IPv6 address (resolve names "
                        "with asyncio.getaddrinfo)");
  return send_to(L, ep, p, n, (struct sockaddr *)&ss);
}

/* ---- the rest of the methods ------------------------------------------- */

static int ep_close_m(lua_State *L) {
  host_handle_close(&check_ep(L, "close", 0)->hd, L);
  return 0;
}

static int ep_is_closing(lua_State *L) {
  lua_pushboolean(L, check_ep(L, "is_closing", 0)->hd.closing);
  return 1;
}

/* ep:stats() -> {received =, dropped =, truncated =, queued =,
 * queued_bytes =, sent =, send_buffer =} */
static int ep_stats(lua_State *L) {
  udp_ep *ep = check_ep(L, "stats", 0);
  lua_createtable(L, 0, 7);
  io_setfield_int(L, "received", ep->received);
  io_setfield_int(L, "dropped", ep->dropped);
  io_setfield_int(L, "truncated", ep->truncated);
  io_setfield_int(L, "queued", ep->nq);
  io_setfield_int(L, "queued_bytes", ep->qbytes);
  io_setfield_int(L, "sent", ep->sent);
  io_setfield_int(L, "send_buffer", ep->sending);
  return 1;
}

static int ep_tostring(lua_State *L) {
  host_handle *hd = host_handle_test(L, 1, &UDP_TYPE);
  udp_ep *ep = hd ? host_container_of(hd, udp_ep, hd) : NULL;
  if (!ep)
    lua_pushliteral(L, "<DatagramEndpoint finalized>");
  else
    lua_pushfstring(L, "<DatagramEndpoint%s queued=%I dropped=%I>",
                    ep->hd.closing ? " closed" : "", (lua_Integer)ep->nq,
                    (lua_Integer)ep->dropped);
  return 1;
}

/* ---- creation ---------------------------------------------------------- */

/* An optional positive integer option at the top of the stack. */
static size_t opt_count(lua_State *L, int opts, const char *k, size_t dflt) {
  lua_getfield(L, opts, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return dflt;
  }
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (lua_type(L, -1) != LUA_TNUMBER || !isint || v < 1)
    luaL_argerror(L, opts, lua_pushfstring(L, "option '%s': positive integer "
                                              "expected", k));
  lua_pop(L, 1);
  return (size_t)v;
}

static int opt_family(lua_State *L, int opts) {
  static const char *const names[] = {"inet", "inet6", NULL};
  lua_getfield(L, opts, "family");
  int fam = AF_UNSPEC;
  if (!lua_isnil(L, -1)) {
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(v, names[0]) == 0) fam = AF_INET;
    else if (strcmp(v, names[1]) == 0) fam = AF_INET6;
    else luaL_argerror(L, opts, "option 'family': \"inet\" or \"inet6\" expected");
  }
  lua_pop(L, 1);
  return fam;
}

/* The local/remote address option k into ss (0 when absent). */
static int opt_addr(lua_State *L, int opts, const char *k,
                    struct sockaddr_storage *ss) {
  if (lua_getfield(L, opts, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  const char *what = lua_pushfstring(L, "option '%s'", k);
  check_addr(L, -2, opts, what, ss);
  lua_pop(L, 2);
  return 1;
}

static int opt_bool(lua_State *L, int opts, const char *k) {
  lua_getfield(L, opts, k);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Binds (and connects) the endpoint's socket; 0 or a libuv error and the
 * operation that failed in *op. */
static int setup(udp_ep *ep, int fam, const struct sockaddr_storage *local,
                 int has_local, const struct sockaddr_storage *remote,
                 int has_remote, int broadcast, int reuse_port,
                 const char **op) {
  struct sockaddr_storage any;
  int r;
  *op = "bind";
  if (!has_local) {
    numeric_addr(fam == AF_INET6 ? "::" : "0.0.0.0", 0, &any);
    local = &any;
  }
  if (reuse_port) {
#ifdef SO_REUSEPORT
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&ep->udp, &fd) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      return UV_EINVAL;
#endif
  }
  if ((r = uv_udp_bind(&ep->udp, (const struct sockaddr *)local, 0))) return r;
  if (broadcast && (r = uv_udp_set_broadcast(&ep->udp, 1))) return r;
  *op = "connect";
  if (has_remote &&
      (r = uv_udp_connect(&ep->udp, (const struct sockaddr *)remote)))
    return r;
  *op = "recv";
  return uv_udp_recv_start(&ep->udp, on_alloc, on_recv);
}

/* ---- names ----------------------------------------------------------------
 * An address option whose host is a name, not a number, is resolved with
 * asyncio.getaddrinfo (which suspends) into a copy of the options, and the
 * creation starts again with the copy: the continuation of that call. */

static int create(lua_State *L);

/* The option at key of opts (at 1) names a host to resolve? */
static int needs_name(lua_State *L, const char *key) {
  struct sockaddr_storage ss;
  int named = 0;
  if (lua_getfield(L, 1, key) == LUA_TTABLE &&
      lua_rawgeti(L, -1, 1) == LUA_TSTRING) {
    size_t n;
    const char *host = lua_tolstring(L, -1, &n);
    named = strlen(host) == n && numeric_addr(host, 0, &ss) != 0;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return named;
}

/* The first address of the list at the top in the family the options ask
 * for (any: the first), as {address, port} into the copy at 1 under the
 * key at 2; then creation goes on. */
static int resolved_k(lua_State *L, int status, lua_KContext ctx) {
  int fam = opt_family(L, 1);
  (void)status;
  (void)ctx;
  for (lua_Integer i = 1; lua_rawgeti(L, 3, i) == LUA_TTABLE; i++) {
    lua_getfield(L, -1, "family");
    int f = strcmp(lua_tostring(L, -1), "inet6") == 0 ? AF_INET6 : AF_INET;
    lua_pop(L, 1);
    if (fam == AF_UNSPEC || f == fam) {
      lua_createtable(L, 2, 0);
      lua_getfield(L, -2, "address");
      lua_rawseti(L, -2, 1);
      lua_getfield(L, -2, "port");
      lua_rawseti(L, -2, 2);
      lua_pushvalue(L, 2);
      lua_insert(L, -2);
      lua_rawset(L, 1);
      lua_settop(L, 1);
      return create(L);
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, lua_tostring(L, 2));
  lua_rawgeti(L, -1, 1);
  return host_raise_oserror(L, UV_EAI_NONAME, "getaddrinfo",
                            lua_tostring(L, -1));
}

static int resolve(lua_State *L, const char *key) {
  lua_createtable(L, 0, 8); /* the copy */
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_replace(L, 1);
  lua_settop(L, 1);
  lua_pushstring(L, key);
  lua_getfield(L, lua_upvalueindex(2), "getaddrinfo");
  lua_getfield(L, 1, key);
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  lua_remove(L, -3);
  lua_callk(L, 2, 1, 0, resolved_k);
  return resolved_k(L, LUA_OK, 0);
}

/* asyncio.create_datagram_endpoint{local_addr =, remote_addr =, family =,
 * allow_broadcast =, reuse_port =, max_queue =, max_queue_bytes =} */
static int l_create_datagram_endpoint(lua_State *L) {
  static const char *const known[] = {"local_addr", "remote_addr", "family",
                                      "allow_broadcast", "reuse_port",
                                      "max_queue", "max_queue_bytes", NULL};
  if (lua_isnoneornil(L, 1)) lua_newtable(L), lua_replace(L, 1);
  luaL_checktype(L, 1, LUA_TTABLE);
  host_check_options(L, 1, known);
  lua_settop(L, 1);
  return create(L);
}

static int create(lua_State *L) {
  struct sockaddr_storage local, remote;
  lasync_host *h = io_live_host(L, "create_datagram_endpoint");
  if (needs_name(L, "local_addr")) return resolve(L, "local_addr");
  if (needs_name(L, "remote_addr")) return resolve(L, "remote_addr");
  int fam = opt_family(L, 1);
  int has_local = opt_addr(L, 1, "local_addr", &local);
  int has_remote = opt_addr(L, 1, "remote_addr", &remote);
  size_t max_queue = opt_count(L, 1, "max_queue", DEFAULT_MAX_QUEUE);
  size_t max_bytes = opt_count(L, 1, "max_queue_bytes", DEFAULT_MAX_BYTES);
  int broadcast = opt_bool(L, 1, "allow_broadcast");
  int reuse_port = opt_bool(L, 1, "reuse_port");
  int afam = has_local ? local.ss_family : has_remote ? remote.ss_family : fam;
  if (afam == AF_UNSPEC) afam = AF_INET;
  if ((fam != AF_UNSPEC && afam != fam) ||
      (has_local && has_remote && local.ss_family != remote.ss_family))
    luaL_argerror(L, 1, "the addresses and family are not all of one family");
  lua_settop(L, 1);
  host_handle **box = host_handle_newbox(L, UDP_MT, 0);
  udp_ep *ep = calloc(1, sizeof *ep);
  if (!ep) return luaL_error(L, "asyncio: out of memory");
  int r = uv_udp_init_ex(h->loop, &ep->udp, (unsigned)afam);
  if (r) {
    free(ep);
    return host_raise_oserror(L, r, "socket", NULL);
  }
  ep->udp.data = ep;
  ep->h = h;
  ep->tail = &ep->head;
  ep->max_queue = max_queue;
  ep->max_bytes = max_bytes;
  host_list_init(&ep->waiters);
  update_ref(ep);
  host_handle_init(&ep->hd, &UDP_TYPE, h);
  host_handle_attach(box, &ep->hd);
  const char *op;
  r = setup(ep, afam, &local, has_local, &remote, has_remote, broadcast,
            reuse_port, &op);
  if (r) {
    host_handle_release(L, 2);
    return host_raise_oserror(L, r, op, NULL);
  }
  return 1;
}

static const luaL_Reg methods[] = {{"send", ep_send},
                                   {"sendto", ep_sendto},
                                   {"recv", ep_recv},
                                   {"close", ep_close_m},
                                   {"is_closing", ep_is_closing},
                                   {"get_extra_info", ep_get_extra_info},
                                   {"stats", ep_stats},
                                   {NULL, NULL}};

void io_open_udp(lua_State *L, lasync_host *h) {
  static const luaL_Reg meta[] = {{"__gc", host_handle_gc},
                                  {"__close", ep_close_m},
                                  {"__tostring", ep_tostring},
                                  {NULL, NULL}};
  host_new_type(L, UDP_MT, methods, meta, 0);
  host_handle_register(L, &UDP_TYPE);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -2); /* the module: its getaddrinfo */
  lua_pushcclosure(L, l_create_datagram_endpoint, 2);
  lua_setfield(L, -2, "create_datagram_endpoint");
}
