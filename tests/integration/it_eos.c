/* Integration test: exactly-once mode (--exactly-once).  A read_committed
 * reader of the output topic must see every request answered exactly once
 *   - across a SIGKILL of the worker mid-stream and its restart with the
 *     same --instance-id (a read_uncommitted reader also sees the killed
 *     worker's aborted results: counted and printed);
 *   - across a broker SIGKILL and restart mid-stream;
 *   - when a second worker starts with the same --instance-id (so the same
 *     transactional.id): the first is fenced and exits 1, the second
 *     finishes the stream;
 *   - when a second worker joins mid-stream and the first then leaves
 *     (cooperative rebalances both ways).
 * Runs against a private broker (ops/kafka.sh start --dir), since it kills
 * and restarts it.
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

#define N_PARTITIONS 6
#define STOP_TIMEOUT_MS 45000

/* The worker's options for topics t and instance id: exactly-once, two
 * inference threads, then extra (NULL-terminated, may be NULL).  args must
 * hold 24 entries. */
static void eos_args(const char **args, const struct it_topics *t,
                     const char *instance, const char *const *extra)
{
    const char *a[] = {"--group",
                       t->group,
                       "--input-topic",
                       t->in,
                       "--output-topic",
                       t->out,
                       "--dlq-topic",
                       t->dlq,
                       "--threads",
                       "2",
                       "--exactly-once",
                       "--instance-id",
                       instance,
                       "--stats-interval",
                       "1",
                       NULL};
    size_t n = sizeof a / sizeof a[0] - 1;
    memcpy(args, a, sizeof a);
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
}

/* Read the whole output topic again with a reader of isolation level iso
 * and return its tally (caller frees). */
static struct it_answers *reread(struct it_ctx *ctx, const char *topic,
                                 size_t n, const char *iso)
{
    struct it_answers *a = it_answers_new(n);
    struct it_reader *r =
        it_reader_new_isolation(ctx, topic, it_answers_on_msg, a, iso);
    IT_REQUIRE(ctx, r != NULL, "%s reader on %s", iso, topic);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 120000) == 0,
               "read %s to its end (%s)", topic, iso);
    it_reader_free(r);
    return a;
}

/* SIGTERM p; require exit 0 within STOP_TIMEOUT_MS. */
static int64_t stop_clean(struct it_ctx *ctx, struct it_proc *p)
{
    int status = 0;
    int64_t ms = 0;
    char st[64];
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

/* The checks every test ends with: all n answered once under
 * read_committed, right, committed to the end. */
static void require_exactly_once(struct it_ctx *ctx, struct it_answers *ans,
                                 const struct it_topics *t)
{
    IT_REQUIRE(ctx, ans->wrong == 0, "%zu wrong results; first: %s | %s | %s",
               ans->wrong, ans->first_wrong[0], ans->first_wrong[1],
               ans->first_wrong[2]);
    IT_REQUIRE(ctx, ans->foreign == 0, "%zu results with foreign keys",
               ans->foreign);
    char missing[512];
    it_answers_missing(ans, 20, missing, sizeof missing);
    IT_REQUIRE(ctx, ans->unique == ans->n, "%zu of %zu answered; missing: %s",
               ans->unique, ans->n, missing);
    IT_REQUIRE(ctx, it_answers_duplicates(ans) == 0,
               "%zu duplicates under read_committed",
               it_answers_duplicates(ans));
    it_require_committed_at_end(ctx, t->in, t->group, N_PARTITIONS);
}

/* SIGKILL mid-stream, restart with the same instance id. */
static void test_kill(void **state)
{
    struct it_ctx *ctx = *state;
    const size_t n = 20000, kill_after = 7500;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    const char *args[24];
    eos_args(args, &t, "eos-kill", NULL);
    struct it_answers *ans = it_answers_new(n);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);

    /* The backlog first, so that the kill lands mid-stream. */
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n, NULL) == 0,
               "produce %zu requests", n);
    int64_t t0 = it_now_ms();
    struct it_proc *a = it_worker_spawn(ctx, "workerA", args);
    IT_REQUIRE(ctx, a != NULL, "spawn worker A");
    /* Results become visible to a read_committed reader 1,000 at a time,
     * as transactions commit: the kill waits on what a read_uncommitted
     * reader sees, so that it lands inside a transaction. */
    struct it_answers *raw = it_answers_new(n);
    struct it_reader *rr = it_reader_new_isolation(
        ctx, t.out, it_answers_on_msg, raw, "read_uncommitted");
    IT_REQUIRE(ctx, rr != NULL, "read_uncommitted reader on %s", t.out);
    raw->target = kill_after;
    IT_REQUIRE(ctx,
               it_reader_wait(rr, it_answers_reached, raw, 120000,
                              "the first results of worker A") == 0,
               "worker A answered only %zu requests", raw->unique);
    IT_REQUIRE(ctx, it_proc_signal(a, SIGKILL) == 0, "SIGKILL worker A");
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(a, 10000, &status, NULL) == 0,
               "worker A survived SIGKILL");
    IT_REQUIRE(ctx, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
               "worker A ended with %s, not SIGKILL (it finished first?)",
               it_status_str(status, st, sizeof st));
    /* Everything A committed is visible now: B must have work left. */
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s", t.out);
    size_t at_kill = ans->unique;
    IT_REQUIRE(ctx, at_kill < n, "worker A answered all %zu before the kill",
               n);

    struct it_proc *b = it_worker_spawn(ctx, "workerB", args);
    IT_REQUIRE(ctx, b != NULL, "spawn worker B");
    int rc = it_reader_wait(r, it_answers_all, ans, 200000,
                            "every result after the restart");
    double seconds = (double)(it_now_ms() - t0) / 1000.0;
    IT_REQUIRE(ctx, rc == 0, "%zu of %zu answered", ans->unique, n);
    IT_REQUIRE(
        ctx,
        it_wait_committed_at_end(ctx, t.in, t.group, N_PARTITIONS, 60000) == 0,
        "worker B did not commit to the end within 60 s");
    int64_t stop_ms = stop_clean(ctx, b);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s to its end",
               t.out);
    require_exactly_once(ctx, ans, &t);

    /* The same topic without the transactions' filter: what A had
     * produced in its open transaction is there too, aborted. */
    IT_REQUIRE(ctx, it_reader_catch_up(rr, 60000) == 0,
               "read %s to its end (read_uncommitted)", t.out);
    IT_REQUIRE(ctx, raw->unique == n, "read_uncommitted saw %zu of %zu",
               raw->unique, n);
    printf("RESULT it_eos kill: requests=%zu answered=%zu missing=0 "
           "duplicates_read_committed=%zu "
           "duplicates_read_uncommitted=%zu (aborted) "
           "committed_by_killed_worker=%zu seconds=%.2f stop_ms=%lld\n",
           n, ans->unique, it_answers_duplicates(ans),
           it_answers_duplicates(raw), at_kill, seconds, (long long)stop_ms);
    it_reader_free(rr);
    it_answers_free(raw);
    it_reader_free(r);
    it_answers_free(ans);
}

/* The broker dies and comes back mid-stream. */
static void test_broker_restart(void **state)
{
    struct it_ctx *ctx = *state;
    const size_t n1 = 20000, n2 = 2000;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    /* A member of a static group (--instance-id) whose session expires
     * while the coordinator is away is fenced on rejoining by librdkafka
     * 2.0.2 (a fatal error, exit 1): keep the session longer than the
     * restart takes on a loaded machine.  Batches of 1000 make the kill
     * land inside a transaction. */
    const char *const extra[] = {"-X", "session.timeout.ms=45000",
                                 "--txn-max-messages", "1000", NULL};
    const char *args[24];
    eos_args(args, &t, "eos-restart", extra);
    struct it_answers *ans = it_answers_new(n1 + n2);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);
    struct it_answers *raw = it_answers_new(n1 + n2);
    struct it_reader *rr = it_reader_new_isolation(
        ctx, t.out, it_answers_on_msg, raw, "read_uncommitted");
    IT_REQUIRE(ctx, rr != NULL, "read_uncommitted reader on %s", t.out);
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n1, NULL) == 0,
               "produce %zu requests", n1);
    struct it_proc *w = it_worker_spawn(ctx, "restart", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    /* Results of an open transaction are visible here only. */
    raw->target = 1500;
    IT_REQUIRE(ctx,
               it_reader_wait(rr, it_answers_reached, raw, 120000,
                              "the first results") == 0,
               "%zu answered", raw->unique);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s", t.out);
    size_t at_kill = ans->unique;
    int64_t t0 = it_now_ms();
    IT_REQUIRE(ctx, pb_kill() == 0, "SIGKILL the broker");
    IT_REQUIRE(ctx, pb_start() == 0, "restart the broker");
    int64_t down_ms = it_now_ms() - t0;
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, n1, n2, NULL) == 0,
               "produce %zu more requests", n2);
    /* The worker should ride the restart out.  librdkafka 2.0.2 may
     * however expire a static member's session during the outage and
     * then report it fenced (a fatal error): the worker must then exit 1,
     * and, restarted as an orchestrator would, still answer each request
     * exactly once. */
    int restarts = 0, rc = -1;
    while (rc != 0) {
        rc = it_reader_wait(r, it_answers_all, ans, 200000,
                            "every result after the restart");
        if (rc == 0 || it_proc_running(w) || restarts > 0)
            break;
        int status = 0;
        char st[64];
        /* Exited: only marks its exit as seen, so later waits go on. */
        (void)it_proc_signal(w, 0);
        IT_REQUIRE(ctx, it_proc_wait(w, 1000, &status, NULL) == 0, "reap");
        IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 1,
                   "the worker ended with %s, not exit 1",
                   it_status_str(status, st, sizeof st));
        restarts++;
        w = it_worker_spawn(ctx, "restart2", args);
        IT_REQUIRE(ctx, w != NULL, "restart the worker");
    }
    IT_REQUIRE(ctx, rc == 0, "%zu of %zu answered", ans->unique, n1 + n2);
    int64_t recover_ms = it_now_ms() - t0;
    IT_REQUIRE(
        ctx,
        it_wait_committed_at_end(ctx, t.in, t.group, N_PARTITIONS, 60000) == 0,
        "the worker did not commit to the end within 60 s");
    int64_t stop_ms = stop_clean(ctx, w);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s to its end",
               t.out);
    require_exactly_once(ctx, ans, &t);
    IT_REQUIRE(ctx, it_reader_catch_up(rr, 60000) == 0,
               "read %s to its end (read_uncommitted)", t.out);
    printf("RESULT it_eos broker_restart: requests=%zu missing=0 "
           "duplicates_read_committed=%zu "
           "duplicates_read_uncommitted=%zu (aborted) "
           "committed_before_kill=%zu broker_down_ms=%lld worker_restarts=%d "
           "all_answered_after_ms=%lld stop_ms=%lld\n",
           n1 + n2, it_answers_duplicates(ans), it_answers_duplicates(raw),
           at_kill, (long long)down_ms, restarts, (long long)recover_ms,
           (long long)stop_ms);
    it_reader_free(rr);
    it_answers_free(raw);
    it_reader_free(r);
    it_answers_free(ans);
}

/* A second worker with the same --instance-id fences the first. */
static void test_fencing(void **state)
{
    struct it_ctx *ctx = *state;
    const size_t n = 20000;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    const char *args[24];
    eos_args(args, &t, "eos-twin", NULL);
    struct it_answers *ans = it_answers_new(n);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);
    struct it_proc *a = it_worker_spawn(ctx, "first", args);
    IT_REQUIRE(ctx, a != NULL, "spawn the first worker");
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n, NULL) == 0,
               "produce %zu requests", n);
    ans->target = 2000;
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_reached, ans, 120000,
                              "the first committed results") == 0,
               "%zu answered", ans->unique);
    size_t at_twin = ans->unique;
    /* Signal 0 only marks the first worker's exit as expected. */
    IT_REQUIRE(ctx, it_proc_signal(a, 0) == 0, "the first worker runs");
    struct it_proc *b = it_worker_spawn(ctx, "twin", args);
    IT_REQUIRE(ctx, b != NULL, "spawn the twin");
    int status = 0;
    int64_t fenced_ms = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(a, 120000, &status, &fenced_ms) == 0,
               "the first worker still runs 120 s after its twin started");
    it_status_str(status, st, sizeof st);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 1,
               "the fenced worker ended with %s, not exit 1", st);
    int rc = it_reader_wait(r, it_answers_all, ans, 200000,
                            "every result from the twin");
    IT_REQUIRE(ctx, rc == 0, "%zu of %zu answered", ans->unique, n);
    IT_REQUIRE(
        ctx,
        it_wait_committed_at_end(ctx, t.in, t.group, N_PARTITIONS, 60000) == 0,
        "the twin did not commit to the end within 60 s");
    (void)stop_clean(ctx, b);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s to its end",
               t.out);
    require_exactly_once(ctx, ans, &t);
    struct it_answers *raw = reread(ctx, t.out, n, "read_uncommitted");
    printf("RESULT it_eos fencing: requests=%zu missing=0 "
           "duplicates_read_committed=%zu "
           "duplicates_read_uncommitted=%zu (aborted) "
           "answered_before_twin=%zu fenced_exit=%s fenced_after_ms=%lld\n",
           n, it_answers_duplicates(ans), it_answers_duplicates(raw), at_twin,
           st, (long long)fenced_ms);
    it_answers_free(raw);
    it_reader_free(r);
    it_answers_free(ans);
}

/* A second worker joins mid-stream (a cooperative rebalance: the first
 * commits its open transaction before giving partitions up), then the
 * first is stopped (its partitions move back): each request still once. */
static void test_rebalance(void **state)
{
    struct it_ctx *ctx = *state;
    const size_t n = 60000;
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    const char *args_a[24], *args_b[24];
    eos_args(args_a, &t, "eos-member-a", NULL);
    eos_args(args_b, &t, "eos-member-b", NULL);
    struct it_answers *ans = it_answers_new(n);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, n, NULL) == 0,
               "produce %zu requests", n);
    struct it_proc *a = it_worker_spawn(ctx, "memberA", args_a);
    IT_REQUIRE(ctx, a != NULL, "spawn worker A");
    ans->target = 2000;
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_reached, ans, 120000,
                              "the first committed results") == 0,
               "%zu answered", ans->unique);
    size_t at_join = ans->unique;
    struct it_proc *b = it_worker_spawn(ctx, "memberB", args_b);
    IT_REQUIRE(ctx, b != NULL, "spawn worker B");
    IT_REQUIRE(ctx, it_group_wait_members(ctx, t.group, 2, 60000, NULL) == 2,
               "worker B did not join the group");
    /* A gave partitions up (committing its open transaction first) and B
     * took them. */
    IT_REQUIRE(ctx, it_proc_log_wait(a, "INFO  revoked partitions [", 60000),
               "worker A gave no partition up");
    IT_REQUIRE(ctx, it_proc_log_wait(b, "INFO  assigned partitions [", 60000),
               "worker B got no partition");
    IT_REQUIRE(ctx, ans->unique < n, "all answered before the rebalance");
    ans->target = ans->unique + (n - ans->unique) / 2;
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_reached, ans, 200000,
                              "results with two workers") == 0,
               "%zu answered", ans->unique);
    size_t at_leave = ans->unique;
    int64_t stop_a_ms = stop_clean(ctx, a);
    int rc = it_reader_wait(r, it_answers_all, ans, 200000,
                            "every result after worker A left");
    IT_REQUIRE(ctx, rc == 0, "%zu of %zu answered", ans->unique, n);
    IT_REQUIRE(
        ctx,
        it_wait_committed_at_end(ctx, t.in, t.group, N_PARTITIONS, 60000) == 0,
        "worker B did not commit to the end within 60 s");
    (void)stop_clean(ctx, b);
    IT_REQUIRE(ctx, it_reader_catch_up(r, 60000) == 0, "read %s to its end",
               t.out);
    require_exactly_once(ctx, ans, &t);
    struct it_answers *raw = reread(ctx, t.out, n, "read_uncommitted");
    printf("RESULT it_eos rebalance: requests=%zu missing=0 "
           "duplicates_read_committed=%zu "
           "duplicates_read_uncommitted=%zu (aborted) answered_at_join=%zu "
           "answered_at_leave=%zu stop_a_ms=%lld\n",
           n, it_answers_duplicates(ans), it_answers_duplicates(raw), at_join,
           at_leave, (long long)stop_a_ms);
    it_answers_free(raw);
    it_reader_free(r);
    it_answers_free(ans);
}

/* Options: --kafka-sh PATH --broker-dir DIR (the private broker, see
 * private_broker.h), then the harness's. */
int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_fencing),
        cmocka_unit_test(test_rebalance),
        cmocka_unit_test(test_broker_restart),
    };
    return pb_main("eos", argc, argv, tests, sizeof tests / sizeof tests[0]);
}
