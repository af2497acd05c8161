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

static const char *kafka_sh;   /* ops/kafka.sh */
static const char *broker_dir; /* the private broker's --dir */
static char broker_port[16];

/* Run "bash kafka_sh <args>"; the first output line goes to out (may be
 * NULL).  Returns the exit status, or -1. */
static int kafka(const char *args, char *out, size_t size)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s' %s --dir '%s'", kafka_sh, args,
             broker_dir);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    char line[256] = "";
    if (fgets(line, sizeof line, f) != NULL && out != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        snprintf(out, size, "%s", line);
    }
    while (fgets(line, sizeof line, f) != NULL)
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* SIGKILL the private broker and wait (bounded) until it is gone. */
static int broker_kill(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/kafka.pid", broker_dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGKILL) != 0)
        return -1;
    int64_t deadline = it_now_ms() + 30000;
    while (kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
        if (it_now_ms() > deadline)
            return -1;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, with a deadline */
    }
    return 0;
}

static int broker_start(void)
{
    char args[64], addr[128] = "";
    snprintf(args, sizeof args, "start --port %s", broker_port);
    if (kafka(args, addr, sizeof addr) == 0)
        return 0;
    /* The script's own status says whether the broker runs, whatever
     * went wrong after starting it. */
    return kafka("status", NULL, 0);
}

/* True once the log of p contains text; polls up to timeout_ms. */
static int log_has(struct it_proc *p, const char *text, int64_t timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        FILE *f = fopen(it_proc_log_path(p), "r");
        char line[2048];
        int found = 0;
        while (f != NULL && !found && fgets(line, sizeof line, f) != NULL)
            found = strstr(line, text) != NULL;
        if (f != NULL)
            fclose(f);
        if (found)
            return 1;
        if (it_now_ms() > deadline || !it_proc_running(p))
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, with a deadline */
    }
}

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
    IT_REQUIRE(ctx, log_has(w, want, 60000), "the worker consumed all %zu", n);
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
    IT_REQUIRE(ctx, log_has(w, "shutdown budget ran out", 0),
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
    IT_REQUIRE(ctx, broker_kill() == 0, "SIGKILL the broker");
    IT_REQUIRE(ctx, broker_start() == 0, "restart the broker");
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
    IT_REQUIRE(ctx, log_has(w, "INFO  consumed ", 60000),
               "the worker consumed requests");
    IT_REQUIRE(ctx, broker_kill() == 0, "SIGKILL the broker");
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
    IT_REQUIRE(ctx, broker_start() == 0, "restart the broker");
}

/* Strip "--kafka-sh PATH --broker-dir DIR" from argv, start the private
 * broker there, point the harness at it, run, stop the broker. */
int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--kafka-sh") == 0)
            kafka_sh = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--broker-dir") == 0)
            broker_dir = argv[++i];
        else
            argv[n++] = argv[i];
    }
    argv[n] = NULL;
    if (kafka_sh == NULL || broker_dir == NULL) {
        fprintf(stderr, "it_stop_faults: --kafka-sh and --broker-dir needed\n");
        return 2;
    }
    char addr[128] = "";
    (void)kafka("stop", NULL, 0);
    if (kafka("start", addr, sizeof addr) != 0 || strchr(addr, ':') == NULL) {
        fprintf(stderr, "it_stop_faults: the private broker did not start\n");
        return 1;
    }
    snprintf(broker_port, sizeof broker_port, "%s", strrchr(addr, ':') + 1);
    setenv("KINFER_TEST_BROKERS", addr, 1);
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abandoned_work),
        cmocka_unit_test(test_broker_restart),
        cmocka_unit_test(test_sigterm_broker_dead),
    };
    int rc =
        it_main("stop_faults", n, argv, tests, sizeof tests / sizeof tests[0]);
    (void)kafka("stop", NULL, 0);
    return rc;
}
