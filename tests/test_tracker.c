/* Unit tests of lib/tracker.c: watermark movement (in order, out of order,
 * gaps), generations across revoke and reassign, collect semantics,
 * in-flight counts, wait_drained, and randomized runs checked against a
 * reference model and across threads. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/tracker.h"
#include "shared/util.h"

/* Long enough never to fire on a loaded machine; reaching it fails. */
#define LONG_WAIT_MS 10000

/* --- helpers ---------------------------------------------------------- */

#define MAX_CALLS 1024

/* What one kinfer_tracker_collect reported, in call order. */
struct calls {
    int32_t part[MAX_CALLS];
    int64_t next[MAX_CALLS];
    size_t n;
};

static void record_cb(int32_t partition, int64_t next_offset, void *arg)
{
    struct calls *c = arg;
    assert_true(c->n < MAX_CALLS);
    c->part[c->n] = partition;
    c->next[c->n] = next_offset;
    c->n++;
}

/* Collect and return the number of calls, recorded in *c. */
static size_t collect(struct kinfer_tracker *t, struct calls *c)
{
    c->n = 0;
    size_t n = kinfer_tracker_collect(t, record_cb, c);
    assert_int_equal(n, c->n);
    return n;
}

/* Assert the next collect reports exactly (part, next) and nothing else. */
static void expect_one(struct kinfer_tracker *t, int32_t part, int64_t next)
{
    struct calls c;
    assert_int_equal(collect(t, &c), 1);
    assert_int_equal(c.part[0], part);
    assert_int_equal(c.next[0], next);
}

static void expect_none(struct kinfer_tracker *t)
{
    struct calls c;
    assert_int_equal(collect(t, &c), 0);
}

static struct kinfer_tracker *tracker(void)
{
    struct kinfer_tracker *t = NULL;
    assert_int_equal(kinfer_tracker_new(&t), KINFER_OK);
    assert_non_null(t);
    return t;
}

static uint64_t add(struct kinfer_tracker *t, int32_t part, int64_t off)
{
    uint64_t gen = 0;
    assert_int_equal(kinfer_tracker_add(t, part, off, &gen), KINFER_OK);
    return gen;
}

/* xorshift64*: deterministic, so a failing run can be replayed. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* --- watermark movement ----------------------------------------------- */

static void test_in_order(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = kinfer_tracker_assign(t, 0);
    for (int64_t o = 0; o < 5; o++)
        assert_int_equal(add(t, 0, o), gen);
    expect_none(t);

    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 0), KINFER_OK);
    expect_one(t, 0, 1);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 1), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 2), KINFER_OK);
    expect_one(t, 0, 3);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 3), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 4), KINFER_OK);
    expect_one(t, 0, 5);
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 0);
    kinfer_tracker_free(t);
}

static void test_out_of_order(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = kinfer_tracker_assign(t, 4);
    add(t, 4, 1);
    add(t, 4, 2);
    add(t, 4, 3);

    assert_int_equal(kinfer_tracker_complete(t, 4, gen, 3), KINFER_OK);
    expect_none(t);
    assert_int_equal(kinfer_tracker_complete(t, 4, gen, 1), KINFER_OK);
    expect_one(t, 4, 2);
    assert_int_equal(kinfer_tracker_complete(t, 4, gen, 2), KINFER_OK);
    expect_one(t, 4, 4);
    kinfer_tracker_free(t);
}

static void test_gaps(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = kinfer_tracker_assign(t, 1);
    add(t, 1, 10);
    add(t, 1, 11);
    add(t, 1, 15);
    add(t, 1, 20);

    assert_int_equal(kinfer_tracker_complete(t, 1, gen, 12),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 1, gen, 15), KINFER_OK);
    expect_none(t);
    assert_int_equal(kinfer_tracker_complete(t, 1, gen, 10), KINFER_OK);
    expect_one(t, 1, 11);
    assert_int_equal(kinfer_tracker_complete(t, 1, gen, 20), KINFER_OK);
    expect_none(t);
    assert_int_equal(kinfer_tracker_complete(t, 1, gen, 11), KINFER_OK);
    expect_one(t, 1, 21);
    kinfer_tracker_free(t);
}

/* --- errors ------------------------------------------------------------ */

static void test_not_found_and_invalid(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = 0;
    assert_int_equal(kinfer_tracker_add(t, 0, 1, &gen), KINFER_ERR_NOT_FOUND);

    gen = kinfer_tracker_assign(t, 0);
    add(t, 0, 5);
    add(t, 0, 7);
    /* Not increasing, or negative: refused, nothing recorded. */
    assert_int_equal(kinfer_tracker_add(t, 0, 7, NULL), KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tracker_add(t, 0, 6, NULL), KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tracker_add(t, 0, -1, NULL), KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 2);

    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 6),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 4),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 8),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 9, gen, 5),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen + 1, 5),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 2);
    expect_none(t);

    /* A second completion of the same offset is not counted twice. */
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 7), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 7),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 1);
    /* Nor once it has left the ring. */
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 5), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen, 5),
                     KINFER_ERR_NOT_FOUND);
    expect_one(t, 0, 8);
    kinfer_tracker_free(t);
}

/* --- revoke and reassign ---------------------------------------------- */

static void must_not_call_cb(int32_t partition, int64_t next, void *arg)
{
    (void)partition;
    (void)next;
    (void)arg;
    fail_msg("collect reported a revoked partition");
}

static void test_revoke_drops_late_completions(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = kinfer_tracker_assign(t, 2);
    add(t, 2, 100);
    add(t, 2, 101);
    add(t, 2, 102);
    assert_int_equal(kinfer_tracker_complete(t, 2, gen, 101), KINFER_OK);

    assert_int_equal(kinfer_tracker_revoke(t, 2), 2);
    assert_int_equal(kinfer_tracker_revoke(t, 2), 0);
    assert_int_equal(kinfer_tracker_complete(t, 2, gen, 100),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 2, gen, 102),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_collect(t, must_not_call_cb, NULL), 0);
    assert_int_equal(kinfer_tracker_in_flight(t, 2), 0);
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 0);
    uint64_t g = 0;
    assert_int_equal(kinfer_tracker_add(t, 2, 103, &g), KINFER_ERR_NOT_FOUND);

    /* Assigned again: a new generation, and the old one stays dead. */
    uint64_t gen2 = kinfer_tracker_assign(t, 2);
    assert_true(gen2 > gen);
    assert_int_equal(add(t, 2, 100), gen2);
    assert_int_equal(kinfer_tracker_complete(t, 2, gen, 100),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 2, gen2, 100), KINFER_OK);
    expect_one(t, 2, 101);
    kinfer_tracker_free(t);
}

static void test_reassign_new_generation(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen1 = kinfer_tracker_assign(t, 0);
    uint64_t other = kinfer_tracker_assign(t, 1);
    assert_int_not_equal(gen1, other);
    add(t, 0, 5);
    add(t, 0, 6);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen1, 5), KINFER_OK);

    uint64_t gen2 = kinfer_tracker_assign(t, 0);
    assert_true(gen2 > other);
    /* Started afresh: nothing in flight, nothing pending for collect,
     * and the same offsets may be consumed again. */
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 0);
    expect_none(t);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen1, 6),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(add(t, 0, 6), gen2);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen1, 6),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 1);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen2, 6), KINFER_OK);
    expect_one(t, 0, 7);
    kinfer_tracker_free(t);
}

/* --- collect and counts ----------------------------------------------- */

static void test_collect_only_moved_once(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen[3];
    /* Assigned out of order; collect still reports by partition. */
    gen[2] = kinfer_tracker_assign(t, 2);
    gen[0] = kinfer_tracker_assign(t, 0);
    gen[1] = kinfer_tracker_assign(t, 1);
    for (int32_t p = 0; p < 3; p++) {
        add(t, p, 0);
        add(t, p, 1);
    }
    assert_int_equal(kinfer_tracker_complete(t, 2, gen[2], 0), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen[0], 0), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 0, gen[0], 1), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 1, gen[1], 1), KINFER_OK);

    struct calls c;
    assert_int_equal(collect(t, &c), 2);
    assert_int_equal(c.part[0], 0);
    assert_int_equal(c.next[0], 2);
    assert_int_equal(c.part[1], 2);
    assert_int_equal(c.next[1], 1);
    expect_none(t);

    assert_int_equal(kinfer_tracker_complete(t, 1, gen[1], 0), KINFER_OK);
    expect_one(t, 1, 2);
    expect_none(t);
    kinfer_tracker_free(t);
}

static void test_in_flight_counts(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 0);
    uint64_t g0 = kinfer_tracker_assign(t, 0);
    uint64_t g7 = kinfer_tracker_assign(t, 7);
    for (int64_t o = 0; o < 4; o++)
        add(t, 0, o);
    for (int64_t o = 50; o < 53; o++)
        add(t, 7, o);
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 4);
    assert_int_equal(kinfer_tracker_in_flight(t, 7), 3);
    assert_int_equal(kinfer_tracker_in_flight(t, 3), 0);
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 7);

    /* Completed behind an unanswered front: no longer in flight. */
    assert_int_equal(kinfer_tracker_complete(t, 0, g0, 2), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 7, g7, 50), KINFER_OK);
    assert_int_equal(kinfer_tracker_in_flight(t, 0), 3);
    assert_int_equal(kinfer_tracker_in_flight(t, 7), 2);
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 5);

    assert_int_equal(kinfer_tracker_revoke(t, 7), 2);
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 3);
    kinfer_tracker_free(t);
}

/* --- wait_drained ------------------------------------------------------ */

struct completer {
    struct kinfer_tracker *t;
    int32_t part;
    uint64_t gen;
    int64_t offset;
    enum kinfer_err err;
};

static void *completer_main(void *opaque)
{
    struct completer *c = opaque;
    c->err = kinfer_tracker_complete(c->t, c->part, c->gen, c->offset);
    return NULL;
}

static void test_wait_drained(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    /* Nothing tracked: drained at once. */
    assert_int_equal(kinfer_tracker_wait_drained(t, NULL, 0, 0), KINFER_OK);

    uint64_t g1 = kinfer_tracker_assign(t, 1);
    kinfer_tracker_assign(t, 2);
    add(t, 1, 40);
    int32_t p1 = 1, p2 = 2, p9 = 9;
    assert_int_equal(kinfer_tracker_wait_drained(t, NULL, 0, 30),
                     KINFER_ERR_TIMEOUT);
    assert_int_equal(kinfer_tracker_wait_drained(t, &p1, 1, 30),
                     KINFER_ERR_TIMEOUT);
    /* Other partitions, tracked or not, are not held up by partition 1. */
    assert_int_equal(kinfer_tracker_wait_drained(t, &p2, 1, 0), KINFER_OK);
    assert_int_equal(kinfer_tracker_wait_drained(t, &p9, 1, 0), KINFER_OK);

    struct completer c = {
        .t = t, .part = 1, .gen = g1, .offset = 40, .err = KINFER_ERR_INVALID};
    pthread_t th;
    int64_t start = kinfer_now_ms();
    assert_int_equal(pthread_create(&th, NULL, completer_main, &c), 0);
    assert_int_equal(kinfer_tracker_wait_drained(t, &p1, 1, LONG_WAIT_MS),
                     KINFER_OK);
    assert_true(kinfer_now_ms() - start < LONG_WAIT_MS);
    pthread_join(th, NULL);
    assert_int_equal(c.err, KINFER_OK);
    assert_int_equal(kinfer_tracker_wait_drained(t, NULL, 0, 0), KINFER_OK);
    expect_one(t, 1, 41);
    kinfer_tracker_free(t);
}

struct revoker {
    struct kinfer_tracker *t;
    int32_t part;
    size_t dropped;
};

static void *revoker_main(void *opaque)
{
    struct revoker *r = opaque;
    r->dropped = kinfer_tracker_revoke(r->t, r->part);
    return NULL;
}

/* Revoking (a lost assignment) also ends a wait on that partition. */
static void test_wait_drained_ends_on_revoke(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    kinfer_tracker_assign(t, 3);
    add(t, 3, 1);
    add(t, 3, 2);
    struct revoker r = {.t = t, .part = 3, .dropped = 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, revoker_main, &r), 0);
    int32_t p3 = 3;
    assert_int_equal(kinfer_tracker_wait_drained(t, &p3, 1, LONG_WAIT_MS),
                     KINFER_OK);
    pthread_join(th, NULL);
    assert_int_equal(r.dropped, 2);
    kinfer_tracker_free(t);
}

/* --- many partitions --------------------------------------------------- */

#define NPARTS 300

static void test_many_partitions(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    int32_t ids[NPARTS];
    uint64_t gens[NPARTS];
    for (int32_t i = 0; i < NPARTS; i++)
        ids[i] = i;
    uint64_t seed = 42;
    for (size_t i = NPARTS - 1; i > 0; i--) {
        size_t j = rng_next(&seed) % (i + 1);
        int32_t tmp = ids[i];
        ids[i] = ids[j];
        ids[j] = tmp;
    }
    for (size_t i = 0; i < NPARTS; i++)
        gens[ids[i]] = kinfer_tracker_assign(t, ids[i]);
    for (int32_t p = 0; p < NPARTS; p++)
        for (int64_t o = 0; o < 3; o++)
            assert_int_equal(add(t, p, 1000 * p + o), gens[p]);
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 3 * NPARTS);

    /* Complete everything, partitions in shuffled order. */
    for (size_t i = 0; i < NPARTS; i++) {
        int32_t p = ids[i];
        for (int64_t o = 2; o >= 0; o--)
            assert_int_equal(
                kinfer_tracker_complete(t, p, gens[p], 1000 * p + o),
                KINFER_OK);
    }
    struct calls c;
    assert_int_equal(collect(t, &c), NPARTS);
    for (int32_t p = 0; p < NPARTS; p++) {
        assert_int_equal(c.part[p], p);
        assert_int_equal(c.next[p], 1000 * p + 3);
    }

    /* Revoke the even ones; the odd ones keep working. */
    for (int32_t p = 0; p < NPARTS; p += 2)
        assert_int_equal(kinfer_tracker_revoke(t, p), 0);
    for (int32_t p = 1; p < NPARTS; p += 2) {
        add(t, p, 1000 * p + 3);
        assert_int_equal(kinfer_tracker_complete(t, p, gens[p], 1000 * p + 3),
                         KINFER_OK);
    }
    assert_int_equal(collect(t, &c), NPARTS / 2);
    for (size_t i = 0; i < c.n; i++) {
        assert_int_equal(c.part[i], 2 * (int32_t)i + 1);
        assert_int_equal(c.next[i], 1000 * c.part[i] + 4);
    }
    kinfer_tracker_free(t);
}

/* --- randomized, single thread, against a reference model -------------- */

/* A sliding window of offsets (with random gaps) is added and completed in
 * random order; after every completion the watermark must be one past the
 * last offset of the completed prefix.  The window swells and shrinks, so
 * the ring wraps, grows and shrinks many times. */
#define MODEL_OPS 200000
#define MODEL_MAX 4096

static void test_model_single_thread(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = kinfer_tracker_assign(t, 0);
    static int64_t offs[MODEL_OPS];
    static bool done[MODEL_OPS];
    memset(done, 0, sizeof(done));
    size_t added = 0, front = 0, open = 0;
    int64_t next_off = 0, expect_wm = -1;
    uint64_t seed = 7;

    for (size_t step = 0; added < MODEL_OPS || open > 0; step++) {
        /* Phases: swell towards MODEL_MAX open, drain, hover near 8. */
        size_t phase = (step / 20000) % 3;
        uint64_t add_in_4 = phase == 0 ? 3 : phase == 1 ? 1 : 2;
        size_t cap = phase == 2 ? 8 : MODEL_MAX;
        bool do_add =
            added < MODEL_OPS &&
            (open == 0 || (open < cap && rng_next(&seed) % 4 < add_in_4));
        if (do_add) {
            next_off += 1 + (int64_t)(rng_next(&seed) % 3);
            offs[added++] = next_off;
            add(t, 0, next_off);
            open++;
            continue;
        }
        /* Complete a random open offset among the added ones. */
        size_t k;
        do
            k = front + rng_next(&seed) % (added - front);
        while (done[k]);
        assert_int_equal(kinfer_tracker_complete(t, 0, gen, offs[k]),
                         KINFER_OK);
        done[k] = true;
        open--;
        bool moved = false;
        while (front < added && done[front]) {
            expect_wm = offs[front++] + 1;
            moved = true;
        }
        assert_int_equal(kinfer_tracker_in_flight(t, 0), open);
        struct calls c;
        assert_int_equal(collect(t, &c), moved ? 1 : 0);
        if (moved)
            assert_int_equal(c.next[0], expect_wm);
    }
    assert_int_equal(expect_wm, next_off + 1);
    kinfer_tracker_free(t);
}

/* --- randomized, several threads --------------------------------------- */

#define RAND_OFFSETS 10000
#define RAND_PARTS 8
#define RAND_THREADS 4

struct job {
    int32_t part;
    uint64_t gen;
    int64_t offset;
};

struct worker {
    struct kinfer_tracker *t;
    const struct job *jobs;
    size_t first, step, n; /* jobs first, first+step, ... below n */
    size_t ok;
};

static void *worker_main(void *opaque)
{
    struct worker *w = opaque;
    for (size_t i = w->first; i < w->n; i += w->step)
        if (kinfer_tracker_complete(w->t, w->jobs[i].part, w->jobs[i].gen,
                                    w->jobs[i].offset) == KINFER_OK)
            w->ok++;
    return NULL;
}

/* Collect callback of the concurrent test: watermarks never go back. */
static void monotonic_cb(int32_t partition, int64_t next_offset, void *arg)
{
    int64_t *wm = arg;
    assert_true(partition >= 0 && partition < RAND_PARTS);
    assert_true(next_offset > wm[partition]);
    wm[partition] = next_offset;
}

static void test_random_threads(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    static struct job jobs[RAND_OFFSETS];
    uint64_t gens[RAND_PARTS];
    int64_t last[RAND_PARTS];
    for (int32_t p = 0; p < RAND_PARTS; p++) {
        gens[p] = kinfer_tracker_assign(t, p);
        last[p] = 1000 * p; /* offsets of p start above this */
    }
    uint64_t seed = 2024;
    for (size_t i = 0; i < RAND_OFFSETS; i++) {
        int32_t p = (int32_t)(rng_next(&seed) % RAND_PARTS);
        last[p] += 1 + (int64_t)(rng_next(&seed) % 4);
        jobs[i] = (struct job){.part = p, .gen = gens[p], .offset = last[p]};
        assert_int_equal(add(t, p, last[p]), gens[p]);
    }
    assert_int_equal(kinfer_tracker_in_flight(t, -1), RAND_OFFSETS);
    for (size_t i = RAND_OFFSETS - 1; i > 0; i--) {
        size_t j = rng_next(&seed) % (i + 1);
        struct job tmp = jobs[i];
        jobs[i] = jobs[j];
        jobs[j] = tmp;
    }

    struct worker w[RAND_THREADS];
    pthread_t th[RAND_THREADS];
    for (size_t i = 0; i < RAND_THREADS; i++) {
        w[i] = (struct worker){.t = t,
                               .jobs = jobs,
                               .first = i,
                               .step = RAND_THREADS,
                               .n = RAND_OFFSETS};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    /* Meanwhile play the poll thread: collect while completions race. */
    int64_t wm[RAND_PARTS];
    for (size_t p = 0; p < RAND_PARTS; p++)
        wm[p] = -1;
    int64_t give_up = kinfer_now_ms() + LONG_WAIT_MS;
    while (kinfer_tracker_wait_drained(t, NULL, 0, 1) != KINFER_OK) {
        kinfer_tracker_collect(t, monotonic_cb, wm);
        assert_true(kinfer_now_ms() < give_up);
    }

    size_t ok = 0;
    for (size_t i = 0; i < RAND_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
    }
    kinfer_tracker_collect(t, monotonic_cb, wm);
    assert_int_equal(ok, RAND_OFFSETS);
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 0);
    for (int32_t p = 0; p < RAND_PARTS; p++)
        assert_int_equal(wm[p], last[p] + 1);
    kinfer_tracker_free(t);
}

/* Answered offsets behind an unanswered one still take room: held counts
 * them, in_flight does not. */
static void test_held_counts_entries_behind_a_gap(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t g1 = kinfer_tracker_assign(t, 1);
    uint64_t g2 = kinfer_tracker_assign(t, 2);
    for (int64_t o = 0; o < 5; o++)
        add(t, 1, o);
    add(t, 2, 7);
    for (int64_t o = 1; o < 5; o++)
        assert_int_equal(kinfer_tracker_complete(t, 1, g1, o), KINFER_OK);
    assert_int_equal(kinfer_tracker_in_flight(t, -1), 2);
    assert_int_equal(kinfer_tracker_held(t), 6);
    assert_int_equal(kinfer_tracker_complete(t, 1, g1, 0), KINFER_OK);
    assert_int_equal(kinfer_tracker_held(t), 1);
    assert_int_equal(kinfer_tracker_complete(t, 2, g2, 7), KINFER_OK);
    assert_int_equal(kinfer_tracker_held(t), 0);
    kinfer_tracker_revoke(t, 1);
    kinfer_tracker_free(t);
}

/* --- release ----------------------------------------------------------- */

/* A released offset leaves the in-flight count but holds the watermark
 * below it; answered offsets behind it wait, held, until reassignment. */
static void test_release_holds_watermark(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = kinfer_tracker_assign(t, 3);
    for (int64_t o = 10; o < 14; o++)
        add(t, 3, o);
    assert_int_equal(kinfer_tracker_complete(t, 3, gen, 10), KINFER_OK);
    expect_one(t, 3, 11);
    assert_int_equal(kinfer_tracker_release(t, 3, gen, 11), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 3, gen, 12), KINFER_OK);
    assert_int_equal(kinfer_tracker_complete(t, 3, gen, 13), KINFER_OK);
    /* Nothing runs any more, yet nothing past 11 may be stored. */
    assert_int_equal(kinfer_tracker_in_flight(t, 3), 0);
    assert_int_equal(kinfer_tracker_held(t), 3);
    expect_none(t);
    int32_t p = 3;
    assert_int_equal(kinfer_tracker_wait_drained(t, &p, 1, 0), KINFER_OK);
    /* Ended twice, or once in each way: the second call changes nothing. */
    assert_int_equal(kinfer_tracker_release(t, 3, gen, 11),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_complete(t, 3, gen, 11),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_release(t, 3, gen, 12),
                     KINFER_ERR_NOT_FOUND);
    expect_none(t);
    /* A stale generation is ignored, as for complete. */
    add(t, 3, 20);
    assert_int_equal(kinfer_tracker_release(t, 3, gen + 7, 20),
                     KINFER_ERR_NOT_FOUND);
    assert_int_equal(kinfer_tracker_in_flight(t, 3), 1);
    /* A new assignment starts afresh: nothing held any more. */
    uint64_t g2 = kinfer_tracker_assign(t, 3);
    assert_int_equal(kinfer_tracker_held(t), 0);
    add(t, 3, 11);
    assert_int_equal(kinfer_tracker_complete(t, 3, g2, 11), KINFER_OK);
    expect_one(t, 3, 12);
    kinfer_tracker_free(t);
}

/* wait_drained returns as soon as the last in-flight offset is released
 * from another thread: "drained" means nothing is running. */
static void *releaser_main(void *opaque);

struct releaser {
    struct kinfer_tracker *t;
    uint64_t gen;
    enum kinfer_err err;
};

static void test_release_ends_wait_drained(void **state)
{
    (void)state;
    struct kinfer_tracker *t = tracker();
    uint64_t gen = kinfer_tracker_assign(t, 0);
    add(t, 0, 5);
    struct releaser r = {.t = t, .gen = gen, .err = KINFER_ERR_INVALID};
    pthread_t th;
    int64_t start = kinfer_now_ms();
    assert_int_equal(pthread_create(&th, NULL, releaser_main, &r), 0);
    assert_int_equal(kinfer_tracker_wait_drained(t, NULL, 0, LONG_WAIT_MS),
                     KINFER_OK);
    assert_true(kinfer_now_ms() - start < LONG_WAIT_MS);
    pthread_join(th, NULL);
    assert_int_equal(r.err, KINFER_OK);
    assert_int_equal(kinfer_tracker_held(t), 1);
    expect_none(t);
    kinfer_tracker_free(t);
}

static void *releaser_main(void *opaque)
{
    struct releaser *r = opaque;
    r->err = kinfer_tracker_release(r->t, 0, r->gen, 5);
    return NULL;
}

static void test_free_null(void **state)
{
    (void)state;
    kinfer_tracker_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_not_found_and_invalid),
        cmocka_unit_test(test_revoke_drops_late_completions),
        cmocka_unit_test(test_reassign_new_generation),
        cmocka_unit_test(test_collect_only_moved_once),
        cmocka_unit_test(test_in_flight_counts),
        cmocka_unit_test(test_wait_drained),
        cmocka_unit_test(test_wait_drained_ends_on_revoke),
        cmocka_unit_test(test_many_partitions),
        cmocka_unit_test(test_model_single_thread),
        cmocka_unit_test(test_random_threads),
        cmocka_unit_test(test_held_counts_entries_behind_a_gap),
        cmocka_unit_test(test_release_holds_watermark),
        cmocka_unit_test(test_release_ends_wait_drained),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
