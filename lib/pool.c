/* The inference thread pool: a bounded ring of job pointers and a fixed set
 * of threads that run the job callback.  The poll thread submits; when the
 * ring is full it blocks, which is how back-pressure reaches the consumer.
 *
 * Locking: one mutex, p->lock, guards the ring, the closed flag and both
 * condition variables.  It is a leaf lock: nothing else is taken while it is
 * held, and the job callback always runs with it released, so a job may
 * take any lock (or even submit to this pool) without ordering concerns.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "kinfer/log.h"
#include "kinfer/pool.h"
#include "shared/thread.h"
#include "shared/util.h"

struct kinfer_pool {
    pthread_mutex_t lock;
    /* Signalled when a job is queued or the pool closes; threads wait. */
    pthread_cond_t not_empty; /* with lock */
    /* Signalled when a slot frees or the pool closes; submitters wait. */
    pthread_cond_t not_full; /* with lock */

    void **ring;  /* [capacity] slots; guarded by lock */
    size_t head;  /* index of the oldest job; guarded by lock */
    size_t count; /* jobs queued, not yet started; guarded by lock */
    bool closed;  /* no more submits; guarded by lock */

    /* Set in kinfer_pool_new, read-only afterwards: no lock needed. */
    size_t capacity;
    kinfer_pool_job_cb cb;
    void *arg;
    pthread_t *threads;
    size_t nthreads; /* threads actually started */
};

static void *pool_thread(void *opaque)
{
    struct kinfer_pool *p = opaque;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->count == 0 && !p->closed)
            pthread_cond_wait(&p->not_empty, &p->lock);
        /* Closed but jobs remain: keep draining, close promises they run. */
        if (p->count == 0)
            break;
        void *job = p->ring[p->head];
        p->head = (p->head + 1) % p->capacity;
        p->count--;
        /* One slot freed wakes one submitter; more would only re-sleep. */
        pthread_cond_signal(&p->not_full);
        pthread_mutex_unlock(&p->lock);

        p->cb(job, p->arg);

        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Undo kinfer_pool_new from any point after the sync objects exist:
 * close, join the threads that did start, release everything. */
static void pool_destroy(struct kinfer_pool *p)
{
    kinfer_pool_close(p);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->not_full);
    pthread_cond_destroy(&p->not_empty);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p->ring);
    free(p);
}

enum kinfer_err kinfer_pool_new(size_t nthreads, size_t capacity,
                                kinfer_pool_job_cb cb, void *arg,
                                struct kinfer_pool **out)
{
    if (nthreads == 0 || capacity == 0 || cb == NULL || out == NULL)
        return KINFER_ERR_INVALID;

    struct kinfer_pool *p = kinfer_xcalloc(1, sizeof(*p));
    /* Both sizes come from configuration, so failure is reported, not
     * fatal (see the out-of-memory policy in shared/util.h). */
    p->ring = calloc(capacity, sizeof(*p->ring));
    p->threads = calloc(nthreads, sizeof(*p->threads));
    if (p->ring == NULL || p->threads == NULL) {
        free(p->ring);
        free(p->threads);
        free(p);
        return KINFER_ERR_NOMEM;
    }
    p->capacity = capacity;
    p->cb = cb;
    p->arg = arg;

    /* Timed waits are not used here, but a monotonic clock keeps every
     * condvar of the library on the same clock as kinfer_deadline. */
    pthread_mutex_init(&p->lock, NULL);
    kinfer_cond_init_monotonic(&p->not_empty);
    kinfer_cond_init_monotonic(&p->not_full);

    /* Signals stay with the main thread (see kinfer_thread_start). */
    int rc = 0;
    for (size_t i = 0; i < nthreads; i++) {
        rc = kinfer_thread_start(&p->threads[i], pool_thread, p);
        if (rc != 0)
            break;
        p->nthreads++;
    }

    if (rc != 0) {
        KINFER_ERROR("pool: cannot start thread %zu of %zu (error %d)",
                     p->nthreads + 1, nthreads, rc);
        pool_destroy(p);
        return KINFER_ERR_NOMEM;
    }
    *out = p;
    return KINFER_OK;
}

/* Queue job; the caller holds p->lock and has checked there is room. */
static void pool_push(struct kinfer_pool *p, void *job)
{
    p->ring[(p->head + p->count) % p->capacity] = job;
    p->count++;
    pthread_cond_signal(&p->not_empty);
}

enum kinfer_err kinfer_pool_submit(struct kinfer_pool *p, void *job)
{
    enum kinfer_err err = KINFER_OK;

    pthread_mutex_lock(&p->lock);
    while (p->count == p->capacity && !p->closed)
        pthread_cond_wait(&p->not_full, &p->lock);
    if (p->closed)
        err = KINFER_ERR_CLOSED;
    else
        pool_push(p, job);
    pthread_mutex_unlock(&p->lock);
    return err;
}

enum kinfer_err kinfer_pool_try_submit(struct kinfer_pool *p, void *job)
{
    enum kinfer_err err = KINFER_OK;

    pthread_mutex_lock(&p->lock);
    if (p->closed)
        err = KINFER_ERR_CLOSED;
    else if (p->count == p->capacity)
        err = KINFER_ERR_TIMEOUT;
    else
        pool_push(p, job);
    pthread_mutex_unlock(&p->lock);
    return err;
}

size_t kinfer_pool_queued(struct kinfer_pool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->count;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void kinfer_pool_close(struct kinfer_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    pthread_cond_broadcast(&p->not_empty);
    pthread_cond_broadcast(&p->not_full);
    pthread_mutex_unlock(&p->lock);
}

/* Must not run on a pool thread: it would wait to join itself. */
void kinfer_pool_free(struct kinfer_pool *p)
{
    if (p == NULL)
        return;
    pool_destroy(p);
}
