/* asyncio.ssl: SSLContext (an OpenSSL SSL_CTX with Python's defaults and
 * fields), create_default_context, the constants, and the SSLError /
 * SSLCertVerificationError classes with the errors built from OpenSSL's.
 *
 * A context is a userdata holding the SSL_CTX; each connection's SSL
 * takes its own reference to the SSL_CTX, and the Lua value is kept alive
 * by whatever handshakes with it (the writer's user value, a server's
 * handler closure), since the ALPN selection reads the userdata. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define CTX_MT "asyncio.ssl.SSLContext"
#define DEFAULT_KEY "lasync.ssl.default"

enum { CERT_NONE = 0, CERT_OPTIONAL = 1, CERT_REQUIRED = 2 };

struct tls_ctx {
  SSL_CTX *ctx;
  int server;          /* Purpose.CLIENT_AUTH: a server's context */
  int check_hostname;
  int verify_mode;
  unsigned char alpn[256]; /* wire format: length-prefixed names */
  unsigned alpn_len;
  int ciphers_set;     /* set_ciphers ran: a server with its own TLS refuses */
};

/* ---- errors ----------------------------------------------------------- */

/* Python's reason mnemonic from OpenSSL's text: "wrong version number"
 * -> "WRONG_VERSION_NUMBER". */
static void push_reason(lua_State *L, unsigned long code) {
  const char *text = code ? ERR_reason_error_string(code) : NULL;
  char buf[128];
  size_t i = 0;
  if (!text) text = code ? "unknown error" : "unexpected eof";
  for (; text[i] && i + 1 < sizeof buf; i++)
    buf[i] = text[i] == ' ' || text[i] == '-' ? '_'
                                              : (char)toupper((unsigned char)text[i]);
  buf[i] = 0;
  lua_pushstring(L, buf);
}

void tls_push_ssl_error(lua_State *L, unsigned long code, long verify,
                        const char *host, const char *where) {
  if (verify != X509_V_OK) {
    const char *vmsg;
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH && host)
      vmsg = lua_pushfstring(L, "Hostname mismatch, certificate is not "
                                "valid for '%s'.", host);
    else if (verify == X509_V_ERR_IP_ADDRESS_MISMATCH && host)
      vmsg = lua_pushfstring(L, "IP address mismatch, certificate is not "
                                "valid for '%s'.", host);
    else
      vmsg = lua_pushstring(L, X509_verify_cert_error_string(verify));
    host_error_new(L, "SSLCertVerificationError",
                   "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                   "failed: %s (%s)", vmsg, where);
    lua_insert(L, -2);
    lua_setfield(L, -2, "verify_message");
    lua_pushinteger(L, verify);
    lua_setfield(L, -2, "verify_code");
    lua_pushliteral(L, "CERTIFICATE_VERIFY_FAILED");
    lua_setfield(L, -2, "reason");
    lua_pushliteral(L, "SSL");
    lua_setfield(L, -2, "library");
    return;
  }
  push_reason(L, code);
  const char *text = code ? ERR_reason_error_string(code) : NULL;
  host_error_new(L, "SSLError", "[SSL: %s] %s (%s)", lua_tostring(L, -1),
                 text ? text : "EOF occurred in violation of protocol", where);
  lua_insert(L, -2);
  lua_setfield(L, -2, "reason");
  const char *lib = code ? ERR_lib_error_string(code) : NULL;
  lua_pushstring(L, lib ? lib : "SSL");
  lua_setfield(L, -2, "library");
}

int tls_raise_queue(lua_State *L, const char *fname, const char *where) {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  tls_push_ssl_error(L, code, X509_V_OK, NULL,
                     lua_pushfstring(L, "%s '%s'", fname, where));
  return lua_error(L);
}

/* ---- the context ------------------------------------------------------ */

tls_ctx *tls_check_ctx(lua_State *L, int idx, const char *fname) {
  tls_ctx *x = luaL_testudata(L, idx, CTX_MT);
  if (!x || !x->ctx)
    luaL_error(L, "bad argument #%d to '%s' (SSLContext expected, got %s)",
               idx, fname, luaL_typename(L, idx));
  return x;
}

SSL *tls_ctx_new_ssl(tls_ctx *x) { return SSL_new(x->ctx); }
int tls_ctx_server_side(tls_ctx *x) { return x->server; }
int tls_ctx_check_hostname(tls_ctx *x) { return x->check_hostname; }
SSL_CTX *tls_ctx_ssl(tls_ctx *x) { return x->ctx; }
int tls_ctx_verify_mode(tls_ctx *x) { return x->verify_mode; }
int tls_ctx_ciphers_set(tls_ctx *x) { return x->ciphers_set; }
const unsigned char *tls_ctx_alpn(tls_ctx *x, unsigned *len) {
  *len = x->alpn_len;
  return x->alpn;
}

static void apply_verify(tls_ctx *x) {
  int mode = SSL_VERIFY_NONE;
  if (x->verify_mode == CERT_OPTIONAL) mode = SSL_VERIFY_PEER;
  if (x->verify_mode == CERT_REQUIRED)
    mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(x->ctx, mode, NULL);
}

/* The server's ALPN choice: its own first protocol the client offers. */
static int select_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg) {
  tls_ctx *x = arg;
  unsigned char *o;
  (void)ssl;
  if (x->alpn_len == 0 ||
      SSL_select_next_proto(&o, outlen, x->alpn, x->alpn_len, in, inlen) !=
          OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

/* A context for `server` (Purpose.CLIENT_AUTH) or a client, with
 * create_default_context's settings: a client verifies the server's
 * certificate against the system store and checks its name; TLS 1.2 at
 * least. */
static tls_ctx *new_ctx(lua_State *L, int server) {
  tls_ctx *x = lua_newuserdatauv(L, sizeof *x, 0);
  memset(x, 0, sizeof *x);
  luaL_setmetatable(L, CTX_MT);
  x->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!x->ctx) luaL_error(L, "asyncio.ssl: out of memory");
  x->server = server;
  SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(x->ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!server) {
    x->check_hostname = 1;
    x->verify_mode = CERT_REQUIRED;
    SSL_CTX_set_default_verify_paths(x->ctx);
  } else {
    SSL_CTX_set_alpn_select_cb(x->ctx, select_alpn, x);
  }
  apply_verify(x);
  return x;
}

static int ctx_gc(lua_State *L) {
  tls_ctx *x = luaL_checkudata(L, 1, CTX_MT);
  if (x->ctx) SSL_CTX_free(x->ctx);
  x->ctx = NULL;
  return 0;
}

static const char *const PURPOSES[] = {"SERVER_AUTH", "CLIENT_AUTH", NULL};

/* create_default_context([purpose]): Purpose.SERVER_AUTH (the default:
 * a client's context) or Purpose.CLIENT_AUTH (a server's). */
static int l_create_default_context(lua_State *L) {
  const char *p = lua_isnoneornil(L, 1) ? PURPOSES[0] : lua_tostring(L, 1);
  int purpose = -1;
  for (int i = 0; p && lua_type(L, 1) != LUA_TNUMBER && PURPOSES[i]; i++)
    if (strcmp(p, PURPOSES[i]) == 0) purpose = i;
  if (purpose < 0)
    return luaL_error(L, "bad argument #1 to 'create_default_context' "
                         "(asyncio.ssl.Purpose.SERVER_AUTH or CLIENT_AUTH "
                         "expected, got %s)", luaL_typename(L, 1));
  new_ctx(L, purpose == 1);
  return 1;
}

tls_ctx *tls_push_default_ctx(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  tls_ctx *x = new_ctx(L, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY);
  return x;
}

/* A file argument: a string without NUL bytes naming a readable file
 * (FileNotFoundError / PermissionError otherwise, as Python). */
static const char *check_file(lua_State *L, int idx, const char *fname,
                              const char *what) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "bad argument #%d to '%s' (%s: string expected, got %s)",
               idx, fname, what, luaL_typename(L, idx));
  size_t n;
  const char *path = lua_tolstring(L, idx, &n);
  if (strlen(path) != n)
    luaL_error(L, "bad argument #%d to '%s' (%s contains a NUL byte)", idx,
               fname, what);
  FILE *f = fopen(path, "r");
  if (!f) {
    host_push_oserror(L, -errno, fname, path);
    lua_error(L);
  }
  fclose(f);
  return path;
}

static int pass_cb(char *buf, int size, int rw, void *u) {
  const char *pw = u;
  size_t n = strlen(pw);
  (void)rw;
  if (n > (size_t)size) n = (size_t)size;
  memcpy(buf, pw, n);
  return (int)n;
}

/* ctx:load_cert_chain(certfile [, keyfile [, password]]) */
static int ctx_load_cert_chain(lua_State *L) {
  tls_ctx *x = tls_check_ctx(L, 1, "load_cert_chain");
  const char *cert = check_file(L, 2, "load_cert_chain", "certfile");
  const char *key = lua_isnoneornil(L, 3)
                        ? cert
                        : check_file(L, 3, "load_cert_chain", "keyfile");
  const char *pw = lua_isnoneornil(L, 4) ? "" : host_check_cstring(L, 4, NULL);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(x->ctx, cert) != 1)
    return tls_raise_queue(L, "load_cert_chain", cert);
  SSL_CTX_set_default_passwd_cb(x->ctx, pass_cb);
  SSL_CTX_set_default_passwd_cb_userdata(x->ctx, (void *)pw);
  int ok = SSL_CTX_use_PrivateKey_file(x->ctx, key, SSL_FILETYPE_PEM) == 1;
  SSL_CTX_set_default_passwd_cb(x->ctx, NULL);
  SSL_CTX_set_default_passwd_cb_userdata(x->ctx, NULL);
  if (!ok) return tls_raise_queue(L, "load_cert_chain", key);
  if (SSL_CTX_check_private_key(x->ctx) != 1)
    return tls_raise_queue(L, "load_cert_chain", key);
  return 0;
}

/* ctx:load_verify_locations(cafile) or {cafile =, capath =} */
static int ctx_load_verify_locations(lua_State *L) {
  static const char *const known[] = {"cafile", "capath", NULL};
  tls_ctx *x = tls_check_ctx(L, 1, "load_verify_locations");
  const char *file = NULL, *dir = NULL;
  lua_settop(L, 2);
  if (lua_istable(L, 2)) {
    host_check_options(L, 2, known);
    lua_getfield(L, 2, "cafile");
    lua_getfield(L, 2, "capath");
    if (!lua_isnil(L, 3))
      file = check_file(L, 3, "load_verify_locations", "cafile");
    if (!lua_isnil(L, 4))
      dir = host_opt_cstring(L, 4, 2, "option 'capath'");
  } else {
    file = check_file(L, 2, "load_verify_locations", "cafile");
  }
  if (!file && !dir)
    return luaL_error(L, "bad argument #2 to 'load_verify_locations' "
                         "(cafile or capath must be given)");
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(x->ctx, file, dir) != 1)
    return tls_raise_queue(L, "load_verify_locations", file ? file : dir);
  return 0;
}

static int ctx_load_default_certs(lua_State *L) {
  tls_ctx *x = tls_check_ctx(L, 1, "load_default_certs");
  SSL_CTX_set_default_verify_paths(x->ctx);
  return 0;
}

/* ctx:set_alpn_protocols{"h2", "http/1.1"}: offered by a client in this
 * order; a server picks its first one the client offers. */
static int ctx_set_alpn_protocols(lua_State *L) {
  tls_ctx *x = tls_check_ctx(L, 1, "set_alpn_protocols");
  luaL_checktype(L, 2, LUA_TTABLE);
  unsigned char wire[sizeof x->alpn];
  unsigned len = 0;
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t k = 0;
    const char *p = NULL;
    if (lua_rawgeti(L, 2, i) == LUA_TSTRING) p = lua_tolstring(L, -1, &k);
    if (!p || k == 0 || k > 255)
      return luaL_error(L, "bad argument #2 to 'set_alpn_protocols' "
                           "(item %I: non-empty string of at most 255 "
                           "bytes expected)", i);
    if (len + 1 + k > sizeof wire)
      return luaL_error(L, "bad argument #2 to 'set_alpn_protocols' "
                           "(the protocols take over %d bytes)",
                        (int)sizeof wire);
    wire[len++] = (unsigned char)k;
    memcpy(wire + len, p, k);
    len += (unsigned)k;
    lua_pop(L, 1);
  }
  memcpy(x->alpn, wire, len);
  x->alpn_len = len;
  if (!x->server && SSL_CTX_set_alpn_protos(x->ctx, x->alpn, len) != 0)
    return luaL_error(L, "asyncio.ssl: out of memory");
  return 0;
}

static int ctx_set_ciphers(lua_State *L) {
  tls_ctx *x = tls_check_ctx(L, 1, "set_ciphers");
  const char *list = host_check_cstring(L, 2, NULL);
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(x->ctx, list) != 1)
    return tls_raise_queue(L, "set_ciphers", list);
  x->ciphers_set = 1;
  return 0;
}

/* ---- fields ----------------------------------------------------------- */

static const struct {
  const char *name;
  int version;
} VERSIONS[] = {{"MINIMUM_SUPPORTED", 0}, {"TLSv1", TLS1_VERSION},
                {"TLSv1_1", TLS1_1_VERSION}, {"TLSv1_2", TLS1_2_VERSION},
                {"TLSv1_3", TLS1_3_VERSION}, {"MAXIMUM_SUPPORTED", 0}};
#define NVERSIONS (sizeof VERSIONS / sizeof VERSIONS[0])

static void push_version(lua_State *L, int v, int max) {
  for (size_t i = 1; i + 1 < NVERSIONS; i++)
    if (VERSIONS[i].version == v) {
      lua_pushstring(L, VERSIONS[i].name);
      return;
    }
  lua_pushstring(L, VERSIONS[max ? NVERSIONS - 1 : 0].name);
}

static int check_version(lua_State *L, const char *field) {
  const char *name = lua_tostring(L, 3);
  for (size_t i = 0; name && lua_type(L, 3) == LUA_TSTRING && i < NVERSIONS;
       i++)
    if (strcmp(VERSIONS[i].name, name) == 0) return VERSIONS[i].version;
  return luaL_error(L, "bad value for SSLContext.%s (an asyncio.ssl."
                       "TLSVersion name expected, got %s)", field,
                    luaL_typename(L, 3));
}

static int ctx_index(lua_State *L) {
  tls_ctx *x = tls_check_ctx(L, 1, "SSLContext");
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  if (strcmp(k, "check_hostname") == 0)
    lua_pushboolean(L, x->check_hostname);
  else if (strcmp(k, "verify_mode") == 0)
    lua_pushinteger(L, x->verify_mode);
  else if (strcmp(k, "minimum_version") == 0)
    push_version(L, (int)SSL_CTX_get_min_proto_version(x->ctx), 0);
  else if (strcmp(k, "maximum_version") == 0)
    push_version(L, (int)SSL_CTX_get_max_proto_version(x->ctx), 1);
  else if (strcmp(k, "purpose") == 0)
    lua_pushstring(L, PURPOSES[x->server]);
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

/* Python's rules: check_hostname needs verification (turning it on makes
 * CERT_NONE CERT_REQUIRED); CERT_NONE is refused while it is on. */
static int ctx_newindex(lua_State *L) {
  tls_ctx *x = tls_check_ctx(L, 1, "SSLContext");
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  if (strcmp(k, "check_hostname") == 0) {
    luaL_argexpected(L, lua_isboolean(L, 3), 3, "boolean");
    x->check_hostname = lua_toboolean(L, 3);
    if (x->check_hostname && x->verify_mode == CERT_NONE) {
      x->verify_mode = CERT_REQUIRED;
      apply_verify(x);
    }
  } else if (strcmp(k, "verify_mode") == 0) {
    int isint;
    lua_Integer m = lua_tointegerx(L, 3, &isint);
    if (!isint || m < CERT_NONE || m > CERT_REQUIRED)
      return luaL_error(L, "bad value for SSLContext.verify_mode "
                           "(asyncio.ssl.CERT_NONE, CERT_OPTIONAL or "
                           "CERT_REQUIRED expected)");
    if (m == CERT_NONE && x->check_hostname)
      return host_error_raise(L, "ValueError", "Cannot set verify_mode to "
                              "CERT_NONE when check_hostname is enabled.");
    x->verify_mode = (int)m;
    apply_verify(x);
  } else if (strcmp(k, "minimum_version") == 0) {
    SSL_CTX_set_min_proto_version(x->ctx, check_version(L, k));
  } else if (strcmp(k, "maximum_version") == 0) {
    SSL_CTX_set_max_proto_version(x->ctx, check_version(L, k));
  } else {
    return luaL_error(L, "SSLContext has no field '%s' (fields: "
                         "check_hostname, verify_mode, minimum_version, "
                         "maximum_version)", k);
  }
  return 0;
}

static int ctx_tostring(lua_State *L) {
  tls_ctx *x = luaL_checkudata(L, 1, CTX_MT);
  lua_pushfstring(L, "<SSLContext %s%s>", x->server ? "server" : "client",
                  x->ctx ? "" : " finalized");
  return 1;
}

/* ---- the module table ------------------------------------------------- */

void io_open_ssl(lua_State *L, lasync_host *h) {
  static const luaL_Reg methods[] = {
      {"load_cert_chain", ctx_load_cert_chain},
      {"load_verify_locations", ctx_load_verify_locations},
      {"load_default_certs", ctx_load_default_certs},
      {"set_default_verify_paths", ctx_load_default_certs},
      {"set_alpn_protocols", ctx_set_alpn_protocols},
      {"set_ciphers", ctx_set_ciphers},
      {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__index", ctx_index},
                                   {"__newindex", ctx_newindex},
                                   {"__gc", ctx_gc},
                                   {"__tostring", ctx_tostring},
                                   {NULL, NULL}};
  (void)h;
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  host_new_type(L, CTX_MT, NULL, meta, 1);
  lua_newtable(L); /* asyncio.ssl */
  lua_pushcfunction(L, l_create_default_context);
  lua_setfield(L, -2, "create_default_context");
  host_error_class(L, "SSLError", "OSError");
  lua_setfield(L, -2, "SSLError");
  host_error_class(L, "SSLCertVerificationError", "SSLError");
  lua_setfield(L, -2, "SSLCertVerificationError");
  io_setfield_int(L, "CERT_NONE", CERT_NONE);
  io_setfield_int(L, "CERT_OPTIONAL", CERT_OPTIONAL);
  io_setfield_int(L, "CERT_REQUIRED", CERT_REQUIRED);
  lua_createtable(L, 0, 2);
  for (int i = 0; PURPOSES[i]; i++) {
    lua_pushstring(L, PURPOSES[i]);
    lua_setfield(L, -2, PURPOSES[i]);
  }
  lua_setfield(L, -2, "Purpose");
  lua_createtable(L, 0, (int)NVERSIONS);
  for (size_t i = 0; i < NVERSIONS; i++) {
    lua_pushstring(L, VERSIONS[i].name);
    lua_setfield(L, -2, VERSIONS[i].name);
  }
  lua_setfield(L, -2, "TLSVersion");
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "OPENSSL_VERSION");
  lua_setfield(L, -2, "ssl");
}
