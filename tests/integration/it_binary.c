/* Integration test of the binary tensor form over a real broker:
 *  - requests whose value is a JSON header plus raw tensor bytes, with the
 *    header's length in the kinfer-inference-header-length Kafka header,
 *    are answered in the binary form when they ask (the result carries the
 *    same header, its bytes are the tensor's) and in JSON when they do not
 *    (and then the request's copy of the header is not forwarded);
 *  - a header that is not a length is rejected and dead-lettered with the
 *    request byte for byte; an unparsable request's error result names no
 *    model; a missing model_version names the versions served;
 *  - kinfer-produce --generate --binary --await checks every binary result,
 *    for FP32 and FP64.
 */
#include "harness.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define HEADER_LENGTH "kinfer-inference-header-length"
#define READ_TIMEOUT_MS 60000
#define TOOL_TIMEOUT_MS 240000

/* --- the hand-made requests ---------------------------------------------- */

/* One request: key, the JSON header, the bytes after it, and the value of
 * its length header (NULL: the real length; "" : no header at all). */
struct bin_case {
    const char *key;
    const char *json;
    unsigned char bin[16];
    size_t bin_len;
    const char *length_header;
};

static struct bin_case cases[] = {
    /* 0: UINT8 image-like input, answered binary. */
    {"bin-uint8",
     "{\"id\":\"bin-uint8\",\"parameters\":{\"factor\":1,"
     "\"binary_data_output\":true},\"inputs\":[{\"name\":\"img\","
     "\"shape\":[2,3],\"datatype\":\"UINT8\",\"parameters\":"
     "{\"binary_data_size\":6}}]}",
     {0, 1, 127, 128, 254, 255},
     6,
     NULL},
    /* 1: FP32 input in binary, answered in JSON (doubled). */
    {"bin-fp32-json-out",
     "{\"id\":\"bin-fp32-json-out\",\"inputs\":[{\"name\":\"x\",\"shape\":"
     "[2],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":8}}]}",
     {0, 0, 0xc0, 0x3f, 0, 0, 0x20, 0xc1}, /* 1.5f, -10.0f */
     8,
     NULL},
    /* 2: the length header is not a number. */
    {"bin-bad-header",
     "{\"id\":\"bin-bad-header\",\"inputs\":[{\"name\":\"x\",\"shape\":[1],"
     "\"datatype\":\"UINT8\",\"parameters\":{\"binary_data_size\":1}}]}",
     {7},
     1,
     "twelve"},
    /* 3: not JSON at all. */
    {"bin-unparsable", "not JSON, not binary", {0}, 0, ""},
    /* 4: a version the worker does not serve. */
    {"bin-version",
     "{\"id\":\"bin-version\",\"model_version\":\"9\",\"inputs\":[{\"name\":"
     "\"x\",\"shape\":[1],\"datatype\":\"INT8\",\"data\":[-3]}]}",
     {0},
     0,
     ""},
};
#define N_CASES (sizeof cases / sizeof cases[0])

struct got {
    int results, dead;
    struct it_msg result; /* the first result (borrowed from the reader) */
    struct it_msg dlq;
};

struct run {
    struct got got[N_CASES];
};

static int case_of(const struct it_msg *m)
{
    for (size_t c = 0; c < N_CASES; c++)
        if (m->key != NULL && m->key_len == strlen(cases[c].key) &&
            memcmp(m->key, cases[c].key, m->key_len) == 0)
            return (int)c;
    return -1;
}

static void on_result(const struct it_msg *m, void *arg)
{
    struct run *r = arg;
    int c = case_of(m);
    if (c >= 0 && r->got[c].results++ == 0)
        r->got[c].result = *m;
}

static void on_dead(const struct it_msg *m, void *arg)
{
    struct run *r = arg;
    int c = case_of(m);
    if (c >= 0 && r->got[c].dead++ == 0)
        r->got[c].dlq = *m;
}

static int all_answered(void *arg)
{
    struct run *r = arg;
    for (size_t c = 0; c < N_CASES; c++)
        if (r->got[c].results == 0)
            return 0;
    return 1;
}

static int bad_header_dead(void *arg)
{
    struct run *r = arg;
    return r->got[2].dead > 0 && r->got[3].dead > 0;
}

/* The value of the error member of a result, or NULL; *model gets its
 * model_name (NULL when absent).  Copies into buf. */
static const char *error_of(const struct it_msg *m, char *buf, size_t size,
                            int *has_model)
{
    json_t *j = json_loadb(m->value, m->len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    *has_model = json_object_get(j, "model_name") != NULL;
    if (e != NULL)
        snprintf(buf, size, "%s", e);
    json_decref(j);
    return e != NULL ? buf : NULL;
}

static void test_worker(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 2, 2, NULL, NULL);
    const char *wargs[] = {
        "--group", t.group,       "--input-topic", t.in, "--output-topic",
        t.out,     "--dlq-topic", t.dlq,           NULL};
    struct it_proc *w = it_worker_spawn(ctx, "worker", wargs);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");

    for (size_t c = 0; c < N_CASES; c++) {
        const struct bin_case *bc = &cases[c];
        size_t jlen = strlen(bc->json);
        char *value = malloc(jlen + bc->bin_len + 1);
        assert_non_null(value);
        memcpy(value, bc->json, jlen);
        memcpy(value + jlen, bc->bin, bc->bin_len);
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "trace-id", -1, bc->key, -1);
        char num[32];
        snprintf(num, sizeof num, "%zu", jlen);
        if (bc->length_header == NULL)
            rd_kafka_header_add(h, HEADER_LENGTH, -1, num, -1);
        else if (bc->length_header[0] != '\0')
            rd_kafka_header_add(h, HEADER_LENGTH, -1, bc->length_header, -1);
        IT_REQUIRE(ctx,
                   it_produce(ctx, t.in, RD_KAFKA_PARTITION_UA, bc->key,
                              strlen(bc->key), value, jlen + bc->bin_len, h,
                              NULL) == 0,
                   "produce %s", bc->key);
        free(value);
    }
    IT_REQUIRE(ctx, it_produce_flush(ctx, 30000) == 0, "flush requests");

    struct run run;
    memset(&run, 0, sizeof run);
    struct it_reader *res = it_reader_new(ctx, t.out, on_result, &run);
    struct it_reader *dlq = it_reader_new(ctx, t.dlq, on_dead, &run);
    IT_REQUIRE(ctx, res != NULL && dlq != NULL, "readers");
    IT_REQUIRE(ctx,
               it_reader_wait(res, all_answered, &run, READ_TIMEOUT_MS,
                              "a result for every request") == 0,
               "results");
    IT_REQUIRE(ctx,
               it_reader_wait(dlq, bad_header_dead, &run, READ_TIMEOUT_MS,
                              "dead letters") == 0,
               "dead letters");

    /* 0: binary out, with the header, the same bytes. */
    const struct it_msg *m = &run.got[0].result;
    char hv[64];
    long hl = it_header_str(m->headers, HEADER_LENGTH, hv, sizeof hv);
    IT_REQUIRE(ctx, hl > 0, "binary result without " HEADER_LENGTH ": %.300s",
               m->value);
    size_t jl = (size_t)strtoul(hv, NULL, 10);
    IT_REQUIRE(ctx,
               jl + 6 == m->len && memcmp(m->value + jl, cases[0].bin, 6) == 0,
               "binary result: header %zu, %zu bytes: %.*s", jl, m->len,
               (int)(jl < m->len ? jl : m->len), m->value);
    const char *want0 =
        "{\"id\":\"bin-uint8\",\"model_name\":\"scale\",\"model_version\":"
        "\"1\",\"outputs\":[{\"name\":\"img\",\"shape\":[2,3],\"datatype\":"
        "\"UINT8\",\"parameters\":{\"binary_data_size\":6}}]}";
    IT_REQUIRE(ctx, jl == strlen(want0) && memcmp(m->value, want0, jl) == 0,
               "binary result header: %.*s", (int)jl, m->value);
    IT_REQUIRE(ctx,
               it_header_str(m->headers, "trace-id", hv, sizeof hv) > 0 &&
                   strcmp(hv, "bin-uint8") == 0,
               "the request's other headers are forwarded");

    /* 1: JSON out; the request's length header is not forwarded. */
    m = &run.got[1].result;
    IT_REQUIRE(ctx, it_header_str(m->headers, HEADER_LENGTH, hv, sizeof hv) < 0,
               "a JSON result carries " HEADER_LENGTH " %s", hv);
    const char *want1 =
        "{\"id\":\"bin-fp32-json-out\",\"model_name\":\"scale\","
        "\"model_version\":\"1\",\"outputs\":[{\"name\":\"x\",\"shape\":[2],"
        "\"datatype\":\"FP32\",\"data\":[3,-20]}]}";
    IT_REQUIRE(
        ctx, m->len == strlen(want1) && memcmp(m->value, want1, m->len) == 0,
        "JSON result from a binary request: %.*s", (int)m->len, m->value);

    /* 2, 3, 4: error results; 2 and 3 dead-lettered byte for byte. */
    char e[512];
    int has_model = 0;
    IT_REQUIRE(ctx,
               error_of(&run.got[2].result, e, sizeof e, &has_model) &&
                   strstr(e, "header " HEADER_LENGTH
                             ": expected the JSON header's length") != NULL,
               "bad header: %.300s", run.got[2].result.value);
    const struct it_msg *d = &run.got[2].dlq;
    size_t full = strlen(cases[2].json) + cases[2].bin_len;
    IT_REQUIRE(
        ctx,
        d->len == full &&
            memcmp(d->value, cases[2].json, strlen(cases[2].json)) == 0 &&
            it_header_str(d->headers, HEADER_LENGTH, hv, sizeof hv) > 0 &&
            strcmp(hv, "twelve") == 0,
        "DLQ copy of the bad-header request (%zu bytes)", d->len);
    IT_REQUIRE(ctx,
               error_of(&run.got[3].result, e, sizeof e, &has_model) &&
                   strstr(e, "request is not valid JSON") != NULL && !has_model,
               "unparsable request's error result: %.300s",
               run.got[3].result.value);
    IT_REQUIRE(ctx,
               error_of(&run.got[4].result, e, sizeof e, &has_model) &&
                   strcmp(e, "model_version: model 'scale' has no version "
                             "'9' (it serves: 1)") == 0,
               "missing version: %.300s", run.got[4].result.value);
    IT_REQUIRE(ctx, run.got[4].dead == 0 && run.got[0].dead == 0,
               "answered requests are not dead-lettered");
    it_reader_free(res);
    it_reader_free(dlq);
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, 45000, &status, NULL) == 0, "worker exits");
}

/* --- kinfer-produce --binary ---------------------------------------------- */

static long long summary_int(const char *out, const char *key)
{
    if (out == NULL)
        return -1;
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '\n')
        len--;
    size_t start = len;
    while (start > 0 && out[start - 1] != '\n')
        start--;
    json_t *j = json_loadb(out + start, len - start, 0, NULL);
    json_t *v = json_object_get(j, key);
    long long x = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(j);
    return x;
}

static void test_produce_binary(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 2, 2, NULL, NULL);
    const char *wargs[] = {"--group",
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
    struct it_proc *w = it_worker_spawn(ctx, "worker", wargs);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    static const char *const dtypes[] = {"FP32", "FP64"};
    for (size_t i = 0; i < 2; i++) {
        const char *args[] = {"--topic",  t.in,         "--output-topic",
                              t.out,      "--generate", "300",
                              "--dim",    "768",        "--factor",
                              "0.5",      "--dtype",    dtypes[i],
                              "--binary", "--await",    "--timeout",
                              "120",      "--json",     "--quiet",
                              NULL};
        char *out = NULL;
        int rc = it_produce_capture(ctx, args, TOOL_TIMEOUT_MS, &out);
        IT_REQUIRE(ctx,
                   rc == 0 && summary_int(out, "answered") == 300 &&
                       summary_int(out, "wrong") == 0 &&
                       summary_int(out, "errors") == 0,
                   "kinfer-produce --binary --dtype %s exited %d: %.2000s",
                   dtypes[i], rc, out ? out : "");
        free(out);
    }
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, 45000, &status, NULL) == 0, "worker exits");
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker),
        cmocka_unit_test(test_produce_binary),
    };
    return it_main("binary", argc, argv, tests, sizeof tests / sizeof tests[0]);
}
