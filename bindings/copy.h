/* Copying Lua values between two states through bytes (to_thread's
 * arguments and results): nil, booleans, integers and floats (kept
 * apart), strings (any bytes), tables of those (nested, without cycles;
 * metatables are not copied) and Lua functions whose only upvalue is _ENV
 * (as bytecode).  Anything else is refused with a message naming where it
 * was found. */
#ifndef LASYNC_COPY_H
#define LASYNC_COPY_H

#include "../host/buf.h"
#include "../host/host.h"

#define COPY_MAX_DEPTH 200

/* Encodes the n values on top of L (not popped) into out, which must be
 * empty.  Returns 0, or -1 with an error message pushed on L, of the form
 * "<what> #<first + i>[ field 'a.b'] is a userdata" (what: "argument",
 * "result"), or about the size limit (total bytes) or memory.  Never
 * raises (it runs itself under protection).  [-0, +(0|1)] */
int copy_encode(lua_State *L, int n, host_buf *out, size_t limit,
                const char *what, int first);

/* Pushes the values encoded in buf; returns their count, or -1 with an
 * error message pushed (out of memory, a chunk that does not load).
 * Never raises.  [-0, +(n|1)] */
int copy_decode(lua_State *L, const char *buf, size_t len);

#endif
