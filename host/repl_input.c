/* Reading the REPL's lines without blocking the loop (see repl.h).
 *
 * On a terminal, with readline compiled in: readline's callback interface,
 * fed by a uv_poll on fd 0.  The handler is installed for one line and
 * removed once it is typed, so the terminal is in its normal mode while
 * the line runs (io.read() and child processes see a cooked terminal) and
 * keys typed meanwhile wait in the kernel for the next prompt.
 *
 * Output above the prompt: stdout and stderr (the C variables, and the
 * FILE of io.stdout and io.stderr) are replaced by glibc cookie streams
 * whose write first takes the prompt off the screen; a uv_prepare draws it
 * again just before the loop waits.  Every writer is covered (print,
 * io.write, io.stderr:write, the host's reports of failed tasks, warnings)
 * and no Lua function is wrapped, so tracebacks stay lua.c's.  Children
 * write to fd 1 directly and are not covered.
 *
 * Otherwise (no terminal, or no readline): reads of fd 0 on libuv's thread
 * pool (uv_fs_read), which work on pipes, files and terminals alike and,
 * unlike a uv_pipe, leave fd 0 blocking for io.read() and for the other
 * processes that share it.  As lua5.4 (built with readline) does, each
 * line is written after its prompt when stdin is not a terminal. */
#define _GNU_SOURCE /* fopencookie */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef LASYNC_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

#include "repl.h"

#define READ_CHUNK 65536
#define WAITING 2 /* result while no line was read yet */

struct host_lines {
  lasync_host *h;
  lua_State *L;         /* where the state's stdio FILEs were patched */
  int editing;          /* readline on a terminal */
  int tty;              /* stdin is a terminal */
  int waiting;          /* inside host_lines_read */
  int result;           /* HOST_LINE_*, or WAITING */
  int nhandles;         /* open libuv handles; the last close frees */
  /* readline */
  uv_poll_t poll;
  uv_prepare_t redraw;
  uv_signal_t winch;
  int installed;        /* readline's handler is installed */
  int shown;            /* the prompt is on the screen */
  int bol;              /* the output above the prompt ended its line */
  char **lines;         /* lines readline gave (malloc'ed; NULL: EOF) */
  size_t nlines, lines_cap;
  FILE *out, *err;      /* the real stdout and stderr */
  int redirected;       /* stdout and stderr are the cookie streams */
  int out_ref, err_ref; /* io.stdout / io.stderr userdata patched */
  /* thread-pool reads */
  uv_fs_t req;
  int reading;          /* req is outstanding */
  int eof;
  int closed;           /* host_lines_close came while req was out */
  char *buf;            /* READ_CHUNK bytes for the request */
  char *pending;        /* bytes read and not yet given as lines */
  size_t plen, pcap;
  uv_poll_t wait0;      /* a non-blocking fd 0 we did not make: until it is
                           readable (else reads would spin on EAGAIN) */
  int wait0_open, polling;
};


/* ---- reads on the thread pool -------------------------------------------- */

static void start_read(host_lines *in);

static void wait0_closed(uv_handle_t *hd) { free(hd->data); }

/* The thread-pool reads' memory; `in` itself once wait0 is closed. */
static void plain_free(host_lines *in) {
  free(in->buf);
  free(in->pending);
  in->buf = in->pending = NULL;
  if (in->wait0_open)
    uv_close((uv_handle_t *)&in->wait0, wait0_closed);
  else
    free(in);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  host_lines *in = p->data;
  (void)status, (void)events; /* an error or a hang-up: the read says */
  uv_poll_stop(p);
  in->polling = 0;
  start_read(in);
}

/* fd 0 is non-blocking (a shell or parent made it so): read again once
 * the loop sees it readable, not at once nor after a fixed pause (the
 * prompt would wake the process a hundred times a second). */
static void wait_readable(host_lines *in) {
  if (!in->wait0_open) {
    if (uv_poll_init(in->h->loop, &in->wait0, 0) != 0) {
      usleep(10000); /* not pollable: a slow retry is all there is */
      start_read(in);
      return;
    }
    in->wait0.data = in;
    in->wait0_open = 1;
  }
  in->polling = 1;
  uv_poll_start(&in->wait0, UV_READABLE, on_readable);
}

static void on_read(uv_fs_t *req) {
  host_lines *in = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  in->reading = 0;
  if (in->closed) {
    plain_free(in);
    return;
  }
  if (n == UV_EAGAIN) {
    wait_readable(in);
    return;
  }
  if (n == UV_EINTR) { /* a signal (Ctrl-C): try again */
    start_read(in);
    return;
  }
  if (n <= 0) {
    in->eof = 1;
    return;
  }
  if (in->plen + (size_t)n > in->pcap) {
    size_t cap = in->pcap ? in->pcap : READ_CHUNK;
    while (cap < in->plen + (size_t)n) cap *= 2;
    char *p = realloc(in->pending, cap);
    if (!p) { /* keep what fits: a line that long cannot be run anyway */
      in->eof = 1;
      return;
    }
    in->pending = p;
    in->pcap = cap;
  }
  memcpy(in->pending + in->plen, in->buf, (size_t)n);
  in->plen += (size_t)n;
}

static void start_read(host_lines *in) {
  if (in->reading || in->polling || in->eof) return;
  uv_buf_t b = uv_buf_init(in->buf, READ_CHUNK);
  in->req.data = in;
  if (uv_fs_read(in->h->loop, &in->req, 0, &b, 1, -1, on_read) == 0)
    in->reading = 1;
  else
    in->eof = 1;
}

/* Pushes the first whole line of what was read (or, at the end of the
 * input, what is left); 0 when there is none yet. */
static int take_line(host_lines *in, lua_State *L) {
  char *nl = in->plen ? memchr(in->pending, '\n', in->plen) : NULL;
  if (!nl && !(in->eof && in->plen)) return 0;
  size_t len = nl ? (size_t)(nl - in->pending) : in->plen;
  size_t used = nl ? len + 1 : len;
  lua_pushlstring(L, in->pending, len);
  memmove(in->pending, in->pending + used, in->plen - used);
  in->plen -= used;
  if (!in->tty) { /* as lua5.4 with readline: the line after its prompt */
    fwrite(lua_tostring(L, -1), 1, len, stdout);
    fputs("\n", stdout);
    fflush(stdout);
  }
  return 1;
}

static int read_plain(host_lines *in, lua_State *L, const char *prompt) {
  fputs(prompt, stdout);
  fflush(stdout);
  while (in->result == WAITING) {
    if (take_line(in, L)) {
      in->result = HOST_LINE_OK;
    } else if (in->eof) {
      in->eof = 0; /* a terminal's Ctrl-D is not the end of it */
      in->result = HOST_LINE_EOF;
    } else {
      start_read(in);
      uv_run(in->h->loop, UV_RUN_ONCE);
    }
  }
  return in->result;
}

#ifdef LASYNC_READLINE

/* readline has one line at a time and no user data in its callbacks. */
static host_lines *active;

static void handle_closed(uv_handle_t *hd) {
  host_lines *in = hd->data;
  if (--in->nhandles == 0) free(in);
}

/* ---- the prompt above the output ---------------------------------------- */

static void show_prompt(host_lines *in) {
  if (!in->installed || in->shown) return;
  fflush(stdout); /* the cookie: what it holds goes above the prompt */
  fflush(stderr);
  if (!in->bol) fputs("\n", in->out);
  in->bol = 1;
  rl_forced_update_display();
  fflush(in->out);
  in->shown = 1;
}

/* Before the loop waits (while the prompt is up): what the streams hold
 * goes out, above the prompt, and the prompt comes back if it left. */
static void on_redraw(uv_prepare_t *p) {
  fflush(stdout);
  fflush(stderr);
  show_prompt(p->data);
}

void host_lines_output(int bol) {
  host_lines *in = active;
  if (!in || !in->installed) return;
  if (in->shown) {
    rl_clear_visible_line(); /* the cursor is at the prompt's first column */
    fflush(in->out);
    in->shown = 0;
  }
  in->bol = bol;
}

/* The cookie streams: what Lua and C write to stdout and stderr.  They
 * are line-buffered (on_redraw flushes a partial line before the loop
 * waits): glibc's unbuffered streams write from a one-byte buffer that
 * valgrind reports as uninitialised. */
static ssize_t cookie_write(void *real, const char *buf, size_t size) {
  if (size == 0) return 0;
  host_lines_output(buf[size - 1] == '\n');
  size_t n = fwrite(buf, 1, size, real);
  fflush(real);
  return n ? (ssize_t)n : -1;
}

static FILE *cookie_of(FILE *real, int mode) {
  cookie_io_functions_t fns = {NULL, cookie_write, NULL, NULL};
  FILE *f = fopencookie(real, "w", fns);
  if (f) setvbuf(f, NULL, mode, BUFSIZ);
  return f;
}

/* Points io.<name>'s FILE (if it is `from`) at `to`; returns a registry
 * reference to it, to put it back. */
static int patch_stream(lua_State *L, const char *name, FILE *from, FILE *to) {
  int ref = LUA_NOREF;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1) && lua_getfield(L, -1, "loaded") == LUA_TTABLE &&
      lua_getfield(L, -1, "io") == LUA_TTABLE) {
    lua_getfield(L, -1, name);
    luaL_Stream *s = luaL_testudata(L, -1, LUA_FILEHANDLE);
    if (s && s->f == from) {
      s->f = to;
      ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
  }
  lua_settop(L, 0);
  return ref;
}

static void unpatch_stream(lua_State *L, int ref, FILE *to) {
  if (ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_Stream *s = lua_touserdata(L, -1);
  if (s) s->f = to;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

static int redirect_output(host_lines *in, lua_State *L) {
  FILE *out = cookie_of(stdout, _IOLBF), *err = cookie_of(stderr, _IOLBF);
  if (!out || !err) {
    if (out) fclose(out);
    if (err) fclose(err);
    return 0;
  }
  fflush(stdout);
  in->out = stdout;
  in->err = stderr;
  stdout = out; /* glibc's std streams are plain variables */
  stderr = err;
  in->L = L;
  in->out_ref = patch_stream(L, "stdout", in->out, out);
  in->err_ref = patch_stream(L, "stderr", in->err, err);
  in->redirected = 1;
  return 1;
}

static void restore_output(host_lines *in) {
  if (!in->redirected) return;
  in->redirected = 0;
  fflush(stdout);
  FILE *out = stdout, *err = stderr;
  stdout = in->out;
  stderr = in->err;
  unpatch_stream(in->L, in->out_ref, in->out);
  unpatch_stream(in->L, in->err_ref, in->err);
  fclose(out);
  fclose(err);
}

/* ---- readline ------------------------------------------------------------- */

static void uninstall(host_lines *in) {
  if (!in->installed) return;
  rl_callback_handler_remove(); /* the terminal back in its normal mode */
  rl_redisplay_function = rl_redisplay;
  in->installed = in->shown = 0;
  uv_poll_stop(&in->poll);
  uv_prepare_stop(&in->redraw);
}

/* While readline finishes its call after a line, it would draw the next
 * prompt at once: nothing is drawn until the handler is removed. */
static void quiet_redisplay(void) {}

/* The handler stays installed until rl_callback_read_char returns:
 * readline may go on with keys it had read ahead (a paste) and give more
 * lines in the same call, which wait here for the next prompts. */
static void on_line(char *line) {
  host_lines *in = active;
  if (in->nlines == in->lines_cap) {
    size_t cap = in->lines_cap ? 2 * in->lines_cap : 4;
    char **l = realloc(in->lines, cap * sizeof *l);
    if (!l) { /* out of memory: the line is lost, as a Ctrl-C would */
      free(line);
      return;
    }
    in->lines = l;
    in->lines_cap = cap;
  }
  in->lines[in->nlines++] = line;
  rl_redisplay_function = quiet_redisplay;
}

/* The first line readline gave: HOST_LINE_OK with it pushed, or
 * HOST_LINE_EOF; WAITING when there is none. */
static int take_edited(host_lines *in, lua_State *L) {
  if (in->nlines == 0) return WAITING;
  char *line = in->lines[0];
  memmove(in->lines, in->lines + 1, --in->nlines * sizeof *in->lines);
  if (!line) return HOST_LINE_EOF;
  lua_pushstring(L, line); /* may raise: the line is freed first */
  free(line);
  return HOST_LINE_OK;
}

/* readline 8.2 crashes (a NULL call inside rl_callback_read_char) when a
 * prefix key such as C-x arrives during an incremental search in callback
 * mode; Debian's python3 -i crashes on the same keys.  The search is ended
 * first with C-j (an isearch terminator: it keeps the line found and
 * executes nothing), then the key is read again as a command of its own. */
static int search_safe_getc(FILE *stream) {
  int c = rl_getc(stream);
  if (c > 0 && c < KEYMAP_SIZE && RL_ISSTATE(RL_STATE_ISEARCH)) {
    Keymap map = rl_get_keymap();
    if (map && map[c].type == ISKMAP) {
      rl_stuff_char(c);
      return '\n';
    }
  }
  return c;
}

static void on_poll(uv_poll_t *p, int status, int events) {
  host_lines *in = p->data;
  (void)events;
  if (status < 0) { /* fd 0 is unusable: as the end of the input */
    uninstall(in);
    in->result = HOST_LINE_EOF;
    return;
  }
  show_prompt(in); /* readline must see the screen it drew */
  rl_callback_read_char();
  if (in->nlines) {
    uninstall(in);
    in->result = HOST_LINE_OK; /* or EOF: take_edited tells */
  }
}

static void on_winch(uv_signal_t *s, int signum) {
  host_lines *in = s->data;
  (void)signum;
  if (in->installed) rl_resize_terminal();
}

/* os.exit from a task while the prompt waits: the terminal is not left in
 * readline's mode. */
static void at_exit(void) {
  if (active && active->installed) rl_callback_handler_remove();
  active = NULL;
}

static int read_edited(host_lines *in, lua_State *L, const char *prompt) {
  fflush(stdout);
  fflush(stderr);
  if (in->nlines == 0) {
    in->bol = 1;
    rl_callback_handler_install(prompt, on_line);
    in->installed = in->shown = 1;
    if (in->redirected) uv_prepare_start(&in->redraw, on_redraw);
    if (uv_poll_start(&in->poll, UV_READABLE, on_poll) != 0) {
      uninstall(in);
      return HOST_LINE_EOF;
    }
    while (in->result == WAITING) uv_run(in->h->loop, UV_RUN_ONCE);
    if (in->result == HOST_LINE_INTERRUPTED) return in->result;
  } else { /* typed ahead: shown after its prompt, as the terminal would */
    fputs(prompt, in->out);
    fputs(in->lines[0] ? in->lines[0] : "", in->out);
    fputs("\n", in->out);
    fflush(in->out);
  }
  return in->result = take_edited(in, L);
}

static int open_editing(host_lines *in, lua_State *L) {
  if (uv_poll_init(in->h->loop, &in->poll, 0) != 0) return 0;
  in->nhandles++;
  uv_prepare_init(in->h->loop, &in->redraw);
  in->nhandles++;
  uv_signal_init(in->h->loop, &in->winch);
  in->nhandles++;
  in->poll.data = in->redraw.data = in->winch.data = in;
  uv_signal_start(&in->winch, on_winch, SIGWINCH);
  uv_unref((uv_handle_t *)&in->winch);
  rl_readline_name = "lasync"; /* for $if lasync in ~/.inputrc */
  rl_catch_signals = 0;        /* Ctrl-C is the binary's (main.c) */
  rl_catch_sigwinch = 0;       /* on_winch */
  rl_change_environment = 0;   /* leave LINES and COLUMNS alone */
  in->out = stdout;
  in->err = stderr;
  redirect_output(in, L); /* if it fails: editing, without the redraw */
  rl_outstream = in->out;
  rl_instream = stdin;
  rl_getc_function = search_safe_getc;
  return 1;
}

void host_lines_remember(host_lines *in, const char *chunk) {
  if (in && in->editing && chunk[0] != '\0') add_history(chunk);
}

#else /* no readline */

void host_lines_output(int bol) { (void)bol; }
void host_lines_remember(host_lines *in, const char *chunk) {
  (void)in;
  (void)chunk;
}

#endif

/* ---- the reader ------------------------------------------------------------ */

host_lines *host_lines_open(lasync_host *h) {
  host_lines *in = calloc(1, sizeof *in);
  if (!in) return NULL;
  in->h = h;
  in->tty = isatty(0);
  in->out_ref = in->err_ref = LUA_NOREF;
#ifdef LASYNC_READLINE
  if (in->tty && open_editing(in, h->L)) {
    in->editing = 1;
    active = in;
    static int registered;
    if (!registered++) atexit(at_exit);
    return in;
  }
#endif
  in->buf = malloc(READ_CHUNK);
  if (!in->buf) {
    host_lines_close(in);
    return NULL;
  }
  return in;
}

int host_lines_read(host_lines *in, lua_State *L, const char *prompt) {
  in->result = WAITING;
  in->waiting = 1;
  int r;
#ifdef LASYNC_READLINE
  if (in->editing)
    r = read_edited(in, L, prompt);
  else
#endif
    r = read_plain(in, L, prompt);
  in->waiting = 0;
  return r;
}

int host_lines_waiting(const host_lines *in) { return in && in->waiting; }

void host_lines_interrupt(host_lines *in) {
  if (!in || !in->waiting) return;
#ifdef LASYNC_READLINE
  if (in->editing && in->installed) {
    show_prompt(in);
    rl_callback_sigcleanup(); /* a half-typed key sequence, a search */
    rl_free_line_state();
    rl_point = rl_end; /* "^C" after the whole line, as bash */
    rl_redisplay();
    rl_echo_signal_char(SIGINT);
    rl_replace_line("", 0);
    uninstall(in);
  }
#endif
  fputs("\n", stdout);
  fflush(stdout);
  in->result = HOST_LINE_INTERRUPTED;
}

void host_lines_close(host_lines *in) {
  if (!in) return;
#ifdef LASYNC_READLINE
  if (in->editing) {
    uninstall(in);
    restore_output(in);
    for (size_t i = 0; i < in->nlines; i++) free(in->lines[i]);
    free(in->lines);
    if (active == in) active = NULL;
  }
#endif
  if (in->reading) { /* on_read frees it (cancelled if not started yet) */
    in->closed = 1;
    uv_cancel((uv_req_t *)&in->req);
    return;
  }
  if (in->polling) {
    uv_poll_stop(&in->wait0);
    in->polling = 0;
  }
#ifdef LASYNC_READLINE
  if (in->nhandles) { /* editing: wait0 was never opened */
    free(in->buf);
    free(in->pending);
    in->buf = in->pending = NULL;
    int n = in->nhandles;
    uv_handle_t *hs[3] = {(uv_handle_t *)&in->poll, (uv_handle_t *)&in->redraw,
                          (uv_handle_t *)&in->winch};
    for (int i = 0; i < n; i++) uv_close(hs[i], handle_closed);
    return;
  }
#endif
  plain_free(in);
}
