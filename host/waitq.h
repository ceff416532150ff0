/* The FIFO of parked tasks every waiting primitive uses (queues, locks,
 * events, semaphores, ...).
 *
 * A task waits for one thing at a time, so one link in the task record
 * (qlink, its own: not shared with sleep's timer or await's listener) is
 * enough and a wait costs no allocation.  The cancel hook of such a wait
 * unlinks it again; waitq_remove is idempotent. */
#ifndef LASYNC_WAITQ_H
#define LASYNC_WAITQ_H

#include "host.h"

static inline void waitq_push(host_link *q, host_task *t) {
  host_list_push(q, &t->qlink);
}

static inline void waitq_remove(host_task *t) { host_list_remove(&t->qlink); }

/* Is t on a waitq? */
static inline int waitq_linked(const host_task *t) {
  return host_list_linked(&t->qlink);
}

/* Unlinks and returns the first waiter, or NULL. */
static inline host_task *waitq_pop(host_link *q) {
  host_link *l = host_list_first(q);
  if (!l) return NULL;
  host_list_remove(l);
  return host_container_of(l, host_task, qlink);
}

#endif
