/* Integration test: no poison pill.  Every oversized request shape (a huge
 * key, a ~1 MB header, many headers, values around the request cap, a
 * tombstone, a result too large to send) interleaved with valid requests
 * on one partition: the worker stays up, answers each one, sheds what does
 * not fit, never produces past its message.max.bytes, and commits to the
 * end.
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

#define VALID_AFTER_EACH 3
#define STOP_TIMEOUT_MS 45000
/* The worker's producer default (lib/worker.c). */
#define MAX_MESSAGE_BYTES 1048576
#define REQUEST_CAP 1000000 /* --max-request-bytes default */
/* A ~1 MB header: with it no answer fits whole in MAX_MESSAGE_BYTES. */
#define BIG_HEADER 1048000

enum expect { RESULT, ERROR_RESULT };

struct big_case {
    const char *name;        /* the key starts with "bad-<name>" */
    enum expect answer;      /* what the output topic must carry */
    int dlq;                 /* 1: a dead letter is expected, 0: none */
    const char *shed_answer; /* kinfer-shed of the answer, NULL: none */
    const char *shed_dlq;    /* kinfer-shed of the dead letter */
    long answer_key_len;     /* the answer's key length; -1: any */
    long dlq_len;            /* the dead letter's value length; -1: any */
};

/* Topics at the broker's default limit: the worker sizes every answer to
 * fit before producing. */
static const struct big_case fit_cases[] = {
    {"big-key", ERROR_RESULT, 1, NULL, NULL, 900000, -1},
    {"big-header", ERROR_RESULT, 1, "headers", "headers", -1, -1},
    {"many-headers", ERROR_RESULT, 1, NULL, NULL, -1, -1},
    {"value-under", RESULT, 0, NULL, NULL, -1, -1},
    {"value-over", ERROR_RESULT, 1, NULL, NULL, -1, REQUEST_CAP + 1},
    {"value-huge", ERROR_RESULT, 1, NULL, "headers,value", -1, 0},
    {"tombstone", ERROR_RESULT, 1, NULL, NULL, -1, 0},
    {"big-result", ERROR_RESULT, 0, NULL, NULL, -1, -1},
};

/* Result and DLQ topics whose max.message.bytes (REFUSE_BYTES) is far
 * below the producer's limit: the broker refuses what the worker sized as
 * fitting, and delivery reports re-send with the next part shed. */
#define REFUSE_BYTES 200000 /* small_topic's limit below */
static const struct big_case refused_cases[] = {
    {"big-key", ERROR_RESULT, 1, "headers,key", "headers,value,key", 0, 0},
    {"value-over", ERROR_RESULT, 1, NULL, "headers,value", -1, 0},
    {"mid-result", ERROR_RESULT, 0, NULL, NULL, -1, -1},
    {"tombstone", ERROR_RESULT, 1, NULL, NULL, -1, 0},
};

#define MAX_CASES 8

struct seen {
    unsigned answers, dead;
    char problem[256];
};

struct run {
    const struct big_case *cases;
    size_t n_cases;
    struct it_answers *ans;
    struct seen seen[MAX_CASES];
    size_t over_limit; /* messages past MAX_MESSAGE_BYTES */
    size_t largest;
    size_t shed_valid; /* valid results re-sent with headers shed */
};

static void problem(struct seen *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct seen *s, const char *fmt, ...)
{
    if (s->problem[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->problem, sizeof s->problem, fmt, ap);
    va_end(ap);
}

/* A small valid request for the scale model, after pad spaces. */
static char *small_request(const char *id, size_t pad, size_t *len)
{
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"id\":\"%s\",\"model_name\":\"scale\",\"inputs\":[{"
                     "\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP64\","
                     "\"data\":[2]}]}",
                     id);
    char *v = malloc(pad + (size_t)n + 1);
    assert_non_null(v);
    memset(v, ' ', pad);
    memcpy(v + pad, body, (size_t)n + 1);
    *len = pad + (size_t)n;
    return v;
}

/* A valid request of n elements whose result (0.30000000000000004 per
 * element, ~5x the request) is too large to send. */
static char *big_result_request(const char *id, size_t n, size_t *len)
{
    char head[256];
    size_t hl = (size_t)snprintf(
        head, sizeof head,
        "{\"id\":\"%s\",\"model_name\":\"scale\",\"parameters\":{"
        "\"factor\":3},\"inputs\":[{\"name\":\"x\",\"shape\":[%zu],"
        "\"datatype\":\"FP64\",\"data\":[",
        id, n);
    char *v = malloc(hl + 4 * n + 8);
    assert_non_null(v);
    memcpy(v, head, hl);
    size_t at = hl;
    for (size_t i = 0; i < n; i++) {
        memcpy(v + at, "0.1,", 4);
        at += i + 1 < n ? 4 : 3;
    }
    memcpy(v + at, "]}]}", 5);
    *len = at + 4;
    return v;
}

/* Produce case c: key, headers and value per its shape. */
static void produce_case(struct it_ctx *ctx, const char *topic,
                         const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "bad-%s", name);
    size_t key_len = strlen(key);
    char *big_key = NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_header_add(h, "trace-id", -1, key, -1);
    char *value = NULL;
    size_t len = 0;
    char *blob = NULL;

    if (strcmp(name, "big-key") == 0) {
        key_len = 900000;
        big_key = malloc(key_len);
        assert_non_null(big_key);
        memset(big_key, 'k', key_len);
        memcpy(big_key, key, strlen(key));
        value = small_request(key, 0, &len);
    } else if (strcmp(name, "big-header") == 0) {
        blob = malloc(BIG_HEADER);
        assert_non_null(blob);
        memset(blob, 'h', BIG_HEADER);
        rd_kafka_header_add(h, "blob", -1, blob, BIG_HEADER);
        value = small_request(key, 0, &len);
    } else if (strcmp(name, "many-headers") == 0) {
        for (int i = 0; i < 200; i++)
            rd_kafka_header_add(h, "h", -1, "x", 1);
        value = small_request(key, 0, &len);
    } else if (strcmp(name, "value-under") == 0) {
        value = small_request(key, 0, &len);
        free(value);
        value = small_request(key, REQUEST_CAP - 1 - len, &len);
    } else if (strcmp(name, "value-over") == 0) {
        value = small_request(key, 0, &len);
        free(value);
        value = small_request(key, REQUEST_CAP + 1 - len, &len);
    } else if (strcmp(name, "value-huge") == 0) {
        /* Over the cap, and too large to copy to the DLQ whole. */
        value = small_request(key, MAX_MESSAGE_BYTES - 300, &len);
    } else if (strcmp(name, "big-result") == 0) {
        /* ~4 MB of result: over the producer's own limit. */
        value = big_result_request(key, 200000, &len);
    } else if (strcmp(name, "mid-result") == 0) {
        /* ~600 KB of result: within the producer's limit, over the
         * topic's. */
        value = big_result_request(key, 30000, &len);
    }
    assert_int_equal(it_produce(ctx, topic, 0, big_key ? big_key : key, key_len,
                                value, len, h, NULL),
                     0);
    free(big_key);
    free(value);
    free(blob);
}

static int case_of_key(const struct run *run, const struct it_msg *m)
{
    for (size_t c = 0; c < run->n_cases; c++) {
        char key[64];
        size_t kl =
            (size_t)snprintf(key, sizeof key, "bad-%s", run->cases[c].name);
        if (m->key != NULL && m->key_len >= kl &&
            memcmp(m->key, key, kl) == 0 &&
            (m->key_len == kl || m->key[kl] == 'k'))
            return (int)c;
    }
    return -1;
}

/* The case m answers: by key, or for the big key once shed, by the reason
 * in the error result or the dead letter's kinfer-error. */
static int case_of_msg(const struct run *run, const struct it_msg *m)
{
    int c = case_of_key(run, m);
    if (c >= 0 || m->key != NULL)
        return c;
    static const char why[] = "key is 900000 bytes";
    char err[256];
    int found =
        (m->value != NULL && strstr(m->value, why) != NULL) ||
        (m->headers != NULL &&
         it_header_str(m->headers, "kinfer-error", err, sizeof err) >= 0 &&
         strstr(err, why) != NULL);
    for (size_t k = 0; found && k < run->n_cases; k++)
        if (strcmp(run->cases[k].name, "big-key") == 0)
            return (int)k;
    return -1;
}

/* Bytes of m as the producer counts them, less its framing. */
static size_t msg_bytes(const struct it_msg *m)
{
    size_t size = m->key_len + m->len;
    const char *name;
    const void *val;
    size_t vlen;
    for (size_t i = 0;
         m->headers != NULL &&
         rd_kafka_header_get_all(m->headers, i, &name, &val, &vlen) == 0;
         i++)
        size += strlen(name) + vlen;
    return size;
}

static void check_size(struct run *run, const struct it_msg *m)
{
    size_t size = msg_bytes(m);
    if (size > run->largest)
        run->largest = size;
    if (size > MAX_MESSAGE_BYTES)
        run->over_limit++;
}

static void check_shed(struct seen *s, const char *what,
                       const rd_kafka_headers_t *h, const char *want)
{
    char got[64];
    long n = h != NULL ? it_header_str(h, "kinfer-shed", got, sizeof got) : -1;
    if (want == NULL && n >= 0)
        problem(s, "%s has kinfer-shed: %s, expected none", what, got);
    else if (want != NULL && (n < 0 || strcmp(got, want) != 0))
        problem(s, "%s has kinfer-shed: %s, expected %s", what,
                n < 0 ? "(none)" : got, want);
}

static void on_result(const struct it_msg *m, void *arg)
{
    struct run *run = arg;
    check_size(run, m);
    int c = case_of_msg(run, m);
    if (c < 0) {
        /* A valid result batched with a message the broker refused for
         * its size is refused with it and re-sent without its headers
         * (the tally would call the missing trace-id wrong). */
        char shed[32];
        size_t wrong = run->ans->wrong;
        it_answers_on_msg(m, run->ans);
        if (m->headers != NULL &&
            it_header_str(m->headers, "kinfer-shed", shed, sizeof shed) >= 0) {
            run->ans->wrong = wrong;
            run->shed_valid++;
        }
        return;
    }
    struct seen *s = &run->seen[c];
    const struct big_case *bc = &run->cases[c];
    s->answers++;
    int is_error = m->value != NULL && strstr(m->value, "\"error\"") != NULL;
    if (is_error != (bc->answer == ERROR_RESULT))
        problem(s, "expected %s, got %.200s",
                bc->answer == RESULT ? "a result" : "an error result",
                m->value ? m->value : "(null)");
    if (bc->answer_key_len >= 0 && m->key_len != (size_t)bc->answer_key_len)
        problem(s, "the answer's key is %zu bytes, expected %ld", m->key_len,
                bc->answer_key_len);
    check_shed(s, "the answer", m->headers, bc->shed_answer);
}

static void on_dead(const struct it_msg *m, void *arg)
{
    struct run *run = arg;
    check_size(run, m);
    int c = case_of_msg(run, m);
    if (c < 0)
        return;
    struct seen *s = &run->seen[c];
    const struct big_case *bc = &run->cases[c];
    s->dead++;
    if (!bc->dlq)
        problem(s, "dead-lettered, which it should not be");
    if (m->value == NULL)
        problem(s, "the dead letter is a tombstone");
    char buf[16];
    long t = it_header_str(m->headers, "kinfer-tombstone", buf, sizeof buf);
    int tomb = strcmp(bc->name, "tombstone") == 0;
    if (tomb != (t >= 0 && strcmp(buf, "true") == 0))
        problem(s, "kinfer-tombstone header %s", t >= 0 ? buf : "absent");
    if (bc->dlq_len >= 0 && m->len != (size_t)bc->dlq_len)
        problem(s, "the dead letter's value is %zu bytes, expected %ld", m->len,
                bc->dlq_len);
    check_shed(s, "the dead letter", m->headers, bc->shed_dlq);
}

static int all_answered(void *arg)
{
    struct run *run = arg;
    for (size_t c = 0; c < run->n_cases; c++)
        if (run->seen[c].answers == 0)
            return 0;
    return it_answers_all(run->ans);
}

static int all_dead(void *arg)
{
    struct run *run = arg;
    for (size_t c = 0; c < run->n_cases; c++)
        if (run->cases[c].dlq && run->seen[c].dead == 0)
            return 0;
    return 1;
}

/* Produce every case of cases[0..n) followed by valid requests on one
 * partition, run a worker over them and check what it answered.  refuse:
 * the result and DLQ topics refuse messages over REFUSE_BYTES. */
static void run_cases(struct it_ctx *ctx, const struct big_case *cases,
                      size_t n, int refuse)
{
    /* Only the request topic takes the huge shapes: the result and DLQ
     * topics keep the broker's default limit (or a lower one). */
    static const char *const big_topic[] = {"max.message.bytes", "3000000",
                                            NULL};
    static const char *const small_topic[] = {"max.message.bytes", "200000",
                                              NULL};
    struct it_topics t;
    it_topics_make(ctx, &t, 1, 1, big_topic, refuse ? small_topic : NULL);
    if (refuse) {
        it_unique_name(ctx, "out-small", t.out, sizeof t.out);
        IT_REQUIRE(ctx, it_topic_create(ctx, t.out, 1, small_topic) == 0,
                   "create %s", t.out);
    }

    struct run *run = calloc(1, sizeof *run);
    assert_non_null(run);
    assert_true(n <= MAX_CASES);
    run->cases = cases;
    run->n_cases = n;
    size_t n_valid = n * VALID_AFTER_EACH;
    run->ans = it_answers_new(n_valid);

    size_t next_valid = 0;
    for (size_t c = 0; c < n; c++) {
        produce_case(ctx, t.in, cases[c].name);
        for (int k = 0; k < VALID_AFTER_EACH; k++, next_valid++)
            IT_REQUIRE(ctx, it_req_produce(ctx, t.in, next_valid, 0, NULL) == 0,
                       "produce r-%zu", next_valid);
    }
    IT_REQUIRE(ctx, it_produce_flush(ctx, 60000) == 0, "deliver requests");

    struct it_reader *rout = it_reader_new(ctx, t.out, on_result, run);
    struct it_reader *rdlq = it_reader_new(ctx, t.dlq, on_dead, run);
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
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "worker", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");

    char ids[512];
    int rc = it_reader_wait(rout, all_answered, run, 120000,
                            "an answer for every request");
    it_answers_missing(run->ans, 20, ids, sizeof ids);
    for (size_t c = 0; c < n; c++)
        IT_REQUIRE(ctx, rc == 0 || run->seen[c].answers > 0, "no answer for %s",
                   cases[c].name);
    IT_REQUIRE(ctx, rc == 0, "valid requests without a result: %s", ids);
    rc = it_reader_wait(rdlq, all_dead, run, 60000, "every dead letter");
    for (size_t c = 0; c < n; c++)
        IT_REQUIRE(ctx, rc == 0 || !cases[c].dlq || run->seen[c].dead > 0,
                   "no dead letter for %s", cases[c].name);

    IT_REQUIRE(ctx, it_proc_running(w), "the worker exited");
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(w, STOP_TIMEOUT_MS, &status, NULL) == 0,
               "worker did not exit within %d ms of SIGTERM", STOP_TIMEOUT_MS);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker ended with %s after SIGTERM",
               it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx, it_reader_catch_up(rout, 60000) == 0, "read %s", t.out);
    IT_REQUIRE(ctx, it_reader_catch_up(rdlq, 60000) == 0, "read %s", t.dlq);

    for (size_t c = 0; c < n; c++)
        IT_REQUIRE(ctx, run->seen[c].problem[0] == '\0', "case %s: %s",
                   cases[c].name, run->seen[c].problem);
    IT_REQUIRE(ctx, run->ans->wrong == 0, "%zu wrong results; first: %s",
               run->ans->wrong, run->ans->first_wrong[0]);
    size_t limit = refuse ? REFUSE_BYTES : MAX_MESSAGE_BYTES;
    IT_REQUIRE(ctx, run->largest <= limit,
               "a message of %zu bytes, over %zu (%zu over it)", run->largest,
               limit, run->over_limit);
    it_require_committed_at_end(ctx, t.in, t.group, 1);

    printf("RESULT it_oversize %s cases=%zu valid=%zu largest_produced=%zu "
           "valid_shed=%zu valid_duplicates=%zu\n",
           refuse ? "broker_refuses" : "fits", n, n_valid, run->largest,
           run->shed_valid, it_answers_duplicates(run->ans));
    it_reader_free(rout);
    it_reader_free(rdlq);
    it_answers_free(run->ans);
    free(run);
}

static void test_sized_to_fit(void **state)
{
    run_cases(*state, fit_cases, sizeof fit_cases / sizeof fit_cases[0], 0);
}

static void test_broker_refuses(void **state)
{
    run_cases(*state, refused_cases,
              sizeof refused_cases / sizeof refused_cases[0], 1);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sized_to_fit),
        cmocka_unit_test(test_broker_refuses),
    };
    return it_main("oversize", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
