/* Unit tests of lib/batcher.c: the batch size bound, the delay bound, a lone
 * request not held back, the preferred size, two batches running at once,
 * and the counts.  Threads meet at barriers and waits have deadlines; the
 * timing asserts have wide margins for a loaded two-core machine. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/batcher.h"

/* Long enough never to fire on a loaded machine; reaching it fails. */
#define LONG_WAIT_MS 30000

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    int64_t ns = ts->tv_nsec + (int64_t)ms * 1000000;
    ts->tv_sec += ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

/* Items are small integers from 1 (NULL stays distinguishable). */
static void *item_of(size_t i)
{
    return (void *)(uintptr_t)(i + 1);
}

static size_t index_of(const void *item)
{
    return (size_t)(uintptr_t)item - 1;
}

/* --- a counter one can wait on ------------------------------------------ */

struct counter {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int value;
};

static void counter_init(struct counter *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->value = 0;
}

static void counter_destroy(struct counter *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

static void counter_add(struct counter *c, int n)
{
    pthread_mutex_lock(&c->mu);
    c->value += n;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Wait until the value reaches n; false on timeout. */
static bool counter_wait(struct counter *c, int n, int timeout_ms)
{
    struct timespec dl;
    deadline_in(&dl, timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (c->value < n)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            break;
    bool ok = c->value >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static int more_always(void *arg)
{
    (void)arg;
    return 1;
}

static int more_never(void *arg)
{
    (void)arg;
    return 0;
}

/* --- many submitters: size bound, every item once ------------------------ */

#define MANY_ITEMS 100
#define MANY_THREADS 4

/* Threads take items from a shared index, as pool threads take jobs from
 * a queue: while items remain, some thread other than the collector is
 * free to submit them, so more_cb's "more is coming" is true. */
struct many {
    struct kinfer_batcher *b;
    pthread_barrier_t start;
    struct counter done;   /* threads finished */
    atomic_size_t next;    /* next item to submit */
    int owner[MANY_ITEMS]; /* submitting thread, set before submit */
    atomic_int runs[MANY_ITEMS];
    atomic_size_t batches, largest, sum;
    atomic_int out_of_order; /* a thread's items ran out of order */
};

static void many_run(void **items, size_t n, void *arg)
{
    struct many *m = arg;
    size_t last[MANY_THREADS] = {0};
    bool seen[MANY_THREADS] = {false};
    for (size_t k = 0; k < n; k++) {
        size_t i = index_of(items[k]);
        atomic_fetch_add(&m->runs[i], 1);
        /* The batcher is FIFO and a thread submits its items in order. */
        int t = m->owner[i];
        if (seen[t] && last[t] > i)
            atomic_store(&m->out_of_order, 1);
        seen[t] = true;
        last[t] = i;
    }
    atomic_fetch_add(&m->batches, 1);
    atomic_fetch_add(&m->sum, n);
    size_t big = atomic_load(&m->largest);
    while (n > big && !atomic_compare_exchange_weak(&m->largest, &big, n))
        ;
}

static int many_more(void *arg)
{
    struct many *m = arg;
    return atomic_load(&m->next) < MANY_ITEMS;
}

struct many_thread {
    struct many *m;
    int id;
    pthread_t thread;
};

static void *many_main(void *opaque)
{
    struct many_thread *mt = opaque;
    struct many *m = mt->m;
    pthread_barrier_wait(&m->start);
    for (;;) {
        size_t i = atomic_fetch_add(&m->next, 1);
        if (i >= MANY_ITEMS)
            break;
        m->owner[i] = mt->id;
        kinfer_batcher_submit(m->b, item_of(i));
    }
    counter_add(&m->done, 1);
    return NULL;
}

/* Submit MANY_ITEMS from MANY_THREADS into a batcher configured by cfg;
 * the test fails unless every item runs exactly once. */
static struct many *run_many(const struct kinfer_batcher_config *cfg)
{
    static struct many m;
    static struct many_thread th[MANY_THREADS];
    memset(&m, 0, sizeof m);
    atomic_init(&m.next, 0);
    for (size_t i = 0; i < MANY_ITEMS; i++)
        atomic_init(&m.runs[i], 0);
    atomic_init(&m.batches, 0);
    atomic_init(&m.largest, 0);
    atomic_init(&m.sum, 0);
    atomic_init(&m.out_of_order, 0);
    counter_init(&m.done);
    assert_int_equal(pthread_barrier_init(&m.start, NULL, MANY_THREADS + 1), 0);
    assert_int_equal(kinfer_batcher_new(cfg, many_run, &m, many_more, &m, &m.b),
                     KINFER_OK);
    for (int t = 0; t < MANY_THREADS; t++) {
        th[t].m = &m;
        th[t].id = t;
        assert_int_equal(pthread_create(&th[t].thread, NULL, many_main, &th[t]),
                         0);
    }
    pthread_barrier_wait(&m.start);
    if (!counter_wait(&m.done, MANY_THREADS, LONG_WAIT_MS))
        fail_msg("submitters did not finish"); /* threads left running */
    for (int t = 0; t < MANY_THREADS; t++)
        assert_int_equal(pthread_join(th[t].thread, NULL), 0);

    for (size_t i = 0; i < MANY_ITEMS; i++)
        if (atomic_load(&m.runs[i]) != 1)
            fail_msg("item %zu ran %d times", i, atomic_load(&m.runs[i]));
    assert_int_equal(atomic_load(&m.sum), MANY_ITEMS);
    assert_int_equal(atomic_load(&m.out_of_order), 0);
    size_t batches = 0, items = 0;
    kinfer_batcher_counts(m.b, &batches, &items);
    assert_int_equal(batches, atomic_load(&m.batches));
    assert_int_equal(items, MANY_ITEMS);
    kinfer_batcher_free(m.b);
    pthread_barrier_destroy(&m.start);
    counter_destroy(&m.done);
    return &m;
}

static void test_size_bound(void **state)
{
    (void)state;
    /* The delay is long: batches close on size, or at the very end when
     * nothing more is coming. */
    struct kinfer_batcher_config cfg = {
        .max_batch = 8, .preferred = 0, .max_delay_us = 2000000};
    struct many *m = run_many(&cfg);
    size_t batches = atomic_load(&m->batches);
    assert_true(atomic_load(&m->largest) <= 8);
    /* Full batches, but for at most one partial batch per straggler
     * thread at the end. */
    size_t bound = (MANY_ITEMS + 7) / 8 + MANY_THREADS;
    if (batches > bound)
        fail_msg("%zu batches for %d items (at most %zu expected)", batches,
                 MANY_ITEMS, bound);
}

/* All items in one batch: the pending ring grows past its first size. */
static void test_one_big_batch(void **state)
{
    (void)state;
    struct kinfer_batcher_config cfg = {
        .max_batch = MANY_ITEMS, .preferred = 0, .max_delay_us = 10000000};
    int64_t t0 = now_us();
    struct many *m = run_many(&cfg);
    int64_t took = now_us() - t0;
    /* many_more turns false only when the last item is taken, and up to
     * MANY_THREADS - 1 taken items may not be pushed yet. */
    assert_true(atomic_load(&m->batches) <= MANY_THREADS);
    assert_true(atomic_load(&m->largest) >= MANY_ITEMS - MANY_THREADS + 1);
    if (took >= 5000000)
        fail_msg("took %lld us: waited for the delay", (long long)took);
}

/* --- one item: timings ----------------------------------------------- */

struct timed {
    int64_t ran_us;
    size_t n;
    int calls;
    pthread_t ran_on;
    struct counter ran;
};

static void timed_run(void **items, size_t n, void *arg)
{
    struct timed *t = arg;
    (void)items;
    t->ran_us = now_us();
    t->n = n;
    t->calls++;
    t->ran_on = pthread_self();
    counter_add(&t->ran, 1);
}

/* Submit one item on this thread and wait for it to run.  When more says
 * nothing else is coming the submitting thread runs it before returning;
 * otherwise submit returns at once and the batcher's timer runs it.
 * Returns the time from submit to the run. */
static int64_t submit_one(const struct kinfer_batcher_config *cfg,
                          kinfer_batch_more_cb more, struct timed *t)
{
    struct kinfer_batcher *b = NULL;
    memset(t, 0, sizeof *t);
    counter_init(&t->ran);
    assert_int_equal(kinfer_batcher_new(cfg, timed_run, t, more, NULL, &b),
                     KINFER_OK);
    int64_t t0 = now_us();
    kinfer_batcher_submit(b, item_of(0));
    int64_t returned = now_us();
    bool on_submitter = more == NULL || more == more_never;
    if (on_submitter) {
        /* Ran before submit returned, on this thread. */
        assert_int_equal(t->calls, 1);
        assert_true(pthread_equal(t->ran_on, pthread_self()));
        assert_true(t->ran_us <= returned);
    } else {
        if (!counter_wait(&t->ran, 1, LONG_WAIT_MS))
            fail_msg("the pending item never ran");
        assert_false(pthread_equal(t->ran_on, pthread_self()));
        /* submit did not wait for the batch to fill. */
        if (returned - t0 >= 100000)
            fail_msg("submit blocked %lld us", (long long)(returned - t0));
    }
    assert_int_equal(t->calls, 1);
    assert_int_equal(t->n, 1);
    size_t batches = 0, items = 0;
    kinfer_batcher_counts(b, &batches, &items);
    assert_int_equal(batches, 1);
    assert_int_equal(items, 1);
    kinfer_batcher_free(b);
    counter_destroy(&t->ran);
    return t->ran_us - t0;
}

/* Free runs what is still pending instead of dropping it. */
static void test_free_runs_pending(void **state)
{
    (void)state;
    struct kinfer_batcher_config cfg = {
        .max_batch = 8, .preferred = 8, .max_delay_us = 10000000};
    struct timed t;
    struct kinfer_batcher *b = NULL;
    memset(&t, 0, sizeof t);
    counter_init(&t.ran);
    assert_int_equal(
        kinfer_batcher_new(&cfg, timed_run, &t, more_always, NULL, &b),
        KINFER_OK);
    kinfer_batcher_submit(b, item_of(0));
    kinfer_batcher_submit(b, item_of(1));
    assert_int_equal(t.calls, 0);
    int64_t t0 = now_us();
    kinfer_batcher_flush(b);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.n, 2);
    assert_true(pthread_equal(t.ran_on, pthread_self()));
    kinfer_batcher_submit(b, item_of(2));
    kinfer_batcher_free(b);
    assert_int_equal(t.calls, 2);
    assert_int_equal(t.n, 1);
    if (now_us() - t0 >= 3000000)
        fail_msg("flush/free waited for the delay");
    counter_destroy(&t.ran);
}

static void test_delay_bound(void **state)
{
    (void)state;
    struct kinfer_batcher_config cfg = {
        .max_batch = 64, .preferred = 64, .max_delay_us = 20000};
    struct timed t;
    int64_t waited = submit_one(&cfg, more_always, &t);
    if (waited < 15000 || waited >= 500000)
        fail_msg("ran after %lld us, expected about 20000", (long long)waited);
}

static void test_zero_delay(void **state)
{
    (void)state;
    struct kinfer_batcher_config cfg = {
        .max_batch = 64, .preferred = 64, .max_delay_us = 0};
    struct timed t;
    int64_t waited = submit_one(&cfg, more_always, &t);
    if (waited >= 100000)
        fail_msg("ran after %lld us with no delay", (long long)waited);
}

static void test_lone_request_not_held(void **state)
{
    (void)state;
    struct kinfer_batcher_config cfg = {
        .max_batch = 8, .preferred = 8, .max_delay_us = 1000000};
    struct timed t;
    int64_t waited = submit_one(&cfg, more_never, &t);
    if (waited >= 100000)
        fail_msg("held %lld us though nothing more was coming",
                 (long long)waited);
    /* No more_cb at all reads as "nothing more is coming". */
    waited = submit_one(&cfg, NULL, &t);
    if (waited >= 100000)
        fail_msg("held %lld us without a more_cb", (long long)waited);
}

/* --- a few threads submit together ----------------------------------- */

#define GATHER_MAX_THREADS 8

struct gather {
    struct kinfer_batcher *b;
    pthread_barrier_t start;
    struct counter ran;  /* items run */
    struct counter done; /* threads finished */
    pthread_mutex_t mu;
    size_t sizes[GATHER_MAX_THREADS]; /* batch sizes, in run order */
    int64_t first_run_us;
    size_t batches;
};

static void gather_run(void **items, size_t n, void *arg)
{
    struct gather *g = arg;
    (void)items;
    int64_t t = now_us();
    pthread_mutex_lock(&g->mu);
    if (g->batches == 0)
        g->first_run_us = t;
    if (g->batches < GATHER_MAX_THREADS)
        g->sizes[g->batches] = n;
    g->batches++;
    pthread_mutex_unlock(&g->mu);
    counter_add(&g->ran, (int)n);
}

static void *gather_main(void *opaque)
{
    struct gather *g = opaque;
    pthread_barrier_wait(&g->start);
    kinfer_batcher_submit(g->b, item_of(0));
    counter_add(&g->done, 1);
    return NULL;
}

/* nthreads threads submit one item each, released together.  Returns the
 * time from the release to the first run; g holds the batches. */
static int64_t gather(struct gather *g, const struct kinfer_batcher_config *cfg,
                      int nthreads)
{
    pthread_t th[GATHER_MAX_THREADS];
    assert_true(nthreads <= GATHER_MAX_THREADS);
    memset(g, 0, sizeof *g);
    counter_init(&g->ran);
    counter_init(&g->done);
    pthread_mutex_init(&g->mu, NULL);
    assert_int_equal(
        pthread_barrier_init(&g->start, NULL, (unsigned)nthreads + 1), 0);
    assert_int_equal(
        kinfer_batcher_new(cfg, gather_run, g, more_always, NULL, &g->b),
        KINFER_OK);
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gather_main, g), 0);
    /* Before the release, so t0 precedes every arrival. */
    int64_t t0 = now_us();
    pthread_barrier_wait(&g->start);
    if (!counter_wait(&g->done, nthreads, LONG_WAIT_MS))
        fail_msg("submitters did not finish"); /* threads left running */
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    /* Below the preferred size the timer runs them, after the delay. */
    if (!counter_wait(&g->ran, nthreads, LONG_WAIT_MS))
        fail_msg("items never ran");
    kinfer_batcher_free(g->b);
    pthread_barrier_destroy(&g->start);
    pthread_mutex_destroy(&g->mu);
    counter_destroy(&g->done);
    counter_destroy(&g->ran);
    return g->first_run_us - t0;
}

static void test_preferred_size(void **state)
{
    (void)state;
    /* more_cb always says more is coming and the delay is long: only
     * reaching the preferred size can close the batch early. */
    struct kinfer_batcher_config cfg = {
        .max_batch = 16, .preferred = 4, .max_delay_us = 10000000};
    struct gather g;
    int64_t waited = gather(&g, &cfg, 4);
    assert_int_equal(g.batches, 1);
    assert_int_equal(g.sizes[0], 4);
    if (waited >= 3000000)
        fail_msg("4 items ran after %lld us, not at the preferred size",
                 (long long)waited);
}

static void test_preferred_zero_is_max(void **state)
{
    (void)state;
    struct kinfer_batcher_config cfg = {
        .max_batch = 3, .preferred = 0, .max_delay_us = 10000000};
    struct gather g;
    int64_t waited = gather(&g, &cfg, 3);
    assert_int_equal(g.batches, 1);
    assert_int_equal(g.sizes[0], 3);
    if (waited >= 3000000)
        fail_msg("3 items ran after %lld us, not at max_batch",
                 (long long)waited);
}

/* Below the preferred size the batch waits for the delay. */
static void test_below_preferred_waits(void **state)
{
    (void)state;
    struct kinfer_batcher_config cfg = {
        .max_batch = 16, .preferred = 4, .max_delay_us = 200000};
    struct gather g;
    int64_t waited = gather(&g, &cfg, 3);
    if (waited < 200000)
        fail_msg("3 of 4 preferred items ran after only %lld us",
                 (long long)waited);
    size_t total = 0;
    for (size_t i = 0; i < g.batches && i < GATHER_MAX_THREADS; i++)
        total += g.sizes[i];
    assert_int_equal(total, 3);
}

/* --- two batches at once --------------------------------------------- */

struct conc {
    struct kinfer_batcher *b;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool release;      /* the blocked batch may finish */
    int started[2], finished[2], returned[2];
    pthread_t ran_on[2];
    int in_run, max_in_run;
    bool release_timed_out;
};

struct conc_thread {
    struct conc *c;
    size_t item;
    pthread_t thread;
};

/* Item 0 blocks until the test releases it; item 1 runs straight through. */
static void conc_run(void **items, size_t n, void *arg)
{
    struct conc *c = arg;
    for (size_t k = 0; k < n; k++) {
        size_t i = index_of(items[k]);
        pthread_mutex_lock(&c->mu);
        c->started[i]++;
        c->ran_on[i] = pthread_self();
        c->in_run++;
        if (c->in_run > c->max_in_run)
            c->max_in_run = c->in_run;
        pthread_cond_broadcast(&c->cv);
        if (i == 0) {
            struct timespec dl;
            deadline_in(&dl, LONG_WAIT_MS);
            while (!c->release && !c->release_timed_out)
                if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
                    c->release_timed_out = true;
        }
        c->in_run--;
        c->finished[i]++;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

static void *conc_main(void *opaque)
{
    struct conc_thread *ct = opaque;
    struct conc *c = ct->c;
    kinfer_batcher_submit(c->b, item_of(ct->item));
    pthread_mutex_lock(&c->mu);
    c->returned[ct->item]++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Wait until *v >= n under c->mu; false on timeout. */
static bool conc_wait(struct conc *c, const int *v, int n)
{
    struct timespec dl;
    deadline_in(&dl, LONG_WAIT_MS);
    pthread_mutex_lock(&c->mu);
    while (*v < n)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            break;
    bool ok = *v >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void run_concurrent(kinfer_batch_more_cb more, long delay_us)
{
    static struct conc c;
    static struct conc_thread th[2];
    memset(&c, 0, sizeof c);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, &ca);
    pthread_condattr_destroy(&ca);
    /* preferred 1: a batch closes on its first item. */
    struct kinfer_batcher_config cfg = {
        .max_batch = 4, .preferred = 1, .max_delay_us = delay_us};
    assert_int_equal(kinfer_batcher_new(&cfg, conc_run, &c, more, NULL, &c.b),
                     KINFER_OK);

    th[0] = (struct conc_thread){.c = &c, .item = 0};
    assert_int_equal(pthread_create(&th[0].thread, NULL, conc_main, &th[0]), 0);
    if (!conc_wait(&c, &c.started[0], 1))
        fail_msg("batch 1 did not start");

    /* Batch 1 is blocked inside run: another submit still gets its own
     * batch collected and run, on its own thread. */
    th[1] = (struct conc_thread){.c = &c, .item = 1};
    assert_int_equal(pthread_create(&th[1].thread, NULL, conc_main, &th[1]), 0);
    if (!conc_wait(&c, &c.returned[1], 1))
        fail_msg("batch 2 did not run while batch 1 was running");
    pthread_mutex_lock(&c.mu);
    int finished0 = c.finished[0], finished1 = c.finished[1];
    int max_in_run = c.max_in_run;
    bool on_own_threads = pthread_equal(c.ran_on[0], th[0].thread) &&
                          pthread_equal(c.ran_on[1], th[1].thread);
    c.release = true;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);

    if (!conc_wait(&c, &c.returned[0], 1))
        fail_msg("batch 1 did not finish after its release");
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i].thread, NULL), 0);

    assert_int_equal(finished0, 0);
    assert_int_equal(finished1, 1);
    assert_int_equal(max_in_run, 2);
    assert_true(on_own_threads);
    assert_false(c.release_timed_out);
    assert_int_equal(c.started[0], 1);
    assert_int_equal(c.started[1], 1);
    size_t batches = 0, items = 0;
    kinfer_batcher_counts(c.b, &batches, &items);
    assert_int_equal(batches, 2);
    assert_int_equal(items, 2);
    kinfer_batcher_free(c.b);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
}

static void test_two_batches_at_once(void **state)
{
    (void)state;
    run_concurrent(more_never, 1000000);
    /* Same when more work is announced: preferred 1 closes the batch. */
    run_concurrent(more_always, 10000000);
}

/* --- API edges -------------------------------------------------------- */

static void noop_run(void **items, size_t n, void *arg)
{
    (void)items;
    (void)n;
    (void)arg;
}

static void test_new_rejects_bad_config(void **state)
{
    (void)state;
    static char dummy;
    struct kinfer_batcher *const sentinel = (void *)&dummy;
    struct kinfer_batcher *b = sentinel;
    const struct kinfer_batcher_config bad[] = {
        {.max_batch = 0, .preferred = 0, .max_delay_us = 0},
        {.max_batch = 4, .preferred = 5, .max_delay_us = 0},
        {.max_batch = 4, .preferred = 1, .max_delay_us = -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            kinfer_batcher_new(&bad[i], noop_run, NULL, NULL, NULL, &b),
            KINFER_ERR_INVALID);
        assert_ptr_equal(b, sentinel); /* out untouched */
    }
    const struct kinfer_batcher_config ok = {.max_batch = 1};
    assert_int_equal(kinfer_batcher_new(&ok, NULL, NULL, NULL, NULL, &b),
                     KINFER_ERR_INVALID);
    assert_ptr_equal(b, sentinel);
}

static void count_run(void **items, size_t n, void *arg)
{
    size_t *seen = arg;
    for (size_t k = 0; k < n; k++)
        seen[index_of(items[k])]++;
}

static void test_counts_and_free_null(void **state)
{
    (void)state;
    kinfer_batcher_free(NULL);

    size_t seen[5] = {0};
    struct kinfer_batcher *b = NULL;
    const struct kinfer_batcher_config cfg = {
        .max_batch = 1, .preferred = 0, .max_delay_us = 0};
    assert_int_equal(kinfer_batcher_new(&cfg, count_run, seen, NULL, NULL, &b),
                     KINFER_OK);
    size_t batches = 7, items = 7;
    kinfer_batcher_counts(b, &batches, &items);
    assert_int_equal(batches, 0);
    assert_int_equal(items, 0);
    for (size_t i = 0; i < 5; i++) {
        kinfer_batcher_submit(b, item_of(i));
        /* One thread, no delay: each item has run when submit returns. */
        assert_int_equal(seen[i], 1);
        kinfer_batcher_counts(b, &batches, &items);
        assert_int_equal(batches, i + 1);
        assert_int_equal(items, i + 1);
    }
    kinfer_batcher_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_bad_config),
        cmocka_unit_test(test_counts_and_free_null),
        cmocka_unit_test(test_lone_request_not_held),
        cmocka_unit_test(test_zero_delay),
        cmocka_unit_test(test_delay_bound),
        cmocka_unit_test(test_preferred_size),
        cmocka_unit_test(test_preferred_zero_is_max),
        cmocka_unit_test(test_below_preferred_waits),
        cmocka_unit_test(test_two_batches_at_once),
        cmocka_unit_test(test_size_bound),
        cmocka_unit_test(test_one_big_batch),
        cmocka_unit_test(test_free_runs_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
