/* Integration test: failover with the worker's default group settings.
 * Two workers share a steady load; one is SIGKILLed.  The test prints the
 * stall of the dead worker's partitions (the longest a request waited for
 * its answer, counted from the kill) and requires it well under the 45 s
 * of librdkafka's default session.timeout.ms, with nothing lost.
 */
#include "harness.h"
#include "requests.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_PARTITIONS 6
#define BATCH 50           /* requests produced per step */
#define STEP_MS 100        /* one step: produce a batch, read results */
#define WARM_STEPS 40      /* 4 s of load before the kill */
#define AFTER_STEPS 200    /* 20 s of load after it */
#define MAX_STALL_MS 20000 /* the old default stalled 43.5-45.5 s */

/* Answer tally plus, per request, when it was produced and first
 * answered (it_now_ms; 0: not yet). */
struct timing {
    struct it_answers *ans;
    int64_t *produced_ms;
    int64_t *answered_ms;
};

static void on_msg(const struct it_msg *m, void *arg)
{
    struct timing *tm = arg;
    it_answers_on_msg(m, tm->ans);
    if (m->key == NULL || strncmp(m->key, "key-", 4) != 0)
        return;
    char *end = NULL;
    unsigned long long i = strtoull(m->key + 4, &end, 10);
    if (end == m->key + 4 || i >= tm->ans->n || tm->answered_ms[i] != 0)
        return;
    tm->answered_ms[i] = it_now_ms();
}

/* Produce requests [*next, *next + BATCH) and read results for a step. */
static void step(struct it_ctx *ctx, struct it_reader *r, const char *in,
                 struct timing *tm, size_t *next)
{
    int64_t t0 = it_now_ms();
    for (size_t k = 0; k < BATCH; k++, (*next)++) {
        tm->produced_ms[*next] = it_now_ms();
        IT_REQUIRE(
            ctx,
            it_req_produce(ctx, in, *next, RD_KAFKA_PARTITION_UA, NULL) == 0,
            "produce request %zu", *next);
    }
    int64_t left = STEP_MS - (it_now_ms() - t0);
    (void)it_reader_drain(r, left > 1 ? (int)left : 1);
}

static void test_failover(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    const size_t n = (size_t)BATCH * (WARM_STEPS + AFTER_STEPS);
    struct timing tm = {
        .ans = it_answers_new(n),
        .produced_ms = calloc(n, sizeof(int64_t)),
        .answered_ms = calloc(n, sizeof(int64_t)),
    };
    IT_REQUIRE(ctx, tm.produced_ms != NULL && tm.answered_ms != NULL,
               "out of memory");
    struct it_reader *r = it_reader_new(ctx, t.out, on_msg, &tm);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);

    /* The defaults under test: no session or heartbeat settings here. */
    const char *args[] = {"--group",
                          t.group,
                          "--input-topic",
                          t.in,
                          "--output-topic",
                          t.out,
                          "--dlq-topic",
                          t.dlq,
                          "--threads",
                          "1",
                          NULL};
    struct it_proc *a = it_worker_spawn(ctx, "workerA", args);
    struct it_proc *b = it_worker_spawn(ctx, "workerB", args);
    IT_REQUIRE(ctx, a != NULL && b != NULL, "spawn two workers");
    const char *gstate = NULL;
    IT_REQUIRE(ctx, it_group_wait_members(ctx, t.group, 2, 60000, &gstate) == 2,
               "both workers in group %s", t.group);

    size_t next = 0;
    for (int s = 0; s < WARM_STEPS; s++)
        step(ctx, r, t.in, &tm, &next);
    IT_REQUIRE(ctx, tm.ans->unique > 0, "no result before the kill");

    int64_t kill_ms = it_now_ms();
    IT_REQUIRE(ctx, it_proc_signal(a, SIGKILL) == 0, "SIGKILL worker A");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(a, 10000, &status, NULL) == 0,
               "worker A survived SIGKILL");
    for (int s = 0; s < AFTER_STEPS; s++)
        step(ctx, r, t.in, &tm, &next);
    IT_REQUIRE(ctx, it_produce_flush(ctx, 30000) == 0, "deliver requests");
    int rc = it_reader_wait(r, it_answers_all, tm.ans, 90000,
                            "a result for every request");
    char missing[512];
    it_answers_missing(tm.ans, 20, missing, sizeof missing);
    IT_REQUIRE(ctx, rc == 0, "%zu of %zu answered; missing: %s", tm.ans->unique,
               n, missing);
    IT_REQUIRE(ctx, tm.ans->wrong == 0, "%zu wrong results; first: %s",
               tm.ans->wrong, tm.ans->first_wrong[0]);

    /* The stall: the longest any request still unanswered at the kill, or
     * produced after it, waited from the later of the two. */
    int64_t stall = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (tm.answered_ms[i] <= kill_ms)
            continue;
        int64_t from =
            tm.produced_ms[i] > kill_ms ? tm.produced_ms[i] : kill_ms;
        if (tm.answered_ms[i] - from > stall) {
            stall = tm.answered_ms[i] - from;
            worst = i;
        }
    }
    printf("RESULT it_failover requests=%zu answered=%zu duplicates=%zu "
           "stall_ms=%lld (request r-%zu) bound_ms=%d\n",
           n, tm.ans->unique, it_answers_duplicates(tm.ans), (long long)stall,
           worst, MAX_STALL_MS);
    IT_REQUIRE(ctx, stall < MAX_STALL_MS,
               "the dead worker's partitions stalled %lld ms",
               (long long)stall);

    IT_REQUIRE(ctx, it_proc_signal(b, SIGTERM) == 0, "SIGTERM worker B");
    int64_t stop_ms = 0;
    IT_REQUIRE(ctx, it_proc_wait(b, 20000, &status, &stop_ms) == 0,
               "worker B did not stop");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker B exit status %d", status);
    it_require_committed_at_end(ctx, t.in, t.group, N_PARTITIONS);
    it_reader_free(r);
    it_answers_free(tm.ans);
    free(tm.produced_ms);
    free(tm.answered_ms);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover),
    };
    return it_main("failover", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
