/* lasync: the command-line host, lua.c-compatible.  The -e/-l options and
 * the script all run, in order, inside one task (the main task), so any of
 * them may suspend.  Exit status: 0, 1 on an uncaught error, 130 after
 * SIGINT (which first cancels the main task so its cleanup runs). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "host.h"

static const char *progname = "lasync";

typedef struct cli {
  int argc;
  char **argv;
  int script;      /* index of the script in argv, or 0 */
  int first_action;/* first -e/-l index */
  int noenv, warn, version, interactive;
  int run_stdin;   /* no script and no -e: read the chunk from stdin */
  int load_error;  /* the failure is a syntax error or a missing file */
  lasync_host *h;
  host_task *main;
  int main_ref;    /* keeps the main Task object for its report */
  uv_signal_t sigint;
  int interrupted;
} cli;

static void usage(FILE *f, const char *badopt) {
  if (badopt) {
    if (badopt[1] == 'e' || badopt[1] == 'l')
      fprintf(f, "%s: '%s' needs argument\n", progname, badopt);
    else
      fprintf(f, "%s: unrecognized option '%s'\n", progname, badopt);
  }
  fprintf(f,
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
          "  -         stop handling options and execute stdin\n"
          "  --help    show this help\n"
          "Every chunk runs inside the main task: it may call asyncio's "
          "suspending functions.\n",
          progname);
}

static void print_version(void) {
  printf("lasync %s -- %s -- libuv %s\n", LASYNC_VERSION, LUA_COPYRIGHT,
         uv_version_string());
  fflush(stdout);
}

/* Returns 0, or -1 after printing the usage for a bad option, or 1 for
 * --help. */
static int collect_args(cli *c) {
  for (int i = 1; i < c->argc; i++) {
    const char *a = c->argv[i];
    if (a[0] != '-') {
      c->script = i;
      return 0;
    }
    if (strcmp(a, "--help") == 0) return 1;
    switch (a[1]) {
    case '-':
      if (a[2]) goto bad;
      c->script = i + 1 < c->argc ? i + 1 : 0;
      return 0;
    case '\0':
      c->script = i; /* "-": stdin */
      return 0;
    case 'E': if (a[2]) goto bad; c->noenv = 1; break;
    case 'W': if (a[2]) goto bad; c->warn = 1; break;
    case 'v': if (a[2]) goto bad; c->version = 1; break;
    case 'i': if (a[2]) goto bad; c->interactive = c->version = 1; break;
    case 'e':
    case 'l':
      if (!c->first_action) c->first_action = i;
      if (a[2] == '\0') {
        if (++i >= c->argc || c->argv[i][0] == '-') goto bad;
      }
      break;
    default:
      goto bad;
    }
    continue;
  bad:
    usage(stderr, a);
    return -1;
  }
  return 0;
}

/* arg[0] is the script, arg[-n..-1] the interpreter and options (with no
 * script, arg[0] is the interpreter), as lua.c makes it. */
static void create_arg_table(lua_State *L, cli *c) {
  int base = c->script;
  lua_createtable(L, c->argc - base, base + 1);
  for (int i = 0; i < c->argc; i++) {
    lua_pushstring(L, c->argv[i]);
    lua_rawseti(L, -2, i - base);
  }
  lua_setglobal(L, "arg");
}

/* The main task's body: a small state machine so that each step may
 * suspend (ctx is the next argv index to handle). */
static int main_k(lua_State *L, int status, lua_KContext ctx) {
  cli *c = lua_touserdata(L, lua_upvalueindex(1));
  int i = (int)ctx;
  (void)status;
  if (i < 0) { /* back from a require: store the module */
    lua_setglobal(L, lua_tostring(L, -2));
    i = -i;
  }
  lua_settop(L, 0);
  int end = c->script ? c->script : c->argc;
  for (; c->first_action && i < end; i++) {
    const char *a = c->argv[i];
    if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l')) continue;
    const char *val = a[2] ? a + 2 : c->argv[++i];
    if (a[1] == 'e') {
      if (luaL_loadbuffer(L, val, strlen(val), "=(command line)"))
        return c->load_error = 1, lua_error(L);
      lua_callk(L, 0, 0, i + 1, main_k);
      lua_settop(L, 0);
    } else {
      const char *eq = strchr(val, '=');
      if (eq)
        lua_pushlstring(L, val, (size_t)(eq - val));
      else
        lua_pushstring(L, val);
      lua_getglobal(L, "require");
      lua_pushstring(L, eq ? eq + 1 : val);
      lua_callk(L, 1, 1, -(i + 1), main_k);
      lua_setglobal(L, lua_tostring(L, -2));
      lua_settop(L, 0);
    }
  }
  if ((c->script || c->run_stdin) && i == end) {
    const char *fname = c->script ? c->argv[c->script] : NULL;
    if (fname && strcmp(fname, "-") == 0 &&
        strcmp(c->argv[c->script - 1], "--") != 0)
      fname = NULL; /* stdin */
    if (luaL_loadfile(L, fname)) return c->load_error = 1, lua_error(L);
    lua_getglobal(L, "arg");
    int n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (int j = 1; j <= n; j++) lua_rawgeti(L, -j, j);
    lua_remove(L, -n - 1);
    lua_callk(L, n, 0, end + 1, main_k);
  }
  return 0;
}

static int main_body(lua_State *L) { return main_k(L, LUA_OK, 1); }

static void on_sigint(uv_signal_t *s, int signum) {
  cli *c = s->data;
  if (c->interrupted) { /* a second Ctrl-C: no more patience */
    signal(signum, SIG_DFL);
    raise(signum);
    return;
  }
  c->interrupted = 1;
  lua_State *L = c->h->cbL;
  if (c->main->state != TASK_DONE)
    host_task_cancel(c->main, L, 0);
  else
    host_cancel_all(c->h, L);
  uv_stop(c->h->loop);
}

static void report_main(cli *c) {
  host_task *t = c->main;
  if (c->interrupted) {
    fprintf(stderr, "%s: interrupted\n", progname);
    return;
  }
  if (t->outcome == OUTCOME_OK) return;
  t->flags |= TF_RETRIEVED;
  lua_State *L = c->h->cbL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->main_ref);
  host_task_push_report(L, -1);
  if (lua_isstring(L, -1) && !c->load_error) {
    /* lua.c shows no traceback for a chunk that did not load */
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  } else { /* a load error, or a CancelledError (no traceback taken) */
    lua_pushvalue(t->co, 1);
    lua_xmove(t->co, L, 1);
    fprintf(stderr, "%s: %s\n", progname, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
  fflush(stderr);
}

int main(int argc, char **argv) {
  cli c;
  int status = 0;
  memset(&c, 0, sizeof c);
  c.argc = argc;
  c.argv = argv;
  if (argv[0] && argv[0][0]) progname = argv[0];
  switch (collect_args(&c)) {
  case 1: usage(stdout, NULL); return 0;
  case -1: return 1;
  }
  if (c.version) print_version();
  if (c.interactive) {
    fprintf(stderr, "%s: interactive mode (-i) is not supported\n", progname);
    return 1;
  }
  if (!c.script && !c.first_action && c.version) return 0;

  host_pool *pool;
  lua_State *L = host_newstate(&pool);
  if (!L) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
    return 1;
  }
  if (c.noenv) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  if (c.warn) lua_warning(L, "@on", 0);
  c.h = host_new_owning(L, pool);
  if (!c.h) {
    fprintf(stderr, "%s: cannot create the event loop\n", progname);
    lua_close(L);
    host_pool_free(pool);
    return 1;
  }
  lasync_host *h = c.h;
  /* Scripts may use asyncio without requiring it. */
  luaL_requiref(L, "asyncio", luaopen_asyncio, 1);
  lua_pop(L, 1);
  c.run_stdin = !c.script && !c.first_action;
  create_arg_table(L, &c);
  lua_pushlightuserdata(L, &c);
  lua_pushcclosure(L, main_body, 1);
  c.main = host_task_spawn(h, L, 0);
  c.main_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  uv_signal_init(h->loop, &c.sigint);
  c.sigint.data = &c;
  uv_signal_start(&c.sigint, on_sigint, SIGINT);
  uv_unref((uv_handle_t *)&c.sigint);

  int deadlock = host_run_task(h, c.main, h->cbL);
  if (deadlock) {
    fprintf(stderr,
            "%s: the main task waits for something that can never happen "
            "(no task, timer or handle is left to wake it)\n",
            progname);
    c.main->flags |= TF_RETRIEVED;
    status = 1;
  } else {
    report_main(&c);
    if (c.main->outcome != OUTCOME_OK) status = 1;
  }
  if (status == 0 && !c.interrupted) {
    /* Like Node: the program lives while a task, timer or handle does. */
    uv_run(h->loop, UV_RUN_DEFAULT);
  }
  host_drain(h, h->cbL); /* what is left is cancelled and unwinds */
  if (c.interrupted) status = 130;
  uv_close((uv_handle_t *)&c.sigint, NULL);
  fflush(stdout);
  lasync_free(h);
  return status;
}
