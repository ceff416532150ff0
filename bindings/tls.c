/* The TLS engine under a stream (tls.h): one SSL per connection between
 * two memory BIOs.  Ciphertext read from the socket is written into the
 * read BIO and decrypted at once into the reader's buffer, so the
 * reader's limit bounds memory as for a plain stream (at most one socket
 * read is decrypted past it).  Plaintext written is encrypted into the
 * write BIO, which is emptied straight into the socket's write queue, so
 * drain() sees the ciphertext queued and back-pressure is unchanged.
 *
 * The handshake runs inside those callbacks; the task that waits for it
 * (open_connection, a server's connection before its handler, start_tls)
 * parks on the connection and is woken once it ends, fails, or its
 * deadline passes.  Cancelling that task aborts the connection. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define IN_SIZE (32 * 1024)     /* one socket read of ciphertext */
#define CHUNK (16 * 1024)       /* plaintext decrypted / encrypted per step */
#define DEFAULT_HANDSHAKE_TIMEOUT 60.0
#define SHUTDOWN_TIMEOUT 30.0   /* asyncio's ssl_shutdown_timeout */

enum { HS_RUNNING = 0, HS_DONE, HS_FAILED };

struct tls_conn {
  lstream *s;
  lasync_host *h;
  SSL *ssl;
  BIO *rbio, *wbio;          /* socket -> SSL, SSL -> socket */
  host_timer timer;          /* the handshake's deadline */
  host_task *waiter;         /* the task waiting for the handshake */
  int state;
  int server;
  int uverr;                 /* the socket failed during the handshake */
  int timed_out;
  double timeout;
  unsigned long sslerr;      /* OpenSSL's error that ended it */
  long verify;               /* the certificate's verify result */
  char *pending;             /* written during the handshake */
  size_t npending;
  char *hostname;            /* server_hostname (a client), or NULL */
  unsigned char notify_sent;
  unsigned char waiter_ref;  /* the waiter holds a reference to the stream
                                (open_connection's, from the connect) */
  char in[IN_SIZE];
};

/* ---- moving bytes ----------------------------------------------------- */

/* Empties the write BIO into the socket's queue. */
static int flush(tls_conn *c) {
  char buf[CHUNK];
  int n;
  while ((n = BIO_read(c->wbio, buf, sizeof buf)) > 0) {
    int r = lstream_raw_write(c->s, buf, (size_t)n);
    if (r) return r;
  }
  return 0;
}

static void wake_waiter(tls_conn *c) {
  host_timer_stop(c->h, &c->timer);
  host_task *t = c->waiter;
  if (t) {
    c->waiter = NULL;
    host_wake(t, NULL, 0);
  }
}

/* The SSL call failed with `rc`: records OpenSSL's reason (or, for a
 * certificate, the verify result). */
static void record_ssl_error(tls_conn *c, int rc) {
  int e = SSL_get_error(c->ssl, rc);
  c->sslerr = e == SSL_ERROR_SSL ? ERR_peek_last_error() : 0;
  if (ERR_GET_REASON(c->sslerr) == SSL_R_CERTIFICATE_VERIFY_FAILED)
    c->verify = SSL_get_verify_result(c->ssl);
  ERR_clear_error();
}

static void fail_handshake(tls_conn *c, int uverr) {
  if (c->state != HS_RUNNING) return;
  c->state = HS_FAILED;
  c->uverr = uverr;
  wake_waiter(c);
}

/* Writes what was written during the handshake, now that it is done. */
static void write_pending(tls_conn *c) {
  char *p = c->pending;
  size_t n = c->npending;
  c->pending = NULL;
  c->npending = 0;
  if (p) tls_write(c, p, n);
  free(p);
}

static void step_handshake(tls_conn *c) {
  ERR_clear_error();
  int rc = SSL_do_handshake(c->ssl);
  if (rc == 1) {
    c->state = HS_DONE;
  } else {
    int e = SSL_get_error(c->ssl, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      record_ssl_error(c, rc);
      flush(c); /* the alert that tells the peer why */
      fail_handshake(c, UV_EPROTO);
      return;
    }
  }
  flush(c);
  if (c->state == HS_DONE) {
    write_pending(c);
    wake_waiter(c);
  }
}

/* Decrypts all the read BIO holds into the reader's buffer. */
static void decrypt(tls_conn *c) {
  for (;;) {
    size_t room, got = 0;
    char *p = lstream_room(c->s, CHUNK, &room);
    if (!p) {
      lstream_deliver(c->s, 0, UV_ENOMEM);
      return;
    }
    ERR_clear_error();
    int rc = SSL_read_ex(c->ssl, p, room, &got);
    if (rc == 1) {
      lstream_deliver(c->s, got, 0);
      continue;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the end */
      lstream_deliver(c->s, 0, UV_EOF);
    } else {
      record_ssl_error(c, rc);
      lstream_deliver(c->s, 0, UV_EPROTO);
    }
    break;
  }
  flush(c); /* key updates, the answers to them */
}

static void on_linger_deadline(lasync_host *h, host_timer *tm) {
  tls_conn *c = host_container_of(tm, tls_conn, timer);
  (void)h;
  lstream_linger_done(c->s);
}

int tls_close_notify(tls_conn *c, int linger) {
  if (c->state != HS_DONE || c->notify_sent) return 0;
  c->notify_sent = 1;
  ERR_clear_error();
  SSL_shutdown(c->ssl);
  ERR_clear_error();
  flush(c);
  if (!linger) return 0;
  c->timer.fire = on_linger_deadline; /* the handshake's timer is free */
  if (host_timer_start(c->h, &c->timer, host_deadline(c->h, SHUTDOWN_TIMEOUT)))
    return 0;
  return 1;
}

/* Closing: what arrives is read only to see the peer's close_notify. */
static void linger_read(tls_conn *c, ssize_t n) {
  if (n > 0) {
    BIO_write(c->rbio, c->in, (int)n);
    for (;;) {
      size_t got;
      ERR_clear_error();
      if (SSL_read_ex(c->ssl, c->in, sizeof c->in, &got) == 1) continue;
      int e = SSL_get_error(c->ssl, 0);
      ERR_clear_error();
      if (e == SSL_ERROR_WANT_READ) return;
      break;
    }
  }
  host_timer_stop(c->h, &c->timer);
  lstream_linger_done(c->s);
}

uv_buf_t tls_read_buf(tls_conn *c) { return uv_buf_init(c->in, IN_SIZE); }

void tls_on_read(tls_conn *c, ssize_t n) {
  if (c->notify_sent) {
    linger_read(c, n);
    return;
  }
  if (n < 0) {
    /* the peer went away: in the handshake a reset (as asyncio's
     * "Connection lost"); after it, the end of the stream even without
     * close_notify (as Python's suppress_ragged_eofs) */
    fail_handshake(c, n == UV_EOF ? UV_ECONNRESET : (int)n);
    lstream_deliver(c->s, 0, (int)n);
    return;
  }
  if (c->state == HS_FAILED) return;
  BIO_write(c->rbio, c->in, (int)n);
  if (c->state == HS_RUNNING) step_handshake(c);
  if (c->state == HS_DONE) decrypt(c);
}

int tls_write(tls_conn *c, const char *p, size_t n) {
  if (c->state == HS_FAILED) return 0; /* dropped: the stream closes */
  if (c->state == HS_RUNNING) { /* kept until the handshake is done */
    char *np = realloc(c->pending, c->npending + n);
    if (!np) return UV_ENOMEM;
    memcpy(np + c->npending, p, n);
    c->pending = np;
    c->npending += n;
    return 0;
  }
  while (n > 0) {
    size_t k = n > CHUNK * 4 ? CHUNK * 4 : n, done = 0;
    ERR_clear_error();
    if (SSL_write_ex(c->ssl, p, k, &done) != 1) {
      ERR_clear_error(); /* after close_notify: dropped, as after close() */
      return 0;
    }
    p += done;
    n -= done;
    int r = flush(c);
    if (r) return r;
  }
  return 0;
}

void tls_closing(tls_conn *c, int lingering) {
  fail_handshake(c, UV_ECONNABORTED);
  if (!lingering) host_timer_stop(c->h, &c->timer);
}

void tls_free(tls_conn *c) {
  host_timer_stop(c->h, &c->timer);
  SSL_free(c->ssl); /* and its BIOs */
  free(c->pending);
  free(c->hostname);
  free(c);
}

SSL *tls_ssl(tls_conn *c) { return c->ssl; }
int tls_server_side(tls_conn *c) { return c->server; }
const char *tls_hostname(tls_conn *c) { return c->hostname; }

/* ---- errors ----------------------------------------------------------- */

static const char *peer_name(tls_conn *c) {
  return c->hostname ? c->hostname : c->server ? "client" : "server";
}

int tls_push_error(lua_State *L, tls_conn *c) {
  if (!c->sslerr && c->verify == X509_V_OK) return 0;
  tls_push_ssl_error(L, c->sslerr, c->verify, c->hostname, peer_name(c));
  return 1;
}

/* What the handshake's waiter raises. */
static void push_handshake_error(lua_State *L, tls_conn *c) {
  if (c->timed_out) {
    host_error_new(L, "TimeoutError", "SSL handshake is taking longer than "
                   "%f seconds: aborting the connection", c->timeout);
  } else if (c->uverr == UV_EPROTO) {
    tls_push_ssl_error(L, c->sslerr, c->verify, c->hostname, peer_name(c));
  } else {
    host_push_oserror(L, c->uverr, "handshake", peer_name(c));
  }
}

/* ---- a connection ----------------------------------------------------- */

static int is_ip(const char *host) {
  unsigned char a[16];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static void on_deadline(lasync_host *h, host_timer *tm) {
  tls_conn *c = host_container_of(tm, tls_conn, timer);
  (void)h;
  if (c->state != HS_RUNNING) return;
  c->timed_out = 1;
  fail_handshake(c, UV_ETIMEDOUT);
}

/* The client's name: SNI (not for an address) and, with check_hostname,
 * what the certificate must match. */
static int set_hostname(tls_conn *c, tls_ctx *x, const char *name) {
  c->hostname = strdup(name);
  if (!c->hostname) return 0;
  int ip = is_ip(name);
  if (!ip && !SSL_set_tlsext_host_name(c->ssl, name)) return 0;
  if (!tls_ctx_check_hostname(x)) return 1;
  SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (ip)
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name);
  return SSL_set1_host(c->ssl, name);
}

/* Puts TLS on s (reading or about to read) and starts the handshake.
 * Bytes already buffered are the peer's first records. */
static tls_conn *attach(lstream *s, tls_ctx *x, const char *name,
                        double timeout) {
  tls_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->s = s;
  c->h = lstream_host(s);
  c->server = tls_ctx_server_side(x);
  c->timeout = timeout;
  c->verify = X509_V_OK;
  host_timer_init(&c->timer, on_deadline);
  c->ssl = tls_ctx_new_ssl(x);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->ssl || !c->rbio || !c->wbio ||
      (name && *name && !set_hostname(c, x, name))) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    c->rbio = c->wbio = NULL;
    SSL_free(c->ssl);
    free(c->hostname);
    free(c);
    return NULL;
  }
  BIO_set_mem_eof_return(c->rbio, -1); /* empty: "want more", not EOF */
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  if (c->server)
    SSL_set_accept_state(c->ssl);
  else
    SSL_set_connect_state(c->ssl);
  lstream_set_tls(s, c);
  size_t n;
  const char *early = lstream_take_buffered(s, &n);
  if (n) BIO_write(c->rbio, early, (int)n);
  if (host_timer_start(c->h, &c->timer, host_deadline(c->h, timeout)))
    c->timed_out = 1, c->state = HS_FAILED;
  else
    step_handshake(c);
  if (c->state == HS_DONE) decrypt(c);
  lstream_resume(s);
  return c;
}

static int handshake_cancel(host_task *t, int woken) {
  tls_conn *c = t->wait_data;
  (void)woken;
  lstream *s = c->s;
  c->waiter = NULL;
  host_timer_stop(c->h, &c->timer);
  lstream_close(s, 1);
  if (c->waiter_ref) lstream_unref(s); /* may free c */
  return 0;
}

/* Parks t until the handshake of c ends; k then reads c->state. */
static int wait_handshake(lua_State *L, host_task *t, tls_conn *c,
                          host_k_fn k, lua_KContext ctx) {
  if (c->state != HS_RUNNING) return k(L, ctx);
  c->waiter = t;
  return host_park(L, t, handshake_cancel, c, k, ctx);
}

/* The ssl_handshake_timeout option at idx (absent: 60 s). */
static double opt_handshake_timeout(lua_State *L, int opts, const char *fname) {
  double v = DEFAULT_HANDSHAKE_TIMEOUT;
  if (!lua_istable(L, opts)) return v;
  if (lua_getfield(L, opts, "ssl_handshake_timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "bad option 'ssl_handshake_timeout' to '%s' (number "
                    "expected, got %s)", fname, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
    if (!(v > 0))
      luaL_error(L, "bad option 'ssl_handshake_timeout' to '%s' (must be "
                    "a positive number of seconds)", fname);
  }
  lua_pop(L, 1);
  return v;
}

/* ---- open_connection -------------------------------------------------- */

void tls_client_options(lua_State *L, int opts, const char *host,
                        const char *fname) {
  int ssl = LUA_TNIL, name = LUA_TNIL, hst = LUA_TNIL, top = lua_gettop(L);
  if (lua_istable(L, opts)) {
    ssl = lua_getfield(L, opts, "ssl");
    name = lua_getfield(L, opts, "server_hostname");
    hst = lua_getfield(L, opts, "ssl_handshake_timeout");
  }
  if (ssl == LUA_TNIL || (ssl == LUA_TBOOLEAN && !lua_toboolean(L, top + 1))) {
    if (name != LUA_TNIL || hst != LUA_TNIL)
      host_error_raise(L, "ValueError", "%s(): %s is only meaningful with "
                       "ssl", fname, name != LUA_TNIL ? "server_hostname"
                                                      : "ssl_handshake_timeout");
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushnil(L);
    return;
  }
  /* {ssl = true} must never give plaintext: anything but false/nil is
   * TLS or an error */
  tls_ctx *x;
  if (ssl == LUA_TBOOLEAN) {
    x = tls_push_default_ctx(L);
  } else if (ssl == LUA_TUSERDATA) {
    lua_pushvalue(L, top + 1);
    x = tls_check_ctx(L, -1, fname);
  } else {
    luaL_error(L, "bad option 'ssl' to '%s' (true or an SSLContext "
                  "expected, got %s)", fname, luaL_typename(L, top + 1));
    return;
  }
  if (tls_ctx_server_side(x))
    host_error_raise(L, "ValueError", "%s(): the SSLContext is a server's "
                     "(Purpose.CLIENT_AUTH); a client needs "
                     "create_default_context()", fname);
  if (name == LUA_TNIL) {
    lua_pushstring(L, host);
  } else {
    host_opt_cstring(L, top + 2, opts, "option 'server_hostname'");
    lua_pushvalue(L, top + 2);
  }
  if (tls_ctx_check_hostname(x) && lua_rawlen(L, -1) == 0)
    host_error_raise(L, "ValueError", "%s(): check_hostname requires "
                     "server_hostname", fname);
  lua_pushnumber(L, opt_handshake_timeout(L, opts, fname));
  lua_rotate(L, top + 1, 3); /* the plan first, then the option values */
  lua_settop(L, top + 3);
}

static void set_writer_ctx(lua_State *L, int writer, int ctx) {
  writer = lua_absindex(L, writer);
  lua_pushvalue(L, ctx);
  lua_setiuservalue(L, writer, 2);
}

/* The waiter's side of a failed handshake: the connection is aborted
 * (and the waiter's reference dropped) and the error raised. */
static int handshake_failed(lua_State *L, lstream *s, int unref) {
  push_handshake_error(L, lstream_tls(s));
  lstream_close(s, 1);
  if (unref) lstream_unref(s);
  return lua_error(L);
}

/* Stack: ... ctx name timeout (at plan); ctx: the lstream. */
static int client_k(lua_State *L, lua_KContext ctx) {
  lstream *s = (lstream *)ctx;
  if (lstream_tls(s)->state != HS_DONE) return handshake_failed(L, s, 1);
  int plan = lua_gettop(L) - 2;
  lstream_push_reader(L, s);
  lstream_push_writer(L, s);
  set_writer_ctx(L, -1, plan);
  lstream_unref(s); /* the wrappers own it now */
  return 2;
}

int tls_client_begin(lua_State *L, lstream *s, int plan) {
  tls_ctx *x = lua_touserdata(L, plan);
  const char *name = lua_tostring(L, plan + 1);
  lua_settop(L, plan + 2);
  tls_conn *c = attach(s, x, name, lua_tonumber(L, plan + 2));
  if (!c) {
    lstream_close(s, 1);
    lstream_unref(s);
    return luaL_error(L, "asyncio: out of memory");
  }
  c->waiter_ref = 1; /* a cancellation also ends the connect's reference */
  return wait_handshake(L, host_task_of(L), c, client_k, (lua_KContext)s);
}

/* ---- start_server ----------------------------------------------------- */

static int handler_done_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

/* After the server handshake: the handler (upvalue 1) with reader and
 * writer; a failed handshake closes the connection quietly (asyncio logs
 * it at debug level only), the handler never sees it. */
static int serve_k(lua_State *L, lua_KContext ctx) {
  lstream *s = (lstream *)ctx;
  tls_conn *c = lstream_tls(s);
  lua_settop(L, 2);
  if (c->state != HS_DONE) {
    lstream_close(s, 1);
    return 0;
  }
  set_writer_ctx(L, 2, lua_upvalueindex(2));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_callk(L, 2, LUA_MULTRET, 0, handler_done_k);
  return handler_done_k(L, LUA_OK, 0);
}

/* The task body of a TLS server's connection: upvalues handler, context,
 * handshake timeout; arguments reader, writer. */
static int serve_entry(lua_State *L) {
  lstream *s = lstream_check_writer(L, 2, "start_server");
  tls_ctx *x = lua_touserdata(L, lua_upvalueindex(2));
  tls_conn *c = attach(s, x, NULL, lua_tonumber(L, lua_upvalueindex(3)));
  if (!c) {
    lstream_close(s, 1);
    return luaL_error(L, "asyncio: out of memory");
  }
  return wait_handshake(L, host_task_of(L), c, serve_k, (lua_KContext)s);
}

void tls_server_options(lua_State *L, int opts, const char *fname) {
  if (!lua_istable(L, opts)) return;
  int ssl = lua_getfield(L, opts, "ssl");
  if (ssl == LUA_TNIL || (ssl == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    if (lua_getfield(L, opts, "ssl_handshake_timeout") != LUA_TNIL)
      host_error_raise(L, "ValueError", "%s(): ssl_handshake_timeout is "
                       "only meaningful with ssl", fname);
    lua_pop(L, 2);
    return;
  }
  if (ssl != LUA_TUSERDATA)
    luaL_error(L, "bad option 'ssl' to '%s' (an SSLContext made with "
                  "create_default_context(Purpose.CLIENT_AUTH) expected, "
                  "got %s)", fname, luaL_typename(L, -1));
  tls_ctx *x = tls_check_ctx(L, -1, fname);
  if (!tls_ctx_server_side(x))
    host_error_raise(L, "ValueError", "%s(): the SSLContext is a client's; "
                     "a server needs create_default_context("
                     "asyncio.ssl.Purpose.CLIENT_AUTH) with load_cert_chain",
                     fname);
  double timeout = opt_handshake_timeout(L, opts, fname);
  lua_pushvalue(L, 1); /* handler, ctx, timeout -> the entry */
  lua_insert(L, -2);
  lua_pushnumber(L, timeout);
  lua_pushcclosure(L, serve_entry, 3);
  lua_replace(L, 1);
}

/* ---- start_tls -------------------------------------------------------- */

static int start_tls_k(lua_State *L, lua_KContext ctx) {
  lstream *s = (lstream *)ctx;
  if (lstream_tls(s)->state != HS_DONE) return handshake_failed(L, s, 0);
  set_writer_ctx(L, 1, 2);
  return 0;
}

/* writer:start_tls(ctx [, {server_hostname =, ssl_handshake_timeout =}]):
 * upgrades the connection in place; the side (client or server) is the
 * context's.  Bytes already received are the peer's first records. */
static int l_start_tls(lua_State *L) {
  static const char *const known[] = {"server_hostname",
                                      "ssl_handshake_timeout", NULL};
  lstream *s = lstream_check_writer(L, 1, "start_tls");
  tls_ctx *x = tls_check_ctx(L, 2, "start_tls");
  host_check_options(L, 3, known);
  const char *name = NULL;
  if (lua_istable(L, 3) &&
      lua_getfield(L, 3, "server_hostname") != LUA_TNIL)
    name = host_opt_cstring(L, -1, 3, "option 'server_hostname'");
  if (tls_ctx_server_side(x) && name)
    host_error_raise(L, "ValueError", "start_tls(): server_hostname is only "
                     "meaningful for a client's context");
  if (!tls_ctx_server_side(x) && tls_ctx_check_hostname(x) &&
      (!name || !*name))
    host_error_raise(L, "ValueError", "start_tls(): check_hostname requires "
                     "server_hostname");
  double timeout = opt_handshake_timeout(L, 3, "start_tls");
  host_task *t = host_check_task(L, "start_tls");
  if (lstream_tls(s))
    return host_error_raise(L, "RuntimeError", "start_tls(): the "
                            "connection already uses TLS");
  tls_conn *c = attach(s, x, name, timeout);
  if (!c) return luaL_error(L, "asyncio: out of memory");
  return wait_handshake(L, t, c, start_tls_k, (lua_KContext)s);
}

void tls_open_writer(lua_State *L, int methods) {
  lua_pushcfunction(L, l_start_tls);
  lua_setfield(L, methods, "start_tls");
}
