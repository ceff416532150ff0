/* Intrusive circular doubly-linked lists, shared by every waiter queue.
 * A node that is not on a list points at itself, so removing it twice is
 * harmless and "am I linked?" is one comparison. */
#ifndef LASYNC_LIST_H
#define LASYNC_LIST_H

#include <stddef.h>

typedef struct host_link {
  struct host_link *next;
  struct host_link *prev;
} host_link;

#define host_container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void host_list_init(host_link *n) { n->next = n->prev = n; }

static inline int host_list_empty(const host_link *head) {
  return head->next == head;
}

static inline int host_list_linked(const host_link *n) { return n->next != n; }

/* Append at the tail: lists are FIFO. */
static inline void host_list_push(host_link *head, host_link *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}

static inline void host_list_remove(host_link *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

static inline host_link *host_list_first(const host_link *head) {
  return head->next == head ? NULL : head->next;
}

#endif
