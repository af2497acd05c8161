/* Unit tests of kinfer-produce --replay-dlq's decisions (producer/dlq.c):
 * which dead letters are replayed, skipped and why, where they go, which
 * headers are kept, the dry run's escaping of keys, --since, and the
 * summary in text and JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "dlq.h"

static struct kprod_bytes B(const char *s) {
    struct kprod_bytes b = {s, s != NULL ? strlen(s) : 0};
    return b;
}

/* A dead letter as the worker writes it for a request from
 * kinfer.requests. */
static struct kprod_dlq_headers
worker_headers(void)
{
    struct kprod_dlq_headers h = {
        .error = B("request is not valid JSON: invalid token"),
        .source_topic = B("kinfer.requests"),
        .source_partition = B("1"),
        .source_offset = B("42"),
    };
    return h;
}

static void test_classify_replay_and_destination(void **state)
{
    (void)state;
    struct kprod_dlq_headers h = worker_headers();
    struct kprod_dlq_plan plan;
    /* No --topic: back to the source topic. */
    assert_int_equal(
        kprod_dlq_classify(&h, 10, NULL, NULL, "default.in", &plan),
        KPROD_DLQ_REPLAY);
    assert_int_equal(plan.topic_len, strlen("kinfer.requests"));
    assert_memory_equal(plan.topic, "kinfer.requests", plan.topic_len);
    assert_int_equal(plan.null_value, 0);
    /* --topic wins over the header. */
    assert_int_equal(
        kprod_dlq_classify(&h, 10, NULL, "fixed.in", "default.in", &plan),
        KPROD_DLQ_REPLAY);
    assert_string_equal(plan.topic, "fixed.in");
    assert_int_equal(plan.topic_len, 8);
    /* No source header: the default topic. */
    h.source_topic = B(NULL);
    assert_int_equal(
        kprod_dlq_classify(&h, 10, NULL, NULL, "default.in", &plan),
        KPROD_DLQ_REPLAY);
    assert_string_equal(plan.topic, "default.in");
}

static void test_classify_tombstone_and_empty(void **state)
{
    (void)state;
    struct kprod_dlq_headers h = worker_headers();
    struct kprod_dlq_plan plan;
    h.tombstone = B("true");
    assert_int_equal(kprod_dlq_classify(&h, 0, NULL, NULL, "d", &plan),
                     KPROD_DLQ_REPLAY);
    assert_int_equal(plan.null_value, 1);
    /* The worker writes a tombstone's copy with an empty value only. */
    assert_int_equal(kprod_dlq_classify(&h, 3, NULL, NULL, "d", &plan),
                     KPROD_DLQ_MALFORMED);
    /* An empty request (not a tombstone) stays an empty value. */
    h.tombstone = B(NULL);
    assert_int_equal(kprod_dlq_classify(&h, 0, NULL, NULL, "d", &plan),
                     KPROD_DLQ_REPLAY);
    assert_int_equal(plan.null_value, 0);
}

static void test_classify_skips(void **state)
{
    (void)state;
    struct kprod_dlq_plan plan;
    /* Every shed part makes the copy unfaithful. */
    static const char *const sheds[] = {"headers", "headers,value",
                                        "headers,value,key"};
    for (size_t i = 0; i < 3; i++) {
        struct kprod_dlq_headers h = worker_headers();
        h.shed = B(sheds[i]);
        assert_int_equal(kprod_dlq_classify(&h, 5, NULL, NULL, "d", &plan),
                         KPROD_DLQ_SHED);
    }
    /* Not the worker's: no kinfer-error. */
    struct kprod_dlq_headers none = {0};
    assert_int_equal(kprod_dlq_classify(&none, 5, NULL, NULL, "d", &plan),
                     KPROD_DLQ_NOT_DEAD_LETTER);
    /* A source topic Kafka would refuse. */
    static const char *const bad_topics[] = {"", "a b", "a/b", "t\xff"};
    for (size_t i = 0; i < 4; i++) {
        struct kprod_dlq_headers h = worker_headers();
        h.source_topic = B(bad_topics[i]);
        assert_int_equal(kprod_dlq_classify(&h, 5, NULL, NULL, "d", &plan),
                         KPROD_DLQ_MALFORMED);
    }
    char long_topic[251];
    memset(long_topic, 'a', 250);
    long_topic[250] = '\0';
    struct kprod_dlq_headers h = worker_headers();
    h.source_topic = B(long_topic);
    assert_int_equal(kprod_dlq_classify(&h, 5, NULL, NULL, "d", &plan),
                     KPROD_DLQ_MALFORMED);
    long_topic[249] = '\0'; /* 249 is Kafka's longest name */
    h.source_topic = B(long_topic);
    assert_int_equal(kprod_dlq_classify(&h, 5, NULL, NULL, "d", &plan),
                     KPROD_DLQ_REPLAY);
}

static void test_classify_filter(void **state)
{
    (void)state;
    struct kprod_dlq_headers h = worker_headers();
    struct kprod_dlq_plan plan;
    assert_int_equal(
        kprod_dlq_classify(&h, 5, "not valid JSON", NULL, "d", &plan),
        KPROD_DLQ_REPLAY);
    assert_int_equal(kprod_dlq_classify(&h, 5, "shape", NULL, "d", &plan),
                     KPROD_DLQ_FILTERED);
    /* Case matters; the empty text matches every dead letter. */
    assert_int_equal(kprod_dlq_classify(&h, 5, "NOT VALID", NULL, "d", &plan),
                     KPROD_DLQ_FILTERED);
    assert_int_equal(kprod_dlq_classify(&h, 5, "", NULL, "d", &plan),
                     KPROD_DLQ_REPLAY);
    /* Filtered comes first: a shed copy of another error is filtered. */
    h.shed = B("headers");
    assert_int_equal(kprod_dlq_classify(&h, 5, "shape", NULL, "d", &plan),
                     KPROD_DLQ_FILTERED);
    assert_int_equal(kprod_dlq_classify(&h, 5, "JSON", NULL, "d", &plan),
                     KPROD_DLQ_SHED);
    /* The filter text may sit at the very end of the header. */
    assert_int_equal(
        kprod_dlq_classify(&h, 5, "invalid token", NULL, "d", &plan),
        KPROD_DLQ_SHED);
    struct kprod_dlq_headers none = {0};
    assert_int_equal(kprod_dlq_classify(&none, 5, "x", NULL, "d", &plan),
                     KPROD_DLQ_FILTERED);
}

static void test_header_kept(void **state)
{
    (void)state;
    assert_true(kprod_dlq_header_kept("traceparent"));
    assert_true(kprod_dlq_header_kept("x-kinfer-error"));
    assert_true(kprod_dlq_header_kept("kinfer"));
    assert_true(kprod_dlq_header_kept("Kinfer-error")); /* names are exact */
    assert_false(kprod_dlq_header_kept("kinfer-error"));
    assert_false(kprod_dlq_header_kept("kinfer-source-topic"));
    assert_false(kprod_dlq_header_kept("kinfer-shed"));
    assert_false(kprod_dlq_header_kept("kinfer-deadline-ms"));
    assert_false(kprod_dlq_header_kept("kinfer-"));
}

static void test_escape(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(kprod_escape("abc", 3, 80, buf, sizeof buf), "\"abc\"");
    assert_string_equal(kprod_escape("a\0\xff\"\\", 5, 80, buf, sizeof buf),
                        "\"a\\x00\\xff\\\"\\\\\"");
    assert_string_equal(kprod_escape(NULL, 0, 80, buf, sizeof buf), "null");
    assert_string_equal(kprod_escape("", 0, 80, buf, sizeof buf), "\"\"");
    /* At most max input bytes, then "...". */
    assert_string_equal(kprod_escape("abcdef", 6, 3, buf, sizeof buf),
                        "\"abc\"...");
    /* A small buffer cuts whole characters and still closes the quote. */
    char small[12];
    assert_string_equal(
        kprod_escape("\x01\x02\x03\x04", 4, 80, small, sizeof small),
        "\"\\x01\"...");
    assert_true(strlen(kprod_escape("abcdefghijklmnop", 16, 80, small,
                                    sizeof small)) < sizeof small);
}

static void test_parse_since(void **state)
{
    (void)state;
    int64_t now = 1700000000000LL, t = 0;
    assert_int_equal(kprod_parse_since("1699999999000", now, &t), 0);
    assert_int_equal(t, 1699999999000LL);
    assert_int_equal(kprod_parse_since("0", now, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(kprod_parse_since("90s", now, &t), 0);
    assert_int_equal(t, now - 90000);
    assert_int_equal(kprod_parse_since("90m", now, &t), 0);
    assert_int_equal(t, now - 90LL * 60000);
    assert_int_equal(kprod_parse_since("2h", now, &t), 0);
    assert_int_equal(t, now - 2LL * 3600000);
    assert_int_equal(kprod_parse_since("1d", now, &t), 0);
    assert_int_equal(t, now - 86400000LL);
    t = 7;
    assert_int_equal(kprod_parse_since("", now, &t), -1);
    assert_int_equal(kprod_parse_since("-5", now, &t), -1);
    assert_int_equal(kprod_parse_since("5x", now, &t), -1);
    assert_int_equal(kprod_parse_since("5mm", now, &t), -1);
    assert_int_equal(kprod_parse_since("m", now, &t), -1);
    assert_int_equal(kprod_parse_since("99999999999999999999", now, &t), -1);
    assert_int_equal(kprod_parse_since("999999999d", now, &t), -1);
    assert_int_equal(t, 7);
}

static char *print(const struct kprod_replay_summary *s, int json)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    kprod_replay_summary_print(s, json, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void test_summary(void **state)
{
    (void)state;
    struct kprod_replay_summary s = {
        .read = 9,
        .replayed = 5,
        .failed = 1,
        .complete = 1,
        .seconds = 1.5,
    };
    s.skipped[KPROD_DLQ_SHED] = 2;
    s.skipped[KPROD_DLQ_NOT_DEAD_LETTER] = 1;
    assert_int_equal(kprod_replay_lost(&s), 4);
    char *text = print(&s, 0);
    assert_string_equal(
        text, "dead letters read 9  replayed 5  delivery failures 1\n"
              "skipped  filtered 0  shed 2  not a dead letter 1  malformed 0\n"
              "1.50 s\n");
    free(text);
    char *json = print(&s, 1);
    assert_string_equal(json, "{\"dry_run\":false,\"read\":9,\"replayed\":5,"
                              "\"delivery_failures\":1,\"skipped\":{"
                              "\"filtered\":0,\"shed\":2,\"not_dead_letter\":1,"
                              "\"malformed\":0},\"complete\":true,"
                              "\"seconds\":1.500000,\"interrupted\":false}\n");
    free(json);

    /* Filtered dead letters are a choice, not a loss. */
    struct kprod_replay_summary d = {
        .dry_run = 1, .read = 4, .replayed = 1, .seconds = 0.25};
    d.skipped[KPROD_DLQ_FILTERED] = 3;
    assert_int_equal(kprod_replay_lost(&d), 0);
    text = print(&d, 0);
    assert_string_equal(
        text, "dead letters read 4  would replay 1  delivery failures 0\n"
              "skipped  filtered 3  shed 0  not a dead letter 0  malformed 0\n"
              "0.25 s\n"
              "dry run: nothing was sent\n"
              "incomplete: the DLQ was not read to its end\n");
    free(text);
    assert_string_equal(kprod_dlq_verdict_name(KPROD_DLQ_NOT_DEAD_LETTER),
                        "not a dead letter");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_replay_and_destination),
        cmocka_unit_test(test_classify_tombstone_and_empty),
        cmocka_unit_test(test_classify_skips),
        cmocka_unit_test(test_classify_filter),
        cmocka_unit_test(test_header_kept),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_parse_since),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
