/* serve(..., {ssl = ctx}): an asyncio.ssl server context carried over to
 * libmicrohttpd's own TLS (GnuTLS), so that streams and the HTTP server
 * are configured one way (docs/http_server.md, "TLS", says why this and
 * not OpenSSL streams in front of libmicrohttpd).
 *
 * What translates: the certificate chain and key load_cert_chain put in
 * the SSL_CTX (written out as PEM, the key unencrypted, for GnuTLS to
 * parse), minimum_version / maximum_version (a GnuTLS priority string).
 * What does not is refused rather than dropped: client certificates
 * (verify_mode), a set_ciphers list (OpenSSL's names), ALPN other than
 * "http/1.1" (libmicrohttpd 0.9.75 answers no ALPN, which clients take as
 * HTTP/1.1).  And web_tls_only_handshakes, which keeps a handshake
 * stalled by its client from costing the loop a run every millisecond. */
#include <string.h>
#include <sys/ioctl.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "http_server.h"
#include "tls.h"

/* PEM of everything in the BIO, pushed as a Lua string; frees the BIO. */
static void push_bio(lua_State *L, BIO *b) {
  char *data;
  long n = BIO_get_mem_data(b, &data);
  lua_pushlstring(L, data, n > 0 ? (size_t)n : 0);
  BIO_free(b);
}

static int alpn_only_http11(tls_ctx *x) {
  unsigned len, i = 0;
  const unsigned char *w = tls_ctx_alpn(x, &len);
  while (i < len) {
    unsigned k = w[i];
    if (k == 8 && memcmp(w + i + 1, "http/1.1", 8) == 0) return 1;
    i += 1 + k;
  }
  return len == 0;
}

/* "+VERS-TLS1.x" for each version the context allows (0: no bound). */
static void push_priorities(lua_State *L, SSL_CTX *ctx) {
  static const struct { int v; const char *name; } vers[] = {
      {TLS1_VERSION, "+VERS-TLS1.0"}, {TLS1_1_VERSION, "+VERS-TLS1.1"},
      {TLS1_2_VERSION, "+VERS-TLS1.2"}, {TLS1_3_VERSION, "+VERS-TLS1.3"}};
  long lo = SSL_CTX_get_min_proto_version(ctx);
  long hi = SSL_CTX_get_max_proto_version(ctx);
  luaL_Buffer b;
  int any = 0;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "NORMAL:-VERS-ALL");
  for (size_t i = 0; i < sizeof vers / sizeof vers[0]; i++)
    if ((!lo || vers[i].v >= lo) && (!hi || vers[i].v <= hi)) {
      luaL_addchar(&b, ':');
      luaL_addstring(&b, vers[i].name);
      any = 1;
    }
  luaL_pushresult(&b);
  if (!any)
    luaL_error(L, "serve(): option ssl: the SSLContext's minimum_version is "
                  "above its maximum_version");
}

/* ssl_options(ctx) -> certificate chain PEM, key PEM, GnuTLS priorities. */
int web_l_ssl_options(lua_State *L) {
  tls_ctx *x = tls_check_ctx(L, 1, "serve");
  SSL_CTX *ctx = tls_ctx_ssl(x);
  if (!tls_ctx_server_side(x))
    return luaL_error(L, "serve(): option ssl must be a server's SSLContext "
                         "(create_default_context(Purpose.CLIENT_AUTH))");
  if (tls_ctx_verify_mode(x) != 0)
    return luaL_error(L, "serve(): option ssl: client certificates "
                         "(verify_mode other than CERT_NONE) are not "
                         "supported by the HTTP server");
  if (tls_ctx_ciphers_set(x))
    return luaL_error(L, "serve(): option ssl: a set_ciphers list cannot be "
                         "carried over to the HTTP server's TLS (GnuTLS)");
  if (!alpn_only_http11(x))
    return luaL_error(L, "serve(): option ssl: the HTTP server speaks "
                         "HTTP/1.1 only: its ALPN list must include "
                         "'http/1.1' (or be empty)");
  X509 *cert = SSL_CTX_get0_certificate(ctx);
  EVP_PKEY *key = SSL_CTX_get0_privatekey(ctx);
  if (!cert || !key)
    return luaL_error(L, "serve(): option ssl: the SSLContext has no "
                         "certificate (call load_cert_chain first)");
  STACK_OF(X509) *chain = NULL;
  BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_secmem());
  int ok = cb && kb && PEM_write_bio_X509(cb, cert) &&
           SSL_CTX_get0_chain_certs(ctx, &chain) &&
           PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL);
  for (int i = 0; ok && chain && i < sk_X509_num(chain); i++)
    ok = PEM_write_bio_X509(cb, sk_X509_value(chain, i));
  if (!ok) {
    BIO_free(cb);
    BIO_free(kb);
    return luaL_error(L, "serve(): option ssl: cannot export the "
                         "certificate and key (out of memory)");
  }
  push_bio(L, cb);
  push_bio(L, kb);
  push_priorities(L, ctx);
  return 3;
}

/* libmicrohttpd 0.9.75 says "run again at once" (MHD_get_timeout gives 0)
 * for as long as a connection's TLS handshake waits for its peer: the
 * handshake reads the socket through GnuTLS, whose EAGAIN does not clear
 * the connection's read-ready mark, so the connection stays on the
 * epoll "ready" list.  Running it again only reads EAGAIN once more; the
 * peer's next bytes are an edge on the epoll descriptor, which our poll
 * sees.  That is the only explanation when no connection is in a request
 * (a request being read, handled or answered is real work) and no socket
 * holds unread bytes (left there by a run that read only part). */
int web_tls_only_handshakes(web_server *s) {
  if (host_list_empty(&s->conns)) return 0;
  for (host_link *l = s->conns.next; l != &s->conns; l = l->next) {
    web_conn *wc = host_container_of(l, web_conn, link);
    if (wc->in_request) return 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(wc->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int unread = 0;
    if (!ci || ioctl(ci->connect_fd, FIONREAD, &unread) != 0 || unread > 0)
      return 0;
  }
  return 1;
}
