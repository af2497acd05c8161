/* Dynamic micro-batching without a scheduler thread: the submitting threads
 * take turns as the collector (see batcher.h).
 *
 * Locking: one mutex guards every field below `mu`; the run callback is
 * always called without it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/batcher.h"
#include "util.h"

/* The collector re-asks more_cb this often while it waits, because the
 * state more_cb looks at changes without signalling the batcher. */
#define RECHECK_US 200

struct slot {
    void *item;
    int64_t arrived_us;
};

struct kinfer_batcher {
    struct kinfer_batcher_config cfg;
    kinfer_batch_run_cb run;
    void *run_arg;
    kinfer_batch_more_cb more;
    void *more_arg;

    pthread_mutex_t mu;
    pthread_cond_t cv;    /* a submit arrived: the collector re-checks */
    struct slot *ring;    /* pending items, FIFO */
    size_t cap, head, count;
    int collecting;       /* a thread is gathering the next batch */
    size_t batches, items;
};

enum kinfer_err kinfer_batcher_new(const struct kinfer_batcher_config *cfg,
                                   kinfer_batch_run_cb run, void *run_arg,
                                   kinfer_batch_more_cb more, void *more_arg,
                                   struct kinfer_batcher **out)
{
    if (cfg->max_batch < 1 || cfg->max_delay_us < 0 || run == NULL ||
        cfg->preferred > cfg->max_batch)
        return KINFER_ERR_INVALID;
    struct kinfer_batcher *b = kinfer_xcalloc(1, sizeof *b);
    b->cfg = *cfg;
    if (b->cfg.preferred == 0)
        b->cfg.preferred = b->cfg.max_batch;
    b->run = run;
    b->run_arg = run_arg;
    b->more = more;
    b->more_arg = more_arg;
    b->cap = 64;
    b->ring = kinfer_xcalloc(b->cap, sizeof *b->ring);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return KINFER_OK;
}

void kinfer_batcher_free(struct kinfer_batcher *b)
{
    if (b == NULL)
        return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->ring);
    free(b);
}

/* Lock held. */
static void push(struct kinfer_batcher *b, void *item)
{
    if (b->count == b->cap) {
        /* Unroll into a buffer twice the size.  The ring is bounded by the
         * worker's in-flight limit, not by the backlog. */
        struct slot *r = kinfer_xcalloc(b->cap * 2, sizeof *r);
        for (size_t i = 0; i < b->count; i++)
            r[i] = b->ring[(b->head + i) % b->cap];
        free(b->ring);
        b->ring = r;
        b->head = 0;
        b->cap *= 2;
    }
    struct slot *sl = &b->ring[(b->head + b->count) % b->cap];
    sl->item = item;
    sl->arrived_us = kinfer_now_us();
    b->count++;
}

/* Lock held.  Takes up to max_batch items into out, oldest first. */
static size_t take(struct kinfer_batcher *b, void **out)
{
    size_t n = b->count < b->cfg.max_batch ? b->count : b->cfg.max_batch;
    for (size_t i = 0; i < n; i++) {
        out[i] = b->ring[b->head].item;
        b->head = (b->head + 1) % b->cap;
    }
    b->count -= n;
    return n;
}

/* Lock held.  Wait until a batch is worth running. */
static void wait_for_batch(struct kinfer_batcher *b)
{
    while (b->count < b->cfg.preferred) {
        int64_t now = kinfer_now_us();
        int64_t deadline =
            b->ring[b->head].arrived_us + b->cfg.max_delay_us;
        if (now >= deadline)
            return;
        if (b->more == NULL || !b->more(b->more_arg))
            return;
        int64_t until = deadline < now + RECHECK_US ? deadline
                                                    : now + RECHECK_US;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (until - now) * 1000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
}

void kinfer_batcher_submit(struct kinfer_batcher *b, void *item)
{
    void **batch = kinfer_xmalloc(b->cfg.max_batch * sizeof *batch);
    pthread_mutex_lock(&b->mu);
    push(b, item);
    for (;;) {
        if (b->collecting) {
            /* The collector takes it; let it re-check the batch size. */
            pthread_cond_signal(&b->cv);
            break;
        }
        if (b->count == 0)
            break;
        b->collecting = 1;
        wait_for_batch(b);
        size_t n = take(b, batch);
        b->batches++;
        b->items += n;
        /* Hand the role on before running, so the next batch can gather
         * (and run on another thread) while this one runs. */
        b->collecting = 0;
        pthread_mutex_unlock(&b->mu);
        b->run(batch, n, b->run_arg);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    free(batch);
}

void kinfer_batcher_counts(struct kinfer_batcher *b, size_t *batches,
                           size_t *items)
{
    pthread_mutex_lock(&b->mu);
    *batches = b->batches;
    *items = b->items;
    pthread_mutex_unlock(&b->mu);
}
