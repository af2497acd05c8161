/* Unit tests of lib/pool.c: every job runs once, FIFO order, the queue
 * bound (try_submit and blocking submit), close semantics and the signal
 * mask of pool threads.  Waits use condition variables with deadlines. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/pool.h"
#include "shared/util.h"

/* Long enough never to fire on a loaded machine; reaching it fails. */
#define LONG_WAIT_MS 10000
/* How long a blocked call is given to (wrongly) return. */
#define SHORT_WAIT_MS 100

/* --- all jobs run exactly once --------------------------------------- */

#define MANY_JOBS 2000

struct counts {
    atomic_int runs[MANY_JOBS];
    atomic_int total;
};

static void count_cb(void *job, void *arg)
{
    struct counts *c = arg;
    size_t i = (size_t)(uintptr_t)job;
    atomic_fetch_add(&c->runs[i], 1);
    atomic_fetch_add(&c->total, 1);
}

static void test_all_jobs_run_once(void **state)
{
    (void)state;
    static struct counts c;
    for (size_t i = 0; i < MANY_JOBS; i++)
        atomic_init(&c.runs[i], 0);
    atomic_init(&c.total, 0);

    struct kinfer_pool *p = NULL;
    assert_int_equal(kinfer_pool_new(4, 8, count_cb, &c, &p), KINFER_OK);
    for (size_t i = 0; i < MANY_JOBS; i++)
        assert_int_equal(kinfer_pool_submit(p, (void *)(uintptr_t)i),
                         KINFER_OK);
    kinfer_pool_free(p);

    assert_int_equal(atomic_load(&c.total), MANY_JOBS);
    for (size_t i = 0; i < MANY_JOBS; i++)
        assert_int_equal(atomic_load(&c.runs[i]), 1);
}

/* --- FIFO with one thread -------------------------------------------- */

struct order {
    size_t seen[100];
    size_t n; /* written by the single pool thread, read after join */
};

static void order_cb(void *job, void *arg)
{
    struct order *o = arg;
    o->seen[o->n++] = (size_t)(uintptr_t)job;
}

static void test_fifo_one_thread(void **state)
{
    (void)state;
    struct order o = {.n = 0};
    struct kinfer_pool *p = NULL;
    assert_int_equal(kinfer_pool_new(1, 3, order_cb, &o, &p), KINFER_OK);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(kinfer_pool_submit(p, (void *)(uintptr_t)i),
                         KINFER_OK);
    kinfer_pool_free(p);
    assert_int_equal(o.n, 100);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(o.seen[i], i);
}

/* --- a gate the test opens, and a helper that submits ---------------- */

/* Jobs block on the gate until the test opens it, so the test controls
 * exactly how full the queue is. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool open;
    int started; /* jobs that entered the callback */
    int finished;
};

static void gate_init(struct gate *g)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    g->open = false;
    g->started = 0;
    g->finished = 0;
}

static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_cb(void *job, void *arg)
{
    (void)job;
    struct gate *g = arg;
    pthread_mutex_lock(&g->mu);
    g->started++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    g->finished++;
    pthread_mutex_unlock(&g->mu);
}

/* Wait until at least n jobs have started; false on timeout. */
static bool gate_wait_started(struct gate *g, int n, int timeout_ms)
{
    struct timespec dl;
    kinfer_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&g->mu);
    while (g->started < n)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) == ETIMEDOUT)
            break;
    bool ok = g->started >= n;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static int gate_finished(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->finished;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* A thread that calls the blocking submit and reports when it returns. */
struct submitter {
    struct kinfer_pool *pool;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool returned;
    enum kinfer_err err;
};

static void *submitter_main(void *opaque)
{
    struct submitter *s = opaque;
    enum kinfer_err err = kinfer_pool_submit(s->pool, NULL);
    pthread_mutex_lock(&s->mu);
    s->err = err;
    s->returned = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void submitter_start(struct submitter *s, struct kinfer_pool *p)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->pool = p;
    s->returned = false;
    s->err = KINFER_OK;
    assert_int_equal(pthread_create(&s->thread, NULL, submitter_main, s), 0);
}

/* Wait up to timeout_ms for the submit to return; true if it did. */
static bool submitter_wait(struct submitter *s, int timeout_ms)
{
    struct timespec dl;
    kinfer_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (!s->returned)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT)
            break;
    bool returned = s->returned;
    pthread_mutex_unlock(&s->mu);
    return returned;
}

static void submitter_join(struct submitter *s)
{
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

/* One thread stuck in job 1, jobs 2 and 3 filling a queue of 2. */
static struct kinfer_pool *fill_gated_pool(struct gate *g)
{
    struct kinfer_pool *p = NULL;
    gate_init(g);
    assert_int_equal(kinfer_pool_new(1, 2, gate_cb, g, &p), KINFER_OK);
    assert_int_equal(kinfer_pool_submit(p, NULL), KINFER_OK);
    assert_true(gate_wait_started(g, 1, LONG_WAIT_MS));
    assert_int_equal(kinfer_pool_submit(p, NULL), KINFER_OK);
    assert_int_equal(kinfer_pool_try_submit(p, NULL), KINFER_OK);
    assert_int_equal(kinfer_pool_queued(p), 2);
    return p;
}

/* --- the bound -------------------------------------------------------- */

static void test_bound_holds(void **state)
{
    (void)state;
    struct gate g;
    struct kinfer_pool *p = fill_gated_pool(&g);

    assert_int_equal(kinfer_pool_try_submit(p, NULL), KINFER_ERR_TIMEOUT);
    assert_int_equal(kinfer_pool_queued(p), 2);

    struct submitter s;
    submitter_start(&s, p);
    /* The queue is full: the blocking submit must still be waiting. */
    assert_false(submitter_wait(&s, SHORT_WAIT_MS));
    assert_int_equal(kinfer_pool_queued(p), 2);

    gate_open(&g);
    assert_true(submitter_wait(&s, LONG_WAIT_MS));
    assert_int_equal(s.err, KINFER_OK);
    submitter_join(&s);

    kinfer_pool_free(p);
    assert_int_equal(gate_finished(&g), 4);
    gate_destroy(&g);
}

/* --- close ------------------------------------------------------------ */

static void test_close_wakes_blocked_submitter(void **state)
{
    (void)state;
    struct gate g;
    struct kinfer_pool *p = fill_gated_pool(&g);

    struct submitter s;
    submitter_start(&s, p);
    assert_false(submitter_wait(&s, SHORT_WAIT_MS));

    kinfer_pool_close(p);
    assert_true(submitter_wait(&s, LONG_WAIT_MS));
    assert_int_equal(s.err, KINFER_ERR_CLOSED);
    submitter_join(&s);

    /* The gate is still shut: close must not have dropped queued jobs. */
    assert_int_equal(kinfer_pool_queued(p), 2);
    assert_int_equal(kinfer_pool_try_submit(p, NULL), KINFER_ERR_CLOSED);
    gate_open(&g);
    kinfer_pool_free(p);
    assert_int_equal(gate_finished(&g), 3);
    gate_destroy(&g);
}

static void test_close_runs_queued_jobs(void **state)
{
    (void)state;
    struct gate g;
    gate_init(&g);
    struct kinfer_pool *p = NULL;
    assert_int_equal(kinfer_pool_new(2, 8, gate_cb, &g, &p), KINFER_OK);
    for (int i = 0; i < 7; i++)
        assert_int_equal(kinfer_pool_submit(p, NULL), KINFER_OK);
    kinfer_pool_close(p);
    kinfer_pool_close(p); /* idempotent */
    assert_int_equal(kinfer_pool_submit(p, NULL), KINFER_ERR_CLOSED);
    assert_int_equal(kinfer_pool_try_submit(p, NULL), KINFER_ERR_CLOSED);
    gate_open(&g);
    kinfer_pool_free(p);
    assert_int_equal(gate_finished(&g), 7);
    gate_destroy(&g);
}

/* --- signals, arguments, free(NULL) ----------------------------------- */

struct mask_seen {
    atomic_int blocked; /* jobs that saw SIGTERM, SIGINT, SIGUSR1 blocked */
    atomic_int runs;
};

static void mask_cb(void *job, void *arg)
{
    (void)job;
    struct mask_seen *m = arg;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    if (sigismember(&cur, SIGTERM) == 1 && sigismember(&cur, SIGINT) == 1 &&
        sigismember(&cur, SIGUSR1) == 1)
        atomic_fetch_add(&m->blocked, 1);
    atomic_fetch_add(&m->runs, 1);
}

static void test_threads_block_signals(void **state)
{
    (void)state;
    struct mask_seen m;
    atomic_init(&m.blocked, 0);
    atomic_init(&m.runs, 0);
    sigset_t before, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);

    struct kinfer_pool *p = NULL;
    assert_int_equal(kinfer_pool_new(3, 4, mask_cb, &m, &p), KINFER_OK);
    /* The creator's own mask is restored. */
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    assert_int_equal(sigismember(&after, SIGTERM),
                     sigismember(&before, SIGTERM));
    assert_int_equal(sigismember(&after, SIGINT), sigismember(&before, SIGINT));
    for (int i = 0; i < 30; i++)
        assert_int_equal(kinfer_pool_submit(p, NULL), KINFER_OK);
    kinfer_pool_free(p);
    assert_int_equal(atomic_load(&m.runs), 30);
    assert_int_equal(atomic_load(&m.blocked), 30);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct kinfer_pool *p = NULL;
    assert_int_equal(kinfer_pool_new(0, 4, count_cb, NULL, &p),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_pool_new(2, 0, count_cb, NULL, &p),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_pool_new(2, 4, NULL, NULL, &p), KINFER_ERR_INVALID);
    assert_null(p);
}

static void test_free_null(void **state)
{
    (void)state;
    kinfer_pool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_jobs_run_once),
        cmocka_unit_test(test_fifo_one_thread),
        cmocka_unit_test(test_bound_holds),
        cmocka_unit_test(test_close_wakes_blocked_submitter),
        cmocka_unit_test(test_close_runs_queued_jobs),
        cmocka_unit_test(test_threads_block_signals),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
