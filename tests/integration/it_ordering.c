/* Integration test: --ordering.  A backlog of requests over many keys and
 * one hot key (a quarter of all requests) is answered by a worker with
 * four inference threads; the results of each key must come out in the
 * order the requests were produced (each carries its sequence number in
 * its key as data), counted per key from the result topic: 0 violations
 * with --ordering key and partition.  The same load with --ordering none
 * is measured too, and its violations printed but not asserted (whether
 * threads overtake each other depends on scheduling).  Prints each
 * mode's throughput.
 */
#include "harness.h"
#include "pipe_util.h"

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

#define N_REQUESTS 60000
#define N_KEYS 400 /* plus the hot key */
#define HOT_EVERY 4
#define N_PARTITIONS 4

struct keystate {
    long last;     /* last sequence number seen, -1 before any */
    long sent;     /* requests produced under this key */
    unsigned seen; /* results */
};

struct run {
    struct keystate keys[N_KEYS + 1]; /* [N_KEYS] is the hot key */
    size_t results, violations, dups, errors;
    int64_t first_ms, last_ms;
    char first_violation[160];
};

static int key_index(const struct it_msg *m)
{
    if (m->key == NULL)
        return -1;
    if (strcmp(m->key, "hot") == 0)
        return N_KEYS;
    if (strncmp(m->key, "k-", 2) != 0)
        return -1;
    int k = atoi(m->key + 2);
    return k >= 0 && k < N_KEYS ? k : -1;
}

static void on_result(const struct it_msg *m, void *arg)
{
    struct run *r = arg;
    int k = key_index(m);
    if (k < 0)
        return;
    double v = 0;
    char err[256];
    if (pu_result_value(m, &v, err, sizeof err) != 1) {
        r->errors++;
        return;
    }
    struct keystate *ks = &r->keys[k];
    long seq = (long)v;
    int64_t now = it_now_ms();
    if (r->results++ == 0)
        r->first_ms = now;
    r->last_ms = now;
    if (seq < ks->last) {
        if (r->violations++ == 0)
            snprintf(r->first_violation, sizeof r->first_violation,
                     "key %s: seq %ld after %ld", m->key, seq, ks->last);
    } else if (seq == ks->last) {
        r->dups++;
    }
    if (seq > ks->last) {
        ks->last = seq;
    }
    ks->seen++;
}

static int all_seen(void *arg)
{
    struct run *r = arg;
    return r->results + r->errors >= N_REQUESTS;
}

/* Produce the backlog, run one worker with --ordering mode over it until
 * every result is in, and fill *out. */
static void run_mode(struct it_ctx *ctx, const char *mode, struct run *r)
{
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, NULL, NULL);
    rd_kafka_t *rk = pu_producer_new(ctx);
    IT_REQUIRE(ctx, rk != NULL, "producer");
    memset(r, 0, sizeof *r);
    for (int k = 0; k <= N_KEYS; k++)
        r->keys[k].last = -1;
    for (long i = 0; i < N_REQUESTS; i++) {
        int k = i % HOT_EVERY == 0 ? N_KEYS : (int)((i * 7919) % N_KEYS);
        char key[32], req[512];
        if (k == N_KEYS)
            snprintf(key, sizeof key, "hot");
        else
            snprintf(key, sizeof key, "k-%d", k);
        long seq = r->keys[k].sent++;
        pu_scale_request(req, sizeof req, key, 1, (double)seq, NULL);
        IT_REQUIRE(ctx, pu_produce(rk, t.in, -1, key, req, 0, NULL) == 0,
                   "produce %s", key);
    }
    IT_REQUIRE(ctx, pu_flush(rk, 120000) == 0, "deliver the backlog");
    rd_kafka_destroy(rk);

    struct it_reader *rout = it_reader_new(ctx, t.out, on_result, r);
    IT_REQUIRE(ctx, rout != NULL, "reader");
    const char *args[] = {
        "--group",     t.group, "--input-topic", t.in, "--output-topic", t.out,
        "--dlq-topic", t.dlq,   "--threads",     "4",  "--ordering",     mode,
        NULL};
    char label[64];
    snprintf(label, sizeof label, "worker-%s", mode);
    struct it_proc *w = it_worker_spawn(ctx, label, args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    IT_REQUIRE(
        ctx, it_reader_wait(rout, all_seen, r, 240000, "every result") == 0,
        "--ordering %s: %zu results of %d", mode, r->results, N_REQUESTS);
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, 45000, &status, NULL) == 0,
               "worker did not stop");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker exit status");
    it_require_committed_at_end(ctx, t.in, t.group, N_PARTITIONS);
    it_reader_free(rout);
    double secs = (double)(r->last_ms - r->first_ms) / 1000.0;
    print_message("--ordering %-9s %d results, %zu order violations, %zu "
                  "duplicates, %zu errors, %.0f results/s (first to last "
                  "result)%s%s\n",
                  mode, N_REQUESTS, r->violations, r->dups, r->errors,
                  secs > 0 ? (double)r->results / secs : 0.0,
                  r->violations ? "; first: " : "", r->first_violation);
    IT_REQUIRE(ctx, r->errors == 0, "--ordering %s: %zu error results", mode,
               r->errors);
}

static void test_ordering(void **state)
{
    struct it_ctx *ctx = *state;
    struct run *r = calloc(1, sizeof *r);
    IT_REQUIRE(ctx, r != NULL, "out of memory");
    run_mode(ctx, "none", r);
    run_mode(ctx, "key", r);
    IT_REQUIRE(ctx, r->violations == 0,
               "--ordering key: %zu order violations (%s)", r->violations,
               r->first_violation);
    run_mode(ctx, "partition", r);
    IT_REQUIRE(ctx, r->violations == 0,
               "--ordering partition: %zu order violations (%s)", r->violations,
               r->first_violation);
    free(r);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordering),
    };
    return it_main("ordering", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
