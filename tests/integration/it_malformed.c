/* Integration test: malformed requests interleaved with valid ones.  Each
 * malformed request gets an error result (same key, forwarded headers) and
 * lands byte for byte on the dead-letter topic with kinfer-error and its
 * source topic/partition/offset; the valid requests behind it on the same
 * partition are still answered.
 */
#include "harness.h"
#include "requests.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_PARTITIONS 2
#define VALID_AFTER_EACH 3 /* valid requests queued behind each bad one */
#define BIG_BYTES 1300000  /* over the worker's 1 MiB request limit */
#define STOP_TIMEOUT_MS 45000

struct bad_case {
    const char *name;      /* the message key is "bad-<name>" */
    const char *value;     /* NULL: a null value (tombstone) */
    size_t len;            /* 0: strlen(value) */
    const char *expect_id; /* the id the error result must carry, or NULL */
    int dlq;               /* 1: must be dead-lettered; 0: may be */
};

/* Filled in at run time: the over-sized request. */
static char *big_value;

static struct bad_case cases[] = {
    {"not-json", "this is not JSON", 0, NULL, 1},
    {"empty", "", 0, NULL, 1},
    {"null-value", NULL, 0, NULL, 1},
    {"truncated",
     "{\"id\":\"bad-truncated\",\"model_name\":\"scale\",\"inputs\":[{"
     "\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP64\",\"data\":[1,",
     0, NULL, 1},
    {"array", "[{\"id\":\"bad-array\"}]", 0, NULL, 1},
    {"number", "42", 0, NULL, 1},
    {"inputs-type",
     "{\"id\":\"bad-inputs-type\",\"model_name\":\"scale\",\"inputs\":\"x\"}",
     0, "bad-inputs-type", 1},
    {"data-type",
     "{\"id\":\"bad-data-type\",\"model_name\":\"scale\",\"inputs\":[{"
     "\"name\":\"x\",\"shape\":[3],\"datatype\":\"FP64\",\"data\":[1,"
     "\"two\",3]}]}",
     0, "bad-data-type", 1},
    {"shape-mismatch",
     "{\"id\":\"bad-shape-mismatch\",\"model_name\":\"scale\",\"inputs\":[{"
     "\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP64\",\"data\":[1,2,3,"
     "4,5]}]}",
     0, "bad-shape-mismatch", 1},
    {"unknown-dtype",
     "{\"id\":\"bad-unknown-dtype\",\"model_name\":\"scale\",\"inputs\":[{"
     "\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP128\",\"data\":[1,2]}]}",
     0, "bad-unknown-dtype", 1},
    {"not-utf8",
     "{\"id\":\"bad-\xff\xfe\",\"model_name\":\"scale\",\"inputs\":[{"
     "\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP64\",\"data\":[1,2]}]}",
     0, NULL, 1},
    {"too-large", NULL, 0, NULL, 1}, /* value set in make_big */
    /* Decodes fine but names no loaded model: an error result; whether
     * it is also dead-lettered is the worker's choice. */
    {"unknown-model",
     "{\"id\":\"bad-unknown-model\",\"model_name\":\"nope\",\"inputs\":[{"
     "\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP64\",\"data\":[1,2]}]}",
     0, "bad-unknown-model", 0},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* What was sent for, and seen about, each bad case. */
struct bad_state {
    struct it_delivery dr;
    unsigned results;  /* error results on the output topic */
    unsigned dead;     /* copies on the DLQ */
    char problem[512]; /* first thing found wrong, or "" */
};

struct run {
    struct it_ctx *ctx;
    const char *in;
    struct it_answers *ans;
    struct bad_state bad[N_CASES];
    size_t foreign_dlq; /* DLQ messages that are not bad cases */
    char foreign_what[256];
};

static void make_big(void)
{
    static const char head[] =
        "{\"id\":\"bad-too-large\",\"model_name\":\"scale\",\"parameters\":"
        "{\"factor\":2},\"inputs\":[{\"name\":\"x\",\"shape\":[%zu],"
        "\"datatype\":\"FP64\",\"data\":[";
    size_t n = BIG_BYTES / 2;
    big_value = malloc(BIG_BYTES + 256);
    assert_non_null(big_value);
    int len = snprintf(big_value, 256, head, n);
    size_t pos = (size_t)len;
    for (size_t i = 0; i < n; i++) {
        big_value[pos++] = '1';
        big_value[pos++] = i + 1 < n ? ',' : ']';
    }
    memcpy(big_value + pos, "}]}", 4);
    for (size_t c = 0; c < N_CASES; c++) {
        if (strcmp(cases[c].name, "too-large") == 0)
            cases[c].value = big_value;
    }
}

static size_t case_len(const struct bad_case *c)
{
    if (c->value == NULL)
        return 0;
    return c->len != 0 ? c->len : strlen(c->value);
}

/* The headers each bad request carries: a trace id, binary bytes with a
 * NUL inside, and (odd cases) a header with a null value. */
static rd_kafka_headers_t *case_headers(size_t c)
{
    char trace[64];
    snprintf(trace, sizeof trace, "trace-bad-%s", cases[c].name);
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, "trace-id", -1, trace, -1);
    rd_kafka_header_add(h, "x-bin", -1, "\x00\x01\xfe\xff", 4);
    if (c % 2 == 1)
        rd_kafka_header_add(h, "x-null", -1, NULL, 0);
    return h;
}

/* Case index for a "bad-<name>" key, or -1. */
static int case_of_key(const struct it_msg *m)
{
    for (size_t c = 0; c < N_CASES; c++) {
        char key[64];
        int n = snprintf(key, sizeof key, "bad-%s", cases[c].name);
        if (m->key != NULL && m->key_len == (size_t)n &&
            memcmp(m->key, key, (size_t)n) == 0)
            return (int)c;
    }
    return -1;
}

static void problem(struct bad_state *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct bad_state *b, const char *fmt, ...)
{
    if (b->problem[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->problem, sizeof b->problem, fmt, ap);
    va_end(ap);
}

static void on_result(const struct it_msg *m, void *arg)
{
    struct run *run = arg;
    int c = case_of_key(m);
    if (c < 0) {
        it_answers_on_msg(m, run->ans);
        return;
    }
    struct bad_state *b = &run->bad[c];
    b->results++;
    char trace[64], want[64];
    snprintf(want, sizeof want, "trace-bad-%s", cases[c].name);
    if (it_header_str(m->headers, "trace-id", trace, sizeof trace) < 0 ||
        strcmp(trace, want) != 0)
        problem(b, "error result lacks header trace-id=%s", want);
    json_error_t jerr;
    json_t *res =
        m->value != NULL ? json_loadb(m->value, m->len, 0, &jerr) : NULL;
    if (!json_is_object(res)) {
        problem(b, "error result is not a JSON object: %.200s",
                m->value != NULL ? m->value : "(null)");
        json_decref(res);
        return;
    }
    const char *err = json_string_value(json_object_get(res, "error"));
    if (err == NULL || err[0] == '\0')
        problem(b, "result has no \"error\" string: %.200s", m->value);
    if (json_object_get(res, "outputs") != NULL)
        problem(b, "error result has outputs: %.200s", m->value);
    const char *id = json_string_value(json_object_get(res, "id"));
    if (cases[c].expect_id != NULL &&
        (id == NULL || strcmp(id, cases[c].expect_id) != 0))
        problem(b, "error result id is %s, expected %s", id ? id : "(none)",
                cases[c].expect_id);
    json_decref(res);
}

/* The original headers, in order, must be the DLQ copy's headers without
 * the kinfer-* ones. */
static void check_dlq_headers(struct bad_state *b, size_t c,
                              const rd_kafka_headers_t *got)
{
    rd_kafka_headers_t *want = case_headers(c);
    size_t wi = 0;
    const char *name;
    const void *val;
    size_t size;
    for (size_t gi = 0; got != NULL && rd_kafka_header_get_all(
                                           got, gi, &name, &val, &size) == 0;
         gi++) {
        if (strncmp(name, "kinfer-", 7) == 0)
            continue;
        const char *wname;
        const void *wval;
        size_t wsize;
        if (rd_kafka_header_get_all(want, wi++, &wname, &wval, &wsize) != 0) {
            problem(b, "DLQ copy has an extra header %s", name);
            break;
        }
        if (strcmp(name, wname) != 0 || size != wsize ||
            (val == NULL) != (wval == NULL) ||
            (size != 0 && memcmp(val, wval, size) != 0)) {
            problem(b,
                    "DLQ header %zu is %s (%zu bytes%s), expected %s "
                    "(%zu bytes%s)",
                    wi - 1, name, size, val == NULL ? ", null" : "", wname,
                    wsize, wval == NULL ? ", null" : "");
            break;
        }
    }
    const char *wname;
    if (rd_kafka_header_get_all(want, wi, &wname, &val, &size) == 0)
        problem(b, "DLQ copy lacks the original header %s", wname);
    rd_kafka_headers_destroy(want);
}

static void on_dead(const struct it_msg *m, void *arg)
{
    struct run *run = arg;
    int c = case_of_key(m);
    if (c < 0) {
        if (run->foreign_dlq++ == 0)
            snprintf(run->foreign_what, sizeof run->foreign_what,
                     "key %.40s value %.120s", m->key ? m->key : "(null)",
                     m->value ? m->value : "(null)");
        return;
    }
    struct bad_state *b = &run->bad[c];
    const struct bad_case *bc = &cases[c];
    b->dead++;
    size_t len = case_len(bc);
    char tomb[16];
    long tlen =
        it_header_str(m->headers, "kinfer-tombstone", tomb, sizeof tomb);
    /* A null value (a tombstone) is dead-lettered as an empty value plus
     * kinfer-tombstone: true, so a compacted DLQ keeps the key's earlier
     * dead letters. */
    if (m->value == NULL)
        problem(b, "DLQ value is null (a tombstone)");
    else if ((bc->value == NULL) != (tlen >= 0 && strcmp(tomb, "true") == 0))
        problem(b, "kinfer-tombstone header is %s for a %s original",
                tlen >= 0 ? tomb : "absent", bc->value ? "non-null" : "null");
    else if (m->len != len || (len != 0 && memcmp(m->value, bc->value, len)))
        problem(b,
                "DLQ value differs from the original (%zu bytes, "
                "original %zu)",
                m->len, len);
    check_dlq_headers(b, (size_t)c, m->headers);

    char buf[512], want[64];
    if (it_header_str(m->headers, "kinfer-error", buf, sizeof buf) <= 0)
        problem(b, "DLQ copy has no kinfer-error header");
    if (it_header_str(m->headers, "kinfer-source-topic", buf, sizeof buf) < 0 ||
        strcmp(buf, run->in) != 0)
        problem(b, "kinfer-source-topic is not %s", run->in);
    snprintf(want, sizeof want, "%" PRId32, b->dr.partition);
    if (it_header_str(m->headers, "kinfer-source-partition", buf, sizeof buf) <
            0 ||
        strcmp(buf, want) != 0)
        problem(b, "kinfer-source-partition is '%s', expected %s", buf, want);
    snprintf(want, sizeof want, "%" PRId64, b->dr.offset);
    if (it_header_str(m->headers, "kinfer-source-offset", buf, sizeof buf) <
            0 ||
        strcmp(buf, want) != 0)
        problem(b, "kinfer-source-offset is '%s', expected %s", buf, want);
}

static int all_results(void *arg)
{
    struct run *run = arg;
    for (size_t c = 0; c < N_CASES; c++) {
        if (run->bad[c].results == 0)
            return 0;
    }
    return it_answers_all(run->ans);
}

static int all_dead(void *arg)
{
    struct run *run = arg;
    for (size_t c = 0; c < N_CASES; c++) {
        if (cases[c].dlq && run->bad[c].dead == 0)
            return 0;
    }
    return 1;
}

/* Names of the cases for which count() is zero, for failure messages. */
static void list_missing(const struct run *run, int dlq, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t c = 0; c < N_CASES; c++) {
        unsigned n = dlq ? run->bad[c].dead : run->bad[c].results;
        if (n != 0 || (dlq && !cases[c].dlq))
            continue;
        int w = snprintf(buf + used, size - used, " %s", cases[c].name);
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
    }
}

static void test_malformed(void **state)
{
    struct it_ctx *ctx = *state;
    static const char *const big_topic[] = {"max.message.bytes", "3000000",
                                            NULL};
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, N_PARTITIONS, big_topic, big_topic);
    const char *in = t.in, *out = t.out, *dlq = t.dlq, *group = t.group;
    make_big();

    struct run *run = calloc(1, sizeof *run);
    IT_REQUIRE(ctx, run != NULL, "out of memory");
    run->ctx = ctx;
    run->in = in;
    size_t n_valid = N_CASES * VALID_AFTER_EACH;
    run->ans = it_answers_new(n_valid);

    /* Each bad request is followed on its partition by valid ones, which
     * only get answered if the bad one does not stall the partition. */
    size_t next_valid = 0;
    for (size_t c = 0; c < N_CASES; c++) {
        int32_t part = (int32_t)(c % N_PARTITIONS);
        char key[64];
        int klen = snprintf(key, sizeof key, "bad-%s", cases[c].name);
        rd_kafka_headers_t *h = case_headers(c);
        IT_REQUIRE(ctx,
                   it_produce(ctx, in, part, key, (size_t)klen, cases[c].value,
                              case_len(&cases[c]), h, &run->bad[c].dr) == 0,
                   "produce case %s", cases[c].name);
        for (int k = 0; k < VALID_AFTER_EACH; k++, next_valid++)
            IT_REQUIRE(ctx,
                       it_req_produce(ctx, in, next_valid, part, NULL) == 0,
                       "produce r-%zu", next_valid);
    }
    IT_REQUIRE(ctx, it_produce_flush(ctx, 60000) == 0, "deliver requests");

    struct it_reader *rout = it_reader_new(ctx, out, on_result, run);
    struct it_reader *rdlq = it_reader_new(ctx, dlq, on_dead, run);
    IT_REQUIRE(ctx, rout != NULL && rdlq != NULL, "readers");

    /* The producer side needs room for the dead-lettered 1.3 MB copy. */
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
                          "message.max.bytes=3000000",
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "worker", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");

    char missing[512], ids[512];
    int rc = it_reader_wait(rout, all_results, run, 120000,
                            "a result for every request");
    list_missing(run, 0, missing, sizeof missing);
    it_answers_missing(run->ans, 20, ids, sizeof ids);
    IT_REQUIRE(ctx, rc == 0, "no result for bad cases:%s; valid missing: %s",
               missing, ids);
    rc = it_reader_wait(rdlq, all_dead, run, 60000,
                        "every bad request on the DLQ");
    list_missing(run, 1, missing, sizeof missing);
    IT_REQUIRE(ctx, rc == 0, "not dead-lettered:%s", missing);

    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(w, STOP_TIMEOUT_MS, &status, NULL) == 0,
               "worker did not exit within %d ms of SIGTERM", STOP_TIMEOUT_MS);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker ended with %s after SIGTERM",
               it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx, it_reader_catch_up(rout, 60000) == 0, "read %s", out);
    IT_REQUIRE(ctx, it_reader_catch_up(rdlq, 60000) == 0, "read %s", dlq);

    unsigned dead_total = 0;
    for (size_t c = 0; c < N_CASES; c++) {
        IT_REQUIRE(ctx, run->bad[c].problem[0] == '\0', "case %s: %s",
                   cases[c].name, run->bad[c].problem);
        dead_total += run->bad[c].dead;
    }
    IT_REQUIRE(ctx, run->foreign_dlq == 0,
               "%zu unexpected messages on the DLQ; first: %s",
               run->foreign_dlq, run->foreign_what);
    IT_REQUIRE(ctx, run->ans->wrong == 0,
               "%zu wrong results for valid requests; first: %s",
               run->ans->wrong, run->ans->first_wrong[0]);

    it_require_committed_at_end(ctx, in, group, N_PARTITIONS);

    printf("RESULT it_malformed bad_cases=%zu valid=%zu dead_lettered=%u "
           "valid_duplicates=%zu\n",
           N_CASES, n_valid, dead_total, it_answers_duplicates(run->ans));
    it_reader_free(rout);
    it_reader_free(rdlq);
    it_answers_free(run->ans);
    free(run);
    free(big_value);
    big_value = NULL;
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),
    };
    return it_main("malformed", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
