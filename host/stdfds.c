/* The standard descriptors a program was started without.
 *
 * `lasync <&-` (or >&-, 2>&-): libuv's loop would get fd 0, 1 or 2 for its
 * epoll or wake-up descriptors, C stdio would then read or write those,
 * and libuv aborts when it closes one ("uv__close: Assertion `fd >
 * STDERR_FILENO'").  So before the loop exists each closed one is held by
 * a descriptor that behaves as a closed one: O_PATH makes read and write
 * fail with EBADF, as lua5.4 reports them ("Bad file descriptor"), and
 * isatty says no.  Close-on-exec: children see them closed too. */
#define _GNU_SOURCE /* O_PATH */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "host.h"

#ifndef O_PATH /* not Linux: /dev/null, at least no abort */
#define O_PATH 0
#endif

void host_hold_std_fds(void) {
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int flags = O_PATH ? O_PATH : fd == STDIN_FILENO ? O_RDONLY : O_WRONLY;
    int got = open("/dev/null", flags | O_CLOEXEC);
    if (got > STDERR_FILENO) close(got); /* cannot happen: lowest first */
  }
}
