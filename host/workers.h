/* The `--workers` supervisor of the lasync binary (workers.c). */
#ifndef LASYNC_WORKERS_H
#define LASYNC_WORKERS_H

/* Runs `lasync --workers N|auto script [args]` (argv[1] starts with
 * "--workers"); returns the exit status. */
int host_workers_main(int argc, char **argv);
/* In a worker (started by the supervisor): asks for SIGTERM when the
 * supervisor dies.  Does nothing in other processes. */
void host_workers_child(void);

#endif
