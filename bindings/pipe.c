/* Streams over descriptors the program already has: connect_read_pipe /
 * connect_write_pipe (stdin, stdout, any fd or io file), asyncio.stdin()
 * and asyncio.stdout(), and the descriptors a subprocess's stdio may be
 * given (process.c).
 *
 * The stream never takes the caller's descriptor: it works on a copy of
 * its own, closed with the stream, so closing a reader of stdin does not
 * close fd 0 under io.read and print.  The copy is a new open file
 * description where one can be had (a TTY reopened by name, a FIFO through
 * /proc/self/fd, as libuv's uv_tty_init does for TTYs), so the O_NONBLOCK
 * libuv sets stays ours and does not leak to the shell or to children
 * that share the terminal; sockets can only be dup'ed.  Regular files and
 * character devices such as /dev/null cannot be watched by epoll: they get
 * a LSTREAM_FILE stream (thread-pool reads, synchronous writes). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

enum { DIR_READ, DIR_WRITE };

/* The descriptor of the argument at idx: an fd number or an io file
 * (flushed first, so what Lua's io wrote before goes out first). */
int io_check_fd(lua_State *L, int idx, int arg, const char *what) {
  luaL_Stream *f = luaL_testudata(L, idx, LUA_FILEHANDLE);
  if (f) {
    if (!f->closef)
      luaL_argerror(L, arg, lua_pushfstring(L, "%s is a closed file", what));
    fflush(f->f);
    return fileno(f->f);
  }
  int isint;
  lua_Integer n = lua_tointegerx(L, idx, &isint);
  if (lua_type(L, idx) != LUA_TNUMBER || !isint)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: file descriptor (integer) "
                                             "or io file expected, got %s",
                                          what, luaL_typename(L, idx)));
  if (n < 0 || n > INT_MAX)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: file descriptor out of "
                                             "range", what));
  return (int)n;
}

/* Refuses an fd that is not open, or not open in the direction asked:
 * 0 or a libuv error. */
static int check_direction(int fd, int dir) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -errno;
  int acc = fl & O_ACCMODE;
  if (acc != O_RDWR && acc != (dir == DIR_READ ? O_RDONLY : O_WRONLY))
    return UV_EBADF;
  return 0;
}

/* A new open file description of fd's TTY or FIFO, or -1. */
static int reopen(int fd, int type, int dir) {
  char path[64];
  struct stat st;
  int flags = O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  if (type == UV_TTY) {
    if (ttyname_r(fd, path, sizeof path) != 0) return -1;
    flags |= O_RDWR;
  } else {
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return -1;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    flags |= dir == DIR_READ ? O_RDONLY : O_WRONLY;
  }
  return open(path, flags);
}

/* A stream of its own over (a copy of) fd; NULL with *err set. */
static lstream *stream_over(lasync_host *h, int fd, int dir, int *err) {
  int type = uv_guess_handle(fd);
  if ((*err = check_direction(fd, dir))) return NULL;
  if (type == UV_UDP) {
    *err = UV_EINVAL; /* a datagram socket is not a byte stream */
    return NULL;
  }
  int own = type == UV_TTY || type == UV_NAMED_PIPE ? reopen(fd, type, dir)
                                                     : -1;
  if (own < 0) own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (own < 0) {
    *err = -errno;
    return NULL;
  }
  /* a directory or block device: reads give the OS's error (EISDIR) */
  int file = type == UV_FILE || type == UV_UNKNOWN_HANDLE;
  lstream *s = file ? lstream_new_file(h, own, err)
                    : lstream_new(h, LSTREAM_PIPE, err);
  if (!s) {
    close(own);
    return NULL;
  }
  if (!file &&
      (*err = uv_pipe_open((uv_pipe_t *)lstream_handle(s), own))) {
    close(own);
    lstream_unref(s);
    return NULL;
  }
  if (dir == DIR_READ && (*err = lstream_start(s))) {
    lstream_unref(s);
    return NULL;
  }
  if (dir == DIR_READ) lstream_set_idle_unref(s);
  return s;
}

int io_stdio_fd(lua_State *L, int opts, const char *name, int child_fd) {
  const char *what = lua_pushfstring(L, "option '%s'", name);
  lua_insert(L, -2);
  if (lua_type(L, -1) != LUA_TNUMBER && lua_type(L, -1) != LUA_TUSERDATA)
    luaL_argerror(L, opts, lua_pushfstring(L, "%s: \"pipe\", \"inherit\", "
                                              "\"devnull\", an fd, an io file "
                                              "or a stream expected, got %s",
                                           what, luaL_typename(L, -1)));
  int fd = lstream_handoff_fd(L, -1, what);
  if (fd < 0) fd = io_check_fd(L, -1, opts, what);
  int dir = child_fd == 0 ? DIR_READ : DIR_WRITE;
  int err = check_direction(fd, dir);
  if (err)
    luaL_argerror(L, opts, lua_pushfstring(L, "%s: fd %d is %s", what, fd,
                                           err == UV_EBADF && fcntl(fd, F_GETFL) >= 0
                                               ? (dir == DIR_READ ? "not open for reading"
                                                                  : "not open for writing")
                                               : "not open"));
  lua_remove(L, -2);
  return fd;
}

static int open_fd(lua_State *L, int dir, const char *fname) {
  static const char *const reader_opts[] = {"limit", NULL};
  static const char *const writer_opts[] = {NULL};
  int fd = io_check_fd(L, 1, 1, "argument");
  host_check_options(L, 2, dir == DIR_READ ? reader_opts : writer_opts);
  size_t limit = lua_istable(L, 2) ? io_opt_limit(L, 2) : 0;
  lasync_host *h = io_live_host(L, fname);
  int err;
  lstream *s = stream_over(h, fd, dir, &err);
  if (!s)
    return host_raise_oserror(L, err, fname, lua_pushfstring(L, "fd %d", fd));
  if (limit) lstream_set_limit(s, limit);
  if (dir == DIR_READ) lstream_push_reader(L, s);
  else lstream_push_writer(L, s);
  lstream_unref(s); /* the wrapper owns it */
  return 1;
}

/* asyncio.connect_read_pipe(fd_or_file [, {limit =}]) -> StreamReader */
static int l_connect_read_pipe(lua_State *L) {
  return open_fd(L, DIR_READ, "connect_read_pipe");
}

/* asyncio.connect_write_pipe(fd_or_file) -> StreamWriter */
static int l_connect_write_pipe(lua_State *L) {
  return open_fd(L, DIR_WRITE, "connect_write_pipe");
}

/* stdin() / stdout() / stderr(): one stream each while it is open and
 * referenced (a second reader of stdin would split its lines). */
static const char LUA_PARTS[] =
    "local M = ...\n"
    "local cache = setmetatable({}, {__mode = 'v'})\n"
    "local function std(name, fd, open, closed)\n"
    "  M[name] = function()\n"
    "    local s = cache[name]\n"
    "    if s == nil or closed(s) then\n"
    "      s = open(fd)\n"
    "      cache[name] = s\n"
    "    end\n"
    "    return s\n"
    "  end\n"
    "end\n"
    "local function writer_closed(w) return w:is_closing() end\n"
    "std('stdin', 0, M.connect_read_pipe, function(r) return r:at_eof() end)\n"
    "std('stdout', 1, M.connect_write_pipe, writer_closed)\n"
    "std('stderr', 2, M.connect_write_pipe, writer_closed)\n"
    "M.PIPE, M.DEVNULL, M.STDOUT = 'pipe', 'devnull', 'stdout'\n";

void io_open_pipe(lua_State *L, lasync_host *h) {
  static const luaL_Reg funcs[] = {{"connect_read_pipe", l_connect_read_pipe},
                                   {"connect_write_pipe", l_connect_write_pipe},
                                   {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  if (luaL_loadbuffer(L, LUA_PARTS, sizeof LUA_PARTS - 1, "=pipe"))
    lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
}
