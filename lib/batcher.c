/* Dynamic micro-batching (see batcher.h): submitters run a batch as soon
 * as it is worth running; a timer thread runs what the delay bound says
 * may wait no longer.  No pool thread ever sits waiting for a batch to
 * fill, so every inference thread keeps decoding while requests gather.
 *
 * Locking: one mutex guards every field below `mu`; the run callback is
 * always called without it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/batcher.h"
#include "shared/thread.h"
#include "shared/util.h"

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
    pthread_t timer;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* the oldest pending item changed, or closing */
    struct slot *ring; /* pending items, FIFO */
    size_t cap, head, count;
    int closing; /* free was called: the timer exits */
    size_t batches, items;
};

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

/* Lock held.  Takes up to max_batch items into out, oldest first, and
 * counts the batch. */
static size_t take(struct kinfer_batcher *b, void **out)
{
    size_t n = b->count < b->cfg.max_batch ? b->count : b->cfg.max_batch;
    for (size_t i = 0; i < n; i++) {
        out[i] = b->ring[b->head].item;
        b->head = (b->head + 1) % b->cap;
    }
    b->count -= n;
    b->batches++;
    b->items += n;
    return n;
}

/* Lock held.  Runs batches on the calling thread while condition holds;
 * returns with the lock held. */
static void run_while(struct kinfer_batcher *b, void **batch,
                      int (*condition)(struct kinfer_batcher *))
{
    while (b->count > 0 && condition(b)) {
        size_t n = take(b, batch);
        pthread_mutex_unlock(&b->mu);
        b->run(batch, n, b->run_arg);
        pthread_mutex_lock(&b->mu);
    }
}

/* A batch is worth running now when it has its preferred size, or when
 * nothing more is on its way (then waiting only adds latency). */
static int worth_running(struct kinfer_batcher *b)
{
    return b->count >= b->cfg.preferred || b->more == NULL ||
           !b->more(b->more_arg);
}

static int oldest_due(struct kinfer_batcher *b)
{
    return kinfer_now_us() >= b->ring[b->head].arrived_us + b->cfg.max_delay_us;
}

static int always(struct kinfer_batcher *b)
{
    (void)b;
    return 1;
}

/* The delay bound: sleeps until the oldest pending item is due, then runs
 * a batch with it.  On close it runs whatever is left. */
static void *timer_main(void *arg)
{
    struct kinfer_batcher *b = arg;
    void **batch = kinfer_xmalloc(b->cfg.max_batch * sizeof *batch);
    pthread_mutex_lock(&b->mu);
    while (!b->closing) {
        if (b->count == 0) {
            pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        if (oldest_due(b)) {
            size_t n = take(b, batch);
            pthread_mutex_unlock(&b->mu);
            b->run(batch, n, b->run_arg);
            pthread_mutex_lock(&b->mu);
            continue;
        }
        int64_t due = b->ring[b->head].arrived_us + b->cfg.max_delay_us;
        int64_t wait_us = due - kinfer_now_us();
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (wait_us > 0 ? wait_us : 0) * 1000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    run_while(b, batch, always);
    pthread_mutex_unlock(&b->mu);
    free(batch);
    return NULL;
}

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
    kinfer_cond_init_monotonic(&b->cv);
    pthread_mutex_init(&b->mu, NULL);

    /* Like the pool's threads, the timer leaves signals to main. */
    int rc = kinfer_thread_start(&b->timer, timer_main, b);
    if (rc != 0) {
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
        free(b->ring);
        free(b);
        return KINFER_ERR_NOMEM;
    }
    *out = b;
    return KINFER_OK;
}

void kinfer_batcher_free(struct kinfer_batcher *b)
{
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    b->closing = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->timer, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->ring);
    free(b);
}

void kinfer_batcher_submit(struct kinfer_batcher *b, void *item)
{
    void **batch = kinfer_xmalloc(b->cfg.max_batch * sizeof *batch);
    pthread_mutex_lock(&b->mu);
    push(b, item);
    if (b->count == 1)
        pthread_cond_signal(&b->cv); /* a new oldest item: arm the timer */
    run_while(b, batch, worth_running);
    pthread_mutex_unlock(&b->mu);
    free(batch);
}

void kinfer_batcher_flush(struct kinfer_batcher *b)
{
    void **batch = kinfer_xmalloc(b->cfg.max_batch * sizeof *batch);
    pthread_mutex_lock(&b->mu);
    run_while(b, batch, always);
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
