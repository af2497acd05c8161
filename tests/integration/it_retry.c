/* Integration test: retries of transient model failures, through the
 * test plugin "flaky" (plugins/test_flaky), which fails each request
 * transiently fail_times times (per item, or as a whole call with
 * KINFER_ERR_UNAVAILABLE) and then answers which attempt succeeded.
 * With --retry-attempts 4: a request failing 0-3 times is answered by its
 * attempt fail_times+1 (so every retry ran, and no more); one failing 10
 * times gets the error result "gave up after 4 attempts" and a dead
 * letter with kinfer-attempts: 4; a permanent failure is not retried (no
 * dead letter).  The worker runs with --ordering key, so a retry also
 * holds its key's later requests: each key's results stay in order.
 */
#include "harness.h"
#include "pipe_util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_OK 400    /* succeed after 0..3 transient failures */
#define N_DEAD 30   /* fail transiently 10 times: exhausted */
#define N_BROKEN 10 /* fail for good: not retried */
#define N_KEYS 40
#define ATTEMPTS "4"

static const char *flaky_plugin;
static const char *scratch;

enum kind { K_OK, K_DEAD, K_BROKEN };

struct req {
    enum kind kind;
    int fail_times;
    int key, seq;
    unsigned results, errors, dead;
    long attempt;
    char problem[256];
};

struct run {
    struct req reqs[N_OK + N_DEAD + N_BROKEN];
    long last[N_KEYS];
    size_t answered, violations, foreign;
    char first_problem[300];
};

#define N_REQS (N_OK + N_DEAD + N_BROKEN)

static int req_of(const struct it_msg *m, struct run *r)
{
    (void)r;
    char want[16];
    if (m->headers == NULL ||
        it_header_str(m->headers, "req", want, sizeof want) <= 0)
        return -1;
    int i = atoi(want);
    return i >= 0 && i < N_REQS ? i : -1;
}

static void problem(struct run *r, struct req *q, const char *what)
{
    snprintf(q->problem, sizeof q->problem, "%s", what);
    if (r->first_problem[0] == '\0')
        snprintf(r->first_problem, sizeof r->first_problem, "%s", what);
}

static void on_result(const struct it_msg *m, void *arg)
{
    struct run *r = arg;
    int i = req_of(m, r);
    if (i < 0) {
        r->foreign++;
        return;
    }
    struct req *q = &r->reqs[i];
    if (q->results + q->errors == 0)
        r->answered++;
    json_error_t jerr;
    json_t *res = json_loadb(m->value, m->len, 0, &jerr);
    const char *err = json_string_value(json_object_get(res, "error"));
    json_t *outs = json_object_get(res, "outputs");
    char what[256];
    if (err != NULL) {
        q->errors++;
        if (q->kind == K_OK) {
            snprintf(what, sizeof what, "req %d: error %s", i, err);
            problem(r, q, what);
        } else if (q->kind == K_DEAD &&
                   strstr(err, "gave up after 4 attempts") == NULL) {
            snprintf(what, sizeof what,
                     "req %d: error lacks 'gave up "
                     "after 4 attempts': %s",
                     i, err);
            problem(r, q, what);
        } else if (q->kind == K_BROKEN &&
                   strstr(err, "broken for good") == NULL) {
            snprintf(what, sizeof what, "req %d: error %s", i, err);
            problem(r, q, what);
        }
    } else {
        q->results++;
        json_t *x = NULL, *att = NULL;
        for (size_t o = 0; o < json_array_size(outs); o++) {
            json_t *t = json_array_get(outs, o);
            const char *name = json_string_value(json_object_get(t, "name"));
            if (name != NULL && strcmp(name, "x") == 0)
                x = json_array_get(json_object_get(t, "data"), 0);
            if (name != NULL && strcmp(name, "attempt") == 0)
                att = json_array_get(json_object_get(t, "data"), 0);
        }
        q->attempt = json_is_integer(att) ? (long)json_integer_value(att) : -1;
        if (q->kind != K_OK) {
            snprintf(what, sizeof what, "req %d (kind %d) succeeded", i,
                     q->kind);
            problem(r, q, what);
        } else if (q->attempt != q->fail_times + 1) {
            snprintf(what, sizeof what,
                     "req %d: succeeded on attempt %ld, expected %d", i,
                     q->attempt, q->fail_times + 1);
            problem(r, q, what);
        }
        long seq = json_is_number(x) ? (long)json_number_value(x) : -1;
        if (seq < r->last[q->key])
            r->violations++;
        else
            r->last[q->key] = seq;
    }
    json_decref(res);
}

static void on_dead(const struct it_msg *m, void *arg)
{
    struct run *r = arg;
    int i = req_of(m, r);
    if (i < 0)
        return;
    struct req *q = &r->reqs[i];
    q->dead++;
    char att[16];
    char what[256];
    if (q->kind != K_DEAD) {
        snprintf(what, sizeof what, "req %d (kind %d) dead-lettered", i,
                 q->kind);
        problem(r, q, what);
    } else if (it_header_str(m->headers, "kinfer-attempts", att, sizeof att) <
                   0 ||
               strcmp(att, ATTEMPTS) != 0) {
        snprintf(what, sizeof what, "req %d: kinfer-attempts is '%s'", i,
                 it_header_str(m->headers, "kinfer-attempts", att, sizeof att) <
                         0
                     ? "(absent)"
                     : att);
        problem(r, q, what);
    }
}

static int all_answered(void *arg)
{
    return ((struct run *)arg)->answered == N_REQS;
}

static int all_dead(void *arg)
{
    struct run *r = arg;
    for (int i = 0; i < N_REQS; i++)
        if (r->reqs[i].kind == K_DEAD && r->reqs[i].dead == 0)
            return 0;
    return 1;
}

/* N from the worker's "N retries after transient model failures" line,
 * or -1. */
static long logged_retries(struct it_proc *w)
{
    FILE *f = fopen(it_proc_log_path(w), "r");
    if (f == NULL)
        return -1;
    char line[1024];
    long n = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *at = strstr(line, " retries after transient");
        if (at == NULL)
            continue;
        const char *p = at;
        while (p > line && p[-1] >= '0' && p[-1] <= '9')
            p--;
        n = strtol(p, NULL, 10);
    }
    fclose(f);
    return n;
}

static void write_repo(char *repo, size_t size)
{
    snprintf(repo, size, "%s/repo-%ld", scratch, (long)getpid());
    char dir[1024], path[1100];
    assert_true(mkdir(scratch, 0755) == 0 || errno == EEXIST);
    assert_true(mkdir(repo, 0755) == 0 || errno == EEXIST);
    snprintf(dir, sizeof dir, "%s/flaky", repo);
    assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"backend\": \"flaky\"}\n", f);
    assert_int_equal(fclose(f), 0);
}

static void test_retry(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 2, 2, NULL, NULL);
    char repo[1024];
    write_repo(repo, sizeof repo);
    struct run *r = calloc(1, sizeof *r);
    IT_REQUIRE(ctx, r != NULL, "out of memory");
    for (int k = 0; k < N_KEYS; k++)
        r->last[k] = -1;
    int seq[N_KEYS] = {0};

    rd_kafka_t *rk = pu_producer_new(ctx);
    IT_REQUIRE(ctx, rk != NULL, "producer");
    for (int i = 0; i < N_REQS; i++) {
        struct req *q = &r->reqs[i];
        q->kind = i < N_OK ? K_OK : i < N_OK + N_DEAD ? K_DEAD : K_BROKEN;
        q->fail_times = q->kind == K_OK ? i % 4 : q->kind == K_DEAD ? 10 : -1;
        q->key = i % N_KEYS;
        q->seq = seq[q->key]++;
        char key[32], id[32], extra[96], value[512], num[16];
        snprintf(key, sizeof key, "k-%d", q->key);
        snprintf(id, sizeof id, "q-%d", i);
        snprintf(extra, sizeof extra, ",\"fail_times\":%d%s", q->fail_times,
                 i % 3 == 0 ? ",\"whole_batch\":true" : "");
        snprintf(value, sizeof value,
                 "{\"id\":\"%s\",\"model_name\":\"flaky\",\"parameters\":{"
                 "\"factor\":1%s},\"inputs\":[{\"name\":\"x\",\"shape\":[1],"
                 "\"datatype\":\"FP64\",\"data\":[%d]}]}",
                 id, extra, q->seq);
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        snprintf(num, sizeof num, "%d", i);
        rd_kafka_header_add(h, "req", -1, num, -1);
        IT_REQUIRE(ctx, pu_produce(rk, t.in, -1, key, value, 0, h) == 0,
                   "produce %s", id);
    }
    IT_REQUIRE(ctx, pu_flush(rk, 60000) == 0, "deliver requests");
    rd_kafka_destroy(rk);

    struct it_reader *rout = it_reader_new(ctx, t.out, on_result, r);
    struct it_reader *rdlq = it_reader_new(ctx, t.dlq, on_dead, r);
    IT_REQUIRE(ctx, rout != NULL && rdlq != NULL, "readers");
    const char *args[] = {"--group",
                          t.group,
                          "--input-topic",
                          t.in,
                          "--output-topic",
                          t.out,
                          "--dlq-topic",
                          t.dlq,
                          "--threads",
                          "4",
                          "--plugin",
                          flaky_plugin,
                          "--model-repo",
                          repo,
                          "--model",
                          "flaky",
                          "--ordering",
                          "key",
                          "--retry-attempts",
                          ATTEMPTS,
                          "--retry-backoff",
                          "20",
                          "--retry-backoff-max",
                          "200",
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "worker", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    int64_t t0 = it_now_ms();
    IT_REQUIRE(ctx,
               it_reader_wait(rout, all_answered, r, 120000,
                              "an answer for every request") == 0,
               "answered %zu of %d", r->answered, N_REQS);
    int64_t took = it_now_ms() - t0;
    IT_REQUIRE(ctx,
               it_reader_wait(rdlq, all_dead, r, 60000,
                              "the exhausted requests dead-lettered") == 0,
               "exhausted requests missing from the DLQ");
    (void)it_reader_drain(rout, 1000);
    (void)it_reader_drain(rdlq, 500);

    size_t by_attempt[5] = {0}, dups = 0, dead = 0, retries = 0;
    for (int i = 0; i < N_REQS; i++) {
        struct req *q = &r->reqs[i];
        IT_REQUIRE(ctx, q->problem[0] == '\0', "%s", q->problem);
        dups += q->results + q->errors > 1;
        dead += q->dead;
        if (q->kind == K_OK && q->attempt >= 1 && q->attempt <= 4) {
            by_attempt[q->attempt]++;
            retries += (size_t)q->attempt - 1;
        }
        if (q->kind == K_DEAD)
            retries += 3;
    }
    print_message("answered in %lld ms: %zu/%zu/%zu/%zu succeeded on attempt "
                  "1/2/3/4; %d exhausted, %zu dead letters with "
                  "kinfer-attempts: " ATTEMPTS "; %d broken, not retried; "
                  "%zu retries in all; %zu order violations\n",
                  (long long)took, by_attempt[1], by_attempt[2], by_attempt[3],
                  by_attempt[4], N_DEAD, dead, N_BROKEN, retries,
                  r->violations);
    IT_REQUIRE(ctx, dups == 0, "%zu requests answered twice", dups);
    IT_REQUIRE(ctx, dead == N_DEAD, "%zu dead letters, expected %d", dead,
               N_DEAD);
    IT_REQUIRE(ctx, r->violations == 0, "%zu order violations", r->violations);

    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, 45000, &status, NULL) == 0,
               "worker did not stop");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker exit status");
    it_require_committed_at_end(ctx, t.in, t.group, 2);
    /* The worker's own count, logged at exit, matches the answers'. */
    long logged = logged_retries(w);
    IT_REQUIRE(ctx, logged == (long)retries,
               "the worker logged %ld retries, the answers say %zu", logged,
               retries);
    it_reader_free(rout);
    it_reader_free(rdlq);
    free(r);
}

/* --retry-dlq 0 and deadlines during a backoff: requests that always
 * fail transiently, without a deadline (out of attempts: error result, no
 * dead letter) and, sent once the worker answers, with a
 * kinfer-deadline-ms header 3 s ahead (expired while waiting for a retry,
 * after at least one run: "expired: ... failed transiently N times", no
 * dead letter). */
#define N_LONG 10
#define LONG_ATTEMPTS "40"

struct long_run {
    unsigned gave_up, expired_after_runs, other, dead;
    size_t answered;
    int seen[2 * N_LONG + 1]; /* [2 * N_LONG]: the probe */
    char first_other[300];
};

static void on_long_result(const struct it_msg *m, void *arg)
{
    struct long_run *r = arg;
    char num[16];
    if (it_header_str(m->headers, "req", num, sizeof num) <= 0)
        return;
    int i = atoi(num);
    if (i < 0 || i > 2 * N_LONG)
        return;
    if (i == 2 * N_LONG) { /* the probe: the worker is up */
        r->seen[i]++;
        return;
    }
    if (r->seen[i]++ == 0)
        r->answered++;
    json_error_t jerr;
    json_t *res = json_loadb(m->value, m->len, 0, &jerr);
    const char *err = json_string_value(json_object_get(res, "error"));
    if (i < N_LONG && err != NULL &&
        strstr(err, "gave up after " LONG_ATTEMPTS " attempts") != NULL)
        r->gave_up++;
    else if (i >= N_LONG && err != NULL && strncmp(err, "expired:", 8) == 0 &&
             strstr(err, "failed transiently") != NULL)
        r->expired_after_runs++;
    else if (r->other++ == 0)
        snprintf(r->first_other, sizeof r->first_other, "req %d: %.250s", i,
                 m->value);
    json_decref(res);
}

static void on_long_dead(const struct it_msg *m, void *arg)
{
    (void)m;
    ((struct long_run *)arg)->dead++;
}

static int long_all(void *arg)
{
    return ((struct long_run *)arg)->answered == 2 * N_LONG;
}

/* Queue request i of the long run: fail_times as given, and a deadline
 * header when deadline > 0. */
static int produce_long(rd_kafka_t *rk, const char *topic, int i,
                        int fail_times, int64_t deadline)
{
    char id[32], value[512], num[32];
    snprintf(id, sizeof id, "long-%d", i);
    snprintf(value, sizeof value,
             "{\"id\":\"%s\",\"model_name\":\"flaky\",\"parameters\":{"
             "\"fail_times\":%d},\"inputs\":[{\"name\":\"x\","
             "\"shape\":[1],\"datatype\":\"FP64\",\"data\":[1]}]}",
             id, fail_times);
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    snprintf(num, sizeof num, "%d", i);
    rd_kafka_header_add(h, "req", -1, num, -1);
    if (deadline > 0) {
        snprintf(num, sizeof num, "%lld", (long long)deadline);
        rd_kafka_header_add(h, "kinfer-deadline-ms", -1, num, -1);
    }
    return pu_produce(rk, topic, -1, id, value, 0, h);
}

static int probe_answered(void *arg)
{
    return ((struct long_run *)arg)->seen[2 * N_LONG] > 0;
}

static void test_no_dlq_and_deadline(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 2, 2, NULL, NULL);
    char repo[1024];
    write_repo(repo, sizeof repo);
    rd_kafka_t *rk = pu_producer_new(ctx);
    IT_REQUIRE(ctx, rk != NULL, "producer");
    /* Always failing, no deadline; then a probe that succeeds at once. */
    for (int i = 0; i < N_LONG; i++)
        IT_REQUIRE(ctx, produce_long(rk, t.in, i, 100000, 0) == 0,
                   "produce long-%d", i);
    IT_REQUIRE(ctx, produce_long(rk, t.in, 2 * N_LONG, 0, 0) == 0,
               "produce the probe");
    IT_REQUIRE(ctx, pu_flush(rk, 60000) == 0, "deliver requests");

    struct long_run *r = calloc(1, sizeof *r);
    IT_REQUIRE(ctx, r != NULL, "out of memory");
    struct it_reader *rout = it_reader_new(ctx, t.out, on_long_result, r);
    struct it_reader *rdlq = it_reader_new(ctx, t.dlq, on_long_dead, r);
    IT_REQUIRE(ctx, rout != NULL && rdlq != NULL, "readers");
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
                          "--plugin",
                          flaky_plugin,
                          "--model-repo",
                          repo,
                          "--model",
                          "flaky",
                          "--retry-attempts",
                          LONG_ATTEMPTS,
                          "--retry-backoff",
                          "100",
                          "--retry-backoff-max",
                          "400",
                          "--retry-dlq",
                          "0",
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "worker-nodlq", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    IT_REQUIRE(ctx,
               it_reader_wait(rout, probe_answered, r, 120000,
                              "the probe's answer") == 0,
               "the worker answered nothing");
    /* The worker is consuming: these get 3 s, far less than 40 attempts
     * take (about 10 s), so they expire between two runs. */
    int64_t deadline = pu_epoch_ms() + 3000;
    for (int i = N_LONG; i < 2 * N_LONG; i++)
        IT_REQUIRE(ctx, produce_long(rk, t.in, i, 100000, deadline) == 0,
                   "produce long-%d", i);
    IT_REQUIRE(ctx, pu_flush(rk, 60000) == 0, "deliver requests");
    rd_kafka_destroy(rk);
    IT_REQUIRE(ctx,
               it_reader_wait(rout, long_all, r, 120000,
                              "an answer for every request") == 0,
               "answered %zu of %d", r->answered, 2 * N_LONG);
    (void)it_reader_drain(rdlq, 1000);
    print_message("--retry-dlq 0: %u of %d gave up after " LONG_ATTEMPTS
                  " attempts, %u of %d expired while waiting for a retry, "
                  "%u dead letters\n",
                  r->gave_up, N_LONG, r->expired_after_runs, N_LONG, r->dead);
    IT_REQUIRE(ctx, r->other == 0, "unexpected answer %s", r->first_other);
    IT_REQUIRE(ctx, r->gave_up == N_LONG && r->expired_after_runs == N_LONG,
               "%u gave up, %u expired after runs", r->gave_up,
               r->expired_after_runs);
    IT_REQUIRE(ctx, r->dead == 0, "%u dead letters with --retry-dlq 0",
               r->dead);
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, 45000, &status, NULL) == 0,
               "worker did not stop");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker exit status");
    it_reader_free(rout);
    it_reader_free(rdlq);
    free(r);
}

int main(int argc, char **argv)
{
    char **h_argv = calloc((size_t)argc + 1, sizeof *h_argv);
    int h_argc = 0;
    if (h_argv == NULL)
        return 1;
    h_argv[h_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--flaky") == 0 && i + 1 < argc)
            flaky_plugin = argv[++i];
        else if (strcmp(argv[i], "--scratch") == 0 && i + 1 < argc)
            scratch = argv[++i];
        else
            h_argv[h_argc++] = argv[i];
    }
    if (flaky_plugin == NULL || scratch == NULL) {
        fprintf(stderr,
                "usage: %s --flaky PATH --scratch DIR <harness "
                "options>\n",
                argv[0]);
        free(h_argv);
        return 1;
    }
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_no_dlq_and_deadline),
    };
    int rc =
        it_main("retry", h_argc, h_argv, tests, sizeof tests / sizeof tests[0]);
    free(h_argv);
    return rc;
}
