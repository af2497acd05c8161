/* Integration test: two workers in one group answer a 10,000-request
 * backlog spread over six partitions; every request gets a correct result
 * with its key and trace header, and the group commits to the end.
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

#define N_REQUESTS 10000
#define N_PARTITIONS 6
#define STOP_TIMEOUT_MS 45000 /* the worker's 30 s drain plus a margin */

static void test_throughput(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    const char *in = t.in, *out = t.out, *dlq = t.dlq, *group = t.group;
    IT_REQUIRE(ctx, it_req_produce_range(ctx, in, 0, N_REQUESTS, NULL) == 0,
               "produce %d requests", N_REQUESTS);

    struct it_answers *ans = it_answers_new(N_REQUESTS);
    struct it_reader *r = it_reader_new(ctx, out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", out);

    const char *args[] = {"--group",
                          group,
                          "--input-topic",
                          in,
                          "--output-topic",
                          out,
                          "--dlq-topic",
                          dlq,
                          "--threads",
                          "2",
                          NULL};
    int64_t t0 = it_now_ms();
    struct it_proc *a = it_worker_spawn(ctx, "workerA", args);
    struct it_proc *b = it_worker_spawn(ctx, "workerB", args);
    IT_REQUIRE(ctx, a != NULL && b != NULL, "spawn workers");

    int rc = it_reader_wait(r, it_answers_all, ans, 200000,
                            "a result for every request");
    double seconds = (it_now_ms() - t0) / 1000.0;
    char missing[512];
    it_answers_missing(ans, 20, missing, sizeof missing);
    IT_REQUIRE(ctx, rc == 0, "%zu of %d requests answered; missing: %s",
               ans->unique, N_REQUESTS, missing);

    /* Both must have taken part, or this measured one worker. */
    IT_REQUIRE(ctx, it_proc_running(a) && it_proc_running(b),
               "a worker exited early");
    int64_t stop_ms[2];
    struct it_proc *procs[2] = {a, b};
    int64_t t_signal = it_now_ms();
    for (int k = 0; k < 2; k++)
        IT_REQUIRE(ctx, it_proc_signal(procs[k], SIGTERM) == 0, "SIGTERM");
    for (int k = 0; k < 2; k++) {
        int status = 0;
        char st[64];
        int64_t left = STOP_TIMEOUT_MS - (it_now_ms() - t_signal);
        IT_REQUIRE(ctx, it_proc_wait(procs[k], left, &status, NULL) == 0,
                   "%s did not exit within %d ms of SIGTERM",
                   it_proc_label(procs[k]), STOP_TIMEOUT_MS);
        stop_ms[k] = it_now_ms() - t_signal;
        IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "%s ended with %s after SIGTERM", it_proc_label(procs[k]),
                   it_status_str(status, st, sizeof st));
    }
    /* Count duplicates over everything the workers wrote. */
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s to its end",
               out);
    IT_REQUIRE(ctx, ans->wrong == 0, "%zu wrong results; first: %s | %s | %s",
               ans->wrong, ans->first_wrong[0], ans->first_wrong[1],
               ans->first_wrong[2]);
    IT_REQUIRE(ctx, ans->foreign == 0, "%zu results with foreign keys",
               ans->foreign);

    it_require_committed_at_end(ctx, in, group, N_PARTITIONS);

    /* From the first result to the last: the rate once the group has
     * formed, without the workers' start-up and rebalances. */
    double busy = (ans->last_ms - ans->first_ms) / 1000.0;
    printf("RESULT it_throughput answered=%zu requests=%d duplicates=%zu "
           "seconds=%.2f rate=%.0f/s first_to_last_seconds=%.2f "
           "stop_ms=%lld,%lld\n",
           ans->unique, N_REQUESTS, it_answers_duplicates(ans), seconds,
           N_REQUESTS / seconds, busy, (long long)stop_ms[0],
           (long long)stop_ms[1]);
    it_reader_free(r);
    it_answers_free(ans);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_throughput),
    };
    return it_main("throughput", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
