/* asyncio.http.server's daemon: libmicrohttpd without threads, driven by
 * the host's loop.
 *
 * libmicrohttpd (MHD_USE_EPOLL, no internal thread) keeps every socket in
 * one epoll descriptor; a uv_poll on that descriptor runs MHD_run when
 * anything is ready and a uv_timer runs it when libmicrohttpd's next
 * timeout is due.  MHD_run calls back on_access for each request; once a
 * request's headers and body are in, its connection is suspended and the
 * request queued for the Lua dispatcher (next()), which runs the handler
 * as a task.  The response resumes the connection (libmicrohttpd's
 * inter-thread pipe is in the same epoll set, so the poll fires). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_server.h"
#include "init.h"
#include "waitq.h"

#define SERVER_MT "asyncio.http.server.Daemon"

static int server_close_hook(host_handle *hd, lua_State *L);
static void server_free(host_handle *hd) { free(hd); }
static const host_handle_type SERVER_TYPE = {SERVER_MT, "server",
                                             server_close_hook, server_free};

static void on_timer(uv_timer_t *t);
static void on_again(uv_idle_t *i);
static void sweep_soon(web_server *s);

/* How many times in a row libmicrohttpd may ask to run again at once
 * (a timeout of 0) before it waits a millisecond between runs.  During a
 * TLS handshake libmicrohttpd 0.9.75 asks for 0 until the handshake is
 * done (GnuTLS's EAGAIN does not clear the connection's read-ready mark),
 * so running it at once for ever would spin while the peer is slow. */
#define WEB_EAGER_RUNS 8
#define WEB_BATCH_RUNS 4
/* Past the eager runs, a TLS server whose "at once" only handshakes
 * waiting for their peers explain (web_tls_only_handshakes) runs again
 * after a back-off that doubles up to this, instead of every millisecond
 * (2% of a core per stalled client): the peer's bytes wake the poll, and
 * what libmicrohttpd might still have hidden waits at most this long. */
#define WEB_STALL_MAX_MS 250
/* Runs a complete request waits unsuspended for its handler to start. */
#define WEB_UNSUSPENDED_RUNS 8
/* The longest between two sweeps (on_sweep), in milliseconds. */
#define WEB_SWEEP_MS 500

/* A run asked for at once goes through a uv_idle, never a 0 ms timer:
 * libuv 1.44 runs a timer restarted from its own callback again in the
 * same pass, so the loop would never poll and a client in this process
 * (a TLS handshake with libmicrohttpd, a fetch of our own URL) never got
 * to answer. */
static void server_run(web_server *s) {
  MHD_UNSIGNED_LONG_LONG ms = 0;
  int timed = 0;
  unsigned long acts = s->acts;
  /* whatever this run reads, the sweep looks after it (on_sweep) */
  sweep_soon(s);
  /* A few runs back to back while libmicrohttpd has work at once (GnuTLS
   * records already read): one loop turn per run cost HTTPS a quarter
   * of its requests per second under wrk. */
  for (int i = 0; i < WEB_BATCH_RUNS; i++) {
    if (s->stopped) return;
    s->run_again = 0;
    MHD_run(s->d);
    if (s->stopped) return;
    /* A request went to Lua unsuspended: running again before the
     * scheduler has run its handler would only call on_access for
     * nothing.  The next run is after the loop's check phase. */
    if (s->dispatched) {
      s->dispatched = 0;
      timed = 1, ms = 0;
      break;
    }
    /* A connection closed: libmicrohttpd frees its slot at the end of
     * the run and watches the listening socket again (at max_connections
     * it had left it) only at the start of the next, yet says no
     * timeout.  One resumed inside the run (an upgrade handed over)
     * waits for the next run too. */
    if (s->run_again) {
      timed = 1, ms = 0;
      continue;
    }
    timed = MHD_get_timeout(s->d, &ms) == MHD_YES;
    if (!timed || ms) break;
  }
  uv_timer_stop(&s->timer);
  if (!timed) {
    uv_idle_stop(&s->again);
    return;
  }
  if (ms == 0 && s->zero_runs++ < WEB_EAGER_RUNS) {
    uv_idle_start(&s->again, on_again);
    return;
  }
  uv_idle_stop(&s->again);
  if (ms) {
    s->zero_runs = s->stall_ms = 0;
  } else if (s->tls && acts == s->acts && web_tls_only_handshakes(s)) {
    s->stall_ms = s->stall_ms ? s->stall_ms * 2 : 2;
    if (s->stall_ms > WEB_STALL_MAX_MS) s->stall_ms = WEB_STALL_MAX_MS;
    ms = s->stall_ms;
  } else {
    s->stall_ms = 0;
    ms = 1;
  }
  uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  web_server *s = p->data;
  (void)status, (void)events;
  s->zero_runs = s->stall_ms = 0; /* the network moved: eager again */
  server_run(s);
}

static void on_timer(uv_timer_t *t) { server_run(t->data); }

static void on_again(uv_idle_t *i) { server_run(i->data); }

/* A resumed connection is processed by the next MHD_run: run it on the
 * loop's next turn (not here, inside a Lua call). */
void web_server_kick(web_server *s) {
  if (s && !s->stopped) {
    s->zero_runs = s->stall_ms = 0;
    s->run_again = 1;
    uv_idle_start(&s->again, on_again);
  }
}

/* ---- requests and connections ------------------------------------------- */

static web_conn *conn_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

static void on_sweep(uv_timer_t *t);

/* The sweep runs only after libmicrohttpd has run (it may have read the
 * bytes a FIN hid behind: on_sweep), within a quarter of header_timeout
 * and at most WEB_SWEEP_MS later, and at the next header deadline.  An
 * idle keep-alive connection costs one wake-up at its deadline; a server
 * nobody is connected to, none. */
static uint64_t sweep_every(web_server *s) {
  uint64_t every = (uint64_t)(s->header_timeout * 250) + 1;
  return every > WEB_SWEEP_MS ? WEB_SWEEP_MS : every;
}

static void sweep_in(web_server *s, uint64_t ms) {
  if (s->stopped || uv_is_closing((uv_handle_t *)&s->sweep) ||
      host_list_empty(&s->conns))
    return;
  if (uv_is_active((uv_handle_t *)&s->sweep) &&
      uv_timer_get_due_in(&s->sweep) <= ms)
    return;
  uv_timer_start(&s->sweep, on_sweep, ms, 0);
}

static void sweep_soon(web_server *s) { sweep_in(s, sweep_every(s)); }

static void on_connection(void *cls, struct MHD_Connection *c,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  web_server *s = cls;
  web_conn *wc = *socket_context;
  s->acts++;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    wc = calloc(1, sizeof *wc);
    if (!wc) return;
    wc->c = c;
    wc->since = uv_now(s->hd.h->loop);
    host_list_push(&s->conns, &wc->link);
    *socket_context = wc;
    sweep_soon(s);
  } else if (wc) {
    s->run_again = 1;
    host_list_remove(&wc->link);
    free(wc);
    *socket_context = NULL;
    if (host_list_empty(&s->conns)) uv_timer_stop(&s->sweep);
  }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  web_server *s = cls;
  web_request *rq = *con_cls;
  web_conn *wc = conn_of(c);
  (void)toe;
  s->acts++;
  /* not while MHD_stop_daemon runs: at lasync_stop the loop may be gone */
  if (wc && !s->stopped) { /* keep-alive: the header deadline starts again */
    wc->in_request = wc->in_body = 0;
    wc->since = uv_now(s->hd.h->loop);
  }
  if (rq) web_request_completed(rq);
  *con_cls = NULL;
}

static enum MHD_Result queue_plain(struct MHD_Connection *c, unsigned status,
                                   const char *text, int close) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ret;
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "text/plain");
  if (close) MHD_add_response_header(r, "Connection", "close");
  ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static web_request *request_new(web_server *s, struct MHD_Connection *c,
                                const char *url, const char *method,
                                const char *version) {
  web_request *rq = calloc(1, sizeof *rq);
  if (!rq) return NULL;
  host_list_init(&rq->link);
  rq->up_fd = -1;
  rq->srv = s;
  rq->c = c;
  /* one block for the three strings (web_request_free frees method) */
  size_t ml = strlen(method) + 1, pl = strlen(url) + 1, vl = strlen(version) + 1;
  if (!(rq->method = malloc(ml + pl + vl))) {
    web_request_free(rq);
    return NULL;
  }
  rq->path = rq->method + ml;
  rq->version = rq->path + pl;
  memcpy(rq->method, method, ml);
  memcpy(rq->path, url, pl);
  memcpy(rq->version, version, vl);
  return rq;
}

static int is_token(const char *s) {
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (!*s) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr(extra, *s)) return 0;
  return 1;
}

/* What one pass over a request's header fields found. */
typedef struct {
  int bad;                  /* a name not a token, control bytes in a value */
  int hosts, lengths, encodings;
  const char *length;       /* the first Content-Length's value */
} head_scan;

static enum MHD_Result scan_field(void *cls, enum MHD_ValueKind kind,
                                  const char *key, size_t klen,
                                  const char *value, size_t vlen) {
  head_scan *st = cls;
  (void)kind;
  if (!is_token(key) || strlen(key) != klen) st->bad = 1;
  for (size_t i = 0; value && i < vlen; i++) { /* NUL included */
    unsigned char b = (unsigned char)value[i];
    if ((b < 32 && b != '\t') || b == 127) st->bad = 1;
  }
  if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
    st->hosts++;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    if (!st->lengths++) st->length = value;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    st->encodings++;
  }
  return MHD_YES;
}

/* Why a request is refused before it reaches the handler, or NULL; its
 * status in *status.  One pass over the fields checks, in this order:
 *  - what libmicrohttpd 0.9.75 lets through and RFC 9112 refuses: a
 *    method or field name that is not a token (a blank before the colon
 *    is how requests are smuggled), control bytes in a value, an HTTP/1.1
 *    request without exactly one Host;
 *  - two Content-Length fields, or one beside Transfer-Encoding: the body
 *    framed two ways (request smuggling through a proxy that picks the
 *    other one), refused as RFC 9112 section 6.3 allows;
 *  - a body larger than max_body: refused with 413 before it is read
 *    when its length is declared (a chunked body that grows past it
 *    closes the connection: libmicrohttpd cannot answer in the middle of
 *    a body). */
static const char *refused(web_server *s, struct MHD_Connection *c,
                           const char *method, const char *version,
                           unsigned *status) {
  head_scan st = {0, 0, 0, 0, NULL};
  *status = MHD_HTTP_BAD_REQUEST;
  if (!is_token(method)) return "malformed request\n";
  MHD_get_connection_values_n(c, MHD_HEADER_KIND, scan_field, &st);
  if (st.bad || (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && st.hosts != 1))
    return "malformed request\n";
  if (st.lengths > 1 || st.encodings > 1 || (st.lengths && st.encodings))
    return "ambiguous body length\n";
  if (st.length && strtoull(st.length, NULL, 10) > s->max_body) {
    *status = 413;
    return "request body too large\n";
  }
  return NULL;
}

static int body_append(web_request *rq, const char *data, size_t n) {
  if (rq->body_total + n > rq->srv->max_body) return -1;
  if (rq->body_off) { /* the reader took the front: compact */
    memmove(rq->body, rq->body + rq->body_off, rq->body_len - rq->body_off);
    rq->body_len -= rq->body_off;
    rq->body_off = 0;
  }
  if (rq->body_len + n > rq->body_cap) {
    size_t cap = rq->body_cap ? rq->body_cap : 1024;
    while (cap < rq->body_len + n) cap *= 2;
    char *b = realloc(rq->body, cap);
    if (!b) return -1;
    rq->body = b;
    rq->body_cap = cap;
  }
  memcpy(rq->body + rq->body_len, data, n);
  rq->body_len += n;
  rq->body_total += n;
  return 0;
}

static void dispatch(web_server *s, web_request *rq) {
  host_task *t;
  s->dispatched = 1;
  host_list_push(&s->ready, &rq->link);
  if ((t = waitq_pop(&s->waiters))) host_wake(t, NULL, 0);
}

/* stream_body: the handler runs from the headers on and reads the body
 * as it arrives; libmicrohttpd's pieces are taken while less than
 * WEB_IN_HIGH bytes are unread, else the connection is suspended until
 * read() takes them (back-pressure: the client's sends block). */
static enum MHD_Result on_upload_streamed(web_request *rq, const char *upload,
                                          size_t *upload_size) {
  if (rq->queued) { /* answered early: the rest of the body is dropped */
    *upload_size = 0;
    return MHD_YES;
  }
  if (rq->body_len - rq->body_off >= WEB_IN_HIGH) {
    web_request_suspend(rq);
    return MHD_YES;
  }
  if (body_append(rq, upload, *upload_size)) return MHD_NO;
  *upload_size = 0;
  web_request_wake_reader(rq);
  return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
  web_server *s = cls;
  web_request *rq = *con_cls;
  s->acts++;
  if (!rq) { /* the headers are in */
    web_conn *wc = conn_of(c);
    if (wc) wc->in_request = 1;
    unsigned status;
    const char *why = refused(s, c, method, version, &status);
    if (why) return queue_plain(c, status, why, 1);
    if (!(rq = request_new(s, c, url, method, version))) return MHD_NO;
    *con_cls = rq;
    if (wc) wc->in_body = 1;
    if (s->stream_body) dispatch(s, rq);
    return MHD_YES; /* libmicrohttpd sends 100 Continue if asked */
  }
  if (rq->resp) { /* resumed with the handler's response */
    web_conn *wc = conn_of(c);
    if (wc) wc->in_body = 0; /* answered, maybe early: left to finish */
    enum MHD_Result ret = MHD_queue_response(c, rq->status, rq->resp);
    MHD_destroy_response(rq->resp);
    rq->resp = NULL;
    return ret;
  }
  if (*upload_size) {
    if (s->stream_body) return on_upload_streamed(rq, upload, upload_size);
    if (body_append(rq, upload, *upload_size)) return MHD_NO;
    *upload_size = 0;
    return MHD_YES;
  }
  if (!rq->body_done) {
    web_conn *wc = conn_of(c);
    if (wc) wc->in_body = 0;
    rq->body_done = 1;
    web_request_wake_reader(rq);
  }
  if (rq->queued) return MHD_YES;
  if (!host_list_linked(&rq->link) && !rq->lua) {
    dispatch(s, rq);
    return MHD_YES;
  }
  /* Suspending costs libmicrohttpd two epoll_ctl calls (out of its set
   * and back): a handler that answers in its first step finds the
   * connection waiting here unsuspended, and the next run queues the
   * answer.  Once the handler has started and not answered it awaits
   * something: suspended until the response, as is a request whose
   * handler has not started after a few runs (no busy loop). */
  if (rq->started || ++rq->waits > WEB_UNSUSPENDED_RUNS)
    web_request_suspend(rq);
  return MHD_YES;
}

static void on_log(void *cls, const char *fmt, va_list ap) {
  (void)cls, (void)fmt, (void)ap; /* errors reach clients as statuses */
}

/* ---- the header deadline and clients gone mid-request -------------------- */

/* libmicrohttpd 0.9.75 takes a read shorter than asked for as "the socket
 * is drained" and waits for the next edge of its edge-triggered epoll: a
 * FIN that came with a client's last bytes makes none.  A client gone
 * after part of a request head or body then held its connection (a
 * max_connections slot, in CLOSE-WAIT) until header_timeout or
 * idle_timeout: a cheap way to fill the server.  The sweep looks at the
 * connections whose request cannot be complete yet; one at its end
 * (nothing unread, the peer's FIN) has its reading side shut, which wakes
 * the epoll, and libmicrohttpd reads the end and closes it.  A client
 * that sent a whole request and half-closed is left alone: it waits for
 * its answer. */
static void shut_if_gone(web_conn *wc) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(wc->c, MHD_CONNECTION_INFO_CONNECTION_FD);
  char b;
  if (ci && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
    shutdown(ci->connect_fd, SHUT_RD);
}

static void on_sweep(uv_timer_t *t) {
  web_server *s = t->data;
  uint64_t now = uv_now(s->hd.h->loop);
  uint64_t limit = (uint64_t)(s->header_timeout * 1000);
  uint64_t next = UINT64_MAX; /* the next header deadline */
  for (host_link *l = s->conns.next; l != &s->conns; l = l->next) {
    web_conn *wc = host_container_of(l, web_conn, link);
    if (wc->in_request && !wc->in_body) continue;
    if (wc->in_request || now - wc->since < limit) {
      if (!wc->in_request && wc->since + limit < next)
        next = wc->since + limit;
      shut_if_gone(wc);
      continue;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(wc->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    /* libmicrohttpd has no "close this connection": shutting the socket
     * down makes its next read fail, and it closes and forgets it */
    if (ci) shutdown(ci->connect_fd, SHUT_RDWR);
    wc->since = now; /* once */
  }
  /* A gone client's FIN, when libmicrohttpd reads what came before it,
   * is a new edge on its epoll (on_poll, then the sweep again), and
   * bytes read later are read by a run (server_run): no need to look
   * again before either, but at the deadline. */
  if (next != UINT64_MAX) sweep_in(s, next - now + 1);
}

/* ---- Lua: listen, next, port, close -------------------------------------- */

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss) {
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 1;
  return -1;
}

static web_server *check_server(lua_State *L, const char *fname, int open) {
  return (web_server *)host_handle_check(L, 1, &SERVER_TYPE, fname, open);
}

/* listen(host, port, max_body, conn_limit, per_ip, idle_timeout,
 *        header_timeout, memory_limit, backlog) -> daemon.  The Lua layer
 * checked every argument. */
static int l_listen(lua_State *L) {
  lasync_host *h = host_get(L);
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  struct sockaddr_storage ss;
  int v6 = parse_addr(host, port, &ss);
  if (v6 < 0)
    return luaL_error(L, "serve(): host must be a numeric IP address or "
                         "'localhost', got '%s'", host);
  web_server *s = calloc(1, sizeof *s);
  if (!s) return luaL_error(L, "not enough memory");
  host_handle **box = host_handle_newbox(L, SERVER_MT, 0);
  host_list_init(&s->ready);
  host_list_init(&s->conns);
  host_list_init(&s->waiters);
  s->max_body = (size_t)luaL_checkinteger(L, 3);
  s->header_timeout = luaL_checknumber(L, 7);
  s->stream_body = lua_toboolean(L, 12);
  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                   MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
  if (v6) flags |= MHD_USE_IPv6;
  /* TLS by libmicrohttpd's own GnuTLS: PEM key and certificate chain */
  struct MHD_OptionItem tls[4] = {{MHD_OPTION_END, 0, NULL}};
  const char *cert = luaL_optstring(L, 10, NULL);
  const char *key = luaL_optstring(L, 11, NULL);
  const char *prio = luaL_optstring(L, 13, NULL); /* from {ssl = ctx} */
  if (cert && key) {
    flags |= MHD_USE_TLS;
    s->tls = 1;
    tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert};
    tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key};
    if (prio)
      tls[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                       (void *)prio};
  }
  s->d = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, on_access, s,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)luaL_checkinteger(L, 4),
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)luaL_checkinteger(L, 5),
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)luaL_checkinteger(L, 6),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)luaL_checkinteger(L, 8),
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)luaL_checkinteger(L, 9),
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
      MHD_OPTION_EXTERNAL_LOGGER, on_log, s, MHD_OPTION_ARRAY, tls,
      MHD_OPTION_END);
  if (!s->d) {
    free(s);
    if (cert && key) /* the address may be the cause too: say both */
      return luaL_error(L, "serve(): cannot listen with this TLS "
                           "certificate and key (or the port is in use)");
    return host_raise_oserror(L, UV_EADDRINUSE, "serve", NULL);
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
  uv_poll_init(h->loop, &s->poll, di->epoll_fd);
  uv_timer_init(h->loop, &s->timer);
  uv_timer_init(h->loop, &s->sweep);
  uv_idle_init(h->loop, &s->again);
  s->poll.data = s->timer.data = s->sweep.data = s->again.data = s;
  host_handle_init(&s->hd, &SERVER_TYPE, h);
  host_handle_hold(&s->hd); /* four libuv handles, four holds */
  host_handle_hold(&s->hd);
  host_handle_hold(&s->hd);
  host_handle_attach(box, &s->hd);
  uv_poll_start(&s->poll, UV_READABLE, on_poll);
  server_run(s);
  return 1;
}

static void on_handle_closed(uv_handle_t *u) {
  web_server *s = u->data;
  host_handle_after_close(&s->hd);
}

static int server_close_hook(host_handle *hd, lua_State *L) {
  web_server *s = (web_server *)hd;
  host_task *t;
  (void)L;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_handle_closed);
  uv_close((uv_handle_t *)&s->timer, on_handle_closed);
  uv_close((uv_handle_t *)&s->sweep, on_handle_closed);
  uv_close((uv_handle_t *)&s->again, on_handle_closed);
  /* libmicrohttpd closes suspended connections too only once resumed */
  while (!host_list_empty(&s->ready))
    host_list_remove(host_list_first(&s->ready));
  s->stopped = 1;
  MHD_stop_daemon(s->d); /* every request completes (on_completed) */
  s->d = NULL;
  while ((t = waitq_pop(&s->waiters))) host_wake(t, NULL, 0);
  return 1;
}

static int next_cancel(host_task *t, int woken) {
  web_server *s = t->wait_data;
  if (!woken) {
    waitq_remove(t);
  } else if (!host_list_empty(&s->ready)) { /* pass the request on */
    host_task *o = waitq_pop(&s->waiters);
    if (o) host_wake(o, NULL, 0);
  }
  return 0;
}

static int next_k(lua_State *L, lua_KContext ctx) {
  web_server *s = (web_server *)ctx;
  host_link *l;
  if (s->hd.closing) return 0;
  if (!(l = host_list_first(&s->ready))) { /* it went away: wait again */
    host_task *t = host_check_task(L, "next");
    waitq_push(&s->waiters, t);
    return host_park(L, t, next_cancel, s, next_k, ctx);
  }
  host_list_remove(l);
  web_request_push(L, host_container_of(l, web_request, link));
  return 1;
}

/* daemon:next() -> the next complete request, or nothing once closed. */
static int l_next(lua_State *L) {
  web_server *s = check_server(L, "next", 0);
  host_task *t = host_check_task(L, "next");
  if (s->hd.closing) return 0;
  if (!host_list_empty(&s->ready)) return next_k(L, (lua_KContext)s);
  waitq_push(&s->waiters, t);
  return host_park(L, t, next_cancel, s, next_k, (lua_KContext)s);
}

static int l_port(lua_State *L) {
  web_server *s = check_server(L, "port", 1);
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  lua_pushinteger(L, di ? di->port : 0);
  return 1;
}

/* Stops accepting (graceful shutdown): open connections go on. */
static int l_quiesce(lua_State *L) {
  web_server *s = check_server(L, "quiesce", 1);
  MHD_socket fd = MHD_quiesce_daemon(s->d);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  return 0;
}

static int l_close(lua_State *L) {
  host_handle *hd = host_handle_test(L, 1, &SERVER_TYPE);
  if (hd) host_handle_close(hd, L);
  return 0;
}

static int l_connections(lua_State *L) {
  web_server *s = check_server(L, "connections", 0);
  lua_Integer n = 0;
  for (host_link *l = s->conns.next; l != &s->conns; l = l->next) n++;
  lua_pushinteger(L, n);
  return 1;
}

/* unknown_option(opts) -> the first key serve() does not know, or nil */
static int l_unknown_option(lua_State *L) {
  static const char *const known[] = {
      "max_body", "max_header_bytes", "max_connections", "stream_body",
      "max_connections_per_ip", "idle_timeout", "header_timeout",
      "shutdown_timeout", "backlog", "tls", "ssl", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!host_unknown_option(L, 1, known)) lua_pushnil(L);
  return 1;
}

LASYNC_API int luaopen_asyncio_http_server(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"next", l_next},   {"port", l_port},
      {"quiesce", l_quiesce}, {"close", l_close},
      {"connections", l_connections}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__gc", host_handle_gc}, {"__close", l_close}, {NULL, NULL}};
  host_new_type(L, SERVER_MT, methods, meta, 0);
  host_handle_register(L, &SERVER_TYPE);
  web_request_types(L);
  l_load_lua_part(L, "http_server");
  lua_newtable(L); /* core */
  l_push_lua_part_loader(L); /* for argcheck.lua */
  lua_setfield(L, -2, "lua_part");
  lua_pushcfunction(L, l_listen);
  lua_setfield(L, -2, "listen");
  lua_pushcfunction(L, l_unknown_option);
  lua_setfield(L, -2, "unknown_option");
  lua_pushcfunction(L, web_l_ssl_options);
  lua_setfield(L, -2, "ssl_options");
  lua_pushstring(L, MHD_get_version());
  lua_setfield(L, -2, "mhd_version");
  lua_getglobal(L, "require");
  lua_pushstring(L, "asyncio");
  lua_call(L, 1, 1);
  lua_call(L, 2, 1);
  return 1;
}
