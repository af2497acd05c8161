/* Starting threads and making condition variables the way every kinfer
 * thread needs them (see shared/README.md).  Used by the pool, the
 * batcher, the worker's delivery thread and kinfer-produce's result
 * thread. */
#ifndef KINFER_SHARED_THREAD_H
#define KINFER_SHARED_THREAD_H

#include <pthread.h>

/* pthread_create(t, NULL, fn, arg) with every signal blocked in the new
 * thread, so SIGTERM and SIGINT always reach the main thread's handler (a
 * thread inherits its creator's mask; the caller's mask is restored before
 * this returns).  Returns 0, or pthread_create's error number and *t is
 * untouched.  Any thread; the caller joins t. */
int kinfer_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
    __attribute__((warn_unused_result));

/* pthread_cond_init on CLOCK_MONOTONIC, the clock of kinfer_deadline, so
 * timed waits do not jump with the wall clock.  Caller destroys cv with
 * pthread_cond_destroy. */
void kinfer_cond_init_monotonic(pthread_cond_t *cv);

#endif
