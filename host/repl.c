/* lua.c's REPL (5.4), each chunk a main task (see repl.h).
 *
 * What it keeps of lua.c, quirks included (spec/lua_differential_spec.lua
 * compares it with lua5.4 line by line): the prompts, `=expr`, trying
 * `return <line>;` first, continuing a chunk while its error ends in
 * "<eof>", the history entry being the whole chunk, printing results with
 * the global print, errors without the program name.  What it adds: lines
 * come from the loop (host/repl_input.c), so tasks run while the prompt
 * waits; Ctrl-C at the prompt drops the chunk typed so far; a line may
 * hold NUL bytes (lua.c cuts it at the first). */
#include <stdio.h>
#include <string.h>

#include "repl.h"

#define EOFMARK "<eof>"
#define marklen (sizeof(EOFMARK) - 1)
#define REPL_INTERRUPTED (-2) /* loadline: Ctrl-C dropped the chunk */

static void message(const char *msg) {
  fprintf(stderr, "%s\n", msg ? msg : "(null)"); /* as lua.c's printf */
  fflush(stderr);
}

/* [-0, +1] the prompt (pushed as a string, or the nil of an unset
 * _PROMPT and a literal) */
static const char *get_prompt(lua_State *L, int firstline) {
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL)
    return firstline ? "> " : ">> "; /* the nil stays, as in lua.c */
  const char *p = luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  return p;
}

static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= marklen && strcmp(msg + lmsg - marklen, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* lua.c's pushline: HOST_LINE_OK with the line on top ("=x" made
 * "return x"); HOST_LINE_EOF with the prompt left on top, as lua.c leaves
 * it; HOST_LINE_INTERRUPTED with nothing pushed. */
static int pushline(host_lines *in, lua_State *L, int firstline) {
  const char *prmt = get_prompt(L, firstline);
  int r = in ? host_lines_read(in, L, prmt) : HOST_LINE_EOF;
  if (r == HOST_LINE_INTERRUPTED) lua_pop(L, 1);
  if (r != HOST_LINE_OK) return r;
  lua_remove(L, -2); /* the prompt */
  size_t l;
  const char *b = lua_tolstring(L, -1, &l);
  if (firstline && l > 0 && b[0] == '=') {
    lua_pushliteral(L, "return ");
    lua_pushlstring(L, b + 1, l - 1);
    lua_concat(L, 2);
    lua_remove(L, -2);
  }
  return HOST_LINE_OK;
}

static int addreturn(host_lines *in, lua_State *L) {
  lua_pushliteral(L, "return ");
  lua_pushvalue(L, -2);
  lua_pushliteral(L, ";");
  lua_concat(L, 3);
  size_t len;
  const char *retline = lua_tolstring(L, -1, &len);
  int status = luaL_loadbuffer(L, retline, len, "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2); /* the modified line */
    host_lines_remember(in, lua_tostring(L, -2));
  } else {
    lua_pop(L, 2);
  }
  return status;
}

static int multiline(host_lines *in, lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    int r = HOST_LINE_EOF;
    if (incomplete(L, status)) {
      r = pushline(in, L, 0);
      if (r == HOST_LINE_INTERRUPTED) return REPL_INTERRUPTED;
    }
    if (r != HOST_LINE_OK) {
      host_lines_remember(in, line);
      return status;
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* The REPL works at the bottom of the main thread's stack: nothing else is
 * kept there while it runs.  Returns -1 at the end of the input. */
static int loadline(host_lines *in, lua_State *L) {
  lua_settop(L, 0);
  int r = pushline(in, L, 1);
  if (r == HOST_LINE_EOF) return -1;
  if (r == HOST_LINE_INTERRUPTED) return REPL_INTERRUPTED;
  int status;
  if ((status = addreturn(in, L)) != LUA_OK) status = multiline(in, L);
  if (status == REPL_INTERRUPTED) return status;
  lua_remove(L, 1);
  return status;
}

static void l_print(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      message(lua_pushfstring(L, "error calling 'print' (%s)",
                              lua_tostring(L, -1)));
  }
}

void host_repl_run(lasync_host *h, host_lines *in, host_repl_call call,
                   void *ud) {
  lua_State *L = h->L;
  int status;
  while ((status = loadline(in, L)) != -1) {
    if (status == REPL_INTERRUPTED) continue;
    if (status == LUA_OK && (status = call(ud, 0, LUA_MULTRET)) ==
                                HOST_REPL_EXIT)
      return;
    if (status == LUA_OK) {
      l_print(L);
    } else {
      message(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
}
