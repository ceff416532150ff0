/* The lasync binary's interactive prompt (lua.c's REPL, on the loop).
 *
 * Only the binary links these two files (and readline): liblasync and
 * asyncio.so never prompt.
 *
 * host/repl.c is lua.c's read-eval-print cycle: prompts from _PROMPT and
 * _PROMPT2, `=expr` and `return <line>` first, incomplete chunks (the
 * "<eof>" message) continued, results printed with the global print.  Each
 * chunk runs as a main task through the binary's `call` (lua.c's docall).
 *
 * host/repl_input.c reads the lines without ever blocking the loop: with
 * readline's callback interface on a uv_poll of a terminal, otherwise with
 * reads of fd 0 on libuv's thread pool.  While the prompt waits, the loop
 * turns, so tasks started by earlier lines keep running; what they print
 * appears above the prompt, which is drawn again below it. */
#ifndef LASYNC_REPL_H
#define LASYNC_REPL_H

#include "host.h"

/* ---- the line reader (host/repl_input.c) --------------------------------- */

typedef struct host_lines host_lines;

/* What host_lines_read gives. */
enum { HOST_LINE_EOF = 0, HOST_LINE_OK = 1, HOST_LINE_INTERRUPTED = -1 };

/* Starts reading stdin on the host's loop: readline when it is compiled in
 * and stdin is a terminal.  NULL when out of memory. */
host_lines *host_lines_open(lasync_host *h);
/* Shows `prompt`, turns the loop until a line was typed and pushes it
 * (without its newline; it may hold NUL bytes).  Returns HOST_LINE_OK,
 * HOST_LINE_EOF (Ctrl-D, end of input; nothing pushed) or
 * HOST_LINE_INTERRUPTED (Ctrl-C at the prompt; nothing pushed).
 * [-0, +(0|1), m] */
int host_lines_read(host_lines *in, lua_State *L, const char *prompt);
/* Adds a finished chunk to the history (up-arrow). */
void host_lines_remember(host_lines *in, const char *chunk);
/* Is the prompt waiting for input?  (Read by the SIGINT handler.) */
int host_lines_waiting(const host_lines *in);
/* Ctrl-C at the prompt: drop the line typed so far. */
void host_lines_interrupt(host_lines *in);
/* Something is about to write to stdout or stderr: the prompt (and the
 * line being typed) leaves the screen, to come back below the output
 * before the loop waits again.  `bol`: the output will end a line. */
void host_lines_output(int bol);
/* Stops reading and gives the terminal back.  NULL is fine. */
void host_lines_close(host_lines *in);

/* ---- the REPL (host/repl.c) --------------------------------------------- */

/* Runs the function (and its narg arguments) on top of the host's main
 * thread as a main task until it ends: leaves nres results (LUA_MULTRET:
 * all) and returns LUA_OK, or leaves the message of its failure and
 * returns an error status; returns HOST_REPL_EXIT when os.exit asked the
 * program to end (the stack is then left as it is). */
typedef int (*host_repl_call)(void *ud, int narg, int nres);
#define HOST_REPL_EXIT (-1)

/* lua.c's doREPL: reads, runs and prints until end of input or os.exit.
 * in may be NULL (out of memory: then nothing is read). */
void host_repl_run(lasync_host *h, host_lines *in, host_repl_call call,
                   void *ud);

#endif
