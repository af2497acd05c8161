/* Dynamic micro-batching for one model, in the manner of Triton's dynamic
 * batcher: requests submitted from the inference threads within
 * max_delay_us of each other run as one backend call of at most max_batch
 * requests.
 *
 * There is no scheduler thread: the first thread to submit into an empty
 * batcher becomes the collector; it waits until preferred requests are
 * pending, the oldest has waited max_delay_us, or the more_cb says nothing
 * else is coming (so a lone request on an idle worker is not held back),
 * then takes the batch and runs it on its own thread.  Others submit and
 * return at once.  Several batches of one model can run at the same time
 * on different threads.
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
    size_t max_batch;       /* >= 1 */
    size_t preferred;       /* 1..max_batch; 0 means max_batch */
    long max_delay_us;      /* >= 0 */
};

enum kinfer_err kinfer_batcher_new(const struct kinfer_batcher_config *cfg,
                                   kinfer_batch_run_cb run, void *run_arg,
                                   kinfer_batch_more_cb more, void *more_arg,
                                   struct kinfer_batcher **out)
    __attribute__((warn_unused_result));

/* Hand item to the batcher.  When this returns, item has run or is pending
 * under a collector that will run it; the calling thread may have run
 * batches (its own item among them, and others') before returning. */
void kinfer_batcher_submit(struct kinfer_batcher *b, void *item);

/* Batches run and items run so far (for tests and stats). */
void kinfer_batcher_counts(struct kinfer_batcher *b, size_t *batches,
                           size_t *items);

/* NULL is a no-op.  Nothing may be pending. */
void kinfer_batcher_free(struct kinfer_batcher *b);

#endif
