/* Integration test: the DLQ ratio guard.  A few valid requests, then a
 * long stream of undecodable ones (a broken upstream).  A worker with
 * --dlq-guard 50 --dlq-guard-window 200 must stop by itself with exit
 * status 3 and a clear log line after about one window, instead of
 * draining the whole stream into the DLQ: far fewer dead letters than bad
 * requests, and the rest left uncommitted for after the fix.
 */
#include "harness.h"
#include "pipe_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_VALID 50
#define N_BAD 4000
#define WINDOW 200

struct counts {
    size_t results, dead;
};

static void on_msg(const struct it_msg *m, void *arg)
{
    (void)m;
    ((struct counts *)arg)->results++;
}

static void on_dead(const struct it_msg *m, void *arg)
{
    (void)m;
    ((struct counts *)arg)->dead++;
}

static int log_has(struct it_proc *p, const char *what)
{
    FILE *f = fopen(it_proc_log_path(p), "r");
    if (f == NULL)
        return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

static void test_dlq_guard(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 2, 2, NULL, NULL);
    rd_kafka_t *rk = pu_producer_new(ctx);
    IT_REQUIRE(ctx, rk != NULL, "producer");
    for (int i = 0; i < N_VALID + N_BAD; i++) {
        char key[32], value[256];
        snprintf(key, sizeof key, "k-%d", i);
        if (i < N_VALID)
            pu_scale_request(value, sizeof value, key, 2, i, NULL);
        else
            snprintf(value, sizeof value, "not JSON %d", i);
        IT_REQUIRE(ctx, pu_produce(rk, t.in, -1, key, value, 0, NULL) == 0,
                   "produce %s", key);
    }
    IT_REQUIRE(ctx, pu_flush(rk, 60000) == 0, "deliver requests");
    rd_kafka_destroy(rk);

    const char *args[] = {"--group",
                          t.group,
                          "--input-topic",
                          t.in,
                          "--output-topic",
                          t.out,
                          "--dlq-topic",
                          t.dlq,
                          "--threads",
                          "2",
                          "--dlq-guard",
                          "50",
                          "--dlq-guard-window",
                          "200",
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "worker", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, 120000, &status, NULL) == 0,
               "the worker did not stop by itself");
    char st[64];
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 3,
               "worker ended with %s, expected exit 3",
               it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx, log_has(w, "DLQ guard:"), "no DLQ guard log line");

    struct counts c = {0, 0};
    struct it_reader *rout = it_reader_new(ctx, t.out, on_msg, &c);
    struct it_reader *rdlq = it_reader_new(ctx, t.dlq, on_dead, &c);
    IT_REQUIRE(ctx, rout != NULL && rdlq != NULL, "readers");
    IT_REQUIRE(ctx, it_reader_catch_up(rout, 60000) == 0, "read results");
    IT_REQUIRE(ctx, it_reader_catch_up(rdlq, 60000) == 0, "read DLQ");

    int64_t end[2], committed[2];
    IT_REQUIRE(ctx, it_offsets(ctx, t.in, t.group, 2, end, committed) == 0,
               "offsets");
    int64_t left = 0;
    for (int p = 0; p < 2; p++)
        left += end[p] - (committed[p] >= 0 ? committed[p] : 0);
    print_message("%d bad requests: the guard stopped the worker (exit 3) "
                  "after %zu dead letters and %zu answers; %" PRId64
                  " requests left uncommitted\n",
                  N_BAD, c.dead, c.results, left);
    IT_REQUIRE(ctx, c.dead >= WINDOW / 2,
               "only %zu dead letters: tripped too early", c.dead);
    IT_REQUIRE(ctx, c.dead < 3 * WINDOW,
               "%zu dead letters: the guard let the stream drain", c.dead);
    IT_REQUIRE(ctx, left > N_BAD / 2,
               "only %" PRId64 " requests left uncommitted", left);
    it_reader_free(rout);
    it_reader_free(rdlq);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlq_guard),
    };
    return it_main("dlq_guard", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
