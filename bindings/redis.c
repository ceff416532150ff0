/* asyncio.redis, the C half: one Redis connection is one libuv stream (TCP
 * or Unix socket) in a record that follows host/handle.h.  hiredis does
 * the protocol: redisFormatCommandArgv encodes commands (binary-safe) and
 * its reply parser (redisReader) decodes replies.
 *
 * Why not hiredis's async layer and its libuv adapter (both in Debian's
 * libhiredis-dev 0.14.1): the async layer assert()s, that is aborts the
 * whole process, on a reply no command asked for and on a malformed
 * pub/sub message, and the adapter drops poll errors on the floor (the
 * commands then wait forever).  A server we do not control must not be
 * able to kill the host, so the transport is libuv's own stream and the
 * demultiplexing (one FIFO of requests, one queue of pub/sub messages) is
 * done here.
 *
 * Pipelining: a command is appended to the connection's output buffer and
 * written at once unless a write is in flight; commands issued meanwhile
 * (other tasks, the same loop turn) go out together in the next write.
 * Replies come back in order and are matched with the FIFO.
 *
 * A request (rreq) has two sides: the FIFO (until its reply arrives or the
 * connection fails) and the task waiting for it (until it resumes or is
 * cancelled).  The last side to let go frees it.  A cancelled request
 * stays in the FIFO to absorb its reply, so the connection stays in step;
 * a cancelled *blocking* command (BLMOVE...) closes the connection
 * instead, since its reply may never come.  No Lua runs in a libuv
 * callback: replies are converted to Lua values in the task's
 * continuation. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include <hiredis.h>

#include "../host/buf.h"
#include "../host/handle.h"
#include "init.h"
#include "tls.h"


#define CONN_MT "asyncio.redis.core.Connection"
#define ERROR_CLASS "RedisError"
#define CONN_ERROR_CLASS "RedisConnectionError"
#define MSG_HIGH 1024 /* queued pub/sub messages above which reading pauses */
#define READ_CHUNK (64 * 1024)

typedef struct rconn rconn;

typedef struct rreq {
  host_link link;    /* in conn->reqs while its replies are awaited */
  rconn *c;
  host_task *task;   /* NULL once the task let go */
  int n, got;        /* replies expected (a pipeline sends several), come */
  unsigned char blocking, in_fifo;
  unsigned char barrier; /* a PING after a (p)unsubscribe: see add_barrier */
  redisReply *replies[]; /* n of them */
} rreq;

typedef struct rmsg {
  struct rmsg *next;
  redisReply *reply;
} rmsg;

enum { C_CONNECTING, C_OPEN, C_DOWN };

struct rconn {
  host_handle hd;
  io_stream_handle u;   /* the socket (unused over TLS: ls has it) */
  uv_connect_t creq;
  uv_write_t wreq;
  lstream *ls;          /* rediss://: the TLS stream carrying it, or NULL */
  redisReader *reader;
  host_task *connector; /* the task waiting for the connection */
  host_task *listener;  /* the task waiting for a pub/sub message */
  host_link reqs;       /* FIFO of rreq */
  host_buf out;         /* commands not yet handed to libuv */
  host_buf wbuf;        /* the write in flight */
  rmsg *msgs, **msgs_tail;
  size_t nmsgs;
  size_t max_reply, acct;
  int status;           /* connect's libuv error, or 0 */
  unsigned char state, writing, paused, subscribed, too_big, active;
  unsigned char unsub_sent; /* a (p)unsubscribe went out since the last barrier */
  size_t sub_owed;          /* (p)subscribe confirmations still to come */
  char err[256];        /* why the connection is down */
  char rbuf[READ_CHUNK];
};

static int conn_close_hook(host_handle *hd, lua_State *L);
static void conn_free(host_handle *hd);
static const host_handle_type CONN_TYPE = {CONN_MT, "redis connection",
                                           conn_close_hook, conn_free};

/* ---- the reply parser's objects ------------------------------------------
 * hiredis's own reply objects, built here so that a reply's size is
 * counted as it is parsed: one reply over max_reply (strings, arrays and
 * the objects themselves) stops the parser instead of filling memory. */

static redisReply *new_reply(const redisReadTask *task, int type, size_t extra) {
  rconn *c = task->privdata;
  if (!task->parent) c->acct = 0;
  c->acct += sizeof(redisReply) + extra;
  if (c->acct > c->max_reply) {
    c->too_big = 1;
    return NULL;
  }
  redisReply *r = calloc(1, sizeof *r);
  if (r) r->type = type;
  return r;
}

static void *attach(const redisReadTask *task, redisReply *r) {
  if (r && task->parent)
    ((redisReply *)task->parent->obj)->element[task->idx] = r;
  return r;
}

static void *create_string(const redisReadTask *task, char *s, size_t len) {
  redisReply *r = new_reply(task, task->type, len + 1);
  if (!r) return NULL;
  if (!(r->str = malloc(len + 1))) {
    free(r);
    return NULL;
  }
  memcpy(r->str, s, len);
  r->str[len] = '\0';
  r->len = len;
  return attach(task, r);
}

static void *create_array(const redisReadTask *task, int n) {
  redisReply *r = new_reply(task, REDIS_REPLY_ARRAY, (size_t)n * sizeof(void *));
  if (!r) return NULL;
  if (n > 0 && !(r->element = calloc((size_t)n, sizeof(redisReply *)))) {
    free(r);
    return NULL;
  }
  r->elements = (size_t)n;
  return attach(task, r);
}

static void *create_integer(const redisReadTask *task, long long v) {
  redisReply *r = new_reply(task, REDIS_REPLY_INTEGER, 0);
  if (r) r->integer = v;
  return attach(task, r);
}

static void *create_nil(const redisReadTask *task) {
  return attach(task, new_reply(task, REDIS_REPLY_NIL, 0));
}

static redisReplyObjectFunctions REPLY_FNS = {
    create_string, create_array, create_integer, create_nil, freeReplyObject};

/* ---- failing, closing ------------------------------------------------- */

/* The handle keeps the loop alive only while someone waits on it, so an
 * idle connection does not keep a finished program running. */
static void update_ref(rconn *c) {
  int active = c->connector || c->listener || c->writing ||
               !host_list_empty(&c->reqs);
  if (c->hd.closing || active == c->active) return;
  c->active = (unsigned char)active;
  uv_handle_t *hh = c->ls ? (uv_handle_t *)lstream_handle(c->ls) : &c->u.handle;
  (active ? uv_ref : uv_unref)(hh);
}

static void free_msgs(rconn *c) {
  while (c->msgs) {
    rmsg *m = c->msgs;
    c->msgs = m->next;
    freeReplyObject(m->reply);
    free(m);
  }
  c->msgs_tail = &c->msgs;
  c->nmsgs = 0;
}

static rreq *new_req(rconn *c, int n) {
  rreq *q = calloc(1, sizeof *q + (size_t)n * sizeof(redisReply *));
  if (q) {
    q->c = c;
    q->n = n;
  }
  return q;
}

static void free_req(rreq *q) {
  for (int i = 0; i < q->got; i++) freeReplyObject(q->replies[i]);
  free(q);
}

/* Ends every wait on the connection: requests lose their FIFO side and,
 * with `wake`, their tasks resume to raise c->err.  Without `wake` (the
 * host stops, the value is collected) no task is touched: each one's
 * cancel hook lets go of its request. */
static void detach_all(rconn *c, int wake) {
  host_link *l;
  while ((l = host_list_first(&c->reqs))) {
    rreq *q = host_container_of(l, rreq, link);
    host_list_remove(l);
    q->in_fifo = 0;
    if (!q->task) free_req(q);
    else if (wake) host_wake(q->task, NULL, 0);
  }
  if (wake && c->listener) host_wake(c->listener, NULL, 0);
  if (wake && c->connector) host_wake(c->connector, NULL, 0);
  if (wake) c->listener = c->connector = NULL;
}

static void conn_down(rconn *c, const char *why) {
  if (c->state == C_DOWN) return;
  c->state = C_DOWN;
  snprintf(c->err, sizeof c->err, "%s", why);
  detach_all(c, 1);
  host_handle_close(&c->hd, NULL);
}

static void on_closed(uv_handle_t *h) {
  rconn *c = h->data;
  host_handle_after_close(&c->hd);
}

static int conn_close_hook(host_handle *hd, lua_State *L) {
  rconn *c = host_container_of(hd, rconn, hd);
  if (c->state != C_DOWN) {
    c->state = C_DOWN;
    snprintf(c->err, sizeof c->err, "the connection is closed");
  }
  detach_all(c, L != NULL);
  if (c->ls) { /* the stream closes itself (close_notify first) */
    lstream *ls = c->ls;
    c->ls = NULL;
    uv_ref((uv_handle_t *)lstream_handle(ls));
    lstream_set_sink(ls, NULL, NULL);
    lstream_close(ls, !c->hd.h || host_closing(c->hd.h));
    lstream_unref(ls);
    host_handle_after_close(hd);
    return 1;
  }
  uv_close(&c->u.handle, on_closed);
  return 1;
}

static void conn_free(host_handle *hd) {
  rconn *c = host_container_of(hd, rconn, hd);
  free_msgs(c);
  if (c->reader) redisReaderFree(c->reader);
  host_buf_free(&c->out);
  host_buf_free(&c->wbuf);
  free(c);
}

static rconn *check_conn(lua_State *L, const char *fname) {
  return host_container_of(host_handle_check(L, 1, &CONN_TYPE, fname, 0),
                           rconn, hd);
}

/* ---- writing ---------------------------------------------------------- */

static void start_write(rconn *c);

static void on_written(uv_write_t *w, int status) {
  rconn *c = w->data;
  c->writing = 0;
  c->wbuf.len = 0;
  if (status < 0) {
    char why[200];
    snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
    conn_down(c, why);
    return;
  }
  if (c->out.len && c->state == C_OPEN) start_write(c);
  update_ref(c);
}

static void start_write(rconn *c) {
  if (c->ls) { /* the stream queues (and encrypts) it */
    int rc = lstream_write(c->ls, c->out.p, c->out.len);
    c->out.len = 0;
    if (rc) {
      char why[200];
      snprintf(why, sizeof why, "write failed: %s", uv_strerror(rc));
      conn_down(c, why);
    }
    return;
  }
  host_buf t = c->wbuf;
  c->wbuf = c->out;
  c->out = t;
  uv_buf_t b = uv_buf_init(c->wbuf.p, (unsigned)c->wbuf.len);
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, &c->u.stream, &b, 1, on_written);
  if (rc < 0) {
    char why[200];
    snprintf(why, sizeof why, "write failed: %s", uv_strerror(rc));
    conn_down(c, why);
    return;
  }
  c->writing = 1;
}

/* ---- reading ---------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b) {
  rconn *c = h->data;
  (void)size;
  *b = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

/* A (p)unsubscribe confirmation: [kind, channel, count]. */
static int is_unsubscribe(const redisReply *r) {
  return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
         r->element[0]->type == REDIS_REPLY_STRING &&
         (strcasecmp(r->element[0]->str, "unsubscribe") == 0 ||
          strcasecmp(r->element[0]->str, "punsubscribe") == 0) &&
         r->element[2]->type == REDIS_REPLY_INTEGER;
}

static int is_last_unsubscribe(const redisReply *r) {
  return is_unsubscribe(r) && r->element[2]->integer == 0;
}

/* A (p)subscribe confirmation: [kind, channel, count]. */
static int is_subscribe(const redisReply *r) {
  return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
         r->element[0]->type == REDIS_REPLY_STRING &&
         (strcasecmp(r->element[0]->str, "subscribe") == 0 ||
          strcasecmp(r->element[0]->str, "psubscribe") == 0);
}

/* A pub/sub message (or a (un)subscribe confirmation) for the listener. */
static void queue_message(rconn *c, redisReply *r) {
  rmsg *m = malloc(sizeof *m);
  if (!m) {
    freeReplyObject(r);
    conn_down(c, "out of memory");
    return;
  }
  m->reply = r;
  m->next = NULL;
  *c->msgs_tail = m;
  c->msgs_tail = &m->next;
  if (is_subscribe(r) && c->sub_owed > 0) c->sub_owed--;
  if (r->type == REDIS_REPLY_ERROR) c->sub_owed = 0; /* a refused command */
  /* count 0 ends pub/sub mode unless a (p)subscribe sent after this
   * unsubscribe is still to be confirmed (replies come in order) */
  if (is_last_unsubscribe(r) && c->sub_owed == 0) c->subscribed = 0;
  if (++c->nmsgs >= MSG_HIGH && !c->paused) {
    c->paused = 1; /* the server buffers (and drops a client too slow) */
    if (!c->ls) uv_read_stop(&c->u.stream);
  }
  if (c->listener) {
    host_wake(c->listener, NULL, 0);
    c->listener = NULL;
  }
}

/* The barrier PING's reply: +PONG, or ["pong", ""] on a connection the
 * server still counts as subscribed. */
static int is_pong(const redisReply *r) {
  if (r->type == REDIS_REPLY_STATUS) return strcasecmp(r->str, "PONG") == 0;
  return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
         r->element[0]->type == REDIS_REPLY_STRING &&
         strcasecmp(r->element[0]->str, "pong") == 0;
}

static void dispatch(rconn *c, redisReply *r) {
  host_link *l = host_list_first(&c->reqs);
  if (l) {
    rreq *q = host_container_of(l, rreq, link);
    if (q->barrier && !is_pong(r)) { /* pub/sub traffic before the PING */
      if (c->subscribed) queue_message(c, r);
      else freeReplyObject(r); /* a late confirmation, as below */
      return;
    }
    q->replies[q->got++] = r;
    if (q->got < q->n) return;
    host_list_remove(l);
    q->in_fifo = 0;
    if (!q->task) free_req(q); /* its task was cancelled: dropped */
    else host_wake(q->task, NULL, 0);
    return;
  }
  if (c->subscribed) {
    queue_message(c, r);
    return;
  }
  /* a late confirmation of an UNSUBSCRIBE sent when nothing was left
   * subscribed is the answer to a command too, not garbage; nobody reads
   * it (a Subscription stops at count 0), so it goes: queued, such
   * leftovers would pile up until reading pauses */
  int late = is_unsubscribe(r);
  freeReplyObject(r);
  if (!late) conn_down(c, "protocol error: a reply no command asked for");
}

static void parse(rconn *c) {
  void *r;
  while (c->state == C_OPEN) {
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
      char why[200];
      if (c->too_big)
        snprintf(why, sizeof why, "a reply is larger than max_reply (%zu bytes)",
                 c->max_reply);
      else
        snprintf(why, sizeof why, "protocol error: %s", c->reader->errstr);
      conn_down(c, why);
      return;
    }
    if (!r) break;
    dispatch(c, r);
  }
  /* what is left is part of one reply: it alone may not outgrow the cap */
  if (c->state == C_OPEN && c->reader->len - c->reader->pos > c->max_reply) {
    char why[200];
    snprintf(why, sizeof why, "a reply is larger than max_reply (%zu bytes)",
             c->max_reply);
    conn_down(c, why);
  }
}

/* bytes (or the end) arrived; false when the connection went down */
static int on_bytes(rconn *c, const char *p, ssize_t n) {
  if (n < 0) {
    char why[200];
    if (n == UV_EOF) snprintf(why, sizeof why, "the server closed the connection");
    else snprintf(why, sizeof why, "read failed: %s", uv_strerror((int)n));
    conn_down(c, why);
    return 0;
  }
  if (n && redisReaderFeed(c->reader, p, (size_t)n) != REDIS_OK) {
    conn_down(c, "out of memory");
    return 0;
  }
  parse(c);
  update_ref(c);
  return c->state == C_OPEN;
}

/* The TLS stream's sink (io.h): its plaintext, unless messages pile up
 * (then its buffer fills and it stops reading by itself). */
static void on_stream_data(void *ud) {
  rconn *c = ud;
  if (c->paused || c->state != C_OPEN) return;
  size_t n;
  const char *p = lstream_take_buffered(c->ls, &n);
  if (!on_bytes(c, p, (ssize_t)n)) return;
  int end = lstream_read_end(c->ls);
  if (end) on_bytes(c, NULL, end);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  rconn *c = s->data;
  if (n == 0) return;
  if (n < 0) {
    char why[200];
    if (n == UV_EOF) snprintf(why, sizeof why, "the server closed the connection");
    else snprintf(why, sizeof why, "read failed: %s", uv_strerror((int)n));
    conn_down(c, why);
    return;
  }
  if (redisReaderFeed(c->reader, b->base, (size_t)n) != REDIS_OK) {
    conn_down(c, "out of memory");
    return;
  }
  parse(c);
  update_ref(c);
}

/* ---- connecting ------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status) {
  rconn *c = req->data;
  if (c->state != C_CONNECTING) return; /* closed meanwhile */
  if (status == 0) status = uv_read_start(&c->u.stream, on_alloc, on_read);
  c->status = status;
  if (c->connector) host_wake(c->connector, NULL, 0);
  c->connector = NULL;
  if (status == 0) {
    c->state = C_OPEN;
    update_ref(c);
  } else {
    conn_down(c, uv_strerror(status));
  }
}

static int connect_cancel(host_task *t, int woken) {
  rconn *c = t->wait_data;
  (void)woken;
  c->connector = NULL;
  host_handle_close(&c->hd, NULL);
  return 0;
}

static int connect_k(lua_State *L, lua_KContext ctx) {
  rconn *c = (rconn *)ctx;
  if (c->status || c->state != C_OPEN)
    return host_raise_oserror(L, c->status ? c->status : UV_ECONNRESET,
                              "connect", lua_tostring(L, 2));
  lua_settop(L, 4);
  return 1; /* the box */
}

static rconn *new_conn(lua_State *L, lua_Integer max_reply) {
  rconn *c = calloc(1, sizeof *c);
  if (!c || !(c->reader = redisReaderCreateWithFunctions(&REPLY_FNS))) {
    free(c);
    luaL_error(L, "asyncio.redis: out of memory");
    return NULL;
  }
  c->reader->privdata = c;
  c->max_reply = (size_t)max_reply;
  c->msgs_tail = &c->msgs;
  host_list_init(&c->reqs);
  return c;
}

/* core.adopt(writer, max_reply) -> connection: rediss://, over the TLS
 * stream that asyncio.open_connection made (its handshake done), so TLS
 * is the stream layer's one engine (tls.c).  The connection takes its own
 * reference: the Lua wrappers may go. */
static int l_adopt(lua_State *L) {
  lstream *ls = lstream_check_writer(L, 1, "adopt");
  lua_Integer max_reply = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max_reply > 0, 2, "max_reply must be > 0");
  lasync_host *h = HOST(L);
  host_handle **box = host_handle_newbox(L, CONN_MT, 0);
  rconn *c = new_conn(L, max_reply);
  lstream_ref(ls);
  c->ls = ls;
  c->state = C_OPEN;
  c->active = 1;
  host_handle_init(&c->hd, &CONN_TYPE, h);
  host_handle_attach(box, &c->hd);
  lstream_set_sink(ls, on_stream_data, c);
  update_ref(c);
  on_stream_data(c); /* bytes that came with the handshake, or the end */
  return 1;
}

/* core.connect("tcp", ip, port, max_reply) / core.connect("unix", path,
 * nil, max_reply) -> connection.  ip is numeric: redis.lua resolves names
 * with asyncio.getaddrinfo and tries each address. */
static int l_connect(lua_State *L) {
  static const char *const kinds[] = {"tcp", "unix", NULL};
  int unix_ = luaL_checkoption(L, 1, NULL, kinds);
  const char *where = host_check_cstring(L, 2, NULL);
  lua_Integer port = unix_ ? 0 : luaL_checkinteger(L, 3);
  lua_Integer max_reply = luaL_checkinteger(L, 4);
  luaL_argcheck(L, max_reply > 0, 4, "max_reply must be > 0");
  host_task *t = host_check_task(L, "connect");
  lasync_host *h = HOST(L);
  struct sockaddr_storage sa;
  if (!unix_ && uv_ip4_addr(where, (int)port, (struct sockaddr_in *)&sa) &&
      uv_ip6_addr(where, (int)port, (struct sockaddr_in6 *)&sa))
    return luaL_argerror(L, 2, "not a numeric IP address");
  /* libuv (1.44) cuts a longer path to fit sun_path, silently: that would
   * connect to another socket than the one named */
  if (unix_ && strlen(where) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return host_raise_oserror(L, UV_ENAMETOOLONG, "connect", where);
  lua_settop(L, 3);
  host_handle **box = host_handle_newbox(L, CONN_MT, 0);
  rconn *c = new_conn(L, max_reply);
  int rc = io_stream_handle_init(h->loop, &c->u, unix_, c);
  if (rc) {
    redisReaderFree(c->reader);
    free(c);
    return host_raise_oserror(L, rc, "connect", where);
  }
  c->active = 1;
  host_handle_init(&c->hd, &CONN_TYPE, h);
  host_handle_attach(box, &c->hd);
  c->creq.data = c;
  if (unix_) {
    uv_pipe_connect(&c->creq, &c->u.pipe, where, on_connect);
  } else {
    uv_tcp_nodelay(&c->u.tcp, 1);
    rc = uv_tcp_connect(&c->creq, &c->u.tcp, (struct sockaddr *)&sa, on_connect);
    if (rc) {
      conn_down(c, uv_strerror(rc));
      return host_raise_oserror(L, rc, "connect", where);
    }
  }
  c->connector = t;
  return host_park(L, t, connect_cancel, c, connect_k, (lua_KContext)c);
}

/* ---- commands ----------------------------------------------------------- */

static void push_error_reply(lua_State *L, const redisReply *r) {
  host_error_new(L, ERROR_CLASS, "%s", r->str);
  size_t k = strcspn(r->str, " ");
  lua_pushlstring(L, r->str, k);
  lua_setfield(L, -2, "kind");
}

/* Pushes the Lua value of a reply: strings for bulk and status replies,
 * integers, tables for arrays (redis.null for a nil inside one), a
 * RedisError object for an error inside an array (EXEC's). */
static void push_reply(lua_State *L, const redisReply *r, int top) {
  luaL_checkstack(L, 3, "redis reply");
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, r->str, r->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)r->integer);
    break;
  case REDIS_REPLY_ERROR:
    push_error_reply(L, r);
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, r->elements > INT_MAX ? INT_MAX : (int)r->elements, 0);
    for (size_t i = 0; i < r->elements; i++) {
      push_reply(L, r->element[i], 0);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  default:
    if (top) lua_pushnil(L);
    else lua_pushlightuserdata(L, NULL);
  }
}

/* Raises RedisConnectionError with why the connection is down; `sent`
 * says whether the command may have reached the server (false: it was
 * never sent, so trying again elsewhere is safe). */
static int raise_down(lua_State *L, rconn *c, int sent) {
  host_error_new(L, CONN_ERROR_CLASS, "%s", c->err);
  lua_pushboolean(L, sent);
  lua_setfield(L, -2, "sent");
  return lua_error(L);
}

/* Converts and frees the reply; raises an error reply.  Runs in the task,
 * where an out-of-memory error unwinds safely (the reply is anchored in a
 * to-be-freed request... which is freed before anything can raise). */
static int return_reply(lua_State *L, redisReply *r) {
  /* a failing conversion (out of memory) must not leak the reply: keep it
   * in a box whose __gc frees it */
  redisReply **keep = lua_newuserdatauv(L, sizeof *keep, 0);
  *keep = r;
  luaL_setmetatable(L, "asyncio.redis.core.Reply");
  int failed = r->type == REDIS_REPLY_ERROR;
  push_reply(L, r, 1);
  freeReplyObject(r);
  *keep = NULL;
  if (failed) return lua_error(L);
  return 1;
}

static int reply_gc(lua_State *L) {
  redisReply **keep = lua_touserdata(L, 1);
  if (*keep) freeReplyObject(*keep);
  *keep = NULL;
  return 0;
}

static int send_cancel(host_task *t, int woken) {
  rreq *q = t->wait_data;
  q->task = NULL;
  if (woken || !q->in_fifo) { /* woken: the replies (or the failure) are ours */
    free_req(q);
    return 0;
  }
  /* stays in the FIFO to absorb its reply; a blocking command may never
   * get one, so its connection goes */
  if (q->blocking)
    conn_down(q->c, "closed: a blocking command on it was cancelled");
  return 0;
}

static int send_k(lua_State *L, lua_KContext ctx) {
  rreq *q = (rreq *)ctx;
  rconn *c = q->c;
  if (q->got < q->n) {
    free_req(q);
    return raise_down(L, c, 1);
  }
  redisReply *r = q->replies[0];
  free(q);
  return return_reply(L, r);
}

static int req_gc(lua_State *L) {
  rreq **keep = lua_touserdata(L, 1);
  if (*keep) free_req(*keep);
  *keep = NULL;
  return 0;
}

/* A pipeline's replies as a list (nil is redis.null, an error reply is a
 * RedisError value). */
static int many_k(lua_State *L, lua_KContext ctx) {
  rreq *q = (rreq *)ctx;
  rconn *c = q->c;
  if (q->got < q->n) {
    free_req(q);
    return raise_down(L, c, 1);
  }
  rreq **keep = lua_newuserdatauv(L, sizeof *keep, 0);
  *keep = q; /* freed by __gc if building the list runs out of memory */
  luaL_setmetatable(L, "asyncio.redis.core.Request");
  lua_createtable(L, q->n, 0);
  for (int i = 0; i < q->n; i++) {
    push_reply(L, q->replies[i], 0);
    lua_rawseti(L, -2, i + 1);
  }
  *keep = NULL;
  free_req(q);
  return 1;
}

/* Checks that the nargs arguments from idx are strings or numbers (before
 * anything is allocated or sent). */
static void check_args(lua_State *L, int idx, int nargs, const char *fname) {
  for (int i = 0; i < nargs; i++) {
    int t = lua_type(L, idx + i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_error(L, "bad argument #%d to '%s' (string or number expected, "
                 "got %s)", i + 1, fname, luaL_typename(L, idx + i));
  }
}

/* Appends the command whose nargs checked arguments start at idx to the
 * output buffer (flush() sends it).  Returns 0, or -1 out of memory. */
static int append_command(lua_State *L, rconn *c, int idx, int nargs) {
  const char *argv[64];
  size_t lens[64];
  const char **av = argv;
  size_t *al = lens;
  if (nargs > 64) {
    av = lua_newuserdatauv(L, (size_t)nargs * (sizeof *av + sizeof *al), 0);
    al = (size_t *)(av + nargs);
  }
  for (int i = 0; i < nargs; i++) av[i] = lua_tolstring(L, idx + i, &al[i]);
  char *cmd;
  long long n = redisFormatCommandArgv(&cmd, nargs, av, al);
  if (n < 0) return -1;
  int rc = host_buf_add(&c->out, cmd, (size_t)n);
  free(cmd);
  return rc ? -1 : 0;
}

/* After a (p)unsubscribe, confirmations may still be on their way once one
 * said "count 0" and commands are allowed again (the second of two
 * UNSUBSCRIBEs is answered even with nothing left subscribed).  So the
 * next command is preceded by a PING whose reply marks their end: what
 * comes before it is queued as messages, never taken for the command's
 * reply.  Returns 0, or -1 out of memory.  */
static int add_barrier(rconn *c) {
  static const char PING[] = "*1\r\n$4\r\nPING\r\n";
  if (!c->unsub_sent) return 0;
  rreq *q = new_req(c, 1);
  if (!q) return -1;
  if (host_buf_add(&c->out, PING, sizeof PING - 1)) {
    free(q);
    return -1;
  }
  q->barrier = q->in_fifo = 1;
  host_list_push(&c->reqs, &q->link);
  c->unsub_sent = 0;
  return 0;
}

/* Starts writing the output buffer unless a write is in flight (then its
 * callback writes what gathered meanwhile). */
static void flush(rconn *c) {
  if (!c->writing && c->out.len) start_write(c);
}

/* The commands of q are in the output buffer: send them, queue q for its
 * replies and park t until they come. */
static int send_and_park(lua_State *L, rconn *c, host_task *t, rreq *q,
                         host_k_fn k) {
  flush(c);
  if (c->state != C_OPEN) { /* the write failed at once (a TLS stream's
                             * peer reset): nobody would wake t */
    free_req(q);
    return raise_down(L, c, 1);
  }
  q->task = t;
  q->in_fifo = 1;
  host_list_push(&c->reqs, &q->link);
  update_ref(c);
  return host_park(L, t, send_cancel, q, k, (lua_KContext)q);
}

static rconn *check_open(lua_State *L, const char *fname) {
  rconn *c = check_conn(L, fname);
  if (c->state != C_OPEN) raise_down(L, c, 0);
  return c;
}

/* core.call(conn, blocking, name, args...) -> the reply's value */
static int l_call(lua_State *L) {
  rconn *c = check_open(L, "call");
  int blocking = lua_toboolean(L, 2);
  int nargs = lua_gettop(L) - 2;
  luaL_argcheck(L, nargs >= 1, 3, "command name expected");
  host_task *t = host_check_task(L, "call");
  if (c->subscribed)
    return host_error_raise(L, ERROR_CLASS, "the connection is subscribed: "
                            "only (p)subscribe, (p)unsubscribe and close are "
                            "allowed until it unsubscribes from everything");
  check_args(L, 3, nargs, "call");
  if (nargs > 64) lua_checkstack(L, 1); /* append_command's userdata */
  rreq *q = new_req(c, 1);
  if (!q) return luaL_error(L, "asyncio.redis: out of memory");
  if (add_barrier(c) || append_command(L, c, 3, nargs)) {
    free(q);
    return luaL_error(L, "asyncio.redis: out of memory");
  }
  q->blocking = (unsigned char)blocking;
  return send_and_park(L, c, t, q, send_k);
}

/* core.call_many(conn, {{name, args...}, ...}) -> {reply, ...}: the
 * commands leave together (nothing of another task comes between them,
 * which MULTI ... EXEC needs) and one wake-up brings every reply. */
static int l_call_many(lua_State *L) {
  rconn *c = check_open(L, "pipeline");
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  host_task *t = host_check_task(L, "pipeline");
  if (c->subscribed)
    return host_error_raise(L, ERROR_CLASS, "the connection is subscribed: "
                            "no pipeline until it unsubscribes from everything");
  lua_Integer n = luaL_len(L, 2), maxk = 0;
  luaL_argcheck(L, n >= 1 && n <= 100000, 2, "1 to 100000 commands expected");
  for (lua_Integer i = 1; i <= n; i++) { /* check everything first */
    if (lua_geti(L, 2, i) != LUA_TTABLE)
      luaL_error(L, "bad argument #1 to 'pipeline' (command %d: table "
                 "expected, got %s)", (int)i, luaL_typename(L, -1));
    lua_Integer k = luaL_len(L, -1);
    if (k < 1 || k > 1000000)
      luaL_error(L, "bad argument #1 to 'pipeline' (command %d: a name and "
                 "its arguments expected)", (int)i);
    if (k > maxk) maxk = k;
    for (lua_Integer j = 1; j <= k; j++) {
      int ty = lua_geti(L, -1, j);
      if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
        luaL_error(L, "bad argument #1 to 'pipeline' (command %d, element "
                   "%d: string or number expected, got %s)", (int)i, (int)j,
                   luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  /* room for the longest command (and append_command's scratch) now: a
   * failure between two appends would leave the first commands in the
   * output buffer, to be sent with no request awaiting their replies (the
   * next commands would get them) */
  luaL_checkstack(L, (int)maxk + 2, "pipeline");
  rreq *q = new_req(c, (int)n);
  if (!q || add_barrier(c)) {
    free(q);
    return luaL_error(L, "asyncio.redis: out of memory");
  }
  rreq **keep = lua_newuserdatauv(L, sizeof *keep, 0); /* until queued */
  *keep = q;
  luaL_setmetatable(L, "asyncio.redis.core.Request");
  size_t before = c->out.len;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 2, i);
    int k = (int)luaL_len(L, -1);
    luaL_checkstack(L, k + 1, "pipeline");
    int base = lua_gettop(L) + 1;
    for (int j = 1; j <= k; j++) lua_geti(L, base - 1, j);
    if (append_command(L, c, base, k)) {
      c->out.len = before; /* nothing of it goes out */
      return luaL_error(L, "asyncio.redis: out of memory");
    }
    lua_settop(L, 3);
  }
  *keep = NULL;
  return send_and_park(L, c, t, q, many_k);
}

/* core.sub_command(conn, name, args...): sends a (p)subscribe or
 * (p)unsubscribe, whose answers come as messages. */
static int l_sub_command(lua_State *L) {
  rconn *c = check_open(L, "subscribe");
  size_t n;
  const char *name = luaL_checklstring(L, 2, &n);
  int nchannels = lua_gettop(L) - 2; /* before append_command's scratch */
  if (!c->subscribed && !host_list_empty(&c->reqs))
    return host_error_raise(L, ERROR_CLASS, "subscribe: the connection has "
                            "commands in flight (use a connection of its own)");
  check_args(L, 2, lua_gettop(L) - 1, "subscribe");
  if (append_command(L, c, 2, lua_gettop(L) - 1))
    return luaL_error(L, "asyncio.redis: out of memory");
  flush(c);
  if (strcasecmp(name, "subscribe") == 0 || strcasecmp(name, "psubscribe") == 0) {
    c->subscribed = 1;
    c->sub_owed += (size_t)nchannels; /* one confirmation per channel */
  } else
    c->unsub_sent = 1;
  return 0;
}

static int message_cancel(host_task *t, int woken) {
  rconn *c = t->wait_data;
  (void)woken;
  if (c->listener == t) c->listener = NULL;
  update_ref(c);
  return 0;
}

static int message_k(lua_State *L, lua_KContext ctx);

/* core.message(conn) -> the next pub/sub message (a table), or raises
 * RedisConnectionError once the connection is down and none is left. */
static int l_message(lua_State *L) {
  rconn *c = check_conn(L, "message");
  lua_settop(L, 1);
  rmsg *m = c->msgs;
  if (m) {
    if (!(c->msgs = m->next)) c->msgs_tail = &c->msgs;
    c->nmsgs--;
    redisReply *r = m->reply;
    free(m);
    if (c->paused && c->nmsgs < MSG_HIGH / 2 && c->state == C_OPEN) {
      c->paused = 0;
      if (!c->ls) {
        uv_read_start(&c->u.stream, on_alloc, on_read);
      } else {
        on_stream_data(c); /* what piled up meanwhile */
        if (c->ls) lstream_resume(c->ls);
      }
    }
    return return_reply(L, r);
  }
  if (c->state != C_OPEN) return raise_down(L, c, 1);
  host_task *t = host_check_task(L, "message");
  if (c->listener)
    return luaL_error(L, "asyncio.redis: another task is reading the messages");
  c->listener = t;
  update_ref(c);
  return host_park(L, t, message_cancel, c, message_k, 0);
}

static int message_k(lua_State *L, lua_KContext ctx) {
  (void)ctx;
  return l_message(L);
}

static int l_close(lua_State *L) {
  rconn *c = check_conn(L, "close");
  host_handle_close(&c->hd, L);
  return 0;
}

/* core.info(conn) -> open, in-flight requests, subscribed, queued messages */
static int l_info(lua_State *L) {
  rconn *c = check_conn(L, "info");
  int n = 0;
  for (host_link *l = c->reqs.next; l != &c->reqs; l = l->next) n++;
  lua_pushboolean(L, c->state == C_OPEN);
  lua_pushinteger(L, n);
  lua_pushboolean(L, c->subscribed);
  lua_pushinteger(L, (lua_Integer)c->nmsgs);
  lua_pushstring(L, c->err);
  return 5;
}

static const char *const CONNECT_OPTIONS[] = {
    "url", "host", "port", "path", "password", "username", "db", "connect_timeout",
    "timeout", "max_reply", "retries", "retry_delay", "name",
    "ssl", "server_hostname", "ssl_handshake_timeout", NULL};

/* core.unknown_option(opts) -> the first key that is not an option */
static int l_unknown_option(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!host_unknown_option(L, 1, CONNECT_OPTIONS)) lua_pushnil(L);
  return 1;
}

/* core.check_tls(settings, host): validates ssl, server_hostname and
 * ssl_handshake_timeout as open_connection will (so a wrong option is an
 * error of connect(), not a failed connection). */
static int l_check_tls(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  tls_client_options(L, 1, host_check_cstring(L, 2, NULL), "connect");
  return 0;
}

static const luaL_Reg core_funcs[] = {
    {"check_tls", l_check_tls},
    {"connect", l_connect}, {"adopt", l_adopt}, {"call", l_call},   {"sub_command", l_sub_command},
    {"call_many", l_call_many},
    {"message", l_message}, {"close", l_close}, {"info", l_info},
    {"unknown_option", l_unknown_option},      {NULL, NULL}};

LASYNC_API int luaopen_asyncio_redis(lua_State *L) {
  lasync_host *h = host_for_module(L);
  static const luaL_Reg conn_meta[] = {
      {"__gc", host_handle_gc_quiet}, {"__close", l_close}, {NULL, NULL}};
  static const luaL_Reg reply_meta[] = {{"__gc", reply_gc}, {NULL, NULL}};
  host_new_type(L, CONN_MT, NULL, conn_meta, 0);
  host_handle_register(L, &CONN_TYPE);
  host_new_type(L, "asyncio.redis.core.Reply", NULL, reply_meta, 0);
  static const luaL_Reg req_meta[] = {{"__gc", req_gc}, {NULL, NULL}};
  host_new_type(L, "asyncio.redis.core.Request", NULL, req_meta, 0);
  l_load_lua_part(L, "redis");
  lua_newtable(L); /* core */
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, core_funcs, 1);
  l_push_lua_part_loader(L); /* for argcheck.lua */
  lua_setfield(L, -2, "lua_part");
  host_error_class(L, ERROR_CLASS, NULL);
  lua_setfield(L, -2, "Error");
  host_error_class(L, CONN_ERROR_CLASS, ERROR_CLASS);
  lua_setfield(L, -2, "ConnectionError");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_call(L, 1, 1);
  return 1;
}
