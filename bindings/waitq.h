/* FIFO queues of parked tasks for the synchronisation primitives.
 *
 * A task parked on a queue, lock, event or semaphore is not awaiting another
 * task, so its await_node link is free: the primitives link the task itself
 * through it, and a wait costs no allocation.  The cancel hook of such a
 * wait unlinks it again (waitq_remove is idempotent). */
#ifndef LASYNC_WAITQ_H
#define LASYNC_WAITQ_H

#include "../host/host.h"

#define HOST(L) ((lasync_host *)lua_touserdata(L, lua_upvalueindex(1)))

static inline void waitq_push(host_link *q, host_task *t) {
  host_list_push(q, &t->await_node.link);
}

static inline void waitq_remove(host_task *t) {
  host_list_remove(&t->await_node.link);
}

/* Unlinks and returns the first waiter, or NULL. */
static inline host_task *waitq_pop(host_link *q) {
  host_link *l = host_list_first(q);
  if (!l) return NULL;
  host_list_remove(l);
  return host_container_of(l, host_task, await_node.link);
}


#endif
