/* Shared by the I/O bindings (stream.c, net.c, server.c, process.c,
 * signal.c): the stream layer over uv_stream_t, waits on waitq.h queues,
 * name resolution and socket addresses, signal names.  Their records
 * follow host/handle.h's lifetime protocol; their errors come from
 * host/errors.c. */
#ifndef LASYNC_IO_H
#define LASYNC_IO_H

#include "host.h"
#include "waitq.h"


/* The host, for a function that starts something on the loop; raises
 * InvalidStateError once the loop is closed or closing (a finalizer at the
 * end of the program), when the upvalue could name a freed host. */
static inline lasync_host *io_live_host(lua_State *L, const char *fname) {
  lasync_host *h = host_get(L);
  if (!h || h->stopped || host_closing(h))
    host_error_raise(L, "InvalidStateError", "%s(): the event loop is closed",
                     fname);
  return h;
}

/* t[k] = v for the table on top of the stack (stat and stats results).
 * [-0, +0, m] */
static inline void io_setfield_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* ---- waiters ---------------------------------------------------------- */

/* A task parked on one of a record's waitq.h queues (drain, wait_closed,
 * serve_forever, process wait): no allocation; the cancel hook unlinks it
 * (idempotent, so it is right whether or not the task was woken).  Each
 * queue holds the waiters of one condition only, so whoever makes that
 * condition true wakes exactly them, once.  k may be NULL when the wake-up
 * itself is the answer (the wait returns nothing). */
static inline int io_wait_cancel(host_task *t, int woken) {
  (void)woken;
  waitq_remove(t);
  return 0;
}

static inline int io_wait(lua_State *L, host_task *t, host_link *q,
                          host_k_fn k) {
  waitq_push(q, t);
  return host_park(L, t, io_wait_cancel, NULL, k, 0);
}

static inline void io_wake_all(host_link *q) {
  host_task *t;
  while ((t = waitq_pop(q))) host_wake(t, NULL, 0);
}

/* ---- streams ---------------------------------------------------------- */

typedef struct lstream lstream;

/* The handle of a socket stream, TCP or Unix (pipe): libuv's stream types
 * begin with uv_stream_t's fields, so each member names the same handle
 * and the code that reads, writes or closes needs not know which it is.
 * Records that own one (lstream, redis.c's connection) embed it. */
typedef union io_stream_handle {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} io_stream_handle;

/* Initialises u on loop as a pipe (pipe != 0) or a TCP socket, its data
 * pointing at owner: 0 or a libuv error (then u needs no close). */
static inline int io_stream_handle_init(uv_loop_t *loop, io_stream_handle *u,
                                        int pipe, void *owner) {
  int rc = pipe ? uv_pipe_init(loop, &u->pipe, 0) : uv_tcp_init(loop, &u->tcp);
  if (rc == 0) u->handle.data = owner;
  return rc;
}

/* LSTREAM_MEM: a reader with no handle, fed from Lua (asyncio.StreamReader()
 * with feed_data/feed_eof), for parsers and tests. */
enum { LSTREAM_TCP = 0, LSTREAM_PIPE = 1, LSTREAM_MEM = 2, LSTREAM_FILE = 3 };

/* A new stream whose handle is initialised (uv_tcp_init / uv_pipe_init)
 * on h's loop; NULL on failure (*err set).  The caller holds one
 * reference (drop it with lstream_unref). */
lstream *lstream_new(lasync_host *h, int kind, int *err);
uv_stream_t *lstream_handle(lstream *s);
/* A stream over a regular file or a character device such as /dev/null
 * (LSTREAM_FILE: what epoll cannot watch), owning fd.  [pipe.c] */
lstream *lstream_new_file(lasync_host *h, int fd, int *err);
/* The stream's handle keeps the loop alive only while a task reads it
 * (a reader of stdin or of a descriptor it was given).  [pipe.c] */
void lstream_set_idle_unref(lstream *s);
void lstream_ref(lstream *s);
void lstream_unref(lstream *s);
/* Closes the handle (after queued writes are flushed unless `now`). */
void lstream_close(lstream *s, int now);
/* Starts reading into the stream's buffer (connected sockets, pipes). */
int lstream_start(lstream *s);
/* Pushes a StreamReader / StreamWriter for s (each holds a reference). */
void lstream_push_reader(lua_State *L, lstream *s);
void lstream_push_writer(lua_State *L, lstream *s);
void io_open_stream(lua_State *L, lasync_host *h);
/* Closes the stream of the StreamReader/StreamWriter at idx (if it is one
 * and was not finalized), flushing queued writes. */
void lstream_close_wrapper(lua_State *L, int idx);
/* The reader's buffer limit (asyncio's `limit`, 64 KiB by default). */
void lstream_set_limit(lstream *s, size_t limit);
/* The `limit` option of the options table at idx: 0 when absent, else a
 * positive integer (raises otherwise). */
size_t io_opt_limit(lua_State *L, int idx);
/* A consumer other than StreamReader (redis.c over TLS): fn(ud) runs in
 * libuv callbacks (no Lua) each time bytes or the end arrive; it takes the
 * bytes with lstream_take_buffered (tls.h) and reads the end with
 * lstream_read_end (0, UV_EOF or an error).  Reading pauses past the
 * buffer's limit until lstream_resume.  NULL detaches. */
typedef void (*lstream_sink_fn)(void *ud);
void lstream_set_sink(lstream *s, lstream_sink_fn fn, void *ud);
int lstream_read_end(lstream *s);
/* Writes n plaintext bytes (encrypted on a TLS stream): 0, or the
 * stream's write error (UV_ENOMEM, EPIPE...); after close they are
 * dropped. */
int lstream_write(lstream *s, const char *p, size_t n);

/* ---- names and addresses (net.c) -------------------------------------- */

/* Pushes {family=, address=, port=} (and [1], [2]) for a socket address. */
void io_push_sockaddr(lua_State *L, const struct sockaddr *sa);
/* The port argument at idx (0 when absent), checked.  [-0, +0, v] */
int io_check_port(lua_State *L, int idx);
/* The host argument at idx, NULL when absent or "" (any address). */
const char *io_opt_host(lua_State *L, int idx);
/* Resolves host:port for listening and parks t; k then calls io_resolved
 * (which raises the resolution's error) and, once done with the list,
 * io_resolve_done. */
int io_resolve_passive(lua_State *L, host_task *t, const char *host, int port,
                       host_k_fn k);
struct addrinfo *io_resolved(lua_State *L, lua_KContext ctx, char *where,
                             size_t size);
void io_resolve_done(lua_KContext ctx);
void io_open_net(lua_State *L, lasync_host *h);

/* ---- Unix sockets (unix.c) over the server of server.c ------------------ */

struct server;
/* A new Server value, not yet listening, from a function registered with
 * start_server's upvalues (the host, the methods).  [-0, +1, m] */
struct server *io_server_push(lua_State *L, lasync_host *h, int backlog,
                              size_t limit);
/* Listens on the bound Unix socket fd, which the server takes over; its
 * file `path` (NULL: none, an abstract name) is removed when the server
 * closes.  0, or a libuv error (the server is then closed). */
int io_server_listen_unix(lua_State *L, struct server *srv, int fd,
                          const char *path);
/* The Server at boxidx serves: handler at hidx, and it stays alive while
 * open.  [-0, +0] */
void io_server_arm(lua_State *L, struct server *srv, int boxidx, int hidx);
/* The `backlog` option of the options table at idx (511 when absent). */
int io_opt_backlog(lua_State *L, int idx, const char *fname);
int l_start_unix_server(lua_State *L);
/* server.port / server.sockets of a Unix socket server (p NULL: closed). */
int io_unix_server_index(lua_State *L, uv_pipe_t *p, const char *key);
/* Removes a server's socket file at close (if it still is a socket). */
void io_unix_unlink(const char *path);
/* Pushes the Unix socket name of the handle's own end (or of the peer's),
 * as Python gives it: the path, "" when unnamed, an abstract name with its
 * leading NUL.  0 (nothing pushed) when it is not a Unix socket. */
int io_unix_push_name(lua_State *L, uv_handle_t *hd, int peer);
void io_open_unix(lua_State *L, lasync_host *h);

/* ---- descriptors as streams (pipe.c) ---------------------------------- */

/* The fd of the argument at idx, an fd number or an io file (flushed);
 * errors are on argument arg, described as `what`.  [-0, +0, v] */
int io_check_fd(lua_State *L, int idx, int arg, const char *what);
/* A subprocess's stdio option `name` (at the top: an fd, an io file, or a
 * StreamReader/StreamWriter handed over), checked for child_fd's
 * direction: the fd the child inherits.  [-0, +0, v] */
int io_stdio_fd(lua_State *L, int opts, const char *name, int child_fd);
/* The fd of the StreamReader/StreamWriter at idx, to hand to a child
 * (-1 when it is not one); refused when bytes are buffered or queued in
 * it or a task reads it, which the child would not see.  Reading stops;
 * the caller closes the wrapper once the child has its copy. [stream.c] */
int lstream_handoff_fd(lua_State *L, int idx, const char *what);
void io_open_pipe(lua_State *L, lasync_host *h);
/* asyncio.create_datagram_endpoint (udp.c) */
void io_open_udp(lua_State *L, lasync_host *h);

/* ---- areas ------------------------------------------------------------ */

/* Signal number of the name ("SIGTERM", "TERM") or number at idx. */
int io_check_signal(lua_State *L, int idx);
void io_open_server(lua_State *L, lasync_host *h);
void io_open_process(lua_State *L, lasync_host *h);
void io_open_signal(lua_State *L, lasync_host *h);
/* Makes SIGPIPE harmless for the loop's sockets and pipes (EPIPE instead),
 * while a dead stdout/stderr still ends the process as under lua.c.  Only
 * over the default disposition: an embedder's own choice is kept. */
void io_guard_sigpipe(void);

#endif
