/* asyncio.Future: what Lua calls on the one future core (host/future.c).
 * A Lua future bridges a callback API to tasks: whoever holds it settles
 * it once (set_result / set_exception / cancel) and any number of tasks
 * await it; done callbacks run through call_soon, never inline. */
#include <stdlib.h>

#include "../host/future.h"
#include "init.h"

static const char *const STATE_NAMES[] = {"pending", "finished", "finished",
                                          "cancelled"};

static lasync_future *check_pending(lua_State *L, const char *fname) {
  lasync_future *f = host_future_check(L, 1);
  if (f->state != FUT_PENDING)
    host_error_raise(L, "InvalidStateError", "%s(): invalid state (the "
                     "future is %s already)", fname, STATE_NAMES[f->state]);
  return f;
}

static int l_future(lua_State *L) {
  if (!lua_isnone(L, 1))
    return luaL_error(L, "bad argument #1 to 'Future' (no arguments "
                         "expected, got %s)", luaL_typename(L, 1));
  host_future_new(L, HOST(L));
  return 1;
}

static int fut_set_result(lua_State *L) {
  lasync_future *f = check_pending(L, "set_result");
  host_future_settle(L, f, FUT_RESOLVED, lua_gettop(L) - 1);
  return 0;
}

/* An error class is a table that is its own __index (host/errors.c):
 * set_exception(asyncio.RuntimeError) stores an instance, as asyncio
 * instantiates an exception class. */
static int is_error_class(lua_State *L, int idx) {
  if (!lua_istable(L, idx)) return 0;
  lua_pushliteral(L, "__index");
  lua_rawget(L, idx);
  int same = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  return same && host_is_callable(L, idx);
}

static int fut_set_exception(lua_State *L) {
  lasync_future *f = check_pending(L, "set_exception");
  if (lua_isnoneornil(L, 2))
    return luaL_error(L, "bad argument #1 to 'set_exception' (error value "
                         "expected, got %s)", luaL_typename(L, 2));
  lua_settop(L, 2);
  if (is_error_class(L, 2)) {
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "");
    lua_call(L, 1, 1);
  }
  host_future_settle(L, f, FUT_REJECTED, 1);
  return 0;
}

static int fut_result(lua_State *L) {
  lasync_future *f = host_future_check(L, 1);
  if (f->state == FUT_PENDING)
    return host_error_raise(L, "InvalidStateError", "Result is not set");
  return host_future_results(L, f);
}

static int fut_exception(lua_State *L) {
  lasync_future *f = host_future_check(L, 1);
  switch (f->state) {
  case FUT_PENDING:
    return host_error_raise(L, "InvalidStateError", "Exception is not set");
  case FUT_RESOLVED:
    return 0;
  case FUT_CANCELLED:
    return host_future_results(L, f); /* raises the CancelledError */
  default:
    f->retrieved = 1;
    host_future_push_error(L, f);
    return 1;
  }
}

static int fut_done(lua_State *L) {
  lua_pushboolean(L, host_future_check(L, 1)->state != FUT_PENDING);
  return 1;
}

static int fut_cancelled(lua_State *L) {
  lua_pushboolean(L, host_future_check(L, 1)->state == FUT_CANCELLED);
  return 1;
}

static int fut_cancel(lua_State *L) {
  lasync_future *f = host_future_check(L, 1);
  lua_pushboolean(L, host_future_cancel(L, f, lua_isnone(L, 2) ? 0 : 2));
  return 1;
}

/* The done callbacks (user value 2) are pairs: the function, and how many
 * tasks awaited the future when it was added.  Awaiters leave only when
 * the future settles (a cancelled one cancels it), so that count places
 * each callback among the awaiters, whose wake-ups go in the same order as
 * in asyncio (where an awaiter's wake-up is itself a done callback). */
static int fut_add_done_callback(lua_State *L) {
  lasync_future *f = host_future_check(L, 1);
  host_check_callable(L, 2);
  lua_settop(L, 2);
  if (f->state != FUT_PENDING) { /* done: scheduled at once, as asyncio */
    lua_pushvalue(L, 1);
    host_call_soon(HOST(L), L, 1);
    return 0;
  }
  if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 2);
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1), awaiting = 0;
  for (host_link *l = f->waiters.next; l != &f->waiters; l = l->next)
    awaiting++;
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, n + 1);
  lua_pushinteger(L, awaiting);
  lua_rawseti(L, -2, n + 2);
  return 0;
}

/* Removes every registration of fn; returns how many there were. */
static int fut_remove_done_callback(lua_State *L) {
  host_future_check(L, 1);
  luaL_checkany(L, 2);
  lua_Integer removed = 0;
  if (lua_getiuservalue(L, 1, 2) == LUA_TTABLE) {
    int cbs = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, cbs), j = 1;
    for (lua_Integer i = 1; i + 1 <= n; i += 2) {
      lua_rawgeti(L, cbs, i);
      if (lua_rawequal(L, -1, 2)) {
        removed++;
        lua_pop(L, 1);
        continue;
      }
      lua_rawseti(L, cbs, j);
      lua_rawgeti(L, cbs, i + 1);
      lua_rawseti(L, cbs, j + 1);
      j += 2;
    }
    for (; j <= n; j++) {
      lua_pushnil(L);
      lua_rawseti(L, cbs, j);
    }
  }
  lua_pushinteger(L, removed);
  return 1;
}

static int fut_await(lua_State *L) {
  lasync_future *f = host_future_check(L, 1);
  lua_settop(L, 1); /* the box keeps the record through the wait */
  return host_future_await(L, f);
}

/* <Future pending>, <Future cancelled>, <Future finished result=4>,
 * <Future finished exception=RuntimeError: boom> (asyncio's repr). */
static int fut_tostring(lua_State *L) {
  lasync_future *f = host_future_check(L, 1);
  if (f->state == FUT_PENDING || f->state == FUT_CANCELLED) {
    lua_pushfstring(L, "<Future %s>", STATE_NAMES[f->state]);
    return 1;
  }
  const char *what = "exception";
  if (f->state == FUT_RESOLVED) {
    what = "result";
    lua_pushcfunction(L, fut_result);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
  } else {
    host_future_push_error(L, f);
  }
  if (lua_type(L, -1) == LUA_TSTRING)
    lua_pushfstring(L, "'%s'", lua_tostring(L, -1));
  else
    luaL_tolstring(L, -1, NULL);
  lua_pushfstring(L, "<Future finished %s=%s>", what, lua_tostring(L, -1));
  return 1;
}

/* ---- a task standing for a future ---------------------------------------
 *
 * Where the API takes tasks (gather, wait, wait_for, shield, as_completed)
 * a future is represented by a task that awaits it.  Cancelling that task
 * cancels the future, as asyncio cancels a future it was given: through
 * the await's cancel hook once the task runs, and through this listener
 * when it is cancelled before it ever ran (wait_for(fut, 0)). */

typedef struct stand_in {
  host_listener l;
  lasync_future *f; /* held: the task's stack may have let go of its box */
} stand_in;

static void stand_in_done(host_listener *l, host_task *done) {
  stand_in *s = host_container_of(l, stand_in, l);
  lasync_future *f = s->f;
  lasync_host *h = done->h;
  if (done->outcome == OUTCOME_CANCELLED && !h->state_closing)
    host_future_cancel_for(f, done);
  host_handle_drop(&f->hd);
  free(s);
}

static int future_task_body(lua_State *L) { return fut_await(L); }

void l_future_task(lua_State *L, int idx) {
  lasync_future *f = host_future_check(L, idx);
  lua_pushcfunction(L, future_task_body);
  lua_pushvalue(L, idx);
  host_task *t = host_task_spawn(HOST(L), L, 1);
  /* its failure is the future's, looked at through the future */
  t->flags |= TF_RETRIEVED;
  stand_in *s = malloc(sizeof *s);
  if (!s) luaL_error(L, "asyncio: out of memory");
  s->f = f;
  host_handle_hold(&f->hd);
  host_list_init(&s->l.link);
  host_task_listen(t, &s->l, stand_in_done);
}

static int l_future_task_lua(lua_State *L) {
  l_future_task(L, 1);
  return 1;
}

/* asyncio.isfuture(v): a Future or a Task (a Task is a Future in asyncio). */
static int l_isfuture(lua_State *L) {
  lua_pushboolean(L, host_future_test(L, 1) || host_test_task_arg(L, 1));
  return 1;
}

static const luaL_Reg methods[] = {
    {"set_result", fut_set_result},
    {"set_exception", fut_set_exception},
    {"result", fut_result},
    {"exception", fut_exception},
    {"done", fut_done},
    {"cancelled", fut_cancelled},
    {"cancel", fut_cancel},
    {"add_done_callback", fut_add_done_callback},
    {"remove_done_callback", fut_remove_done_callback},
    {"await", fut_await},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {{"Future", l_future},
                                 {"isfuture", l_isfuture},
                                 {NULL, NULL}};

void l_open_future(lua_State *L, lasync_host *h) {
  host_future_type(L);
  lua_pushlightuserdata(L, h);
  static const luaL_Reg meta[] = {{"__tostring", fut_tostring}, {NULL, NULL}};
  host_new_type(L, HOST_FUTURE_MT, methods, meta, 1);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}

/* Pushes the internal the Lua part uses for futures in task lists. */
void l_push_future_task(lua_State *L, lasync_host *h) {
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_future_task_lua, 1);
}
