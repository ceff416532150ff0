/* asyncio.websocket's framing: wslay (RFC 6455 framing, masking,
 * fragmentation, control frames, close codes), I/O-agnostic.
 *
 * A Codec is fed the bytes the stream read (feed) and gives back the
 * complete messages; what it must send (data, pongs to pings, the close
 * reply) is taken with output().  The Lua layer (websocket.lua) moves
 * bytes between a lasync stream and the codec, so no socket is touched
 * here.  The handshake's Sec-WebSocket-Accept uses OpenSSL's SHA-1. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <wslay/wslay.h>

#include "host.h"
#include "init.h"

#define CODEC_MT "asyncio.websocket.Codec"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct codec {
  wslay_event_context_ptr ctx;
  const char *in;          /* feed(): the bytes not yet given to wslay */
  size_t in_len;
  lua_State *L;            /* feed(): the message list is on top */
  luaL_Buffer *out;        /* output(): where frames go */
  int client;
  /* A frame wslay's frame layer refused (a control frame over 125 bytes
   * or fragmented, a 64-bit length with its top bit set): wslay 1.1.1
   * queues a close frame without a status code then, where RFC 6455
   * section 7.4.1 has 1002; output() sends a 1002 of its own instead. */
  int proto_error, proto_close_sent;
} codec;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *ud) {
  codec *c = ud;
  (void)flags;
  if (c->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = c->in_len < len ? c->in_len : len;
  memcpy(buf, c->in, n);
  c->in += n;
  c->in_len -= n;
  return (ssize_t)n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *ud) {
  codec *c = ud;
  (void)flags;
  if (!c->out) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  luaL_addlstring(c->out, (const char *)data, len);
  return (ssize_t)len;
}

static int on_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                      void *ud) {
  (void)ud;
  if (RAND_bytes(buf, (int)len) != 1) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return 0;
}

/* Appends {opcode, data[, close code]} to the list on top of c->L. */
static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
  codec *c = ud;
  lua_State *L = c->L;
  (void)ctx;
  lua_createtable(L, 3, 0);
  lua_pushinteger(L, arg->opcode);
  lua_rawseti(L, -2, 1);
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length >= 2) {
    /* the payload is the code (2 bytes) and the reason */
    lua_pushlstring(L, (const char *)arg->msg + 2, arg->msg_length - 2);
  } else {
    lua_pushlstring(L, (const char *)arg->msg, arg->msg_length);
  }
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, arg->status_code);
  lua_rawseti(L, -2, 3);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

static codec *check_codec(lua_State *L) {
  codec *c = luaL_checkudata(L, 1, CODEC_MT);
  if (!c->ctx) luaL_error(L, "the websocket codec is closed");
  return c;
}

/* new(client, max_message) -> Codec */
static int l_new(lua_State *L) {
  static const struct wslay_event_callbacks cbs = {
      on_recv, on_send, on_genmask, NULL, NULL, NULL, on_msg};
  int client = lua_toboolean(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  codec *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, CODEC_MT);
  c->client = client;
  int rc = client ? wslay_event_context_client_init(&c->ctx, &cbs, c)
                  : wslay_event_context_server_init(&c->ctx, &cbs, c);
  if (rc != 0) return luaL_error(L, "not enough memory");
  wslay_event_config_set_max_recv_msg_length(c->ctx, (uint64_t)max);
  return 1;
}

/* feed(bytes) -> {{opcode, data, close_code}...}; raises on a protocol
 * error (wslay has queued the close frame that says why). */
static int l_feed(lua_State *L) {
  codec *c = check_codec(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  lua_newtable(L);
  c->in = s;
  c->in_len = n;
  c->L = L;
  int rc = wslay_event_recv(c->ctx);
  c->L = NULL;
  c->in = NULL;
  c->in_len = 0;
  if (rc == WSLAY_ERR_CALLBACK_FAILURE) { /* on_recv never fails: a bad frame */
    c->proto_error = 1;
    return luaL_error(L, "websocket: protocol error (a malformed frame)");
  }
  if (rc != 0) return luaL_error(L, "websocket: protocol error (%d)", rc);
  return 1;
}

/* queue(opcode, data) */
static int l_queue(lua_State *L) {
  codec *c = check_codec(L);
  size_t n;
  lua_Integer op = luaL_checkinteger(L, 2);
  const char *s = luaL_checklstring(L, 3, &n);
  struct wslay_event_msg msg = {(uint8_t)op, (const uint8_t *)s, n};
  int rc = wslay_event_queue_msg(c->ctx, &msg);
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* queue_close(code, reason) */
static int l_queue_close(lua_State *L) {
  codec *c = check_codec(L);
  size_t n;
  lua_Integer code = luaL_checkinteger(L, 2);
  const char *reason = luaL_optlstring(L, 3, "", &n);
  int rc = wslay_event_queue_close(c->ctx, (uint16_t)code,
                                   (const uint8_t *)reason, n);
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* The close frame with status 1002 (masked when a client): wslay's
 * queue is left unsent, its close frame has no status code. */
static int push_proto_close(lua_State *L, codec *c) {
  unsigned char f[8] = {0x88, 0x02, 0x03, 0xea}; /* FIN close, 2 bytes: 1002 */
  size_t n = 4;
  if (c->proto_close_sent) return lua_pushliteral(L, ""), 1;
  c->proto_close_sent = 1;
  if (c->client) {
    unsigned char mask[4];
    if (RAND_bytes(mask, 4) != 1) return luaL_error(L, "websocket: no random bytes");
    f[1] = 0x82;
    memcpy(f + 2, mask, 4);
    f[6] = 0x03 ^ mask[0];
    f[7] = 0xea ^ mask[1];
    n = 8;
  }
  lua_pushlstring(L, (const char *)f, n);
  return 1;
}

/* output() -> the bytes to send now (masked when a client) */
static int l_output(lua_State *L) {
  codec *c = check_codec(L);
  if (c->proto_error) return push_proto_close(L, c);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  c->out = &b;
  wslay_event_send(c->ctx);
  c->out = NULL;
  luaL_pushresult(&b);
  return 1;
}

/* state() -> close received, close sent, code received, code sent */
static int l_state(lua_State *L) {
  codec *c = check_codec(L);
  lua_pushboolean(L, wslay_event_get_close_received(c->ctx));
  lua_pushboolean(L, wslay_event_get_close_sent(c->ctx));
  lua_pushinteger(L, wslay_event_get_status_code_received(c->ctx));
  lua_pushinteger(L, c->proto_error ? 1002
                                     : wslay_event_get_status_code_sent(c->ctx));
  return 4;
}

static int l_gc(lua_State *L) {
  codec *c = luaL_checkudata(L, 1, CODEC_MT);
  if (c->ctx) wslay_event_context_free(c->ctx);
  c->ctx = NULL;
  return 0;
}

/* accept_key(key) -> base64(SHA-1(key .. GUID)), RFC 6455 section 4.2.2 */
static int l_accept_key(lua_State *L) {
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  unsigned char md[EVP_MAX_MD_SIZE], out[64];
  unsigned mdlen = 0;
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  if (!m) return luaL_error(L, "not enough memory");
  int ok = EVP_DigestInit_ex(m, EVP_sha1(), NULL) &&
           EVP_DigestUpdate(m, key, n) &&
           EVP_DigestUpdate(m, WS_GUID, sizeof WS_GUID - 1) &&
           EVP_DigestFinal_ex(m, md, &mdlen);
  EVP_MD_CTX_free(m);
  if (!ok) return luaL_error(L, "accept_key(): SHA-1 failed");
  int len = EVP_EncodeBlock(out, md, (int)mdlen);
  lua_pushlstring(L, (const char *)out, (size_t)len);
  return 1;
}

/* new_key() -> base64 of 16 random bytes (Sec-WebSocket-Key) */
static int l_new_key(lua_State *L) {
  unsigned char raw[16], out[32];
  if (RAND_bytes(raw, sizeof raw) != 1)
    return luaL_error(L, "new_key(): no random bytes");
  int len = EVP_EncodeBlock(out, raw, sizeof raw);
  lua_pushlstring(L, (const char *)out, (size_t)len);
  return 1;
}

LASYNC_API int luaopen_asyncio_websocket(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"feed", l_feed},   {"queue", l_queue}, {"queue_close", l_queue_close},
      {"output", l_output}, {"state", l_state}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"new", l_new},
                                   {"accept_key", l_accept_key},
                                   {"new_key", l_new_key},
                                   {NULL, NULL}};
  host_new_type(L, CODEC_MT, methods, meta, 0);
  l_load_lua_part(L, "websocket");
  luaL_newlib(L, funcs); /* core */
  l_push_lua_part_loader(L); /* for argcheck.lua */
  lua_setfield(L, -2, "lua_part");
  lua_getglobal(L, "require");
  lua_pushstring(L, "asyncio");
  lua_call(L, 1, 1);
  lua_call(L, 2, 1);
  return 1;
}
