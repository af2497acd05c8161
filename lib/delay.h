/* A delayed queue with one thread: items added with a due time are handed
 * to a callback on that thread once due, earliest first (ties in the
 * order added).  The worker's retries wait here, so no inference thread
 * sleeps through a backoff (docs/design.md, "Retries").
 *
 * Threads: add, pending and stop from any thread; the due callback runs on
 * the queue's own thread (all signals blocked), with no lock held.  Memory:
 * one heap slot per waiting item; the caller bounds how many it adds.
 * Private to lib/.
 */
#ifndef KINFER_DELAY_H
#define KINFER_DELAY_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"

struct kinfer_delay;

typedef void kinfer_delay_fn(void *item, void *arg);

/* Start the thread; due(item, arg) runs for each item once due.
 * KINFER_ERR_NOMEM when the thread cannot start. */
enum kinfer_err kinfer_delay_new(kinfer_delay_fn *due, void *arg,
                                 struct kinfer_delay **out)
    __attribute__((warn_unused_result));

/* Hand item to due() at due_ms (kinfer_now_ms's monotonic clock) or soon
 * after.  KINFER_ERR_CLOSED after kinfer_delay_stop: item was not added
 * and stays the caller's. */
enum kinfer_err kinfer_delay_add(struct kinfer_delay *d, int64_t due_ms,
                                 void *item)
    __attribute__((warn_unused_result));

/* Items waiting. */
size_t kinfer_delay_pending(struct kinfer_delay *d);

/* Refuse further adds, let a due() in progress return, join the thread and
 * call drop(item, arg) for every item still waiting (on the calling
 * thread).  Returns their number.  Idempotent (later calls return 0). */
size_t kinfer_delay_stop(struct kinfer_delay *d, kinfer_delay_fn *drop,
                         void *arg);

/* Stop (items still waiting are forgotten) and free.  NULL is a no-op. */
void kinfer_delay_free(struct kinfer_delay *d);

#endif
