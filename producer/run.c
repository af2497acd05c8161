/* The Kafka side of kinfer-produce.  The main thread reads or generates
 * requests, paces them, produces them and serves delivery reports; with
 * --await a result thread, started before the first send, reads the
 * output topic from its end and matches results to this run's keys.
 *
 * Lock: run.lock protects the pending table and every counter; it is never
 * held across a librdkafka call or a JSON parse.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kinfer/host.h"
#include "kinfer/log.h"
#include "lines.h"
#include "pending.h"
#include "run.h"
#include "shared/kafka.h"
#include "shared/thread.h"
#include "shared/util.h"

/* Log this many delivery failures and wrong results, then only count. */
#define LOG_LIMIT 10
/* After SIGINT, wait this long for queued requests before purging them. */
#define INTERRUPT_FLUSH_US (5 * 1000000LL)
/* Give up on the output topic's metadata after this long. */
#define SETUP_DEADLINE_US (5 * 1000000LL)
/* Progress lines start after this long and repeat every second. */
#define PROGRESS_AFTER_US (2 * 1000000LL)

struct run {
    const struct kprod_config *c;
    struct kinfer_kafka_events events; /* of both handles; owner: the run */
    rd_kafka_t *producer;
    rd_kafka_t *consumer; /* NULL without --await */
    pthread_t reader;
    int reader_started;
    atomic_int reader_stop;
    atomic_int fatal; /* the producer hit a fatal error */
    int64_t start_us;
    int64_t next_progress_us;

    pthread_mutex_t lock;
    pthread_cond_t answered_cond;  /* outstanding dropped to zero */
    struct kprod_pending *pending; /* --await only */
    struct kprod_latencies lat;
    uint64_t sent, failed, answered, errors, wrong, duplicates;
    uint64_t skipped;         /* over-long input lines (main thread) */
    uint64_t max_outstanding; /* most outstanding at once (--await) */
    int stalled; /* closed loop: no slot freed within --timeout (main) */
    int64_t last_answer_us;
    unsigned failures_logged, wrong_logged;
};

static int stopping(const struct run *r)
{
    return *r->c->stop || atomic_load(&r->fatal);
}

/* Keys are bytes; log at most 80 of them. */
static int key_len_for_log(size_t len)
{
    return len > 80 ? 80 : (int)len;
}

static void progress(struct run *r)
{
    int64_t now = kinfer_now_us();
    if (r->c->quiet || now < r->next_progress_us)
        return;
    r->next_progress_us = now + 1000000;
    pthread_mutex_lock(&r->lock);
    uint64_t sent = r->sent, answered = r->answered;
    pthread_mutex_unlock(&r->lock);

    char total[32] = "";
    if (r->c->generate > 0)
        kinfer_fmt(total, sizeof total, "/%" PRIu64, r->c->generate);
    if (r->c->await)
        fprintf(stderr, "sent %" PRIu64 "%s answered %" PRIu64 "\n", sent,
                total, answered);
    else
        fprintf(stderr, "sent %" PRIu64 "%s\n", sent, total);
}

/* --- callbacks (served by the thread polling each handle) -------------- */

static void delivery_cb(void *owner, const rd_kafka_message_t *m)
{
    struct run *r = owner;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    pthread_mutex_lock(&r->lock);
    r->failed++;
    if (r->pending != NULL)
        kprod_pending_fail(r->pending, m->key ? m->key : "", m->key_len);
    unsigned n = ++r->failures_logged;
    pthread_mutex_unlock(&r->lock);
    if (n <= LOG_LIMIT)
        KINFER_ERROR(
            "delivery failed for key '%.*s': %s%s", key_len_for_log(m->key_len),
            m->key ? (const char *)m->key : "", rd_kafka_err2str(m->err),
            n == LOG_LIMIT ? " (further failures only counted)" : "");
}

/* --- handles ------------------------------------------------------------ */

/* A handle of role with our settings first and the user's -X properties
 * after them, so that the user's win. */
static enum kinfer_err make_handle(struct run *r, enum kinfer_kafka_role role,
                                   const struct kinfer_kafka_prop *ours,
                                   size_t n_ours, rd_kafka_t **out, char *err,
                                   size_t errsize)
{
    const struct kinfer_kafka_setup s = {
        .role = role,
        .brokers = r->c->brokers,
        .defaults = ours,
        .n_defaults = n_ours,
        .user = r->c->kafka_props,
        .n_user = r->c->n_kafka_props,
        .events = &r->events,
    };
    return kinfer_kafka_new(&s, out, err, errsize);
}

static enum kinfer_err make_producer(struct run *r, char *err, size_t errsize)
{
    /* The worker's batching (lib/worker.c): 1 ms of linger keeps --await
     * latency low and batches still fill when sending as fast as possible;
     * -X linger.ms=... overrides it. */
    struct kinfer_kafka_prop ours[] = {
        {"enable.idempotence", "true"},
        {"linger.ms", "1"},
        {"socket.nagle.disable", "true"},
    };
    /* Closed loop: a request goes out only when an answer freed its slot,
     * so there is nothing to batch and linger would only add latency. */
    if (r->c->concurrency > 0)
        ours[1].value = "0";
    enum kinfer_err rc =
        make_handle(r, KINFER_KAFKA_PRODUCER, ours, sizeof ours / sizeof *ours,
                    &r->producer, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    /* Learn the partitions before the clock starts: without this the
     * first request to each partition waits up to a second inside
     * librdkafka 2.0.2 and skews every latency figure. */
    if (kinfer_kafka_warm(r->producer, r->c->topic, 10000, err, errsize) !=
        KINFER_OK)
        return KINFER_ERR_KAFKA;
    return KINFER_OK;
}

/* One attempt at assigning every partition of the output topic at its
 * high watermark.  Returns 0 on success, else -1 with the reason in err. */
static int assign_at_end_once(struct run *r, char *err, size_t errsize)
{
    const char *topic = r->c->output_topic;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *list = NULL;
    int ret = -1;

    enum kinfer_err rc = kinfer_kafka_topic_metadata(r->consumer, topic, 5000,
                                                     &md, err, errsize);
    if (rc == KINFER_OK && md->topics[0].partition_cnt <= 0) {
        kinfer_fmt(err, errsize, "topic '%s': no partitions", topic);
        rc = KINFER_ERR_NOT_FOUND;
    }
    if (rc == KINFER_ERR_NOT_FOUND) {
        size_t used = strlen(err);
        kinfer_fmt(err + used, errsize - used,
                   "; create the output topic first, e.g. with "
                   "ops/kafka.sh create-topic");
    }
    if (rc != KINFER_OK)
        goto out;
    const struct rd_kafka_metadata_topic *t = &md->topics[0];
    list = rd_kafka_topic_partition_list_new(t->partition_cnt);
    for (int i = 0; i < t->partition_cnt; i++) {
        int32_t p = t->partitions[i].id;
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            r->consumer, topic, p, &lo, &hi, 5000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kinfer_fmt(err, errsize, "end offset of %s [%" PRId32 "]: %s",
                       topic, p, rd_kafka_err2str(e));
            goto out;
        }
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = hi;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(r->consumer, list);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kinfer_fmt(err, errsize, "assigning %s: %s", topic,
                   rd_kafka_err2str(e));
        goto out;
    }
    ret = 0;
out:
    if (list != NULL)
        rd_kafka_topic_partition_list_destroy(list);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    return ret;
}

/* Start reading results at the current end of every partition, so every
 * result of this run is seen and older ones are skipped.  Retried for a
 * while: a topic created just before may not have leaders yet. */
static enum kinfer_err assign_at_end(struct run *r, char *err, size_t errsize)
{
    int64_t deadline = kinfer_now_us() + SETUP_DEADLINE_US;
    while (assign_at_end_once(r, err, errsize) != 0) {
        if (kinfer_now_us() >= deadline || *r->c->stop)
            return KINFER_ERR_NOT_FOUND;
        /* A retry back-off, not a synchronisation. */
        struct timespec pause = {0, 250 * 1000000L};
        nanosleep(&pause, NULL);
    }
    return KINFER_OK;
}

static enum kinfer_err make_consumer(struct run *r, char *err, size_t errsize)
{
    char group[64];
    /* No offsets are committed; the group only satisfies librdkafka. */
    kinfer_fmt(group, sizeof group, "kinfer-produce-%s", r->c->gen.runid);
    const struct kinfer_kafka_prop ours[] = {
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
    };
    enum kinfer_err rc = make_handle(r, KINFER_KAFKA_CONSUMER, ours, 4,
                                     &r->consumer, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    return assign_at_end(r, err, errsize);
}

/* --- results ------------------------------------------------------------ */

/* The JSON header's length of a result: its kinfer-inference-header-length
 * header (binary form), else the whole value.  A header that is not a
 * number yields len + 1, which the check reports. */
static size_t result_json_len(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, KINFER_HEADER_LENGTH, &v, &n) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
        return m->len;
    size_t x = 0;
    const char *p = v;
    if (v == NULL || n == 0 || n > 19)
        return m->len + 1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return m->len + 1;
        x = x * 10 + (size_t)(p[i] - '0');
    }
    return x;
}

static void on_result(struct run *r, const rd_kafka_message_t *m, int64_t now)
{
    const void *key = m->key ? m->key : "";
    int64_t send_us = 0, gen_index = -1;

    pthread_mutex_lock(&r->lock);
    enum kprod_match match =
        kprod_pending_answer(r->pending, key, m->key_len, &send_us, &gen_index);
    if (match == KPROD_MATCH_DUPLICATE)
        r->duplicates++;
    pthread_mutex_unlock(&r->lock);
    if (match != KPROD_MATCH_FIRST)
        return;

    char why[256];
    enum kprod_verdict v = kprod_result_check_form(
        m->payload ? m->payload : "", m->len, result_json_len(m),
        gen_index >= 0 ? &r->c->gen : NULL, gen_index, why, sizeof why);

    pthread_mutex_lock(&r->lock);
    r->answered++;
    r->last_answer_us = now;
    kprod_latencies_add(&r->lat, now - send_us);
    if (v == KPROD_RESULT_ERROR)
        r->errors++;
    unsigned logged = 0;
    if (v == KPROD_RESULT_WRONG) {
        r->wrong++;
        logged = ++r->wrong_logged;
    }
    /* Closed loop: every answer may free the slot the sender waits on. */
    if (r->c->concurrency > 0 || kprod_pending_outstanding(r->pending) == 0)
        pthread_cond_broadcast(&r->answered_cond);
    pthread_mutex_unlock(&r->lock);

    if (logged > 0 && logged <= LOG_LIMIT)
        KINFER_WARN("wrong result for key '%.*s': %s%s",
                    key_len_for_log(m->key_len), (const char *)key, why,
                    logged == LOG_LIMIT ? " (further ones only counted)" : "");
}

static void *reader_main(void *arg)
{
    struct run *r = arg;
    while (!atomic_load(&r->reader_stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->consumer, 100);
        if (m == NULL)
            continue;
        int64_t now = kinfer_now_us();
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            on_result(r, m, now);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            KINFER_WARN("reading results: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static enum kinfer_err start_reader(struct run *r, char *err, size_t errsize)
{
    /* SIGINT must reach the main thread, which may be blocked in read(). */
    int e = kinfer_thread_start(&r->reader, reader_main, r);
    if (e != 0) {
        kinfer_fmt(err, errsize, "cannot start the result thread: %s",
                   strerror(e));
        return KINFER_ERR_NOMEM;
    }
    r->reader_started = 1;
    return KINFER_OK;
}

/* --- sending ------------------------------------------------------------ */

/* Wait until the monotonic time deadline_us, serving delivery reports;
 * returns early when the run is stopping. */
static void wait_until(struct run *r, int64_t deadline_us)
{
    for (;;) {
        int64_t now = kinfer_now_us();
        if (now >= deadline_us || stopping(r))
            return;
        int64_t left = deadline_us - now;
        if (left > 2000) {
            rd_kafka_poll(r->producer, (int)((left - 1000) / 1000));
        } else {
            struct timespec ts = {
                .tv_sec = (time_t)(deadline_us / 1000000),
                .tv_nsec = (long)(deadline_us % 1000000) * 1000L,
            };
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        progress(r);
    }
}

/* json_len < len: the binary tensor form, whose JSON header length goes in
 * the kinfer-inference-header-length header. */
static rd_kafka_resp_err_t produce(struct run *r, const void *key,
                                   size_t keylen, const void *value, size_t len,
                                   size_t json_len)
{
    const struct kprod_config *c = r->c;
    struct kinfer_kafka_msg m = {
        .topic = c->topic,
        .key = key,
        .key_len = keylen,
        .value = (void *)value, /* copied: F_COPY */
        .len = len,
        .flags = RD_KAFKA_MSG_F_COPY,
    };
    if (c->header_name != NULL) {
        m.headers = rd_kafka_headers_new(2);
        rd_kafka_header_add(m.headers, c->header_name, -1, c->header_value,
                            (ssize_t)strlen(c->header_value));
    }
    if (json_len < len) {
        char num[32];
        kinfer_fmt(num, sizeof num, "%zu", json_len);
        if (m.headers == NULL)
            m.headers = rd_kafka_headers_new(1);
        rd_kafka_header_add(m.headers, KINFER_HEADER_LENGTH, -1, num, -1);
    }
    rd_kafka_resp_err_t e = kinfer_kafka_produce(r->producer, &m);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && m.headers != NULL)
        rd_kafka_headers_destroy(m.headers);
    return e;
}

/* Send one request.  Returns 0 when it was handed to librdkafka (or
 * failed there: counted as a delivery failure), -1 when the run stopped
 * while the queue was full and the request was not sent. */
static int send_one(struct run *r, const void *key, size_t keylen,
                    const void *value, size_t len, size_t json_len,
                    int64_t gen_index)
{
    if (r->pending != NULL) {
        /* Before producing: the result may arrive before producev
         * returns. */
        pthread_mutex_lock(&r->lock);
        kprod_pending_add(r->pending, key, keylen, kinfer_now_us(), gen_index);
        uint64_t out = kprod_pending_outstanding(r->pending);
        if (out > r->max_outstanding)
            r->max_outstanding = out;
        pthread_mutex_unlock(&r->lock);
    }
    rd_kafka_resp_err_t e;
    for (;;) {
        e = produce(r, key, keylen, value, len, json_len);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        if (stopping(r))
            break;
        rd_kafka_poll(r->producer, 50);
        progress(r);
    }
    pthread_mutex_lock(&r->lock);
    int not_sent = e == RD_KAFKA_RESP_ERR__QUEUE_FULL;
    if (!not_sent)
        r->sent++;
    unsigned n = 0;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (r->pending != NULL)
            kprod_pending_fail(r->pending, key, keylen);
        if (!not_sent) {
            r->failed++;
            n = ++r->failures_logged;
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (n > 0 && n <= LOG_LIMIT)
        KINFER_ERROR("cannot send key '%.*s': %s", key_len_for_log(keylen),
                     (const char *)key, rd_kafka_err2str(e));
    rd_kafka_poll(r->producer, 0);
    progress(r);
    return not_sent ? -1 : 0;
}

/* Closed loop (--concurrency N): wait until fewer than N requests are
 * outstanding.  Delivery reports are served meanwhile, since a failed
 * delivery frees a slot too.  Returns 0 when a slot is free (at once in
 * open loop), -1 when the run is stopping or no slot freed for --timeout
 * seconds (a lost result would otherwise hang the run; the requests still
 * outstanding are reported missing). */
static int wait_for_slot(struct run *r)
{
    uint64_t n = r->c->concurrency;
    if (n == 0)
        return 0;
    int64_t give_up = kinfer_now_us() + (int64_t)r->c->timeout_s * 1000000;
    int ret = 0;
    pthread_mutex_lock(&r->lock);
    while (kprod_pending_outstanding(r->pending) >= n) {
        if (stopping(r)) {
            ret = -1;
            break;
        }
        if (kinfer_now_us() >= give_up) {
            r->stalled = 1;
            ret = -1;
            break;
        }
        /* Woken by each answer; the slice bounds how late a delivery
         * failure or SIGINT is seen. */
        struct timespec ts;
        kinfer_deadline(&ts, 10);
        pthread_cond_timedwait(&r->answered_cond, &r->lock, &ts);
        pthread_mutex_unlock(&r->lock);
        rd_kafka_poll(r->producer, 0);
        progress(r);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    if (r->stalled)
        KINFER_ERROR("--concurrency %" PRIu64 ": no result for %d s with "
                     "%" PRIu64 " requests outstanding; sending stopped",
                     n, r->c->timeout_s, n);
    return ret;
}

/* Absolute deadlines from the start: a late request does not push back
 * the ones after it, so the average rate stays the one asked for. */
static void pace(struct run *r, uint64_t i)
{
    if (r->c->rate > 0)
        wait_until(r, r->start_us + (int64_t)((double)i * 1e6 / r->c->rate));
}

static void send_generated(struct run *r)
{
    const struct kprod_gen *g = &r->c->gen;
    size_t size = kprod_gen_max_size(g);
    char *buf = kinfer_xmalloc(size);
    char key[sizeof g->runid + 32];
    for (uint64_t i = 0; i < r->c->generate; i++) {
        if (wait_for_slot(r) != 0)
            break;
        pace(r, i);
        if (stopping(r))
            break;
        size_t keylen = kprod_gen_key(g, i, key, sizeof key);
        size_t json_len;
        size_t len = kprod_gen_request_form(g, i, buf, size, &json_len);
        if (send_one(r, key, keylen, buf, len, json_len, (int64_t)i) != 0)
            break;
    }
    free(buf);
}

/* Returns 0 at the end of the input, -1 when it failed or was cut. */
static int send_lines(struct run *r, int fd, const char *name)
{
    struct kprod_lines *lines = kprod_lines_new(fd, r->c->max_line);
    uint64_t i = 0;
    int ret = 0;
    while (!stopping(r)) {
        const char *line;
        size_t len;
        uint64_t lineno;
        enum kprod_line_status st =
            kprod_lines_next(lines, &line, &len, &lineno);
        if (st == KPROD_LINE_EOF)
            break;
        if (st == KPROD_LINE_IO_ERROR && errno == EINTR)
            continue; /* the loop condition sees a SIGINT */
        if (st == KPROD_LINE_IO_ERROR) {
            KINFER_ERROR("reading %s: %s", name, strerror(errno));
            ret = -1;
            break;
        }
        if (st == KPROD_LINE_TOO_LONG) {
            /* As documented: counted (in the summary) and skipped, so one
             * bad line does not cost the rest of the file. */
            KINFER_WARN("%s:%" PRIu64 ": line of %zu bytes is over the "
                        "--max-line-bytes limit of %zu; skipped",
                        name, lineno, len, r->c->max_line);
            r->skipped++;
            continue;
        }
        if (len == 0)
            continue; /* blank lines separate nothing in JSON Lines */
        size_t keylen;
        char *key =
            kprod_request_key(line, len, r->c->key_field, lineno, &keylen);
        pace(r, i);
        int sent = wait_for_slot(r) == 0 && !stopping(r) &&
                   send_one(r, key, keylen, line, len, len, -1) == 0;
        free(key);
        if (!sent)
            break;
        i++;
    }
    kprod_lines_free(lines);
    return ret;
}

/* Wait until every queued request is delivered or failed.  After SIGINT
 * wait a bounded time, then purge what is left (counted as failures by
 * the delivery reports). */
static void flush_all(struct run *r)
{
    int64_t purge_at = -1;
    int purged = 0;
    while (rd_kafka_outq_len(r->producer) > 0) {
        int64_t now = kinfer_now_us();
        if (stopping(r) && purge_at < 0)
            purge_at = now + INTERRUPT_FLUSH_US;
        if (purge_at >= 0 && now >= purge_at) {
            if (purged)
                break; /* still not empty: do not hang on exit */
            rd_kafka_purge(r->producer,
                           RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = 1;
            purge_at = now + INTERRUPT_FLUSH_US;
        }
        rd_kafka_flush(r->producer, 100);
        progress(r);
    }
}

/* Wait for the outstanding answers for at most timeout_s. */
static void await_results(struct run *r)
{
    int64_t deadline = kinfer_now_us() + (int64_t)r->c->timeout_s * 1000000;
    pthread_mutex_lock(&r->lock);
    while (kprod_pending_outstanding(r->pending) > 0 && !stopping(r)) {
        int64_t left = deadline - kinfer_now_us();
        if (left <= 0)
            break;
        /* Short slices so SIGINT and progress are seen promptly. */
        struct timespec ts;
        kinfer_deadline(&ts, left > 200000 ? 200 : (int)(left / 1000) + 1);
        pthread_cond_timedwait(&r->answered_cond, &r->lock, &ts);
        pthread_mutex_unlock(&r->lock);
        progress(r);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
}

static void stop_reader(struct run *r)
{
    if (!r->reader_started)
        return;
    atomic_store(&r->reader_stop, 1);
    pthread_join(r->reader, NULL);
    r->reader_started = 0;
}

/* --- the run ------------------------------------------------------------ */

static void run_init(struct run *r, const struct kprod_config *c)
{
    memset(r, 0, sizeof *r);
    r->c = c;
    r->events = (struct kinfer_kafka_events){
        .owner = r,
        .fatal = &r->fatal,
        .delivered = delivery_cb,
    };
    atomic_init(&r->reader_stop, 0);
    atomic_init(&r->fatal, 0);
    pthread_mutex_init(&r->lock, NULL);
    kinfer_cond_init_monotonic(&r->answered_cond);
    kprod_latencies_init(&r->lat);
    if (c->await)
        r->pending = kprod_pending_new();
}

static void run_destroy(struct run *r)
{
    stop_reader(r);
    if (r->consumer != NULL) {
        rd_kafka_consumer_close(r->consumer);
        rd_kafka_destroy(r->consumer);
    }
    if (r->producer != NULL)
        rd_kafka_destroy(r->producer);
    kprod_pending_free(r->pending);
    kprod_latencies_clear(&r->lat);
    pthread_cond_destroy(&r->answered_cond);
    pthread_mutex_destroy(&r->lock);
}

static int open_input(const struct kprod_config *c, char *err, size_t errsize)
{
    if (strcmp(c->input, "-") == 0)
        return STDIN_FILENO;
    int fd = open(c->input, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        kinfer_fmt(err, errsize, "--input %s: %s", c->input, strerror(errno));
    return fd;
}

static void report_fill(struct run *r, struct kprod_report *rep,
                        int input_failed, int64_t end_us)
{
    struct kprod_summary *s = &rep->summary;
    memset(rep, 0, sizeof *rep);
    /* Move the latencies out of the run, which frees what it still owns. */
    rep->lat = r->lat;
    kprod_latencies_init(&r->lat);
    kprod_latencies_sort(&rep->lat);
    rep->input_failed = input_failed;
    rep->kafka_fatal = atomic_load(&r->fatal);

    s->sent = r->sent;
    s->failed = r->failed;
    s->skipped = r->skipped;
    s->awaited = r->c->await;
    if (r->c->await) {
        s->answered = r->answered;
        s->errors = r->errors;
        s->wrong = r->wrong;
        s->missing = kprod_pending_outstanding(r->pending);
        s->duplicates = r->duplicates;
        if (r->answered > 0)
            end_us = r->last_answer_us;
    }
    s->seconds = (double)(end_us - r->start_us) / 1e6;
    s->lat_us = rep->lat.us;
    s->n_lat = rep->lat.n;
    s->interrupted = *r->c->stop != 0;
    s->concurrency = r->c->concurrency;
    s->max_outstanding = r->max_outstanding;
}

enum kinfer_err kprod_run(const struct kprod_config *c,
                          struct kprod_report *rep, char *err, size_t errsize)
{
    struct run r;
    int fd = -1;
    enum kinfer_err rc = KINFER_OK;
    run_init(&r, c);

    if (c->generate == 0) {
        fd = open_input(c, err, errsize);
        if (fd < 0) {
            rc = KINFER_ERR_IO;
            goto out;
        }
    }
    rc = make_producer(&r, err, errsize);
    if (rc == KINFER_OK && c->await) {
        rc = make_consumer(&r, err, errsize);
        if (rc == KINFER_OK)
            rc = start_reader(&r, err, errsize);
    }
    if (rc != KINFER_OK)
        goto out;

    r.start_us = kinfer_now_us();
    r.next_progress_us = r.start_us + PROGRESS_AFTER_US;
    int input_failed = 0;
    if (c->generate > 0)
        send_generated(&r);
    else
        input_failed =
            send_lines(&r, fd,
                       strcmp(c->input, "-") == 0 ? "stdin" : c->input) != 0;
    flush_all(&r);
    int64_t end_us = kinfer_now_us();
    if (c->await && !stopping(&r) && !r.stalled)
        await_results(&r);
    stop_reader(&r);
    report_fill(&r, rep, input_failed, end_us);
out:
    if (fd > STDIN_FILENO)
        close(fd);
    run_destroy(&r);
    return rc;
}
