/* The VM floor of W1 and W2 (docs/performance.md, "The VM floor"): the
 * least any runtime on the stock liblua5.4 can do for those workloads.
 *
 * The Lua part is the benchmarks' own loop (bench/w1_spawn.lua): for each
 * i a closure capturing idx (and `sleep`) is handed to `spawn`.  Here
 * spawn only makes a thread, moves the closure onto it and anchors it in a
 * table; `sleep` only yields.  A C loop then resumes every thread until it
 * yields from `sleep`, and once more to finish, adding up what they return.
 * No event loop, no task records, no error handling beyond the checks, no
 * results table: what is left is what a thread per task costs in Lua 5.4.
 *
 * usage: vm_floor w1|w2 N [plain|pool|count] [gen|inc|stop]
 *   w1     prints the W1 RESULT line (clock: spawning .. sum checked)
 *   w2     the same, with sleep(1.0) in the script (the floor's sleep does
 *          not wait): the peak RSS, at N and at N=0, gives bytes per task
 *   plain  lua_newstate with a realloc allocator (LASYNC_POOL=0's)
 *   pool   host/state.c's size-class pool, as build/lasync uses it
 *   count  realloc, counting the blocks allocated while the threads are
 *          suspended, by size, per task (stderr)
 *   gen    the generational collector, as lua.c and lasync set it (default)
 *   inc    Lua's default incremental collector
 *   stop   no collection at all (what the collector costs, by difference) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host.h"

#define COUNT_MAX 4096 /* larger blocks are counted together */

typedef struct counts {
  long live[COUNT_MAX + 1]; /* blocks alive, by size (the last: larger) */
  long big_bytes;           /* bytes in blocks larger than COUNT_MAX */
} counts;

static void count_block(counts *c, size_t size, long d) {
  if (size > COUNT_MAX) {
    c->live[COUNT_MAX] += d;
    c->big_bytes += d * (long)size;
  } else {
    c->live[size] += d;
  }
}

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counts *c = ud;
  if (ptr) count_block(c, osize, -1); /* without ptr, osize is a type */
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  void *b = realloc(ptr, nsize);
  if (b)
    count_block(c, nsize, 1);
  else if (ptr)
    count_block(c, osize, 1); /* the old block stays */
  return b;
}

/* spawn(f): a thread with f on its stack, anchored at threads[count]. */
static int l_spawn(lua_State *L) {
  lua_Integer *count = lua_touserdata(L, lua_upvalueindex(2));
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_rawseti(L, lua_upvalueindex(1), ++*count);
  return 0;
}

/* sleep(delay): suspends the thread; what the resume passes is returned. */
static int l_sleep(lua_State *L) { return lua_yield(L, 0); }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what) {
  fprintf(stderr, "vm_floor: %s\n", what);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3 || (strcmp(argv[1], "w1") != 0 && strcmp(argv[1], "w2") != 0))
    return fail("usage: vm_floor w1|w2 N [plain|pool|count] [gen|inc|stop]");
  int w2 = strcmp(argv[1], "w2") == 0;
  lua_Integer n = strtoll(argv[2], NULL, 10);
  const char *alloc = argc > 3 ? argv[3] : "plain";
  const char *gc = argc > 4 ? argv[4] : "gen";
  if (n < 0) return fail("N must be 0 or more");

  static counts c;
  host_pool *pool = NULL;
  lua_State *L;
  if (strcmp(alloc, "count") == 0) {
    L = lua_newstate(count_alloc, &c);
  } else if (strcmp(alloc, "plain") == 0 || strcmp(alloc, "pool") == 0) {
    setenv("LASYNC_POOL", strcmp(alloc, "pool") == 0 ? "1" : "0", 1);
    L = host_newstate(&pool);
  } else {
    return fail("the allocator is plain, pool or count");
  }
  if (!L) return fail("cannot make a Lua state");
  if (strcmp(gc, "gen") == 0)
    lua_gc(L, LUA_GCGEN, 0, 0);
  else if (strcmp(gc, "stop") == 0)
    lua_gc(L, LUA_GCSTOP);
  else if (strcmp(gc, "inc") != 0)
    return fail("the collector is gen, inc or stop");

  /* W1's and W2's loop, with `spawn` for create_task; the task list is
   * spawn's (the benchmarks' `tasks`). */
  char script[512];
  snprintf(script, sizeof script,
           "local n, spawn, sleep = ...\n"
           "for i = 1, n do\n"
           "  local idx = i - 1\n"
           "  spawn(function()\n"
           "    sleep(%s)\n"
           "    return idx\n"
           "  end)\n"
           "end\n",
           w2 ? "1.0" : "0");
  lua_Integer count = 0;
  lua_createtable(L, 0, 0); /* the threads, 1..count */
  int threads = lua_gettop(L);
  if (luaL_loadstring(L, script) != LUA_OK) return fail(lua_tostring(L, -1));
  lua_pushinteger(L, n);
  lua_pushvalue(L, threads);
  lua_pushlightuserdata(L, &count);
  lua_pushcclosure(L, l_spawn, 2);
  lua_pushcfunction(L, l_sleep);
  counts before = c;

  double t0 = now();
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) return fail(lua_tostring(L, -1));
  for (lua_Integer i = 1; i <= count; i++) {
    lua_rawgeti(L, threads, i);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    int nres;
    if (lua_resume(co, L, 0, &nres) != LUA_YIELD)
      return fail("a thread did not yield");
  }
  /* Here every thread is suspended in sleep: the peak of W2. */
  if (strcmp(alloc, "count") == 0) {
    long bytes = 0;
    fprintf(stderr, "blocks per task while suspended (N=%lld):\n",
            (long long)n);
    for (int s = 0; s < COUNT_MAX; s++) {
      long d = c.live[s] - before.live[s];
      if (n > 0 && d >= n / 2) /* one per task or more; not the stray few */
        fprintf(stderr, "  %5d B x %.2f\n", s, (double)d / (double)n);
      bytes += d * s;
    }
    bytes += c.big_bytes - before.big_bytes;
    fprintf(stderr, "  larger blocks: %.2f B per task\n",
            n ? (double)(c.big_bytes - before.big_bytes) / (double)n : 0.0);
    fprintf(stderr, "  all: %.1f B per task on the Lua heap\n",
            n ? (double)bytes / (double)n : 0.0);
  }
  lua_Integer sum = 0;
  for (lua_Integer i = 1; i <= count; i++) {
    lua_rawgeti(L, threads, i);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    int nres;
    if (lua_resume(co, L, 0, &nres) != LUA_OK || nres != 1)
      return fail("a thread did not return one value");
    sum += lua_tointeger(co, -1);
  }
  int ok = count == n && sum == n * (n - 1) / 2;
  double secs = now() - t0;

  if (w2)
    printf("RESULT workload=W2 n=%lld seconds=%.6f ok=%d\n", (long long)n,
           secs, ok);
  else
    printf("RESULT workload=W1 n=%lld seconds=%.6f ok=%d rate=%.1f\n",
           (long long)n, secs, ok, (double)n / secs);
  lua_close(L);
  host_pool_free(pool);
  return ok ? 0 : 1;
}
