/* Inspecting a running process from outside (`lasync ps PID`, `lasync
 * pstree PID`): a process that opted in (LASYNC_INSPECT=1, lasync -X
 * inspect) listens on a Unix socket only its user can open, in
 * $XDG_RUNTIME_DIR or /tmp/lasync-$UID (0700), named lasync-PID.sock
 * (0600; peers of another uid are refused by SO_PEERCRED as well).
 *
 * A thread of its own accepts the connections, so that it answers while
 * the loop is blocked.  It asks the loop's thread for the answer (a
 * uv_async: the table is built with Lua, on the thread that owns the
 * state); if the loop does not answer within 0.3 s, a step is blocking it,
 * and the thread answers which task it is and where it is stuck instead
 * (host_debug_blocked: a hook takes the traceback in the blocked step). */
#define _GNU_SOURCE /* struct ucred */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "host.h"

struct host_inspect {
  lasync_host *h;
  pthread_t thread;
  int started;
  int fd;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  uv_async_t async;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  char cmd[16];
  int asked;     /* a question waits for the loop */
  char *answer;  /* the loop's answer (malloc'd), or NULL */
};

int host_inspect_path(long pid, char *buf, size_t size) {
  const char *dir = getenv("XDG_RUNTIME_DIR");
  char own[64];
  if (!dir || !*dir) {
    struct stat st;
    snprintf(own, sizeof own, "/tmp/lasync-%u", (unsigned)getuid());
    if (mkdir(own, 0700) != 0 && errno != EEXIST) return -errno;
    if (lstat(own, &st) != 0) return -errno;
    /* someone else's directory, or one others can enter: not ours */
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
        (st.st_mode & 077))
      return UV_EACCES;
    dir = own;
  }
  int n = snprintf(buf, size, "%s/lasync-%ld.sock", dir, pid);
  return n < 0 || (size_t)n >= size ? UV_ENAMETOOLONG : 0;
}

/* ---- on the loop's thread ------------------------------------------------ */

static int answer_in_lua(lua_State *L) {
  lasync_host *h = lua_touserdata(L, 1);
  h->inspect_answer(h, L, lua_tostring(L, 2));
  return 1;
}

static void on_ask(uv_async_t *a) {
  host_inspect *in = a->data;
  lasync_host *h = in->h;
  char cmd[sizeof in->cmd];
  pthread_mutex_lock(&in->mu);
  int asked = in->asked;
  memcpy(cmd, in->cmd, sizeof cmd);
  pthread_mutex_unlock(&in->mu);
  if (!asked || !h->inspect_answer || h->state_closing) return;
  lua_State *L = h->cbL;
  int top = lua_gettop(L);
  lua_pushcfunction(L, answer_in_lua);
  lua_pushlightuserdata(L, h);
  lua_pushstring(L, cmd);
  const char *text = lua_pcall(L, 2, 1, 0) == LUA_OK && lua_isstring(L, -1)
                         ? lua_tostring(L, -1)
                         : lua_pushfstring(L, "error: the answer could not be built: %s\n", lua_tostring(L, -1));
  char *copy = strdup(text);
  lua_settop(L, top);
  pthread_mutex_lock(&in->mu);
  if (in->asked) {
    free(in->answer);
    in->answer = copy;
    copy = NULL;
    pthread_cond_broadcast(&in->cond);
  }
  pthread_mutex_unlock(&in->mu);
  free(copy);
}

/* ---- on the inspector's thread --------------------------------------------- */

static void write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

/* Asks the loop; NULL when it did not answer within `wait` seconds. */
static char *ask_loop(host_inspect *in, const char *cmd, double wait) {
  struct timespec ts;
  pthread_mutex_lock(&in->mu);
  snprintf(in->cmd, sizeof in->cmd, "%s", cmd);
  free(in->answer);
  in->answer = NULL;
  in->asked = 1;
  pthread_mutex_unlock(&in->mu);
  uv_async_send(&in->async);
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)(wait * 1e9);
  ts.tv_sec += (time_t)(ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  pthread_mutex_lock(&in->mu);
  while (!in->answer &&
         pthread_cond_timedwait(&in->cond, &in->mu, &ts) == 0) {
  }
  char *answer = in->answer;
  in->answer = NULL;
  in->asked = 0;
  pthread_mutex_unlock(&in->mu);
  return answer;
}

static void serve(host_inspect *in, int fd) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != getuid() && cred.uid != 0))
    return;
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char cmd[32];
  ssize_t n = read(fd, cmd, sizeof cmd - 1);
  if (n <= 0) return;
  cmd[n] = '\0';
  cmd[strcspn(cmd, "\r\n")] = '\0';
  if (strcmp(cmd, "ps") != 0 && strcmp(cmd, "pstree") != 0) {
    static const char bad[] = "error: unknown command (ps or pstree)\n";
    write_all(fd, bad, sizeof bad - 1);
    return;
  }
  char *answer = ask_loop(in, cmd, 0.3);
  if (answer) {
    write_all(fd, answer, strlen(answer));
    free(answer);
    return;
  }
  char *buf = malloc(8192);
  if (!buf) return;
  if (host_debug_blocked(in->h, buf, 8192 - 1, 0.5)) {
    strcat(buf, "\n");
    write_all(fd, buf, strlen(buf));
  } else if ((answer = ask_loop(in, cmd, 2.0))) { /* it moved on */
    write_all(fd, answer, strlen(answer));
    free(answer);
  } else {
    static const char none[] = "error: the loop does not answer\n";
    write_all(fd, none, sizeof none - 1);
  }
  free(buf);
}

static void *accept_loop(void *arg) {
  host_inspect *in = arg;
  for (;;) {
    int fd = accept(in->fd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return NULL; /* the socket was shut down: stopping */
    }
    serve(in, fd);
    close(fd);
  }
}

/* ---- starting and stopping ------------------------------------------------- */

static int listen_on(host_inspect *in) {
  struct sockaddr_un sa;
  int rc = host_inspect_path((long)getpid(), in->path, sizeof in->path);
  if (rc) return rc;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, in->path, strlen(in->path) + 1);
  in->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (in->fd < 0) return -errno;
  unlink(in->path); /* a stale socket of a process with our pid */
  if (bind(in->fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      chmod(in->path, 0600) != 0 || listen(in->fd, 8) != 0) {
    rc = -errno;
    close(in->fd);
    unlink(in->path);
    return rc;
  }
  return 0;
}

int host_inspect_start(lasync_host *h) {
  if (h->inspect) return 0;
  host_inspect *in = calloc(1, sizeof *in);
  if (!in) return UV_ENOMEM;
  in->h = h;
  int rc = listen_on(in);
  if (rc) {
    free(in);
    return rc;
  }
  pthread_mutex_init(&in->mu, NULL);
  pthread_cond_init(&in->cond, NULL);
  uv_async_init(h->loop, &in->async, on_ask);
  in->async.data = in;
  uv_unref((uv_handle_t *)&in->async);
  h->open_handles++;
  if (host_debug_inspect(h, 1) ||
      pthread_create(&in->thread, NULL, accept_loop, in)) {
    in->started = 0;
    h->inspect = in;
    host_inspect_stop(h);
    return UV_EAGAIN;
  }
  in->started = 1;
  h->inspect = in;
  return 0;
}

static void async_closed(uv_handle_t *handle) {
  host_inspect *in = handle->data;
  uv_handle_t owner; /* host_handle_closed reads only .data: the host */
  owner.data = in->h;
  pthread_mutex_destroy(&in->mu);
  pthread_cond_destroy(&in->cond);
  free(in->answer);
  free(in);
  host_handle_closed(&owner);
}

void host_inspect_stop(lasync_host *h) {
  host_inspect *in = h->inspect;
  if (!in) return;
  h->inspect = NULL;
  shutdown(in->fd, SHUT_RDWR);
  if (in->started) pthread_join(in->thread, NULL);
  close(in->fd);
  unlink(in->path);
  host_debug_inspect(h, 0);
  uv_close((uv_handle_t *)&in->async, async_closed);
}
