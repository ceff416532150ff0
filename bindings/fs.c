/* asyncio.fs: files on libuv's thread pool.  This file holds the request
 * engine (fs.h says how a request runs) and the module's functions; the
 * File object of fs.open is fs_file.c.
 *
 * A uv_fs_t cannot be cancelled once the thread pool runs it, so a task that
 * is cancelled while its request is in flight just detaches ("orphans") the
 * request and gets CancelledError at once; the request's next callback then
 * skips the rest of the chain, closes the descriptor it owns, removes its
 * temp file, and frees itself.
 *
 * The Lua side (every call suspends the running task; failures are
 * OSError-tree errors from host_push_oserror: FileNotFoundError,
 * PermissionError, ... with code ("ENOENT"), errno, op ("open", "read",
 * "scandir"...), path, and dest for rename; fs.Error is asyncio.OSError):
 *   read_file(path) -> string          write_file(path, data [, {atomic=, mode=}])
 *   append_file(path, data)            open(path [, "r"|"w"|"a"|"r+"|"w+"|"a+" [b]])
 *   stat(path) / lstat(path) -> {type=, size=, mode=, mtime=, atime=, ctime=, ...}
 *   exists(path) (false for ENOENT/ENOTDIR, other failures raise)
 *   mkdir(path [, {parents=, mode=}])  listdir(path) -> sorted names
 *   remove(path) (file or empty directory)   rename(from, to) */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"

#define FS_STATE_KEY "lasync.fs.state"

/* ---- requests --------------------------------------------------------- */

fs_req *fs_req_new(lua_State *L, fs_state *st, host_task *t,
                       const char *path) {
  fs_req *r = calloc(1, sizeof *r);
  if (r && path && !(r->path = strdup(path))) {
    free(r);
    r = NULL;
  }
  if (!r) {
    luaL_error(L, "asyncio.fs: out of memory");
    return NULL;
  }
  r->uv.data = r;
  r->st = st;
  r->task = t;
  r->loop = st->h->loop;
  r->h = st->h;
  r->fd = -1;
  host_list_push(&st->reqs, &r->link);
  return r;
}

void fs_req_free(fs_req *r) {
  uv_fs_req_cleanup(&r->uv);
  if (r->st) host_list_remove(&r->link);
  if (r->file) fs_file_release(r->file, r->st != NULL);
  free(r->buf);
  host_buf_free(&r->in);
  free(r->path);
  free(r->path2);
  free(r->tmp);
  free(r);
}

/* Starts a call: a call that fails to start never runs its callback, so
 * the chain goes on with the error as the result. */
void fs_go(fs_req *r, int rc) {
  if (rc < 0) {
    uv_fs_req_cleanup(&r->uv);
    r->next(r, rc);
  }
}

void fs_fail(fs_req *r, ssize_t res, const char *op) {
  if (!r->err) {
    r->err = (int)res;
    r->errop = op;
  }
  fs_end_chain(r);
}

/* The common last step: the call's failure, or the end of the chain. */
void fs_last_done(fs_req *r, ssize_t res) {
  r->res = res;
  if (res < 0)
    fs_fail(r, res, r->op);
  else
    fs_end_chain(r);
}

static void end_step(fs_req *r, ssize_t res) {
  if (res < 0 && r->uv.fs_type == UV_FS_CLOSE && r->task && !r->err) {
    r->err = (int)res;
    r->errop = "close";
  }
  fs_end_chain(r);
}

/* The end of every chain, success, failure or orphan alike: close the
 * descriptor the chain opened (unless it is the result), remove a temp file
 * that did not make it, then wake the task or free the request. */
void fs_end_chain(fs_req *r) {
  r->ending = 1;
  r->next = end_step;
  if (r->fd >= 0 && !(r->keep_fd && r->task && !r->err)) {
    uv_file fd = r->fd;
    r->fd = -1;
    fs_go(r, uv_fs_close(r->loop, &r->uv, fd, fs_on_done));
    return;
  }
  if (r->tmp_live && (r->err || !r->task)) {
    r->tmp_live = 0;
    fs_go(r, uv_fs_unlink(r->loop, &r->uv, r->tmp, fs_on_done));
    return;
  }
  if (r->task) {
    r->delivered = 1;
    host_wake(r->task, NULL, 0);
  } else
    fs_req_free(r);
}

void fs_on_done(uv_fs_t *u) {
  fs_req *r = u->data;
  ssize_t res = u->result;
  uv_fs_type type = u->fs_type;
  host_clock_progress(r->h);
  if (type == UV_FS_STAT || type == UV_FS_LSTAT || type == UV_FS_FSTAT)
    r->statbuf = u->statbuf;
  if (type != UV_FS_SCANDIR) uv_fs_req_cleanup(u); /* entries read in k */
  if (type == UV_FS_OPEN && res >= 0) {
    r->fd = (uv_file)res;
    if (r->tmp) r->tmp_live = 1;
  }
  if (type == UV_FS_RENAME && res == 0) r->tmp_live = 0;
  /* Bytes a positioned write put on disk move the file's position even if
   * nobody waits for them any more. */
  if (type == UV_FS_WRITE && res > 0 && r->file && !r->file->append &&
      !r->file->stream)
    r->file->pos += res;
  if (!r->task && !r->ending) {
    fs_end_chain(r);
    return;
  }
  r->next(r, res);
}

/* Cancel hook of a task parked on a request. */
static int req_cancel(host_task *t, int woken) {
  fs_req *r = t->wait_data;
  r->task = NULL;
  if (woken) fs_end_chain(r); /* done, but k will not run: clean up now */
  return 0;
}

/* Drops a finished request from the task's side: closes what it kept. */
void fs_req_drop(fs_req *r) {
  r->task = NULL;
  fs_end_chain(r);
}

static int req_k(lua_State *L, lua_KContext ctx);

int fs_park(lua_State *L, fs_req *r) {
  return host_park(L, r->task, req_cancel, r, req_k, (lua_KContext)r);
}

/* ---- errors ----------------------------------------------------------- */

/* Raises the request's failure and drops the request. */
int fs_raise(lua_State *L, fs_req *r) {
  const char *path = r->file ? r->file->path : r->path;
  host_push_oserror_dest(L, r->err, r->errop, path,
                         r->two_paths ? r->path2 : NULL);
  fs_req_drop(r);
  return lua_error(L);
}

static const char *check_path(lua_State *L, int idx) {
  return host_check_cstring(L, idx, NULL);
}

/* ---- results (run in the task) ---------------------------------------- */

static int req_k(lua_State *L, lua_KContext ctx) {
  fs_req *r = (fs_req *)ctx;
  return r->finish(L, r);
}

static int finish_none(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  fs_req_drop(r);
  return 0;
}

int fs_start(lua_State *L, fs_req *r, void (*first)(fs_req *),
                 int (*finish)(lua_State *, fs_req *)) {
  r->finish = finish;
  first(r);
  return fs_park(L, r);
}

/* ---- writing (write_file, append_file, file:write) -------------------- */

static void wrote(fs_req *r, ssize_t res) {
  if (res == UV_ESPIPE && r->file && !r->file->stream) {
    r->file->stream = 1; /* a pipe or device: no positions */
    r->offset = -1;
    fs_write_more(r);
    return;
  }
  if (res <= 0) {
    fs_fail(r, res ? res : UV_EIO, "write");
    return;
  }
  r->done += (size_t)res;
  fs_write_more(r);
}

/* Writes r->buf[done..len) (short writes go on), then runs r->after. */
void fs_write_more(fs_req *r) {
  if (r->done >= r->len) {
    r->after(r);
    return;
  }
  uv_buf_t b = uv_buf_init(r->buf + r->done, fs_buf_len(r->len - r->done));
  uv_file fd = r->file ? r->file->fd : r->fd;
  int64_t off = r->offset < 0 ? -1 : r->offset + (int64_t)r->done;
  r->next = wrote;
  fs_go(r, uv_fs_write(r->loop, &r->uv, fd, &b, 1, off, fs_on_done));
}

/* write_file: open (the target, or a fresh temp file beside it), write,
 * then either close, or fsync + close + rename over the target. */
static void wf_open(fs_req *r);

static char *tmp_name(const char *path) {
  static unsigned counter;
  const char *slash = strrchr(path, '/');
  int dirlen = slash ? (int)(slash - path + 1) : 0;
  size_t n = strlen(path) + 64;
  char *t = malloc(n);
  if (t)
    snprintf(t, n, "%.*s.%s.%lx-%x.tmp", dirlen, path, path + dirlen,
             (unsigned long)uv_os_getpid(),
             ++counter ^ (unsigned)(uv_hrtime() & 0xffffffu));
  return t;
}

static void wf_opened(fs_req *r, ssize_t res) {
  if (res == UV_EEXIST && r->tmp && r->tries++ < 8) {
    char *t = tmp_name(r->path); /* somebody's file has that name */
    if (t) {
      free(r->tmp);
      r->tmp = t;
      wf_open(r);
      return;
    }
  }
  if (res < 0) {
    fs_fail(r, res, "open");
    return;
  }
  fs_write_more(r);
}

static void wf_open(fs_req *r) {
  r->next = wf_opened;
  fs_go(r, uv_fs_open(r->loop, &r->uv, r->tmp ? r->tmp : r->path, r->flags,
                   r->mode, fs_on_done));
}

static void at_closed(fs_req *r, ssize_t res) {
  if (res < 0) {
    fs_fail(r, res, "close");
    return;
  }
  r->next = fs_last_done;
  r->op = "rename";
  fs_go(r, uv_fs_rename(r->loop, &r->uv, r->tmp, r->path, fs_on_done));
}

static void at_synced(fs_req *r, ssize_t res) {
  if (res < 0) {
    fs_fail(r, res, "fsync");
    return;
  }
  uv_file fd = r->fd;
  r->fd = -1;
  r->next = at_closed;
  fs_go(r, uv_fs_close(r->loop, &r->uv, fd, fs_on_done));
}

static void at_fsync(fs_req *r) {
  r->next = at_synced;
  fs_go(r, uv_fs_fsync(r->loop, &r->uv, r->fd, fs_on_done));
}

static int opt_mode(lua_State *L, int idx, int dflt) {
  if (!lua_istable(L, idx)) return dflt;
  int isint, t = lua_getfield(L, idx, "mode");
  lua_Integer m = lua_tointegerx(L, -1, &isint);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return dflt;
  if (!isint || m < 0 || m > 07777)
    luaL_argerror(L, idx, "field 'mode' must be an integer permission "
                          "(0 to 0x0FFF)");
  return (int)m;
}

int fs_copy_data(lua_State *L, fs_req *r, int idx) {
  size_t len;
  const char *data = luaL_checklstring(L, idx, &len);
  r->buf = malloc(len ? len : 1);
  if (!r->buf) return 0;
  memcpy(r->buf, data, len);
  r->len = len;
  r->offset = -1;
  return 1;
}

static int write_common(lua_State *L, int append, const char *fname) {
  const char *path = check_path(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  static const char *const known[] = {"atomic", "mode", NULL};
  int atomic = 0;
  host_check_options(L, 3, append ? known + 1 : known); /* append: mode */
  if (!append && !lua_isnoneornil(L, 3)) {
    lua_getfield(L, 3, "atomic");
    atomic = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  int mode = opt_mode(L, 3, 0666);
  host_task *t = host_check_task(L, fname);
  fs_req *r = fs_req_new(L, FS_STATE(L), t, path);
  if (!fs_copy_data(L, r, 2) || (atomic && !(r->tmp = tmp_name(path)))) {
    fs_req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  r->mode = mode;
  if (atomic) {
    r->flags = UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL;
    r->after = at_fsync;
  } else {
    r->flags = UV_FS_O_WRONLY | UV_FS_O_CREAT |
               (append ? UV_FS_O_APPEND : UV_FS_O_TRUNC);
    r->after = fs_end_chain;
  }
  return fs_start(L, r, wf_open, finish_none);
}

static int fs_write_file(lua_State *L) {
  return write_common(L, 0, "write_file");
}

static int fs_append_file(lua_State *L) {
  return write_common(L, 1, "append_file");
}

/* ---- read_file: open, fstat for the size, read to EOF, close ----------- */

static void rf_got(fs_req *r, ssize_t res);

static void rf_read_more(fs_req *r) {
  host_buf *in = &r->in;
  if (in->len == in->cap && host_buf_reserve(in, in->cap)) { /* doubles */
    fs_fail(r, UV_ENOMEM, "read");
    return;
  }
  uv_buf_t b = uv_buf_init(in->p + in->len, fs_buf_len(in->cap - in->len));
  r->next = rf_got;
  fs_go(r, uv_fs_read(r->loop, &r->uv, r->fd, &b, 1, -1, fs_on_done));
}

static void rf_got(fs_req *r, ssize_t res) {
  if (res < 0) {
    fs_fail(r, res, "read");
  } else if (res == 0) {
    fs_end_chain(r);
  } else {
    r->in.len += (size_t)res;
    rf_read_more(r);
  }
}

static void rf_stat(fs_req *r, ssize_t res) {
  if (res < 0) {
    fs_fail(r, res, "fstat");
    return;
  }
  /* One byte more than the size, so EOF shows without a second buffer. */
  size_t cap = (size_t)r->statbuf.st_size + 1;
  if (cap < FS_READ_CHUNK) cap = FS_READ_CHUNK;
  if (host_buf_resize(&r->in, cap)) {
    fs_fail(r, UV_ENOMEM, "read");
    return;
  }
  rf_read_more(r);
}

static void rf_opened(fs_req *r, ssize_t res) {
  if (res < 0) {
    fs_fail(r, res, "open");
    return;
  }
  r->next = rf_stat;
  fs_go(r, uv_fs_fstat(r->loop, &r->uv, r->fd, fs_on_done));
}

static void rf_open(fs_req *r) {
  r->next = rf_opened;
  fs_go(r, uv_fs_open(r->loop, &r->uv, r->path, UV_FS_O_RDONLY, 0, fs_on_done));
}

static int rf_finish(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  lua_pushlstring(L, r->in.p ? r->in.p : "", r->in.len);
  fs_req_drop(r);
  return 1;
}

static int fs_read_file(lua_State *L) {
  const char *path = check_path(L, 1);
  host_task *t = host_check_task(L, "read_file");
  return fs_start(L, fs_req_new(L, FS_STATE(L), t, path), rf_open, rf_finish);
}

/* ---- stat, lstat, exists ---------------------------------------------- */

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "socket";
  case S_IFCHR: return "char";
  case S_IFBLK: return "block";
  default: return "unknown";
  }
}

static void set_time(lua_State *L, const char *k, uv_timespec_t ts) {
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  lua_setfield(L, -2, k);
}

static void push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 12);
  lua_pushstring(L, type_name(s->st_mode));
  lua_setfield(L, -2, "type");
  io_setfield_int(L, "size", s->st_size);
  io_setfield_int(L, "mode", s->st_mode & 07777);
  io_setfield_int(L, "nlink", s->st_nlink);
  io_setfield_int(L, "uid", s->st_uid);
  io_setfield_int(L, "gid", s->st_gid);
  io_setfield_int(L, "ino", s->st_ino);
  io_setfield_int(L, "dev", s->st_dev);
  set_time(L, "mtime", s->st_mtim);
  set_time(L, "atime", s->st_atim);
  set_time(L, "ctime", s->st_ctim);
  set_time(L, "birthtime", s->st_birthtim);
}

static void stat_first(fs_req *r) {
  r->next = fs_last_done;
  r->op = r->flags ? "lstat" : "stat";
  fs_go(r, r->flags ? uv_fs_lstat(r->loop, &r->uv, r->path, fs_on_done)
                 : uv_fs_stat(r->loop, &r->uv, r->path, fs_on_done));
}

static int stat_finish(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  push_stat(L, &r->statbuf);
  fs_req_drop(r);
  return 1;
}

static int exists_finish(lua_State *L, fs_req *r) {
  if (r->err && r->err != UV_ENOENT && r->err != UV_ENOTDIR)
    return fs_raise(L, r);
  lua_pushboolean(L, r->err == 0);
  fs_req_drop(r);
  return 1;
}

static int stat_common(lua_State *L, int lstat, const char *fname,
                       int (*finish)(lua_State *, fs_req *)) {
  const char *path = check_path(L, 1);
  host_task *t = host_check_task(L, fname);
  fs_req *r = fs_req_new(L, FS_STATE(L), t, path);
  r->flags = lstat;
  return fs_start(L, r, stat_first, finish);
}

static int fs_stat(lua_State *L) {
  return stat_common(L, 0, "stat", stat_finish);
}
static int fs_lstat(lua_State *L) {
  return stat_common(L, 1, "lstat", stat_finish);
}
static int fs_exists(lua_State *L) {
  return stat_common(L, 0, "exists", exists_finish);
}

/* ---- mkdir (with parents: each prefix in turn, like mkdir -p) ---------- */

static void mkp_step(fs_req *r);

static int only_slashes(const char *s) {
  while (*s == '/') s++;
  return *s == '\0';
}

static void mkp_checked(fs_req *r, ssize_t res) {
  if (res < 0)
    fs_fail(r, res, "stat");
  else if ((r->statbuf.st_mode & S_IFMT) != S_IFDIR)
    fs_fail(r, UV_EEXIST, "mkdir"); /* a file is in the way */
  else
    fs_end_chain(r);
}

static void mkp_made(fs_req *r, ssize_t res) {
  if (res == UV_EEXIST && only_slashes(r->path + r->done)) {
    r->next = mkp_checked;
    fs_go(r, uv_fs_stat(r->loop, &r->uv, r->path, fs_on_done));
  } else if (res < 0 && res != UV_EEXIST) {
    fs_fail(r, res, "mkdir");
  } else {
    mkp_step(r);
  }
}

static void mkp_step(fs_req *r) {
  const char *p = r->path;
  size_t n = strlen(p), i = r->done;
  while (i < n && p[i] == '/') i++;
  if (i >= n) {
    fs_end_chain(r);
    return;
  }
  while (i < n && p[i] != '/') i++;
  r->done = i;
  memcpy(r->path2, p, i);
  r->path2[i] = '\0';
  r->next = mkp_made;
  fs_go(r, uv_fs_mkdir(r->loop, &r->uv, r->path2, r->mode, fs_on_done));
}

static void mk_first(fs_req *r) {
  if (r->flags && r->path[0]) {
    mkp_step(r);
    return;
  }
  r->next = fs_last_done;
  r->op = "mkdir";
  fs_go(r, uv_fs_mkdir(r->loop, &r->uv, r->path, r->mode, fs_on_done));
}

static int fs_mkdir(lua_State *L) {
  const char *path = check_path(L, 1);
  static const char *const known[] = {"parents", "mode", NULL};
  int parents = 0;
  host_check_options(L, 2, known);
  if (!lua_isnoneornil(L, 2)) {
    lua_getfield(L, 2, "parents");
    parents = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  int mode = opt_mode(L, 2, 0777);
  host_task *t = host_check_task(L, "mkdir");
  fs_req *r = fs_req_new(L, FS_STATE(L), t, path);
  r->flags = parents;
  r->mode = mode;
  if (parents && !(r->path2 = malloc(strlen(path) + 1))) {
    fs_req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  return fs_start(L, r, mk_first, finish_none);
}

/* ---- listdir ---------------------------------------------------------- */

static void scan_first(fs_req *r) {
  r->next = fs_last_done;
  r->op = "scandir";
  fs_go(r, uv_fs_scandir(r->loop, &r->uv, r->path, 0, fs_on_done));
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int scan_finish(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  /* scandir_next frees each entry on the next call: keep them as Lua
   * strings, then sort pointers to those. */
  uv_dirent_t ent;
  int n = 0;
  lua_newtable(L);
  while (uv_fs_scandir_next(&r->uv, &ent) != UV_EOF) {
    lua_pushstring(L, ent.name);
    lua_rawseti(L, -2, ++n);
  }
  fs_req_drop(r);
  const char **names = lua_newuserdatauv(L, sizeof *names * (n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -2, i + 1);
    names[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
  }
  qsort(names, (size_t)n, sizeof *names, cmp_names);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int fs_listdir(lua_State *L) {
  const char *path = check_path(L, 1);
  host_task *t = host_check_task(L, "listdir");
  return fs_start(L, fs_req_new(L, FS_STATE(L), t, path), scan_first, scan_finish);
}

/* ---- remove, rename --------------------------------------------------- */

static void rm_rmdir_done(fs_req *r, ssize_t res) {
  if (res == UV_ENOTDIR)
    fs_fail(r, r->res, "unlink"); /* not a directory after all */
  else if (res < 0)
    fs_fail(r, res, "rmdir");
  else
    fs_end_chain(r);
}

static void rm_unlinked(fs_req *r, ssize_t res) {
  if (res == UV_EISDIR || res == UV_EPERM) {
    r->res = res;
    r->next = rm_rmdir_done;
    fs_go(r, uv_fs_rmdir(r->loop, &r->uv, r->path, fs_on_done));
  } else if (res < 0) {
    fs_fail(r, res, "unlink");
  } else {
    fs_end_chain(r);
  }
}

static void rm_first(fs_req *r) {
  r->next = rm_unlinked;
  fs_go(r, uv_fs_unlink(r->loop, &r->uv, r->path, fs_on_done));
}

static int fs_remove(lua_State *L) {
  const char *path = check_path(L, 1);
  host_task *t = host_check_task(L, "remove");
  return fs_start(L, fs_req_new(L, FS_STATE(L), t, path), rm_first, finish_none);
}

static void mv_first(fs_req *r) {
  r->next = fs_last_done;
  r->op = "rename";
  fs_go(r, uv_fs_rename(r->loop, &r->uv, r->path, r->path2, fs_on_done));
}

static int fs_rename(lua_State *L) {
  const char *from = check_path(L, 1);
  const char *to = check_path(L, 2);
  host_task *t = host_check_task(L, "rename");
  fs_req *r = fs_req_new(L, FS_STATE(L), t, from);
  if (!(r->path2 = strdup(to))) {
    fs_req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  r->two_paths = 1;
  return fs_start(L, r, mv_first, finish_none);
}

/* ---- the module ------------------------------------------------------- */

/* At lua_close: tasks are going away, so requests in flight are detached
 * (their callbacks then only clean up) and finished ones are dropped. */
static int state_gc(lua_State *L) {
  fs_state *st = lua_touserdata(L, 1);
  host_link *l = st->reqs.next;
  while (l != &st->reqs) {
    host_link *next = l->next;
    fs_req *r = host_container_of(l, fs_req, link);
    host_list_remove(l);
    r->st = NULL;
    r->task = NULL;
    if (r->delivered) fs_end_chain(r);
    l = next;
  }
  return 0;
}

static fs_state *push_state(lua_State *L, lasync_host *h) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, FS_STATE_KEY) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  fs_state *st = lua_newuserdatauv(L, sizeof *st, 0);
  st->h = h;
  host_list_init(&st->reqs);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, FS_STATE_KEY);
  return st;
}

static const luaL_Reg fs_funcs[] = {
    {"read_file", fs_read_file}, {"write_file", fs_write_file},
    {"append_file", fs_append_file}, {"open", fs_open},
    {"stat", fs_stat},           {"lstat", fs_lstat},
    {"exists", fs_exists},       {"mkdir", fs_mkdir},
    {"listdir", fs_listdir},     {"remove", fs_remove},
    {"rename", fs_rename},       {NULL, NULL}};

LASYNC_API int luaopen_asyncio_fs(lua_State *L) {
  lasync_host *h = host_for_module(L);
  io_guard_sigpipe(); /* writes to a pipe (a FIFO, /dev/stdout) get EPIPE */
  push_state(L, h);
  fs_file_open_type(L);
  lua_newtable(L);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, fs_funcs, 2);
  /* fs.Error: every failure is an OSError (FileNotFoundError...), the
   * same classes streams, processes and http's save raise */
  host_error_class(L, "OSError", NULL);
  lua_setfield(L, -2, "Error");
  lua_remove(L, -2);
  return 1;
}
