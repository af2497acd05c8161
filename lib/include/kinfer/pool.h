/* A fixed pool of threads fed by a bounded FIFO queue of jobs.  The
 * submitter blocks while the queue is full; closing the pool lets the
 * threads finish every queued job and exit.  Jobs run outside the pool's
 * lock.  Worker threads block all signals (signals go to the main thread).
 *
 * Threads: submit/close from any thread; free from one thread, after which
 * no other call may follow.
 */
#ifndef KINFER_POOL_H
#define KINFER_POOL_H

#include <stddef.h>

#include "kinfer/error.h"

struct kinfer_pool;

/* Runs on a pool thread for every job; arg as given to kinfer_pool_new. */
typedef void (*kinfer_pool_job_cb)(void *job, void *arg);

/* Start nthreads (>= 1) threads and a queue of capacity (>= 1) slots. */
enum kinfer_err kinfer_pool_new(size_t nthreads, size_t capacity,
                                kinfer_pool_job_cb cb, void *arg,
                                struct kinfer_pool **out)
    __attribute__((warn_unused_result));

/* Queue job (borrowed until cb runs).  Blocks while the queue is full.
 * KINFER_ERR_CLOSED after kinfer_pool_close (job not queued). */
enum kinfer_err kinfer_pool_submit(struct kinfer_pool *p, void *job)
    __attribute__((warn_unused_result));

/* Like submit, but returns KINFER_ERR_TIMEOUT instead of blocking when
 * the queue is full. */
enum kinfer_err kinfer_pool_try_submit(struct kinfer_pool *p, void *job)
    __attribute__((warn_unused_result));

/* Jobs queued and not yet started. */
size_t kinfer_pool_queued(struct kinfer_pool *p);

/* Refuse further submits and wake every waiter.  Queued jobs still run.
 * Idempotent. */
void kinfer_pool_close(struct kinfer_pool *p);

/* Close, wait for the threads to finish every queued job, free.  NULL is a
 * no-op. */
void kinfer_pool_free(struct kinfer_pool *p);

#endif
