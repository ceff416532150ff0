/* lasync: the command-line host, faithful to lua.c (5.4).  Options, their
 * order, messages, LUA_INIT, the REPL and exit statuses are lua.c's; the
 * difference is that each chunk (LUA_INIT, every -e and -l, the script,
 * each REPL line) runs as its own main task, so it may suspend.  After the
 * last chunk the program lives while a task, timer or handle does.
 *
 * Ctrl-C: as lua.c, the SIGINT handler sets a hook on the Lua code that
 * is running, which raises "interrupted!" at its next instruction, and
 * resets SIGINT so that a second one kills at once.  When no Lua code runs
 * (the loop waits), the main task is cancelled instead (as asyncio.run
 * does), its cleanup runs, and the exit status is 130. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "host.h"
#include "repl.h"
#include "workers.h"

#define LUA_INIT_VAR "LUA_INIT"
#define LUA_INITVARVERSION LUA_INIT_VAR LUA_VERSUFFIX

static const char *progname = "lasync";

/* bits of lua.c's collectargs */
enum { has_error = 1, has_i = 2, has_v = 4, has_e = 8, has_E = 16 };

typedef struct cli {
  int argc;
  char **argv;
  lasync_host *h;
  host_task *main;       /* the main task of the chunk running now, or NULL */
  int task_ref;          /* keeps that Task for its outcome */
  uv_async_t wake;       /* the SIGINT handler's way into the loop */
  pthread_t thread;      /* the thread that runs Lua */
  /* Ctrl-C: `pending` is set by the handler and taken by whichever comes
   * first: the hook (Lua code was running) or the loop (it was waiting). */
  volatile sig_atomic_t pending;
  int hit_main;          /* the hook raised "interrupted!" in the main task */
  int interrupted;       /* the main task (or all) cancelled by Ctrl-C */
  int exiting, exit_code;/* os.exit(code, true) from the main task */
  int exit_raise;        /* os.exit's nil error is on its way to main_msgh */
  int repl;              /* the prompt was used: the program ends with it */
  host_lines *lines;     /* the prompt's line reader, while it runs */
} cli;

static cli *the_cli; /* for the signal handler */

/* ---- Ctrl-C ------------------------------------------------------------- */

static void set_sigint(void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0; /* no SA_RESTART: a blocking read returns EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* lua.c's lstop: the hook the handler set. */
static void lstop(lua_State *L, lua_Debug *ar) {
  cli *c = the_cli;
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (!c->pending) return; /* the loop took this Ctrl-C already */
  c->pending = 0;
  c->hit_main = c->main && L == c->main->co;
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  cli *c = the_cli;
  int saved = errno;
  if (!pthread_equal(pthread_self(), c->thread)) {
    /* a library's thread got it: the Lua thread must see it (EINTR) */
    pthread_kill(c->thread, sig);
    errno = saved;
    return;
  }
  if (host_lines_waiting(c->lines) && !c->pending) {
    /* at the prompt: the loop clears the line; only a second Ctrl-C that
     * the loop did not take (a busy task) interrupts the Lua code */
    c->pending = 1;
    uv_async_send(&c->wake);
    errno = saved;
    return;
  }
  set_sigint(SIG_DFL); /* if another SIGINT happens, terminate the process */
  c->pending = 1;
  lua_State *L = c->h->current;
  if (L)
    lua_sethook(L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE |
                              LUA_MASKCOUNT, 1);
  uv_async_send(&c->wake);
  errno = saved;
}

/* In the loop, after a Ctrl-C: unless the hook gave the main task its
 * "interrupted!", the main task is cancelled (all tasks, when the chunks
 * are done), so that waiting code stops too. */
static void on_wake(uv_async_t *a) {
  cli *c = a->data;
  int took = c->pending, hit_main = c->hit_main;
  c->pending = c->hit_main = 0;
  if (host_lines_waiting(c->lines)) { /* Ctrl-C at the prompt */
    host_lines_interrupt(c->lines);
    set_sigint(on_sigint);
    return;
  }
  if (c->repl && (!c->main || c->main->state == TASK_DONE)) {
    set_sigint(on_sigint); /* between lines: the tasks of earlier lines */
    return;                /* are not the user's target */
  }
  if (!took && hit_main) return; /* the main task has its "interrupted!" */
  if (c->repl && isatty(0)) { /* the line's output goes below the "^C" */
    fputs("\n", stdout);
    fflush(stdout);
  }
  c->interrupted = 1;
  if (c->main && c->main->state != TASK_DONE)
    host_task_cancel(c->main, c->h->cbL, 0);
  else
    host_cancel_all(c->h, c->h->cbL);
  uv_stop(c->h->loop);
}

/* ---- messages ------------------------------------------------------------- */

static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l' || badoption[1] == 'X')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"

          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
  fflush(stderr);
}

static void l_message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* lua.c's msghandler, as the message handler of each chunk's main task:
 * the failure is recorded as for any task (the report: the message and the
 * traceback taken here), and the error becomes lua.c's message, so that the
 * chunk's <close> variables see what they see under lua.c: a string or
 * number with the traceback (the report), an object's __tostring alone
 * (the report's first part: __tostring runs once, as in lua.c), else
 * "(error object is a T value)" and the traceback.  A CancelledError stays
 * (lasync's own), and so does os.exit's nil.  Under os.exit's unwinding
 * (lua.c runs those __close from lua_close, on a reset stack) the
 * traceback stops at the __close: no "[C]: in ?" for lua.c's pmain. */
static int main_msgh(lua_State *L) {
  cli *c = lua_touserdata(L, lua_upvalueindex(1));
  host_task *t = host_task_of(L);
  lua_settop(L, 1);
  if (c->exit_raise) {
    c->exit_raise = 0;
    return 1;
  }
  if (!t || host_is_cancelled_error(L, 1)) return 1;
  host_task_record_failure(L, t, L, 1, 1);
  host_task_push_report_of(L, t);
  size_t len;
  const char *r = lua_tolstring(L, -1, &len);
  if (!r) return 1;
  const char *cut = NULL;
  int type = lua_type(L, 1);
  if (type != LUA_TSTRING && type != LUA_TNUMBER &&
      strncmp(r, "(error object is a ", 19) != 0) {
    /* the report is __tostring's text .. "\nstack traceback:..." */
    for (const char *p = r; (p = strstr(p, "\nstack traceback:\n")); p++)
      cut = p;
  } else if (c->exiting) {
    static const char pmain_frame[] = "\n\t[C]: in ?";
    size_t n = sizeof pmain_frame - 1;
    if (len >= n && memcmp(r + len - n, pmain_frame, n) == 0) cut = r + len - n;
  }
  if (cut) lua_pushlstring(L, r, (size_t)(cut - r));
  return 1;
}

/* The message for a main task that failed: main_msgh's (a string), or
 * for what it let through, the CancelledError's text or the report. */
static void push_message(lua_State *L, cli *c, int task, int err) {
  if (lua_type(L, err) == LUA_TSTRING) {
    lua_pushvalue(L, err);
  } else if (c->main->outcome == OUTCOME_CANCELLED) {
    luaL_tolstring(L, err, NULL); /* no report is taken for these */
  } else {
    host_task_push_report(L, task);
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushfstring(L, "(error object is a %s value)",
                      luaL_typename(L, err));
    }
  }
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    l_message(progname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

static void print_version(void) {
  /* ends with lua.c's line: what scripts that read `lua -v` look for */
  printf("lasync %s (libuv %s) -- %s\n", LASYNC_VERSION, uv_version_string(),
         LUA_COPYRIGHT);
  fflush(stdout);
}

/* ---- running a chunk as the main task ------------------------------------ */

/* lua.c's docall: the function and its narg arguments on top of L run as
 * a new main task, with the loop turning until it ends.  Leaves nres
 * results (LUA_MULTRET: all), or the message of its failure. */
static int docall(cli *c, int narg, int nres) {
  lasync_host *h = c->h;
  lua_State *L = h->L;
  c->main = host_task_spawn(h, L, narg);
  lua_pushlightuserdata(L, c);
  lua_pushcclosure(L, main_msgh, 1);
  host_task_set_msgh(c->main, L);
  c->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  set_sigint(on_sigint);
  int deadlock = host_run_task(h, c->main, h->cbL);
  set_sigint(c->repl ? on_sigint : SIG_DFL); /* the prompt takes Ctrl-C */
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->task_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->task_ref);
  c->task_ref = LUA_NOREF;
  int task = lua_gettop(L);
  int status = LUA_ERRRUN;
  if (deadlock) {
    c->main->flags |= TF_RETRIEVED;
    host_push_deadlock(L, h, "the main task");
  } else if (c->main->outcome != OUTCOME_OK) {
    int failed;
    host_task_first(L, c->main, &failed);
    if (c->interrupted && c->main->outcome == OUTCOME_CANCELLED)
      lua_pushstring(L, c->repl ? "CancelledError: the line was cancelled "
                                  "(Ctrl-C)"
                                : "interrupted");
    else
      push_message(L, c, task, task + 1);
  } else {
    status = LUA_OK;
    int n = lua_gettop(c->main->co);
    if (nres == LUA_MULTRET) nres = n;
    luaL_checkstack(L, n + 1, "too many results");
    host_task_results(L, c->main);
    lua_settop(L, task + nres);
  }
  c->main = NULL;
  if (status == LUA_OK) { /* [task results...] */
    lua_remove(L, task);
  } else { /* [task ... message] */
    lua_replace(L, task);
    lua_settop(L, task);
  }
  return status;
}

static int dochunk(cli *c, int status) {
  if (status == LUA_OK) status = docall(c, 0, 0);
  return c->exiting ? status : report(c->h->L, status);
}

static int dofile(cli *c, const char *name) {
  return dochunk(c, luaL_loadfile(c->h->L, name));
}

static int dostring(cli *c, const char *s, const char *name) {
  return dochunk(c, luaL_loadbuffer(c->h->L, s, strlen(s), name));
}

/* 'globname[=modname]': globname = require(modname). */
static int dolibrary(cli *c, char *globname) {
  lua_State *L = c->h->L;
  char *modname = strchr(globname, '=');
  if (modname == NULL) {
    modname = globname;
  } else {
    *modname = '\0';
    modname++;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  int status = docall(c, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, globname);
  return c->exiting ? status : report(L, status);
}

static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  int i;
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int handle_script(cli *c, char **argv) {
  lua_State *L = c->h->L;
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(c, n, 0);
  }
  return c->exiting ? status : report(L, status);
}

/* lua.c's collectargs, unchanged. */
static int collectargs(char **argv, int *first) {
  int args = 0;
  int i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;
    switch (argv[i][1]) {
    case '-':
      if (argv[i][2] != '\0') return has_error;
      *first = i + 1;
      return args;
    case '\0':
      return args;
    case 'E':
      if (argv[i][2] != '\0') return has_error;
      args |= has_E;
      break;
    case 'W':
      if (argv[i][2] != '\0') return has_error;
      break;
    case 'i':
      args |= has_i; /* -i implies -v */ /* FALLTHROUGH */
    case 'v':
      if (argv[i][2] != '\0') return has_error;
      args |= has_v;
      break;
    case 'e':
      args |= has_e; /* FALLTHROUGH */
    case 'X': /* lasync's -X debug / -X inspect (in the man page; the
               * usage message stays lua.c's) */
    case 'l':
      if (argv[i][2] == '\0') {
        i++;
        if (argv[i] == NULL || argv[i][0] == '-') return has_error;
      }
      break;
    default:
      return has_error;
    }
  }
  *first = i;
  return args;
}

/* -e, -l and -W in order; 0 when a chunk failed. */
static int runargs(cli *c, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
    case 'e':
    case 'l': {
      char *extra = argv[i] + 2;
      if (*extra == '\0') extra = argv[++i];
      int status = option == 'e' ? dostring(c, extra, "=(command line)")
                                 : dolibrary(c, extra);
      if (status != LUA_OK) return 0;
      break;
    }
    case 'W':
      lua_warning(c->h->L, "@on", 0);
      break;
    case 'X': {
      const char *opt = argv[i][2] ? argv[i] + 2 : argv[++i];
      if (strcmp(opt, "debug") == 0) {
        host_debug_set(c->h, 1, 0);
      } else if (strcmp(opt, "inspect") == 0) {
        if (host_inspect_start(c->h)) {
          l_message(progname, "-X inspect: cannot listen for lasync ps");
          return 0;
        }
      } else {
        fprintf(stderr, "%s: unknown -X option '%s' (known: debug, "
                "inspect)\n", progname, opt);
        return 0;
      }
      break;
    }
    }
  }
  return 1;
}

static int handle_luainit(cli *c) {
  const char *name = "=" LUA_INITVARVERSION;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=" LUA_INIT_VAR;
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dofile(c, init + 1);
  return dostring(c, init, name);
}

static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;
  int narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* ---- the REPL (host/repl.c) ----------------------------------------------- */

/* Each line runs as its own main task; c->interrupted is per line. */
static int repl_call(void *ud, int narg, int nres) {
  cli *c = ud;
  int status = docall(c, narg, nres);
  c->interrupted = 0;
  return c->exiting ? HOST_REPL_EXIT : status;
}

/* While the prompt waits, the loop turns: tasks of earlier lines run. */
static void doREPL(cli *c) {
  const char *oldprogname = progname;
  progname = NULL;
  c->repl = 1;
  c->lines = host_lines_open(c->h);
  if (!c->lines) l_message(NULL, "not enough memory to read lines");
  set_sigint(on_sigint);
  host_repl_run(c->h, c->lines, repl_call, c);
  set_sigint(SIG_DFL);
  host_lines_close(c->lines);
  c->lines = NULL;
  progname = oldprogname;
}

/* ---- os.exit -------------------------------------------------------------- */

/* os.exit(code, true) in the main task unwinds it (its pending <close>
 * variables run, with a nil error as lua_close gives them), then the state
 * is closed and the process exits: what lua.c does with its main chunk,
 * whose <close> variables live in the main thread that lua_close closes.
 * (A pcall around it catches the unwinding: a difference from lua.c.) */
static int l_os_exit(lua_State *L) {
  cli *c = lua_touserdata(L, lua_upvalueindex(1));
  int status;
  if (lua_isboolean(L, 1))
    status = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    status = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  if (lua_toboolean(L, 2) && c->main && L == c->main->co) {
    c->exiting = 1;
    c->exit_code = status;
    c->exit_raise = 1;
    lua_pushnil(L);
    return lua_error(L);
  }
  /* elsewhere (a coroutine, another task, a callback, a finalizer) as
   * lua.c: the state closes under the running code, which never returns.
   * lua_close closes the main thread's pending <close> variables, those
   * of lua.c's main chunk even when a coroutine calls os.exit: here the
   * main task's, when it runs (a coroutine it resumed calls os.exit). */
  if (lua_toboolean(L, 2)) {
    lua_Debug ar;
    if (c->main && lua_status(c->main->co) == LUA_OK &&
        lua_getstack(c->main->co, 0, &ar)) {
      c->exiting = 1; /* for main_msgh: a __close that fails */
      host_closethread(c->main->co, L);
    }
    lua_close(L);
  }
  fflush(NULL);
  exit(status);
}

static void replace_os_exit(lua_State *L, cli *c) {
  if (lua_getglobal(L, "os") == LUA_TTABLE) {
    lua_pushlightuserdata(L, c);
    lua_pushcclosure(L, l_os_exit, 1);
    lua_setfield(L, -2, "exit");
  }
  lua_pop(L, 1);
}

/* ---- main ----------------------------------------------------------------- */

/* lua.c's pmain: 1 when everything ran without an error. */
static int pmain(cli *c, int args, int script) {
  lua_State *L = c->h->L;
  char **argv = c->argv;
  createargtable(L, argv, c->argc, script);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & has_E) && handle_luainit(c) != LUA_OK) return 0;
  if (!runargs(c, argv, script)) return 0;
  if (script < c->argc && handle_script(c, argv + script) != LUA_OK) return 0;
  if (args & has_i) {
    doREPL(c);
  } else if (script == c->argc && !(args & (has_e | has_v))) {
    if (isatty(0)) {
      print_version();
      doREPL(c);
    } else {
      dofile(c, NULL); /* lua.c 5.4.4 exits 0 even when it failed */
    }
  }
  return !c->exiting;
}

/* pmain runs in protected mode, as in lua.c: an error outside the chunks
 * ('arg' is not a table, a _G that refuses the -l global...) is reported,
 * not a panic. */
static int l_pmain(lua_State *L) {
  cli *c = lua_touserdata(L, 1);
  int args = (int)lua_tointeger(L, 2), script = (int)lua_tointeger(L, 3);
  lua_settop(L, 0);
  int ok = pmain(c, args, script);
  lua_settop(L, 0);
  lua_pushboolean(L, ok);
  return 1;
}

int main(int argc, char **argv) {
  static cli c;
  int script = 0;
  c.argc = argc;
  c.argv = argv;
  c.task_ref = LUA_NOREF;
  c.thread = pthread_self();
  the_cli = &c;
  if (argv[0] && argv[0][0]) progname = argv[0];
  /* lasync's own first option; anything else that starts with "--" is
   * lua.c's unrecognized option */
  if (argc > 1 && (strcmp(argv[1], "--workers") == 0 ||
                   strncmp(argv[1], "--workers=", 10) == 0))
    return host_workers_main(argc, argv);
  host_workers_child();
  int tool = host_tools_main(argc, argv); /* lasync ps PID, trace-view... */
  if (tool >= 0) return tool;
  int args = collectargs(argv, &script);
  if (args == has_error) {
    print_usage(argv[script]);
    return EXIT_FAILURE;
  }
  if (args & has_v) print_version();

  host_pool *pool;
  lua_State *L = host_newstate(&pool);
  if (!L) {
    l_message(argv[0], "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  if (args & has_E) {
    lua_pushboolean(L, 1); /* libraries ignore environment variables */
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  c.h = host_new_owning(L, pool);
  if (!c.h) {
    l_message(progname, "cannot create the event loop");
    lua_close(L);
    host_pool_free(pool);
    return EXIT_FAILURE;
  }
  lasync_host *h = c.h;
  replace_os_exit(L, &c);
  uv_async_init(h->loop, &c.wake, on_wake);
  c.wake.data = &c;
  uv_unref((uv_handle_t *)&c.wake);

  lua_pushcfunction(L, l_pmain);
  lua_pushlightuserdata(L, &c);
  lua_pushinteger(L, args);
  lua_pushinteger(L, script);
  int status = lua_pcall(L, 3, 1, 0);
  int ok = status == LUA_OK && lua_toboolean(L, -1);
  if (status != LUA_OK && !c.exiting) report(L, status);
  lua_settop(L, 0);
  if (ok && !c.interrupted && !c.repl) {
    /* Like Node: the program lives while a task, timer or handle does
     * (after the prompt, Ctrl-D ends it: what is left is cancelled). */
    set_sigint(on_sigint);
    uv_run(h->loop, UV_RUN_DEFAULT);
  }
  /* a Ctrl-C that came as the last Lua code ended: neither the hook nor the
   * loop took it, but it happened */
  if (c.pending && !c.exiting) c.interrupted = 1;
  if (c.interrupted && !c.exiting) set_sigint(SIG_DFL);
  host_drain(h, h->cbL); /* what is left is cancelled and unwinds */
  set_sigint(SIG_DFL);
  uv_close((uv_handle_t *)&c.wake, NULL);
  fflush(stdout);
  lasync_free(h);
  if (c.exiting) return c.exit_code;
  if (c.interrupted && ok) return 130;
  if (c.interrupted) return 130;
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
