/* The worker's delivery side: each request's outcome, from the inference
 * stage's callbacks, becomes a result, an error result or a dead letter on
 * the producer, shed to fit the message limits (docs/protocol.md, "Size
 * limits"); delivery reports count them, re-send one the broker refuses
 * for its size with the next part shed, and end the job, which marks its
 * offset answered in the tracker.  Jobs live here too: the last delivery
 * frees them.  Requests over the key and header caps are rejected here.
 *
 * Threads: the stage callbacks run on inference (or batcher timer)
 * threads; delivery reports on the delivery-report thread, or on the main
 * thread while it flushes the producer at shutdown.  A job is touched by
 * one of them at a time; its pending count decides which one ends it.
 * Locks: deferred_lock guards the deferred re-send list only and is never
 * held while calling librdkafka; the tracker's is taken in job_end. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/log.h"
#include "kinfer/host.h"
#include "kinfer/request.h"
#include "shared/thread.h"
#include "shared/util.h"
#include "worker_internal.h"

/* ---------------------------------------------------------------- jobs */

struct job *kinfer_worker_job_new(struct kinfer_worker *w,
                                  rd_kafka_message_t *m, uint64_t gen)
{
    struct job *j = kinfer_xcalloc(1, sizeof *j);
    j->w = w;
    j->msg = m;
    j->partition = m->partition;
    j->offset = m->offset;
    j->gen = gen;
    atomic_init(&j->pending, 1);
    atomic_init(&j->failed, 0);
    j->polled_ns = kinfer_now_ns();
    atomic_fetch_add(&w->in_flight, 1);
    atomic_fetch_add(&w->in_flight_bytes, m->len);
    return j;
}

static void job_end(struct job *j)
{
    struct kinfer_worker *w = j->w;
    if (!atomic_load(&j->failed)) {
        /* NOT_FOUND means the partition was revoked meanwhile: its new
         * owner answers the request again, nothing to do here. */
        (void)kinfer_tracker_complete(w->tracker, j->partition, j->gen,
                                      j->offset);
    } else {
        /* Not running any more, so draining need not wait for it, but
         * never committed: the partition's next owner answers it. */
        (void)kinfer_tracker_release(w->tracker, j->partition, j->gen,
                                     j->offset);
    }
    atomic_fetch_sub(&w->in_flight_bytes, j->msg->len);
    rd_kafka_message_destroy(j->msg);
    free(j->id);
    free(j->model_name);
    free(j);
    atomic_fetch_sub(&w->in_flight, 1);
    kinfer_worker_job_ended(w);
}

static void job_settle(struct job *j)
{
    if (atomic_fetch_sub(&j->pending, 1) == 1)
        job_end(j);
}

void kinfer_worker_job_drop(struct job *j)
{
    atomic_store(&j->failed, 1);
    job_settle(j);
}

static void job_fail(struct job *j, const char *what, const char *why)
{
    struct kinfer_worker *w = j->w;
    if (kinfer_worker_txn_job_failed(w, j->partition, j->offset, what, why)) {
        kinfer_worker_job_drop(j);
        return;
    }
    kinfer_log(KINFER_LOG_ERROR,
               "partition %" PRId32 " offset %" PRId64 ": %s failed for "
               "good: %s; the request stays uncommitted and the worker stops",
               j->partition, j->offset, what, why);
    atomic_store(&j->failed, 1);
    atomic_fetch_add(&w->failures, 1);
    kinfer_counter_add(w->metrics.failures, 1);
    atomic_store(&w->fatal, 1);
    job_settle(j);
}

static int is_size_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/* ------------------------------------------------------------ producing */

enum send_kind { SEND_RESULT, SEND_ERROR, SEND_DLQ };

/* The parts of a message that may be dropped to make it fit, in the order
 * they are dropped (docs/protocol.md, "Size limits"): the forwarded
 * request headers, then a dead letter's copy of the request value, then
 * the key.  A result is never cut: past its headers it becomes an error
 * result. */
enum {
    SHED_HEADERS = 1,
    SHED_VALUE = 2,
    SHED_KEY = 4,
};

/* Room for the record framing and our own kinfer-* headers beyond their
 * texts, above librdkafka's own estimate (varints at their widest), so a
 * message we size as fitting is never refused locally. */
#define RECORD_SLACK 1024

/* One message to produce and, once produced, its delivery-report opaque:
 * a delivery report that refuses it for its size sends it again with one
 * more part shed.  Owned by whoever holds it: the sender, then librdkafka,
 * then the delivery report, or the deferred list in between. */
struct out {
    struct job *job;
    enum send_kind kind;
    unsigned shed;     /* SHED_* parts left out */
    char *value;       /* results: the encoded text, owned; NULL once
                          librdkafka took it.  Dead letters use the request. */
    size_t len;        /* results: value's length (kept after the hand-off) */
    char why[512];     /* dead letters: the kinfer-error header */
    struct out *next;  /* on the deferred list */
    unsigned refusals; /* re-sent unchanged after a size refusal */
    size_t json_len;   /* a binary result: its JSON header's length; else 0 */
};

static unsigned shed_order(enum send_kind kind, size_t i)
{
    static const unsigned result[] = {SHED_HEADERS, 0};
    static const unsigned error[] = {SHED_HEADERS, SHED_KEY, 0};
    static const unsigned dlq[] = {SHED_HEADERS, SHED_VALUE, SHED_KEY, 0};
    const unsigned *order = kind == SEND_RESULT  ? result
                            : kind == SEND_ERROR ? error
                                                 : dlq;
    for (size_t k = 0; order[k] != 0; k++)
        if (k == i)
            return order[k];
    return 0;
}

/* The next part o may shed, or 0 when nothing is left to shed. */
static unsigned next_shed(const struct out *o)
{
    unsigned part;
    for (size_t i = 0; (part = shed_order(o->kind, i)) != 0; i++)
        if (!(o->shed & part))
            return part;
    return 0;
}

static const rd_kafka_headers_t *request_headers(const struct job *j)
{
    rd_kafka_headers_t *h = NULL;
    /* The message is owned by this job alone, so reading its headers from
     * this thread is safe. */
    if (rd_kafka_message_headers(j->msg, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return h;
}

/* Count and total bytes (names and values) of the request's headers. */
static void headers_measure(const struct job *j, size_t *count, size_t *bytes)
{
    const rd_kafka_headers_t *h = request_headers(j);
    *count = 0;
    *bytes = 0;
    if (h == NULL)
        return;
    const char *name;
    const void *val;
    size_t vlen;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &vlen) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        *bytes += strlen(name) + vlen;
        (*count)++;
    }
}

static const void *out_value(const struct out *o, size_t *len)
{
    if (o->kind != SEND_DLQ) {
        *len = o->len;
        return o->value;
    }
    /* A dead letter is never a tombstone: a compacted dead-letter topic
     * would delete the key's earlier dead letters.  An empty value with
     * kinfer-tombstone (or kinfer-shed) says what the original held. */
    if ((o->shed & SHED_VALUE) || o->job->msg->payload == NULL) {
        *len = 0;
        return "";
    }
    *len = o->job->msg->len;
    return o->job->msg->payload;
}

/* o's size on the wire, over-estimated. */
static size_t out_size(const struct out *o)
{
    const struct job *j = o->job;
    size_t len;
    (void)out_value(o, &len);
    size_t size = RECORD_SLACK + len + strlen(o->why);
    if (!(o->shed & SHED_KEY))
        size += j->msg->key_len;
    if (!(o->shed & SHED_HEADERS)) {
        size_t n, bytes;
        headers_measure(j, &n, &bytes);
        size += bytes + 10 * n; /* two varints each, at their widest */
    }
    return size;
}

/* Shed parts of o, in order, until it fits the producer's limit.  Returns
 * 1 when it fits. */
static int out_fit(struct out *o)
{
    size_t limit = o->job->w->max_message_bytes;
    while (out_size(o) > limit) {
        unsigned part = next_shed(o);
        if (part == 0)
            return 0;
        o->shed |= part;
    }
    return 1;
}

static rd_kafka_headers_t *out_headers(const struct out *o)
{
    const struct job *j = o->job;
    const rd_kafka_headers_t *orig = request_headers(j);
    rd_kafka_headers_t *h = !(o->shed & SHED_HEADERS) && orig != NULL
                                ? rd_kafka_headers_copy(orig)
                                : rd_kafka_headers_new(6);
    if (o->kind != SEND_DLQ) {
        /* A request's binary framing does not describe its answer. */
        rd_kafka_header_remove(h, KINFER_HEADER_LENGTH);
        if (o->kind == SEND_RESULT && o->json_len > 0) {
            char num[32];
            kinfer_fmt(num, sizeof num, "%zu", o->json_len);
            rd_kafka_header_add(h, KINFER_HEADER_LENGTH, -1, num, -1);
        }
    }
    if (o->kind == SEND_DLQ) {
        char num[32];
        rd_kafka_header_add(h, "kinfer-error", -1, o->why, -1);
        rd_kafka_header_add(h, "kinfer-source-topic", -1, j->w->cfg.input_topic,
                            -1);
        kinfer_fmt(num, sizeof num, "%" PRId32, j->partition);
        rd_kafka_header_add(h, "kinfer-source-partition", -1, num, -1);
        kinfer_fmt(num, sizeof num, "%" PRId64, j->offset);
        rd_kafka_header_add(h, "kinfer-source-offset", -1, num, -1);
        if (j->msg->payload == NULL)
            rd_kafka_header_add(h, "kinfer-tombstone", -1, "true", -1);
        if (j->attempts > 0) {
            /* Ran on its model (worker_pipe.c): how often. */
            kinfer_fmt(num, sizeof num, "%u", j->attempts);
            rd_kafka_header_add(h, "kinfer-attempts", -1, num, -1);
        }
    }
    if (o->shed != 0) {
        char list[32];
        kinfer_fmt(list, sizeof list, "%s%s%s",
                   o->shed & SHED_HEADERS ? "headers" : "",
                   o->shed & SHED_VALUE ? ",value" : "",
                   o->shed & SHED_KEY ? ",key" : "");
        rd_kafka_header_add(h, "kinfer-shed", -1,
                            list[0] == ',' ? list + 1 : list, -1);
    }
    return h;
}

/* Produce o once, shedding what it must to fit.  wait: retry while the
 * producer's local queue is full (never on the delivery-report thread,
 * which is what drains it); without it RD_KAFKA_RESP_ERR__QUEUE_FULL comes
 * back.  On success o belongs to librdkafka until its delivery report.
 * Otherwise o is still the caller's; MSG_SIZE_TOO_LARGE means nothing more
 * can be shed. */
static rd_kafka_resp_err_t out_produce(struct out *o, int wait)
{
    struct job *j = o->job;
    struct kinfer_worker *w = j->w;
    for (;;) {
        if (!out_fit(o))
            return RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
        size_t len;
        const void *value = out_value(o, &len);
        rd_kafka_headers_t *hdrs = out_headers(o);
        int own = o->kind != SEND_DLQ;
        const struct kinfer_kafka_msg m = {
            .topic =
                o->kind == SEND_DLQ ? w->cfg.dlq_topic : w->cfg.output_topic,
            .key = (o->shed & SHED_KEY) ? NULL : j->msg->key,
            .key_len = (o->shed & SHED_KEY) ? 0 : j->msg->key_len,
            .value = (void *)value,
            .len = len,
            .flags =
                own ? RD_KAFKA_MSG_F_FREE : (len > 0 ? RD_KAFKA_MSG_F_COPY : 0),
            .headers = hdrs,
            .opaque = o,
        };
        /* Once enqueued, o and its value belong to librdkafka and the
         * delivery report may free them at once: let go before. */
        char *owned = o->value;
        if (own)
            o->value = NULL;
        rd_kafka_resp_err_t err = kinfer_kafka_produce(w->producer, &m);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return err; /* o may be gone already */
        o->value = owned;
        rd_kafka_headers_destroy(hdrs);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && wait) {
            /* Backpressure from the producer's local queue: wait for the
             * delivery-report thread to drain it. */
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (!is_size_error(err))
            return err;
        /* Our estimate fell short of librdkafka's: shed one more part. */
        unsigned part = next_shed(o);
        if (part == 0)
            return err;
        o->shed |= part;
    }
}

static void out_free(struct out *o)
{
    free(o->value);
    free(o);
}

/* Nothing more can be shed and o is still too large (a broker limit far
 * below ours): the request is answered by this log line alone.  Never
 * fatal: stopping would only hand the same request to the next worker. */
static void out_give_up(struct out *o)
{
    struct job *j = o->job;
    kinfer_log(KINFER_LOG_ERROR,
               "partition %" PRId32 " offset %" PRId64 ": the %s is too "
               "large for the %s topic even with its headers%s and key "
               "shed; it is not sent and the request counts as answered",
               j->partition, j->offset,
               o->kind == SEND_DLQ ? "dead letter" : "error result",
               o->kind == SEND_DLQ ? "dead-letter" : "output",
               o->kind == SEND_DLQ ? ", value" : "");
    atomic_fetch_add(&j->w->failures, 1);
    kinfer_counter_add(j->w->metrics.failures, 1);
    out_free(o);
    job_settle(j);
}

static void defer(struct out *o);

/* Turn result o, size bytes and too large for good, into an error result
 * saying so.  Returns 0 when that failed and the job was failed (o is
 * freed then). */
static int result_to_error(struct out *o, size_t size)
{
    struct job *j = o->job;
    char why[200];
    kinfer_fmt(why, sizeof why,
               "result is %zu bytes, over the largest message the producer "
               "or the output topic accepts",
               size);
    char *buf = NULL;
    size_t len = 0;
    if (kinfer_error_encode(j->id, j->model_name, why, &buf, &len) !=
        KINFER_OK) {
        out_free(o);
        job_fail(j, "encoding the error result", "out of memory");
        return 0;
    }
    free(o->value);
    o->value = buf;
    o->len = len;
    o->kind = SEND_ERROR;
    j->reason = REASON_TOO_LARGE;
    o->json_len = 0;
    /* A new, small message: it keeps whatever fits again. */
    o->shed = 0;
    return 1;
}

/* Produce o and see to every outcome: o is consumed.  wait as in
 * out_produce; without it a full queue defers o to the delivery-report
 * thread's loop. */
static void out_send(struct out *o, int wait)
{
    rd_kafka_resp_err_t err = out_produce(o, wait);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        defer(o);
        return;
    }
    struct job *j = o->job;
    if (is_size_error(err) && o->kind == SEND_RESULT) {
        if (result_to_error(o, o->len))
            out_send(o, wait);
        return;
    }
    if (is_size_error(err)) {
        out_give_up(o);
        return;
    }
    enum send_kind kind = o->kind;
    out_free(o);
    job_fail(j,
             kind == SEND_DLQ ? "producing the dead letter"
                              : "producing the result",
             rd_kafka_err2str(err));
}

static struct out *out_new(struct job *j, enum send_kind kind)
{
    struct out *o = kinfer_xcalloc(1, sizeof *o);
    o->job = j;
    o->kind = kind;
    return o;
}

/* Sends a success or error result.  buf moves to this function.
 * Inference threads. */
static void send_result(struct job *j, enum send_kind kind, char *buf,
                        size_t len)
{
    struct out *o = out_new(j, kind);
    o->value = buf;
    o->len = len;
    out_send(o, 1);
}

static void send_error_result(struct job *j, const char *message)
{
    char *buf = NULL;
    size_t len = 0;
    if (kinfer_error_encode(j->id, j->model_name, message, &buf, &len) !=
        KINFER_OK) {
        job_fail(j, "encoding the error result", "out of memory");
        return;
    }
    send_result(j, SEND_ERROR, buf, len);
}

/* The rejected request, byte for byte, with headers saying why and from
 * where.  Inference threads. */
static void send_dlq(struct job *j, const char *why)
{
    struct out *o = out_new(j, SEND_DLQ);
    kinfer_fmt(o->why, sizeof o->why, "%s", why);
    out_send(o, 1);
}

/* ------------------------------------------- deferred re-sends */

/* A re-send the delivery-report thread could not enqueue (full queue) waits
 * here; that thread retries the list between polls, so it never blocks on
 * the queue it alone drains. */
static void defer(struct out *o)
{
    struct kinfer_worker *w = o->job->w;
    if (atomic_load(&w->dr_stop)) {
        /* Past the final flush: nobody would send it; the request stays
         * uncommitted and is answered by the partition's next owner. */
        struct job *j = o->job;
        out_free(o);
        kinfer_worker_job_drop(j);
        return;
    }
    pthread_mutex_lock(&w->deferred_lock);
    o->next = w->deferred;
    w->deferred = o;
    pthread_mutex_unlock(&w->deferred_lock);
}

/* Try each deferred re-send once more.  Returns how many are still
 * waiting.  Delivery-report thread. */
static size_t retry_deferred(struct kinfer_worker *w)
{
    pthread_mutex_lock(&w->deferred_lock);
    struct out *list = w->deferred;
    w->deferred = NULL;
    pthread_mutex_unlock(&w->deferred_lock);
    while (list != NULL) {
        struct out *o = list;
        list = o->next;
        o->next = NULL;
        out_send(o, 0);
    }
    pthread_mutex_lock(&w->deferred_lock);
    size_t n = 0;
    for (struct out *o = w->deferred; o != NULL; o = o->next)
        n++;
    pthread_mutex_unlock(&w->deferred_lock);
    return n;
}

/* ----------------------------------------------------- delivery reports */

static void count_delivered(struct kinfer_worker *w, enum send_kind kind)
{
    switch (kind) {
    case SEND_RESULT:
        atomic_fetch_add(&w->answered, 1);
        break;
    case SEND_ERROR:
        atomic_fetch_add(&w->errors, 1);
        break;
    case SEND_DLQ:
        atomic_fetch_add(&w->dead_letters, 1);
        break;
    }
}

/* A message the broker refused leaves with the whole batch it travelled
 * in, so a small message may only share the blame: it is re-sent as it
 * is up to this many times (its large batch-mate is shed meanwhile)
 * before it sheds parts itself. */
#define INNOCENT_RETRIES 5

/* Re-send o, which the broker refused for its size (the topic's
 * max.message.bytes is below the producer's limit), with the next part
 * shed -- or as it is when it is small enough to be innocent -- never
 * waiting on the producer's queue.  m is o's delivery report. */
static void resend_refused(struct out *o, const rd_kafka_message_t *m)
{
    struct job *j = o->job;
    if (o->kind != SEND_DLQ) {
        o->value = kinfer_xmalloc(m->len ? m->len : 1);
        memcpy(o->value, m->payload, m->len);
        o->len = m->len;
    }
    size_t limit = j->w->max_message_bytes;
    size_t innocent = limit / 16 < 65536 ? limit / 16 : 65536;
    if (out_size(o) <= innocent && o->refusals < INNOCENT_RETRIES) {
        o->refusals++;
        out_send(o, 0);
        return;
    }
    kinfer_log(KINFER_LOG_WARN,
               "partition %" PRId32 " offset %" PRId64 ": the broker "
               "refused a %zu-byte %s for its size; shedding",
               j->partition, j->offset, m->len + m->key_len,
               o->kind == SEND_DLQ ? "dead letter" : "result");
    unsigned part = next_shed(o);
    if (part == 0 && o->kind != SEND_RESULT) {
        out_give_up(o);
        return;
    }
    if (part == 0 && !result_to_error(o, m->len))
        return;
    o->shed |= part;
    out_send(o, 0);
}

void kinfer_worker_delivered_cb(void *owner, const rd_kafka_message_t *m)
{
    (void)owner;
    struct out *o = m->_private;
    struct job *j = o->job;

    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        count_delivered(j->w, o->kind);
        kinfer_worker_metrics_delivered(j->w, j, (int)o->kind);
        out_free(o);
        job_settle(j);
        return;
    }
    if (is_size_error(m->err)) {
        resend_refused(o, m);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
        m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        /* Purged at the shutdown deadline: a normal outcome that the
         * poll thread counts and reports; the request stays uncommitted. */
        out_free(o);
        kinfer_worker_job_drop(j);
        return;
    }
    enum send_kind kind = o->kind;
    out_free(o);
    job_fail(j,
             kind == SEND_DLQ ? "delivering the dead letter"
                              : "delivering the result",
             rd_kafka_err2str(m->err));
}

static void *dr_thread_main(void *arg)
{
    struct kinfer_worker *w = arg;
    size_t waiting = 0;
    while (!atomic_load(&w->dr_stop)) {
        atomic_store(&w->metrics.dr_beat, kinfer_now_ms());
        rd_kafka_poll(w->producer, waiting > 0 ? 5 : 100);
        waiting = retry_deferred(w);
    }
    return NULL;
}

/* The largest message the producer sends (its message.max.bytes), less
 * nothing: out_size over-estimates instead. */
static size_t producer_max_bytes(rd_kafka_t *rk)
{
    char buf[32];
    size_t size = sizeof buf;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", buf, &size) !=
        RD_KAFKA_CONF_OK)
        return 1000000; /* librdkafka's default */
    unsigned long long v = strtoull(buf, NULL, 10);
    return v > 0 ? (size_t)v : 1000000;
}

int kinfer_worker_dr_start(struct kinfer_worker *w)
{
    /* The delivery side's settings, before any job can read them. */
    struct kinfer_worker_config *c = &w->cfg;
    if (c->max_key_bytes == 0)
        c->max_key_bytes = KINFER_DEFAULT_MAX_KEY_BYTES;
    if (c->max_header_bytes == 0)
        c->max_header_bytes = KINFER_DEFAULT_MAX_HEADER_BYTES;
    if (c->max_headers == 0)
        c->max_headers = KINFER_DEFAULT_MAX_HEADERS;
    w->max_message_bytes = producer_max_bytes(w->producer);
    int rc = pthread_mutex_init(&w->deferred_lock, NULL);
    if (rc != 0)
        return rc;
    rc = kinfer_thread_start(&w->dr_thread, dr_thread_main, w);
    if (rc != 0) {
        pthread_mutex_destroy(&w->deferred_lock);
        return rc;
    }
    w->dr_started = 1;
    return 0;
}

void kinfer_worker_dr_stop(struct kinfer_worker *w)
{
    if (!w->dr_started)
        return;
    atomic_store(&w->dr_stop, 1);
    pthread_join(w->dr_thread, NULL);
    /* Re-sends still waiting have nobody to serve their delivery reports
     * now: their requests stay uncommitted for the partition's next owner
     * (only a shutdown past its flush deadline gets here). */
    struct out *o = w->deferred;
    w->deferred = NULL;
    while (o != NULL) {
        struct out *next = o->next;
        struct job *j = o->job;
        out_free(o);
        kinfer_worker_job_drop(j);
        o = next;
    }
    pthread_mutex_destroy(&w->deferred_lock);
    w->dr_started = 0;
}

/* ----------------------------------------------------- stage callbacks */

/* The stage's callbacks (stage.h), on inference threads: each turns the
 * outcome of one request into the messages to produce. */

/* Keep what an error result sent later (from a delivery report) needs.
 * decoded: the request was read whole, so a missing model_name means the
 * default model; otherwise only a model_name read from it is named. */
static void job_names(struct job *j, const struct kinfer_request *req,
                      int decoded)
{
    if (req->id != NULL)
        j->id = kinfer_xstrdup(req->id);
    if (req->model_name != NULL || decoded)
        j->model_name = kinfer_xstrdup(
            req->model_name ? req->model_name : j->w->cfg.default_model);
}

/* Why j breaks a cap on its key or headers (into why), or NULL.  The value
 * has its own cap, checked by the decoder. */
static const char *over_caps(const struct job *j, char *why, size_t size)
{
    const struct kinfer_worker_config *c = &j->w->cfg;
    size_t n, bytes;
    headers_measure(j, &n, &bytes);
    if (j->msg->key_len > c->max_key_bytes)
        kinfer_fmt(why, size,
                   "request key is %zu bytes, over the limit of %zu "
                   "(--max-key-bytes)",
                   j->msg->key_len, c->max_key_bytes);
    else if (n > c->max_headers)
        kinfer_fmt(why, size,
                   "request has %zu headers, over the limit of %zu "
                   "(--max-headers)",
                   n, c->max_headers);
    else if (bytes > c->max_header_bytes)
        kinfer_fmt(why, size,
                   "request headers are %zu bytes, over the limit of %zu "
                   "(--max-header-bytes)",
                   bytes, c->max_header_bytes);
    else
        return NULL;
    return why;
}

static void reject(struct job *j, const char *why)
{
    kinfer_log(KINFER_LOG_DEBUG,
               "partition %" PRId32 " offset %" PRId64 " rejected: %s",
               j->partition, j->offset, why);
    atomic_store(&j->pending, 2);
    send_error_result(j, why);
    send_dlq(j, why);
}

static int stage_admit(void *job, void *arg)
{
    struct kinfer_worker *w = arg;
    struct job *j = job;
    if (atomic_load(&w->abandon)) {
        /* Shutting down past the deadline: leave it unanswered and
         * uncommitted; the partition's next owner answers it. */
        kinfer_worker_job_drop(j);
        return 0;
    }
    char why[200];
    if (over_caps(j, why, sizeof why) == NULL)
        return 1;
    /* Not decoded at all: the answer names no request id and no model. */
    j->reason = REASON_LIMITS;
    reject(j, why);
    return 0;
}

static void stage_rejected(void *job, const struct kinfer_request *req,
                           const char *why, void *arg)
{
    struct job *j = job;
    struct kinfer_worker *w = arg;
    job_names(j, req, 0);
    /* The decoder's own size cap; anything else is a decoding error. */
    size_t cap = w->cfg.limits.max_request_bytes > 0
                     ? w->cfg.limits.max_request_bytes
                     : KINFER_DEFAULT_MAX_REQUEST_BYTES;
    j->reason = j->msg->len > cap ? REASON_TOO_LARGE : REASON_DECODE;
    reject(j, why);
}

static void stage_unknown_model(void *job, const struct kinfer_request *req,
                                const char *why, void *arg)
{
    struct job *j = job;
    (void)arg;
    job_names(j, req, 1);
    j->reason = REASON_UNKNOWN_MODEL;
    send_error_result(j, why);
}

static void stage_answered(void *job, const struct kinfer_request *req,
                           const struct kinfer_model *model,
                           const struct kinfer_infer_item *item, void *arg)
{
    struct job *j = job;
    (void)arg;
    job_names(j, req, 1);
    j->model = model;
    j->reason = REASON_MODEL_ERROR;
    if (item->failed) {
        send_error_result(j, item->error);
        return;
    }
    char *buf = NULL;
    size_t len = 0, json_len = 0;
    if (kinfer_result_encode_for(req, kinfer_model_name(model),
                                 kinfer_model_version(model), item->outputs,
                                 item->n_outputs, &buf, &len,
                                 &json_len) != KINFER_OK) {
        send_error_result(j, "the model's outputs cannot be encoded as "
                             "JSON (a NaN or infinite value?)");
        return;
    }
    struct out *o = out_new(j, SEND_RESULT);
    o->value = buf;
    o->len = len;
    o->json_len = json_len < len ? json_len : 0;
    out_send(o, 1);
}

/* The binary tensor form: the JSON header's length from the request's
 * kinfer-inference-header-length header (docs/protocol.md). */
static int stage_json_length(void *job, size_t *json_len, char *why,
                             size_t whysize, void *arg)
{
    struct job *j = job;
    (void)arg;
    const rd_kafka_headers_t *h = request_headers(j);
    const void *v = NULL;
    size_t n = 0;
    if (h == NULL || rd_kafka_header_get_last(h, KINFER_HEADER_LENGTH, &v,
                                              &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    const char *p = v;
    size_t x = 0;
    int ok = v != NULL && n > 0 && n <= 19;
    for (size_t i = 0; ok && i < n; i++) {
        ok = p[i] >= '0' && p[i] <= '9';
        x = x * 10 + (size_t)(p[i] - '0');
    }
    if (!ok) {
        kinfer_fmt(why, whysize,
                   "header " KINFER_HEADER_LENGTH ": expected the JSON "
                   "header's length in decimal digits");
        return -1;
    }
    *json_len = x;
    return 1;
}

void kinfer_worker_stage_ops(struct kinfer_worker *w,
                             struct kinfer_stage_ops *ops)
{
    *ops = (struct kinfer_stage_ops){
        .admit = stage_admit,
        .rejected = stage_rejected,
        .unknown_model = stage_unknown_model,
        .answered = stage_answered,
        .ran = kinfer_worker_metrics_ran,
        .arg = w,
        .json_length = stage_json_length,
    };
}

void kinfer_worker_job_answer_error(struct job *j,
                                    const struct kinfer_request *req,
                                    const char *why, int dead_letter)
{
    /* Without req (a header deadline passed before decoding), the answer
     * names no model: the request was never read. */
    if (req != NULL)
        job_names(j, req, 1);
    if (dead_letter)
        reject(j, why);
    else
        send_error_result(j, why);
}
