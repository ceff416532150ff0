/* asyncio.fs: files on libuv's thread pool.
 *
 * Every operation is one fs_req: a malloc'd record holding a uv_fs_t and
 * whatever the operation needs (path copies, a copy of the data to write,
 * the descriptor it opened).  A request runs a short chain of uv_fs_* calls
 * from its callbacks (open -> write -> close -> ...) and then wakes its task;
 * the task's continuation turns the outcome into Lua values.  Callbacks never
 * touch Lua: they only issue the next call, update C state and wake.
 *
 * A uv_fs_t cannot be cancelled once the thread pool runs it, so a task that
 * is cancelled while its request is in flight just detaches ("orphans") the
 * request and gets CancelledError at once; the request's next callback then
 * skips the rest of the chain, closes the descriptor it owns, removes its
 * temp file, and frees itself.
 *
 * File objects (fs.open) keep a malloc'd fs_file that the userdata and each
 * request using it hold a reference to, so an orphaned read can still land
 * in its buffer after the Lua object is gone.  One request at a time works
 * on a file; other callers queue (FIFO) until it is done.  Reads and writes
 * use explicit offsets (pread/pwrite) from a position we track, which is how
 * seek works without lseek; pipes and devices fall back to plain read/write. */

/* The Lua side (every call suspends the running task; errors are fs.Error
 * instances with code ("ENOENT"), errno, op ("open", "read", "scandir"...),
 * path, and dest for rename):
 *   read_file(path) -> string          write_file(path, data [, {atomic=, mode=}])
 *   append_file(path, data)            open(path [, "r"|"w"|"a"|"r+"|"w+"|"a+" [b]])
 *   stat(path) / lstat(path) -> {type=, size=, mode=, mtime=, atime=, ctime=, ...}
 *   exists(path) (false for ENOENT/ENOTDIR, other failures raise)
 *   mkdir(path [, {parents=, mode=}])  listdir(path) -> sorted names
 *   remove(path) (file or empty directory)   rename(from, to)
 * File: read([n | "a" | "l" | "L"]) (no argument: the rest; like io, "a"
 * gives "" and the others nil at the end), write(data) -> file, lines([fmt]),
 * seek([whence [, offset]]) -> position, close(), <close> and __gc (both
 * close in the background without suspending). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

#define FS_FILE_MT "asyncio.fs.File"
#define FS_STATE_KEY "lasync.fs.state"
#define READ_CHUNK ((size_t)64 * 1024)
#define READ_MAX ((size_t)64 * 1024 * 1024)

/* One per Lua state: the list of live requests, so that closing the state
 * detaches the ones still in flight from tasks that are about to vanish. */
typedef struct fs_state {
  lasync_host *h;
  host_link reqs;
} fs_state;

typedef struct fs_file {
  lasync_host *h;
  fs_state *st;
  uv_file fd;          /* -1 once closed or handed to a close request */
  int refs;            /* the Lua object + each request using the file */
  unsigned char writable, append, stream, closed, busy, gone;
  int64_t pos;         /* the user's position: the file offset of rbuf[roff] */
  char *rbuf;          /* read-ahead: rbuf[roff..rlen) */
  size_t rcap, roff, rlen;
  host_link waiters;   /* fs_waiter, tasks waiting for their turn */
  char *path;
} fs_file;

typedef struct fs_req fs_req;
struct fs_req {
  uv_fs_t uv;
  host_link link;      /* in st->reqs while st lives */
  fs_state *st;        /* NULL once the Lua state is gone */
  host_task *task;     /* NULL once orphaned */
  fs_file *file;       /* the file this request works on (holds a ref) */
  uv_loop_t *loop;
  void (*next)(fs_req *r, ssize_t res); /* the chain's next step */
  int (*finish)(lua_State *L, fs_req *r); /* in the task: the results */
  void (*after)(fs_req *r);             /* what follows a write */
  unsigned char ending, delivered, keep_fd, tmp_live, two_paths;
  int err;             /* first failure, a libuv error code */
  const char *errop;
  const char *op;      /* what the last call of a chain is called */
  uv_file fd;          /* a descriptor the chain opened, -1 if none */
  int flags, mode, fmt, tries;
  ssize_t res;
  int64_t offset;
  char *buf;           /* data to write, or read_file's buffer */
  size_t len, cap, done;
  uv_stat_t statbuf;
  char *path, *path2, *tmp;
};

typedef struct fs_waiter {
  host_link link;
  host_task *t;
  fs_file *f;
  lua_CFunction retry;
  int nargs;
} fs_waiter;

enum { FMT_N, FMT_LINE, FMT_LINEK, FMT_ALL };

static void on_fs(uv_fs_t *u);
static void end_chain(fs_req *r);
static void file_unref(fs_file *f);

/* ---- files: references, background close, turns ----------------------- */

static void bg_close_done(uv_fs_t *u) {
  fs_file *f = u->data;
  uv_fs_req_cleanup(u);
  free(u);
  file_unref(f);
}

/* Closes f's descriptor without waiting (for __gc, __close and requests
 * that finish after the file was closed that way). */
static void bg_close(fs_file *f) {
  uv_file fd = f->fd;
  if (fd < 0) return;
  f->fd = -1;
  uv_fs_t *u = malloc(sizeof *u);
  if (u) {
    u->data = f;
    f->refs++;
    if (uv_fs_close(f->h->loop, u, fd, bg_close_done) == 0) return;
    f->refs--;
    free(u);
  }
  uv_fs_t sync; /* out of memory: a plain close is the last resort */
  uv_fs_close(NULL, &sync, fd, NULL);
  uv_fs_req_cleanup(&sync);
}

static void file_unref(fs_file *f) {
  if (--f->refs > 0) return;
  free(f->rbuf);
  free(f->path);
  free(f);
}

/* Gives the file's turn to the first waiting task. */
static void wake_next(fs_file *f) {
  if (f->busy) return;
  host_link *l = host_list_first(&f->waiters);
  if (!l) return;
  fs_waiter *w = host_container_of(l, fs_waiter, link);
  host_list_remove(l);
  host_wake(w->t, NULL, 0);
}

static int waiter_cancel(host_task *t, int woken) {
  fs_waiter *w = t->wait_data;
  fs_file *f = w->f;
  host_list_remove(&w->link);
  free(w);
  if (woken) wake_next(f); /* the turn it was given goes on */
  return 0;
}

static int waiter_k(lua_State *L, lua_KContext ctx) {
  fs_waiter *w = (fs_waiter *)ctx;
  lua_CFunction retry = w->retry;
  int nargs = w->nargs;
  free(w);
  lua_settop(L, nargs);
  return retry(L);
}

/* Parks the running task until f is free, then calls retry again with the
 * same arguments. */
static int wait_turn(lua_State *L, host_task *t, fs_file *f,
                     lua_CFunction retry) {
  fs_waiter *w = malloc(sizeof *w);
  if (!w) return luaL_error(L, "asyncio.fs: out of memory");
  w->t = t;
  w->f = f;
  w->retry = retry;
  w->nargs = lua_gettop(L);
  host_list_push(&f->waiters, &w->link);
  return host_park(L, t, waiter_cancel, w, waiter_k, (lua_KContext)w);
}

/* ---- requests --------------------------------------------------------- */

static fs_req *req_new(lua_State *L, fs_state *st, host_task *t,
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
  r->fd = -1;
  host_list_push(&st->reqs, &r->link);
  return r;
}

/* Takes the file's turn for request r. */
static void req_bind_file(fs_req *r, fs_file *f) {
  r->file = f;
  f->refs++;
  f->busy = 1;
}

static void req_free(fs_req *r) {
  uv_fs_req_cleanup(&r->uv);
  if (r->st) host_list_remove(&r->link);
  fs_file *f = r->file;
  if (f) {
    f->busy = 0;
    if (f->closed) bg_close(f);
    if (r->st) wake_next(f); /* no task is woken once the state is gone */
    file_unref(f);
  }
  free(r->buf);
  free(r->path);
  free(r->path2);
  free(r->tmp);
  free(r);
}

/* Starts a call: a call that fails to start never runs its callback, so
 * the chain goes on with the error as the result. */
static void go(fs_req *r, int rc) {
  if (rc < 0) {
    uv_fs_req_cleanup(&r->uv);
    r->next(r, rc);
  }
}

static void fail(fs_req *r, ssize_t res, const char *op) {
  if (!r->err) {
    r->err = (int)res;
    r->errop = op;
  }
  end_chain(r);
}

/* The common last step: the call's failure, or the end of the chain. */
static void last_done(fs_req *r, ssize_t res) {
  r->res = res;
  if (res < 0)
    fail(r, res, r->op);
  else
    end_chain(r);
}

static void end_step(fs_req *r, ssize_t res) {
  if (res < 0 && r->uv.fs_type == UV_FS_CLOSE && r->task && !r->err) {
    r->err = (int)res;
    r->errop = "close";
  }
  end_chain(r);
}

/* The end of every chain, success, failure or orphan alike: close the
 * descriptor the chain opened (unless it is the result), remove a temp file
 * that did not make it, then wake the task or free the request. */
static void end_chain(fs_req *r) {
  r->ending = 1;
  r->next = end_step;
  if (r->fd >= 0 && !(r->keep_fd && r->task && !r->err)) {
    uv_file fd = r->fd;
    r->fd = -1;
    go(r, uv_fs_close(r->loop, &r->uv, fd, on_fs));
    return;
  }
  if (r->tmp_live && (r->err || !r->task)) {
    r->tmp_live = 0;
    go(r, uv_fs_unlink(r->loop, &r->uv, r->tmp, on_fs));
    return;
  }
  if (r->task) {
    r->delivered = 1;
    host_wake(r->task, NULL, 0);
  } else
    req_free(r);
}

static void on_fs(uv_fs_t *u) {
  fs_req *r = u->data;
  ssize_t res = u->result;
  uv_fs_type type = u->fs_type;
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
    end_chain(r);
    return;
  }
  r->next(r, res);
}

/* Cancel hook of a task parked on a request. */
static int req_cancel(host_task *t, int woken) {
  fs_req *r = t->wait_data;
  r->task = NULL;
  if (woken) end_chain(r); /* done, but k will not run: clean up now */
  return 0;
}

/* Drops a finished request from the task's side: closes what it kept. */
static void req_drop(fs_req *r) {
  r->task = NULL;
  end_chain(r);
}

static int req_k(lua_State *L, lua_KContext ctx);

static int park_req(lua_State *L, fs_req *r) {
  return host_park(L, r->task, req_cancel, r, req_k, (lua_KContext)r);
}

/* ---- errors ----------------------------------------------------------- */

static void push_error(lua_State *L, int err, const char *op,
                       const char *path, const char *dest) {
  if (dest)
    host_error_new(L, "FSError", "%s: %s, %s '%s' -> '%s'", uv_err_name(err),
                   uv_strerror(err), op, path, dest);
  else if (path)
    host_error_new(L, "FSError", "%s: %s, %s '%s'", uv_err_name(err),
                   uv_strerror(err), op, path);
  else
    host_error_new(L, "FSError", "%s: %s, %s", uv_err_name(err),
                   uv_strerror(err), op);
  lua_pushstring(L, uv_err_name(err));
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, -err);
  lua_setfield(L, -2, "errno");
  lua_pushstring(L, op);
  lua_setfield(L, -2, "op");
  if (path) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  if (dest) {
    lua_pushstring(L, dest);
    lua_setfield(L, -2, "dest");
  }
}

/* Raises the request's failure and drops the request. */
static int raise_req(lua_State *L, fs_req *r) {
  const char *path = r->file ? r->file->path : r->path;
  push_error(L, r->err, r->errop, path, r->two_paths ? r->path2 : NULL);
  req_drop(r);
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
  if (r->err) return raise_req(L, r);
  req_drop(r);
  return 0;
}

static int start(lua_State *L, fs_req *r, void (*first)(fs_req *),
                 int (*finish)(lua_State *, fs_req *)) {
  r->finish = finish;
  first(r);
  return park_req(L, r);
}

#define STATE(L) ((fs_state *)lua_touserdata(L, lua_upvalueindex(2)))

static unsigned buf_len(size_t n) {
  return n > (size_t)1 << 30 ? 1u << 30 : (unsigned)n;
}

/* ---- writing (write_file, append_file, file:write) -------------------- */

static void write_more(fs_req *r);

static void wrote(fs_req *r, ssize_t res) {
  if (res == UV_ESPIPE && r->file && !r->file->stream) {
    r->file->stream = 1; /* a pipe or device: no positions */
    r->offset = -1;
    write_more(r);
    return;
  }
  if (res <= 0) {
    fail(r, res ? res : UV_EIO, "write");
    return;
  }
  r->done += (size_t)res;
  write_more(r);
}

/* Writes r->buf[done..len) (short writes go on), then runs r->after. */
static void write_more(fs_req *r) {
  if (r->done >= r->len) {
    r->after(r);
    return;
  }
  uv_buf_t b = uv_buf_init(r->buf + r->done, buf_len(r->len - r->done));
  uv_file fd = r->file ? r->file->fd : r->fd;
  int64_t off = r->offset < 0 ? -1 : r->offset + (int64_t)r->done;
  r->next = wrote;
  go(r, uv_fs_write(r->loop, &r->uv, fd, &b, 1, off, on_fs));
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
    fail(r, res, "open");
    return;
  }
  write_more(r);
}

static void wf_open(fs_req *r) {
  r->next = wf_opened;
  go(r, uv_fs_open(r->loop, &r->uv, r->tmp ? r->tmp : r->path, r->flags,
                   r->mode, on_fs));
}

static void at_closed(fs_req *r, ssize_t res) {
  if (res < 0) {
    fail(r, res, "close");
    return;
  }
  r->next = last_done;
  r->op = "rename";
  go(r, uv_fs_rename(r->loop, &r->uv, r->tmp, r->path, on_fs));
}

static void at_synced(fs_req *r, ssize_t res) {
  if (res < 0) {
    fail(r, res, "fsync");
    return;
  }
  uv_file fd = r->fd;
  r->fd = -1;
  r->next = at_closed;
  go(r, uv_fs_close(r->loop, &r->uv, fd, on_fs));
}

static void at_fsync(fs_req *r) {
  r->next = at_synced;
  go(r, uv_fs_fsync(r->loop, &r->uv, r->fd, on_fs));
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

static int copy_data(lua_State *L, fs_req *r, int idx) {
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
  fs_req *r = req_new(L, STATE(L), t, path);
  if (!copy_data(L, r, 2) || (atomic && !(r->tmp = tmp_name(path)))) {
    req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  r->mode = mode;
  if (atomic) {
    r->flags = UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL;
    r->after = at_fsync;
  } else {
    r->flags = UV_FS_O_WRONLY | UV_FS_O_CREAT |
               (append ? UV_FS_O_APPEND : UV_FS_O_TRUNC);
    r->after = end_chain;
  }
  return start(L, r, wf_open, finish_none);
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
  if (r->done == r->cap) {
    size_t ncap = r->cap * 2;
    char *nb = realloc(r->buf, ncap);
    if (!nb) {
      fail(r, UV_ENOMEM, "read");
      return;
    }
    r->buf = nb;
    r->cap = ncap;
  }
  uv_buf_t b = uv_buf_init(r->buf + r->done, buf_len(r->cap - r->done));
  r->next = rf_got;
  go(r, uv_fs_read(r->loop, &r->uv, r->fd, &b, 1, -1, on_fs));
}

static void rf_got(fs_req *r, ssize_t res) {
  if (res < 0) {
    fail(r, res, "read");
  } else if (res == 0) {
    end_chain(r);
  } else {
    r->done += (size_t)res;
    rf_read_more(r);
  }
}

static void rf_stat(fs_req *r, ssize_t res) {
  if (res < 0) {
    fail(r, res, "fstat");
    return;
  }
  /* One byte more than the size, so EOF shows without a second buffer. */
  size_t cap = (size_t)r->statbuf.st_size + 1;
  if (cap < READ_CHUNK) cap = READ_CHUNK;
  if (!(r->buf = malloc(cap))) {
    fail(r, UV_ENOMEM, "read");
    return;
  }
  r->cap = cap;
  rf_read_more(r);
}

static void rf_opened(fs_req *r, ssize_t res) {
  if (res < 0) {
    fail(r, res, "open");
    return;
  }
  r->next = rf_stat;
  go(r, uv_fs_fstat(r->loop, &r->uv, r->fd, on_fs));
}

static void rf_open(fs_req *r) {
  r->next = rf_opened;
  go(r, uv_fs_open(r->loop, &r->uv, r->path, UV_FS_O_RDONLY, 0, on_fs));
}

static int rf_finish(lua_State *L, fs_req *r) {
  if (r->err) return raise_req(L, r);
  lua_pushlstring(L, r->buf ? r->buf : "", r->done);
  req_drop(r);
  return 1;
}

static int fs_read_file(lua_State *L) {
  const char *path = check_path(L, 1);
  host_task *t = host_check_task(L, "read_file");
  return start(L, req_new(L, STATE(L), t, path), rf_open, rf_finish);
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

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static void push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 12);
  lua_pushstring(L, type_name(s->st_mode));
  lua_setfield(L, -2, "type");
  set_int(L, "size", s->st_size);
  set_int(L, "mode", s->st_mode & 07777);
  set_int(L, "nlink", s->st_nlink);
  set_int(L, "uid", s->st_uid);
  set_int(L, "gid", s->st_gid);
  set_int(L, "ino", s->st_ino);
  set_int(L, "dev", s->st_dev);
  set_time(L, "mtime", s->st_mtim);
  set_time(L, "atime", s->st_atim);
  set_time(L, "ctime", s->st_ctim);
  set_time(L, "birthtime", s->st_birthtim);
}

static void stat_first(fs_req *r) {
  r->next = last_done;
  r->op = r->flags ? "lstat" : "stat";
  go(r, r->flags ? uv_fs_lstat(r->loop, &r->uv, r->path, on_fs)
                 : uv_fs_stat(r->loop, &r->uv, r->path, on_fs));
}

static int stat_finish(lua_State *L, fs_req *r) {
  if (r->err) return raise_req(L, r);
  push_stat(L, &r->statbuf);
  req_drop(r);
  return 1;
}

static int exists_finish(lua_State *L, fs_req *r) {
  if (r->err && r->err != UV_ENOENT && r->err != UV_ENOTDIR)
    return raise_req(L, r);
  lua_pushboolean(L, r->err == 0);
  req_drop(r);
  return 1;
}

static int stat_common(lua_State *L, int lstat, const char *fname,
                       int (*finish)(lua_State *, fs_req *)) {
  const char *path = check_path(L, 1);
  host_task *t = host_check_task(L, fname);
  fs_req *r = req_new(L, STATE(L), t, path);
  r->flags = lstat;
  return start(L, r, stat_first, finish);
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
    fail(r, res, "stat");
  else if ((r->statbuf.st_mode & S_IFMT) != S_IFDIR)
    fail(r, UV_EEXIST, "mkdir"); /* a file is in the way */
  else
    end_chain(r);
}

static void mkp_made(fs_req *r, ssize_t res) {
  if (res == UV_EEXIST && only_slashes(r->path + r->done)) {
    r->next = mkp_checked;
    go(r, uv_fs_stat(r->loop, &r->uv, r->path, on_fs));
  } else if (res < 0 && res != UV_EEXIST) {
    fail(r, res, "mkdir");
  } else {
    mkp_step(r);
  }
}

static void mkp_step(fs_req *r) {
  const char *p = r->path;
  size_t n = strlen(p), i = r->done;
  while (i < n && p[i] == '/') i++;
  if (i >= n) {
    end_chain(r);
    return;
  }
  while (i < n && p[i] != '/') i++;
  r->done = i;
  memcpy(r->path2, p, i);
  r->path2[i] = '\0';
  r->next = mkp_made;
  go(r, uv_fs_mkdir(r->loop, &r->uv, r->path2, r->mode, on_fs));
}

static void mk_first(fs_req *r) {
  if (r->flags && r->path[0]) {
    mkp_step(r);
    return;
  }
  r->next = last_done;
  r->op = "mkdir";
  go(r, uv_fs_mkdir(r->loop, &r->uv, r->path, r->mode, on_fs));
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
  fs_req *r = req_new(L, STATE(L), t, path);
  r->flags = parents;
  r->mode = mode;
  if (parents && !(r->path2 = malloc(strlen(path) + 1))) {
    req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  return start(L, r, mk_first, finish_none);
}

/* ---- listdir ---------------------------------------------------------- */

static void scan_first(fs_req *r) {
  r->next = last_done;
  r->op = "scandir";
  go(r, uv_fs_scandir(r->loop, &r->uv, r->path, 0, on_fs));
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int scan_finish(lua_State *L, fs_req *r) {
  if (r->err) return raise_req(L, r);
  /* scandir_next frees each entry on the next call: keep them as Lua
   * strings, then sort pointers to those. */
  uv_dirent_t ent;
  int n = 0;
  lua_newtable(L);
  while (uv_fs_scandir_next(&r->uv, &ent) != UV_EOF) {
    lua_pushstring(L, ent.name);
    lua_rawseti(L, -2, ++n);
  }
  req_drop(r);
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
  return start(L, req_new(L, STATE(L), t, path), scan_first, scan_finish);
}

/* ---- remove, rename --------------------------------------------------- */

static void rm_rmdir_done(fs_req *r, ssize_t res) {
  if (res == UV_ENOTDIR)
    fail(r, r->res, "unlink"); /* not a directory after all */
  else if (res < 0)
    fail(r, res, "rmdir");
  else
    end_chain(r);
}

static void rm_unlinked(fs_req *r, ssize_t res) {
  if (res == UV_EISDIR || res == UV_EPERM) {
    r->res = res;
    r->next = rm_rmdir_done;
    go(r, uv_fs_rmdir(r->loop, &r->uv, r->path, on_fs));
  } else if (res < 0) {
    fail(r, res, "unlink");
  } else {
    end_chain(r);
  }
}

static void rm_first(fs_req *r) {
  r->next = rm_unlinked;
  go(r, uv_fs_unlink(r->loop, &r->uv, r->path, on_fs));
}

static int fs_remove(lua_State *L) {
  const char *path = check_path(L, 1);
  host_task *t = host_check_task(L, "remove");
  return start(L, req_new(L, STATE(L), t, path), rm_first, finish_none);
}

static void mv_first(fs_req *r) {
  r->next = last_done;
  r->op = "rename";
  go(r, uv_fs_rename(r->loop, &r->uv, r->path, r->path2, on_fs));
}

static int fs_rename(lua_State *L) {
  const char *from = check_path(L, 1);
  const char *to = check_path(L, 2);
  host_task *t = host_check_task(L, "rename");
  fs_req *r = req_new(L, STATE(L), t, from);
  if (!(r->path2 = strdup(to))) {
    req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  r->two_paths = 1;
  return start(L, r, mv_first, finish_none);
}

/* ---- file objects ----------------------------------------------------- */

static fs_file *check_file(lua_State *L, int idx) {
  fs_file **box = luaL_checkudata(L, idx, FS_FILE_MT);
  if (!*box || (*box)->closed)
    luaL_error(L, "asyncio.fs: attempt to use a closed file");
  return *box;
}

/* io.open's modes: r w a, an optional +, then only b's. */
static int mode_flags(const char *m, int *flags, unsigned char *append) {
  int rw;
  switch (*m++) {
  case 'r': rw = 0; *flags = 0; break;
  case 'w': rw = 1; *flags = UV_FS_O_CREAT | UV_FS_O_TRUNC; break;
  case 'a': rw = 1; *flags = UV_FS_O_CREAT | UV_FS_O_APPEND; break;
  default: return 0;
  }
  *append = m[-1] == 'a';
  if (*m == '+') {
    m++;
    *flags |= UV_FS_O_RDWR;
  } else {
    *flags |= rw ? UV_FS_O_WRONLY : UV_FS_O_RDONLY;
  }
  return strspn(m, "b") == strlen(m);
}

static void open_first(fs_req *r) {
  r->next = last_done;
  r->op = "open";
  go(r, uv_fs_open(r->loop, &r->uv, r->path, r->flags, 0666, on_fs));
}

static int open_finish(lua_State *L, fs_req *r) {
  if (r->err) return raise_req(L, r);
  fs_file **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  fs_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(r->path))) {
    free(f);
    req_drop(r); /* closes the descriptor */
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  f->h = r->st->h;
  f->st = r->st;
  f->fd = r->fd;
  r->fd = -1;
  f->refs = 1;
  f->writable = (r->flags & (UV_FS_O_WRONLY | UV_FS_O_RDWR)) != 0;
  f->append = (unsigned char)r->mode;
  host_list_init(&f->waiters);
  *box = f;
  luaL_setmetatable(L, FS_FILE_MT);
  req_drop(r);
  return 1;
}

static int fs_open(lua_State *L) {
  const char *path = check_path(L, 1);
  const char *mode = lua_isnoneornil(L, 2) ? "r"
                                            : host_check_cstring(L, 2, NULL);
  int flags;
  unsigned char append;
  if (!mode_flags(mode, &flags, &append))
    return luaL_argerror(L, 2, lua_pushfstring(L, "invalid mode '%s'", mode));
  host_task *t = host_check_task(L, "open");
  fs_req *r = req_new(L, STATE(L), t, path);
  r->flags = flags;
  r->mode = append;
  r->keep_fd = 1;
  return start(L, r, open_first, open_finish);
}

/* Reading: the read-ahead buffer serves what it can; otherwise one more
 * chunk is read at the end of it and the request is tried again. */
static int parse_fmt(lua_State *L, int idx, size_t *n) {
  if (lua_isnoneornil(L, idx)) return FMT_ALL;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer v = luaL_checkinteger(L, idx);
    luaL_argcheck(L, v >= 0, idx, "negative count");
    *n = (size_t)v;
    return FMT_N;
  }
  const char *p = luaL_checkstring(L, idx);
  if (*p == '*') p++; /* Lua 5.1's "*l" */
  switch (*p) {
  case 'a': return FMT_ALL;
  case 'l': return FMT_LINE;
  case 'L': return FMT_LINEK;
  default: return luaL_argerror(L, idx, "invalid format");
  }
}

static void consume(lua_State *L, fs_file *f, size_t take, size_t push) {
  lua_pushlstring(L, f->rbuf + f->roff, push);
  f->roff += take;
  f->pos += (int64_t)take;
  if (f->roff == f->rlen) f->roff = f->rlen = 0;
}

/* Pushes the answer and returns 1 if the buffer holds enough for it (or
 * the file has ended); 0 when more must be read. */
static int try_read(lua_State *L, fs_file *f, int fmt, size_t n, int eof) {
  size_t have = f->rlen - f->roff;
  const char *p = f->rbuf + f->roff;
  switch (fmt) {
  case FMT_N:
    if (have == 0 && eof) break;
    if (n == 0 && have > 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    if ((have < n || n == 0) && !eof) return 0; /* read(0) tests for EOF */
    n = have < n ? have : n;
    consume(L, f, n, n);
    return 1;
  case FMT_LINE:
  case FMT_LINEK: {
    const char *nl = have ? memchr(p, '\n', have) : NULL;
    if (nl) {
      size_t k = (size_t)(nl - p) + 1;
      consume(L, f, k, fmt == FMT_LINEK ? k : k - 1);
      return 1;
    }
    if (!eof) return 0;
    if (have == 0) break;
    consume(L, f, have, have);
    return 1;
  }
  default: /* FMT_ALL: "" at the end, like io's "a" */
    if (!eof) return 0;
    consume(L, f, have, have);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static void read_more(fs_req *r) {
  fs_file *f = r->file;
  size_t have = f->rlen - f->roff;
  if (f->roff) {
    memmove(f->rbuf, f->rbuf + f->roff, have);
    f->roff = 0;
    f->rlen = have;
  }
  size_t chunk = READ_CHUNK;
  if (r->fmt == FMT_N && r->len > have && r->len - have > chunk)
    chunk = r->len - have;
  if (r->fmt == FMT_ALL && have > chunk) chunk = have;
  if (chunk > READ_MAX) chunk = READ_MAX;
  r->ending = r->delivered = 0;
  r->err = 0;
  r->res = 0;
  r->next = last_done;
  r->op = "read";
  if (f->rcap < have + chunk) {
    char *nb = realloc(f->rbuf, have + chunk);
    if (!nb) {
      fail(r, UV_ENOMEM, "read");
      return;
    }
    f->rbuf = nb;
    f->rcap = have + chunk;
  }
  uv_buf_t b = uv_buf_init(f->rbuf + have, buf_len(chunk));
  go(r, uv_fs_read(r->loop, &r->uv, f->fd, &b, 1,
                   f->stream ? -1 : f->pos + (int64_t)have, on_fs));
}

static int read_finish(lua_State *L, fs_req *r) {
  fs_file *f = r->file;
  if (r->err == UV_ESPIPE && !f->stream) {
    f->stream = 1; /* a pipe or device: read where it is */
    read_more(r);
    return park_req(L, r);
  }
  if (r->err) return raise_req(L, r);
  f->rlen += (size_t)r->res;
  if (!try_read(L, f, r->fmt, r->len, r->res == 0)) {
    read_more(r);
    return park_req(L, r);
  }
  req_drop(r);
  return 1;
}

static int file_read(lua_State *L) {
  fs_file *f = check_file(L, 1);
  size_t n = 0;
  int fmt = parse_fmt(L, 2, &n);
  host_task *t = host_check_task(L, "read");
  if (f->busy) return wait_turn(L, t, f, file_read);
  if (try_read(L, f, fmt, n, 0)) return 1;
  fs_req *r = req_new(L, f->st, t, NULL);
  req_bind_file(r, f);
  r->fmt = fmt;
  r->len = n;
  r->finish = read_finish;
  read_more(r);
  return park_req(L, r);
}

static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  return file_read(L);
}

static int file_lines(lua_State *L) {
  size_t n;
  check_file(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "l");
  } else {
    parse_fmt(L, 2, &n);
    lua_settop(L, 2);
  }
  lua_pushcclosure(L, lines_iter, 2);
  return 1;
}

/* Writing: at the position (the read-ahead is dropped), or at the end in
 * append mode, where the position then moves to the new end. */
static void fw_stat(fs_req *r, ssize_t res) {
  if (res < 0) {
    fail(r, res, "fstat");
    return;
  }
  r->file->pos = (int64_t)r->statbuf.st_size;
  end_chain(r);
}

static void fw_after(fs_req *r) {
  if (!r->file->append || r->file->stream) {
    end_chain(r);
    return;
  }
  r->next = fw_stat;
  go(r, uv_fs_fstat(r->loop, &r->uv, r->file->fd, on_fs));
}

static int write_finish(lua_State *L, fs_req *r) {
  if (r->err) return raise_req(L, r);
  req_drop(r);
  lua_settop(L, 1);
  return 1;
}

static int file_write(lua_State *L) {
  fs_file *f = check_file(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  host_task *t = host_check_task(L, "write");
  if (f->busy) return wait_turn(L, t, f, file_write);
  fs_req *r = req_new(L, f->st, t, NULL);
  if (!copy_data(L, r, 2)) {
    req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  req_bind_file(r, f);
  f->roff = f->rlen = 0;
  r->offset = (f->append || f->stream) ? -1 : f->pos;
  r->after = fw_after;
  r->finish = write_finish;
  write_more(r);
  return park_req(L, r);
}

static int seek_to(lua_State *L, fs_file *f, int64_t base, lua_Integer off) {
  if ((off > 0 && base > INT64_MAX - off) || base + off < 0) {
    push_error(L, UV_EINVAL, "seek", f->path, NULL);
    return lua_error(L);
  }
  int64_t np = base + off;
  if (np >= f->pos && np <= f->pos + (int64_t)(f->rlen - f->roff)) {
    f->roff += (size_t)(np - f->pos); /* still inside the read-ahead */
    if (f->roff == f->rlen) f->roff = f->rlen = 0;
  } else {
    f->roff = f->rlen = 0;
  }
  f->pos = np;
  lua_pushinteger(L, (lua_Integer)np);
  return 1;
}

static void seek_first(fs_req *r) {
  r->next = last_done;
  r->op = "fstat";
  go(r, uv_fs_fstat(r->loop, &r->uv, r->file->fd, on_fs));
}

static int seek_finish(lua_State *L, fs_req *r) {
  if (r->err) return raise_req(L, r);
  fs_file *f = r->file;
  int64_t size = (int64_t)r->statbuf.st_size;
  req_drop(r); /* the turn ends; seek_to does not suspend */
  return seek_to(L, f, size, luaL_optinteger(L, 3, 0));
}

static int file_seek(lua_State *L) {
  static const char *const whences[] = {"set", "cur", "end", NULL};
  fs_file *f = check_file(L, 1);
  int whence = luaL_checkoption(L, 2, "cur", whences);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  host_task *t = host_check_task(L, "seek");
  if (f->busy) return wait_turn(L, t, f, file_seek);
  if (f->stream) {
    push_error(L, UV_ESPIPE, "seek", f->path, NULL);
    return lua_error(L);
  }
  if (whence != 2) return seek_to(L, f, whence == 0 ? 0 : f->pos, off);
  fs_req *r = req_new(L, f->st, t, NULL);
  req_bind_file(r, f);
  return start(L, r, seek_first, seek_finish);
}

static int close_finish(lua_State *L, fs_req *r) {
  if (r->err) return raise_req(L, r);
  req_drop(r);
  lua_pushboolean(L, 1);
  return 1;
}

static int file_close(lua_State *L) {
  fs_file *f = check_file(L, 1);
  host_task *t = host_check_task(L, "close");
  if (f->busy) return wait_turn(L, t, f, file_close);
  f->closed = 1;
  fs_req *r = req_new(L, f->st, t, NULL);
  req_bind_file(r, f);
  r->fd = f->fd; /* end_chain closes it and reports a failure */
  f->fd = -1;
  r->finish = close_finish;
  end_chain(r);
  return park_req(L, r);
}

/* __close and __gc: close in the background, never suspending; a request
 * still running on the file closes it when it ends. */
static void shut(fs_file *f) {
  if (f->closed) return;
  f->closed = 1;
  if (!f->busy) bg_close(f);
}

static int file_toclose(lua_State *L) {
  fs_file **box = luaL_checkudata(L, 1, FS_FILE_MT);
  if (*box) shut(*box);
  return 0;
}

static int file_gc(lua_State *L) {
  fs_file **box = luaL_checkudata(L, 1, FS_FILE_MT);
  fs_file *f = *box;
  if (!f) return 0;
  *box = NULL;
  shut(f);
  f->gone = 1;
  /* Only the state's end can collect a file somebody waits on. */
  host_link *l;
  while ((l = host_list_first(&f->waiters))) {
    host_list_remove(l);
    free(host_container_of(l, fs_waiter, link));
  }
  file_unref(f);
  return 0;
}

static int file_tostring(lua_State *L) {
  fs_file **box = luaL_checkudata(L, 1, FS_FILE_MT);
  if (!*box || (*box)->closed)
    lua_pushliteral(L, "fs.File (closed)");
  else
    lua_pushfstring(L, "fs.File (%s)", (*box)->path);
  return 1;
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
    if (r->delivered) end_chain(r);
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

static const luaL_Reg file_methods[] = {
    {"read", file_read},   {"write", file_write}, {"lines", file_lines},
    {"seek", file_seek},   {"close", file_close}, {NULL, NULL}};

static const luaL_Reg file_meta[] = {{"__gc", file_gc},
                                     {"__close", file_toclose},
                                     {"__tostring", file_tostring},
                                     {NULL, NULL}};

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
  host_new_type(L, FS_FILE_MT, file_methods, file_meta, 0);
  lua_newtable(L);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, fs_funcs, 2);
  host_error_class(L, "FSError", NULL);
  lua_setfield(L, -2, "Error");
  lua_remove(L, -2);
  return 1;
}
