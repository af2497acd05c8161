/* Unit tests of kinfer-produce's pure logic (producer/stats.c, pending.c,
 * lines.c, message.c): nearest-rank percentiles, the summary text and
 * JSON, matching results to keys (duplicates, failures), the capped line
 * reader, request keys, synthetic requests (decoded by the worker's own
 * codec) and result verification. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/host.h"
#include "kinfer/request.h"
#include "kinfer/tensor.h"
#include "lines.h"
#include "message.h"
#include "pending.h"
#include "stats.h"

/* --- percentiles ------------------------------------------------------- */

static void test_percentile_nearest_rank(void **state)
{
    (void)state;
    int64_t v[20];
    for (int i = 0; i < 20; i++)
        v[i] = i + 1;
    /* rank = ceil(p * n): p50 of 20 is the 10th value, p95 the 19th. */
    assert_int_equal(kprod_percentile(v, 20, 5000), 10);
    assert_int_equal(kprod_percentile(v, 20, 9500), 19);
    assert_int_equal(kprod_percentile(v, 20, 9900), 20);
    assert_int_equal(kprod_percentile(v, 20, 10000), 20);
    assert_int_equal(kprod_percentile(v, 20, 0), 1);
    assert_int_equal(kprod_percentile(v, 20, 1), 1);
    assert_int_equal(kprod_percentile(v, 20, 501), 2); /* 1.002 -> 2 */
    /* p over 100% clamps to the maximum. */
    assert_int_equal(kprod_percentile(v, 20, 20000), 20);

    int64_t w[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(kprod_percentile(w, 10, 5000), 5);
    assert_int_equal(kprod_percentile(w, 10, 5001), 6);
    assert_int_equal(kprod_percentile(w, 10, 9500), 10);
    assert_int_equal(kprod_percentile(w, 10, 9000), 9);

    int64_t one = 42;
    assert_int_equal(kprod_percentile(&one, 1, 0), 42);
    assert_int_equal(kprod_percentile(&one, 1, 5000), 42);
    assert_int_equal(kprod_percentile(&one, 1, 10000), 42);
    assert_int_equal(kprod_percentile(NULL, 0, 5000), 0);
}

static void test_percentile_large_n_exact(void **state)
{
    (void)state;
    /* 1000 values: p99.9 is the 999th, p99 the 990th, p50 the 500th. */
    struct kprod_latencies l;
    kprod_latencies_init(&l);
    for (int64_t i = 1000; i >= 1; i--) /* reversed: sort must fix it */
        kprod_latencies_add(&l, i * 10);
    assert_int_equal(l.n, 1000);
    kprod_latencies_sort(&l);
    for (size_t i = 1; i < l.n; i++)
        assert_true(l.us[i - 1] <= l.us[i]);
    assert_int_equal(kprod_percentile(l.us, l.n, 5000), 5000);
    assert_int_equal(kprod_percentile(l.us, l.n, 9900), 9900);
    assert_int_equal(kprod_percentile(l.us, l.n, 9990), 9990);
    assert_int_equal(kprod_percentile(l.us, l.n, 10000), 10000);
    kprod_latencies_clear(&l);
    assert_null(l.us);
    assert_int_equal(l.n, 0);
    kprod_latencies_clear(NULL);
}

static void test_p90_and_mean_exact(void **state)
{
    (void)state;
    /* p90 is nearest-rank too: rank ceil(0.9 n).  n = 10: the 9th value;
     * n = 11: ceil(9.9) = 10th; n = 7: ceil(6.3) = 7th (the maximum);
     * n = 20: exactly the 18th, with no float error pushing it to 19. */
    int64_t v[20];
    for (int i = 0; i < 20; i++)
        v[i] = (i + 1) * 100;
    assert_int_equal(kprod_percentile(v, 10, 9000), 900);
    assert_int_equal(kprod_percentile(v, 11, 9000), 1000);
    assert_int_equal(kprod_percentile(v, 7, 9000), 700);
    assert_int_equal(kprod_percentile(v, 20, 9000), 1800);
    assert_int_equal(kprod_percentile(v, 1, 9000), 100);

    /* Mean: exact sums, any order, 0 for nothing. */
    int64_t w[3] = {4000, 1000, 2000};
    assert_true(kprod_mean(w, 3) == 7000.0 / 3.0);
    assert_true(kprod_mean(v, 20) == 1050.0);
    assert_true(kprod_mean(v, 1) == 100.0);
    assert_true(kprod_mean(NULL, 0) == 0.0);
    /* Large latencies do not lose precision in the sum: 2^53 + 1 is not
     * a double, but the sum of two of them halved is exact. */
    int64_t big[2] = {(1LL << 53) + 1, (1LL << 53) + 3};
    assert_true(kprod_mean(big, 2) == (double)((1LL << 53) + 2));
}

/* --- summary ----------------------------------------------------------- */

static char *print_summary(const struct kprod_summary *s, int json)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    kprod_summary_print(s, json, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void test_summary_await_text_and_json(void **state)
{
    (void)state;
    /* Latencies 1 ms .. 100 ms: p50 50, p95 95, p99 99, max 100. */
    int64_t lat[100];
    for (int i = 0; i < 100; i++)
        lat[i] = (i + 1) * 1000;
    struct kprod_summary s = {
        .sent = 100,
        .failed = 0,
        .awaited = 1,
        .answered = 100,
        .errors = 3,
        .wrong = 1,
        .missing = 0,
        .duplicates = 2,
        .seconds = 2.0,
        .lat_us = lat,
        .n_lat = 100,
    };
    char *text = print_summary(&s, 0);
    assert_string_equal(
        text,
        "sent 100  answered 100  errors 3  wrong 1  missing 0  duplicates 2\n"
        "throughput 50.0 req/s over 2.00 s\n"
        "latency ms  p50 50.0  p90 90.0  p95 95.0  p99 99.0  max 100.0  "
        "mean 50.5\n");
    free(text);

    char *json = print_summary(&s, 1);
    assert_string_equal(
        json, "{\"sent\":100,\"delivery_failures\":0,\"answered\":100,"
              "\"errors\":3,\"wrong\":1,\"missing\":0,\"duplicates\":2,"
              "\"seconds\":2.000000,\"throughput\":50.000,"
              "\"latency_ms\":{\"p50\":50.000,\"p90\":90.000,\"p95\":95.000,"
              "\"p99\":99.000,\"max\":100.000,\"mean\":50.500},"
              "\"max_outstanding\":0,\"interrupted\":false}\n");
    free(json);
}

static void test_summary_send_only_and_failures(void **state)
{
    (void)state;
    struct kprod_summary s = {
        .sent = 10,
        .failed = 2,
        .seconds = 0.5,
        .interrupted = 1,
    };
    char *text = print_summary(&s, 0);
    assert_string_equal(text, "sent 10\n"
                              "delivery failures 2\n"
                              "throughput 20.0 req/s over 0.50 s\n"
                              "interrupted\n");
    free(text);
    char *json = print_summary(&s, 1);
    assert_string_equal(json, "{\"sent\":10,\"delivery_failures\":2,"
                              "\"seconds\":0.500000,\"throughput\":20.000,"
                              "\"interrupted\":true}\n");
    free(json);

    /* Nothing answered: no latency numbers, no division by zero. */
    struct kprod_summary none = {.sent = 3, .awaited = 1, .missing = 3};
    text = print_summary(&none, 0);
    assert_string_equal(
        text, "sent 3  answered 0  errors 0  wrong 0  missing 3  duplicates 0\n"
              "throughput 0.0 req/s over 0.00 s\n"
              "latency ms  none\n");
    free(text);
    json = print_summary(&none, 1);
    assert_non_null(strstr(json, "\"latency_ms\":null"));
    free(json);
}

static void test_summary_closed_loop(void **state)
{
    (void)state;
    /* 10 latencies 1..10 ms: p50 5, p90 9, p95 10, p99 10, max 10,
     * mean 5.5; throughput is what the closed loop achieved. */
    int64_t lat[10];
    for (int i = 0; i < 10; i++)
        lat[i] = (i + 1) * 1000;
    struct kprod_summary s = {
        .sent = 10,
        .awaited = 1,
        .answered = 10,
        .seconds = 0.25,
        .lat_us = lat,
        .n_lat = 10,
        .concurrency = 4,
        .max_outstanding = 4,
    };
    char *text = print_summary(&s, 0);
    assert_string_equal(
        text,
        "sent 10  answered 10  errors 0  wrong 0  missing 0  duplicates 0\n"
        "throughput 40.0 req/s over 0.25 s\n"
        "latency ms  p50 5.0  p90 9.0  p95 10.0  p99 10.0  max 10.0  "
        "mean 5.5\n"
        "closed loop  concurrency 4  max outstanding 4\n");
    free(text);
    char *json = print_summary(&s, 1);
    assert_string_equal(
        json, "{\"sent\":10,\"delivery_failures\":0,\"answered\":10,"
              "\"errors\":0,\"wrong\":0,\"missing\":0,\"duplicates\":0,"
              "\"seconds\":0.250000,\"throughput\":40.000,"
              "\"latency_ms\":{\"p50\":5.000,\"p90\":9.000,\"p95\":10.000,"
              "\"p99\":10.000,\"max\":10.000,\"mean\":5.500},"
              "\"max_outstanding\":4,\"concurrency\":4,"
              "\"interrupted\":false}\n");
    free(json);
}

/* --- pending keys ------------------------------------------------------ */

static void test_pending_match_duplicate_unknown(void **state)
{
    (void)state;
    struct kprod_pending *t = kprod_pending_new();
    kprod_pending_add(t, "a", 1, 100, 7);
    kprod_pending_add(t, "b", 1, 200, -1);
    assert_int_equal(kprod_pending_outstanding(t), 2);
    assert_int_equal(kprod_pending_size(t), 2);

    int64_t sent = 0, idx = 0;
    assert_int_equal(kprod_pending_answer(t, "a", 1, &sent, &idx),
                     KPROD_MATCH_FIRST);
    assert_int_equal(sent, 100);
    assert_int_equal(idx, 7);
    assert_int_equal(kprod_pending_outstanding(t), 1);
    /* The same key again is a duplicate, not a second answer. */
    sent = idx = 0;
    assert_int_equal(kprod_pending_answer(t, "a", 1, &sent, &idx),
                     KPROD_MATCH_DUPLICATE);
    assert_int_equal(sent, 0);
    assert_int_equal(kprod_pending_outstanding(t), 1);
    /* A key of another run, and a prefix of one of ours, are ignored. */
    assert_int_equal(kprod_pending_answer(t, "c", 1, NULL, NULL),
                     KPROD_MATCH_NONE);
    assert_int_equal(kprod_pending_answer(t, "ab", 2, NULL, NULL),
                     KPROD_MATCH_NONE);
    assert_int_equal(kprod_pending_answer(t, "b", 1, &sent, &idx),
                     KPROD_MATCH_FIRST);
    assert_int_equal(sent, 200);
    assert_int_equal(idx, -1);
    assert_int_equal(kprod_pending_outstanding(t), 0);
    kprod_pending_free(t);
    kprod_pending_free(NULL);
}

static void test_pending_resend_and_failure(void **state)
{
    (void)state;
    struct kprod_pending *t = kprod_pending_new();
    /* Sent twice: two answers expected, latency from the first send. */
    kprod_pending_add(t, "k", 1, 10, -1);
    kprod_pending_add(t, "k", 1, 20, -1);
    assert_int_equal(kprod_pending_size(t), 1);
    assert_int_equal(kprod_pending_outstanding(t), 2);
    int64_t sent = 0;
    assert_int_equal(kprod_pending_answer(t, "k", 1, &sent, NULL),
                     KPROD_MATCH_FIRST);
    assert_int_equal(sent, 10);
    assert_int_equal(kprod_pending_answer(t, "k", 1, &sent, NULL),
                     KPROD_MATCH_FIRST);
    assert_int_equal(kprod_pending_answer(t, "k", 1, &sent, NULL),
                     KPROD_MATCH_DUPLICATE);
    assert_int_equal(kprod_pending_outstanding(t), 0);

    /* A failed delivery expects nothing; an answer anyway is a
     * duplicate. */
    kprod_pending_add(t, "f", 1, 30, -1);
    kprod_pending_fail(t, "f", 1);
    assert_int_equal(kprod_pending_outstanding(t), 0);
    assert_int_equal(kprod_pending_answer(t, "f", 1, NULL, NULL),
                     KPROD_MATCH_DUPLICATE);
    /* Failing more often than sent, or an unknown key, changes nothing. */
    kprod_pending_fail(t, "f", 1);
    kprod_pending_fail(t, "zz", 2);
    assert_int_equal(kprod_pending_outstanding(t), 0);

    /* Answered, then the delivery report says failed (timed out but
     * written): nothing owed, never negative. */
    kprod_pending_add(t, "g", 1, 40, -1);
    assert_int_equal(kprod_pending_answer(t, "g", 1, NULL, NULL),
                     KPROD_MATCH_FIRST);
    kprod_pending_fail(t, "g", 1);
    assert_int_equal(kprod_pending_outstanding(t), 0);
    kprod_pending_free(t);
}

static void test_pending_many_and_binary_keys(void **state)
{
    (void)state;
    struct kprod_pending *t = kprod_pending_new();
    enum { N = 20000 };
    char key[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "gen-x-%d", i);
        kprod_pending_add(t, key, (size_t)n, i, i);
    }
    /* Keys differing only after a NUL byte, and the empty key. */
    kprod_pending_add(t, "a\0b", 3, 1, -1);
    kprod_pending_add(t, "a\0c", 3, 2, -1);
    kprod_pending_add(t, "", 0, 3, -1);
    assert_int_equal(kprod_pending_size(t), N + 3);
    assert_int_equal(kprod_pending_outstanding(t), N + 3);

    for (int i = N - 1; i >= 0; i--) {
        int n = snprintf(key, sizeof key, "gen-x-%d", i);
        int64_t sent = -1, idx = -1;
        assert_int_equal(kprod_pending_answer(t, key, (size_t)n, &sent, &idx),
                         KPROD_MATCH_FIRST);
        assert_int_equal(sent, i);
        assert_int_equal(idx, i);
    }
    int64_t sent = 0;
    assert_int_equal(kprod_pending_answer(t, "a\0c", 3, &sent, NULL),
                     KPROD_MATCH_FIRST);
    assert_int_equal(sent, 2);
    assert_int_equal(kprod_pending_answer(t, "a", 1, NULL, NULL),
                     KPROD_MATCH_NONE);
    assert_int_equal(kprod_pending_answer(t, "", 0, &sent, NULL),
                     KPROD_MATCH_FIRST);
    assert_int_equal(sent, 3);
    assert_int_equal(kprod_pending_outstanding(t), 1); /* "a\0b" */
    kprod_pending_free(t);
}

/* --- line reader ------------------------------------------------------- */

/* A file holding data[0..len), opened for reading at offset 0. */
static int file_with(const void *data, size_t len)
{
    char path[] = "/tmp/test_produce_stats.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static void expect_line(struct kprod_lines *r, const char *want, size_t wantlen,
                        uint64_t wantno)
{
    const char *line;
    size_t len;
    uint64_t no;
    assert_int_equal(kprod_lines_next(r, &line, &len, &no), KPROD_LINE_OK);
    assert_int_equal(len, wantlen);
    assert_memory_equal(line, want, wantlen);
    assert_int_equal(no, wantno);
}

static void expect_eof(struct kprod_lines *r)
{
    const char *line;
    size_t len;
    uint64_t no;
    assert_int_equal(kprod_lines_next(r, &line, &len, &no), KPROD_LINE_EOF);
    assert_int_equal(kprod_lines_next(r, &line, &len, &no), KPROD_LINE_EOF);
}

static void test_lines_byte_for_byte(void **state)
{
    (void)state;
    static const char data[] = "{\"id\":\"a\"}\n"
                               "\n"
                               "x\0y\r\n"
                               "last";
    int fd = file_with(data, sizeof data - 1);
    struct kprod_lines *r = kprod_lines_new(fd, 100);
    expect_line(r, "{\"id\":\"a\"}", 10, 1);
    expect_line(r, "", 0, 2);
    expect_line(r, "x\0y\r", 4, 3); /* NUL and CR kept */
    expect_line(r, "last", 4, 4);   /* no trailing newline */
    expect_eof(r);
    kprod_lines_free(r);
    kprod_lines_free(NULL);
    close(fd);

    fd = file_with("", 0);
    r = kprod_lines_new(fd, 10);
    expect_eof(r);
    kprod_lines_free(r);
    close(fd);
}

static void test_lines_cap(void **state)
{
    (void)state;
    /* Cap 8: "12345678" fits exactly; 9 and 30 bytes are rejected with
     * their length and line number, and reading goes on after them. */
    char data[128];
    size_t n = 0;
    const char *parts[] = {"12345678\n", "123456789\n",
                           "abcdefghijklmnopqrstuvwxyz0123\n", "ok\n",
                           "123456789"};
    for (size_t i = 0; i < 5; i++) {
        memcpy(data + n, parts[i], strlen(parts[i]));
        n += strlen(parts[i]);
    }
    int fd = file_with(data, n);
    struct kprod_lines *r = kprod_lines_new(fd, 8);
    const char *line;
    size_t len;
    uint64_t no;
    expect_line(r, "12345678", 8, 1);
    assert_int_equal(kprod_lines_next(r, &line, &len, &no),
                     KPROD_LINE_TOO_LONG);
    assert_int_equal(len, 9);
    assert_int_equal(no, 2);
    assert_int_equal(kprod_lines_next(r, &line, &len, &no),
                     KPROD_LINE_TOO_LONG);
    assert_int_equal(len, 30);
    assert_int_equal(no, 3);
    expect_line(r, "ok", 2, 4);
    /* Over-long last line without '\n'. */
    assert_int_equal(kprod_lines_next(r, &line, &len, &no),
                     KPROD_LINE_TOO_LONG);
    assert_int_equal(len, 9);
    assert_int_equal(no, 5);
    expect_eof(r);
    kprod_lines_free(r);
    close(fd);
}

static void test_lines_from_pipe_in_pieces(void **state)
{
    (void)state;
    /* Two lines arriving in one write and a third after: the reader must
     * hand out the complete lines without waiting for more input. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct kprod_lines *r = kprod_lines_new(p[0], 64);
    assert_int_equal(write(p[1], "one\ntwo\nthr", 11), 11);
    expect_line(r, "one", 3, 1);
    expect_line(r, "two", 3, 2);
    assert_int_equal(write(p[1], "ee\n", 3), 3);
    expect_line(r, "three", 5, 3);
    close(p[1]);
    expect_eof(r);
    kprod_lines_free(r);
    close(p[0]);
}

/* --- request keys ------------------------------------------------------ */

static void expect_key(const char *line, const char *field, uint64_t no,
                       const char *want, size_t wantlen)
{
    size_t keylen = 999;
    char *key = kprod_request_key(line, strlen(line), field, no, &keylen);
    assert_int_equal(keylen, wantlen);
    assert_memory_equal(key, want, wantlen);
    assert_int_equal(key[keylen], '\0');
    free(key);
}

static void test_request_key(void **state)
{
    (void)state;
    expect_key("{\"id\":\"req-1\",\"inputs\":[]}", "id", 1, "req-1", 5);
    expect_key("{\"rid\":\"r\",\"id\":\"i\"}", "rid", 2, "r", 1);
    expect_key("{\"id\":\"\"}", "id", 3, "", 0);
    expect_key("{\"id\":\"a\\u0000b\"}", "id", 4, "a\0b", 3);
    /* Fallbacks: no field, not a string, not an object, not JSON. */
    expect_key("{\"name\":\"x\"}", "id", 5, "line-5", 6);
    expect_key("{\"id\":17}", "id", 6, "line-6", 6);
    expect_key("[\"id\"]", "id", 7, "line-7", 6);
    expect_key("not json", "id", 8, "line-8", 6);
    expect_key("{\"id\":\"a\"} trailing", "id", 9, "line-9", 6);
    expect_key("{\"id\":\"a\"", "id", 12345678901ULL, "line-12345678901", 16);
}

/* --- synthetic requests ------------------------------------------------ */

static void test_gen_values(void **state)
{
    (void)state;
    for (uint64_t i = 0; i < 50; i++) {
        for (size_t j = 0; j < 50; j++) {
            double v = kprod_gen_value(i, j);
            assert_true(v > -10.0 && v < 10.0);
            assert_true(v * 1024.0 == floor(v * 1024.0)); /* k/1024 */
            assert_true((double)(float)v == v);
            assert_true(v == kprod_gen_value(i, j)); /* deterministic */
        }
    }
    /* Not constant: requests and elements differ. */
    assert_true(kprod_gen_value(0, 0) != kprod_gen_value(1, 0) ||
                kprod_gen_value(0, 1) != kprod_gen_value(1, 1));
    assert_true(kprod_gen_value(3, 0) != kprod_gen_value(3, 1) ||
                kprod_gen_value(3, 2) != kprod_gen_value(3, 3));
}

/* The worker's own decoder reads what kinfer-produce generates. */
static void check_generated(int fp64, size_t dim, double factor)
{
    struct kprod_gen g = {
        .runid = "r1d", .dim = dim, .factor = factor, .fp64 = fp64};
    size_t size = kprod_gen_max_size(&g);
    char *buf = malloc(size);
    assert_non_null(buf);
    size_t len = kprod_gen_request(&g, 42, buf, size);
    assert_true(len < size);
    assert_int_equal(buf[len], '\0');

    char key[64];
    assert_int_equal(kprod_gen_key(&g, 42, key, sizeof key), 10);
    assert_string_equal(key, "gen-r1d-42");

    struct kinfer_request req;
    char err[256] = "";
    memset(&req, 0, sizeof req);
    assert_int_equal(
        kinfer_request_decode(buf, len, NULL, &req, err, sizeof err),
        KINFER_OK);
    assert_string_equal(req.id, "gen-r1d-42");
    assert_string_equal(req.model_name, "scale");
    const struct kinfer_param *f = kinfer_request_param(&req, "factor");
    assert_non_null(f);
    assert_true(f->number == factor);
    assert_int_equal(req.n_inputs, 1);
    const struct kinfer_tensor *t = &req.inputs[0];
    assert_string_equal(t->name, "x");
    assert_int_equal(t->dtype, fp64 ? KINFER_DTYPE_FP64 : KINFER_DTYPE_FP32);
    assert_int_equal(t->ndim, 1);
    assert_int_equal(t->shape[0], (int64_t)dim);
    for (size_t j = 0; j < dim; j++) {
        double v = fp64 ? ((const double *)t->data)[j]
                        : (double)((const float *)t->data)[j];
        assert_true(v == kprod_gen_value(42, j));
    }
    kinfer_request_clear(&req);
    free(buf);
}

static void test_gen_request_decodes(void **state)
{
    (void)state;
    check_generated(0, 8, 2.0);
    check_generated(1, 8, 0.1);
    check_generated(0, 1, -3.5);
    check_generated(1, 4096, 1e-3);
}

/* --binary: the worker decodes the request, answers it in the binary form
 * as it asks, and the check reads that answer back; a changed byte is
 * caught. */
static void check_generated_binary(int fp64, size_t dim, double factor)
{
    struct kprod_gen g = {.runid = "r1d",
                          .dim = dim,
                          .factor = factor,
                          .fp64 = fp64,
                          .binary = 1};
    size_t size = kprod_gen_max_size(&g), json_len = 0;
    char *buf = malloc(size);
    assert_non_null(buf);
    size_t len = kprod_gen_request_form(&g, 7, buf, size, &json_len);
    assert_int_equal(len - json_len, dim * (fp64 ? 8 : 4));

    struct kinfer_request req;
    char err[256] = "";
    assert_int_equal(kinfer_request_decode_binary(buf, len, json_len, NULL,
                                                  &req, err, sizeof err),
                     KINFER_OK);
    const struct kinfer_tensor *in = &req.inputs[0];
    assert_int_equal(in->count, dim);
    struct kinfer_tensor out;
    assert_int_equal(kinfer_tensor_init(&out, "x", in->dtype, 1, in->shape),
                     KINFER_OK);
    for (size_t j = 0; j < dim; j++) {
        double v = fp64 ? ((const double *)in->data)[j]
                        : (double)((const float *)in->data)[j];
        assert_true(v == kprod_gen_value(7, j));
        if (fp64)
            ((double *)out.data)[j] = v * factor;
        else
            ((float *)out.data)[j] = (float)(v * factor);
    }
    char *res = NULL;
    size_t res_len = 0, res_json = 0;
    assert_int_equal(kinfer_result_encode_for(&req, "scale", "1", &out, 1, &res,
                                              &res_len, &res_json),
                     KINFER_OK);
    assert_true(res_json < res_len);
    char why[256] = "";
    assert_int_equal(
        kprod_result_check_form(res, res_len, res_json, &g, 7, why, sizeof why),
        KPROD_RESULT_OK);
    res[res_len - 1] ^= 0x40; /* the last value's top byte */
    assert_int_equal(
        kprod_result_check_form(res, res_len, res_json, &g, 7, why, sizeof why),
        KPROD_RESULT_WRONG);
    assert_non_null(strstr(why, "(binary) element"));
    /* Without the header length it is not JSON at all. */
    assert_int_equal(
        kprod_result_check_form(res, res_len, res_len, &g, 7, why, sizeof why),
        KPROD_RESULT_WRONG);
    free(res);
    kinfer_tensor_clear(&out);
    kinfer_request_clear(&req);
    free(buf);
}

static void test_gen_request_binary(void **state)
{
    (void)state;
    check_generated_binary(0, 8, 2.0);
    check_generated_binary(1, 3, -0.5);
    check_generated_binary(0, 768, 1.0);
}

/* --- result checks ----------------------------------------------------- */

static enum kprod_verdict check(const char *json, const struct kprod_gen *g,
                                int64_t index, char *why)
{
    why[0] = '\0';
    return kprod_result_check(json, strlen(json), g, index, why, 256);
}

/* A result as the worker's encoder writes it, values scaled by mul. */
static char *encoded_result(const struct kprod_gen *g, uint64_t index,
                            double mul)
{
    struct kinfer_tensor t;
    int64_t shape[1] = {(int64_t)g->dim};
    enum kinfer_dtype dt = g->fp64 ? KINFER_DTYPE_FP64 : KINFER_DTYPE_FP32;
    assert_int_equal(kinfer_tensor_init(&t, "x", dt, 1, shape), KINFER_OK);
    for (size_t j = 0; j < g->dim; j++) {
        double v = kprod_gen_value(index, j) * g->factor * mul;
        if (g->fp64)
            ((double *)t.data)[j] = v;
        else
            ((float *)t.data)[j] = (float)v;
    }
    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(
        kinfer_result_encode("id", "scale", NULL, &t, 1, &out, &outlen),
        KINFER_OK);
    kinfer_tensor_clear(&t);
    char *s = malloc(outlen + 1);
    assert_non_null(s);
    memcpy(s, out, outlen);
    s[outlen] = '\0';
    free(out);
    return s;
}

static void test_result_check_values(void **state)
{
    (void)state;
    char why[256];
    struct kprod_gen g32 = {.runid = "r", .dim = 16, .factor = 0.1};
    struct kprod_gen g64 = {.runid = "r", .dim = 16, .factor = 0.1, .fp64 = 1};

    char *s = encoded_result(&g32, 5, 1.0);
    assert_int_equal(check(s, &g32, 5, why), KPROD_RESULT_OK);
    /* Checked against the right request's values. */
    assert_int_equal(check(s, &g32, 6, why), KPROD_RESULT_WRONG);
    assert_non_null(strstr(why, "outputs[0].data["));
    free(s);

    s = encoded_result(&g64, 5, 1.0);
    assert_int_equal(check(s, &g64, 5, why), KPROD_RESULT_OK);
    free(s);

    /* 5e-6 relative: inside FP32's tolerance, outside FP64's. */
    s = encoded_result(&g32, 9, 1.0 + 5e-6);
    assert_int_equal(check(s, &g32, 9, why), KPROD_RESULT_OK);
    free(s);
    s = encoded_result(&g64, 9, 1.0 + 5e-6);
    assert_int_equal(check(s, &g64, 9, why), KPROD_RESULT_WRONG);
    free(s);
    s = encoded_result(&g32, 9, 1.0 + 5e-5);
    assert_int_equal(check(s, &g32, 9, why), KPROD_RESULT_WRONG);
    free(s);
    s = encoded_result(&g64, 9, 1.0 + 5e-7);
    assert_int_equal(check(s, &g64, 9, why), KPROD_RESULT_OK);
    free(s);

    /* Without a generator only the shape of the result matters. */
    s = encoded_result(&g32, 1, 3.0);
    assert_int_equal(check(s, NULL, -1, why), KPROD_RESULT_OK);
    assert_int_equal(check(s, &g32, -1, why), KPROD_RESULT_OK);
    free(s);
}

static void test_result_check_shapes(void **state)
{
    (void)state;
    char why[256];
    struct kprod_gen g = {.runid = "r", .dim = 2, .factor = 2.0, .fp64 = 1};
    char ok[256], nested[256], short_[256], long_[256], nan_[256];
    double a = 2 * kprod_gen_value(0, 0), b = 2 * kprod_gen_value(0, 1);
    snprintf(ok, sizeof ok, "{\"outputs\":[{\"data\":[%.17g,%.17g]}]}", a, b);
    snprintf(nested, sizeof nested,
             "{\"outputs\":[{\"data\":[[%.17g],[%.17g]]}]}", a, b);
    snprintf(short_, sizeof short_, "{\"outputs\":[{\"data\":[%.17g]}]}", a);
    snprintf(long_, sizeof long_, "{\"outputs\":[{\"data\":[%.17g,%.17g,1]}]}",
             a, b);
    snprintf(nan_, sizeof nan_, "{\"outputs\":[{\"data\":[%.17g,\"x\"]}]}", a);

    assert_int_equal(check(ok, &g, 0, why), KPROD_RESULT_OK);
    assert_int_equal(check(nested, &g, 0, why), KPROD_RESULT_OK);
    assert_int_equal(check(short_, &g, 0, why), KPROD_RESULT_WRONG);
    assert_string_equal(why, "outputs[0].data: 1 values, expected 2");
    assert_int_equal(check(long_, &g, 0, why), KPROD_RESULT_WRONG);
    assert_string_equal(why, "outputs[0].data: 3 values, expected 2");
    assert_int_equal(check(nan_, &g, 0, why), KPROD_RESULT_WRONG);
    assert_string_equal(why, "outputs[0].data[1]: not a number");
    assert_int_equal(check("{\"outputs\":[]}", &g, 0, why), KPROD_RESULT_WRONG);
    assert_string_equal(why, "no outputs[0].data array");
    assert_int_equal(check("{}", &g, 0, why), KPROD_RESULT_WRONG);

    /* Error results are errors whatever else they hold. */
    assert_int_equal(
        check("{\"id\":\"x\",\"error\":\"bad shape\"}", &g, 0, why),
        KPROD_RESULT_ERROR);
    assert_string_equal(why, "bad shape");
    assert_int_equal(check("{\"error\":\"e\"}", NULL, -1, why),
                     KPROD_RESULT_ERROR);
    assert_int_equal(check("{\"error\":null}", NULL, -1, why),
                     KPROD_RESULT_ERROR);

    /* Unreadable results are wrong even when nothing is verified. */
    assert_int_equal(check("not json", NULL, -1, why), KPROD_RESULT_WRONG);
    assert_non_null(strstr(why, "not JSON"));
    assert_int_equal(check("[1,2]", NULL, -1, why), KPROD_RESULT_WRONG);
    assert_string_equal(why, "result is not a JSON object");
    assert_int_equal(kprod_result_check("", 0, NULL, -1, why, sizeof why),
                     KPROD_RESULT_WRONG);
    assert_int_equal(check("{\"outputs\":[]}", NULL, -1, why), KPROD_RESULT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile_nearest_rank),
        cmocka_unit_test(test_percentile_large_n_exact),
        cmocka_unit_test(test_summary_await_text_and_json),
        cmocka_unit_test(test_summary_send_only_and_failures),
        cmocka_unit_test(test_p90_and_mean_exact),
        cmocka_unit_test(test_summary_closed_loop),
        cmocka_unit_test(test_pending_match_duplicate_unknown),
        cmocka_unit_test(test_pending_resend_and_failure),
        cmocka_unit_test(test_pending_many_and_binary_keys),
        cmocka_unit_test(test_lines_byte_for_byte),
        cmocka_unit_test(test_lines_cap),
        cmocka_unit_test(test_lines_from_pipe_in_pieces),
        cmocka_unit_test(test_request_key),
        cmocka_unit_test(test_gen_values),
        cmocka_unit_test(test_gen_request_decodes),
        cmocka_unit_test(test_gen_request_binary),
        cmocka_unit_test(test_result_check_values),
        cmocka_unit_test(test_result_check_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
