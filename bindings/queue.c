/* asyncio.Queue, PriorityQueue and LifoQueue.
 *
 * A queue is a Lua table: its array part holds the items (a ring buffer
 * for Queue, a stack for LifoQueue, a binary heap for PriorityQueue), its
 * field maxsize is the attribute, and [0] is the userdata with the C state
 * (whose user values hold a PriorityQueue's keys and insertion numbers).
 * So nothing the C side refers to can be collected, and a method call is
 * one plain table lookup (puts and gets are W3's hot path).
 *
 * Waiters are served in order by reservation: when an item arrives and a
 * getter waits, the getter is woken with one item reserved for it (gres);
 * when a slot frees up and a putter waits, the putter is woken with one slot
 * reserved (pres).  The woken task takes its item or fills its slot when it
 * runs.  A waiter cancelled after being woken only gives its reservation
 * back (and the next waiter is woken), so it never takes an item with it
 * and nothing has to be undone in the buffer.  Newcomers see reserved items
 * and slots as taken, so they cannot overtake a waiter. */
#include <string.h>

#include "waitq.h"

#define QUEUE_MT "asyncio.Queue"

enum { Q_FIFO, Q_LIFO, Q_PRIO };
static const char *const KIND_NAMES[] = {"Queue", "LifoQueue",
                                         "PriorityQueue"};

/* the queue table is at stack index 1; its C state's user values: */
enum { ITEMS = 1, UV_KEYS = 1, UV_SEQS, UV_KEYFN, UV_COUNT = UV_KEYFN };

typedef struct queue {
  lua_Integer maxsize; /* 0: unbounded */
  lua_Integer n;       /* items in the buffer */
  lua_Integer head;    /* FIFO: 0-based index of the first item */
  lua_Integer cap;     /* FIFO: ring capacity */
  lua_Integer gres;    /* items reserved for woken getters */
  lua_Integer pres;    /* slots reserved for woken putters */
  lua_Integer unfinished;
  lua_Integer seq;     /* PRIO: insertion counter, breaks ties FIFO */
  host_link getters, putters, joiners;
  unsigned char kind, shutdown, has_keyfn;
} queue;

/* Methods have the queue metatable as upvalue 1. */
static queue *check_queue(lua_State *L) {
  if (!lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, "asyncio.Queue");
  lua_rawgeti(L, 1, 0);
  queue *q = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return q;
}

/* Pushes user value i of the C state. */
static void push_uv(lua_State *L, int i) {
  lua_rawgeti(L, ITEMS, 0);
  lua_getiuservalue(L, -1, i);
  lua_remove(L, -2);
}

/* ---- storage ---------------------------------------------------------- */

/* FIFO: doubles the ring's capacity; the items move to 1..n in order. */
static void ring_grow(lua_State *L, queue *q) {
  lua_Integer ncap = q->cap < 8 ? 8 : q->cap * 2;
  if (q->head != 0) {
    lua_createtable(L, (int)q->n, 0);
    for (lua_Integer i = 0; i < q->n; i++) {
      lua_rawgeti(L, ITEMS, (q->head + i) % q->cap + 1);
      lua_rawseti(L, -2, i + 1);
    }
    for (lua_Integer i = 1; i <= q->n; i++) {
      lua_rawgeti(L, -1, i);
      lua_rawseti(L, ITEMS, i);
    }
    lua_pop(L, 1);
  }
  q->head = 0;
  q->cap = ncap;
}

/* PRIO: is heap entry a before entry b?  keys at kidx, seqs at sidx. */
static int heap_less(lua_State *L, int kidx, int sidx, lua_Integer a,
                     lua_Integer b) {
  int r;
  lua_rawgeti(L, kidx, a);
  lua_rawgeti(L, kidx, b);
  r = lua_compare(L, -2, -1, LUA_OPLT);
  if (!r && !lua_compare(L, -1, -2, LUA_OPLT)) { /* equal: FIFO */
    lua_pop(L, 2);
    lua_rawgeti(L, sidx, a);
    lua_rawgeti(L, sidx, b);
    r = lua_tointeger(L, -2) < lua_tointeger(L, -1);
  }
  lua_pop(L, 2);
  return r;
}

static void heap_swap(lua_State *L, int first, lua_Integer a, lua_Integer b) {
  for (int t = first; t < first + 3; t++) {
    lua_rawgeti(L, t, a);
    lua_rawgeti(L, t, b);
    lua_rawseti(L, t, a);
    lua_rawseti(L, t, b);
  }
}

/* Pushes the sort key of the item at vidx. */
static void push_key(lua_State *L, queue *q, int vidx) {
  if (q->has_keyfn) {
    push_uv(L, UV_KEYFN);
    lua_pushvalue(L, vidx);
    lua_call(L, 1, 1);
  } else if (lua_type(L, vidx) == LUA_TTABLE) {
    lua_rawgeti(L, vidx, 1);
  } else {
    lua_pushvalue(L, vidx);
  }
}

/* Adds the value at vidx to the buffer (queue at index 1). */
static void store(lua_State *L, queue *q, int vidx) {
  switch (q->kind) {
  case Q_FIFO: {
    if (q->n == q->cap) ring_grow(L, q);
    lua_Integer slot = q->head + q->n;
    if (slot >= q->cap) slot -= q->cap;
    lua_pushvalue(L, vidx);
    lua_rawseti(L, ITEMS, slot + 1);
    break;
  }
  case Q_LIFO:
    lua_pushvalue(L, vidx);
    lua_rawseti(L, ITEMS, q->n + 1);
    break;
  default: { /* sift up; items, keys, seqs at items .. items+2 */
    lua_pushvalue(L, ITEMS);
    int items = lua_gettop(L);
    push_uv(L, UV_KEYS);
    push_uv(L, UV_SEQS);
    push_key(L, q, vidx);
    if (lua_isnil(L, -1))
      luaL_error(L, "bad argument #1 to 'put' (priority is nil)");
    lua_Integer i = q->n + 1;
    lua_rawseti(L, items + 1, i);
    lua_pushvalue(L, vidx);
    lua_rawseti(L, items, i);
    lua_pushinteger(L, ++q->seq);
    lua_rawseti(L, items + 2, i);
    q->n++; /* before comparing: a failing __lt leaves a valid heap */
    while (i > 1 && heap_less(L, items + 1, items + 2, i, i / 2)) {
      heap_swap(L, items, i, i / 2);
      i /= 2;
    }
    lua_settop(L, items - 1);
    return;
  }
  }
  q->n++;
}

/* Removes the next item from the buffer and pushes it. */
static void take(lua_State *L, queue *q) {
  switch (q->kind) {
  case Q_FIFO: {
    lua_Integer slot = q->head + 1;
    lua_rawgeti(L, ITEMS, slot);
    lua_pushnil(L);
    lua_rawseti(L, ITEMS, slot);
    q->head = slot == q->cap ? 0 : slot;
    break;
  }
  case Q_LIFO:
    lua_rawgeti(L, ITEMS, q->n);
    lua_pushnil(L);
    lua_rawseti(L, ITEMS, q->n);
    break;
  default: { /* move the last entry to the root, sift down */
    lua_pushvalue(L, ITEMS);
    int items = lua_gettop(L);
    lua_Integer last = q->n, i = 1;
    push_uv(L, UV_KEYS);
    push_uv(L, UV_SEQS);
    lua_rawgeti(L, items, 1); /* the result */
    heap_swap(L, items, 1, last);
    for (int t = items; t < items + 3; t++) {
      lua_pushnil(L);
      lua_rawseti(L, t, last);
    }
    last--;
    q->n--;
    for (;;) {
      lua_Integer c = 2 * i;
      if (c > last) break;
      if (c + 1 <= last && heap_less(L, items + 1, items + 2, c + 1, c)) c++;
      if (!heap_less(L, items + 1, items + 2, c, i)) break;
      heap_swap(L, items, i, c);
      i = c;
    }
    lua_replace(L, items);
    lua_settop(L, items);
    return;
  }
  }
  q->n--;
}

/* ---- waking ----------------------------------------------------------- */

static lua_Integer free_slots(const queue *q) {
  return q->maxsize > 0 ? q->maxsize - q->n - q->pres : 1;
}

/* Wakes waiters for what is available now: items for getters, free slots
 * for putters.  Each woken waiter holds a reservation. */
static void dispatch(queue *q) {
  host_task *t;
  while (q->n - q->gres > 0 && (t = waitq_pop(&q->getters))) {
    q->gres++;
    host_wake(t, NULL, 0);
  }
  while (free_slots(q) > 0 && (t = waitq_pop(&q->putters))) {
    q->pres++;
    host_wake(t, NULL, 0);
  }
}

static int getter_cancel(host_task *t, int woken) {
  queue *q = t->wait_data;
  if (woken) {
    q->gres--;
    dispatch(q);
  } else {
    waitq_remove(t);
  }
  return 0;
}

static int putter_cancel(host_task *t, int woken) {
  queue *q = t->wait_data;
  if (woken) {
    q->pres--;
    dispatch(q);
  } else {
    waitq_remove(t);
  }
  return 0;
}

static int joiner_cancel(host_task *t, int woken) {
  if (!woken) waitq_remove(t);
  return 0;
}

static int raise_shutdown(lua_State *L) {
  return host_error_raise(L, "QueueShutDown", "the queue is shut down");
}

/* ---- put -------------------------------------------------------------- */

static void put_now(lua_State *L, queue *q) {
  store(L, q, 2);
  q->unfinished++;
  dispatch(q);
}

/* A woken putter: its slot is reserved; the item is still at index 2. */
static int put_k(lua_State *L, lua_KContext ctx) {
  queue *q = (queue *)ctx;
  q->pres--;
  if (q->shutdown) {
    dispatch(q);
    return raise_shutdown(L);
  }
  put_now(L, q);
  return 0;
}

static int queue_put(lua_State *L) {
  queue *q = check_queue(L);
  luaL_checkany(L, 2);
  if (q->shutdown) return raise_shutdown(L);
  if (free_slots(q) > 0 && host_list_empty(&q->putters)) {
    put_now(L, q);
    return 0;
  }
  host_task *t = host_check_task(L, "put");
  lua_settop(L, 2);
  waitq_push(&q->putters, t);
  return host_park(L, t, putter_cancel, q, put_k, (lua_KContext)q);
}

static int queue_put_nowait(lua_State *L) {
  queue *q = check_queue(L);
  luaL_checkany(L, 2);
  if (q->shutdown) return raise_shutdown(L);
  if (free_slots(q) <= 0 || !host_list_empty(&q->putters))
    return host_error_raise(L, "QueueFull", "the queue is full (maxsize %I)",
                            q->maxsize);
  lua_settop(L, 2);
  put_now(L, q);
  return 0;
}

/* ---- get -------------------------------------------------------------- */

static int get_now(lua_State *L, queue *q) {
  take(L, q);
  dispatch(q);
  return 1;
}

static int get_k(lua_State *L, lua_KContext ctx) {
  queue *q = (queue *)ctx;
  q->gres--;
  if (q->n <= 0) return raise_shutdown(L); /* drained by shutdown(true) */
  return get_now(L, q);
}

static int queue_get(lua_State *L) {
  queue *q = check_queue(L);
  if (q->n - q->gres > 0) return get_now(L, q);
  if (q->shutdown) return raise_shutdown(L);
  host_task *t = host_check_task(L, "get");
  lua_settop(L, 1);
  waitq_push(&q->getters, t);
  return host_park(L, t, getter_cancel, q, get_k, (lua_KContext)q);
}

static int queue_get_nowait(lua_State *L) {
  queue *q = check_queue(L);
  if (q->n - q->gres > 0) return get_now(L, q);
  if (q->shutdown) return raise_shutdown(L);
  return host_error_raise(L, "QueueEmpty", "the queue is empty");
}

/* ---- join / task_done / shutdown --------------------------------------- */

static void wake_all(host_link *list) {
  host_task *t;
  while ((t = waitq_pop(list))) host_wake(t, NULL, 0);
}

static int queue_task_done(lua_State *L) {
  queue *q = check_queue(L);
  if (q->unfinished <= 0)
    return host_error_raise(L, "ValueError", "task_done() called too many times");
  if (--q->unfinished == 0) wake_all(&q->joiners);
  return 0;
}

static int queue_join(lua_State *L) {
  queue *q = check_queue(L);
  if (q->unfinished == 0) return 0;
  host_task *t = host_check_task(L, "join");
  lua_settop(L, 1);
  waitq_push(&q->joiners, t);
  return host_park(L, t, joiner_cancel, q, NULL, 0);
}

static void wake_all_error(lua_State *L, host_link *list) {
  host_task *t;
  while ((t = waitq_pop(list))) {
    host_error_new(L, "QueueShutDown", "the queue is shut down");
    host_wake_error(t, L);
  }
}

/* shutdown([immediate]): put raises QueueShutDown from now on; get too once
 * the queue is empty.  immediate drops the items left (counting them as
 * done for join). */
static int queue_shutdown(lua_State *L) {
  queue *q = check_queue(L);
  int immediate = lua_toboolean(L, 2);
  q->shutdown = 1;
  if (immediate) {
    lua_settop(L, 1);
    while (q->n > 0) {
      take(L, q);
      lua_pop(L, 1);
      if (q->unfinished > 0) q->unfinished--;
    }
    if (q->unfinished == 0) wake_all(&q->joiners);
  }
  wake_all_error(L, &q->getters);
  wake_all_error(L, &q->putters);
  return 0;
}

/* ---- inspection ------------------------------------------------------- */

static int queue_qsize(lua_State *L) {
  queue *q = check_queue(L);
  lua_pushinteger(L, q->n - q->gres > 0 ? q->n - q->gres : 0);
  return 1;
}

static int queue_empty(lua_State *L) {
  queue *q = check_queue(L);
  lua_pushboolean(L, q->n - q->gres <= 0);
  return 1;
}

static int queue_full(lua_State *L) {
  queue *q = check_queue(L);
  lua_pushboolean(L, q->maxsize > 0 && free_slots(q) <= 0);
  return 1;
}

static int queue_tostring(lua_State *L) {
  queue *q = check_queue(L);
  lua_pushfstring(L, "<%s maxsize=%I qsize=%I%s>", KIND_NAMES[q->kind],
                  q->maxsize, q->n - q->gres,
                  q->shutdown ? " shutdown" : "");
  return 1;
}

/* ---- constructors ----------------------------------------------------- */

/* Queue([maxsize]) or Queue{maxsize=, key=} (key: PriorityQueue only). */
static int new_queue(lua_State *L, int kind, const char *fname) {
  lua_Integer maxsize = 0;
  int keyfn = 0;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "maxsize");
    if (!lua_isnil(L, -1)) {
      if (!lua_isinteger(L, -1))
        return luaL_error(L, "bad argument #1 to '%s' (maxsize: integer "
                             "expected, got %s)", fname, luaL_typename(L, -1));
      maxsize = lua_tointeger(L, -1);
    }
    lua_getfield(L, 1, "key");
    if (!lua_isnil(L, -1)) {
      if (kind != Q_PRIO || !lua_isfunction(L, -1))
        return luaL_error(L, "bad argument #1 to '%s' (key: %s)", fname,
                          kind != Q_PRIO ? "only PriorityQueue takes a key"
                                         : "function expected");
      keyfn = lua_gettop(L);
    }
  } else {
    maxsize = luaL_optinteger(L, 1, 0);
  }
  if (maxsize < 0) maxsize = 0; /* asyncio: <= 0 means unbounded */
  lua_Integer cap = maxsize > 0 && maxsize <= 4096 ? maxsize : 16;
  lua_createtable(L, kind == Q_PRIO ? 0 : (int)cap, 2);
  int qi = lua_gettop(L);
  lua_pushinteger(L, maxsize);
  lua_setfield(L, qi, "maxsize");
  queue *q = lua_newuserdatauv(L, sizeof *q, kind == Q_PRIO ? UV_COUNT : 0);
  memset(q, 0, sizeof *q);
  q->kind = (unsigned char)kind;
  q->maxsize = maxsize;
  host_list_init(&q->getters);
  host_list_init(&q->putters);
  host_list_init(&q->joiners);
  q->cap = cap;
  if (kind == Q_PRIO) {
    lua_newtable(L);
    lua_setiuservalue(L, -2, UV_KEYS);
    lua_newtable(L);
    lua_setiuservalue(L, -2, UV_SEQS);
    if (keyfn) {
      lua_pushvalue(L, keyfn);
      lua_setiuservalue(L, -2, UV_KEYFN);
      q->has_keyfn = 1;
    }
  }
  lua_rawseti(L, qi, 0);
  luaL_setmetatable(L, QUEUE_MT);
  return 1;
}

static int l_queue(lua_State *L) { return new_queue(L, Q_FIFO, "Queue"); }
static int l_lifo(lua_State *L) { return new_queue(L, Q_LIFO, "LifoQueue"); }
static int l_prio(lua_State *L) {
  return new_queue(L, Q_PRIO, "PriorityQueue");
}

static const luaL_Reg methods[] = {
    {"put", queue_put},         {"get", queue_get},
    {"put_nowait", queue_put_nowait}, {"get_nowait", queue_get_nowait},
    {"qsize", queue_qsize},     {"empty", queue_empty},
    {"full", queue_full},       {"task_done", queue_task_done},
    {"join", queue_join},       {"shutdown", queue_shutdown},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {{"Queue", l_queue},
                                 {"LifoQueue", l_lifo},
                                 {"PriorityQueue", l_prio},
                                 {NULL, NULL}};

void host_open_queue(lua_State *L, lasync_host *h) {
  if (luaL_newmetatable(L, QUEUE_MT)) {
    lua_newtable(L);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, queue_tostring, 1);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "asyncio.Queue");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
