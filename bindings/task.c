/* What Lua calls for tasks: run, create_task/spawn, the Task methods
 * (await among them), current_task and all_tasks.  The task record itself
 * (spawning, ending, outcomes) is the host's: host/task.c. */
#include "../host/future.h"
#include "init.h"

/* ---- awaiting one task ------------------------------------------------ */

static void await_done(host_listener *l, host_task *done) {
  (void)done;
  host_wake(host_container_of(l, host_task, await_node), NULL, 0);
}

/* Cancelling a task that awaits another cancels the awaited one (as
 * asyncio does); the awaiter then gets whatever that one ends with. */
static int await_cancel(host_task *t, int woken) {
  host_task *target = t->wait_data;
  if (woken || !host_list_linked(&t->await_node.link)) return 0;
  if (host_task_cancel_for(target, t)) return 1;
  host_task_unlisten(&t->await_node);
  return 0;
}

/* True when t was woken because the task it awaits finished: a result
 * that no cancel hook can give back to anyone (wait.c's deadlines). */
int l_task_await_woken(host_task *t) {
  return (t->flags & (TF_PARKED | TF_QUEUED)) == (TF_PARKED | TF_QUEUED) &&
         t->wait_cancel == await_cancel;
}

host_task *l_task_listener_owner(host_listener *l) {
  return l->fn == await_done ? host_container_of(l, host_task, await_node)
                             : NULL;
}

/* The task t awaits, if it waits in task:await() (host->awaiting). */
static host_task *awaiting(host_task *t) {
  if (t->state == TASK_DONE || !(t->flags & TF_PARKED) ||
      t->wait_cancel != await_cancel)
    return NULL;
  return t->wait_data;
}

static int await_k(lua_State *L, lua_KContext ctx) {
  host_task *target = (host_task *)ctx;
  return host_task_results(L, target);
}

/* Waits for the task at idx and returns its results, or raises its error. */
static int await_task(lua_State *L, int idx, const char *fname) {
  host_task *target = host_check_task_arg(L, idx);
  if (target->state == TASK_DONE) return host_task_results(L, target);
  host_task *t = host_check_task(L, fname);
  if (t == target) return luaL_error(L, "asyncio: a task cannot await itself");
  lua_settop(L, idx); /* keeps the target alive while we wait */
  host_task_listen(target, &t->await_node, await_done);
  return host_park(L, t, await_cancel, target, await_k, (lua_KContext)target);
}

static int task_await(lua_State *L) { return await_task(L, 1, "await"); }

/* ---- creating and running --------------------------------------------- */

static int l_create_task(lua_State *L) {
  host_check_callable(L, 1);
  host_task_spawn(HOST(L), L, lua_gettop(L) - 1);
  return 1;
}

/* Drives the loop from outside any task until t is done; then, like
 * Python's asyncio.run, cancels what is left and lets it unwind.  The
 * outermost asyncio.run in asyncio.so's host takes Ctrl-C as Python's
 * does: the main task is cancelled and "interrupted!" (lua.c's words)
 * raised once it has unwound (run_sigint.c). */
static int run_outside(lua_State *L, lasync_host *h, host_task *t,
                       int cleanup) {
  host_sigint *sig =
      cleanup && !h->run_target ? host_sigint_start(h, t) : NULL;
  int deadlock = host_run_task(h, t, L);
  if (cleanup) host_drain(h, L);
  int interrupted = host_sigint_stop(sig);
  if (interrupted == 2 ||
      (interrupted == 1 && t->outcome == OUTCOME_CANCELLED)) {
    t->flags |= TF_RETRIEVED;
    lua_pushliteral(L, "interrupted!");
    return lua_error(L);
  }
  if (deadlock) {
    luaL_where(L, 1);
    host_push_deadlock(L, h, "asyncio.run(): the main task");
    lua_concat(L, 2);
    return lua_error(L);
  }
  return host_task_results(L, t);
}

static int run_task(lua_State *L, int cleanup, const char *fname) {
  lasync_host *h = HOST(L);
  int top = lua_gettop(L);
  if (host_task_of(L)) return await_task(L, top, fname);
  if (h->running)
    return luaL_error(L, "asyncio: %s() cannot be called from a running "
                         "event loop", fname);
  host_task *t = host_check_task_arg(L, top);
  return run_outside(L, h, t, cleanup);
}

static int l_run(lua_State *L) {
  host_check_callable(L, 1);
  if (l_run_options(L, 2)) lua_remove(L, 2);
  host_task_spawn(HOST(L), L, lua_gettop(L) - 1);
  return run_task(L, 1, "run");
}

/* loop:run_until_complete(task_or_function): like run, without cancelling
 * the other tasks at the end. */
int l_run_until_complete(lua_State *L, int idx) {
  if (host_future_test(L, idx)) {
    l_future_task(L, idx); /* runs until the future is settled */
  } else if (!host_test_task_arg(L, idx)) {
    host_check_callable(L, idx);
    lua_pushvalue(L, idx);
    host_task_spawn(HOST(L), L, 0);
  } else {
    lua_pushvalue(L, idx);
  }
  return run_task(L, 0, "run_until_complete");
}

/* ---- Task methods ----------------------------------------------------- */

static int task_cancel(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  lua_pushboolean(L, host_task_cancel(t, L, lua_isnoneornil(L, 2) ? 0 : 2));
  return 1;
}

static int task_done(lua_State *L) {
  lua_pushboolean(L, host_check_task_arg(L, 1)->state == TASK_DONE);
  return 1;
}

static int task_cancelled(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  lua_pushboolean(L, t->state == TASK_DONE && t->outcome == OUTCOME_CANCELLED);
  return 1;
}

static void check_done(lua_State *L, host_task *t, const char *what) {
  if (t->state != TASK_DONE)
    host_error_raise(L, "InvalidStateError", "%s is not set", what);
}

static int task_result(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  check_done(L, t, "Result");
  return host_task_results(L, t);
}

static int task_exception(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  int failed;
  check_done(L, t, "Exception");
  if (t->outcome == OUTCOME_CANCELLED) return host_task_results(L, t);
  if (t->outcome == OUTCOME_OK) return 0;
  host_task_first(L, t, &failed);
  return 1;
}

/* ---- done callbacks ---------------------------------------------------- */

/* A Lua done callback waits in the task's listener list beside its
 * awaiters, so that when the task ends they are told in the order they
 * came: in asyncio an awaiter's wake-up is itself a done callback, and
 * `t:add_done_callback(cb); t:await()` resumes after cb ran.  The node is
 * a userdata (user value 1: the function) that a registry reference keeps
 * until it fires or is removed. */
typedef struct done_cb {
  host_listener l;
  int ref;
} done_cb;

static void done_cb_fire(host_listener *l, host_task *t) {
  done_cb *d = host_container_of(l, done_cb, l);
  lasync_host *h = t->h;
  if (h->state_closing) return; /* the state is going: nothing runs */
  lua_State *L = h->cbL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, d->ref);
  d->ref = LUA_NOREF;
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  host_task_push(L, t);
  host_call_soon(h, L, 1);
}

static int task_add_done_callback(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  host_check_callable(L, 2);
  lua_settop(L, 2);
  if (t->state == TASK_DONE) {
    lua_pushvalue(L, 1);
    host_call_soon(t->h, L, 1);
    return 0;
  }
  done_cb *d = lua_newuserdatauv(L, sizeof *d, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  d->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  host_task_listen(t, &d->l, done_cb_fire);
  return 0;
}

static int task_remove_done_callback(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  luaL_checkany(L, 2);
  lua_Integer removed = 0;
  host_link *head = &t->awaiters;
  for (host_link *n = head->next, *next; n != head; n = next) {
    next = n->next;
    host_listener *l = host_container_of(n, host_listener, link);
    if (l->fn != done_cb_fire) continue;
    done_cb *d = host_container_of(l, done_cb, l);
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref);
    lua_getiuservalue(L, -1, 1);
    if (lua_rawequal(L, -1, 2)) {
      host_task_unlisten(l);
      luaL_unref(L, LUA_REGISTRYINDEX, d->ref);
      d->ref = LUA_NOREF;
      removed++;
    }
    lua_pop(L, 2);
  }
  lua_pushinteger(L, removed);
  return 1;
}

static int task_get_name(lua_State *L) {
  host_check_task_arg(L, 1);
  host_task_push_name(L, 1);
  return 1;
}

static int task_set_name(lua_State *L) {
  host_check_task_arg(L, 1);
  luaL_checkany(L, 2);
  host_task_extras(L, 1, 1);
  luaL_tolstring(L, 2, NULL);
  lua_setfield(L, -2, "name");
  return 0;
}

static int task_cancelling(lua_State *L) {
  lua_pushinteger(L, host_check_task_arg(L, 1)->ncancels);
  return 1;
}

static int task_uncancel(lua_State *L) {
  host_task *t = host_check_task_arg(L, 1);
  if (t->ncancels > 0) t->ncancels--;
  /* back to 0: a cancellation not yet delivered is withdrawn (3.13).  A
   * parked task's wait was already undone for it: that one stays. */
  if (t->ncancels == 0)
    t->flags &= (unsigned short)~(TF_DEFER_CANCEL |
                                  (t->flags & TF_PARKED ? 0 : TF_MUST_CANCEL));
  lua_pushinteger(L, t->ncancels);
  return 1;
}

static const luaL_Reg task_methods[] = {
    {"await", task_await},
    {"cancel", task_cancel},
    {"cancelled", task_cancelled},
    {"done", task_done},
    {"result", task_result},
    {"exception", task_exception},
    {"add_done_callback", task_add_done_callback},
    {"remove_done_callback", task_remove_done_callback},
    {"get_name", task_get_name},
    {"set_name", task_set_name},
    {"cancelling", task_cancelling},
    {"uncancel", task_uncancel},
    {NULL, NULL}};


/* ---- current_task / all_tasks ----------------------------------------- */

static int l_current_task(lua_State *L) {
  host_task *t = host_task_of(L);
  if (t)
    host_task_push(L, t);
  else
    lua_pushnil(L);
  return 1;
}

static int l_all_tasks(lua_State *L) {
  lasync_host *h = HOST(L);
  lua_createtable(L, (int)h->npending, 0);
  host_push_pending(L, h);
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (host_test_task_arg(L, -1))
      lua_rawseti(L, -4, ++i);
    else
      lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"run", l_run},
    {"create_task", l_create_task},
    {"current_task", l_current_task},
    {"all_tasks", l_all_tasks},
    {NULL, NULL}};

void l_open_task(lua_State *L, lasync_host *h) {
  h->awaiting = awaiting;
  host_new_type(L, HOST_TASK_MT, task_methods, NULL, 0);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  lua_getfield(L, -1, "create_task");
  lua_setfield(L, -2, "spawn");
}
