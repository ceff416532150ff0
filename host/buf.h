/* A growable byte buffer for bytes that C collects outside Lua: curl's
 * write and header callbacks, a read on libuv's thread pool.  luaL_Buffer
 * cannot serve there (it lives on the stack of a running Lua function), so
 * the bindings that collect bytes in loop callbacks share this one. */
#ifndef LASYNC_BUF_H
#define LASYNC_BUF_H

#include <stdlib.h>
#include <string.h>

typedef struct host_buf {
  char *p;
  size_t len, cap;
} host_buf;

#define HOST_BUF_MIN 4096

/* Sets the capacity to exactly cap (>= len): a caller that knows the size
 * (Content-Length, fstat) allocates once.  Returns 0, or -1 when out of
 * memory (the buffer is unchanged). */
static inline int host_buf_resize(host_buf *b, size_t cap) {
  char *p = realloc(b->p, cap ? cap : 1);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* Makes room for n more bytes, doubling (from HOST_BUF_MIN). */
static inline int host_buf_reserve(host_buf *b, size_t n) {
  if (n <= b->cap - b->len) return 0;
  if (n > (size_t)-1 / 2 - b->len) return -1;
  size_t cap = b->cap ? b->cap : HOST_BUF_MIN;
  while (cap < b->len + n) cap *= 2;
  return host_buf_resize(b, cap);
}

static inline int host_buf_add(host_buf *b, const char *d, size_t n) {
  if (host_buf_reserve(b, n)) return -1;
  memcpy(b->p + b->len, d, n);
  b->len += n;
  return 0;
}

static inline void host_buf_free(host_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

#endif
