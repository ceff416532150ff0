/* asyncio.Queue, PriorityQueue and LifoQueue.
 *
 * A queue is a userdata with the C state; its user values hold the items (a
 * ring buffer for Queue, a stack for LifoQueue, a binary heap for
 * PriorityQueue, with the heap's keys and insertion numbers beside it), the
 * key function and the maxsize given.  A Queue or LifoQueue keeps its items
 * in user values of its own, one per slot, after the fixed ones: a put is
 * then one lua_setiuservalue of the argument already on top, with no table
 * to fetch (see store).  That ring cannot grow, so it holds maxsize slots
 * (up to INLINE_MAX), or INLINE_FIRST for a queue without such a bound,
 * whose items move to a table in UV_ITEMS once they outgrow it.  Lua
 * cannot reach any of them, so no script can put the C side out of step
 * with what it refers to; assigning a field of a queue is an error.
 *
 * Waiters are served in order by reservation: when an item arrives and a
 * getter waits, the getter is woken with one item reserved for it (gres);
 * when a slot frees up and a putter waits, the putter is woken with one slot
 * reserved (pres).  The woken task takes its item or fills its slot when it
 * runs.  A waiter cancelled after being woken only gives its reservation
 * back (and the next waiter is woken), so it never takes an item with it
 * and nothing has to be undone in the buffer.  Newcomers see reserved items
 * and slots as taken, so they cannot overtake a waiter.
 *
 * A PriorityQueue's put and get are all-or-nothing: the key function and
 * the keys' __lt may raise, so every comparison is made before anything
 * moves. */
#include <math.h>
#include <string.h>

#include "../host/tag.h"
#include "../host/waitq.h"
#include "init.h"

#define QUEUE_MT "asyncio.Queue"

enum { Q_FIFO, Q_LIFO, Q_PRIO };
static const char *const KIND_NAMES[] = {"Queue", "LifoQueue",
                                         "PriorityQueue"};

/* user values of the queue userdata */
enum { UV_ITEMS = 1, UV_KEYS, UV_SEQS, UV_KEYFN, UV_MAXSIZE, UV_COUNT };

/* The largest maxsize whose items all live in the queue's own user values
 * (UV_COUNT + slot, slot 0-based).  Such a ring is never full when a put
 * stores: a put needs a free slot (n + pres <= limit), so n < limit = cap.
 * The bound keeps the count well within Lua's unsigned short of user
 * values and is what the table used to be pre-sized to.  An unbounded
 * queue, or one with a larger maxsize, starts with INLINE_FIRST slots and
 * moves its items to a table when a put finds them full (ring_to_table). */
#define INLINE_MAX 4096
#define INLINE_FIRST 16

typedef struct queue {
  const char *tag;     /* &QUEUE_TAG: see check_queue */
  lua_Integer limit;   /* items allowed; 0: unbounded */
  lua_Integer n;       /* items in the buffer */
  lua_Integer head;    /* FIFO: 0-based index of the first item */
  lua_Integer cap;     /* FIFO: ring capacity */
  lua_Integer gres;    /* items reserved for woken getters */
  lua_Integer pres;    /* slots reserved for woken putters */
  lua_Integer unfinished;
  lua_Integer seq;     /* PRIO: insertion counter, breaks ties FIFO */
  host_link getters, putters, joiners;
  unsigned char kind, shutdown, has_keyfn;
  unsigned char inline_ring; /* items in user values UV_COUNT.. (not a table) */
  unsigned char comparing; /* PRIO: inside a put or get's comparisons */
} queue;

/* Every queue starts with the address of QUEUE_TAG (host/tag.h): each has
 * a metatable of its own (for its maxsize field), so the tag is what tells
 * a queue from any other userdata, in two API calls, which matters as every
 * put and get makes the check.  The queue is at stack index 1 in every
 * function below. */
static const char QUEUE_TAG = 'Q';

static inline queue *check_queue(lua_State *L) {
  queue *q = host_tagged(L, 1, sizeof *q, &QUEUE_TAG);
  if (!q) luaL_typeerror(L, 1, "asyncio.Queue");
  return q;
}

/* Pushes user value i of the queue at index 1; returns its index. */
static int push_uv(lua_State *L, int i) {
  lua_getiuservalue(L, 1, i);
  return lua_gettop(L);
}

/* ---- storage ---------------------------------------------------------- */

/* FIFO: doubles the ring's capacity; the items move to 1..n in order. */
static void ring_grow(lua_State *L, queue *q, int items) {
  lua_Integer ncap = q->cap < 8 ? 8 : q->cap * 2;
  if (q->head != 0) {
    lua_createtable(L, (int)q->n, 0);
    for (lua_Integer i = 0; i < q->n; i++) {
      lua_rawgeti(L, items, (q->head + i) % q->cap + 1);
      lua_rawseti(L, -2, i + 1);
    }
    for (lua_Integer i = 1; i <= q->n; i++) {
      lua_rawgeti(L, -1, i);
      lua_rawseti(L, items, i);
    }
    lua_pop(L, 1);
  }
  q->head = 0;
  q->cap = ncap;
}

/* PRIO: the heap is three parallel arrays (items, keys, seqs) at
 * consecutive stack indices from `heap`. */

/* Does the key at kidx, inserted as number seq, come before entry b? */
static int heap_before(lua_State *L, int heap, int kidx, lua_Integer seq,
                       lua_Integer b) {
  int r;
  lua_rawgeti(L, heap + 1, b);
  r = lua_compare(L, kidx, -1, LUA_OPLT);
  if (!r && !lua_compare(L, -1, kidx, LUA_OPLT)) { /* equal: FIFO */
    lua_rawgeti(L, heap + 2, b);
    r = seq < lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return r;
}

/* Does entry a come before entry b? */
static int heap_entry_before(lua_State *L, int heap, lua_Integer a,
                             lua_Integer b) {
  lua_rawgeti(L, heap + 1, a);
  lua_rawgeti(L, heap + 2, a);
  lua_Integer seq = lua_tointeger(L, -1);
  lua_pop(L, 1);
  int r = heap_before(L, heap, lua_gettop(L), seq, b);
  lua_pop(L, 1);
  return r;
}

/* Copies entry src to dst (src 0: the values on top: item, key, seq). */
static void heap_move(lua_State *L, int heap, lua_Integer dst,
                      lua_Integer src) {
  for (int t = 0; t < 3; t++) {
    if (src)
      lua_rawgeti(L, heap + t, src);
    else
      lua_pushvalue(L, -3 + t);
    lua_rawseti(L, heap + t, dst);
  }
}

/* Pushes the sort key of the item at vidx (the key function may raise). */
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

static int push_heap(lua_State *L) {
  int heap = push_uv(L, UV_ITEMS);
  push_uv(L, UV_KEYS);
  push_uv(L, UV_SEQS);
  return heap;
}

/* PRIO put: finds the new entry's place by comparisons alone, then moves
 * the entries on its path down and stores it; an error (key function,
 * __lt) therefore leaves the heap as it was. */
static void heap_push(lua_State *L, queue *q, int vidx) {
  int base = lua_gettop(L);
  int heap = push_heap(L);
  push_key(L, q, vidx);
  if (lua_isnil(L, -1))
    luaL_error(L, "bad argument #1 to 'put' (priority is nil)");
  int key = lua_gettop(L);
  lua_Integer seq = q->seq + 1, hole = q->n + 1, i = hole;
  while (i > 1 && heap_before(L, heap, key, seq, i / 2)) i /= 2;
  for (lua_Integer j = hole; j > i; j /= 2) heap_move(L, heap, j, j / 2);
  lua_pushvalue(L, vidx);
  lua_pushvalue(L, key);
  lua_pushinteger(L, seq);
  heap_move(L, heap, i, 0);
  q->seq = seq;
  q->n++;
  lua_settop(L, base);
}

/* PRIO get: pushes the first item.  The last entry's new place is found by
 * comparisons alone before anything moves, as in heap_push. */
static void heap_pop(lua_State *L, queue *q) {
  int base = lua_gettop(L);
  int heap = push_heap(L);
  lua_Integer last = q->n, m = last - 1, i = 1;
  for (;;) { /* sift the last entry down from the root, over 1..m */
    lua_Integer c = 2 * i;
    if (c > m) break;
    if (c + 1 <= m && heap_entry_before(L, heap, c + 1, c)) c++;
    if (!heap_entry_before(L, heap, c, last)) break;
    i = c;
  }
  lua_rawgeti(L, heap, 1); /* the result */
  /* the path from the root to i, each entry moving up one level */
  lua_Integer path[64];
  int depth = 0;
  for (lua_Integer j = i; j > 1; j /= 2) path[depth++] = j;
  lua_Integer up = 1;
  while (depth > 0) {
    lua_Integer down = path[--depth];
    heap_move(L, heap, up, down);
    up = down;
  }
  if (i != last) heap_move(L, heap, i, last);
  for (int t = 0; t < 3; t++) {
    lua_pushnil(L);
    lua_rawseti(L, heap + t, last);
  }
  q->n--;
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
}

/* lua_pcall bodies for the PriorityQueue: (queue, item) and (queue). */
static int heap_push_p(lua_State *L) {
  heap_push(L, lua_touserdata(L, 1), 2);
  return 0;
}
static int heap_pop_p(lua_State *L) {
  heap_pop(L, lua_touserdata(L, 1));
  return 1;
}

static void dispatch(queue *q);

/* Runs a PriorityQueue operation protected: if it raises, a woken waiter's
 * reservation was already given back, so the next waiter is woken before
 * the error goes on. */
static void heap_protected(lua_State *L, queue *q, lua_CFunction f, int vidx,
                           int nres) {
  /* a key function or __lt that uses this queue would change the heap
   * under the comparisons: refused */
  if (q->comparing)
    luaL_error(L, "asyncio.PriorityQueue used from its own key function or "
                  "__lt");
  lua_pushcfunction(L, f);
  lua_pushvalue(L, 1);
  if (vidx) lua_pushvalue(L, vidx);
  q->comparing = 1;
  int status = lua_pcall(L, vidx ? 2 : 1, nres, 0);
  q->comparing = 0;
  if (status != LUA_OK) {
    dispatch(q);
    lua_error(L);
  }
}

/* Where the next item goes (0-based) or where the next one to take is. */
static inline lua_Integer slot_in(const queue *q) {
  lua_Integer slot = q->n;
  if (q->kind == Q_FIFO) {
    slot += q->head;
    if (slot >= q->cap) slot -= q->cap;
  }
  return slot;
}
static inline lua_Integer slot_out(queue *q) {
  if (q->kind != Q_FIFO) return q->n - 1;
  lua_Integer slot = q->head;
  q->head = slot + 1 == q->cap ? 0 : slot + 1;
  return slot;
}

/* The inline ring is full and the queue may hold more: its items move, in
 * order, to a table of twice the ring's size (which grows from there as
 * any table does, see ring_grow), and the slots are cleared.  Only the
 * table's creation can fail (memory), before anything has moved. */
static void ring_to_table(lua_State *L, queue *q) {
  lua_createtable(L, (int)(q->cap * 2), 0);
  for (lua_Integer i = 0; i < q->n; i++) {
    lua_Integer slot = q->head + i;
    int uv = (int)(UV_COUNT + (slot >= q->cap ? slot - q->cap : slot));
    lua_getiuservalue(L, 1, uv);
    lua_rawseti(L, -2, i + 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, uv);
  }
  lua_setiuservalue(L, 1, UV_ITEMS);
  q->head = 0;
  q->cap *= 2;
  q->inline_ring = 0;
}

/* store and take for a table or a heap (and a full inline ring's move to
 * a table): kept apart from the inline ring's few instructions, which put
 * and get inline. */
static void store_table(lua_State *L, queue *q) {
  if (q->kind == Q_PRIO) {
    heap_protected(L, q, heap_push_p, 2, 0);
    return;
  }
  if (q->inline_ring) ring_to_table(L, q);
  int items = push_uv(L, UV_ITEMS);
  if (q->kind == Q_FIFO && q->n == q->cap) ring_grow(L, q, items);
  lua_pushvalue(L, 2);
  lua_rawseti(L, items, slot_in(q) + 1);
  q->n++;
}

static void take_table(lua_State *L, queue *q) {
  if (q->kind == Q_PRIO) {
    heap_protected(L, q, heap_pop_p, 0, 1);
    return;
  }
  int items = push_uv(L, UV_ITEMS);
  lua_Integer slot = slot_out(q) + 1;
  lua_rawgeti(L, items, slot);
  lua_pushnil(L);
  lua_rawseti(L, items, slot);
  q->n--;
}

/* Adds the item at index 2, which is also the top (the callers settop(2)),
 * to the buffer; the stack above index 1 is left to the callers, which
 * return 0. */
static inline void store(lua_State *L, queue *q) {
  if (!q->inline_ring || q->n == q->cap) {
    store_table(L, q);
    return;
  }
  lua_setiuservalue(L, 1, (int)(UV_COUNT + slot_in(q))); /* pops the item */
  q->n++;
}

/* Removes the next item from the buffer and pushes it: the callers return
 * the top value.  Its slot is cleared, so the queue keeps no reference to
 * an item it has handed out. */
static inline void take(lua_State *L, queue *q) {
  if (!q->inline_ring) {
    take_table(L, q);
    return;
  }
  int uv = (int)(UV_COUNT + slot_out(q));
  q->n--;
  lua_getiuservalue(L, 1, uv);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, uv);
}

/* ---- waking ----------------------------------------------------------- */

static lua_Integer free_slots(const queue *q) {
  return q->limit > 0 ? q->limit - q->n - q->pres : 1;
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

/* dispatch after a put or get: with nobody waiting (the common case of a
 * busy queue) there is nothing to wake, and two list heads say so. */
static inline void dispatch_if_waiting(queue *q) {
  if (!host_list_empty(&q->getters) || !host_list_empty(&q->putters))
    dispatch(q);
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

/* The item is at index 2 and on top. */
static inline void put_now(lua_State *L, queue *q) {
  store(L, q);
  q->unfinished++;
  dispatch_if_waiting(q);
}

/* A woken putter: its slot is reserved; the item is still at index 2. */
static int put_k(lua_State *L, lua_KContext ctx) {
  queue *q = (queue *)ctx;
  q->pres--;
  if (q->shutdown) {
    dispatch(q);
    return raise_shutdown(L);
  }
  lua_settop(L, 2);
  put_now(L, q);
  return 0;
}

/* put's item may be nil, but not missing; it is left at index 2 and on top,
 * where store wants it (gettop first: cheaper than luaL_checkany on every
 * put, and a put has no further arguments to drop). */
static void check_item(lua_State *L) {
  int top = lua_gettop(L);
  if (top != 2) {
    if (top < 2) luaL_checkany(L, 2);
    lua_settop(L, 2);
  }
}

static int queue_put(lua_State *L) {
  queue *q = check_queue(L);
  check_item(L);
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
  check_item(L);
  if (q->shutdown) return raise_shutdown(L);
  if (free_slots(q) <= 0 || !host_list_empty(&q->putters)) {
    push_uv(L, UV_MAXSIZE);
    return host_error_raise(L, "QueueFull", "the queue is full (maxsize %s)",
                            luaL_tolstring(L, -1, NULL));
  }
  put_now(L, q);
  return 0;
}

/* ---- get -------------------------------------------------------------- */

static inline int get_now(lua_State *L, queue *q) {
  take(L, q);
  dispatch_if_waiting(q);
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
 * done for join): fresh arrays, so no comparison runs and nothing can
 * raise half-way. */
static int queue_shutdown(lua_State *L) {
  queue *q = check_queue(L);
  int immediate = lua_toboolean(L, 2);
  q->shutdown = 1;
  if (immediate && q->n > 0) {
    lua_settop(L, 1);
    if (q->inline_ring) {
      for (lua_Integer i = 0; i < q->cap; i++) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, (int)(UV_COUNT + i));
      }
    } else {
      for (int i = UV_ITEMS; i <= (q->kind == Q_PRIO ? UV_SEQS : UV_ITEMS);
           i++) {
        lua_newtable(L);
        lua_setiuservalue(L, 1, i);
      }
    }
    q->unfinished = q->unfinished > q->n ? q->unfinished - q->n : 0;
    q->n = q->head = 0;
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
  lua_pushboolean(L, q->limit > 0 && free_slots(q) <= 0);
  return 1;
}

static lua_Integer list_length(const host_link *list) {
  lua_Integer n = 0;
  for (const host_link *l = list->next; l != list; l = l->next) n++;
  return n;
}

static int queue_tostring(lua_State *L) {
  queue *q = check_queue(L);
  lua_Integer ng = list_length(&q->getters), np = list_length(&q->putters);
  luaL_Buffer b;
  push_uv(L, UV_MAXSIZE);
  const char *maxsize = luaL_tolstring(L, -1, NULL);
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "<%s maxsize=%s qsize=%I", KIND_NAMES[q->kind], maxsize,
                  q->n - q->gres);
  luaL_addvalue(&b);
  if (ng) {
    lua_pushfstring(L, " getters=%I", ng);
    luaL_addvalue(&b);
  }
  if (np) {
    lua_pushfstring(L, " putters=%I", np);
    luaL_addvalue(&b);
  }
  if (q->shutdown) luaL_addstring(&b, " shutdown");
  luaL_addchar(&b, '>');
  luaL_pushresult(&b);
  return 1;
}

/* A queue's state is not Lua's to change: assigning a field is an error. */
static int queue_newindex(lua_State *L) {
  return luaL_error(L, "cannot assign field '%s' of an asyncio.Queue",
                    luaL_tolstring(L, 2, NULL));
}

/* ---- constructors ----------------------------------------------------- */

static const luaL_Reg methods[] = {
    {"put", queue_put},         {"get", queue_get},
    {"put_nowait", queue_put_nowait}, {"get_nowait", queue_get_nowait},
    {"qsize", queue_qsize},     {"empty", queue_empty},
    {"full", queue_full},       {"task_done", queue_task_done},
    {"join", queue_join},       {"shutdown", queue_shutdown},
    {NULL, NULL}};
enum { N_METHODS = sizeof methods / sizeof methods[0] - 1 };

/* Gives the new queue on top its metatable: __index is a table of its own
 * with its maxsize and the methods (light C functions: copying them costs
 * no allocation beyond the table's slots).  So q:put finds its method in
 * one table lookup: a second __index level, shared methods behind the
 * per-queue field table, cost a quarter of a W3 put.  __metatable hides
 * both tables from Lua. */
static void set_metatable(lua_State *L, int maxsize) {
  lua_createtable(L, 0, 5);
  lua_createtable(L, 0, N_METHODS + 1);
  luaL_setfuncs(L, methods, 0);
  if (maxsize)
    lua_pushvalue(L, maxsize);
  else
    lua_pushinteger(L, 0);
  lua_setfield(L, -2, "maxsize");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, queue_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, queue_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, QUEUE_MT);
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, QUEUE_MT);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

static const char *const QUEUE_OPTIONS[] = {"maxsize", "key", NULL};

/* How many items maxsize (a number, at idx) allows; 0 for unbounded.  As in
 * asyncio the queue is full when qsize() >= maxsize, so 1.3 allows 2;
 * <= 0, NaN and sizes beyond any count mean unbounded. */
static lua_Integer limit_of(lua_State *L, int idx, int arg, const char *fname) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    return luaL_error(L, "bad argument #%d to '%s' (maxsize: number expected, "
                         "got %s)", arg, fname, luaL_typename(L, idx));
  if (lua_isinteger(L, idx)) {
    lua_Integer m = lua_tointeger(L, idx);
    return m > 0 ? m : 0;
  }
  lua_Number f = lua_tonumber(L, idx);
  if (!(f > 0) || f >= (lua_Number)LUA_MAXINTEGER) return 0;
  return (lua_Integer)ceil(f);
}

/* Queue([maxsize]) or Queue{maxsize=, key=} (key: PriorityQueue only). */
static int new_queue(lua_State *L, int kind, const char *fname) {
  int keyfn = 0, maxsize = 0;
  if (lua_istable(L, 1)) {
    host_check_options(L, 1, QUEUE_OPTIONS);
    lua_getfield(L, 1, "maxsize");
    if (!lua_isnil(L, -1)) maxsize = lua_gettop(L);
    lua_getfield(L, 1, "key");
    if (!lua_isnil(L, -1)) {
      if (kind != Q_PRIO || !lua_isfunction(L, -1))
        return luaL_error(L, "bad argument #1 to '%s' (key: %s)", fname,
                          kind != Q_PRIO ? "only PriorityQueue takes a key"
                                         : "function expected");
      keyfn = lua_gettop(L);
    }
  } else if (!lua_isnoneornil(L, 1)) {
    maxsize = 1;
  }
  lua_Integer limit = maxsize ? limit_of(L, maxsize, 1, fname) : 0;
  int inline_ring = kind != Q_PRIO;
  lua_Integer cap = limit > 0 && limit <= INLINE_MAX ? limit : INLINE_FIRST;
  queue *q = lua_newuserdatauv(L, sizeof *q,
                               UV_COUNT - 1 + (inline_ring ? (int)cap : 0));
  memset(q, 0, sizeof *q);
  q->tag = &QUEUE_TAG;
  q->kind = (unsigned char)kind;
  q->limit = limit;
  host_list_init(&q->getters);
  host_list_init(&q->putters);
  host_list_init(&q->joiners);
  q->cap = cap;
  q->inline_ring = (unsigned char)inline_ring;
  if (!inline_ring) {
    lua_createtable(L, kind == Q_PRIO ? 0 : (int)cap, 0);
    lua_setiuservalue(L, -2, UV_ITEMS);
  }
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
  if (maxsize)
    lua_pushvalue(L, maxsize);
  else
    lua_pushinteger(L, 0);
  lua_setiuservalue(L, -2, UV_MAXSIZE);
  set_metatable(L, maxsize);
  return 1;
}

static int l_queue(lua_State *L) { return new_queue(L, Q_FIFO, "Queue"); }
static int l_lifo(lua_State *L) { return new_queue(L, Q_LIFO, "LifoQueue"); }
static int l_prio(lua_State *L) {
  return new_queue(L, Q_PRIO, "PriorityQueue");
}

static const luaL_Reg funcs[] = {{"Queue", l_queue},
                                 {"LifoQueue", l_lifo},
                                 {"PriorityQueue", l_prio},
                                 {NULL, NULL}};

void l_open_queue(lua_State *L, lasync_host *h) {
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
