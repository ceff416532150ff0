/* The command-line tools of the lasync binary, kept out of main.c (which
 * is lua.c's):
 *
 *   lasync ps PID       the tasks of an inspectable lasync process
 *   lasync pstree PID   their await tree
 *
 * Only these exact shapes are tools (a word and a number): `lasync ps`
 * alone, or with a script's arguments, still runs a script named ps. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "host.h"

static int is_pid(const char *s) {
  if (!*s || strlen(s) > 9) return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

/* Sends cmd to process pid's inspector and copies the answer to stdout. */
static int inspect(const char *prog, const char *cmd, const char *pid) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  int rc = host_inspect_path(strtol(pid, NULL, 10), sa.sun_path,
                             sizeof sa.sun_path);
  int fd = rc ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    fprintf(stderr, "%s: %s: no inspectable lasync process %s (%s; start "
            "it with LASYNC_INSPECT=1 or lasync -X inspect)\n", prog, cmd,
            pid, rc ? uv_strerror(rc) : strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  char buf[4096];
  ssize_t n = write(fd, cmd, strlen(cmd));
  if (n < 0 || write(fd, "\n", 1) < 0) {
    close(fd);
    return 1;
  }
  int any = 0, failed = 0;
  while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n < 0) continue;
    if (!any && n >= 6 && memcmp(buf, "error:", 6) == 0) failed = 1;
    fwrite(buf, 1, (size_t)n, failed ? stderr : stdout);
    any = 1;
  }
  close(fd);
  fflush(stdout);
  if (!any) {
    fprintf(stderr, "%s: %s: process %s closed the connection\n", prog, cmd,
            pid);
    return 1;
  }
  return failed;
}

int host_tools_main(int argc, char **argv) {
  if (argc != 3) return -1;
  const char *prog = argv[0] && argv[0][0] ? argv[0] : "lasync";
  if ((strcmp(argv[1], "ps") == 0 || strcmp(argv[1], "pstree") == 0) &&
      is_pid(argv[2]))
    return inspect(prog, argv[1], argv[2]);
  return -1;
}
