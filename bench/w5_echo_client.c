/* W5 load generator for a plain clone (bench/own.sh): CONNS TCP connections
 * to an upper-casing echo server (bench/w5_echo.lua), each doing strict
 * ping-pong of MSGLEN-byte messages for SECONDS.  The clock starts once every
 * connection is up; replies completed before the stop instant are counted,
 * the ones in flight then are drained and checked but not counted.  Every
 * message is different and every reply is compared byte for byte with the
 * upper-cased message, so a server that drops, reorders or mangles bytes
 * gives ok=0.  A C client on libuv so that the figure is the server's and not
 * the load generator's (a Lua client would share the machine's CPU with the
 * server at the speed of the thing being measured).
 *
 *   w5_echo_client HOST PORT [CONNS [SECONDS [MSGLEN]]]   (50, 5, 64)
 *
 * Last stdout line: RESULT workload=W5 n=<msgs> seconds=<s> ok=<0|1>
 * rate=<msgs/s>; exit status 0 only with ok=1.  Why it failed goes to
 * stderr. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

enum { MAX_MSG = 4096, MAX_CONNS = 10000 };

/* After the stop instant the in-flight replies get this long; before the
 * start, connecting all gets CONNECT_MS. */
enum { DRAIN_MS = 5000, CONNECT_MS = 10000 };

/* Letters (both cases: only a-z change), digits and punctuation. */
static const char PALETTE[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " .,;:!?-_+=*/()[]{}<>@#$%^&~|'\"";

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uint64_t rng;
  size_t got;    /* bytes of the current reply already checked */
  int in_flight; /* a message was sent and its reply is not complete */
  char want[MAX_MSG];
  char rbuf[2 * MAX_MSG]; /* more than a reply: extra bytes are seen */
} conn;

/* A write that uv_try_write could not finish: the rest, owned by the
 * request until its callback. */
typedef struct pending_write {
  uv_write_t req;
  char data[];
} pending_write;

static struct {
  uv_loop_t *loop;
  conn *conns;
  int nconns, connected, closed;
  size_t msglen;
  double seconds;
  uv_timer_t stop_timer;  /* the end of the measured part */
  uv_timer_t guard_timer; /* connecting, then draining, must not hang */
  int stopping, failed;
  uint64_t counted, t_start, t_stop;
} B;

static void shut_all(void);
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The first failure is the one reported; everything is then closed so that
 * uv_run returns. */
static void fail(const char *fmt, ...) {
  if (B.failed) return;
  B.failed = 1;
  va_list ap;
  va_start(ap, fmt);
  fputs("w5_echo_client: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  shut_all();
}

static void conn_closed(uv_handle_t *h) {
  (void)h;
  B.closed++;
  if (B.closed == B.nconns) shut_all(); /* the timers are the last handles */
}

static void close_handle(uv_handle_t *h, uv_close_cb cb) {
  if (!uv_is_closing(h)) uv_close(h, cb);
}

static void shut_all(void) {
  for (int i = 0; i < B.nconns; i++)
    close_handle((uv_handle_t *)&B.conns[i].tcp, conn_closed);
  close_handle((uv_handle_t *)&B.stop_timer, NULL);
  close_handle((uv_handle_t *)&B.guard_timer, NULL);
}

static uint64_t next_random(conn *c) { /* xorshift64 */
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return c->rng;
}

static void written(uv_write_t *req, int status) {
  free(req->data);
  if (status < 0 && status != UV_ECANCELED) fail("write: %s", uv_strerror(status));
}

/* A new message on c; its upper-cased form is what the reply must be. */
static void send_next(conn *c) {
  char msg[MAX_MSG];
  for (size_t i = 0; i < B.msglen; i++) {
    char ch = PALETTE[next_random(c) % (sizeof PALETTE - 1)];
    msg[i] = ch;
    c->want[i] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
  }
  c->got = 0;
  c->in_flight = 1;
  uv_buf_t buf = uv_buf_init(msg, (unsigned)B.msglen);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    fail("write: %s", uv_strerror(n));
    return;
  }
  if ((size_t)n == B.msglen) return;
  size_t rest = B.msglen - (size_t)n;
  pending_write *w = malloc(sizeof *w + rest);
  if (!w) {
    fail("out of memory");
    return;
  }
  memcpy(w->data, msg + n, rest);
  w->req.data = w;
  buf = uv_buf_init(w->data, (unsigned)rest);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, written);
  if (r < 0) {
    free(w);
    fail("write: %s", uv_strerror(r));
  }
}

static void give_buffer(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void got_bytes(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread == 0 || B.failed) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      fail("the server closed a connection");
    else
      fail("read: %s", uv_strerror((int)nread));
    return;
  }
  size_t n = (size_t)nread;
  if (!c->in_flight || c->got + n > B.msglen) {
    fail("%zu byte(s) more than the reply", c->got + n - B.msglen);
    return;
  }
  if (memcmp(c->want + c->got, buf->base, n) != 0) {
    fail("a reply is not the upper-cased message");
    return;
  }
  c->got += n;
  if (c->got < B.msglen) return;
  c->in_flight = 0;
  if (B.stopping) { /* drained after the stop: checked, not counted */
    close_handle((uv_handle_t *)&c->tcp, conn_closed);
    return;
  }
  B.counted++;
  send_next(c);
}

static void stop_now(uv_timer_t *t) {
  (void)t;
  B.stopping = 1;
  B.t_stop = uv_hrtime();
  for (int i = 0; i < B.nconns; i++)
    if (!B.conns[i].in_flight)
      close_handle((uv_handle_t *)&B.conns[i].tcp, conn_closed);
}

static void guard_expired(uv_timer_t *t) {
  (void)t;
  if (B.stopping)
    fail("replies still missing %d ms after the stop", DRAIN_MS);
  else
    fail("%d of %d connections up after %d ms", B.connected, B.nconns,
         CONNECT_MS);
}

static void connected(uv_connect_t *req, int status) {
  conn *c = req->data;
  if (B.failed) return; /* closed while connecting: UV_ECANCELED */
  if (status < 0) {
    fail("connect: %s", uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  int r = uv_read_start((uv_stream_t *)&c->tcp, give_buffer, got_bytes);
  if (r < 0) {
    fail("read: %s", uv_strerror(r));
    return;
  }
  if (++B.connected < B.nconns) return;
  /* all up: the measured part starts; the guard now bounds the drain */
  uv_update_time(B.loop);
  B.t_start = uv_hrtime();
  uv_timer_start(&B.stop_timer, stop_now, (uint64_t)(B.seconds * 1000.0), 0);
  uv_timer_start(&B.guard_timer, guard_expired,
                 (uint64_t)(B.seconds * 1000.0) + DRAIN_MS, 0);
  for (int i = 0; i < B.nconns && !B.failed; i++) send_next(&B.conns[i]);
}

static int usage(const char *why) {
  fprintf(stderr,
          "w5_echo_client: %s\n"
          "usage: w5_echo_client HOST PORT [CONNS [SECONDS [MSGLEN]]]\n"
          "  HOST a numeric IP address; CONNS 1..%d (50); SECONDS > 0 (5);\n"
          "  MSGLEN 1..%d (64)\n",
          why, MAX_CONNS, MAX_MSG);
  return 2;
}

/* A whole decimal integer in [lo, hi], or -1. */
static long parse_int(const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  return v;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 6) return usage("wrong number of arguments");
  long port = parse_int(argv[2], 1, 65535);
  if (port < 0) return usage("PORT must be an integer 1..65535");
  long nconns = argc > 3 ? parse_int(argv[3], 1, MAX_CONNS) : 50;
  if (nconns < 0) return usage("CONNS out of range");
  double seconds = 5;
  if (argc > 4) {
    char *end;
    seconds = strtod(argv[4], &end);
    if (end == argv[4] || *end || !(seconds > 0 && seconds < 86400))
      return usage("SECONDS must be a number > 0");
  }
  long msglen = argc > 5 ? parse_int(argv[5], 1, MAX_MSG) : 64;
  if (msglen < 0) return usage("MSGLEN out of range");

  struct sockaddr_storage addr;
  if (uv_ip4_addr(argv[1], (int)port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(argv[1], (int)port, (struct sockaddr_in6 *)&addr) != 0)
    return usage("HOST must be a numeric IPv4 or IPv6 address");

  B.loop = uv_default_loop();
  B.nconns = (int)nconns;
  B.seconds = seconds;
  B.msglen = (size_t)msglen;
  B.conns = calloc((size_t)nconns, sizeof *B.conns);
  if (!B.conns) {
    fputs("w5_echo_client: out of memory\n", stderr);
    return 1;
  }
  uv_timer_init(B.loop, &B.stop_timer);
  uv_timer_init(B.loop, &B.guard_timer);
  uv_timer_start(&B.guard_timer, guard_expired, CONNECT_MS, 0);
  for (int i = 0; i < B.nconns; i++) {
    conn *c = &B.conns[i];
    c->rng = (uint64_t)(i + 1) * 0x9E3779B97F4A7C15u;
    uv_tcp_init(B.loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    int r = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr,
                           connected);
    if (r < 0) {
      fail("connect: %s", uv_strerror(r));
      break;
    }
  }
  uv_run(B.loop, UV_RUN_DEFAULT);

  int ok = !B.failed && B.counted > 0;
  double secs = B.t_stop > B.t_start ? (double)(B.t_stop - B.t_start) / 1e9 : 0;
  printf("RESULT workload=W5 n=%llu seconds=%.6f ok=%d rate=%.1f\n",
         (unsigned long long)B.counted, secs, ok, secs > 0 ? (double)B.counted / secs : 0);
  uv_loop_close(B.loop);
  free(B.conns);
  return ok ? 0 : 1;
}
