/* asyncio.http.server's C core: a libmicrohttpd daemon driven by the
 * host's libuv loop (bindings/http_server.c) and the request records it
 * hands to Lua (bindings/http_server_request.c).
 *
 * libmicrohttpd parses HTTP/1.1 (keep-alive, pipelining, chunked bodies,
 * Expect: 100-continue, HEAD) and enforces its limits; it runs without
 * threads of its own: its epoll descriptor is watched by one uv_poll and
 * its next timeout by one uv_timer.  A request whose headers and body
 * arrived is *suspended* in libmicrohttpd and queued for the Lua
 * dispatcher; the handler's response resumes it. */
#ifndef LASYNC_HTTP_SERVER_H
#define LASYNC_HTTP_SERVER_H

#include <microhttpd.h>

#include "handle.h"
#include "list.h"

typedef struct web_server web_server;
typedef struct web_request web_request;

struct web_server {
  host_handle hd;
  struct MHD_Daemon *d;
  uv_poll_t poll;
  uv_timer_t timer;
  uv_idle_t again;          /* MHD_run once more, after the loop polled */
  uv_timer_t sweep;         /* the header deadline (slowloris) */
  host_link ready;          /* web_request.link: complete, not taken yet */
  host_link conns;          /* web_conn.link: every open connection */
  host_link waiters;        /* tasks in next() */
  size_t max_body;
  double header_timeout;
  unsigned zero_runs;       /* MHD_run calls in a row that asked for more */
  unsigned stall_ms;        /* the back-off while only handshakes wait */
  unsigned long acts;       /* callbacks libmicrohttpd made (progress) */
  unsigned stream_body : 1; /* handlers run at the headers, read the body */
  unsigned stopped : 1;     /* MHD_stop_daemon ran */
  unsigned run_again : 1;   /* run once more: a connection closed, or
                               one was resumed during MHD_run */
  unsigned dispatched : 1;  /* MHD_run queued a request for Lua */
  unsigned tls : 1;         /* libmicrohttpd's GnuTLS (serve's tls/ssl) */
};

/* One TCP connection (libmicrohttpd's socket context): when it started
 * waiting for a request's headers, so that a trickling client is cut. */
typedef struct web_conn {
  host_link link;
  struct MHD_Connection *c;
  uint64_t since;           /* uv_now when it began waiting for headers */
  unsigned in_request : 1;
  unsigned in_body : 1;     /* a request accepted, its body not all in */
} web_conn;

struct web_request {
  host_link link;           /* in server->ready until next() takes it */
  web_server *srv;          /* NULL once libmicrohttpd is done with it */
  struct MHD_Connection *c;
  char *method, *path, *version; /* one block, from method */
  /* the body received and not read yet: body[body_off..body_len) */
  char *body;
  size_t body_off, body_len, body_cap;
  uint64_t body_total;      /* bytes received (max_body) */
  host_task *reader;        /* parked in read() */
  struct MHD_Response *resp;/* made by respond(), queued on resume */
  unsigned status;
  /* a streamed response: bytes the handler wrote, not sent yet */
  char *out;
  size_t out_len, out_cap;
  host_task *writer;        /* parked in write() (back-pressure) */
  /* upgrade(): the socket libmicrohttpd hands over after a 101 */
  host_task *upgrader;      /* parked in upgrade() */
  struct MHD_UpgradeResponseHandle *urh;
  int up_fd;                /* our dup of the socket, -1 before */
  char *up_extra;           /* bytes read past the request, for the reader */
  size_t up_extra_len;
  unsigned lua : 1;         /* a Lua value points here */
  unsigned gone : 1;        /* the connection ended */
  unsigned queued : 1;      /* a response was given */
  unsigned suspended : 1;   /* libmicrohttpd waits for us */
  unsigned out_done : 1;    /* the handler finished its stream */
  unsigned too_big : 1;
  unsigned body_done : 1;   /* the whole body was received */
  unsigned started : 1;     /* its handler task ran (meta() was called) */
  unsigned char waits;      /* runs it waited unsuspended, not started */
};

#define WEB_REQUEST_MT "asyncio.http.server.Request"

/* ssl_options(ctx) -> certificate chain PEM, key PEM, GnuTLS priority
 * string of a server's SSLContext (bindings/http_server_tls.c). */
int web_l_ssl_options(lua_State *L);

/* Whether libmicrohttpd's "run again at once" can only come from TLS
 * handshakes waiting for their peers (http_server_tls.c). */
int web_tls_only_handshakes(web_server *s);

/* Runs libmicrohttpd on the loop's next turn (after a resume). */
void web_server_kick(web_server *s);

/* Request side (http_server_request.c). */
void web_request_types(lua_State *L);
void web_request_push(lua_State *L, web_request *rq);
/* libmicrohttpd is done with rq: wakes its writer, frees it unless Lua
 * still holds it. */
void web_request_completed(web_request *rq);
void web_request_free(web_request *rq);
/* Suspends/resumes the connection (once each way). */
void web_request_suspend(web_request *rq);
void web_request_resume(web_request *rq);
/* A response was set: resumes the connection, or (not suspended) has
 * the next run queue it. */
void web_request_answered(web_request *rq);
/* Unread body bytes over which a streamed upload is suspended. */
#define WEB_IN_HIGH (64 * 1024)
/* Wakes a task parked in read() (new bytes, the end, or gone). */
void web_request_wake_reader(web_request *rq);

#endif
