/* asyncio.http, the C half: libcurl's multi-socket API driven by the host's
 * libuv loop.  No HTTP is parsed here beyond splitting the status line.
 *
 * One session = one curl multi handle (its connection cache is the
 * keep-alive pool), one uv_timer for curl's timeout, one for read_timeout
 * (ours, see on_read_timer) and one uv_poll per socket curl asks about.
 * The session follows host/handle.h: its C struct is malloc'd and freed
 * only when its Lua object is closed and every one of its handles has run
 * its close callback.  Those handles are referenced (keep the loop alive)
 * only while a transfer is running, so an idle pool does not keep a
 * program from exiting.
 *
 * A request is an `xfer` record behind a box on the requesting task's
 * stack, with host/handle.h's lifetime like the session's: the curl easy
 * handle stands for the libuv handle, and the one idempotent close
 * (xfer_close_hook) serves the cancel hook, resp:close(), __gc, the
 * session's close and the end of a buffered response.  A request waits
 * FIFO for a slot (at most `limit` requests in flight), takes an easy
 * handle from the session's small pool, is added to the multi handle and
 * parks its task; curl's callbacks only fill C buffers and wake tasks.  The
 * continuation builds the Lua response in the task; a stream response
 * keeps the box (resp._xfer) until it is closed or collected.
 *
 * The Lua half (http.lua, compiled in) does options, responses, headers
 * and the Session class. */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "../host/buf.h"
#include "../host/handle.h"
#include "../host/waitq.h"
#include "http.h"

#define SESSION_MT "asyncio.http.core.Session"
#define XFER_MT "asyncio.http.core.Transfer"
#define RESPONSE_MT "asyncio.http.Response"
#define ERROR_CLASS "HTTPError"
#define STATUS_CLASS "HTTPStatusError"

#define POOL_MAX 64                /* idle easy handles kept per session */
#define STREAM_HIGH (256 * 1024)   /* a stream pauses curl above this */
#define SOCK_ERR_POLLS 16          /* on_poll: actions after a reset */
/* A body that is buffered whole (not streamed) is capped by default, so
 * an endless body or a gzip bomb (counted decoded) cannot exhaust memory;
 * option max_body changes it, max_body=false lifts it. */
#define DEFAULT_MAX_BODY ((curl_off_t)64 * 1024 * 1024)
/* The response's header block, 1xx and trailers included; curl already
 * refuses a single header line over CURL_MAX_HTTP_HEADER (100 KiB). */
#define MAX_HEAD (256 * 1024)
/* "No timeout" for curl's connect timeout, where 0 means curl's own 300 s:
 * 24 days, longer than any TCP stack keeps trying. */
#define NO_CONNECT_TIMEOUT ((long)INT_MAX)
/* The longest timeout option, in seconds (11.6 days): longer is taken for
 * a mistake (milliseconds?) rather than clamped; false means none. */
#define MAX_TIMEOUT 1000000

/* ---- types ------------------------------------------------------------ */

typedef struct session session;

typedef struct sock {
  uv_poll_t poll;
  host_link link; /* in session->socks while open */
  session *s;
  curl_socket_t fd;
  int events; /* UV_READABLE / UV_WRITABLE: what curl waits for */
  int errs;   /* poll errors in a row (see on_poll) */
} sock;

struct session {
  host_handle hd;         /* lifetime (handle.h): the box + all uv handles */
  lasync_host *h;
  CURLM *multi;
  uv_timer_t timer;
  uv_timer_t read_timer; /* read_timeout: the earliest stalled transfer */
  uint64_t read_due;     /* when read_timer fires (loop ms); 0: stopped */
  long connect_ms, read_ms; /* the session's defaults (0: none) */
  host_link socks;   /* open sock handles */
  host_link active;  /* xfers in the multi handle */
  host_link waiters; /* waitq: tasks waiting for a slot (wait_data: xfer) */
  CURL *pool[POOL_MAX];
  int npool;
  int limit;     /* requests in flight at most (INT_MAX: no limit) */
  int inflight;  /* slots taken */
  int nrunning;  /* transfers in the multi handle */
  int nhandles;  /* uv handles not yet closed: together, one hold */
};

enum { X_NEW, X_QUEUED, X_RUNNING, X_DONE };
enum { W_SLOT, W_DONE, W_READY, W_DATA };

typedef struct xfer {
  host_handle hd;        /* lifetime (handle.h): the box + the transfer */
  host_link link;        /* in session->active while running */
  session *s;            /* NULL once nothing of the session is held */
  CURL *easy;
  host_task *task;       /* the task parked on this transfer, or NULL */
  struct curl_slist *hdrs;
  host_buf body, head;
  char *url;             /* final URL, malloc'd */
  long status;
  curl_off_t max_body;   /* -1: no cap (a stream is never capped here) */
  curl_off_t received;
  long timeout_ms, connect_timeout_ms, read_timeout_ms, max_redirs;
  uint64_t last_io;      /* loop ms of the last byte received (read_timeout) */
  curl_off_t up_seen;    /* request body bytes sent at the last check */
  CURLcode result;
  unsigned char state, want;
  unsigned char has_slot, stream, follow, verify, ready, paused;
  unsigned char too_large, head_too_large, oom, has_location;
  unsigned char in_1xx;     /* the head being read is a 1xx's */
  unsigned char bad_answer; /* CURLE_UNSUPPORTED_PROTOCOL came from the
                               server's answer (HTTP/0.9, garbage), not
                               from the URL */
  size_t head_total;        /* bytes of this head and the 1xx before it */
  unsigned char idempotent; /* the method of the last send may be sent again
                               (GET HEAD PUT DELETE OPTIONS) */
  unsigned char tries;      /* sends since the last response began */
  unsigned char not_retried; /* stopped curl from sending it again */
  unsigned char special; /* options beyond the pooled handles' base set */
  unsigned char sent;    /* connected, the request on its way (read_timeout
                            applies from then on) */
  unsigned char read_expired; /* ended by read_timeout */
  unsigned char stalled; /* past its read deadline at the last check */
  char err[CURL_ERROR_SIZE];
  uint64_t trace_t0;     /* when it was sent, if LASYNC_TRACE is on */
} xfer;

/* ---- session handles -------------------------------------------------- */

/* The timer closes only with the session: the last handle closed is the
 * handles' hold going. */
static void session_maybe_free(session *s) {
  if (s->nhandles == 0) host_handle_after_close(&s->hd);
}

static void handle_closed(uv_handle_t *hd) {
  session *s = hd->data;
  s->nhandles--;
  session_maybe_free(s);
}

static void sock_closed(uv_handle_t *hd) {
  sock *k = host_container_of((uv_poll_t *)hd, sock, poll);
  session *s = k->s;
  free(k);
  s->nhandles--;
  session_maybe_free(s);
}

static void sock_close(sock *k) {
  host_list_remove(&k->link);
  uv_close((uv_handle_t *)&k->poll, sock_closed);
}

/* Handles keep the loop alive only while a transfer runs. */
static void set_ref(session *s, int on) {
  void (*fn)(uv_handle_t *) = on ? uv_ref : uv_unref;
  fn((uv_handle_t *)&s->timer);
  fn((uv_handle_t *)&s->read_timer);
  for (host_link *l = s->socks.next; l != &s->socks; l = l->next)
    fn((uv_handle_t *)&host_container_of(l, sock, link)->poll);
}

static void running_inc(session *s) {
  if (s->nrunning++ == 0) set_ref(s, 1);
}

static void running_dec(session *s) {
  if (--s->nrunning == 0) {
    set_ref(s, 0);
    uv_timer_stop(&s->read_timer); /* an idle session is never woken */
    s->read_due = 0;
  }
}

static size_t on_write(char *d, size_t size, size_t n, void *ud);
static size_t on_header(char *d, size_t size, size_t n, void *ud);
static int on_prereq(void *ud, char *ip_remote, char *ip_local, int port_remote,
                     int port_local);
static int is_idempotent(const char *m);

/* ---- waking ----------------------------------------------------------- */

/* Wakes the task parked on x if what it waits for has happened. */
static void xfer_notify(xfer *x) {
  host_task *t = x->task;
  int go = 0;
  if (!t) return;
  switch (x->want) {
  case W_SLOT: go = x->has_slot; break;
  case W_DONE: go = x->state >= X_DONE; break;
  case W_READY: go = x->ready || x->state >= X_DONE; break;
  case W_DATA: go = x->body.len > 0 || x->state >= X_DONE; break;
  }
  if (go) {
    x->task = NULL;
    host_wake(t, NULL, 0);
  }
}

/* A slot is free: hand it to the first waiter (it stays counted). */
static void slot_release(session *s) {
  host_task *t = waitq_pop(&s->waiters);
  if (!t) {
    s->inflight--;
    return;
  }
  xfer *x = t->wait_data;
  x->state = X_NEW;
  x->has_slot = 1;
  xfer_notify(x);
}

/* Options every transfer has; pooled handles keep them, so a plain GET
 * sets only its own pointers and URL.  Proxies from the environment are
 * not used unless asked for (aiohttp's trust_env=False): it also spares a
 * getenv() round per request. */
static void set_base(session *s, CURL *e) {
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_USERAGENT, "lasync/" LASYNC_VERSION);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, DEFAULT_MAX_BODY);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   s->connect_ms ? s->connect_ms : NO_CONNECT_TIMEOUT);
}

/* A handle goes back to the pool in its base state: a plain request only
 * changed pointers (cleared here so an idle handle points at nothing that
 * may be freed), any other is reset. */
static void pool_put(session *s, CURL *e, int special) {
  if (s->hd.closing || s->npool >= POOL_MAX) {
    curl_easy_cleanup(e);
    return;
  }
  if (special) {
    curl_easy_reset(e);
    set_base(s, e);
  } else {
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, NULL);
  }
  s->pool[s->npool++] = e;
}

static void capture_info(xfer *x) {
  char *u = NULL;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &u);
  free(x->url);
  x->url = u ? strdup(u) : NULL;
}

/* Releases everything the transfer holds of its session. */
static void xfer_detach(xfer *x) {
  session *s = x->s;
  if (!s) return;
  if (x->state == X_QUEUED) {
    if (x->task) waitq_remove(x->task);
  } else if (x->state == X_RUNNING) {
    curl_multi_remove_handle(s->multi, x->easy);
    host_list_remove(&x->link);
    running_dec(s);
  }
  if (x->has_slot) {
    x->has_slot = 0;
    slot_release(s);
  }
  if (x->easy) pool_put(s, x->easy, x->special);
  x->easy = NULL;
  x->s = NULL;
}

/* The close hook (handle.h): stops the transfer and frees what it holds
 * but the record.  With L, a task reading the stream from elsewhere is
 * woken with the error a read of a closed response raises; without L
 * (cancel hooks, __gc, the host's stop) no Lua runs, and no task can be
 * parked on a box nobody reaches.  Nothing is left to close in the loop,
 * so the handle's hold goes at once. */
static int xfer_close_hook(host_handle *hd, lua_State *L) {
  xfer *x = host_container_of(hd, xfer, hd);
  host_task *t = x->task;
  xfer_detach(x);
  if (x->easy) curl_easy_cleanup(x->easy);
  x->easy = NULL;
  x->task = NULL;
  curl_slist_free_all(x->hdrs);
  x->hdrs = NULL;
  host_buf_free(&x->body);
  host_buf_free(&x->head);
  free(x->url);
  x->url = NULL;
  if (t && L) {
    host_error_new(L, "InvalidStateError", "iter_chunks(): the response is "
                   "closed");
    host_wake_error(t, L);
  }
  host_handle_after_close(hd);
  return 1;
}

static void xfer_free(host_handle *hd) {
  free(host_container_of(hd, xfer, hd));
}

static const host_handle_type XFER_TYPE = {XFER_MT, "response",
                                           xfer_close_hook, xfer_free};

static void xfer_close(xfer *x, lua_State *L) { host_handle_close(&x->hd, L); }

static void xfer_complete(xfer *x, CURLcode rc) {
  session *s = x->s;
  x->result = rc;
  if (rc == CURLE_OK && !x->ready) capture_info(x);
  if (rc == CURLE_UNSUPPORTED_PROTOCOL) {
    /* a request went out and no status line came back: the server's
     * answer was not HTTP; a scheme curl cannot fetch sends nothing, and a
     * redirect to one has the 3xx's code */
    long sent = 0, code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    x->bad_answer = sent > 0 && code == 0;
  }
  curl_multi_remove_handle(s->multi, x->easy);
  host_list_remove(&x->link);
  running_dec(s);
  x->state = X_DONE;
  pool_put(s, x->easy, x->special);
  x->easy = NULL;
  if (x->has_slot) {
    x->has_slot = 0;
    slot_release(s);
  }
  x->s = NULL;
  xfer_notify(x);
}

static void check_done(session *s) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(s->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    xfer *x = NULL;
    CURLcode rc = m->data.result;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    if (x) xfer_complete(x, rc);
  }
}

/* ---- curl's callbacks (loop context: no Lua) -------------------------- */

static void on_poll(uv_poll_t *p, int status, int events) {
  sock *k = host_container_of(p, sock, poll);
  session *s = k->s;
  int flags = 0, running;
  if (status < 0) {
    /* libuv reports EPOLLERR (a reset) as an error and stops the poll.
     * The socket may still hold the end of the answer (a server that
     * resets right after its last byte, or closes with our request
     * unread): curl reads it, and sees the error itself ("Connection
     * reset by peer") if something is missing.  Told CURL_CSELECT_ERR it
     * dropped the answer ("select/poll returned error"). */
    flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    k->errs++;
  } else {
    k->errs = 0;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  curl_multi_socket_action(s->multi, k->fd, flags, &running);
  /* k is freed only in its close callback: still readable here.  More
   * to read: poll on, a bounded number of times (each action reads up to
   * a socket buffer), lest a socket curl no longer reads spin. */
  if (status < 0 && k->errs < SOCK_ERR_POLLS && k->events &&
      !uv_is_closing((uv_handle_t *)&k->poll))
    uv_poll_start(&k->poll, k->events, on_poll);
  check_done(s);
}

static void on_timeout(uv_timer_t *tm) {
  session *s = tm->data;
  int running;
  curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(s);
}

/* ---- read_timeout ------------------------------------------------------ */

/* read_timeout is ours, not curl's low-speed limit (an average over whole
 * seconds, which a burst keeps above the limit for seconds after the
 * server went quiet): a transfer fails when nothing arrives, and no byte
 * of its request body leaves, for that long once the request is on its
 * way.  Bytes only stamp x->last_io; one timer per session fires at the
 * earliest deadline and looks at every running transfer, so a busy
 * transfer restarts no timer and an idle session has none running. */
static void on_read_timer(uv_timer_t *tm);

static void read_timer_want(session *s, uint64_t due) {
  if (s->read_due && s->read_due <= due) return;
  uint64_t now = uv_now(s->h->loop);
  s->read_due = due;
  uv_timer_start(&s->read_timer, on_read_timer, due > now ? due - now : 0, 0);
}

static void xfer_complete(xfer *x, CURLcode rc);

/* A transfer past its deadline is looked at once more a millisecond later,
 * after the loop has polled its sockets: bytes that came while the loop
 * was busy (a long Lua step, a stopped process) are not a silent server. */
static void on_read_timer(uv_timer_t *tm) {
  session *s = host_container_of(tm, session, read_timer);
  uint64_t now = uv_now(s->h->loop), next = 0;
  host_link *l = s->active.next;
  s->read_due = 0;
  while (l != &s->active) {
    xfer *x = host_container_of(l, xfer, link);
    l = l->next; /* x may leave the list */
    if (!x->read_timeout_ms || !x->sent || x->paused) continue;
    curl_off_t up = 0;
    curl_easy_getinfo(x->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    if (up != x->up_seen) {
      x->up_seen = up;
      x->last_io = now;
      x->stalled = 0;
    }
    uint64_t due = x->last_io + (uint64_t)x->read_timeout_ms;
    if (due <= now) {
      if (x->stalled) {
        x->read_expired = 1;
        xfer_complete(x, CURLE_OPERATION_TIMEDOUT);
        continue;
      }
      x->stalled = 1;
      due = now + 1;
    }
    if (!next || due < next) next = due;
  }
  if (next) read_timer_want(s, next);
}

/* A byte came, or the reader took the paused stream's data. */
static void read_io(xfer *x) {
  x->last_io = uv_now(x->s->h->loop);
  x->stalled = 0;
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  session *s = userp;
  sock *k = socketp;
  (void)e;
  if (what == CURL_POLL_REMOVE) {
    if (k) {
      curl_multi_assign(s->multi, fd, NULL);
      sock_close(k);
    }
    return 0;
  }
  if (!k) {
    k = malloc(sizeof *k);
    if (!k) return -1;
    if (uv_poll_init_socket(s->h->loop, &k->poll, fd)) {
      free(k);
      return -1;
    }
    k->s = s;
    k->fd = fd;
    k->events = k->errs = 0;
    k->poll.data = s;
    s->nhandles++;
    host_list_push(&s->socks, &k->link);
    if (!s->nrunning) uv_unref((uv_handle_t *)&k->poll);
    curl_multi_assign(s->multi, fd, k);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  k->events = ev;
  return uv_poll_start(&k->poll, ev, on_poll) ? -1 : 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  session *s = userp;
  (void)multi;
  if (timeout_ms < 0)
    uv_timer_stop(&s->timer);
  else
    uv_timer_start(&s->timer, on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

static void mark_ready(xfer *x) {
  x->ready = 1;
  capture_info(x);
  xfer_notify(x);
}

static int is_redirect(long code) {
  return code == 301 || code == 302 || code == 303 || code == 307 ||
         code == 308;
}

static size_t on_header(char *d, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  read_io(x);
  if (x->ready) return len; /* trailers */
  if (len >= 5 && memcmp(d, "HTTP/", 5) == 0) {
    x->head.len = 0; /* a new response: after a redirect or a 1xx */
    x->has_location = 0;
    x->tries = 0;    /* the server answered: a later send is no retry */
    /* 1xx heads count towards the final one's MAX_HEAD (curl sums them
     * too, to 300 KiB, and calls going past that a receive error): an
     * endless run of 100 Continue is headers_too_large */
    if (!x->in_1xx) x->head_total = 0;
    const char *sp = memchr(d, ' ', len);
    x->in_1xx = sp && (size_t)(sp - d) + 2 < len && sp[1] == '1' &&
                isdigit((unsigned char)sp[2]);
  } else if (len >= 9 && strncasecmp(d, "location:", 9) == 0) {
    x->has_location = 1;
  }
  if (len > MAX_HEAD - x->head_total) {
    x->head_too_large = 1;
    return 0;
  }
  if (host_buf_add(&x->head, d, len)) {
    x->oom = 1;
    return 0;
  }
  x->head_total += len;
  if (x->stream && (len <= 2 && (d[0] == '\r' || d[0] == '\n'))) {
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && !(x->follow && x->has_location && is_redirect(code)))
      mark_ready(x);
  }
  return len;
}

static size_t on_write(char *d, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  read_io(x);
  if (x->stream) {
    if (!x->ready) mark_ready(x);
    if (x->body.len >= STREAM_HIGH) { /* the consumer is slower */
      x->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
  }
  /* len is decoded bytes: a gzip bomb is stopped at the cap too */
  if (!x->stream && x->max_body >= 0 &&
      x->received + (curl_off_t)len > x->max_body) {
    x->too_large = 1;
    return 0;
  }
  if (x->body.cap == 0 && !x->stream) { /* one allocation for the body */
    curl_off_t cl = -1;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl > (curl_off_t)len && cl < 64 * 1024 * 1024 &&
        (x->max_body < 0 || cl <= x->max_body)) {
      host_buf_resize(&x->body, (size_t)cl); /* else it grows as it comes */
    }
  }
  if (host_buf_add(&x->body, d, len)) {
    x->oom = 1;
    return 0;
  }
  x->received += len;
  if (x->stream) xfer_notify(x);
  return len;
}

/* curl sends a request again, on another connection, when a reused
 * keep-alive connection gave nothing back (the server closed it as the
 * request went out), for any method and up to 5 times.  As aiohttp does,
 * only idempotent methods are sent again, and only once: a POST the
 * server may have acted on is not repeated.  A send with
 * no response since the previous one is such a retry (a redirect or a
 * 1xx comes with a status line, which resets the count).  The method is
 * the one being sent: a POST redirected by a 303 goes on as a GET. */
static int on_prereq(void *ud, char *ip_remote, char *ip_local, int port_remote,
                     int port_local) {
  xfer *x = ud;
  (void)ip_remote, (void)ip_local, (void)port_remote, (void)port_local;
  if (!x) return CURL_PREREQFUNC_OK;
  char *method = NULL;
  if (curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_METHOD, &method) == CURLE_OK &&
      method)
    x->idempotent = (unsigned char)is_idempotent(method);
  if (x->tries > 0 && (!x->idempotent || x->tries > 1)) {
    x->not_retried = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  x->tries++;
  x->sent = 1; /* connected: from now on, read_timeout */
  read_io(x);
  if (x->read_timeout_ms)
    read_timer_want(x->s, x->last_io + (uint64_t)x->read_timeout_ms);
  return CURL_PREREQFUNC_OK;
}

/* ---- errors ----------------------------------------------------------- */

/* libcurl 7.x reports a header line over CURL_MAX_HTTP_HEADER as out of
 * memory ("Avoided giant realloc for header"); before any body byte, that
 * is what a CURLE_OUT_OF_MEMORY means in practice. */
static int giant_header(xfer *x) {
  return x->result == CURLE_OUT_OF_MEMORY && !x->oom && x->received == 0;
}

/* curl reports a malformed chunked body (a chunk size that is not hex,
 * too long, a missing CRLF) as CURLE_RECV_ERROR, the code of a reset
 * socket too; only its text tells them apart.  Every such message of
 * curl's chunk decoder names it: 7.x "Illegal or missing hexadecimal
 * sequence in chunked-encoding", 8.x "chunk hex-length char not a hex
 * digit", "invalid chunk size"; a socket error reads "Recv failure: ...". */
static int bad_chunk(xfer *x) {
  return x->result == CURLE_RECV_ERROR && strstr(x->err, "chunk") != NULL;
}

/* "reset": the connection was closed or reset before the whole answer
 * came (a kind of its own so that a retry policy can name it);
 * "protocol": the server's answer broke HTTP, which sending it again
 * would not mend. */
static const char *error_kind(xfer *x) {
  if (x->too_large) return "body_too_large";
  if (x->head_too_large || giant_header(x)) return "headers_too_large";
  if (x->not_retried) return "reset";
  if (x->bad_answer || bad_chunk(x)) return "protocol";
  switch (x->result) {
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_PARTIAL_FILE:
    return "reset";
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:
    return "invalid_url";
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "dns";
  case CURLE_COULDNT_CONNECT:
    return "connect";
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_TOO_MANY_REDIRECTS:
    return "too_many_redirects";
  case CURLE_FILESIZE_EXCEEDED:
    return "body_too_large";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_USE_SSL_FAILED:
    return "tls";
  default:
    return "protocol";
  }
}

void host_http_push_error(lua_State *L, const char *kind, const char *url,
                          int code, const char *msg) {
  host_error_new(L, ERROR_CLASS, "%s (%s)", msg, url);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, url);
  lua_setfield(L, -2, "url");
  if (code) {
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
  }
}

/* The message of a failed transfer's error. */
static void xfer_error_text(xfer *x, char *msg, size_t size) {
  if (x->too_large || x->result == CURLE_FILESIZE_EXCEEDED)
    snprintf(msg, size, "response body larger than max_body (%lld bytes)",
             (long long)x->max_body);
  else if (x->head_too_large)
    snprintf(msg, size, "response headers larger than %d KiB",
             MAX_HEAD / 1024);
  else if (giant_header(x))
    snprintf(msg, size, "a response header line is longer than %d KiB",
             CURL_MAX_HTTP_HEADER / 1024);
  else if (x->not_retried)
    snprintf(msg, size, "the server closed the keep-alive connection "
             "without answering; %s", x->idempotent
             ? "the request failed again on a second connection"
             : "not sent again since the method is not idempotent");
  else if (x->oom)
    snprintf(msg, size, "out of memory");
  else if (x->read_expired)
    snprintf(msg, size, "nothing from the server for %.3g s (read_timeout)",
             x->read_timeout_ms / 1000.0);
  else
    snprintf(msg, size, "%s",
             x->err[0] ? x->err : curl_easy_strerror(x->result));
}

/* Pushes the error of a failed transfer. */
static void push_xfer_error(lua_State *L, xfer *x, const char *url) {
  char msg[CURL_ERROR_SIZE + 64];
  xfer_error_text(x, msg, sizeof msg);
  host_http_push_error(L, error_kind(x), url, (int)x->result, msg);
}

/* The trace's instant for a transfer that ended (LASYNC_TRACE). */
static void trace_xfer(lua_State *L, xfer *x) {
  host_task *t = host_task_of(L);
  const char *url = x->url ? x->url : lua_tostring(L, 3);
  if (x->state == X_DONE && x->result != CURLE_OK) {
    char msg[CURL_ERROR_SIZE + 64];
    xfer_error_text(x, msg, sizeof msg);
    host_trace_http(t->h, t, x->trace_t0, lua_tostring(L, 2),
                    lua_tostring(L, 3), 0, 0, msg);
  } else {
    host_trace_http(t->h, t, x->trace_t0, lua_tostring(L, 2), url, x->status,
                    x->body.len, NULL);
  }
}

/* A timeout option at index idx in milliseconds (rounded up): nil is
 * dflt, false is 0 (none).  http.lua has checked it and named the
 * caller; this keeps anything else from reaching curl. */
static long timeout_ms(lua_State *L, int idx, const char *name, long dflt) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL) return dflt;
  if (t == LUA_TBOOLEAN && !lua_toboolean(L, idx)) return 0;
  lua_Number sec = lua_tonumber(L, idx);
  if (t != LUA_TNUMBER || !(sec > 0 && sec <= MAX_TIMEOUT))
    luaL_error(L, "asyncio.http: option '%s' must be a number of seconds in "
                  "(0, %d] or false", name, MAX_TIMEOUT);
  return (long)(sec * 1000 + 0.999);
}

/* ---- the session object ----------------------------------------------- */

static int session_close_hook(host_handle *hd, lua_State *L);
static void session_free(host_handle *hd) {
  free(host_container_of(hd, session, hd));
}
static const host_handle_type SESSION_TYPE = {SESSION_MT, "session",
                                              session_close_hook, session_free};

static session *check_session(lua_State *L, int idx, const char *fname) {
  return host_container_of(host_handle_check(L, idx, &SESSION_TYPE, fname, 1),
                           session, hd);
}

/* Closes the session: every transfer it holds is detached; with L, tasks
 * parked on them are woken with http.Error kind "closed" (not at __gc,
 * where no task can be parked on an unreachable session). */
static void abort_xfer(xfer *x, lua_State *L) {
  host_task *t = x->task;
  xfer_detach(x);
  x->state = X_DONE;
  x->result = CURLE_ABORTED_BY_CALLBACK;
  x->task = NULL;
  if (t && L) {
    host_http_push_error(L, "closed", x->url ? x->url : "", 0, "the session was closed");
    host_wake_error(t, L);
  }
  xfer_close(x, L); /* a stream response read later raises: it is closed */
}

/* The close hook: with L (close()), tasks parked on the session's
 * transfers are woken with an error; without (__gc, the host's stop) no
 * Lua runs. */
static int session_close_hook(host_handle *hd, lua_State *L) {
  session *s = host_container_of(hd, session, hd);
  host_link *l;
  host_task *t;
  while ((t = waitq_pop(&s->waiters))) abort_xfer(t->wait_data, L);
  while ((l = host_list_first(&s->active)))
    abort_xfer(host_container_of(l, xfer, link), L);
  for (int i = 0; i < s->npool; i++) curl_easy_cleanup(s->pool[i]);
  s->npool = 0;
  /* curl must not call back into handles being closed while it closes
   * its connections. */
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, NULL);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, NULL);
  while ((l = host_list_first(&s->socks))) {
    sock *k = host_container_of(l, sock, link);
    uv_poll_stop(&k->poll);
    sock_close(k);
  }
  curl_multi_cleanup(s->multi);
  s->multi = NULL;
  uv_close((uv_handle_t *)&s->timer, handle_closed);
  uv_close((uv_handle_t *)&s->read_timer, handle_closed);
  return 1;
}

static int l_close(lua_State *L) {
  host_handle *hd = host_handle_check(L, 1, &SESSION_TYPE, "close", 0);
  if (hd) host_handle_close(hd, L);
  return 0;
}

/* core.session(limit, limit_per_host, connect_timeout, read_timeout)
 * -> session object; the timeouts (seconds, or false: none) are its
 * requests' defaults, given by http.lua. */
static int l_session(lua_State *L) {
  lasync_host *h = HOST(L);
  lua_Integer limit = luaL_optinteger(L, 1, 100);
  lua_Integer per_host = luaL_optinteger(L, 2, 0);
  long connect_ms = timeout_ms(L, 3, "connect_timeout", 0);
  long read_ms = timeout_ms(L, 4, "read_timeout", 0);
  luaL_argcheck(L, limit >= 0, 1, "limit must be >= 0");
  luaL_argcheck(L, per_host >= 0, 2, "limit_per_host must be >= 0");
  host_handle **box = host_handle_newbox(L, SESSION_MT, 0);
  session *s = calloc(1, sizeof *s);
  if (!s) return luaL_error(L, "asyncio.http: out of memory");
  s->h = h;
  s->limit = limit == 0 || limit > INT_MAX ? INT_MAX : (int)limit;
  host_list_init(&s->socks);
  host_list_init(&s->active);
  host_list_init(&s->waiters);
  s->multi = curl_multi_init();
  if (!s->multi || uv_timer_init(h->loop, &s->timer)) {
    if (s->multi) curl_multi_cleanup(s->multi);
    free(s);
    return luaL_error(L, "asyncio.http: cannot create a curl multi handle");
  }
  uv_timer_init(h->loop, &s->read_timer); /* cannot fail: no system call */
  s->timer.data = s;
  s->read_timer.data = s;
  s->nhandles = 2;
  uv_unref((uv_handle_t *)&s->timer);
  uv_unref((uv_handle_t *)&s->read_timer);
  s->connect_ms = connect_ms;
  s->read_ms = read_ms;
  host_handle_init(&s->hd, &SESSION_TYPE, h);
  host_handle_attach(box, &s->hd);
  long maxconn = limit ? (long)(limit < 100000 ? limit : 100000) : 100;
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
  curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, maxconn);
  if (limit) curl_multi_setopt(s->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxconn);
  if (per_host)
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)per_host);
  return 1;
}

/* core.stats(session) -> inflight, running, waiting, idle easy handles */
static int l_stats(lua_State *L) {
  session *s = check_session(L, 1, "stats");
  int waiting = 0;
  for (host_link *l = s->waiters.next; l != &s->waiters; l = l->next) waiting++;
  lua_pushinteger(L, s->limit == INT_MAX ? s->nrunning : s->inflight);
  lua_pushinteger(L, s->nrunning);
  lua_pushinteger(L, waiting);
  lua_pushinteger(L, s->npool);
  return 4;
}

/* ---- performing a request ---------------------------------------------- */

/* Stack of perform and its continuations:
 *   1 session  2 method  3 url  4 options (table or nil)  5 xfer */
#define X_IDX 5

/* The record of a box that is open, for the stream's methods. */
static xfer *check_xfer(lua_State *L, int idx, const char *fname) {
  return host_container_of(host_handle_check(L, idx, &XFER_TYPE, fname, 1),
                           xfer, hd);
}

/* The record of the box perform made (X_IDX: always attached). */
static xfer *box_xfer(lua_State *L, int idx) {
  return host_container_of(*(host_handle **)lua_touserdata(L, idx), xfer, hd);
}

static int perform_cancel(host_task *t, int woken) {
  (void)woken;
  xfer_close(t->wait_data, NULL);
  return 0;
}

static long opt_ms(lua_State *L, int o, const char *name, long dflt) {
  lua_getfield(L, o, name);
  long ms = timeout_ms(L, -1, name, dflt);
  lua_pop(L, 1);
  return ms;
}

static int opt_bool(lua_State *L, int o, const char *name, int dflt) {
  int v = dflt;
  if (lua_getfield(L, o, name) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Reads the normalized options (made by http.lua) into x.  Raises on a
 * bad value, before anything is held. */
static void read_options(lua_State *L, session *s, xfer *x) {
  x->follow = 1;
  x->verify = 1;
  x->max_redirs = 10;
  x->max_body = DEFAULT_MAX_BODY;
  x->connect_timeout_ms = s->connect_ms;
  x->read_timeout_ms = s->read_ms;
  if (lua_isnil(L, 4)) return;
  x->timeout_ms = opt_ms(L, 4, "timeout", 0);
  x->connect_timeout_ms = opt_ms(L, 4, "connect_timeout", s->connect_ms);
  x->read_timeout_ms = opt_ms(L, 4, "read_timeout", s->read_ms);
  x->follow = opt_bool(L, 4, "follow_redirects", 1);
  x->verify = opt_bool(L, 4, "verify", 1);
  x->stream = opt_bool(L, 4, "stream", 0);
  if (lua_getfield(L, 4, "max_redirects") != LUA_TNIL) {
    lua_Integer n = lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1) || n < 0)
      luaL_error(L, "asyncio.http: option 'max_redirects' must be an integer >= 0");
    x->max_redirs = n > 100000 ? 100000 : (long)n;
  }
  int t = lua_getfield(L, 4, "max_body");
  if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    x->max_body = -1;
  } else if (t != LUA_TNIL) {
    lua_Integer n = lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1) || n < 0)
      luaL_error(L, "asyncio.http: option 'max_body' must be an integer >= 0 "
                    "or false");
    x->max_body = n;
  }
  lua_pop(L, 2);
  static const char *const strings[] = {"cafile", "proxy", NULL};
  for (int i = 0; strings[i]; i++) { /* checked before anything is held */
    /* the name is formatted first: a string pushed for it would sit at -1 */
    char what[32];
    snprintf(what, sizeof what, "option '%s'", strings[i]);
    if (lua_getfield(L, 4, strings[i]) != LUA_TNIL)
      host_opt_cstring(L, -1, 4, what);
    lua_settop(L, X_IDX);
  }
  if (lua_getfield(L, 4, "headers") == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, -1, i);
      size_t len = 0;
      const char *line = lua_tolstring(L, -1, &len);
      /* http.lua refuses these with a clearer message; this keeps a line
       * that would smuggle a second header or request from reaching curl */
      int bad = !line || strcspn(line, "\r\n") != len;
      struct curl_slist *l = bad ? NULL : curl_slist_append(x->hdrs, line);
      lua_pop(L, 1);
      if (!l) {
        curl_slist_free_all(x->hdrs);
        x->hdrs = NULL;
        luaL_error(L, "asyncio.http: bad header line (not a string, or it "
                      "holds a CR, LF or NUL byte)");
      }
      x->hdrs = l;
    }
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 4, "body") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) {
      curl_slist_free_all(x->hdrs);
      x->hdrs = NULL;
      luaL_error(L, "asyncio.http: the body must be a string");
    }
    lua_setiuservalue(L, X_IDX, 2); /* anchored: curl reads it in place */
  } else {
    lua_pop(L, 1);
  }
}

static const char *opt_string(lua_State *L, const char *name) {
  const char *v = NULL;
  if (!lua_isnil(L, 4)) {
    lua_getfield(L, 4, name);
    v = lua_tostring(L, -1); /* the string stays in the options table */
    lua_pop(L, 1);
  }
  return v;
}

static int perform_done_k(lua_State *L, lua_KContext ctx);

/* Configures an easy handle from x and the stack, adds it, parks. */
static int start(lua_State *L, host_task *t, xfer *x) {
  session *s = x->s;
  const char *method = lua_tostring(L, 2);
  CURL *e;
  if (s->npool) {
    e = s->pool[--s->npool];
  } else if ((e = curl_easy_init())) {
    set_base(s, e);
  }
  if (!e) {
    xfer_close(x, L);
    return luaL_error(L, "asyncio.http: cannot create a curl handle");
  }
  x->easy = e;
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
  curl_easy_setopt(e, CURLOPT_URL, lua_tostring(L, 3));
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err);
  size_t blen = 0;
  const char *body = NULL;
  if (lua_getiuservalue(L, X_IDX, 2) == LUA_TSTRING)
    body = lua_tolstring(L, -1, &blen);
  lua_pop(L, 1);
  int get = strcmp(method, "GET") == 0 && !body;
  x->special = !get || x->hdrs || !x->follow || x->max_redirs != 10 ||
               x->timeout_ms || x->connect_timeout_ms != s->connect_ms ||
               !x->verify ||
               x->max_body != DEFAULT_MAX_BODY || !lua_isnil(L, 4);
  if (x->special) {
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, (long)x->follow);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, x->max_redirs);
    if (x->timeout_ms) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_timeout_ms
                     ? x->connect_timeout_ms : NO_CONNECT_TIMEOUT);
    if (!x->verify) {
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    /* curl refuses a declared Content-Length over the cap at once (0 is
     * "no cap" to curl: on_write checks max_body 0 itself) */
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                     x->stream || x->max_body < 0 ? (curl_off_t)0 : x->max_body);
    const char *cafile = opt_string(L, "cafile");
    if (cafile) curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
    const char *proxy = opt_string(L, "proxy");
    if (proxy) curl_easy_setopt(e, CURLOPT_PROXY, proxy);
  }
  if (get) {
    /* the base state */
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    }
    if (strcmp(method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  if (x->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
  x->err[0] = '\0';
  if (curl_multi_add_handle(s->multi, e) != CURLM_OK) {
    xfer_close(x, L);
    return luaL_error(L, "asyncio.http: cannot start the transfer");
  }
  x->state = X_RUNNING;
  if (s->h->trace) x->trace_t0 = uv_hrtime();
  host_list_push(&s->active, &x->link);
  running_inc(s);
  x->task = t;
  x->want = x->stream ? W_READY : W_DONE;
  return host_park(L, t, perform_cancel, x, perform_done_k, 0);
}

static int perform_slot_k(lua_State *L, lua_KContext ctx) {
  xfer *x = box_xfer(L, X_IDX);
  (void)ctx;
  return start(L, host_task_of(L), x);
}

/* Builds the response table: status, reason, url, body (or the live
 * transfer for a stream), _head (the raw header block, parsed lazily).
 * A buffered response lets go of its transfer here (handle.h's release:
 * the record is freed now, not at the box's __gc). */
static int perform_done_k(lua_State *L, lua_KContext ctx) {
  xfer *x = box_xfer(L, X_IDX);
  (void)ctx;
  if (host_task_of(L)->h->trace) trace_xfer(L, x);
  if (x->state == X_DONE && x->result != CURLE_OK) {
    push_xfer_error(L, x, lua_tostring(L, 3));
    host_handle_release(L, X_IDX);
    return lua_error(L);
  }
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, x->status);
  lua_setfield(L, -2, "status");
  if (x->url)
    lua_pushstring(L, x->url);
  else
    lua_pushvalue(L, 3);
  lua_setfield(L, -2, "url");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "method");
  /* reason: the status line after "HTTP/x nnn " */
  const char *p = x->head.p, *end = p + x->head.len;
  const char *sp = p ? memchr(p, ' ', x->head.len) : NULL;
  if (sp && end - sp > 5 && sp[4] == ' ') {
    const char *r = sp + 5, *e = r;
    while (e < end && *e != '\r' && *e != '\n') e++;
    lua_pushlstring(L, r, e - r);
  } else {
    lua_pushliteral(L, "");
  }
  lua_setfield(L, -2, "reason");
  lua_pushlstring(L, x->head.p ? x->head.p : "", x->head.len);
  lua_setfield(L, -2, "_head");
  if (x->stream) {
    lua_pushvalue(L, X_IDX);
    lua_setfield(L, -2, "_xfer");
    lua_pushinteger(L, x->max_body); /* resp:read() buffers under this cap */
    lua_setfield(L, -2, "_max_body");
  } else {
    lua_pushlstring(L, x->body.p ? x->body.p : "", x->body.len);
    lua_setfield(L, -2, "body");
    host_handle_release(L, X_IDX);
  }
  luaL_setmetatable(L, RESPONSE_MT);
  return 1;
}

/* RFC 9110 9.2.2; TRACE is left out (curl's CUSTOMREQUEST is enough to
 * send one, but nobody retries it). */
static int is_idempotent(const char *m) {
  static const char *const names[] = {"GET", "HEAD", "PUT", "DELETE",
                                      "OPTIONS", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(m, names[i]) == 0) return 1;
  return 0;
}

/* core.perform(session, method, url [, options]) -> response
 * options are already normalized by http.lua. */
static int l_perform(lua_State *L) {
  session *s = check_session(L, 1, "perform");
  host_check_cstring(L, 2, NULL);
  host_check_cstring(L, 3, NULL);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  host_task *t = host_check_task(L, "fetch");
  lua_settop(L, 4);
  host_handle **box = host_handle_newbox(L, XFER_MT, 2);
  xfer *x = calloc(1, sizeof *x);
  if (!x) return luaL_error(L, "asyncio.http: out of memory");
  host_list_init(&x->link);
  host_handle_init(&x->hd, &XFER_TYPE, s->h);
  host_handle_attach(box, &x->hd); /* two holds: the transfer, the box */
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, X_IDX, 1); /* the session outlives its transfers */
  read_options(L, s, x);
  x->idempotent = is_idempotent(lua_tostring(L, 2));
  x->s = s;
  if (s->inflight < s->limit) {
    s->inflight++;
    x->has_slot = 1;
    return start(L, t, x);
  }
  x->state = X_QUEUED;
  waitq_push(&s->waiters, t);
  x->task = t;
  x->want = W_SLOT;
  return host_park(L, t, perform_cancel, x, perform_slot_k, 0);
}

/* ---- streaming -------------------------------------------------------- */

static int read_cancel(host_task *t, int woken) {
  xfer *x = t->wait_data;
  (void)woken;
  if (x->task == t) x->task = NULL;
  return 0;
}

/* Pushes the next chunk, nil at the end, or raises the transfer's error. */
static int take_chunk(lua_State *L, xfer *x) {
  if (x->body.len) {
    lua_pushlstring(L, x->body.p, x->body.len);
    x->body.len = 0;
    if (x->paused && x->easy) {
      x->paused = 0;
      read_io(x); /* the server's silence so far was ours */
      if (x->read_timeout_ms)
        read_timer_want(x->s, x->last_io + (uint64_t)x->read_timeout_ms);
      curl_easy_pause(x->easy, CURLPAUSE_CONT);
    }
    return 1;
  }
  host_buf_free(&x->body); /* the end: the record waits for close or GC */
  if (x->result != CURLE_OK) {
    push_xfer_error(L, x, x->url ? x->url : "");
    return lua_error(L);
  }
  lua_pushnil(L);
  return 1;
}

static int read_k(lua_State *L, lua_KContext ctx) {
  (void)ctx;
  return take_chunk(L, box_xfer(L, 1));
}

/* The next body chunk, or nil at the end; a closed response raises
 * InvalidStateError "<fname>(): the response is closed". */
static int read_chunk(lua_State *L, const char *fname) {
  xfer *x = check_xfer(L, 1, fname);
  lua_settop(L, 1);
  if (x->body.len || x->state >= X_DONE) return take_chunk(L, x);
  host_task *t = host_check_task(L, fname);
  if (x->task)
    return luaL_error(L, "asyncio.http: another task is reading this response");
  x->task = t;
  x->want = W_DATA;
  return host_park(L, t, read_cancel, x, read_k, 0);
}

/* core.read(xfer) (resp:iter_chunks's iterator), core.read_body(xfer)
 * (resp:read's): the next chunk */
static int l_read(lua_State *L) { return read_chunk(L, "iter_chunks"); }
static int l_read_body(lua_State *L) { return read_chunk(L, "read"); }

/* core.close_xfer(xfer), the box's __close: stops the transfer, frees its
 * buffers (the idempotent close of handle.h). */
static int l_close_xfer(lua_State *L) {
  host_handle_close(host_handle_check(L, 1, &XFER_TYPE, "close", 0), L);
  return 0;
}

/* ---- files for resp:save() ------------------------------------------ */

/* core.fs() -> asyncio.fs, or nil where the embedder left it out: save()
 * writes through fs's File (one async-file engine, one set of errors), so a
 * sandbox without LASYNC_LIB_FS cannot write files through http either. */
static int l_fs(lua_State *L) {
  lasync_host *h = HOST(L);
  if (!(h->libs & LASYNC_LIB_FS)) return 0;
  luaL_requiref(L, "asyncio.fs", luaopen_asyncio_fs, 0);
  return 1;
}

/* ---- options ---------------------------------------------------------- */

static const char *const REQUEST_OPTIONS[] = {
    "method", "headers", "body", "json", "query", "timeout", "connect_timeout",
    "read_timeout", "follow_redirects", "max_redirects", "verify", "cafile",
    "max_body", "proxy", "stream", "retry", "json_codec", NULL};

static const char *const SESSION_OPTIONS[] = {
    "limit", "limit_per_host", "headers", "base_url", "timeout",
    "connect_timeout", "read_timeout", "follow_redirects", "max_redirects",
    "verify", "cafile", "max_body", "proxy", "retry", "json_codec", NULL};

/* core.getdate(s) -> seconds since the epoch of an HTTP date (Retry-After
 * may be one), or nil when s is not a date curl can read. */
static int l_getdate(lua_State *L) {
  time_t t = curl_getdate(host_check_cstring(L, 1, NULL), NULL);
  if (t == -1) return 0;
  lua_pushinteger(L, (lua_Integer)t);
  return 1;
}

/* core.unknown_option(opts, "request" | "session" | "retry" | "json") -> the first key that
 * is not an option, or nil.  http.lua words the error (naming fetch, get,
 * Session...); the test itself is the host's, shared by every binding. */
static const char *const RETRY_OPTIONS[] = {
    "count", "backoff", "max_backoff", "max_retry_after", "statuses", "on",
    "methods", NULL};

static const char *const JSON_OPTIONS[] = {"encode", "decode", NULL};

static int l_unknown_option(lua_State *L) {
  static const char *const names[] = {"request", "session", "retry", "json",
                                      NULL};
  static const char *const *const lists[] = {REQUEST_OPTIONS, SESSION_OPTIONS,
                                             RETRY_OPTIONS, JSON_OPTIONS};
  luaL_checktype(L, 1, LUA_TTABLE);
  int which = luaL_checkoption(L, 2, NULL, names);
  if (!host_unknown_option(L, 1, lists[which])) lua_pushnil(L);
  return 1;
}

/* ---- module ----------------------------------------------------------- */

static const luaL_Reg core_funcs[] = {
    {"session", l_session}, {"close", l_close},
    {"perform", l_perform}, {"stats", l_stats},
    {"read", l_read},       {"read_body", l_read_body},
    {"close_xfer", l_close_xfer},
    {"fs", l_fs},           {"getdate", l_getdate},
    {"unknown_option", l_unknown_option},
    {NULL, NULL}};

LASYNC_API int luaopen_asyncio_http(lua_State *L) {
  static int curl_ready;
  lasync_host *h = host_for_module(L);
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return luaL_error(L, "asyncio.http: curl_global_init failed");
    curl_ready = 1;
  }
  /* __close as close() (waiting tasks are woken), __gc without waking */
  static const luaL_Reg session_meta[] = {
      {"__gc", host_handle_gc_quiet}, {"__close", l_close}, {NULL, NULL}};
  static const luaL_Reg xfer_meta[] = {
      {"__gc", host_handle_gc}, {"__close", l_close_xfer}, {NULL, NULL}};
  host_new_type(L, SESSION_MT, NULL, session_meta, 0);
  host_handle_register(L, &SESSION_TYPE);
  host_new_type(L, XFER_MT, NULL, xfer_meta, 0);
  host_handle_register(L, &XFER_TYPE);
  l_load_lua_part(L, "http");
  lua_newtable(L); /* core */
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, core_funcs, 1);
  l_push_lua_part_loader(L); /* http.lua is made of parts */
  lua_setfield(L, -2, "lua_part");
  host_http_url_funcs(L);
  host_error_class(L, ERROR_CLASS, NULL);
  lua_setfield(L, -2, "Error");
  host_error_class(L, STATUS_CLASS, ERROR_CLASS);
  lua_setfield(L, -2, "StatusError");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  lua_pushinteger(L, MAX_TIMEOUT);
  lua_setfield(L, -2, "MAX_TIMEOUT");
  host_new_type(L, RESPONSE_MT, NULL, NULL, 0); /* http.lua fills it */
  luaL_getmetatable(L, RESPONSE_MT);
  lua_call(L, 2, 1);
  return 1;
}
