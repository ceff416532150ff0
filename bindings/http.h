/* What asyncio.http's C files share: http.c (the client) and http_url.c
 * (URL parsing and joining, by libcurl's URL API). */
#ifndef LASYNC_BINDINGS_HTTP_H
#define LASYNC_BINDINGS_HTTP_H

#include "init.h"

/* Pushes http.Error{kind=, url=, code= (when not 0), message="msg (url)"}. */
void host_http_push_error(lua_State *L, const char *kind, const char *url,
                          int code, const char *msg);
/* Adds url_parse, url_build and url_join to the table on top (core). */
void host_http_url_funcs(lua_State *L);

#endif
