/* Integration test: SIGTERM is a clean shutdown.  An idle worker that has
 * answered everything exits 0 with the group's offsets at the end of the
 * input; a worker stopped mid-stream exits 0 having committed exactly the
 * requests it answered, and a successor answers the rest.
 */
#include "harness.h"
#include "requests.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_PARTITIONS 6
#define DRAIN_TIMEOUT_S 10 /* the worker's default --drain-timeout */
#define STOP_TIMEOUT_MS ((DRAIN_TIMEOUT_S + 5) * 1000)

static struct it_proc *spawn(struct it_ctx *ctx, const struct it_topics *t,
                             const char *label)
{
    const char *args[] = {"--group",
                          t->group,
                          "--input-topic",
                          t->in,
                          "--output-topic",
                          t->out,
                          "--dlq-topic",
                          t->dlq,
                          "--threads",
                          "2",
                          NULL};
    struct it_proc *p = it_worker_spawn(ctx, label, args);
    IT_REQUIRE(ctx, p != NULL, "spawn %s", label);
    return p;
}

/* SIGTERM p and require exit 0 within the drain timeout plus a margin;
 * returns how long it took. */
static int64_t stop(struct it_ctx *ctx, struct it_proc *p)
{
    int status = 0;
    int64_t ms = 0;
    char st[64];
    /* A worker with nothing left to do is stopped at once: make sure its
     * handler is in place so SIGTERM means "shut down", not "die". */
    IT_REQUIRE(ctx, it_proc_wait_signal_ready(p, SIGTERM, 10000) == 0,
               "%s installed no SIGTERM handler", it_proc_label(p));
    IT_REQUIRE(ctx, it_proc_signal(p, SIGTERM) == 0, "SIGTERM %s",
               it_proc_label(p));
    IT_REQUIRE(ctx, it_proc_wait(p, STOP_TIMEOUT_MS, &status, &ms) == 0,
               "%s did not exit within %d ms of SIGTERM", it_proc_label(p),
               STOP_TIMEOUT_MS);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "%s ended with %s after SIGTERM", it_proc_label(p),
               it_status_str(status, st, sizeof st));
    return ms;
}

static void require_all_right(struct it_ctx *ctx, struct it_answers *ans)
{
    char missing[512];
    it_answers_missing(ans, 20, missing, sizeof missing);
    IT_REQUIRE(ctx, ans->unique == ans->n,
               "%zu of %zu requests answered; missing: %s", ans->unique, ans->n,
               missing);
    IT_REQUIRE(ctx, ans->wrong == 0, "%zu wrong results; first: %s | %s | %s",
               ans->wrong, ans->first_wrong[0], ans->first_wrong[1],
               ans->first_wrong[2]);
    IT_REQUIRE(ctx, ans->foreign == 0, "%zu results with foreign keys",
               ans->foreign);
}

/* Everything answered, then SIGTERM: exit 0 and offsets at the end. */
static void test_sigterm_idle(void **state)
{
    struct it_ctx *ctx = *state;
    const size_t n = 2000;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n, NULL) == 0,
               "produce %zu requests", n);
    struct it_answers *ans = it_answers_new(n);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);
    struct it_proc *w = spawn(ctx, &t, "worker");
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_all, ans, 120000,
                              "a result for every request") == 0,
               "%zu of %zu answered", ans->unique, n);
    int64_t stop_ms = stop(ctx, w);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s", t.out);
    require_all_right(ctx, ans);
    it_require_committed_at_end(ctx, t.in, t.group, N_PARTITIONS);
    printf("RESULT it_sigterm_idle answered=%zu duplicates=%zu "
           "shutdown_ms=%lld\n",
           ans->unique, it_answers_duplicates(ans), (long long)stop_ms);
    it_reader_free(r);
    it_answers_free(ans);
}

/* SIGTERM while requests are in flight: the committed offsets must cover
 * exactly what was answered (never an unanswered request: at least once;
 * nothing answered left uncommitted: the drain finished its work), and a
 * successor answers the rest. */
static void test_sigterm_midstream(void **state)
{
    struct it_ctx *ctx = *state;
    const size_t n = 20000;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    struct it_delivery *dr = calloc(n, sizeof *dr);
    IT_REQUIRE(ctx, dr != NULL, "out of memory");
    struct it_answers *ans = it_answers_new(n);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);

    struct it_proc *a = spawn(ctx, &t, "workerA");
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n, dr) == 0,
               "produce %zu requests", n);
    ans->target = 1000;
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_reached, ans, 120000,
                              "the first results") == 0,
               "only %zu answered", ans->unique);
    size_t answered_at_signal = ans->unique;
    int64_t stop_ms = stop(ctx, a);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s", t.out);
    IT_REQUIRE(ctx, ans->wrong == 0, "%zu wrong results; first: %s", ans->wrong,
               ans->first_wrong[0]);

    int64_t end[N_PARTITIONS], committed[N_PARTITIONS];
    IT_REQUIRE(
        ctx, it_offsets(ctx, t.in, t.group, N_PARTITIONS, end, committed) == 0,
        "offsets of %s", t.group);
    size_t below = 0, unanswered_below = 0, answered_above = 0;
    size_t first_unanswered = n, first_above = n;
    for (size_t i = 0; i < n; i++) {
        int32_t p = dr[i].partition;
        IT_REQUIRE(ctx, p >= 0 && p < N_PARTITIONS,
                   "request %zu: no delivery report", i);
        int is_below = dr[i].offset < committed[p];
        below += is_below;
        if (is_below && ans->count[i] == 0) {
            unanswered_below++;
            if (first_unanswered == n)
                first_unanswered = i;
        }
        if (!is_below && ans->count[i] != 0) {
            answered_above++;
            if (first_above == n)
                first_above = i;
        }
    }
    IT_REQUIRE(ctx, unanswered_below == 0,
               "%zu requests below the committed offsets have no result "
               "(first r-%zu at %d/%lld): a commit passed unanswered work",
               unanswered_below, first_unanswered,
               (int)dr[first_unanswered].partition,
               (long long)dr[first_unanswered].offset);
    IT_REQUIRE(ctx, answered_above == 0,
               "%zu answered requests are not committed after a clean "
               "shutdown (first r-%zu at %d/%lld)",
               answered_above, first_above, (int)dr[first_above].partition,
               (long long)dr[first_above].offset);
    size_t answered_by_a = ans->unique;

    struct it_proc *b = spawn(ctx, &t, "workerB");
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_all, ans, 150000,
                              "the rest from worker B") == 0,
               "%zu of %zu answered", ans->unique, n);
    int64_t stop_b_ms = stop(ctx, b);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s", t.out);
    require_all_right(ctx, ans);
    it_require_committed_at_end(ctx, t.in, t.group, N_PARTITIONS);
    printf("RESULT it_sigterm_midstream requests=%zu "
           "answered_at_signal=%zu answered_by_A=%zu committed_by_A=%zu "
           "shutdown_ms=%lld duplicates=%zu stop_B_ms=%lld\n",
           n, answered_at_signal, answered_by_a, below, (long long)stop_ms,
           it_answers_duplicates(ans), (long long)stop_b_ms);
    it_reader_free(r);
    it_answers_free(ans);
    free(dr);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_idle),
        cmocka_unit_test(test_sigterm_midstream),
    };
    return it_main("sigterm", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
