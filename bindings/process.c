/* Subprocesses: create_subprocess_exec / create_subprocess_shell over
 * uv_spawn.  Their pipes are the same StreamReader/StreamWriter as TCP
 * (stream.c).  The process record follows handle.h's protocol: freed once
 * the handle is closed (after the child exited) and the Lua object is gone;
 * a child still running when its object is collected keeps its handle
 * until it exits (or until the host shuts down). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "handle.h"

#define PROCESS_MT "asyncio.Process"

typedef struct proc {
  host_handle hd;        /* lifetime: handle.h */
  uv_process_t p;
  lasync_host *h;
  int64_t exit_status;
  int term_signal;
  int pid;
  unsigned char exited;
  host_link waiters;
} proc;

static void proc_free(host_handle *hd) {
  free(host_container_of(hd, proc, hd));
}

static void proc_closed(uv_handle_t *handle) {
  proc *pr = handle->data;
  host_handle_after_close(&pr->hd);
}

/* The handle closes once the child has exited, or when the host stops
 * (the child runs on, unwatched); a collected Process whose child still
 * runs keeps watching it until it exits. */
static int proc_close(host_handle *hd, lua_State *L) {
  proc *pr = host_container_of(hd, proc, hd);
  if (!pr->exited && L && !host_closing(pr->h)) return 0;
  uv_close((uv_handle_t *)&pr->p, proc_closed);
  return 1;
}

static const host_handle_type PROCESS_TYPE = {PROCESS_MT, "process",
                                              proc_close, proc_free};

static void on_child_exit(uv_process_t *p, int64_t status, int sig) {
  proc *pr = p->data;
  pr->exited = 1;
  pr->exit_status = status;
  pr->term_signal = sig;
  host_handle_close(&pr->hd, NULL);
  io_wake_all(&pr->waiters);
}

/* The record of the Process at 1, NULL once it was finalized. */
static proc *test_proc(lua_State *L) {
  host_handle *hd = host_handle_test(L, 1, &PROCESS_TYPE);
  return hd ? host_container_of(hd, proc, hd) : NULL;
}

/* A Process reached from a finalizer after its own __gc has no record. */
static proc *check_proc(lua_State *L, const char *fname) {
  host_handle *hd = host_handle_check(L, 1, &PROCESS_TYPE, fname, 0);
  return host_container_of(hd, proc, hd);
}

/* A child we no longer watch (the host stopped and let go of it): its pid
 * may already name another process, and nothing would ever wake a wait. */
static void check_watched(lua_State *L, proc *pr, const char *fname) {
  if (!pr->exited && pr->hd.closing)
    host_error_raise(L, "InvalidStateError",
                     "%s(): the process is no longer watched (the event "
                     "loop is closed)", fname);
}

static void push_returncode(lua_State *L, proc *pr) {
  if (!pr->exited)
    lua_pushnil(L);
  else if (pr->term_signal)
    lua_pushinteger(L, -pr->term_signal);
  else
    lua_pushinteger(L, (lua_Integer)pr->exit_status);
}

static int proc_wait_k(lua_State *L, lua_KContext ctx) {
  proc *pr = test_proc(L);
  (void)ctx;
  if (pr->exited) {
    push_returncode(L, pr);
    return 1;
  }
  return io_wait(L, host_task_of(L), &pr->waiters, proc_wait_k);
}

static int proc_wait(lua_State *L) {
  proc *pr = check_proc(L, "wait");
  lua_settop(L, 1);
  if (pr->exited) return proc_wait_k(L, 0);
  check_watched(L, pr, "wait");
  host_check_task(L, "wait");
  return proc_wait_k(L, 0);
}

static int signal_child(lua_State *L, proc *pr, int sig) {
  if (pr->exited) /* as asyncio's Process once the child is gone */
    return host_raise_oserror(L, UV_ESRCH, "kill",
                              lua_pushfstring(L, "%d", pr->pid));
  check_watched(L, pr, "send_signal");
  int rc = uv_process_kill(&pr->p, sig);
  if (rc && rc != UV_ESRCH)
    return host_raise_oserror(L, rc, "kill",
                              lua_pushfstring(L, "%d", pr->pid));
  return 0;
}

static int proc_send_signal(lua_State *L) {
  proc *pr = check_proc(L, "send_signal");
  return signal_child(L, pr, io_check_signal(L, 2));
}

static int proc_kill(lua_State *L) {
  return signal_child(L, check_proc(L, "kill"), SIGKILL);
}

static int proc_terminate(lua_State *L) {
  return signal_child(L, check_proc(L, "terminate"), SIGTERM);
}

/* __close: the scope that owns the child is over.  Its pipes are closed
 * and a child still running is killed (waiting for it to end by itself
 * could hang the scope forever), then reaped: waited for when the scope
 * is in a task, as a to-be-closed writer waits for its close. */
static int proc_tbc(lua_State *L) {
  host_handle *hd = host_handle_test(L, 1, &PROCESS_TYPE);
  if (!hd) return 0;
  proc *pr = host_container_of(hd, proc, hd);
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 1);
  for (int i = 0; i < 3; i++) {
    static const char *const names[] = {"stdin", "stdout", "stderr"};
    if (lua_getfield(L, 2, names[i]) != LUA_TNIL) lstream_close_wrapper(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  if (pr->exited || pr->hd.closing) return 0;
  uv_process_kill(&pr->p, SIGKILL);
  if (!host_task_of(L) || !lua_isyieldable(L)) return 0;
  return proc_wait_k(L, 0);
}

/* tostring(p): "<Process 1234 running>" or "<Process 1234 returncode=6>" */
static int proc_tostring(lua_State *L) {
  proc *pr = test_proc(L);
  if (!pr)
    lua_pushliteral(L, "<Process finalized>");
  else if (!pr->exited)
    lua_pushfstring(L, "<Process %d running>", pr->pid);
  else {
    push_returncode(L, pr);
    lua_pushfstring(L, "<Process %d returncode=%s>", pr->pid,
                    lua_tostring(L, -1));
  }
  return 1;
}

static int proc_index(lua_State *L) {
  proc *pr = test_proc(L);
  const char *key = lua_tostring(L, 2);
  if (!pr) { /* finalized: only the methods remain (and they raise) */
    lua_getiuservalue(L, 1, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
  }
  if (key && strcmp(key, "pid") == 0) {
    lua_pushinteger(L, pr->pid);
    return 1;
  }
  if (key && strcmp(key, "returncode") == 0) {
    push_returncode(L, pr);
    return 1;
  }
  lua_getiuservalue(L, 1, 1); /* {stdin=, stdout=, stderr=} */
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL) return 1;
  lua_getiuservalue(L, 1, 2); /* methods */
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* ---- spawning --------------------------------------------------------- */

enum { IO_INHERIT, IO_PIPE, IO_DEVNULL, IO_STDOUT, IO_FD };

static int check_stdio(lua_State *L, int opts, const char *name, int fd,
                       int *pass) {
  static const char *const modes[] = {"inherit", "pipe", "devnull",
                                      "stdout", NULL};
  int m = IO_INHERIT;
  if (opts && lua_getfield(L, opts, name) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) { /* an fd, a file, a stream */
      *pass = io_stdio_fd(L, opts, name, fd);
      lua_pop(L, 1);
      return IO_FD;
    }
    const char *v = lua_tostring(L, -1);
    m = -1;
    for (int i = 0; v && modes[i]; i++)
      if (strcmp(v, modes[i]) == 0) m = i;
    if (m < 0 || (m == IO_STDOUT && fd != 2))
      luaL_error(L, "bad option '%s' (\"pipe\", \"inherit\", \"devnull\"%s "
                    "expected, got %s)", name, fd == 2 ? " or \"stdout\"" : "",
                 v ? lua_pushfstring(L, "\"%s\"", v) : luaL_typename(L, -1));
  }
  if (opts) lua_pop(L, 1);
  return m;
}

/* A NULL-terminated char* array of the strings in table idx (or of
 * "key=value" pairs when env), kept alive by a table pushed on the stack. */
static char **string_list(lua_State *L, int idx, const char *first, int env,
                          int arg) {
  int n = 0;
  lua_newtable(L); /* keeps the strings */
  int keep = lua_gettop(L);
  if (first) {
    lua_pushstring(L, first);
    lua_rawseti(L, keep, ++n);
  }
  if (idx) {
    if (env) {
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        /* a NUL or '=' in a name, or a NUL in a value, would set another
         * variable than the one asked for */
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
          luaL_argerror(L, arg, "option 'env': string keys and values "
                                "expected");
        const char *k = host_opt_cstring(L, -2, arg, "option 'env' name");
        if (!*k || strchr(k, '='))
          luaL_argerror(L, arg, lua_pushfstring(L, "option 'env': illegal "
                                                   "variable name '%s'", k));
        lua_tostring(L, -1); /* numbers become strings */
        const char *v = host_opt_cstring(L, -1, arg, "option 'env' value");
        lua_pushfstring(L, "%s=%s", k, v);
        lua_rawseti(L, keep, ++n);
        lua_pop(L, 1);
      }
    } else {
      lua_Integer len = luaL_len(L, idx);
      for (lua_Integer i = 1; i <= len; i++) {
        lua_geti(L, idx, i);
        if (!lua_isstring(L, -1))
          luaL_argerror(L, arg, lua_pushfstring(L, "item %I is a %s, string "
                                                   "expected", i,
                                                luaL_typename(L, -1)));
        lua_tostring(L, -1); /* numbers become strings */
        const char *what = lua_pushfstring(L, "item %I", i);
        host_opt_cstring(L, -2, arg, what);
        lua_pop(L, 1);
        lua_rawseti(L, keep, ++n);
      }
    }
  }
  char **list = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + 1), 0);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, keep, i);
    list[i - 1] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  list[n] = NULL;
  lua_setfield(L, keep, "list");
  return list;
}

/* Spawns argv with the options at opts (0: none); pushes the Process. */
static int spawn(lua_State *L, lasync_host *h, const char *file, char **argv,
                 int opts) {
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  lstream *pipes[3] = {NULL, NULL, NULL};
  int modes[3], pass[3], devnull = -1, pfds[2] = {-1, -1}, rc = 0;
  const char *names[3] = {"stdin", "stdout", "stderr"};
  size_t limit = 0;
  memset(&o, 0, sizeof o);
  for (int i = 0; i < 3; i++)
    modes[i] = check_stdio(L, opts, names[i], i, &pass[i]);
  if (opts) {
    if (lua_getfield(L, opts, "cwd") != LUA_TNIL)
      o.cwd = host_opt_cstring(L, -1, opts, "option 'cwd'"); /* stays */
    if (lua_getfield(L, opts, "env") != LUA_TNIL) {
      if (!lua_istable(L, -1))
        return luaL_error(L, "bad option 'env' (table expected, got %s)",
                          luaL_typename(L, -1));
      o.env = string_list(L, lua_gettop(L), NULL, 1, opts);
    }
    limit = io_opt_limit(L, opts);
  }
  host_handle **box = host_handle_newbox(L, PROCESS_MT, 2);
  int boxidx = lua_gettop(L);
  lua_newtable(L);
  lua_setiuservalue(L, boxidx, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setiuservalue(L, boxidx, 2);
  proc *pr = calloc(1, sizeof *pr);
  if (!pr) return luaL_error(L, "asyncio: out of memory");
  pr->h = h;
  host_list_init(&pr->waiters);
  for (int i = 0; i < 3 && !rc; i++) {
    if (modes[i] == IO_PIPE) {
      pipes[i] = lstream_new(h, LSTREAM_PIPE, &rc);
      if (!pipes[i]) break;
      if (i == 1 && modes[2] == IO_STDOUT) {
        /* stdout and stderr share one pipe that we make ourselves */
        rc = uv_pipe(pfds, UV_NONBLOCK_PIPE, 0);
        if (!rc) rc = uv_pipe_open((uv_pipe_t *)lstream_handle(pipes[1]),
                                   pfds[0]);
        if (!rc) pfds[0] = -1;
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = pfds[1];
      } else {
        stdio[i].flags = UV_CREATE_PIPE |
                         (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
        stdio[i].data.stream = lstream_handle(pipes[i]);
      }
    } else if (modes[i] == IO_FD) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = pass[i];
    } else if (modes[i] == IO_DEVNULL) {
      if (devnull < 0) devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (devnull < 0) rc = UV_EIO;
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = devnull;
    } else if (modes[i] == IO_STDOUT) {
      stdio[i] = stdio[1];
      if (modes[1] == IO_PIPE) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = pfds[1];
      }
    } else {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    }
  }
  if (!rc) {
    o.file = file;
    o.args = argv;
    o.stdio = stdio;
    o.stdio_count = 3;
    o.exit_cb = on_child_exit;
    pr->p.data = pr;
    host_handle_init(&pr->hd, &PROCESS_TYPE, h);
    rc = uv_spawn(h->loop, &pr->p, &o);
    if (rc) { /* the handle was initialised: it is closed all the same */
      host_handle_close(&pr->hd, NULL);
      pr = NULL;
    }
  } else {
    free(pr);
    pr = NULL;
  }
  if (devnull >= 0) close(devnull);
  if (pfds[0] >= 0) close(pfds[0]);
  if (pfds[1] >= 0) close(pfds[1]);
  if (!pr) {
    for (int i = 0; i < 3; i++)
      if (pipes[i]) lstream_unref(pipes[i]);
    return host_raise_oserror(L, rc, "spawn", file);
  }
  host_handle_attach(box, &pr->hd);
  pr->pid = pr->p.pid;
  for (int i = 0; i < 3; i++) { /* a stream handed over is the child's now */
    if (modes[i] != IO_FD) continue;
    lua_getfield(L, opts, names[i]);
    lstream_close_wrapper(L, -1);
    lua_pop(L, 1);
  }
  lua_getiuservalue(L, boxidx, 1);
  for (int i = 0; i < 3; i++) {
    if (!pipes[i]) continue;
    if (limit) lstream_set_limit(pipes[i], limit);
    if (i == 0) {
      lstream_push_writer(L, pipes[i]);
    } else {
      lstream_start(pipes[i]);
      lstream_push_reader(L, pipes[i]);
    }
    lua_setfield(L, -2, names[i]);
    lstream_unref(pipes[i]);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, boxidx);
  return 1;
}

static int opts_arg(lua_State *L, int idx) {
  static const char *const known[] = {"stdin", "stdout", "stderr", "cwd",
                                      "env", "limit", NULL};
  if (lua_isnoneornil(L, idx)) return 0;
  host_check_options(L, idx, known);
  return idx;
}

static int l_create_subprocess_exec(lua_State *L) {
  const char *prog = host_check_cstring(L, 1, NULL);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  int opts = opts_arg(L, 3);
  lua_settop(L, 3);
  char **argv = string_list(L, lua_isnil(L, 2) ? 0 : 2, prog, 0, 2);
  return spawn(L, io_live_host(L, "create_subprocess_exec"), prog, argv, opts);
}

static int l_create_subprocess_shell(lua_State *L) {
  const char *cmd = host_check_cstring(L, 1, NULL);
  int opts = opts_arg(L, 2);
  lua_settop(L, 2);
  lua_createtable(L, 2, 0);
  lua_pushliteral(L, "-c");
  lua_rawseti(L, -2, 1);
  lua_pushstring(L, cmd);
  lua_rawseti(L, -2, 2);
  char **argv = string_list(L, 3, "/bin/sh", 0, 1);
  return spawn(L, io_live_host(L, "create_subprocess_shell"), "/bin/sh", argv,
               opts);
}

/* communicate() in Lua: it needs concurrent reads of stdout and stderr
 * while stdin is written, which tasks give for free. */
static const char LUA_PARTS[] =
    "local P, asyncio = ...\n"
    "local function write_input(self, input)\n"
    "  local w = self.stdin\n"
    "  if not w then return end\n"
    "  if input then\n"
    "    local ok, err = pcall(function() w:write(input); w:drain() end)\n"
    "    if not ok and not asyncio.is(err, asyncio.ConnectionError) then\n"
    "      error(err, 0)\n"
    "    end\n"
    "  end\n"
    "  w:close()\n"
    "end\n"
    "function P.communicate(self, input)\n"
    "  if input ~= nil and type(input) ~= 'string' then\n"
    "    error(\"bad argument #1 to 'communicate' (string expected, got \"\n"
    "          .. type(input) .. ')', 2)\n"
    "  end\n"
    "  local tasks = {}\n"
    "  for i, name in ipairs{'stdout', 'stderr'} do\n"
    "    local r = self[name]\n"
    "    if r then\n"
    "      tasks[i] = asyncio.create_task(function() return r:read() end)\n"
    "    end\n"
    "  end\n"
    "  local ok, out, errout = pcall(function()\n"
    "    write_input(self, input)\n"
    "    local out = tasks[1] and tasks[1]:await()\n"
    "    local errout = tasks[2] and tasks[2]:await()\n"
    "    self:wait()\n"
    "    return out, errout\n"
    "  end)\n"
    "  if ok then return out, errout end\n"
    "  for _, t in pairs(tasks) do t:cancel() end\n"
    "  error(out, 0)\n"
    "end\n";

static const luaL_Reg methods[] = {{"wait", proc_wait},
                                   {"kill", proc_kill},
                                   {"terminate", proc_terminate},
                                   {"send_signal", proc_send_signal},
                                   {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"create_subprocess_exec", l_create_subprocess_exec},
    {"create_subprocess_shell", l_create_subprocess_shell},
    {NULL, NULL}};

void io_open_process(lua_State *L, lasync_host *h) {
  int mod = lua_gettop(L);
  static const luaL_Reg meta[] = {{"__index", proc_index},
                                   {"__gc", host_handle_gc},
                                   {"__close", proc_tbc},
                                   {"__tostring", proc_tostring},
                                   {NULL, NULL}};
  host_new_type(L, PROCESS_MT, NULL, meta, 0);
  host_handle_register(L, &PROCESS_TYPE);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  int m = lua_gettop(L);
  if (luaL_loadbuffer(L, LUA_PARTS, sizeof LUA_PARTS - 1, "=process"))
    lua_error(L);
  lua_pushvalue(L, m);
  lua_pushvalue(L, mod);
  lua_call(L, 2, 0);
  for (const luaL_Reg *f = funcs; f->name; f++) {
    lua_pushlightuserdata(L, h);
    lua_pushvalue(L, m);
    lua_pushcclosure(L, f->func, 2);
    lua_setfield(L, mod, f->name);
  }
  lua_pop(L, 1);
}
