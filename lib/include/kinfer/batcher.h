/* Dynamic micro-batching for one model, in the manner of Triton's dynamic
 * batcher: requests submitted from the inference threads within
 * max_delay_us of each other run as one backend call of at most max_batch
 * requests.
 *
 * Submitting threads run a batch themselves as soon as it is worth
 * running: when preferred requests are pending, or when more_cb says
 * nothing else is on its way (so a lone request on an idle worker is not
 * held back).  Otherwise they return at once and keep decoding; a timer
 * thread of the batcher runs the oldest requests when max_delay_us has
 * passed since the oldest arrived.  Several batches of one model can run
 * at the same time on different threads.
 *
 * Threads: submit from any thread; free when no submit can run.
 */
#ifndef KINFER_BATCHER_H
#define KINFER_BATCHER_H

#include <stddef.h>

#include "kinfer/error.h"

struct kinfer_batcher;

/* Runs a batch items[0..n) on the calling thread.  The array is borrowed
 * for the call; the items were the submitters'. */
typedef void (*kinfer_batch_run_cb)(void **items, size_t n, void *arg);

/* May more requests arrive soon (work queued or being decoded)?  Called
 * with the batcher's lock held: it must not call into the batcher. */
typedef int (*kinfer_batch_more_cb)(void *arg);

struct kinfer_batcher_config {
    size_t max_batch;  /* >= 1 */
    size_t preferred;  /* 1..max_batch; 0 means max_batch */
    long max_delay_us; /* >= 0 */
};

enum kinfer_err kinfer_batcher_new(const struct kinfer_batcher_config *cfg,
                                   kinfer_batch_run_cb run, void *run_arg,
                                   kinfer_batch_more_cb more, void *more_arg,
                                   struct kinfer_batcher **out)
    __attribute__((warn_unused_result));

/* Hand item to the batcher.  When this returns, item has run, or is
 * pending and runs within max_delay_us (on the timer thread, or sooner on
 * the thread of a later submit); the calling thread may have run batches
 * (its own item among them, and others') before returning. */
void kinfer_batcher_submit(struct kinfer_batcher *b, void *item);

/* Run everything pending now, on the calling thread (at shutdown). */
void kinfer_batcher_flush(struct kinfer_batcher *b);

/* Batches run and items run so far (for tests and stats). */
void kinfer_batcher_counts(struct kinfer_batcher *b, size_t *batches,
                           size_t *items);

/* Runs what is still pending (on the timer thread), stops the timer and
 * frees.  No submit may run concurrently.  NULL is a no-op. */
void kinfer_batcher_free(struct kinfer_batcher *b);

#endif
