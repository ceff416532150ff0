/* Streams: one reader/writer layer over any uv_stream_t (TCP sockets and
 * the pipes of subprocesses) and in-memory readers.
 *
 * The C record (lstream) is malloc'd and owns the handle; its lifetime is
 * handle.h's: the handle holds it until the close callback, and so does
 * each user (the Lua wrappers StreamReader/StreamWriter, a pending
 * connect, and for a server connection the server until the handler
 * ends).  When the last user goes, the handle is closed (gracefully:
 * queued writes go out first, except when the host stops).
 *
 * Reading: libuv reads straight into the stream's buffer; the read
 * callback only appends and wakes the one waiting reader, which re-checks
 * its condition on resume (so a cancelled reader loses nothing: the bytes
 * stay buffered).  Reading stops while the buffer holds over `limit` bytes and
 * no reader needs more, so a fast sender cannot grow memory without bound.
 *
 * Writing: uv_try_write first; what the kernel did not take is copied into
 * a uv_write request.  drain() suspends while more than the high-water mark
 * is queued and resumes at the low-water mark. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "handle.h"
#include "tls.h"

#define READER_MT "asyncio.StreamReader"
#define WRITER_MT "asyncio.StreamWriter"
#define DEFAULT_LIMIT (64 * 1024)
#define HIGH_WATER (64 * 1024)
#define LOW_WATER (16 * 1024)
#define READ_CHUNK (64 * 1024)

/* ---- the stream record ------------------------------------------------ */

struct lstream {
  io_stream_handle u;
  host_handle hd;        /* lifetime: handle.h (the close hook is "now") */
  lasync_host *h;
  int kind;
  int users;
  /* reading */
  char *buf;
  size_t start, len, cap; /* data is buf[start, start+len) */
  size_t limit;
  size_t want;            /* bytes the waiting reader needs */
  size_t scan;            /* readuntil: where the next search starts */
  host_task *reader;
  int rerr;
  struct file_src *file;  /* LSTREAM_FILE: its descriptor and read request */
  /* writing */
  size_t wqueued;
  int werr;
  host_link drainers;
  host_link closers;
  tls_conn *tls;          /* TLS over the socket (tls.h), or NULL */
  lstream_sink_fn sink;   /* a consumer other than StreamReader (io.h) */
  void *sink_ud;
  unsigned char started, reading, eof, closing, close_pending,
      eof_sent,
      idle_unref, /* the handle holds the loop only while a task reads */
      lingering, /* TLS: closed, waiting for the peer's close_notify */
      wlost; /* bytes were dropped: written after close, or cancelled */
};

typedef struct write_req {
  uv_write_t req;
  lstream *s;
  size_t n;
  char data[];
} write_req;

/* LSTREAM_FILE's reading (see "regular files" below) */
typedef struct file_src {
  uv_fs_t req;
  int fd;
  unsigned char busy; /* a read is in flight */
  char chunk[READ_CHUNK];
} file_src;

uv_stream_t *lstream_handle(lstream *s) { return &s->u.stream; }

static void stream_free(host_handle *hd) {
  lstream *s = host_container_of(hd, lstream, hd);
  free(s->file);
  if (s->tls) tls_free(s->tls);
  free(s->buf);
  free(s);
}

static int stream_close_now(host_handle *hd, lua_State *L);
static void file_close(lstream *s);
static int file_read_start(lstream *s);
static void file_write(lstream *s, const char *p, size_t n);

/* Wrappers of two types share one record: the type's name is only used by
 * the check, and both close and free alike. */
static const host_handle_type READER_TYPE = {READER_MT, "stream",
                                             stream_close_now, stream_free};
static const host_handle_type WRITER_TYPE = {WRITER_MT, "stream",
                                             stream_close_now, stream_free};

lstream *lstream_new(lasync_host *h, int kind, int *err) {
  lstream *s = calloc(1, sizeof *s);
  if (!s) {
    *err = UV_ENOMEM;
    return NULL;
  }
  s->h = h;
  s->kind = kind;
  s->users = 1;
  s->limit = DEFAULT_LIMIT;
  host_list_init(&s->drainers);
  host_list_init(&s->closers);
  s->u.handle.data = s;
  if (kind != LSTREAM_MEM && kind != LSTREAM_FILE) {
    *err = io_stream_handle_init(h->loop, &s->u, kind != LSTREAM_TCP, s);
    if (*err) {
      free(s);
      return NULL;
    }
  }
  *err = 0;
  host_handle_init(&s->hd, &READER_TYPE, h);
  host_handle_hold(&s->hd); /* the caller's */
  return s;
}

void lstream_ref(lstream *s) {
  s->users++;
  host_handle_hold(&s->hd);
}

static void on_closed(uv_handle_t *handle) {
  lstream *s = handle->data;
  io_wake_all(&s->closers);
  host_handle_after_close(&s->hd);
}

/* A reader of stdin or of a pipe the program was given (pipe.c) keeps
 * the program alive only while a task waits on it, as a timer does: a
 * script that read what it wanted from a terminal can end. */
static void hold_loop(lstream *s, int hold) {
  if (!s->idle_unref || s->kind == LSTREAM_FILE) return;
  if (hold) uv_ref(&s->u.handle);
  else uv_unref(&s->u.handle);
}

void lstream_set_idle_unref(lstream *s) {
  s->idle_unref = 1;
  hold_loop(s, 0);
}

static void wake_reader(lstream *s) {
  host_task *t = s->reader;
  if (t) {
    hold_loop(s, 0);
    s->reader = NULL;
    host_wake(t, NULL, 0);
  }
}

static void stop_reading(lstream *s) {
  if (s->reading) {
    if (s->kind != LSTREAM_FILE) uv_read_stop(&s->u.stream);
    s->reading = 0;
  }
}

/* Starts closing: reading stops and a parked reader sees the end of the
 * stream. */
static void begin_close(lstream *s) {
  s->closing = 1;
  stop_reading(s);
  wake_reader(s);
  if (s->tls) tls_closing(s->tls, s->lingering);
}

/* The close hook (handle.h): closes the handle now, dropping queued writes
 * (their callbacks get UV_ECANCELED).  Runs no Lua. */
static int stream_close_now(host_handle *hd, lua_State *L) {
  lstream *s = host_container_of(hd, lstream, hd);
  (void)L;
  s->lingering = 0;
  begin_close(s);
  s->close_pending = 0;
  if (s->kind == LSTREAM_MEM) { /* no handle: closed at once */
    io_wake_all(&s->closers);
    host_handle_after_close(hd);
  } else if (s->kind == LSTREAM_FILE) {
    file_close(s);
  } else {
    uv_close(&s->u.handle, on_closed);
  }
  return 1;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *b);

/* A TLS stream closed gracefully sends close_notify, then keeps reading
 * (and discarding) until the peer's close_notify or end, or a deadline:
 * closing the socket with the peer's records unread (TLS 1.3 session
 * tickets) would make the kernel reset the connection and drop what was
 * still queued for the peer. */
static int start_linger(lstream *s) {
  if (!tls_close_notify(s->tls, !s->eof && !s->rerr)) return 0;
  s->lingering = 1;
  begin_close(s);
  s->close_pending = 1;
  if (uv_read_start(&s->u.stream, on_alloc, on_read) == 0) s->reading = 1;
  else s->lingering = 0;
  return 1;
}

void lstream_linger_done(lstream *s) {
  if (!s->lingering) return;
  s->lingering = 0;
  stop_reading(s);
  if (s->wqueued == 0 && s->close_pending) lstream_close(s, 1);
}

void lstream_close(lstream *s, int now) {
  if (s->closing && (!now || !s->close_pending)) return;
  if (s->tls && !now && !s->closing && start_linger(s)) {
    if (!s->lingering && s->wqueued == 0) lstream_close(s, 1);
    return;
  }
  if (s->wqueued && !now) {
    begin_close(s);
    s->close_pending = 1; /* closed by the last write callback */
    return;
  }
  host_handle_close(&s->hd, NULL);
}

void lstream_unref(lstream *s) {
  if (--s->users == 0 && (!s->closing || s->close_pending))
    lstream_close(s, host_closing(s->h) || !s->started);
  host_handle_drop(&s->hd);
}

/* ---- reading ---------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b) {
  lstream *s = handle->data;
  (void)suggested;
  if (s->tls) { /* ciphertext: the engine's buffer */
    *b = tls_read_buf(s->tls);
    return;
  }
  if (s->cap - s->start - s->len < READ_CHUNK) {
    if (s->start) {
      memmove(s->buf, s->buf + s->start, s->len);
      s->start = 0;
    }
    if (s->cap - s->len < READ_CHUNK) {
      size_t cap = s->cap * 2 > s->len + READ_CHUNK ? s->cap * 2
                                                    : s->len + READ_CHUNK;
      char *nb = realloc(s->buf, cap);
      if (!nb) { /* libuv reports UV_ENOBUFS to on_read */
        *b = uv_buf_init(NULL, 0);
        return;
      }
      s->buf = nb;
      s->cap = cap;
    }
  }
  size_t room = s->cap - s->start - s->len;
  if (room > READ_CHUNK && s->want != SIZE_MAX) room = READ_CHUNK;
  *b = uv_buf_init(s->buf + s->start + s->len, (unsigned)room);
}

void lstream_deliver(lstream *s, size_t n, int end) {
  if (s->h->trace) host_trace_io(s->h, s->reader, HOST_IO_READ, n, end, NULL);
  s->len += n;
  if (end == UV_EOF)
    s->eof = 1;
  else if (end)
    s->rerr = end;
  if (end || (s->len > s->limit && s->len >= s->want)) stop_reading(s);
  if (end || s->len >= s->want) wake_reader(s);
  if (s->sink && (n || end)) s->sink(s->sink_ud);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *b) {
  lstream *s = stream->data;
  (void)b;
  if (n == 0) return;
  if (s->tls)
    tls_on_read(s->tls, n);
  else if (n > 0)
    lstream_deliver(s, (size_t)n, 0);
  else
    lstream_deliver(s, 0, (int)n);
}

static void maybe_resume(lstream *s) {
  if (!s->reading && s->started && !s->eof && !s->rerr && !s->closing &&
      (s->len <= s->limit || s->want > s->len)) {
    if (s->kind == LSTREAM_FILE) file_read_start(s);
    else if (uv_read_start(&s->u.stream, on_alloc, on_read) == 0)
      s->reading = 1;
  }
}

int lstream_start(lstream *s) {
  if (s->kind == LSTREAM_FILE) {
    s->started = 1;
    return file_read_start(s);
  }
  int rc = uv_read_start(&s->u.stream, on_alloc, on_read);
  if (rc == 0) s->started = s->reading = 1;
  return rc;
}

/* ---- Lua wrappers ----------------------------------------------------- */

/* A wrapper is a handle.h box; both wrappers of a stream are its users. */
static lstream *box_stream(void *box) {
  host_handle *hd = *(host_handle **)box;
  return hd ? host_container_of(hd, lstream, hd) : NULL;
}

/* A reader's user value 1 holds what set_exception() gave it. */
/* A writer's user value 2 holds its SSLContext once TLS is on. */
static void push_wrapper(lua_State *L, lstream *s, const char *mt) {
  host_handle **box = host_handle_newbox(L, mt, 2);
  *box = &s->hd;
  lstream_ref(s);
}

void lstream_push_reader(lua_State *L, lstream *s) {
  push_wrapper(L, s, READER_MT);
}

void lstream_push_writer(lua_State *L, lstream *s) {
  push_wrapper(L, s, WRITER_MT);
}

/* A finalized wrapper (used again from a later finalizer) has no stream:
 * the shared check raises InvalidStateError. */
static lstream *check_reader(lua_State *L) {
  host_handle *hd = host_handle_check_at(L, 1, &READER_TYPE,
                                         lua_upvalueindex(1), "StreamReader", 0);
  return host_container_of(hd, lstream, hd);
}

static lstream *check_writer(lua_State *L) {
  host_handle *hd = host_handle_check_at(L, 1, &WRITER_TYPE,
                                         lua_upvalueindex(1), "StreamWriter", 0);
  return host_container_of(hd, lstream, hd);
}

/* __gc of both wrappers: the stream closes when its last user goes. */
static int wrapper_gc(lua_State *L) {
  host_handle **box = lua_touserdata(L, 1);
  lstream *s = box_stream(box);
  if (s) {
    *box = NULL;
    lstream_unref(s);
  }
  return 0;
}

/* ---- reader methods --------------------------------------------------- */

enum { RD_N, RD_ALL, RD_EXACT, RD_UNTIL, RD_LINE };

static int take(lua_State *L, lstream *s, size_t n) {
  lua_pushlstring(L, s->buf + s->start, n);
  s->start += n;
  s->len -= n;
  if (s->len == 0) s->start = 0;
  s->scan = 0;
  s->want = 0;
  maybe_resume(s);
  return 1;
}

static int raise_read_error(lua_State *L, lstream *s) {
  if (s->tls && tls_push_error(L, s->tls)) return lua_error(L);
  return host_raise_oserror(L, s->rerr, "read", NULL);
}

static int incomplete(lua_State *L, lstream *s, lua_Integer expected) {
  size_t got = s->len;
  host_error_new(L, "IncompleteReadError",
                 "%I bytes read on a total of %s expected bytes",
                 (lua_Integer)got,
                 expected >= 0 ? lua_pushfstring(L, "%I", expected)
                               : "undefined");
  take(L, s, got);
  lua_setfield(L, -2, "partial");
  if (expected >= 0) {
    lua_pushinteger(L, expected);
    lua_setfield(L, -2, "expected");
  }
  return lua_error(L);
}

/* The chunk before the separator is over the limit.  readuntil() raises
 * LimitOverrunError and leaves the data buffered (it can be read with
 * read()); readline() drops the line (through its separator, or the whole
 * buffer when no separator is in it yet) and raises ValueError, as
 * asyncio's readline does. */
static int overrun(lua_State *L, lstream *s, size_t consumed,
                   const char *msg, int line, size_t k) {
  if (line) {
    const char *sep = lua_tostring(L, 2);
    size_t drop = s->len;
    if (consumed + k <= s->len &&
        memcmp(s->buf + s->start + consumed, sep, k) == 0)
      drop = consumed + k;
    take(L, s, drop);
    lua_pop(L, 1);
    return host_error_raise(L, "ValueError", "%s", msg);
  }
  host_error_new(L, "LimitOverrunError", "%s", msg);
  lua_pushinteger(L, (lua_Integer)consumed);
  lua_setfield(L, -2, "consumed");
  return lua_error(L);
}

static const char *find(const char *hay, size_t n, const char *sep,
                        size_t k) {
  if (k == 1) return memchr(hay, sep[0], n);
  for (size_t i = 0; i + k <= n; i++) {
    const char *p = memchr(hay + i, sep[0], n - i - k + 1);
    if (!p) return NULL;
    if (memcmp(p, sep, k) == 0) return p;
    i = (size_t)(p - hay);
  }
  return NULL;
}

static int read_k(lua_State *L, lua_KContext ctx);

/* The separator at 2 is a string, or (readuntil, as Python 3.13) a list
 * of strings: the match that ends first wins.  Returns the shortest
 * length (and the longest in *maxk). */
static size_t min_sep(lua_State *L, size_t *mink, size_t *maxk) {
  if (!lua_istable(L, 2)) {
    lua_tolstring(L, 2, mink);
    *maxk = *mink;
    return *mink;
  }
  *mink = SIZE_MAX;
  *maxk = 0;
  for (lua_Integer i = 1; lua_rawgeti(L, 2, i) == LUA_TSTRING; i++) {
    size_t k = lua_rawlen(L, -1);
    if (k < *mink) *mink = k;
    if (k > *maxk) *maxk = k;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return *mink;
}

/* Finds the separator(s) at 2 in the buffer from s->scan on. */
static int match_sep(lua_State *L, lstream *s, size_t *mstart, size_t *mend) {
  const char *base = s->buf + s->start;
  int found = 0;
  int n = lua_istable(L, 2) ? (int)lua_rawlen(L, 2) : 1;
  for (int i = 1; i <= n; i++) {
    size_t k;
    if (lua_istable(L, 2)) lua_rawgeti(L, 2, i);
    else lua_pushvalue(L, 2);
    const char *sep = lua_tolstring(L, -1, &k);
    const char *p = s->len >= s->scan + k
                        ? find(base + s->scan, s->len - s->scan, sep, k)
                        : NULL;
    lua_pop(L, 1);
    if (p && (!found || (size_t)(p - base) + k < *mend)) {
      found = 1;
      *mstart = (size_t)(p - base);
      *mend = *mstart + k;
    }
  }
  return found;
}

static int read_cancel(host_task *t, int woken) {
  lstream *s = t->wait_data;
  (void)woken;
  if (s->reader == t) {
    s->reader = NULL;
    hold_loop(s, 0);
  }
  s->want = 0;
  return 0;
}

/* One attempt at satisfying a read whose arguments are at 1 (reader) and
 * 2 (n or separator); parks the task when more data is needed. */
static int read_step(lua_State *L, int mode, const char *fname) {
  lstream *s = box_stream(lua_touserdata(L, 1));
  int ended = s->eof || s->closing;
  if (lua_getiuservalue(L, 1, 1) != LUA_TNIL) { /* set_exception(): raised */
    s->want = 0;                               /* before any buffered data */
    return lua_error(L);
  }
  lua_pop(L, 1);
  switch (mode) {
  case RD_N: {
    size_t n = (size_t)lua_tointeger(L, 2);
    if (s->len) return take(L, s, s->len < n ? s->len : n);
    if (s->rerr) return raise_read_error(L, s);
    if (ended) return lua_pushliteral(L, ""), 1;
    break;
  }
  case RD_ALL:
    if (s->rerr) return raise_read_error(L, s);
    if (ended) return take(L, s, s->len);
    s->want = SIZE_MAX; /* the caller asked for everything */
    break;
  case RD_EXACT: {
    lua_Integer n = lua_tointeger(L, 2);
    if (s->len >= (size_t)n) return take(L, s, (size_t)n);
    if (s->rerr) return raise_read_error(L, s);
    if (ended) return incomplete(L, s, n);
    s->want = (size_t)n;
    break;
  }
  default: { /* RD_UNTIL, RD_LINE */
    /* asyncio's rules: the limit bounds the chunk before the separator
     * (a line of exactly `limit` bytes plus "\n" is fine); scan is where
     * no separator can start before. */
    size_t mink, maxk, mstart = 0, mend = 0;
    if (s->len >= s->scan + min_sep(L, &mink, &maxk)) {
      if (match_sep(L, s, &mstart, &mend)) {
        if (mstart > s->limit)
          return overrun(L, s, mstart,
                         "Separator is found, but chunk is longer than limit",
                         mode == RD_LINE, mend - mstart);
        return take(L, s, mend);
      }
      s->scan = s->len + 1 > maxk ? s->len + 1 - maxk : 0;
      if (s->scan > s->limit)
        return overrun(L, s, s->scan,
                       "Separator is not found, and chunk exceed the limit",
                       mode == RD_LINE, mink);
    }
    if (s->rerr) return raise_read_error(L, s);
    if (ended) {
      if (mode == RD_LINE) return take(L, s, s->len);
      return incomplete(L, s, -1);
    }
    s->want = s->len + 1; /* one more byte, even past the limit */
    break;
  }
  }
  host_task *t = fname ? host_check_task(L, fname) : host_task_of(L);
  if (s->reader && s->reader != t)
    return host_error_raise(L, "InvalidStateError",
                            "%s() called while another task is already "
                            "waiting for data on this stream",
                            fname ? fname : "read");
  s->reader = t;
  hold_loop(s, 1);
  maybe_resume(s);
  return host_park(L, t, read_cancel, s, read_k, mode);
}

static int read_k(lua_State *L, lua_KContext ctx) {
  return read_step(L, (int)ctx, NULL);
}

static lstream *reader_entry(lua_State *L, const char *fname) {
  lstream *s = check_reader(L);
  /* closed by us (writer:close()): what was received is still readable,
   * then the end of the stream, as asyncio's feed_eof at connection_lost */
  if (s->reader)
    host_error_raise(L, "InvalidStateError",
                     "%s() called while another task is already waiting "
                     "for data on this stream", fname);
  s->scan = 0;
  s->want = 0;
  return s;
}

static int reader_read(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 2, -1);
  reader_entry(L, "read");
  lua_settop(L, 2);
  if (n < 0) return read_step(L, RD_ALL, "read");
  if (n == 0) return lua_pushliteral(L, ""), 1;
  return read_step(L, RD_N, "read");
}

static int reader_readexactly(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "readexactly size can not be less than zero");
  reader_entry(L, "readexactly");
  lua_settop(L, 2);
  if (n == 0) return lua_pushliteral(L, ""), 1;
  return read_step(L, RD_EXACT, "readexactly");
}

static int reader_readuntil(lua_State *L) {
  size_t k;
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "\n");
  }
  if (lua_istable(L, 2)) { /* several separators (Python 3.13) */
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    luaL_argcheck(L, n > 0, 2, "Separator should contain at least one element");
    /* a private copy: the caller's table may change while we wait */
    lua_settop(L, 2);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
        luaL_argerror(L, 2, lua_pushfstring(L, "separator %I is not a string",
                                            i));
      luaL_argcheck(L, lua_rawlen(L, -1) > 0, 2,
                    "Separator should be at least one-byte string");
      lua_rawseti(L, 3, i);
    }
    lua_replace(L, 2);
  } else {
    luaL_checklstring(L, 2, &k);
    luaL_argcheck(L, k > 0, 2, "Separator should be at least one-byte string");
  }
  reader_entry(L, "readuntil");
  lua_settop(L, 2);
  return read_step(L, RD_UNTIL, "readuntil");
}

static int reader_readline(lua_State *L) {
  reader_entry(L, "readline");
  lua_settop(L, 1);
  lua_pushliteral(L, "\n");
  return read_step(L, RD_LINE, "readline");
}

static int reader_at_eof(lua_State *L) {
  lstream *s = check_reader(L);
  lua_pushboolean(L, (s->eof || s->closing) && s->len == 0);
  return 1;
}

static int reader_buffered(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_reader(L)->len);
  return 1;
}

void lstream_set_limit(lstream *s, size_t limit) {
  s->limit = limit;
  maybe_resume(s);
}

size_t io_opt_limit(lua_State *L, int idx) {
  size_t limit = 0;
  if (lua_getfield(L, idx, "limit") != LUA_TNIL) {
    int isint;
    lua_Integer n = lua_tointegerx(L, -1, &isint);
    if (!isint || n <= 0)
      luaL_argerror(L, idx, "option 'limit': positive integer expected "
                            "(the limit cannot be <= 0)");
    limit = (size_t)n;
  }
  lua_pop(L, 1);
  return limit;
}

/* ---- readers fed from Lua (asyncio.StreamReader()) --------------------- */

static lstream *check_fed(lua_State *L, const char *fname) {
  lstream *s = check_reader(L);
  if (s->kind != LSTREAM_MEM)
    luaL_error(L, "%s() is only for a StreamReader made by "
                  "asyncio.StreamReader() (this one reads a connection)",
               fname);
  return s;
}

static int reader_feed_data(lua_State *L) {
  lstream *s = check_fed(L, "feed_data");
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (s->eof || s->closing)
    return host_error_raise(L, "InvalidStateError", "feed_data after feed_eof");
  if (n == 0) return 0;
  size_t room;
  char *to = lstream_room(s, n, &room);
  if (!to) return luaL_error(L, "asyncio: out of memory");
  memcpy(to, p, n);
  s->len += n;
  wake_reader(s); /* it re-checks what it waits for */
  return 0;
}

static int reader_feed_eof(lua_State *L) {
  lstream *s = check_fed(L, "feed_eof");
  s->eof = 1;
  wake_reader(s);
  return 0;
}

/* set_exception(err): every later read raises err (as asyncio, before
 * the bytes still buffered); a waiting reader is woken to raise it. */
static int reader_set_exception(lua_State *L) {
  lstream *s = check_reader(L);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, 1);
  wake_reader(s);
  return 0;
}

static int reader_exception(lua_State *L) {
  lstream *s = check_reader(L);
  if (lua_getiuservalue(L, 1, 1) != LUA_TNIL) return 1;
  if (s->rerr) {
    host_push_oserror(L, s->rerr, "read", NULL);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* asyncio.StreamReader([{limit = n}]) */
static int l_stream_reader(lua_State *L) {
  static const char *const known[] = {"limit", NULL};
  lasync_host *h = HOST(L);
  host_check_options(L, 1, known);
  size_t limit = lua_istable(L, 1) ? io_opt_limit(L, 1) : 0;
  int err;
  lstream *s = lstream_new(h, LSTREAM_MEM, &err);
  if (!s) return luaL_error(L, "asyncio: out of memory");
  if (limit) s->limit = limit;
  lstream_push_reader(L, s);
  lstream_unref(s); /* the reader owns it */
  return 1;
}

/* tostring(reader): asyncio's repr, "<StreamReader 4 bytes eof limit=3>" */
static int reader_tostring(lua_State *L) {
  lstream *s = box_stream(luaL_checkudata(L, 1, READER_MT));
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "<StreamReader");
  if (!s) {
    luaL_addstring(&b, " finalized>");
    luaL_pushresult(&b);
    return 1;
  }
  if (s->len) {
    lua_pushfstring(L, " %I bytes", (lua_Integer)s->len);
    luaL_addvalue(&b);
  }
  if (s->eof || s->closing) luaL_addstring(&b, " eof");
  if (s->limit != DEFAULT_LIMIT) {
    lua_pushfstring(L, " limit=%I", (lua_Integer)s->limit);
    luaL_addvalue(&b);
  }
  if (s->reader) luaL_addstring(&b, " waiter");
  if (lua_getiuservalue(L, 1, 1) != LUA_TNIL) {
    lua_pop(L, 1);
    luaL_addstring(&b, " exception=");
    lua_getiuservalue(L, 1, 1);
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    luaL_addvalue(&b);
  } else {
    lua_pop(L, 1);
  }
  luaL_addchar(&b, '>');
  luaL_pushresult(&b);
  return 1;
}

static int reader_set_limit(lua_State *L) {
  lstream *s = check_reader(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n > 0, 2, "limit must be positive");
  s->limit = (size_t)n;
  maybe_resume(s);
  return 0;
}

/* ---- writer methods --------------------------------------------------- */

static void on_written(uv_write_t *req, int status) {
  write_req *w = req->data;
  lstream *s = w->s;
  if (s->h->trace)
    host_trace_io(s->h, NULL, HOST_IO_WRITTEN, w->n, status, NULL);
  s->wqueued -= w->n;
  free(w);
  if (status == UV_ECANCELED) s->wlost = 1;
  else if (status < 0 && !s->werr) s->werr = status;
  if (s->wqueued <= LOW_WATER || s->werr) io_wake_all(&s->drainers);
  if (s->wqueued == 0 && s->close_pending && !s->lingering)
    lstream_close(s, 1);
}

/* As asyncio's transports, write() never fails for the connection's
 * sake: after close() or a write error the data is dropped and drain()
 * reports it.  Only writing after write_eof() is a programming error. */
static void check_writable(lua_State *L, lstream *s, const char *fname) {
  if (s->eof_sent && !s->closing)
    host_error_raise(L, "RuntimeError", "Cannot call %s() after write_eof()",
                     fname);
}

/* Can bytes still go out?  Otherwise they are dropped (and remembered). */
static int write_open(lstream *s) {
  if (s->closing || s->werr || s->eof_sent) {
    s->wlost = 1;
    return 0;
  }
  return 1;
}

#define WRITE_MAX ((size_t)1 << 30) /* libuv buffers have unsigned lengths */

/* Queues bytes on the socket as they are; 0 or UV_ENOMEM (other errors
 * are the stream's write error, raised by drain()). */
int lstream_raw_write(lstream *s, const char *p, size_t n) {
  for (; n > WRITE_MAX; p += WRITE_MAX, n -= WRITE_MAX)
    if (lstream_raw_write(s, p, WRITE_MAX)) return UV_ENOMEM;
  if (n == 0 || !write_open(s)) return 0;
  if (s->h->trace) host_trace_io(s->h, NULL, HOST_IO_WRITE, n, 0, NULL);
  if (s->kind == LSTREAM_FILE) {
    file_write(s, p, n);
    return 0;
  }
  if (s->wqueued == 0) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int r = uv_try_write(&s->u.stream, &b, 1);
    if (r == (int)n) return 0;
    if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
      s->werr = r; /* EPIPE, ECONNRESET...: raised by drain() */
      return 0;
    }
    if (r > 0) p += r, n -= (size_t)r;
  }
  write_req *w = malloc(sizeof *w + n);
  if (!w) return UV_ENOMEM;
  memcpy(w->data, p, n);
  w->s = s;
  w->n = n;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int r = uv_write(&w->req, &s->u.stream, &b, 1, on_written);
  if (r) {
    free(w);
    s->werr = r;
    return 0;
  }
  s->wqueued += n;
  return 0;
}

static void write_data(lua_State *L, lstream *s, const char *p, size_t n) {
  if (n == 0 || !write_open(s)) return;
  int r = s->tls ? tls_write(s->tls, p, n) : lstream_raw_write(s, p, n);
  if (r == UV_ENOMEM) luaL_error(L, "asyncio: out of memory");
  if (r) host_raise_oserror(L, r, "write", NULL);
}

static int writer_write(lua_State *L) {
  lstream *s = check_writer(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  check_writable(L, s, "write");
  write_data(L, s, p, n);
  return 0;
}

static int writer_writelines(lua_State *L) {
  lstream *s = check_writer(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  check_writable(L, s, "writelines");
  lua_Integer n = luaL_len(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    lua_geti(L, 2, i);
    const char *p = lua_tolstring(L, -1, &len);
    if (!p)
      return luaL_error(L, "bad argument #2 to 'writelines' (item %I is a "
                           "%s, string expected)", i, luaL_typename(L, -1));
    write_data(L, s, p, len);
    lua_pop(L, 1);
  }
  return 0;
}

/* What drain() raises, as asyncio: the connection's read error, then the
 * write error, then ConnectionResetError when the connection is closing
 * or data written was dropped.  Returns 0 when all is well. */
static int drain_error(lua_State *L, lstream *s) {
  if (s->rerr) return raise_read_error(L, s);
  if (s->werr) return host_raise_oserror(L, s->werr, "write", NULL);
  if (s->closing || s->wlost)
    return host_raise_oserror(L, UV_ECONNRESET, "write", NULL);
  return 0;
}

static int drain_k(lua_State *L, lua_KContext ctx) {
  lstream *s = box_stream(lua_touserdata(L, 1));
  (void)ctx;
  return drain_error(L, s);
}

static int writer_drain(lua_State *L) {
  lstream *s = check_writer(L);
  drain_error(L, s);
  if (s->wqueued <= HIGH_WATER || s->hd.closed) return 0;
  host_task *t = host_check_task(L, "drain");
  lua_settop(L, 1);
  return io_wait(L, t, &s->drainers, drain_k);
}

static int writer_close(lua_State *L) {
  lstream *s = check_writer(L);
  lstream_close(s, 0);
  return 0;
}

static int writer_wait_closed(lua_State *L) {
  lstream *s = check_writer(L);
  if (s->hd.closed) return 0;
  host_task *t = host_check_task(L, "wait_closed");
  lua_settop(L, 1);
  return io_wait(L, t, &s->closers, NULL);
}

/* __close: close, and wait for it when inside a task (as `async with`). */
static int writer_tbc(lua_State *L) {
  lstream *s = check_writer(L);
  lstream_close(s, 0);
  host_task *t = host_task_of(L);
  if (s->hd.closed || !t || !lua_isyieldable(L)) return 0;
  lua_settop(L, 1);
  return io_wait(L, t, &s->closers, NULL);
}

int lstream_handoff_fd(lua_State *L, int idx, const char *what) {
  void *box = luaL_testudata(L, idx, READER_MT);
  if (!box) box = luaL_testudata(L, idx, WRITER_MT);
  if (!box) return -1;
  lstream *s = box_stream(box);
  uv_os_fd_t fd = -1;
  if (!s || s->closing)
    luaL_error(L, "bad %s (the stream is closed)", what);
  if (s->kind == LSTREAM_MEM)
    luaL_error(L, "bad %s (a StreamReader fed from Lua has no descriptor)",
               what);
  if (s->len || s->reader || s->wqueued || (s->file && s->file->busy))
    luaL_error(L, "bad %s (the stream has %s: the process would not see "
                  "them)", what, s->reader ? "a task reading it"
                                           : "bytes buffered");
  if (s->kind == LSTREAM_FILE) fd = s->file->fd;
  else uv_fileno(&s->u.handle, &fd);
  stop_reading(s);
  return fd;
}

void lstream_close_wrapper(lua_State *L, int idx) {
  void *box = luaL_testudata(L, idx, READER_MT);
  if (!box) box = luaL_testudata(L, idx, WRITER_MT);
  lstream *s = box ? box_stream(box) : NULL;
  if (s) lstream_close(s, 0);
}

/* __close of a reader: the stream is no longer wanted (a subprocess's
 * output, or a connection read to its end); queued writes still go out. */
static int reader_tbc(lua_State *L) {
  lstream_close_wrapper(L, 1);
  return 0;
}

static int writer_is_closing(lua_State *L) {
  lua_pushboolean(L, check_writer(L)->closing);
  return 1;
}

/* Not over TLS (as asyncio's SSL transport): a TLS connection has no
 * half-close; close() sends close_notify. */
static int writer_can_write_eof(lua_State *L) {
  lua_pushboolean(L, check_writer(L)->tls == NULL);
  return 1;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

static int writer_write_eof(lua_State *L) {
  lstream *s = check_writer(L);
  if (s->eof_sent || s->closing) return 0; /* as asyncio: nothing to do */
  if (s->kind == LSTREAM_FILE) { /* a file has no other end to tell */
    s->eof_sent = 1;
    return 0;
  }
  if (s->tls)
    return host_error_raise(L, "RuntimeError", "write_eof(): a TLS "
                            "connection cannot be half-closed "
                            "(can_write_eof() is false); use close()");
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req) return luaL_error(L, "asyncio: out of memory");
  int r = uv_shutdown(req, &s->u.stream, on_shutdown);
  if (r) {
    free(req);
    return host_raise_oserror(L, r, "shutdown", NULL);
  }
  s->eof_sent = 1;
  return 0;
}

static int writer_buffer_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_writer(L)->wqueued);
  return 1;
}

static int writer_get_extra_info(lua_State *L) {
  lstream *s = check_writer(L);
  const char *what = host_check_cstring(L, 2, NULL);
  struct sockaddr_storage ss;
  int len = sizeof ss, r;
  if (s->kind == LSTREAM_PIPE && !s->closing &&
      (strcmp(what, "peername") == 0 || strcmp(what, "sockname") == 0) &&
      io_unix_push_name(L, &s->u.handle, what[0] == 'p'))
    return 1; /* a Unix socket (unix.c) */
  if (s->tls && strcmp(what, "sslcontext") == 0) {
    lua_getiuservalue(L, 1, 2);
    return 1;
  }
  if (s->tls && tls_extra_info(L, s->tls, what)) return 1;
  if (s->kind != LSTREAM_TCP || s->closing) {
    lua_settop(L, 3);
    return 1; /* the default */
  }
  if (strcmp(what, "peername") == 0)
    r = uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len);
  else if (strcmp(what, "sockname") == 0)
    r = uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len);
  else {
    lua_settop(L, 3);
    return 1;
  }
  if (r) return host_raise_oserror(L, r, "get_extra_info", what);
  io_push_sockaddr(L, (struct sockaddr *)&ss);
  return 1;
}

/* ---- regular files (LSTREAM_FILE) -------------------------------------
 *
 * epoll cannot watch a regular file (nor /dev/null), so a stream over one
 * reads with uv_fs_read on libuv's thread pool, one chunk at a time into a
 * chunk of its own (the stream's buffer may move while the request is in
 * flight), and appends it as on_read does.  Writes are synchronous, as
 * Node's to a file: a file never waits for a peer.  The stream owns the
 * descriptor and closes it; a close waits for the read in flight. */

lstream *lstream_new_file(lasync_host *h, int fd, int *err) {
  file_src *f = malloc(sizeof *f);
  lstream *s = f ? lstream_new(h, LSTREAM_FILE, err) : NULL;
  if (!s) {
    free(f);
    *err = UV_ENOMEM;
    return NULL;
  }
  f->fd = fd;
  f->busy = 0;
  f->req.data = s;
  s->file = f;
  return s;
}

static void file_closed(lstream *s) {
  close(s->file->fd);
  io_wake_all(&s->closers);
  host_handle_after_close(&s->hd);
}

static void file_close(lstream *s) {
  if (!s->file->busy) file_closed(s); /* else when the read completes */
}

static void on_file_read(uv_fs_t *req) {
  lstream *s = req->data;
  ssize_t n = req->result;
  uv_buf_t b;
  uv_fs_req_cleanup(req);
  s->file->busy = 0;
  if (s->closing) {
    file_closed(s);
    return;
  }
  if (n > 0) {
    on_alloc(&s->u.handle, (size_t)n, &b);
    if (!b.base) n = UV_ENOBUFS;
    else memcpy(b.base, s->file->chunk, (size_t)n);
  }
  s->reading = 0;
  on_read(&s->u.stream, n == 0 ? UV_EOF : n, NULL);
  maybe_resume(s);
}

static int file_read_start(lstream *s) {
  if (s->file->busy) return 0;
  uv_buf_t b = uv_buf_init(s->file->chunk, READ_CHUNK);
  int rc = uv_fs_read(s->h->loop, &s->file->req, s->file->fd, &b, 1, -1,
                      on_file_read);
  if (rc) {
    s->rerr = rc;
    wake_reader(s);
    return rc;
  }
  s->file->busy = s->reading = 1;
  return 0;
}

static void file_write(lstream *s, const char *p, size_t n) {
  while (n > 0) {
    ssize_t r = write(s->file->fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      s->werr = -errno;
      return;
    }
    p += r;
    n -= (size_t)r;
  }
}

/* ---- for the TLS engine (tls.h) --------------------------------------- */

tls_conn *lstream_tls(lstream *s) { return s->tls; }
void lstream_set_tls(lstream *s, tls_conn *c) { s->tls = c; }
int lstream_is_closing(lstream *s) { return s->closing; }
void lstream_resume(lstream *s) { maybe_resume(s); }
lasync_host *lstream_host(lstream *s) { return s->h; }

char *lstream_room(lstream *s, size_t want, size_t *size) {
  if (s->cap - s->start - s->len < want) {
    if (s->start) {
      memmove(s->buf, s->buf + s->start, s->len);
      s->start = 0;
    }
    if (s->cap - s->len < want) {
      size_t cap = s->cap * 2 > s->len + want ? s->cap * 2 : s->len + want;
      char *nb = realloc(s->buf, cap);
      if (!nb) return *size = 0, NULL;
      s->buf = nb;
      s->cap = cap;
    }
  }
  *size = s->cap - s->start - s->len;
  return s->buf + s->start + s->len;
}

void lstream_set_sink(lstream *s, lstream_sink_fn fn, void *ud) {
  s->sink = fn;
  s->sink_ud = ud;
  s->want = 0;
}

int lstream_read_end(lstream *s) { return s->rerr ? s->rerr : s->eof ? UV_EOF : 0; }

int lstream_write(lstream *s, const char *p, size_t n) {
  if (n == 0 || !write_open(s)) return s->werr;
  int r = s->tls ? tls_write(s->tls, p, n) : lstream_raw_write(s, p, n);
  return r ? r : s->werr;
}

const char *lstream_take_buffered(lstream *s, size_t *n) {
  const char *p = s->buf + s->start;
  *n = s->len;
  s->start = s->len = s->scan = 0;
  return p;
}

lstream *lstream_check_writer(lua_State *L, int idx, const char *fname) {
  host_handle *hd = host_handle_check(L, idx, &WRITER_TYPE, fname, 1);
  return host_container_of(hd, lstream, hd);
}

/* ---- Lua-side helpers (lines, tostring) ------------------------------- */

static const char LUA_PARTS[] =
    "local R = ...\n"
    "function R.lines(self)\n"
    "  return function()\n"
    "    local line = self:readline()\n"
    "    if line ~= '' then return line end\n"
    "  end\n"
    "end\n";

static const luaL_Reg reader_methods[] = {
    {"read", reader_read},
    {"readline", reader_readline},
    {"readexactly", reader_readexactly},
    {"readuntil", reader_readuntil},
    {"at_eof", reader_at_eof},
    {"buffered", reader_buffered},
    {"set_limit", reader_set_limit},
    {"feed_data", reader_feed_data},
    {"feed_eof", reader_feed_eof},
    {"set_exception", reader_set_exception},
    {"exception", reader_exception},
    {NULL, NULL}};

static const luaL_Reg writer_methods[] = {
    {"write", writer_write},
    {"writelines", writer_writelines},
    {"drain", writer_drain},
    {"close", writer_close},
    {"wait_closed", writer_wait_closed},
    {"is_closing", writer_is_closing},
    {"can_write_eof", writer_can_write_eof},
    {"write_eof", writer_write_eof},
    {"get_extra_info", writer_get_extra_info},
    {"buffer_size", writer_buffer_size},
    {NULL, NULL}};

/* Every method and metamethod gets the metatable as upvalue 1: the
 * per-call wrapper check compares with it (host_handle_check_at).  So the
 * metatable is made empty first, then filled with itself as the upvalue;
 * it is left on the stack. */
static void new_type(lua_State *L, const char *mt, const luaL_Reg *methods,
                     lua_CFunction tbc, lua_CFunction tostring) {
  luaL_Reg meta[4] = {{"__gc", wrapper_gc}}; /* the rest {NULL, NULL} */
  int n = 1;
  if (tbc) meta[n++] = (luaL_Reg){"__close", tbc};
  if (tostring) meta[n++] = (luaL_Reg){"__tostring", tostring};
  host_new_type(L, mt, NULL, NULL, 0);
  luaL_getmetatable(L, mt);
  lua_pushvalue(L, -1);
  host_new_type(L, mt, methods, meta, 1);
}

void io_open_stream(lua_State *L, lasync_host *h) {
  io_guard_sigpipe();
  new_type(L, READER_MT, reader_methods, reader_tbc, reader_tostring);
  lua_getfield(L, -1, "__index");
  if (luaL_loadbuffer(L, LUA_PARTS, sizeof LUA_PARTS - 1, "=stream"))
    lua_error(L);
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  new_type(L, WRITER_MT, writer_methods, writer_tbc, NULL);
  lua_getfield(L, -1, "__index");
  tls_open_writer(L, lua_gettop(L));
  lua_pop(L, 2);
  host_handle_register(L, &READER_TYPE);
  host_handle_register(L, &WRITER_TYPE);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_stream_reader, 1);
  lua_setfield(L, -2, "StreamReader");
}
