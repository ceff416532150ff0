/* Making a Lua state for the host: a pooled allocator, and the panic and
 * warning functions luaL_newstate would have set.
 *
 * Tasks allocate many small blocks of a few sizes (thread, stack, call
 * infos, the Task record, closures).  Lua tells the allocator the size of
 * every block it frees, so small blocks can come from per-size free lists
 * carved out of large chunks: no per-block header, no search, and freed
 * blocks are reused by the next task.  Chunks go back to the system when the
 * state closes.  Set LASYNC_POOL=0 (the sanitizer and valgrind runs do) to
 * use malloc for every block, so the checkers see each one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

#define POOL_MAX 1024          /* larger blocks come from malloc */
#define POOL_GRAIN 16
#define POOL_CLASSES (POOL_MAX / POOL_GRAIN)
#define POOL_CHUNK (64 * 1024)

typedef struct pool_chunk {
  struct pool_chunk *next;
  size_t pad; /* keeps blocks 16-byte aligned */
} pool_chunk;

struct host_pool {
  void *free[POOL_CLASSES];
  char *cur, *end;
  pool_chunk *chunks;
};

static unsigned size_class(size_t n) {
  return (unsigned)((n + POOL_GRAIN - 1) / POOL_GRAIN) - 1;
}

/* A new chunk, and the block of `size` bytes at its start.  Out of the
 * fast path, so that pool_get inlines into pool_alloc. */
static __attribute__((noinline)) void *pool_refill(host_pool *p,
                                                   size_t size) {
  pool_chunk *chunk = malloc(POOL_CHUNK);
  if (!chunk) return NULL;
  chunk->next = p->chunks;
  p->chunks = chunk;
  p->cur = (char *)(chunk + 1) + size;
  p->end = (char *)chunk + POOL_CHUNK;
  return chunk + 1;
}

static inline void *pool_get(host_pool *p, size_t n) {
  unsigned c = size_class(n);
  void *b = p->free[c];
  if (b) {
    p->free[c] = *(void **)b;
    return b;
  }
  size_t size = (size_t)(c + 1) * POOL_GRAIN;
  if ((size_t)(p->end - p->cur) < size) return pool_refill(p, size);
  b = p->cur;
  p->cur += size;
  return b;
}

static inline void pool_put(host_pool *p, void *b, size_t n) {
  unsigned c = size_class(n);
  *(void **)b = p->free[c];
  p->free[c] = b;
}

/* A block moving between classes, or to or from malloc: out of the fast
 * path (Lua grows stacks and tables this way, rarely). */
static __attribute__((noinline)) void *pool_move(host_pool *p, void *ptr,
                                                 size_t osize, size_t nsize) {
  if (osize > POOL_MAX && nsize > POOL_MAX) return realloc(ptr, nsize);
  void *nb = nsize <= POOL_MAX ? pool_get(p, nsize) : malloc(nsize);
  if (!nb) return NULL;
  memcpy(nb, ptr, osize < nsize ? osize : nsize);
  if (osize <= POOL_MAX)
    pool_put(p, ptr, osize);
  else
    free(ptr);
  return nb;
}

/* lua_Alloc: a block's size alone says where it came from.  Every Lua
 * allocation and free comes through here (about 16 a task in W1), so the
 * two common cases, a new small block and a small block freed, are kept
 * short: 40 instructions a call before, with pool_get out of line. */
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  host_pool *p = ud;
  if (!ptr) { /* then osize is the kind of object, not a size */
    if (nsize == 0) return NULL;
    return nsize <= POOL_MAX ? pool_get(p, nsize) : malloc(nsize);
  }
  if (nsize == 0) {
    if (osize <= POOL_MAX)
      pool_put(p, ptr, osize);
    else
      free(ptr);
    return NULL;
  }
  if (osize <= POOL_MAX && nsize <= POOL_MAX &&
      size_class(osize) == size_class(nsize))
    return ptr;
  return pool_move(p, ptr, osize, nsize);
}

static void *plain_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  return 0;
}

/* Warnings as lua.c shows them: off until "@on", pieces joined until the
 * last one. */
static void warn_off(void *ud, const char *msg, int tocont);
static void warn_cont(void *ud, const char *msg, int tocont);

static int warn_control(lua_State *L, const char *msg, int tocont) {
  if (tocont || *msg != '@') return 0;
  if (strcmp(msg, "@off") == 0)
    lua_setwarnf(L, warn_off, L);
  else if (strcmp(msg, "@on") == 0)
    lua_setwarnf(L, warn_cont, L);
  return 1;
}

static void warn_off(void *ud, const char *msg, int tocont) {
  warn_control((lua_State *)ud, msg, tocont);
}

static void warn_more(void *ud, const char *msg, int tocont) {
  lua_State *L = ud;
  fputs(msg, stderr);
  if (tocont) {
    lua_setwarnf(L, warn_more, L);
  } else {
    fputs("\n", stderr);
    fflush(stderr);
    lua_setwarnf(L, warn_cont, L);
  }
}

static void warn_cont(void *ud, const char *msg, int tocont) {
  if (warn_control((lua_State *)ud, msg, tocont)) return;
  fputs("Lua warning: ", stderr);
  warn_more(ud, msg, tocont);
}

lua_State *host_newstate(host_pool **poolp) {
  const char *env = getenv("LASYNC_POOL");
  int pooled = !(env && strcmp(env, "0") == 0);
#if defined(__SANITIZE_ADDRESS__)
  pooled = 0;
#endif
  host_pool *p = NULL;
  lua_State *L;
  if (pooled && (p = calloc(1, sizeof *p)) != NULL) {
    L = lua_newstate(pool_alloc, p);
  } else {
    L = lua_newstate(plain_alloc, NULL);
  }
  if (!L) {
    free(p);
    return NULL;
  }
  lua_atpanic(L, panic);
  lua_setwarnf(L, warn_off, L);
  *poolp = p;
  return L;
}

void host_pool_free(host_pool *p) {
  if (!p) return;
  while (p->chunks) {
    pool_chunk *next = p->chunks->next;
    free(p->chunks);
    p->chunks = next;
  }
  free(p);
}
