/* Integration test: stopping a worker at awkward moments.  SIGTERM or
 * SIGINT as soon as the worker can handle it, as soon as it shows up as a
 * group member (usually before its first assignment: librdkafka < 2.3
 * could crash closing a cooperative consumer then), and right after it
 * answered one request (assigned, idle).  Each must exit 0 quickly.
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

#define ROUNDS 6
/* Nothing is in flight, so the drain is instant; leaving the group and
 * closing take a moment, start-up of a sanitized build a few more. */
#define QUICK_EXIT_MS 15000

static struct it_proc *spawn(struct it_ctx *ctx, const struct it_topics *t,
                             const char *label, char *group)
{
    it_unique_name(ctx, "group", group, 256);
    const char *args[] = {"--group",
                          group,
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

/* Send sig and require exit 0 within QUICK_EXIT_MS; returns the time. */
static int64_t stop_quickly(struct it_ctx *ctx, struct it_proc *p, int sig)
{
    int status = 0;
    int64_t ms = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_signal(p, sig) == 0, "signal %s", it_proc_label(p));
    IT_REQUIRE(ctx, it_proc_wait(p, QUICK_EXIT_MS, &status, &ms) == 0,
               "%s did not exit within %d ms of %s", it_proc_label(p),
               QUICK_EXIT_MS, strsignal(sig));
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "%s ended with %s after %s", it_proc_label(p),
               it_status_str(status, st, sizeof st), strsignal(sig));
    return ms;
}

static void test_stop_at_startup(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 3, 1, NULL, NULL);
    int64_t worst = 0;
    char states[256] = "";
    size_t used = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int sig = round % 2 == 0 ? SIGTERM : SIGINT;
        char label[32], group[256];
        snprintf(label, sizeof label, "early%d", round);
        struct it_proc *p = spawn(ctx, &t, label, group);
        /* Signal the moment the worker handles it: earlier would only
         * test the kernel's default action. */
        IT_REQUIRE(ctx, it_proc_wait_signal_ready(p, sig, 20000) == 0,
                   "%s never installed a handler for %s", label,
                   strsignal(sig));
        if (round >= ROUNDS / 2) {
            /* The second half waits until it has joined the group, which
             * is the window between subscribing and being assigned. */
            const char *st = NULL;
            IT_REQUIRE(ctx,
                       it_group_wait_members(ctx, group, 1, 30000, &st) >= 1,
                       "%s never joined group %s", label, group);
            int w = snprintf(states + used, sizeof states - used, "%s%s",
                             used != 0 ? "," : "", st);
            if (w > 0 && (size_t)w < sizeof states - used)
                used += (size_t)w;
        }
        int64_t ms = stop_quickly(ctx, p, sig);
        if (ms > worst)
            worst = ms;
    }
    printf("RESULT it_startstop_early rounds=%d worst_exit_ms=%lld "
           "group_states_at_signal=%s\n",
           ROUNDS, (long long)worst, states);
}

static void test_stop_when_idle(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 3, 1, NULL, NULL);
    struct it_answers *ans = it_answers_new(2);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);
    int64_t ms[2];
    for (size_t round = 0; round < 2; round++) {
        int sig = round == 0 ? SIGTERM : SIGINT;
        char label[32], group[256];
        snprintf(label, sizeof label, "idle%zu", round);
        struct it_proc *p = spawn(ctx, &t, label, group);
        /* One answered request proves it is assigned and running. */
        IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, round, 1, NULL) == 0,
                   "produce r-%zu", round);
        ans->target = round + 1;
        IT_REQUIRE(ctx,
                   it_reader_wait(r, it_answers_reached, ans, 60000,
                                  "the answer to one request") == 0,
                   "%s answered nothing", label);
        ms[round] = stop_quickly(ctx, p, sig);
    }
    IT_REQUIRE(ctx, ans->wrong == 0, "wrong result: %s", ans->first_wrong[0]);
    printf("RESULT it_startstop_idle sigterm_exit_ms=%lld "
           "sigint_exit_ms=%lld\n",
           (long long)ms[0], (long long)ms[1]);
    it_reader_free(r);
    it_answers_free(ans);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_at_startup),
        cmocka_unit_test(test_stop_when_idle),
    };
    return it_main("startstop", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
