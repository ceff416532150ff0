/* Unix domain sockets: open_unix_connection and start_unix_server, over
 * the same StreamReader/StreamWriter (stream.c) and Server (server.c) as
 * TCP, through libuv pipes.
 *
 * The sockets are made here (socket, bind, connect) and then handed to a
 * uv_pipe_t (uv_pipe_open), not made by uv_pipe_bind/uv_pipe_connect:
 * libuv 1.44 truncates a path longer than sun_path without a word and
 * knows no abstract names.  A Unix socket connects at once (no handshake
 * to wait for), so neither function suspends. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "io.h"

#define SUN_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

typedef struct unix_addr {
  struct sockaddr_un sa;
  socklen_t len;
  int abstract; /* Linux's abstract namespace: no file */
} unix_addr;

/* The path at idx as a socket address.  A leading NUL byte names an
 * abstract socket (as in Python); a NUL anywhere else is refused, and a
 * path too long for sun_path raises OSError ENAMETOOLONG (pushed on the
 * stack for the caller to raise: returns 0 then); op names the call. */
static int check_path(lua_State *L, int idx, unix_addr *a, const char *op) {
  size_t n;
  const char *p = luaL_checklstring(L, idx, &n);
  a->abstract = n > 0 && p[0] == '\0';
  luaL_argcheck(L, n > (size_t)a->abstract, idx, "empty socket path");
  if (memchr(p + a->abstract, '\0', n - (size_t)a->abstract))
    luaL_argerror(L, idx, "socket path contains a NUL byte (only a leading "
                          "one, for an abstract name, is allowed)");
  memset(&a->sa, 0, sizeof a->sa);
  a->sa.sun_family = AF_UNIX;
  /* a file name needs its terminating NUL in sun_path */
  if (n > SUN_MAX - !a->abstract) {
    host_push_oserror(L, UV_ENAMETOOLONG, op, NULL);
    lua_pushfstring(L, "ENAMETOOLONG: socket path too long (%I bytes, at "
                    "most %I), %s", (lua_Integer)n,
                    (lua_Integer)(SUN_MAX - !a->abstract), op);
    lua_setfield(L, -2, "message");
    return 0;
  }
  memcpy(a->sa.sun_path, p, n);
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                       !a->abstract);
  return 1;
}

static int new_socket(void) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  return fd < 0 ? -errno : fd;
}

/* A new socket connected to a; the descriptor or a negative errno. */
static int connect_to(const unix_addr *a) {
  int fd = new_socket();
  if (fd < 0) return fd;
  int r;
  do r = connect(fd, (const struct sockaddr *)&a->sa, a->len);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    r = -errno;
    close(fd);
    return r;
  }
  return fd;
}

static const char *shown(const unix_addr *a) {
  return a->abstract ? "@(abstract)" : a->sa.sun_path;
}

/* asyncio.open_unix_connection(path [, {limit =}]) -> reader, writer */
static int l_open_unix_connection(lua_State *L) {
  static const char *const known[] = {"limit", NULL};
  unix_addr a;
  if (!check_path(L, 1, &a, "connect")) return lua_error(L);
  host_check_options(L, 2, known);
  size_t limit = lua_istable(L, 2) ? io_opt_limit(L, 2) : 0;
  lasync_host *h = io_live_host(L, "open_unix_connection");
  int fd = connect_to(&a), rc;
  if (fd < 0) return host_raise_oserror(L, fd, "connect", shown(&a));
  lstream *s = lstream_new(h, LSTREAM_PIPE, &rc);
  if (!s) {
    close(fd);
    return host_raise_oserror(L, rc, "connect", shown(&a));
  }
  rc = uv_pipe_open((uv_pipe_t *)lstream_handle(s), fd);
  if (rc) close(fd);
  if (!rc) rc = lstream_start(s);
  if (rc) {
    lstream_unref(s);
    return host_raise_oserror(L, rc, "connect", shown(&a));
  }
  if (limit) lstream_set_limit(s, limit);
  lstream_push_reader(L, s);
  lstream_push_writer(L, s);
  lstream_unref(s); /* the wrappers own it now */
  return 2;
}

/* A socket file left by a server that is gone (nobody accepts on it) is
 * removed so the new server can bind; a live one is left alone and the
 * bind fails with EADDRINUSE, as does any other kind of file.  Returns 0
 * or a negative errno. */
static int clear_stale(const unix_addr *a) {
  struct stat st;
  if (a->abstract || lstat(a->sa.sun_path, &st) != 0) return 0;
  if (!S_ISSOCK(st.st_mode)) return UV_EADDRINUSE;
  int fd = connect_to(a);
  if (fd >= 0) {
    close(fd);
    return UV_EADDRINUSE;
  }
  if (fd == UV_EAGAIN) return UV_EADDRINUSE; /* live, its backlog is full */
  if (fd != UV_ECONNREFUSED) return fd;
  return unlink(a->sa.sun_path) == 0 || errno == ENOENT ? 0 : -errno;
}

/* The `mode` option: permission bits for the socket file. */
static int opt_mode(lua_State *L, int idx, const unix_addr *a) {
  if (!lua_istable(L, idx) || lua_getfield(L, idx, "mode") == LUA_TNIL) {
    if (lua_istable(L, idx)) lua_pop(L, 1);
    return -1;
  }
  int isint;
  lua_Integer m = lua_tointegerx(L, -1, &isint);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER || m < 0 || m > 07777)
    luaL_argerror(L, idx, "option 'mode': permission bits expected (an "
                          "integer from 0 to 0xFFF, e.g. tonumber('600', 8))");
  if (a->abstract)
    luaL_argerror(L, idx, "option 'mode': an abstract socket has no file "
                          "to set permissions on");
  lua_pop(L, 1);
  return (int)m;
}

/* A socket bound to a with the file's mode set; fd or a negative errno. */
static int bind_to(const unix_addr *a, int mode) {
  int rc = clear_stale(a);
  if (rc) return rc;
  int fd = new_socket();
  if (fd < 0) return fd;
  if (bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  /* before listen(): nobody can connect while the bits are still the
   * umask's */
  if (mode >= 0 && chmod(a->sa.sun_path, (mode_t)mode) < 0) {
    rc = -errno;
    unlink(a->sa.sun_path);
    close(fd);
    return rc;
  }
  return fd;
}

/* asyncio.start_unix_server(handler, path [, {backlog =, limit =, mode =}]) */
int l_start_unix_server(lua_State *L) {
  static const char *const known[] = {"backlog", "limit", "mode", NULL};
  lasync_host *h = io_live_host(L, "start_unix_server");
  unix_addr a;
  host_check_callable(L, 1);
  if (!check_path(L, 2, &a, "bind")) return lua_error(L);
  host_check_options(L, 3, known);
  int backlog = lua_istable(L, 3) ? io_opt_backlog(L, 3, "start_unix_server")
                                  : 511;
  size_t limit = lua_istable(L, 3) ? io_opt_limit(L, 3) : 0;
  int mode = opt_mode(L, 3, &a);
  lua_settop(L, 3);
  int fd = bind_to(&a, mode);
  if (fd < 0) return host_raise_oserror(L, fd, "bind", shown(&a));
  struct server *srv = io_server_push(L, h, backlog, limit);
  int rc = io_server_listen_unix(L, srv, fd, a.abstract ? NULL : a.sa.sun_path);
  if (rc) return host_raise_oserror(L, rc, "listen", shown(&a));
  io_server_arm(L, srv, 4, 1);
  return 1;
}

void io_unix_unlink(const char *path) {
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
}

int io_unix_push_name(lua_State *L, uv_handle_t *hd, int peer) {
  uv_os_fd_t fd;
  struct sockaddr_un sa;
  socklen_t len = sizeof sa;
  if (uv_fileno(hd, &fd) != 0) return 0;
  memset(&sa, 0, sizeof sa);
  int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &len)
               : getsockname(fd, (struct sockaddr *)&sa, &len);
  if (r != 0 || sa.sun_family != AF_UNIX) return 0;
  size_t n = len > offsetof(struct sockaddr_un, sun_path)
                 ? len - offsetof(struct sockaddr_un, sun_path)
                 : 0;
  if (n > 0 && sa.sun_path[0] != '\0') n = strnlen(sa.sun_path, n);
  lua_pushlstring(L, sa.sun_path, n);
  return 1;
}

int io_unix_server_index(lua_State *L, uv_pipe_t *p, const char *key) {
  if (strcmp(key, "port") == 0) return 0; /* no port: nil */
  lua_newtable(L);
  if (p && io_unix_push_name(L, (uv_handle_t *)p, 0)) lua_rawseti(L, -2, 1);
  return 1;
}

void io_open_unix(lua_State *L, lasync_host *h) {
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_open_unix_connection, 1);
  lua_setfield(L, -2, "open_unix_connection");
}
