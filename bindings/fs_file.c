/* asyncio.fs's File object (fs.open): a descriptor with a read-ahead
 * buffer, on the request engine of fs.c (fs.h).
 *
 * One request at a time works on a file; other callers wait their turn in
 * the file's waitq (FIFO, no allocation), then call the same method again.
 * Reads and writes use explicit offsets (pread/pwrite) from a position we
 * track, which is how seek works without lseek; pipes and devices fall back
 * to plain read/write.  Lifetime and closing follow host/handle.h, the
 * descriptor in the place of a libuv handle: using a closed file raises
 * InvalidStateError through its one check, as a
 * closed stream does.
 *
 * File: read([n | "a" | "l" | "L"]) (no argument: the rest; like io, "a"
 * gives "" and the others nil at the end), write(data) -> file, lines([fmt]),
 * seek([whence [, offset]]) -> position, close(), <close> and __gc (both
 * close in the background without suspending). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "../host/waitq.h"

#define READ_MAX ((size_t)64 * 1024 * 1024)

enum { FMT_N, FMT_LINE, FMT_LINEK, FMT_ALL };

/* ---- lifetime (handle.h), background close ----------------------------- */

static void file_free(host_handle *hd) {
  fs_file *f = host_container_of(hd, fs_file, hd);
  host_buf_free(&f->ra);
  free(f->path);
  free(f);
}

static void bg_close_done(uv_fs_t *u) {
  fs_file *f = u->data;
  uv_fs_req_cleanup(u);
  free(u);
  host_handle_after_close(&f->hd);
}

/* Closes f's descriptor without waiting (for __gc, __close, the host's
 * stop and requests that finish after the file was closed that way); the
 * descriptor's hold goes when the close is done. */
static void bg_close(fs_file *f) {
  uv_file fd = f->fd;
  if (fd < 0) return;
  f->fd = -1;
  uv_fs_t *u = malloc(sizeof *u);
  if (u) {
    u->data = f;
    if (uv_fs_close(f->h->loop, u, fd, bg_close_done) == 0) return;
    free(u);
  }
  uv_fs_t sync; /* out of memory: a plain close is the last resort */
  uv_fs_close(NULL, &sync, fd, NULL);
  uv_fs_req_cleanup(&sync);
  host_handle_after_close(&f->hd);
}

/* The close hook: never suspends.  A request still running on the file
 * closes it when it ends (fs_file_release); a descriptor already handed
 * to close() 's request is that request's to close. */
static int file_close_hook(host_handle *hd, lua_State *L) {
  fs_file *f = host_container_of(hd, fs_file, hd);
  (void)L;
  if (f->fd < 0)
    host_handle_after_close(hd);
  else if (!f->busy)
    bg_close(f);
  return 1;
}

static const host_handle_type FILE_TYPE = {FS_FILE_MT, "file",
                                           file_close_hook, file_free};

/* ---- turns ------------------------------------------------------------ */

/* Gives the file's turn to the first waiting task. */
static void wake_next(fs_file *f) {
  if (f->busy) return;
  host_task *t = waitq_pop(&f->waiters);
  if (t) host_wake(t, NULL, 0);
}

static int turn_cancel(host_task *t, int woken) {
  fs_file *f = t->wait_data;
  if (woken)
    wake_next(f); /* the turn it was given goes on */
  else
    waitq_remove(t);
  return 0;
}

/* The turn has come: the method runs again with the same arguments (the
 * stack is as it was when the task parked). */
static int turn_k(lua_State *L, lua_KContext ctx) {
  return ((lua_CFunction)(uintptr_t)ctx)(L);
}

/* Parks the running task until f is free, then calls retry again. */
static int wait_turn(lua_State *L, host_task *t, fs_file *f,
                     lua_CFunction retry) {
  waitq_push(&f->waiters, t);
  return host_park(L, t, turn_cancel, f, turn_k,
                   (lua_KContext)(uintptr_t)retry);
}

/* Takes the file's turn for request r. */
static void req_bind_file(fs_req *r, fs_file *f) {
  r->file = f;
  host_handle_hold(&f->hd);
  f->busy = 1;
}

void fs_file_release(fs_file *f, int wake) {
  f->busy = 0;
  if (f->hd.closing) bg_close(f);
  if (wake) wake_next(f); /* no task is woken once the state is gone */
  host_handle_drop(&f->hd);
}

/* ---- the File object -------------------------------------------------- */

static fs_file *check_file(lua_State *L, int idx, const char *fname) {
  return host_container_of(host_handle_check(L, idx, &FILE_TYPE, fname, 1),
                           fs_file, hd);
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
  r->next = fs_last_done;
  r->op = "open";
  fs_go(r, uv_fs_open(r->loop, &r->uv, r->path, r->flags, 0666, fs_on_done));
}

static int open_finish(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  host_handle **box = host_handle_newbox(L, FS_FILE_MT, 0);
  fs_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(r->path))) {
    free(f);
    fs_req_drop(r); /* closes the descriptor */
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  f->h = r->st->h;
  f->st = r->st;
  f->fd = r->fd;
  r->fd = -1;
  f->writable = (r->flags & (UV_FS_O_WRONLY | UV_FS_O_RDWR)) != 0;
  f->append = (unsigned char)r->mode;
  host_list_init(&f->waiters);
  host_handle_init(&f->hd, &FILE_TYPE, f->h);
  host_handle_attach(box, &f->hd);
  fs_req_drop(r);
  return 1;
}

int fs_open(lua_State *L) {
  const char *path = host_check_cstring(L, 1, NULL);
  const char *mode = lua_isnoneornil(L, 2) ? "r"
                                            : host_check_cstring(L, 2, NULL);
  int flags;
  unsigned char append;
  if (!mode_flags(mode, &flags, &append))
    return luaL_argerror(L, 2, lua_pushfstring(L, "invalid mode '%s'", mode));
  host_task *t = host_check_task(L, "open");
  fs_req *r = fs_req_new(L, FS_STATE(L), t, path);
  r->flags = flags;
  r->mode = append;
  r->keep_fd = 1;
  return fs_start(L, r, open_first, open_finish);
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
  lua_pushlstring(L, f->ra.p + f->roff, push);
  f->roff += take;
  f->pos += (int64_t)take;
  if (f->roff == f->ra.len) f->roff = f->ra.len = 0;
}

/* Pushes the answer and returns 1 if the buffer holds enough for it (or
 * the file has ended); 0 when more must be read. */
static int try_read(lua_State *L, fs_file *f, int fmt, size_t n, int eof) {
  size_t have = f->ra.len - f->roff;
  const char *p = f->ra.p + f->roff;
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
  size_t have = f->ra.len - f->roff;
  if (f->roff) {
    memmove(f->ra.p, f->ra.p + f->roff, have);
    f->roff = 0;
    f->ra.len = have;
  }
  size_t chunk = FS_READ_CHUNK;
  if (r->fmt == FMT_N && r->len > have && r->len - have > chunk)
    chunk = r->len - have;
  if (r->fmt == FMT_ALL && have > chunk) chunk = have;
  if (chunk > READ_MAX) chunk = READ_MAX;
  r->ending = r->delivered = 0;
  r->err = 0;
  r->res = 0;
  r->next = fs_last_done;
  r->op = "read";
  if (f->ra.cap < have + chunk && host_buf_resize(&f->ra, have + chunk)) {
    fs_fail(r, UV_ENOMEM, "read");
    return;
  }
  uv_buf_t b = uv_buf_init(f->ra.p + have, fs_buf_len(chunk));
  fs_go(r, uv_fs_read(r->loop, &r->uv, f->fd, &b, 1,
                   f->stream ? -1 : f->pos + (int64_t)have, fs_on_done));
}

static int read_finish(lua_State *L, fs_req *r) {
  fs_file *f = r->file;
  if (r->err == UV_ESPIPE && !f->stream) {
    f->stream = 1; /* a pipe or device: read where it is */
    read_more(r);
    return fs_park(L, r);
  }
  if (r->err) return fs_raise(L, r);
  f->ra.len += (size_t)r->res;
  if (!try_read(L, f, r->fmt, r->len, r->res == 0)) {
    read_more(r);
    return fs_park(L, r);
  }
  fs_req_drop(r);
  return 1;
}

static int file_read(lua_State *L) {
  fs_file *f = check_file(L, 1, "read");
  size_t n = 0;
  int fmt = parse_fmt(L, 2, &n);
  host_task *t = host_check_task(L, "read");
  if (f->busy) return wait_turn(L, t, f, file_read);
  if (try_read(L, f, fmt, n, 0)) return 1;
  fs_req *r = fs_req_new(L, f->st, t, NULL);
  req_bind_file(r, f);
  r->fmt = fmt;
  r->len = n;
  r->finish = read_finish;
  read_more(r);
  return fs_park(L, r);
}

static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  return file_read(L);
}

static int file_lines(lua_State *L) {
  size_t n;
  check_file(L, 1, "lines");
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
    fs_fail(r, res, "fstat");
    return;
  }
  r->file->pos = (int64_t)r->statbuf.st_size;
  fs_end_chain(r);
}

static void fw_after(fs_req *r) {
  if (!r->file->append || r->file->stream) {
    fs_end_chain(r);
    return;
  }
  r->next = fw_stat;
  fs_go(r, uv_fs_fstat(r->loop, &r->uv, r->file->fd, fs_on_done));
}

static int write_finish(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  fs_req_drop(r);
  lua_settop(L, 1);
  return 1;
}

static int file_write(lua_State *L) {
  fs_file *f = check_file(L, 1, "write");
  luaL_checktype(L, 2, LUA_TSTRING);
  host_task *t = host_check_task(L, "write");
  if (f->busy) return wait_turn(L, t, f, file_write);
  fs_req *r = fs_req_new(L, f->st, t, NULL);
  if (!fs_copy_data(L, r, 2)) {
    fs_req_free(r);
    return luaL_error(L, "asyncio.fs: out of memory");
  }
  req_bind_file(r, f);
  f->roff = f->ra.len = 0;
  r->offset = (f->append || f->stream) ? -1 : f->pos;
  r->after = fw_after;
  r->finish = write_finish;
  fs_write_more(r);
  return fs_park(L, r);
}

static int seek_to(lua_State *L, fs_file *f, int64_t base, lua_Integer off) {
  if ((off > 0 && base > INT64_MAX - off) || base + off < 0) {
    return host_raise_oserror(L, UV_EINVAL, "seek", f->path);
  }
  int64_t np = base + off;
  if (np >= f->pos && np <= f->pos + (int64_t)(f->ra.len - f->roff)) {
    f->roff += (size_t)(np - f->pos); /* still inside the read-ahead */
    if (f->roff == f->ra.len) f->roff = f->ra.len = 0;
  } else {
    f->roff = f->ra.len = 0;
  }
  f->pos = np;
  lua_pushinteger(L, (lua_Integer)np);
  return 1;
}

static void seek_first(fs_req *r) {
  r->next = fs_last_done;
  r->op = "fstat";
  fs_go(r, uv_fs_fstat(r->loop, &r->uv, r->file->fd, fs_on_done));
}

static int seek_finish(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  fs_file *f = r->file;
  int64_t size = (int64_t)r->statbuf.st_size;
  fs_req_drop(r); /* the turn ends; seek_to does not suspend */
  return seek_to(L, f, size, luaL_optinteger(L, 3, 0));
}

static int file_seek(lua_State *L) {
  static const char *const whences[] = {"set", "cur", "end", NULL};
  fs_file *f = check_file(L, 1, "seek");
  int whence = luaL_checkoption(L, 2, "cur", whences);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  host_task *t = host_check_task(L, "seek");
  if (f->busy) return wait_turn(L, t, f, file_seek);
  if (f->stream) {
    return host_raise_oserror(L, UV_ESPIPE, "seek", f->path);
  }
  if (whence != 2) return seek_to(L, f, whence == 0 ? 0 : f->pos, off);
  fs_req *r = fs_req_new(L, f->st, t, NULL);
  req_bind_file(r, f);
  return fs_start(L, r, seek_first, seek_finish);
}

static int close_finish(lua_State *L, fs_req *r) {
  if (r->err) return fs_raise(L, r);
  fs_req_drop(r);
  lua_pushboolean(L, 1);
  return 1;
}

static int file_close(lua_State *L) {
  fs_file *f = check_file(L, 1, "close");
  host_task *t = host_check_task(L, "close");
  if (f->busy) return wait_turn(L, t, f, file_close);
  fs_req *r = fs_req_new(L, f->st, t, NULL);
  req_bind_file(r, f);
  r->fd = f->fd; /* fs_end_chain closes it and reports a failure */
  f->fd = -1;
  host_handle_close(&f->hd, L);
  r->finish = close_finish;
  fs_end_chain(r);
  return fs_park(L, r);
}

/* __close: the protocol's close, in the background, never suspending. */
static int file_toclose(lua_State *L) {
  host_handle *hd = host_handle_test(L, 1, &FILE_TYPE);
  if (hd) host_handle_close(hd, L);
  return 0;
}

static int file_gc(lua_State *L) {
  host_handle *hd = host_handle_test(L, 1, &FILE_TYPE);
  if (!hd) return 0;
  /* Only the state's end can collect a file somebody waits on: those
   * tasks are going away with it. */
  fs_file *f = host_container_of(hd, fs_file, hd);
  while (waitq_pop(&f->waiters)) {
  }
  return host_handle_gc(L);
}

static int file_tostring(lua_State *L) {
  host_handle *hd = host_handle_test(L, 1, &FILE_TYPE);
  if (!hd || hd->closing)
    lua_pushliteral(L, "fs.File (closed)");
  else
    lua_pushfstring(L, "fs.File (%s)",
                    host_container_of(hd, fs_file, hd)->path);
  return 1;
}

static const luaL_Reg file_methods[] = {
    {"read", file_read},   {"write", file_write}, {"lines", file_lines},
    {"seek", file_seek},   {"close", file_close}, {NULL, NULL}};

static const luaL_Reg file_meta[] = {{"__gc", file_gc},
                                     {"__close", file_toclose},
                                     {"__tostring", file_tostring},
                                     {NULL, NULL}};

void fs_file_open_type(lua_State *L) {
  host_new_type(L, FS_FILE_MT, file_methods, file_meta, 0);
  host_handle_register(L, &FILE_TYPE);
}
