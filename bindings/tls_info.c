/* get_extra_info for a TLS stream: "peercert" (the peer's certificate as
 * Python's SSLSocket.getpeercert() decodes it, as Lua tables), "cipher"
 * ({name, version, bits}) and "ssl_object" (a snapshot with Python's
 * SSLObject methods: version(), selected_alpn_protocol(), cipher(),
 * getpeercert()). */
#include <arpa/inet.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* {{"commonName", "localhost"}, ..., commonName = "localhost"}: the
 * entries in order (Python's tuple of pairs), and by name for ease. */
static void push_name(lua_State *L, X509_NAME *name) {
  int n = X509_NAME_entry_count(name);
  lua_createtable(L, n, n);
  for (int i = 0; i < n; i++) {
    X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
    ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(e);
    int nid = OBJ_obj2nid(obj);
    char key[80];
    if (nid != NID_undef)
      snprintf(key, sizeof key, "%s", OBJ_nid2ln(nid));
    else
      OBJ_obj2txt(key, sizeof key, obj, 1);
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    lua_createtable(L, 2, 0);
    lua_pushstring(L, key);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, len > 0 ? (char *)utf8 : "", len > 0 ? (size_t)len : 0);
    OPENSSL_free(utf8);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, key);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, i + 1);
  }
}

/* "Dec  2 02:19:20 2027 GMT", as Python. */
static void push_time(lua_State *L, const ASN1_TIME *t) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL;
  long n = 0;
  if (b && ASN1_TIME_print(b, t)) n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p ? p : "", p ? (size_t)n : 0);
  BIO_free(b);
}

static void push_pair(lua_State *L, const char *kind, const char *v,
                      size_t len) {
  lua_createtable(L, 2, 0);
  lua_pushstring(L, kind);
  lua_rawseti(L, -2, 1);
  lua_pushlstring(L, v, len);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* {{"DNS", "localhost"}, {"IP Address", "127.0.0.1"}, ...} */
static void push_san(lua_State *L, X509 *cert) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL,
                                          NULL);
  lua_newtable(L);
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    const ASN1_STRING *s;
    char ip[64];
    switch (g->type) {
    case GEN_DNS:
    case GEN_EMAIL:
    case GEN_URI:
      s = g->d.ia5;
      push_pair(L, g->type == GEN_DNS ? "DNS" : g->type == GEN_URI ? "URI"
                                                                    : "email",
                (const char *)ASN1_STRING_get0_data(s),
                (size_t)ASN1_STRING_length(s));
      break;
    case GEN_IPADD:
      s = g->d.ip;
      if (!inet_ntop(ASN1_STRING_length(s) == 4 ? AF_INET : AF_INET6,
                     ASN1_STRING_get0_data(s), ip, sizeof ip))
        strcpy(ip, "<invalid>");
      push_pair(L, "IP Address", ip, strlen(ip));
      break;
    default:
      break;
    }
  }
  GENERAL_NAMES_free(names);
}

/* Python's getpeercert(): {} when the certificate was not verified
 * (CERT_NONE), nil without one. */
static void push_peercert(lua_State *L, SSL *ssl) {
  X509 *cert = SSL_get0_peer_certificate(ssl);
  if (!cert) {
    lua_pushnil(L);
    return;
  }
  lua_newtable(L);
  if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE) return;
  push_name(L, X509_get_subject_name(cert));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(cert));
  lua_setfield(L, -2, "issuer");
  lua_pushinteger(L, X509_get_version(cert) + 1);
  lua_setfield(L, -2, "version");
  push_time(L, X509_get0_notBefore(cert));
  lua_setfield(L, -2, "notBefore");
  push_time(L, X509_get0_notAfter(cert));
  lua_setfield(L, -2, "notAfter");
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  lua_pushstring(L, hex ? hex : "");
  lua_setfield(L, -2, "serialNumber");
  OPENSSL_free(hex);
  BN_free(bn);
  push_san(L, cert);
  if (lua_rawlen(L, -1) > 0)
    lua_setfield(L, -2, "subjectAltName");
  else
    lua_pop(L, 1);
}

static void push_cipher(lua_State *L, SSL *ssl) {
  const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
  if (!ci) {
    lua_pushnil(L);
    return;
  }
  lua_createtable(L, 3, 3);
  lua_pushstring(L, SSL_CIPHER_get_name(ci));
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "name");
  lua_rawseti(L, -2, 1);
  lua_pushstring(L, SSL_CIPHER_get_version(ci));
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "version");
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, SSL_CIPHER_get_bits(ci, NULL));
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "bits");
  lua_rawseti(L, -2, 3);
}

/* A method of the ssl_object snapshot: returns its upvalue. */
static int snapshot_get(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

static void snapshot_method(lua_State *L, const char *name) {
  lua_pushcclosure(L, snapshot_get, 1);
  lua_setfield(L, -2, name);
}

static void push_ssl_object(lua_State *L, tls_conn *c) {
  SSL *ssl = tls_ssl(c);
  const unsigned char *alpn = NULL;
  unsigned alen = 0;
  lua_createtable(L, 0, 6);
  lua_pushstring(L, SSL_get_version(ssl));
  snapshot_method(L, "version");
  SSL_get0_alpn_selected(ssl, &alpn, &alen);
  if (alen)
    lua_pushlstring(L, (const char *)alpn, alen);
  else
    lua_pushnil(L);
  snapshot_method(L, "selected_alpn_protocol");
  push_cipher(L, ssl);
  snapshot_method(L, "cipher");
  push_peercert(L, ssl);
  snapshot_method(L, "getpeercert");
  lua_pushboolean(L, tls_server_side(c));
  lua_setfield(L, -2, "server_side");
  const char *name = tls_server_side(c)
                         ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
                         : tls_hostname(c);
  if (name) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "server_hostname");
  }
}

int tls_extra_info(lua_State *L, tls_conn *c, const char *what) {
  if (strcmp(what, "peercert") == 0)
    push_peercert(L, tls_ssl(c));
  else if (strcmp(what, "cipher") == 0)
    push_cipher(L, tls_ssl(c));
  else if (strcmp(what, "ssl_object") == 0)
    push_ssl_object(L, c);
  else if (strcmp(what, "compression") == 0)
    lua_pushnil(L);
  else
    return 0;
  return 1;
}
