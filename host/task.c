/* The task record: how a task is made, how it ends, and what is left of it
 * afterwards (its outcome, its report, its listeners and done callbacks).
 *
 * A task is a Lua thread plus a host_task record, the memory of the Task
 * userdata.  While pending, the Task is anchored in the host's pending
 * table; it ends in one place (task_end), whether it returned, failed, was
 * cancelled, or is collected because the state closes.  Running it is the
 * scheduler's job (sched.c); this file never resumes anything. */
#include <stdio.h>
#include <string.h>

#include "host.h"

/* ---- lookups ------------------------------------------------------------ */

host_task *host_check_task_fail(lua_State *L, const char *fname) {
  host_task *t = host_task_of(L);
  if (!t) {
    /* a callback (call_soon, call_later, a done callback, a signal
     * handler) runs on the host's callback thread: say what to do there */
    lasync_host *h = host_get(L);
    if (h && L == h->cbL)
      luaL_error(L,
                 "asyncio: %s() called from a callback, which cannot "
                 "suspend (start a task: asyncio.create_task(fn))",
                 fname);
    luaL_error(L, "asyncio: %s() called outside a task (use asyncio.run)",
               fname);
  }
  luaL_error(L,
             "asyncio: %s() cannot suspend here (inside a metamethod, "
             "iterator or C function that cannot yield)",
             fname);
  return t;
}

/* luaL_testudata finds the metatable by name, hashing the name each time
 * (about 350 instructions of every task argument, each of gather's
 * included).  A full userdata of a Task's size whose step function is the
 * task step is a Task (a light userdata has length 0): two API calls. */
host_task *host_test_task_arg(lua_State *L, int idx) {
  host_task *t = lua_touserdata(L, idx);
  if (t && lua_rawlen(L, idx) == sizeof *t && t->ready.run == host_task_step)
    return t;
  return NULL;
}

host_task *host_check_task_arg(lua_State *L, int idx) {
  host_task *t = host_test_task_arg(L, idx);
  if (!t) luaL_typeerror(L, idx, HOST_TASK_MT);
  return t;
}

void host_push_pending(lua_State *L, lasync_host *h) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->tasks_ref);
}

/* The pending table's free slots are chained through the table (each holds
 * the number of the next, 0 ends the chain), the chain's head in the host.
 * luaL_ref and luaL_unref keep the head in the table's hash part and take
 * the table's length on every ref: 500 instructions of every task; these
 * cost 170. */
static int pending_anchor(lua_State *L, lasync_host *h) {
  host_push_pending(L, h);
  int ref = h->pending_free;
  if (ref) {
    lua_rawgeti(L, -1, ref);
    h->pending_free = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  } else {
    ref = h->pending_size + 1;
  }
  lua_pushvalue(L, -2); /* the Task */
  lua_rawseti(L, -2, ref); /* may grow the table: out of memory raises */
  lua_pop(L, 1);
  if (ref > h->pending_size) h->pending_size = ref;
  return ref;
}

static void pending_release(lua_State *L, lasync_host *h, int ref) {
  if (ref <= 0) return; /* not anchored (LUA_NOREF), as luaL_unref allows */
  host_push_pending(L, h);
  lua_pushinteger(L, h->pending_free);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  h->pending_free = ref;
}

void host_task_push(lua_State *L, host_task *t) {
  host_push_pending(L, t->h);
  lua_rawgeti(L, -1, t->ref);
  lua_remove(L, -2);
}

/* ---- the extras: name, done callbacks, report -------------------------- */

void host_new_weak_registry(lua_State *L, const char *key) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, key);
}

/* Names and done callbacks are rare: they live in a weak-keyed side
 * table, not in every task. */
void host_task_extras(lua_State *L, int task_idx, int create) {
  task_idx = lua_absindex(L, task_idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "lasync.task_extras") != LUA_TTABLE) {
    lua_pop(L, 1);
    if (!create) {
      lua_pushnil(L);
      return;
    }
    host_new_weak_registry(L, "lasync.task_extras");
  }
  lua_pushvalue(L, task_idx);
  if (lua_rawget(L, -2) != LUA_TTABLE && create) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, task_idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
}

void host_task_push_name(lua_State *L, int idx) {
  host_task *t = lua_touserdata(L, idx);
  int top = lua_gettop(L);
  host_task_extras(L, idx, 0);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "name") != LUA_TNIL) {
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return;
  }
  lua_settop(L, top);
  lua_pushfstring(L, "Task-%I", (lua_Integer)t->id);
}

/* ---- rare values: a cancel message, a failure's report ---------------- */

/* Most tasks have neither, so they are not in the record (two registry
 * refs were 8 of its bytes): each kind is a table in the registry (under
 * the address of its key here), mapping the record's address to the
 * value.  A flag says whether t has one, so a task without costs nothing;
 * the entry goes before the record can be reused (task_gc), so a key is
 * never another task's. */
static const char rare_key[2];
static const unsigned short rare_flag[2] = {TF_HAS_MSG, TF_HAS_REPORT};

int host_task_push_rare(lua_State *L, host_task *t, int which) {
  if (!(t->flags & rare_flag[which])) {
    lua_pushnil(L);
    return 0;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rare_key[which]);
  lua_rawgetp(L, -1, t);
  lua_remove(L, -2);
  return 1;
}

void host_task_set_rare(lua_State *L, host_task *t, int which) {
  int drop = lua_isnil(L, -1);
  if (drop && !(t->flags & rare_flag[which])) {
    lua_pop(L, 1);
    return;
  }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &rare_key[which]) != LUA_TTABLE) {
    lua_pop(L, 1); /* the first value of its kind: drop cannot be here */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &rare_key[which]);
  }
  lua_rotate(L, -2, 1); /* [table value] */
  lua_rawsetp(L, -2, t); /* a new key may raise; the flag is not set yet */
  lua_pop(L, 1);
  if (drop)
    t->flags &= (unsigned short)~rare_flag[which];
  else
    t->flags |= rare_flag[which];
}

/* ---- the task body ------------------------------------------------------ */

/* The message keeps its type (cancel(5) gives 5, as asyncio's args do);
 * converting it here would run a __tostring outside any protection. */
void host_task_push_cancelled(lua_State *L, host_task *t) {
  host_error_new(L, "CancelledError", "");
  if (t->flags & TF_HAS_MSG) {
    host_task_push_rare(L, t, HOST_RARE_MSG);
    lua_setfield(L, -2, "message");
  }
}

/* Message handler of the task body: keeps the error value unchanged and
 * records the report text while the failing frames are still there. */
static int body_msgh(lua_State *L) {
  host_task *t = host_task_of(L);
  if (t && !host_is_cancelled_error(L, 1))
    host_task_record_failure(L, t, L, 1, 1);
  lua_settop(L, 1);
  return 1;
}

/* The user function runs under a yieldable pcall inside the task's own
 * thread, so that to-be-closed variables are closed by the unwinding pcall
 * (where __close may suspend) rather than by lua_resetthread (where it may
 * not), and a failure never leaves the thread half-unwound. */
static int body_k(lua_State *L, int status, lua_KContext ctx) {
  host_task *t = host_task_of(L);
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    t->outcome = OUTCOME_OK;
    return lua_gettop(L) - 1; /* all but the message handler */
  }
  t->outcome = host_is_cancelled_error(L, -1) ? OUTCOME_CANCELLED
                                              : OUTCOME_FAILED;
  return 1;
}

/* The thread starts as [body, body_msgh, fn, args...] (spawn puts the
 * handler there: no insert under the arguments at the first step). */
static int body(lua_State *L) {
  int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 1, 0, body_k);
  return body_k(L, status, 0);
}

/* ---- creating ----------------------------------------------------------- */

/* The Task is made before the thread, so that the thread goes straight
 * into its user value and fn and its arguments need one rotate to reach
 * the top (about 100 instructions of every spawn less than making the
 * thread first).  Nothing can fail after setting the metatable (its
 * __gc), which comes last. */
host_task *host_task_spawn(lasync_host *h, lua_State *L, int nargs) {
  if (h->stopped) luaL_error(L, "asyncio: the event loop is closed");
  int fn = lua_gettop(L) - nargs;
  host_task *t = lua_newuserdatauv(L, sizeof *t, 1);
  lua_State *co = lua_newthread(L);
  /* raised on L: co is no running thread, and an error thrown on it goes
   * to the main thread's handler, past every frame in between */
  if (!lua_checkstack(co, nargs + 3))
    luaL_error(L, "stack overflow (task arguments)");
  lua_setiuservalue(L, -2, 1); /* the Task keeps its thread */
  memset(t, 0, sizeof *t);
  t->ready.run = host_task_step;
  host_list_init(&t->awaiters);
  host_list_init(&t->qlink);
  host_timer_init(&t->timer, NULL);
  t->h = h;
  t->co = co;
  t->id = (uint32_t)++h->next_task_id;
  host_where created;
  host_where_note(h, L, &created);
  t->created_src = created.src;
  t->created_line = created.line;
  t->stats.created = t->stats.queued = uv_hrtime();
  *(host_task **)lua_getextraspace(co) = t;
  lua_rotate(L, fn, 1); /* [task fn args...] */
  lua_pushcfunction(co, body);
  lua_pushcfunction(co, body_msgh);
  lua_xmove(L, co, nargs + 1);
  t->ref = pending_anchor(L, h);
  if (h->trace) host_trace_wake(h, t); /* the flow is kept by t->ref */
  /* only now its __gc: anchoring may fail (the pending table grows), and
   * a pending Task collected is taken for the state closing */
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->task_mt_ref); /* not by name */
  lua_setmetatable(L, -2);
  t->base = 1; /* the first resume calls body with the rest */
  h->npending++;
  t->flags |= TF_QUEUED;
  host_ready_push(h, &t->ready);
  return t;
}

/* Before its first step: the function on top of L (popped) becomes t's
 * message handler instead of body_msgh; it must record the failure as
 * body_msgh does.  The binary's main tasks get lua.c's. */
void host_task_set_msgh(host_task *t, lua_State *L) {
  lua_xmove(L, t->co, 1);
  lua_replace(t->co, 2); /* [body, msgh, fn, args...] */
}

/* ---- ending ------------------------------------------------------------- */

/* The one place a task ends: it no longer waits, counts as pending, or
 * keeps its C listeners (await, gather, a server's connection record),
 * which are told now, each unlinked before it runs. */
/* The trace names each task's track with its name, known at its end. */
static void trace_name(lasync_host *h, host_task *t) {
  lua_State *L = h->cbL;
  if (h->state_closing || !L || t->ref == LUA_NOREF || !lua_checkstack(L, 3))
    return;
  host_task_push(L, t);
  host_task_push_name(L, -1);
  host_trace_name(h, t, lua_tostring(L, -1));
  lua_pop(L, 2);
}

static void task_end(lasync_host *h, host_task *t) {
  if (h->trace) trace_name(h, t);
  t->state = TASK_DONE;
  /* the end of its last step when it ends there (sched.c), else now */
  t->stats.ended = h->step_end ? h->step_end : uv_hrtime();
  h->step_end = 0;
  t->flags &= ~(TF_MUST_CANCEL | TF_PARKED | TF_THROW | TF_DEFER_CANCEL |
                TF_MSG_FIXED);
  t->wait_cancel = NULL;
  h->npending--;
  if (t == h->run_target) uv_stop(h->loop); /* host_run_task waits for it */
  host_link *link;
  while ((link = host_list_first(&t->awaiters))) {
    host_listener *l = host_container_of(link, host_listener, link);
    host_list_remove(link);
    l->fn(l, t);
  }
}

void host_task_finish(lasync_host *h, host_task *t) {
  lua_State *co = t->co, *cb = h->cbL;
  if (t->outcome == OUTCOME_OK && (t->flags & TF_MUST_CANCEL)) {
    /* Cancelled after its last suspension: it ends cancelled (asyncio). */
    lua_settop(co, 0);
    host_task_push_cancelled(cb, t); /* on cbL: see sched.c */
    lua_xmove(cb, co, 1);
    t->outcome = OUTCOME_CANCELLED;
  }
  task_end(h, t);
  pending_release(cb, h, t->ref);
  t->ref = LUA_NOREF;
  if (t->flags & TF_HAS_MSG) {
    lua_pushnil(cb);
    host_task_set_rare(cb, t, HOST_RARE_MSG);
  }
  /* a stopping host closes after the done callbacks run (sched.c) */
}

void host_task_fail(lasync_host *h, host_task *t, lua_State *L) {
  lua_State *cb = h->cbL, *co = t->co;
  /* the report is built on cbL (see sched.c's give_cancelled) */
  if (!lua_checkstack(cb, 8)) luaL_error(cb, "not enough memory");
  if (L != cb) lua_xmove(L, cb, 1);
  int err = lua_gettop(cb);
  if (!host_is_cancelled_error(cb, err))
    host_task_record_failure(cb, t, co, 1, err);
  t->outcome = host_is_cancelled_error(cb, err) ? OUTCOME_CANCELLED
                                                 : OUTCOME_FAILED;
  lua_settop(co, 0);
  lua_xmove(cb, co, 1);
  host_task_finish(h, t);
}

/* ---- outcomes and listeners --------------------------------------------- */

int host_task_results(lua_State *L, host_task *t) {
  lua_State *co = t->co;
  int n = lua_gettop(co);
  if (t->outcome != OUTCOME_OK) {
    t->flags |= TF_RETRIEVED;
    lua_pushvalue(co, 1);
    lua_xmove(co, L, 1);
    host_task *me = host_task_of(L);
    if (me && t->outcome == OUTCOME_FAILED) host_task_note_origin(L, me, -1, t, 0);
    return lua_error(L);
  }
  luaL_checkstack(L, n, "too many results");
  lua_checkstack(co, n);
  for (int i = 1; i <= n; i++) lua_pushvalue(co, i);
  lua_xmove(co, L, n);
  return n;
}

void host_task_first(lua_State *L, host_task *t, int *failed) {
  lua_State *co = t->co;
  *failed = t->outcome != OUTCOME_OK;
  if (*failed) t->flags |= TF_RETRIEVED;
  if (lua_gettop(co) == 0) {
    lua_pushnil(L);
    return;
  }
  lua_pushvalue(co, 1);
  lua_xmove(co, L, 1);
}

void host_task_listen(host_task *t, host_listener *l,
                      void (*fn)(host_listener *, host_task *)) {
  l->fn = fn;
  host_list_push(&t->awaiters, &l->link);
}

void host_task_unlisten(host_listener *l) { host_list_remove(&l->link); }

int host_task_cancel_for(host_task *target, host_task *from) {
  lua_State *L = from->h->cbL;
  if (!(from->flags & TF_HAS_MSG)) return host_task_cancel(target, L, 0);
  host_task_push_rare(L, from, HOST_RARE_MSG);
  int passed = host_task_cancel(target, L, lua_gettop(L));
  lua_pop(L, 1);
  return passed;
}

/* ---- the Task type ------------------------------------------------------ */

static int task_tostring(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  const char *state = t->state != TASK_DONE ? "pending"
                      : t->outcome == OUTCOME_CANCELLED ? "cancelled"
                      : t->outcome == OUTCOME_FAILED ? "failed"
                                                      : "finished";
  host_task_push_name(L, 1);
  lua_pushfstring(L, "<Task %s name='%s'>", state, lua_tostring(L, -1));
  return 1;
}

/* asyncio's "Task exception was never retrieved", through the exception
 * handler: the Task at 1 is being finalized (its thread and error are
 * still there). */
static void never_retrieved(lasync_host *h, lua_State *L, host_task *t) {
  luaL_checkstack(L, 6, "exception context");
  int top = lua_gettop(L);
  lua_pushvalue(t->co, 1);
  lua_xmove(t->co, L, 1);
  if (host_debug_on(h) && t->created_src) /* where it was made */
    lua_pushfstring(L, "Task exception was never retrieved (Task-%I, "
                       "created at %s:%d)", (lua_Integer)t->id,
                    t->created_src, t->created_line);
  else
    lua_pushfstring(L, "Task exception was never retrieved (Task-%I)",
                    (lua_Integer)t->id);
  host_push_context(L, lua_tostring(L, -1), top + 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "task");
  host_task_push_report_of(L, t);
  lua_setfield(L, -2, "traceback");
  host_push_created(L, t);
  lua_setfield(L, -2, "source");
  host_call_exception_handler(h, L, -1);
  lua_settop(L, top);
}

/* A task is collected only once it is done and unreferenced, or when the
 * state closes.  A failure nobody looked at is reported here, like
 * asyncio's "Task exception was never retrieved". */
static int task_gc(lua_State *L) {
  host_task *t = lua_touserdata(L, 1);
  lasync_host *h = t->h;
  if (t->state != TASK_DONE) {
    /* A pending task is anchored: it is collected only when the state
     * closes.  Nothing may be queued to run any more; what it waits on
     * must forget it, and what waits on it is told it ended. */
    h->state_closing = 1;
    if ((t->flags & (TF_PARKED | TF_QUEUED)) == TF_PARKED && t->wait_cancel)
      t->wait_cancel(t, 0); /* stops its timer or leaves what it awaits */
    t->outcome = OUTCOME_CANCELLED;
    task_end(h, t);
  } else if (t->outcome == OUTCOME_FAILED && !(t->flags & TF_RETRIEVED)) {
    /* weak-keyed entries of an object being finalized are still there */
    never_retrieved(h, L, t);
  }
  host_task_drop_report(L, t);
  if (t->flags & TF_HAS_MSG) { /* a task collected pending (closing) */
    lua_pushnil(L);
    host_task_set_rare(L, t, HOST_RARE_MSG);
  }
  return 0;
}

void host_task_types(lua_State *L) {
  static const luaL_Reg meta[] = {{"__tostring", task_tostring},
                                  {"__gc", task_gc},
                                  {NULL, NULL}};
  host_new_type(L, HOST_TASK_MT, NULL, meta, 0);
}
