/* asyncio.fs, shared by its two files: fs.c (the request engine and the
 * module's functions) and fs_file.c (the File object of fs.open).  http's
 * resp:save writes through the same File object (http.lua).
 *
 * Every operation is one fs_req: a malloc'd record holding a uv_fs_t and
 * whatever the operation needs (path copies, a copy of the data to write,
 * the descriptor it opened).  A request runs a short chain of uv_fs_* calls
 * from its callbacks (open -> write -> close -> ...) and then wakes its task;
 * the task's continuation (finish) turns the outcome into Lua values.
 * Callbacks never touch Lua: they only issue the next call, update C state
 * and wake. */
#ifndef LASYNC_FS_H
#define LASYNC_FS_H

#include "../host/buf.h"
#include "../host/handle.h"
#include "io.h"

#define FS_FILE_MT "asyncio.fs.File"
#define FS_READ_CHUNK ((size_t)64 * 1024) /* a read's first buffer */

/* One per Lua state: the list of live requests, so that closing the state
 * detaches the ones still in flight from tasks that are about to vanish. */
typedef struct fs_state {
  lasync_host *h;
  host_link reqs;
} fs_state;

/* The C side of a File: the userdata and each request using it hold a
 * reference, so an orphaned read can still land in ra after the Lua
 * object is gone. */
/* A File follows handle.h's lifetime protocol with its descriptor in the
 * place of a libuv handle: the descriptor's hold goes when its close
 * (a uv_fs request) is done; each request using the file holds it too. */
typedef struct fs_file {
  host_handle hd;      /* lifetime; hd.closing: closed for Lua */
  lasync_host *h;
  fs_state *st;
  uv_file fd;          /* -1 once closed or handed to a close request */
  unsigned char writable, append, stream, busy;
  int64_t pos;         /* the user's position: the file offset of ra.p[roff] */
  host_buf ra;         /* read-ahead: ra.p[roff..ra.len) */
  size_t roff;
  host_link waiters;   /* waitq of tasks waiting for their turn */
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
  lasync_host *h;      /* told of each step that ends (the virtual clock) */
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
  char *buf;           /* a copy of the data to write */
  size_t len, done;    /* its length, what is written (mkdir -p: prefix) */
  host_buf in;         /* read_file's bytes */
  uv_stat_t statbuf;
  char *path, *path2, *tmp;
};

/* The module's functions have (host, state) as upvalues. */
#define FS_STATE(L) ((fs_state *)lua_touserdata(L, lua_upvalueindex(2)))

static inline unsigned fs_buf_len(size_t n) {
  return n > (size_t)1 << 30 ? 1u << 30 : (unsigned)n;
}

/* ---- the engine (fs.c) ------------------------------------------------ */

/* A request for task t on path (copied; may be NULL); raises when out of
 * memory. */
fs_req *fs_req_new(lua_State *L, fs_state *st, host_task *t, const char *path);
/* Frees a request that never started (or whose chain has ended). */
void fs_req_free(fs_req *r);
/* Starts a call: a call that fails to start never runs its callback, so
 * the chain goes on with the error as the result (use as
 * fs_go(r, uv_fs_xxx(r->loop, &r->uv, ..., fs_on_done))). */
void fs_go(fs_req *r, int rc);
void fs_on_done(uv_fs_t *u);
/* Records the first failure (op names the call) and ends the chain. */
void fs_fail(fs_req *r, ssize_t res, const char *op);
/* The common last step: r->op's failure, or the end of the chain. */
void fs_last_done(fs_req *r, ssize_t res);
/* The end of every chain: closes what it opened, then wakes or frees. */
void fs_end_chain(fs_req *r);
/* Writes r->buf[done..len) at r->offset (-1: the current position), then
 * runs r->after. */
void fs_write_more(fs_req *r);
/* Copies the string at idx into r->buf; 0 when out of memory. */
int fs_copy_data(lua_State *L, fs_req *r, int idx);
/* Parks the request's task; finish runs in it when the chain ends. */
int fs_park(lua_State *L, fs_req *r);
int fs_start(lua_State *L, fs_req *r, void (*first)(fs_req *),
             int (*finish)(lua_State *, fs_req *));
/* Drops a finished request from the task's side (closes what it kept). */
void fs_req_drop(fs_req *r);
/* Raises the request's failure (an OSError-tree error) and drops it. */
int fs_raise(lua_State *L, fs_req *r);

/* ---- the File object (fs_file.c) -------------------------------------- */

/* A request on f ends: gives the turn to the next waiter (when the state
 * still lives), closes a file closed meanwhile, drops r's reference. */
void fs_file_release(fs_file *f, int wake);
/* fs.open(path [, mode]) -> File */
int fs_open(lua_State *L);
/* Registers the File type. */
void fs_file_open_type(lua_State *L);

#endif
