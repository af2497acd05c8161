/* Integration test: stopping is bounded whatever goes wrong, and a broker
 * restart costs nothing.  Runs against a private broker (ops/kafka.sh
 * start --dir), since it SIGKILLs and restarts it:
 *   - SIGTERM with work that cannot finish (results to a missing topic)
 *     exits 0 within --drain-timeout plus a margin, committing nothing;
 *   - the broker SIGKILLed and restarted mid-stream: the worker recovers
 *     without a restart and every request is answered and committed;
 *   - SIGTERM with the broker SIGKILLed exits within the budget + margin.
 */
#include "harness.h"
#include "private_broker.h"
#include "requests.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_PARTITIONS 4
/* Destroying the handles may take 1.5 s past the budget; the rest is
 * process start-up and exit on a loaded two-core machine. */
#define STOP_MARGIN_MS 3000

/* SIGTERM p; require an exit within limit_ms.  Returns the time taken and
 * the status in *status. */
static int64_t stop_within(struct it_ctx *ctx, struct it_proc *p,
                           int64_t limit_ms, int *status)
{
    int64_t ms = 0;
    IT_REQUIRE(ctx, it_proc_signal(p, SIGTERM) == 0, "SIGTERM %s",
               it_proc_label(p));
    IT_REQUIRE(ctx, it_proc_wait(p, limit_ms, status, &ms) == 0,
               "%s did not exit within %lld ms of SIGTERM", it_proc_label(p),
               (long long)limit_ms);
    return ms;
}

/* Results go to a topic that does not exist (the broker does not create
 * topics), so nothing can be delivered: at SIGTERM all consumed work is
 * abandoned at the deadline, purged, left uncommitted, and the exit is
 * clean and on time. */
static void test_abandoned_work(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    char missing[300];
    snprintf(missing, sizeof missing, "%s-missing", t.out);
    const size_t n = 2000;
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n, NULL) == 0,
               "produce %zu requests", n);
    const int budget_s = 3;
    const char *args[] = {"--group",
                          t.group,
                          "--input-topic",
                          t.in,
                          "--output-topic",
                          missing,
                          "--dlq-topic",
                          t.dlq,
                          "--drain-timeout",
                          "3",
                          "--stats-interval",
                          "1",
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "abandon", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    /* Also makes sure the log read below is this run's. */
    IT_REQUIRE(ctx, it_proc_wait_signal_ready(w, SIGTERM, 30000) == 0,
               "the worker handles SIGTERM");
    char want[64];
    snprintf(want, sizeof want, "consumed %zu,", n);
    IT_REQUIRE(ctx, it_proc_log_wait(w, want, 60000),
               "the worker consumed all %zu", n);
    int status = 0;
    int64_t ms =
        stop_within(ctx, w, budget_s * 1000 + STOP_MARGIN_MS + 5000, &status);
    char st[64];
    printf("RESULT it_stop_faults abandoned: budget_ms=%d shutdown_ms=%lld "
           "status=%s\n",
           budget_s * 1000, (long long)ms,
           it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "exit %s, not 0", st);
    IT_REQUIRE(ctx, ms <= budget_s * 1000 + STOP_MARGIN_MS,
               "shutdown took %lld ms, budget %d s", (long long)ms, budget_s);
    IT_REQUIRE(ctx, it_proc_log_wait(w, "shutdown budget ran out", 0),
               "no WARN with the counts");
    int64_t end[N_PARTITIONS], committed[N_PARTITIONS];
    IT_REQUIRE(
        ctx, it_offsets(ctx, t.in, t.group, N_PARTITIONS, end, committed) == 0,
        "offsets of %s", t.group);
    for (int p = 0; p < N_PARTITIONS; p++)
        IT_REQUIRE(ctx, committed[p] <= 0,
                   "partition %d committed at %lld with nothing answered", p,
                   (long long)committed[p]);
}

/* The broker dies and comes back while a worker answers a stream: the
 * worker keeps running, and every request, before and after, is answered
 * and committed. */
static void test_broker_restart(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    const size_t n1 = 5000, n2 = 2000;
    struct it_answers *ans = it_answers_new(n1 + n2);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);
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
    struct it_proc *w = it_worker_spawn(ctx, "restart", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n1, NULL) == 0,
               "produce %zu requests", n1);
    ans->target = 1000;
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_reached, ans, 60000,
                              "the first results") == 0,
               "%zu answered", ans->unique);
    int64_t t0 = it_now_ms();
    IT_REQUIRE(ctx, pb_kill() == 0, "SIGKILL the broker");
    IT_REQUIRE(ctx, pb_start() == 0, "restart the broker");
    int64_t down_ms = it_now_ms() - t0;
    IT_REQUIRE(ctx, it_proc_running(w), "the worker died with the broker");
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, n1, n2, NULL) == 0,
               "produce %zu more requests", n2);
    int rc = it_reader_wait(r, it_answers_all, ans, 150000,
                            "every request after the restart");
    char missing[512];
    it_answers_missing(ans, 20, missing, sizeof missing);
    IT_REQUIRE(ctx, rc == 0, "%zu of %zu answered; missing: %s", ans->unique,
               n1 + n2, missing);
    int64_t recover_ms = it_now_ms() - t0;
    IT_REQUIRE(ctx, ans->wrong == 0, "%zu wrong results", ans->wrong);
    int status = 0;
    int64_t stop_ms = stop_within(ctx, w, 10000 + STOP_MARGIN_MS, &status);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "exit status %d", status);
    it_require_committed_at_end(ctx, t.in, t.group, N_PARTITIONS);
    printf("RESULT it_stop_faults broker_restart: requests=%zu "
           "duplicates=%zu broker_down_ms=%lld all_answered_after_ms=%lld "
           "stop_ms=%lld\n",
           n1 + n2, it_answers_duplicates(ans), (long long)down_ms,
           (long long)recover_ms, (long long)stop_ms);
    it_reader_free(r);
    it_answers_free(ans);
}

/* SIGTERM right after the broker died: nothing can be delivered,
 * committed or left; the worker still exits within its budget. */
static void test_sigterm_broker_dead(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    /* Far more than one worker answers in the second before the kill, so
     * results are waiting for the dead broker when SIGTERM comes. */
    const size_t n = 200000;
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n, NULL) == 0,
               "produce %zu requests", n);
    const int budget_s = 5;
    const char *args[] = {"--group",
                          t.group,
                          "--input-topic",
                          t.in,
                          "--output-topic",
                          t.out,
                          "--dlq-topic",
                          t.dlq,
                          "--drain-timeout",
                          "5",
                          "--stats-interval",
                          "1",
                          "--threads",
                          "1",
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "brokerdead", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    /* Also makes sure the log read below is this run's. */
    IT_REQUIRE(ctx, it_proc_wait_signal_ready(w, SIGTERM, 30000) == 0,
               "the worker handles SIGTERM");
    IT_REQUIRE(ctx, it_proc_log_wait(w, "INFO  consumed ", 60000),
               "the worker consumed requests");
    IT_REQUIRE(ctx, pb_kill() == 0, "SIGKILL the broker");
    int status = 0;
    int64_t ms =
        stop_within(ctx, w, budget_s * 1000 + STOP_MARGIN_MS + 10000, &status);
    char st[64];
    printf("RESULT it_stop_faults broker_dead: budget_ms=%d shutdown_ms=%lld "
           "status=%s\n",
           budget_s * 1000, (long long)ms,
           it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx, ms <= budget_s * 1000 + STOP_MARGIN_MS,
               "shutdown took %lld ms, budget %d s", (long long)ms, budget_s);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "ended with %s", st);
    /* Leave a broker for the context's own clean-up. */
    IT_REQUIRE(ctx, pb_start() == 0, "restart the broker");
}

/* Options: --kafka-sh PATH --broker-dir DIR (the private broker, see
 * private_broker.h), then the harness's. */
int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abandoned_work),
        cmocka_unit_test(test_broker_restart),
        cmocka_unit_test(test_sigterm_broker_dead),
    };
    return pb_main("stop_faults", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
