/* Integration test: a worker SIGKILLed mid-stream loses nothing.  Worker A
 * answers part of 10,000 requests and is killed without warning; worker B
 * joins the same group and every request ends up answered (duplicates
 * allowed: at least once), then B stops cleanly with offsets at the end.
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
#define KILL_AFTER 2000
#define N_PARTITIONS 6
#define STOP_TIMEOUT_MS 45000

static void test_kill(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    const char *in = t.in, *out = t.out, *dlq = t.dlq, *group = t.group;

    /* Frequent commits make the kill land between commits, as in
     * production; the short session lets B take over A's partitions
     * without waiting the default 45 s for A's membership to expire. */
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
                          "-X",
                          "auto.commit.interval.ms=200",
                          "-X",
                          "session.timeout.ms=6000",
                          "-X",
                          "heartbeat.interval.ms=1000",
                          NULL};
    struct it_answers *ans = it_answers_new(N_REQUESTS);
    struct it_reader *r = it_reader_new(ctx, out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", out);

    int64_t t0 = it_now_ms();
    struct it_proc *a = it_worker_spawn(ctx, "workerA", args);
    IT_REQUIRE(ctx, a != NULL, "spawn worker A");
    IT_REQUIRE(ctx, it_req_produce_range(ctx, in, 0, N_REQUESTS, NULL) == 0,
               "produce %d requests", N_REQUESTS);

    ans->target = KILL_AFTER;
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_reached, ans, 120000,
                              "the first results from worker A") == 0,
               "worker A answered only %zu requests", ans->unique);
    IT_REQUIRE(ctx, it_proc_signal(a, SIGKILL) == 0, "SIGKILL worker A");
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(a, 10000, &status, NULL) == 0,
               "worker A survived SIGKILL");
    IT_REQUIRE(ctx, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
               "worker A ended with %s, not SIGKILL (it finished before "
               "the kill?)",
               it_status_str(status, st, sizeof st));
    size_t answered_at_kill = ans->unique;
    size_t results_at_kill = ans->results;

    struct it_proc *b = it_worker_spawn(ctx, "workerB", args);
    IT_REQUIRE(ctx, b != NULL, "spawn worker B");
    int rc = it_reader_wait(r, it_answers_all, ans, 200000,
                            "a result for every request after the kill");
    double seconds = (it_now_ms() - t0) / 1000.0;
    char missing[512];
    it_answers_missing(ans, 20, missing, sizeof missing);
    IT_REQUIRE(ctx, rc == 0, "%zu of %d requests answered; missing: %s",
               ans->unique, N_REQUESTS, missing);

    /* Worker A may have produced every result before the kill: then B's
     * work is to answer again what A never committed, and commit it. */
    IT_REQUIRE(
        ctx, it_wait_committed_at_end(ctx, in, group, N_PARTITIONS, 60000) == 0,
        "worker B did not commit to the end within 60 s");
    IT_REQUIRE(ctx, it_proc_signal(b, SIGTERM) == 0, "SIGTERM worker B");
    int64_t stop_ms = 0;
    IT_REQUIRE(ctx, it_proc_wait(b, STOP_TIMEOUT_MS, &status, &stop_ms) == 0,
               "worker B did not exit within %d ms of SIGTERM",
               STOP_TIMEOUT_MS);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker B ended with %s after SIGTERM",
               it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s to its end",
               out);
    IT_REQUIRE(ctx, ans->wrong == 0, "%zu wrong results; first: %s | %s | %s",
               ans->wrong, ans->first_wrong[0], ans->first_wrong[1],
               ans->first_wrong[2]);
    IT_REQUIRE(ctx, ans->foreign == 0, "%zu results with foreign keys",
               ans->foreign);

    it_require_committed_at_end(ctx, in, group, N_PARTITIONS);

    printf("RESULT it_kill answered=%zu requests=%d missing=0 "
           "duplicates=%zu answered_before_kill=%zu "
           "results_before_kill=%zu seconds=%.2f stop_ms=%lld\n",
           ans->unique, N_REQUESTS, it_answers_duplicates(ans),
           answered_at_kill, results_at_kill, seconds, (long long)stop_ms);
    it_reader_free(r);
    it_answers_free(ans);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill),
    };
    return it_main("kill", argc, argv, tests, sizeof tests / sizeof tests[0]);
}
