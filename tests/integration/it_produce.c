/* Integration test of kinfer-produce's own modes against a real broker and
 * worker:
 *  - --concurrency N (closed loop): every request answered, and never more
 *    than N outstanding -- by the tool's own figure and, independently, by
 *    the CreateTime stamps of the requests and results on the topics (an
 *    open-loop run shows the same check does see far more than N);
 *  - --replay-dlq: bad requests dead-lettered by the worker are replayed
 *    into a fresh topic, after a --dry-run that sends nothing, with keys,
 *    values and non-kinfer headers byte for byte, kinfer-* headers gone,
 *    a tombstone replayed as a null value, and shed copies and a foreign
 *    DLQ message skipped and counted.
 * kinfer-produce runs as a child process; this file has its own reader,
 * since the checks need message timestamps and null keys.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
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

#define TOOL_TIMEOUT_MS 240000
#define READ_TIMEOUT_MS 60000
#define STOP_TIMEOUT_MS 45000
#define CLOSED_N 8
#define CLOSED_REQUESTS 2000

/* --- running kinfer-produce --------------------------------------------- */

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The last line of text parsed as a JSON object, or NULL. */
static json_t *last_json_line(const char *text)
{
    if (text == NULL)
        return NULL;
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '\n')
        len--;
    size_t start = len;
    while (start > 0 && text[start - 1] != '\n')
        start--;
    json_t *j = json_loadb(text + start, len - start, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static long long jint(const json_t *o, const char *path1, const char *path2)
{
    const json_t *v = json_object_get(o, path1);
    if (path2 != NULL)
        v = json_object_get(v, path2);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* --- reading a topic with timestamps ------------------------------------ */

struct rec {
    int32_t partition;
    int64_t offset;
    int64_t ts; /* CreateTime, ms */
    char *key;  /* NULL for a null key; else a copy + NUL */
    size_t key_len;
    char *value; /* NULL for a null value */
    size_t len;
    rd_kafka_headers_t *headers; /* NULL when none */
};

struct recs {
    struct rec *v;
    size_t n, cap;
};

static char *dup_bytes(const void *p, size_t len)
{
    if (p == NULL)
        return NULL;
    char *c = malloc(len + 1);
    assert_non_null(c);
    memcpy(c, p, len);
    c[len] = '\0';
    return c;
}

static void recs_add(struct recs *r, const rd_kafka_message_t *m)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        assert_non_null(r->v);
    }
    struct rec *e = &r->v[r->n++];
    rd_kafka_timestamp_type_t tt;
    e->partition = m->partition;
    e->offset = m->offset;
    e->ts = rd_kafka_message_timestamp(m, &tt);
    e->key = dup_bytes(m->key, m->key_len);
    e->key_len = m->key_len;
    e->value = dup_bytes(m->payload, m->len);
    e->len = m->len;
    rd_kafka_headers_t *h = NULL;
    e->headers = rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR
                     ? rd_kafka_headers_copy(h)
                     : NULL;
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].key);
        free(r->v[i].value);
        if (r->v[i].headers != NULL)
            rd_kafka_headers_destroy(r->v[i].headers);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

static rd_kafka_t *new_consumer(struct it_ctx *ctx)
{
    char errstr[512], group[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    it_unique_name(ctx, "reader", group, sizeof group);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", it_ctx_brokers(ctx),
                          errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                          sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "it: consumer config: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fprintf(stderr, "it: consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Sum of topic's end offsets (n partitions, n <= 64) into *total, and each
 * into end[] when not NULL.  0 or -1. */
static int end_offsets(rd_kafka_t *rk, const char *topic, int n, int64_t *end,
                       int64_t *total)
{
    *total = 0;
    for (int p = 0; p < n; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "it: watermarks of %s [%d]: %s\n", topic, p,
                    rd_kafka_err2str(e));
            return -1;
        }
        if (end != NULL)
            end[p] = hi;
        *total += hi;
    }
    return 0;
}

/* Append every message of topic, from the beginning to the end offsets
 * at the time of the call, to out.  0, or -1 after printing why. */
static int read_topic(struct it_ctx *ctx, const char *topic, struct recs *out)
{
    int n = it_topic_partitions(ctx, topic);
    if (n <= 0 || n > 64)
        return -1;
    rd_kafka_t *rk = new_consumer(ctx);
    if (rk == NULL)
        return -1;
    int64_t end[64], total;
    int done[64] = {0}, remaining = 0, rc = -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    if (end_offsets(rk, topic, n, end, &total) != 0)
        goto out;
    for (int p = 0; p < n; p++) {
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        done[p] = end[p] == 0;
        remaining += !done[p];
    }
    if (rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto out;
    int64_t deadline = it_now_ms() + READ_TIMEOUT_MS;
    while (remaining > 0 && it_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        int32_t p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && p >= 0 && p < n &&
            !done[p] && m->offset < end[p]) {
            recs_add(out, m);
            if (m->offset + 1 >= end[p]) {
                done[p] = 1;
                remaining--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rc = remaining == 0 ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "it: %s not read to its end within %d ms\n", topic,
                READ_TIMEOUT_MS);
out:
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* Wait until topic's end offsets add up to at least want. */
static int wait_total(struct it_ctx *ctx, const char *topic, int64_t want,
                      int64_t timeout_ms, int64_t *got)
{
    int n = it_topic_partitions(ctx, topic);
    rd_kafka_t *rk = new_consumer(ctx);
    int rc = -1;
    if (rk == NULL || n <= 0 || n > 64)
        goto out;
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        if (end_offsets(rk, topic, n, NULL, got) == 0 && *got >= want) {
            rc = 0;
            break;
        }
        if (it_now_ms() >= deadline)
            break;
        nap_ms(100); /* a polling interval, bounded by the deadline */
    }
out:
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return rc;
}

/* --- closed loop -------------------------------------------------------- */

/* Key "gen-<runid>-<i>": the run id into runid and i into *index. */
static int parse_gen_key(const struct rec *r, char *runid, size_t size,
                         long *index)
{
    if (r->key == NULL || strncmp(r->key, "gen-", 4) != 0)
        return -1;
    const char *dash = strrchr(r->key, '-');
    if (dash == r->key + 3)
        return -1;
    size_t idlen = (size_t)(dash - (r->key + 4));
    if (idlen + 1 > size)
        return -1;
    memcpy(runid, r->key + 4, idlen);
    runid[idlen] = '\0';
    char *end;
    *index = strtol(dash + 1, &end, 10);
    return *end == '\0' && *index >= 0 ? 0 : -1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The most requests of run runid sent and not yet answered at one moment,
 * from the CreateTime stamps: for every request stamp T, the requests
 * stamped <= T minus the first results stamped <= T.  A result is stamped
 * by the worker before kinfer-produce reads it, and the request it lets
 * go is stamped after, so a closed loop of N keeps this <= N.  *answered
 * gets the number of requests with a result. */
static long max_in_flight(const struct recs *req, const struct recs *res,
                          const char *runid, size_t n, size_t *answered)
{
    int64_t *sent = calloc(n, sizeof *sent);
    int64_t *first = calloc(n, sizeof *first);
    assert_non_null(sent);
    assert_non_null(first);
    for (size_t i = 0; i < n; i++)
        sent[i] = first[i] = INT64_MAX;
    char id[64];
    long idx;
    for (size_t i = 0; i < req->n; i++)
        if (parse_gen_key(&req->v[i], id, sizeof id, &idx) == 0 &&
            strcmp(id, runid) == 0 && (size_t)idx < n)
            sent[idx] = req->v[i].ts;
    for (size_t i = 0; i < res->n; i++)
        if (parse_gen_key(&res->v[i], id, sizeof id, &idx) == 0 &&
            strcmp(id, runid) == 0 && (size_t)idx < n &&
            res->v[i].ts < first[idx])
            first[idx] = res->v[i].ts;
    *answered = 0;
    for (size_t i = 0; i < n; i++)
        *answered += first[i] != INT64_MAX;
    qsort(sent, n, sizeof *sent, cmp_i64);
    qsort(first, n, sizeof *first, cmp_i64);
    long max = 0;
    size_t j = 0;
    for (size_t i = 0; i < n && sent[i] != INT64_MAX; i++) {
        int64_t t = sent[i];
        while (i + 1 < n && sent[i + 1] == t)
            i++;
        while (j < n && first[j] <= t)
            j++;
        long v = (long)(i + 1) - (long)j;
        if (v > max)
            max = v;
    }
    free(sent);
    free(first);
    return max;
}

/* The run id of the generated requests in req that is not other (NULL:
 * any).  Fails the test unless there is exactly one. */
static void find_runid(struct it_ctx *ctx, const struct recs *req,
                       const char *other, char *runid, size_t size)
{
    runid[0] = '\0';
    char id[64];
    long idx;
    for (size_t i = 0; i < req->n; i++) {
        if (parse_gen_key(&req->v[i], id, sizeof id, &idx) != 0 ||
            (other != NULL && strcmp(id, other) == 0))
            continue;
        IT_REQUIRE(ctx, runid[0] == '\0' || strcmp(id, runid) == 0,
                   "two new runs on the request topic: %s and %s", runid, id);
        snprintf(runid, size, "%s", id);
    }
    IT_REQUIRE(ctx, runid[0] != '\0', "no generated request found");
}

static void test_concurrency(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 4, 4, NULL, NULL);
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

    /* --rate and --concurrency exclude each other: a usage error. */
    char *out = NULL;
    const char *both[] = {
        "--topic", t.in, "--output-topic", t.out, "--generate", "1",
        "--rate",  "10", "--concurrency",  "2",   NULL};
    int rc = it_produce_capture(ctx, both, 30000, &out);
    IT_REQUIRE(ctx, rc == 2, "--rate with --concurrency exited %d, not 2", rc);
    free(out);

    char n_text[16], count_text[16];
    snprintf(n_text, sizeof n_text, "%d", CLOSED_N);
    snprintf(count_text, sizeof count_text, "%d", CLOSED_REQUESTS);
    const char *closed[] = {
        "--topic",    t.in,       "--output-topic", t.out,
        "--generate", count_text, "--concurrency",  n_text,
        "--timeout",  "120",      "--json",         "--quiet",
        NULL};
    rc = it_produce_capture(ctx, closed, TOOL_TIMEOUT_MS, &out);
    json_t *sum = last_json_line(out);
    IT_REQUIRE(ctx, rc == 0 && sum != NULL,
               "closed loop exited %d; output: %.2000s", rc, out ? out : "");
    IT_REQUIRE(ctx,
               jint(sum, "sent", NULL) == CLOSED_REQUESTS &&
                   jint(sum, "answered", NULL) == CLOSED_REQUESTS &&
                   jint(sum, "missing", NULL) == 0 &&
                   jint(sum, "wrong", NULL) == 0 &&
                   jint(sum, "errors", NULL) == 0,
               "closed loop summary: %s", out);
    IT_REQUIRE(ctx, jint(sum, "concurrency", NULL) == CLOSED_N,
               "summary lacks concurrency %d: %s", CLOSED_N, out);
    /* The first N go out before any answer can come back. */
    IT_REQUIRE(ctx, jint(sum, "max_outstanding", NULL) == CLOSED_N,
               "max_outstanding is not %d: %s", CLOSED_N, out);
    const json_t *lat = json_object_get(sum, "latency_ms");
    IT_REQUIRE(ctx,
               json_is_number(json_object_get(lat, "p90")) &&
                   json_is_number(json_object_get(lat, "mean")),
               "latency_ms lacks p90 or mean: %s", out);
    double closed_thr = json_number_value(json_object_get(sum, "throughput"));
    json_decref(sum);
    free(out);

    struct recs req = {0}, res = {0};
    IT_REQUIRE(ctx, read_topic(ctx, t.in, &req) == 0, "read %s", t.in);
    IT_REQUIRE(ctx, read_topic(ctx, t.out, &res) == 0, "read %s", t.out);
    char closed_id[64];
    find_runid(ctx, &req, NULL, closed_id, sizeof closed_id);
    size_t answered = 0;
    long closed_max =
        max_in_flight(&req, &res, closed_id, CLOSED_REQUESTS, &answered);
    IT_REQUIRE(ctx, answered == CLOSED_REQUESTS,
               "%zu of %d requests have a result on %s", answered,
               CLOSED_REQUESTS, t.out);
    IT_REQUIRE(ctx, closed_max <= CLOSED_N,
               "by the topics' timestamps %ld requests were outstanding "
               "at once, over --concurrency %d",
               closed_max, CLOSED_N);

    /* The same check on an open-loop run sees far more in flight. */
    const char *open[] = {"--topic", t.in,         "--output-topic",
                          t.out,     "--generate", count_text,
                          "--await", "--timeout",  "120",
                          "--json",  "--quiet",    NULL};
    rc = it_produce_capture(ctx, open, TOOL_TIMEOUT_MS, &out);
    IT_REQUIRE(ctx, rc == 0, "open loop exited %d: %.2000s", rc,
               out ? out : "");
    free(out);
    recs_free(&req);
    recs_free(&res);
    IT_REQUIRE(ctx, read_topic(ctx, t.in, &req) == 0, "read %s", t.in);
    IT_REQUIRE(ctx, read_topic(ctx, t.out, &res) == 0, "read %s", t.out);
    char open_id[64];
    find_runid(ctx, &req, closed_id, open_id, sizeof open_id);
    long open_max =
        max_in_flight(&req, &res, open_id, CLOSED_REQUESTS, &answered);
    IT_REQUIRE(ctx, answered == CLOSED_REQUESTS, "open loop: %zu answered",
               answered);
    IT_REQUIRE(ctx, open_max > CLOSED_N,
               "the timestamp check saw only %ld in flight in an open-loop "
               "run: it could not catch a broken closed loop",
               open_max);

    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, STOP_TIMEOUT_MS, &status, NULL) == 0,
               "worker did not stop");
    printf("RESULT it_produce closed_loop n=%d requests=%d throughput=%.1f "
           "max_in_flight_by_timestamps=%ld open_loop_max_in_flight=%ld\n",
           CLOSED_N, CLOSED_REQUESTS, closed_thr, closed_max, open_max);
    recs_free(&req);
    recs_free(&res);
}

/* --- replay ------------------------------------------------------------- */

#define BIG_VALUE 20000  /* over the DLQ's 8000: headers, then value shed */
#define BIG_HEADER 10000 /* over it too: the headers are shed */

struct dead_case {
    const char *key; /* NULL: a null key */
    size_t key_len;
    const char *value; /* NULL: a null value (tombstone) */
    size_t len;
    int replayed; /* 0: its dead letter is shed, so it is skipped */
};

static char big_value[BIG_VALUE];
static char big_header[BIG_HEADER];

static struct dead_case dcases[] = {
    {"bad-text", 8, "this is not JSON", 16, 1},
    {"bad-tomb", 8, NULL, 0, 1},
    {"bad-empty", 9, "", 0, 1},
    {"k\0\xff", 3, "[1,2]", 5, 1},
    {NULL, 0, "42", 2, 1},
    {"bad-big", 7, big_value, BIG_VALUE, 0},
    {"bad-bighdr", 10, "nope", 4, 0},
};
#define N_DCASES (sizeof dcases / sizeof dcases[0])
#define N_REPLAYED 5

/* Case c's headers: a trace id, binary bytes with a NUL, a null value, and
 * a kinfer-* header of the request's own (replay drops every kinfer-*
 * header); bad-bighdr adds a header too big for the DLQ. */
static rd_kafka_headers_t *dcase_headers(size_t c, int with_kinfer)
{
    char trace[32];
    snprintf(trace, sizeof trace, "trace-%zu", c);
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    rd_kafka_header_add(h, "trace-id", -1, trace, -1);
    rd_kafka_header_add(h, "x-bin", -1, "\x00\x01\xfe\xff", 4);
    rd_kafka_header_add(h, "x-null", -1, NULL, 0);
    if (with_kinfer)
        rd_kafka_header_add(h, "kinfer-custom", -1, "mine", -1);
    if (strcmp(dcases[c].key ? dcases[c].key : "", "bad-bighdr") == 0)
        rd_kafka_header_add(h, "pad", -1, big_header, sizeof big_header);
    return h;
}

static int same_key(const struct rec *r, const struct dead_case *d)
{
    if (d->key == NULL)
        return r->key == NULL;
    return r->key != NULL && r->key_len == d->key_len &&
           memcmp(r->key, d->key, d->key_len) == 0;
}

/* Why r does not carry exactly want's headers (names, values, null
 * values, order), or NULL. */
static const char *headers_differ(const rd_kafka_headers_t *got,
                                  const rd_kafka_headers_t *want, char *buf,
                                  size_t size)
{
    const char *gn, *wn;
    const void *gv, *wv;
    size_t gs, ws;
    for (size_t i = 0;; i++) {
        int g =
            got != NULL && rd_kafka_header_get_all(got, i, &gn, &gv, &gs) == 0;
        int w = rd_kafka_header_get_all(want, i, &wn, &wv, &ws) == 0;
        if (!g && !w)
            return NULL;
        if (g != w) {
            snprintf(buf, size, "header %zu: %s, expected %s", i,
                     g ? gn : "(none)", w ? wn : "(none)");
            return buf;
        }
        if (strcmp(gn, wn) != 0 || gs != ws || (gv == NULL) != (wv == NULL) ||
            (gs > 0 && memcmp(gv, wv, gs) != 0)) {
            snprintf(buf, size,
                     "header %zu: %s (%zu bytes%s), expected %s "
                     "(%zu bytes%s)",
                     i, gn, gs, gv ? "" : ", null", wn, ws, wv ? "" : ", null");
            return buf;
        }
    }
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[4096];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        if (strncmp(line, "dlq ", 4) == 0 && strstr(line, needle) != NULL)
            n++;
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

static void test_replay(void **state)
{
    struct it_ctx *ctx = *state;
    memset(big_value, 'x', sizeof big_value);
    memset(big_header, 'h', sizeof big_header);
    static const char *const small_dlq[] = {"max.message.bytes", "8000", NULL};
    struct it_topics t;
    it_topics_make(ctx, &t, 2, 2, NULL, small_dlq);
    char fresh[256];
    it_unique_name(ctx, "replay", fresh, sizeof fresh);
    IT_REQUIRE(ctx, it_topic_create(ctx, fresh, 2, NULL) == 0, "create %s",
               fresh);

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
    /* The cases whose copies fit first, then the ones that do not: the
     * broker refuses a whole batch for one oversized record, and the
     * worker then sheds every copy in it (reported to the lead), which
     * would make the faithful copies shed too. */
    int64_t got = 0;
    for (int phase = 1; phase >= 0; phase--) {
        size_t want = 0;
        for (size_t c = 0; c < N_DCASES; c++) {
            const struct dead_case *d = &dcases[c];
            want += d->replayed >= phase;
            if (d->replayed != phase)
                continue;
            IT_REQUIRE(ctx,
                       it_produce(ctx, t.in, (int32_t)(c % 2), d->key,
                                  d->key_len, d->value, d->len,
                                  dcase_headers(c, 1), NULL) == 0,
                       "produce case %zu", c);
        }
        IT_REQUIRE(ctx, it_produce_flush(ctx, 60000) == 0, "deliver requests");
        IT_REQUIRE(ctx,
                   wait_total(ctx, t.dlq, (int64_t)want, 120000, &got) == 0,
                   "%" PRId64 " of %zu dead letters on %s", got, want, t.dlq);
    }
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(w, STOP_TIMEOUT_MS, &status, NULL) == 0,
               "worker did not stop");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker ended with %s", it_status_str(status, st, sizeof st));

    /* A message on the DLQ the worker did not write. */
    rd_kafka_headers_t *fh = rd_kafka_headers_new(1);
    rd_kafka_header_add(fh, "trace-id", -1, "foreign", -1);
    IT_REQUIRE(
        ctx, it_produce(ctx, t.dlq, 0, "foreign", 7, "hello", 5, fh, NULL) == 0,
        "produce foreign");
    IT_REQUIRE(ctx, it_produce_flush(ctx, 60000) == 0, "deliver foreign");

    struct recs dlq = {0};
    IT_REQUIRE(ctx, read_topic(ctx, t.dlq, &dlq) == 0, "read %s", t.dlq);
    IT_REQUIRE(ctx, dlq.n == N_DCASES + 1, "%zu messages on %s, expected %zu",
               dlq.n, t.dlq, N_DCASES + 1);
    size_t shed = 0;
    for (size_t i = 0; i < dlq.n; i++)
        shed +=
            it_header_str(dlq.v[i].headers, "kinfer-shed", st, sizeof st) >= 0;
    IT_REQUIRE(ctx, shed == N_DCASES - N_REPLAYED,
               "%zu shed dead letters, expected %zu", shed,
               N_DCASES - N_REPLAYED);

    rd_kafka_t *probe = new_consumer(ctx);
    IT_REQUIRE(ctx, probe != NULL, "consumer");
    int64_t in_before = 0, fresh_before = 0, in_after = 0, fresh_after = 0;
    IT_REQUIRE(ctx,
               end_offsets(probe, t.in, 2, NULL, &in_before) == 0 &&
                   end_offsets(probe, fresh, 2, NULL, &fresh_before) == 0,
               "end offsets");

    /* Dry run to the default destination (each source topic): one line
     * per dead letter, nothing sent anywhere. */
    char *out = NULL;
    const char *dry[] = {"--replay-dlq", "--dlq-topic", t.dlq,
                         "--dry-run",    "--json",      NULL};
    int rc = it_produce_capture(ctx, dry, TOOL_TIMEOUT_MS, &out);
    json_t *sum = last_json_line(out);
    char to_in[300];
    snprintf(to_in, sizeof to_in, "replay -> %s ", t.in);
    IT_REQUIRE(ctx, rc == 1 && sum != NULL,
               "dry run exited %d (1: shed copies are not replayed): %s", rc,
               out ? out : "");
    IT_REQUIRE(ctx,
               count_lines(out, "") == N_DCASES + 1 &&
                   count_lines(out, to_in) == N_REPLAYED &&
                   count_lines(out, "skip shed") == N_DCASES - N_REPLAYED &&
                   count_lines(out, "skip not a dead letter") == 1 &&
                   count_lines(out, "value null (tombstone)") == 1,
               "dry-run lines: %s", out);
    IT_REQUIRE(ctx,
               json_is_true(json_object_get(sum, "dry_run")) &&
                   jint(sum, "read", NULL) == (long long)N_DCASES + 1 &&
                   jint(sum, "replayed", NULL) == N_REPLAYED &&
                   jint(sum, "skipped", "shed") == N_DCASES - N_REPLAYED &&
                   jint(sum, "skipped", "not_dead_letter") == 1 &&
                   json_is_true(json_object_get(sum, "complete")),
               "dry-run summary: %s", out);
    json_decref(sum);
    free(out);

    /* A filter that matches nothing: everything filtered, nothing lost. */
    const char *none[] = {
        "--replay-dlq",   "--dlq-topic",        t.dlq,    "--topic", fresh,
        "--filter-error", "no error says this", "--json", NULL};
    rc = it_produce_capture(ctx, none, TOOL_TIMEOUT_MS, &out);
    sum = last_json_line(out);
    IT_REQUIRE(ctx,
               rc == 0 && sum != NULL &&
                   jint(sum, "skipped", "filtered") ==
                       (long long)N_DCASES + 1 &&
                   jint(sum, "replayed", NULL) == 0,
               "filtered run exited %d: %s", rc, out ? out : "");
    json_decref(sum);
    free(out);

    IT_REQUIRE(ctx,
               end_offsets(probe, t.in, 2, NULL, &in_after) == 0 &&
                   end_offsets(probe, fresh, 2, NULL, &fresh_after) == 0,
               "end offsets");
    IT_REQUIRE(ctx, in_after == in_before && fresh_after == fresh_before,
               "dry run or filtered run sent something: %s %" PRId64
               " -> %" PRId64 ", %s %" PRId64 " -> %" PRId64,
               t.in, in_before, in_after, fresh, fresh_before, fresh_after);

    /* For real, into the fresh topic. */
    const char *real[] = {"--replay-dlq", "--dlq-topic", t.dlq, "--topic",
                          fresh,          "--json",      NULL};
    rc = it_produce_capture(ctx, real, TOOL_TIMEOUT_MS, &out);
    sum = last_json_line(out);
    IT_REQUIRE(ctx, rc == 1 && sum != NULL, "replay exited %d: %s", rc,
               out ? out : "");
    IT_REQUIRE(ctx,
               json_is_false(json_object_get(sum, "dry_run")) &&
                   jint(sum, "read", NULL) == (long long)N_DCASES + 1 &&
                   jint(sum, "replayed", NULL) == N_REPLAYED &&
                   jint(sum, "delivery_failures", NULL) == 0 &&
                   jint(sum, "skipped", "shed") == N_DCASES - N_REPLAYED &&
                   jint(sum, "skipped", "not_dead_letter") == 1 &&
                   jint(sum, "skipped", "filtered") == 0 &&
                   json_is_true(json_object_get(sum, "complete")),
               "replay summary: %s", out);
    json_decref(sum);
    free(out);

    struct recs rep = {0};
    IT_REQUIRE(ctx, read_topic(ctx, fresh, &rep) == 0, "read %s", fresh);
    IT_REQUIRE(ctx, rep.n == N_REPLAYED, "%zu messages on %s, expected %d",
               rep.n, fresh, N_REPLAYED);
    IT_REQUIRE(ctx,
               end_offsets(probe, t.in, 2, NULL, &in_after) == 0 &&
                   in_after == in_before,
               "the replay with --topic wrote to the source topic too");
    for (size_t c = 0; c < N_DCASES; c++) {
        const struct dead_case *d = &dcases[c];
        size_t found = 0;
        for (size_t i = 0; i < rep.n; i++) {
            const struct rec *r = &rep.v[i];
            if (!same_key(r, d))
                continue;
            found++;
            char why[512];
            IT_REQUIRE(ctx, (r->value == NULL) == (d->value == NULL),
                       "case %zu: value is %s, expected %s", c,
                       r->value ? "not null" : "null",
                       d->value ? "not null" : "null (tombstone)");
            IT_REQUIRE(
                ctx,
                r->len == d->len &&
                    (d->len == 0 || memcmp(r->value, d->value, d->len) == 0),
                "case %zu: value of %zu bytes differs from the "
                "original's %zu",
                c, r->len, d->len);
            rd_kafka_headers_t *want = dcase_headers(c, 0);
            const char *diff =
                headers_differ(r->headers, want, why, sizeof why);
            rd_kafka_headers_destroy(want);
            IT_REQUIRE(ctx, diff == NULL, "case %zu: %s", c, diff);
        }
        IT_REQUIRE(ctx, found == (size_t)d->replayed,
                   "case %zu replayed %zu times, expected %d", c, found,
                   d->replayed);
    }
    printf("RESULT it_produce replay dead_letters=%zu replayed=%d shed=%zu "
           "foreign=1\n",
           N_DCASES, N_REPLAYED, N_DCASES - N_REPLAYED);
    rd_kafka_destroy(probe);
    recs_free(&dlq);
    recs_free(&rep);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_replay),
    };
    return it_main("produce", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
