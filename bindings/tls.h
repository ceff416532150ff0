/* TLS under the stream layer (tls.c, ssl_context.c): OpenSSL with memory
 * BIOs between the libuv socket and the StreamReader/StreamWriter, so a
 * TLS connection reads, writes, drains, cancels and closes as a plain one.
 *
 * stream.c plugs the engine in at five places: ciphertext read from the
 * socket goes to tls_on_read (into the buffer tls_read_buf gives), bytes
 * written go through tls_write, a graceful close sends close_notify
 * (tls_close_notify), a closing stream ends a pending handshake
 * (tls_closing), and get_extra_info asks tls_extra_info.  The engine
 * answers through the lstream_* calls below. */
#ifndef LASYNC_TLS_H
#define LASYNC_TLS_H

#include "io.h"

typedef struct tls_conn tls_conn;

/* ---- stream.c, for the engine ----------------------------------------- */

tls_conn *lstream_tls(lstream *s);
void lstream_set_tls(lstream *s, tls_conn *c);
/* Queues n bytes on the socket as they are (ciphertext): 0 or a libuv
 * error (also recorded as the stream's write error). */
int lstream_raw_write(lstream *s, const char *p, size_t n);
/* The peer answered a graceful close (or did not in time): the stream's
 * socket closes once its writes are out. */
void lstream_linger_done(lstream *s);
/* Room for at least `want` more plaintext bytes at the end of the reader's
 * buffer: the pointer and its size (0 when out of memory). */
char *lstream_room(lstream *s, size_t want, size_t *size);
/* n plaintext bytes were put in the room; end is 0, UV_EOF or an error:
 * reading stops past the limit or at the end, the reader is woken. */
void lstream_deliver(lstream *s, size_t n, int end);
/* Takes the bytes buffered so far (start_tls: they are the peer's first
 * TLS records); returns the pointer and length, valid until the next read. */
const char *lstream_take_buffered(lstream *s, size_t *n);
/* The stream of the StreamWriter at idx (raises if it is not one, or
 * closed). */
lstream *lstream_check_writer(lua_State *L, int idx, const char *fname);
/* Is the stream closing (or closed)? */
int lstream_is_closing(lstream *s);
/* Starts reading again if the reader's buffer has room. */
void lstream_resume(lstream *s);
lasync_host *lstream_host(lstream *s);

/* ---- the engine (tls.c) ----------------------------------------------- */

/* Where the socket's next read goes. */
uv_buf_t tls_read_buf(tls_conn *c);
/* n > 0 ciphertext bytes arrived (in tls_read_buf), or n < 0: the
 * socket's end (UV_EOF) or error. */
void tls_on_read(tls_conn *c, ssize_t n);
/* Encrypts and queues n plaintext bytes; 0, or a libuv error. */
int tls_write(tls_conn *c, const char *p, size_t n);
/* Queues close_notify (once, after a completed handshake).  With `linger`
 * (the peer has not ended yet) returns 1, and then ends the lingering
 * (lstream_linger_done) when the peer's close_notify or end arrives, or
 * after a deadline. */
int tls_close_notify(tls_conn *c, int linger);
/* The stream is closing: a pending handshake fails; unless it lingers
 * for the peer's close_notify, no deadline is left running. */
void tls_closing(tls_conn *c, int lingering);
void tls_free(tls_conn *c);
/* The connection's SSL (for tls_info.c), its side and server name. */
struct ssl_st *tls_ssl(tls_conn *c);
int tls_server_side(tls_conn *c);
const char *tls_hostname(tls_conn *c);
/* Pushes the SSLError of a failed connection (returns 1), or nothing (0). */
int tls_push_error(lua_State *L, tls_conn *c);
/* get_extra_info for the TLS names (peercert, cipher, ssl_object,
 * compression); 1 with the value pushed, 0 for other names. */
int tls_extra_info(lua_State *L, tls_conn *c, const char *what);

/* open_connection's options: validates ssl / server_hostname /
 * ssl_handshake_timeout of the table at opts (host is the address
 * connected to) and pushes three values for tls_client_begin: the context
 * (or nil: plain TCP), the server name (or nil) and the timeout. */
void tls_client_options(lua_State *L, int opts, const char *host,
                        const char *fname);
/* After the TCP connect: starts the client handshake on s (whose reading
 * has started; the caller's reference passes to it), the three values at
 * plan..plan+2; returns with reader and writer pushed once it is done. */
int tls_client_begin(lua_State *L, lstream *s, int plan);
/* start_server's options: if the table at opts has `ssl`, replaces the
 * handler at index 1 with one that does the server handshake first. */
void tls_server_options(lua_State *L, int opts, const char *fname);
/* Adds start_tls to the StreamWriter methods table at idx. */
void tls_open_writer(lua_State *L, int methods);

/* ---- contexts (ssl_context.c) ----------------------------------------- */

typedef struct tls_ctx tls_ctx;
/* The SSLContext at idx (raises naming fname and arg otherwise). */
tls_ctx *tls_check_ctx(lua_State *L, int idx, const char *fname);
/* Pushes the default client context (made once, then shared). */
tls_ctx *tls_push_default_ctx(lua_State *L);
/* A new SSL for the context: server or client side by the context's
 * purpose; NULL when out of memory. */
struct ssl_st *tls_ctx_new_ssl(tls_ctx *x);
int tls_ctx_server_side(tls_ctx *x);
int tls_ctx_check_hostname(tls_ctx *x);
/* For a server that runs its own TLS (asyncio.http.server, GnuTLS): the
 * context's SSL_CTX, verify mode (0 none, 1 optional, 2 required), ALPN
 * list in wire format, and whether set_ciphers changed the ciphers. */
struct ssl_ctx_st *tls_ctx_ssl(tls_ctx *x);
int tls_ctx_verify_mode(tls_ctx *x);
int tls_ctx_ciphers_set(tls_ctx *x);
const unsigned char *tls_ctx_alpn(tls_ctx *x, unsigned *len);
/* Pushes an SSLError for OpenSSL error `code`, or (verify not X509_V_OK)
 * an SSLCertVerificationError naming the reason; `where` names the peer
 * or file, `host` the name a certificate was checked against. */
void tls_push_ssl_error(lua_State *L, unsigned long code, long verify,
                        const char *host, const char *where);
/* Raises the SSLError of OpenSSL's error queue (a context method
 * failed), naming the function. */
int tls_raise_queue(lua_State *L, const char *fname, const char *where);
void io_open_ssl(lua_State *L, lasync_host *h);

#endif
