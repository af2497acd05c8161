/* The worker pipeline.  The calling thread polls the consumer and is the
 * only thread that touches it; the inference stage (stage.c: a pool of
 * threads and the models' batchers) decodes and runs each request and the
 * callbacks here produce its result; a delivery-report thread serves the
 * producer and marks offsets answered in the tracker; the poll thread
 * stores the contiguous watermark it reports.
 *
 * Lifetime of a request ("job"): polled -> tracked -> queued -> decoded and
 * run -> 1 or 2 messages produced (result, plus a DLQ copy for rejected
 * input) -> all delivered -> offset marked answered -> message freed.
 *
 * Lock order: the stage's locks and the tracker lock are never held
 * together; none is held while calling librdkafka. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "kinfer/log.h"
#include "kinfer/request.h"
#include "kinfer/stage.h"
#include "kinfer/tracker.h"
#include "kinfer/worker.h"
#include "util.h"

struct job {
    struct kinfer_worker *w;
    rd_kafka_message_t *msg; /* the request; freed when the job ends */
    int32_t partition;
    int64_t offset;
    uint64_t gen;       /* tracker generation at dispatch */
    atomic_int pending; /* produced messages not yet delivered */
    atomic_int failed;  /* a delivery failed: do not mark answered */
    char *id;           /* for a fallback error result; owned */
    char *model_name;   /* likewise */
};

struct kinfer_worker {
    struct kinfer_worker_config cfg; /* strings borrowed from the caller */
    const struct kinfer_models *models;
    rd_kafka_t *consumer;       /* poll thread only */
    rd_kafka_t *producer;       /* any thread */
    struct kinfer_stage *stage; /* decodes, batches, runs the models */
    struct kinfer_tracker *tracker;

    pthread_t dr_thread;
    int dr_started;
    atomic_int dr_stop;

    atomic_int stop;    /* kinfer_worker_stop was called */
    atomic_int abandon; /* shutdown deadline passed: skip queued jobs */
    atomic_int fatal;   /* run must end with an error */

    atomic_size_t in_flight;       /* jobs dispatched and not ended */
    atomic_size_t in_flight_bytes; /* their message sizes */
    int paused;                    /* poll thread only */
    int close_abandoned;           /* consumer close timed out */
    int assigned_once;             /* poll thread only: an assignment came */
    int consumer_unsafe;           /* destroying it would crash (2.0.2) */

    atomic_ullong consumed, answered, errors, dead_letters, failures;
    int64_t last_stats_ms; /* poll thread only */
    unsigned long long last_stats_consumed;
};

/* ---------------------------------------------------------------- jobs */

static void job_end(struct job *j)
{
    struct kinfer_worker *w = j->w;
    if (!atomic_load(&j->failed)) {
        /* NOT_FOUND means the partition was revoked meanwhile: its new
         * owner answers the request again, nothing to do here. */
        (void)kinfer_tracker_complete(w->tracker, j->partition, j->gen,
                                      j->offset);
    }
    atomic_fetch_sub(&w->in_flight_bytes, j->msg->len);
    rd_kafka_message_destroy(j->msg);
    free(j->id);
    free(j->model_name);
    free(j);
    atomic_fetch_sub(&w->in_flight, 1);
}

static void job_settle(struct job *j)
{
    if (atomic_fetch_sub(&j->pending, 1) == 1)
        job_end(j);
}

static void job_fail(struct job *j, const char *what, const char *why)
{
    struct kinfer_worker *w = j->w;
    kinfer_log(KINFER_LOG_ERROR,
               "partition %" PRId32 " offset %" PRId64 ": %s failed for "
               "good: %s; the request stays uncommitted and the worker stops",
               j->partition, j->offset, what, why);
    atomic_store(&j->failed, 1);
    atomic_fetch_add(&w->failures, 1);
    atomic_store(&w->fatal, 1);
    job_settle(j);
}

/* ------------------------------------------------------------ producing */

enum send_kind { SEND_RESULT, SEND_ERROR, SEND_DLQ, SEND_DLQ_STUB };

/* What a message carries, so a delivery report can count it and replace it
 * when the broker refuses it for its size. */
struct send_tag {
    struct job *job;
    enum send_kind kind;
};

static rd_kafka_headers_t *copy_headers(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *orig = NULL;
    /* The message is owned by this job alone, so reading its headers from
     * this thread is safe. */
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        orig != NULL)
        return rd_kafka_headers_copy(orig);
    return rd_kafka_headers_new(4);
}

/* Produce value (ownership moves to librdkafka when F_FREE is in flags and
 * the call succeeds) with the request's key.  Retries while the local queue
 * is full.  Returns the librdkafka error; on error the caller still owns
 * value and hdrs. */
static rd_kafka_resp_err_t produce(struct kinfer_worker *w, const char *topic,
                                   const struct job *j, void *value, size_t len,
                                   int flags, rd_kafka_headers_t *hdrs,
                                   struct send_tag *tag)
{
    const rd_kafka_message_t *m = j->msg;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            w->producer, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(value, len),
            RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return err;
        /* Backpressure from the producer's local queue: wait for the
         * delivery-report thread to drain it. */
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int is_size_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

static void send_error_result(struct job *j, const char *message);
static void send_dlq_stub(struct job *j, const char *why);

/* Sends a success or error result.  buf moves to this function. */
static void send_result(struct job *j, enum send_kind kind, char *buf,
                        size_t len)
{
    struct kinfer_worker *w = j->w;
    struct send_tag *tag = kinfer_xmalloc(sizeof *tag);
    tag->job = j;
    tag->kind = kind;
    rd_kafka_headers_t *hdrs = copy_headers(j->msg);
    rd_kafka_resp_err_t err = produce(w, w->cfg.output_topic, j, buf, len,
                                      RD_KAFKA_MSG_F_FREE, hdrs, tag);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    free(buf);
    rd_kafka_headers_destroy(hdrs);
    free(tag);
    if (is_size_error(err) && kind == SEND_RESULT) {
        char why[160];
        kinfer_fmt(why, sizeof why,
                   "result is %zu bytes, over the producer's "
                   "message.max.bytes",
                   len);
        send_error_result(j, why);
        return;
    }
    job_fail(j, "producing the result", rd_kafka_err2str(err));
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

static void add_source_headers(rd_kafka_headers_t *h, const struct job *j,
                               const char *topic, const char *why)
{
    char num[32];
    rd_kafka_header_add(h, "kinfer-error", -1, why, -1);
    rd_kafka_header_add(h, "kinfer-source-topic", -1, topic, -1);
    kinfer_fmt(num, sizeof num, "%" PRId32, j->partition);
    rd_kafka_header_add(h, "kinfer-source-partition", -1, num, -1);
    kinfer_fmt(num, sizeof num, "%" PRId64, j->offset);
    rd_kafka_header_add(h, "kinfer-source-offset", -1, num, -1);
}

/* The rejected request, byte for byte, with headers saying why and from
 * where. */
static void send_dlq(struct job *j, const char *why)
{
    struct kinfer_worker *w = j->w;
    struct send_tag *tag = kinfer_xmalloc(sizeof *tag);
    tag->job = j;
    tag->kind = SEND_DLQ;
    rd_kafka_headers_t *hdrs = copy_headers(j->msg);
    add_source_headers(hdrs, j, w->cfg.input_topic, why);
    rd_kafka_resp_err_t err =
        produce(w, w->cfg.dlq_topic, j, j->msg->payload, j->msg->len,
                RD_KAFKA_MSG_F_COPY, hdrs, tag);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_headers_destroy(hdrs);
    free(tag);
    if (is_size_error(err)) {
        send_dlq_stub(j, why);
        return;
    }
    job_fail(j, "producing the dead letter", rd_kafka_err2str(err));
}

/* When the DLQ topic refuses the original value for its size, a record
 * without the value still says what was rejected and where it is. */
static void send_dlq_stub(struct job *j, const char *why)
{
    struct kinfer_worker *w = j->w;
    char text[600];
    kinfer_fmt(text, sizeof text,
               "%s (the original %zu-byte value was too large to copy to "
               "the dead-letter topic)",
               why, j->msg->len);
    struct send_tag *tag = kinfer_xmalloc(sizeof *tag);
    tag->job = j;
    tag->kind = SEND_DLQ_STUB;
    rd_kafka_headers_t *hdrs = copy_headers(j->msg);
    add_source_headers(hdrs, j, w->cfg.input_topic, text);
    rd_kafka_resp_err_t err =
        produce(w, w->cfg.dlq_topic, j, NULL, 0, 0, hdrs, tag);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_headers_destroy(hdrs);
    free(tag);
    job_fail(j, "producing the dead letter", rd_kafka_err2str(err));
}

/* Delivery reports, on the delivery-report thread (or the main thread
 * while it flushes). */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct send_tag *tag = m->_private;
    struct job *j = tag->job;
    struct kinfer_worker *w = j->w;
    enum send_kind kind = tag->kind;
    free(tag);

    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        switch (kind) {
        case SEND_RESULT:
            atomic_fetch_add(&w->answered, 1);
            break;
        case SEND_ERROR:
            atomic_fetch_add(&w->errors, 1);
            break;
        case SEND_DLQ:
        case SEND_DLQ_STUB:
            atomic_fetch_add(&w->dead_letters, 1);
            break;
        }
        job_settle(j);
        return;
    }
    if (is_size_error(m->err) && kind == SEND_RESULT) {
        char why[160];
        kinfer_fmt(why, sizeof why,
                   "result is %zu bytes, over the output topic's "
                   "max.message.bytes",
                   m->len);
        send_error_result(j, why);
        return;
    }
    if (is_size_error(m->err) && kind == SEND_DLQ) {
        const char *why = "rejected";
        rd_kafka_headers_t *h = NULL;
        const void *v = NULL;
        size_t vlen = 0;
        char buf[512];
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, "kinfer-error", &v, &vlen) ==
                RD_KAFKA_RESP_ERR_NO_ERROR) {
            kinfer_fmt(buf, sizeof buf, "%.*s", (int)vlen, (const char *)v);
            why = buf;
        }
        send_dlq_stub(j, why);
        return;
    }
    job_fail(j,
             kind == SEND_DLQ || kind == SEND_DLQ_STUB
                 ? "delivering the dead letter"
                 : "delivering the result",
             rd_kafka_err2str(m->err));
}

static void *dr_thread_main(void *arg)
{
    struct kinfer_worker *w = arg;
    while (!atomic_load(&w->dr_stop))
        rd_kafka_poll(w->producer, 100);
    return NULL;
}

/* ----------------------------------------------------------- inference */

/* The stage's callbacks (stage.h), on inference threads: each turns the
 * outcome of one request into the messages to produce. */

/* Keep what an error result sent later (from a delivery report) needs. */
static void job_names(struct job *j, const struct kinfer_request *req)
{
    if (req->id != NULL)
        j->id = kinfer_xstrdup(req->id);
    j->model_name = kinfer_xstrdup(req->model_name ? req->model_name
                                                   : j->w->cfg.default_model);
}

static int stage_admit(void *job, void *arg)
{
    struct job *j = job;
    struct kinfer_worker *w = arg;
    if (!atomic_load(&w->abandon))
        return 1;
    /* Shutting down past the deadline: leave it unanswered and
     * uncommitted; the partition's next owner answers it. */
    atomic_store(&j->failed, 1);
    job_settle(j);
    return 0;
}

static void stage_rejected(void *job, const struct kinfer_request *req,
                           const char *why, void *arg)
{
    struct job *j = job;
    (void)arg;
    job_names(j, req);
    kinfer_log(KINFER_LOG_DEBUG,
               "partition %" PRId32 " offset %" PRId64 " rejected: %s",
               j->partition, j->offset, why);
    atomic_store(&j->pending, 2);
    send_error_result(j, why);
    send_dlq(j, why);
}

static void stage_unknown_model(void *job, const struct kinfer_request *req,
                                const char *why, void *arg)
{
    struct job *j = job;
    (void)arg;
    job_names(j, req);
    send_error_result(j, why);
}

static void stage_answered(void *job, const struct kinfer_request *req,
                           const struct kinfer_model *model,
                           const struct kinfer_infer_item *item, void *arg)
{
    struct job *j = job;
    (void)arg;
    job_names(j, req);
    if (item->failed) {
        send_error_result(j, item->error);
        return;
    }
    char *buf = NULL;
    size_t len = 0;
    if (kinfer_result_encode(req->id, kinfer_model_name(model),
                             kinfer_model_version(model), item->outputs,
                             item->n_outputs, &buf, &len) != KINFER_OK) {
        send_error_result(j, "the model's outputs cannot be encoded as "
                             "JSON (a NaN or infinite value?)");
        return;
    }
    send_result(j, SEND_RESULT, buf, len);
}

/* --------------------------------------------------------- poll thread */

static void store_cb(int32_t partition, int64_t next, void *arg)
{
    rd_kafka_topic_partition_list_t *list = arg;
    rd_kafka_topic_partition_t *tp =
        rd_kafka_topic_partition_list_add(list, "", partition);
    tp->offset = next;
}

/* Store every watermark that moved since the last call; auto-commit (or the
 * final explicit commit) sends them to the group coordinator. */
static void store_offsets(struct kinfer_worker *w)
{
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new(8);
    kinfer_tracker_collect(w->tracker, store_cb, list);
    for (int i = 0; i < list->cnt; i++) {
        free(list->elems[i].topic);
        list->elems[i].topic = kinfer_xstrdup(w->cfg.input_topic);
    }
    if (list->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(w->consumer, list);
        for (int i = 0; err != RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; i++)
            if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
                kinfer_log(KINFER_LOG_DEBUG,
                           "storing offset %" PRId64 " of partition %" PRId32
                           " skipped: %s",
                           list->elems[i].offset, list->elems[i].partition,
                           rd_kafka_err2str(list->elems[i].err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void pause_resume(struct kinfer_worker *w, int pause,
                         rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (parts == NULL) {
        if (rd_kafka_assignment(w->consumer, &mine) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        parts = mine;
    }
    if (parts->cnt > 0) {
        rd_kafka_resp_err_t err =
            pause ? rd_kafka_pause_partitions(w->consumer, parts)
                  : rd_kafka_resume_partitions(w->consumer, parts);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            kinfer_log(KINFER_LOG_WARN, "%s partitions: %s",
                       pause ? "pausing" : "resuming", rd_kafka_err2str(err));
    }
    if (mine != NULL)
        rd_kafka_topic_partition_list_destroy(mine);
}

#define HELD_FACTOR 8

/* Pause every assigned partition while too much is in flight, resume when
 * half has drained, so memory stays bounded whatever the backlog. */
static void flow_control(struct kinfer_worker *w)
{
    size_t n = atomic_load(&w->in_flight);
    size_t b = atomic_load(&w->in_flight_bytes);
    /* Answered offsets queue up behind one that is stuck (a delivery being
     * retried): bound those too, at a multiple of the in-flight limit. */
    size_t held_max = HELD_FACTOR * w->cfg.max_in_flight;
    if (!w->paused &&
        (n >= w->cfg.max_in_flight || b >= w->cfg.max_in_flight_bytes ||
         kinfer_tracker_held(w->tracker) >= held_max)) {
        pause_resume(w, 1, NULL);
        w->paused = 1;
        kinfer_log(KINFER_LOG_DEBUG,
                   "paused: %zu requests, %zu bytes in "
                   "flight",
                   n, b);
    } else if (w->paused && n <= w->cfg.max_in_flight / 2 &&
               b <= w->cfg.max_in_flight_bytes / 2 &&
               kinfer_tracker_held(w->tracker) <= held_max / 2) {
        pause_resume(w, 0, NULL);
        w->paused = 0;
        kinfer_log(KINFER_LOG_DEBUG, "resumed");
    }
}

static int32_t *partition_ids(const struct kinfer_worker *w,
                              const rd_kafka_topic_partition_list_t *parts,
                              size_t *n)
{
    int32_t *ids = kinfer_xcalloc((size_t)parts->cnt + 1, sizeof *ids);
    *n = 0;
    for (int i = 0; i < parts->cnt; i++)
        if (strcmp(parts->elems[i].topic, w->cfg.input_topic) == 0)
            ids[(*n)++] = parts->elems[i].partition;
    return ids;
}

static void log_partitions(const char *what,
                           const rd_kafka_topic_partition_list_t *parts)
{
    /* Cooperative rebalances often hand out nothing new: not news. */
    if (parts->cnt == 0)
        return;
    char buf[512];
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && used < sizeof buf; i++) {
        int k = snprintf(buf + used, sizeof buf - used, "%s%" PRId32,
                         i ? "," : "", parts->elems[i].partition);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    kinfer_log(KINFER_LOG_INFO, "%s partitions [%s]", what, buf);
}

static void on_assign(struct kinfer_worker *w, rd_kafka_t *rk,
                      rd_kafka_topic_partition_list_t *parts, int cooperative)
{
    w->assigned_once = 1;
    size_t n;
    int32_t *ids = partition_ids(w, parts, &n);
    for (size_t i = 0; i < n; i++)
        kinfer_tracker_assign(w->tracker, ids[i]);
    free(ids);
    log_partitions("assigned", parts);
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative)
        e = rd_kafka_incremental_assign(rk, parts);
    else
        err = rd_kafka_assign(rk, parts);
    if (e != NULL) {
        kinfer_log(KINFER_LOG_ERROR, "assign: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        atomic_store(&w->fatal, 1);
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kinfer_log(KINFER_LOG_ERROR, "assign: %s", rd_kafka_err2str(err));
        atomic_store(&w->fatal, 1);
    }
    if (w->paused || atomic_load(&w->stop))
        pause_resume(w, 1, parts);
}

static void on_revoke(struct kinfer_worker *w, rd_kafka_t *rk,
                      rd_kafka_topic_partition_list_t *parts, int cooperative)
{
    size_t n;
    int32_t *ids = partition_ids(w, parts, &n);
    int lost = rd_kafka_assignment_lost(rk);
    if (!lost && n > 0) {
        /* Let the results of these partitions land so their offsets can be
         * committed before another member takes them over: fewer
         * duplicates.  Other partitions keep flowing meanwhile. */
        if (kinfer_tracker_wait_drained(w->tracker, ids, n,
                                        w->cfg.drain_timeout_ms) != KINFER_OK)
            kinfer_log(KINFER_LOG_WARN,
                       "revoked partitions still had requests in flight "
                       "after %d ms; their new owner answers them again",
                       w->cfg.drain_timeout_ms);
        store_offsets(w);
    }
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++)
        dropped += kinfer_tracker_revoke(w->tracker, ids[i]);
    free(ids);
    log_partitions(lost ? "lost" : "revoked", parts);
    if (dropped > 0)
        kinfer_log(KINFER_LOG_INFO,
                   "%zu requests of revoked partitions were still in "
                   "flight; they stay uncommitted",
                   dropped);
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e != NULL) {
            kinfer_log(KINFER_LOG_ERROR, "unassign: %s",
                       rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kinfer_worker *w = opaque;
    int cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(w, rk, parts, cooperative);
    else
        on_revoke(w, rk, parts, cooperative);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kinfer_worker *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        kinfer_log(KINFER_LOG_ERROR, "%s: fatal error %s: %s",
                   rd_kafka_name(rk), rd_kafka_err2name(orig), buf);
        atomic_store(&w->fatal, 1);
        return;
    }
    /* Transient (broker down, ...): librdkafka retries by itself. */
    kinfer_log(KINFER_LOG_WARN, "%s: %s: %s", rd_kafka_name(rk),
               rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void dispatch(struct kinfer_worker *w, rd_kafka_message_t *m)
{
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kinfer_log(KINFER_LOG_WARN, "consumer: %s",
                       rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    uint64_t gen;
    enum kinfer_err rc =
        kinfer_tracker_add(w->tracker, m->partition, m->offset, &gen);
    if (rc != KINFER_OK) {
        /* Not tracked means never committed: the request is consumed
         * again later, not lost. */
        kinfer_log(KINFER_LOG_WARN,
                   "partition %" PRId32 " offset %" PRId64
                   " not dispatched: %s",
                   m->partition, m->offset, kinfer_strerror(rc));
        rd_kafka_message_destroy(m);
        return;
    }
    struct job *j = kinfer_xcalloc(1, sizeof *j);
    j->w = w;
    j->msg = m;
    j->partition = m->partition;
    j->offset = m->offset;
    j->gen = gen;
    atomic_init(&j->pending, 1);
    atomic_init(&j->failed, 0);
    atomic_fetch_add(&w->in_flight, 1);
    atomic_fetch_add(&w->in_flight_bytes, m->len);
    atomic_fetch_add(&w->consumed, 1);
    if (kinfer_stage_submit(w->stage, j, m->payload, m->len) != KINFER_OK) {
        atomic_store(&j->failed, 1);
        job_settle(j);
    }
}

static void log_stats(struct kinfer_worker *w, const char *when)
{
    struct kinfer_worker_stats st;
    kinfer_worker_get_stats(w, &st);
    kinfer_log(KINFER_LOG_INFO,
               "%sconsumed %llu, results %llu, error results %llu, dead "
               "letters %llu, failed deliveries %llu, in flight %zu",
               when, st.consumed, st.answered, st.errors, st.dead_letters,
               st.failures, atomic_load(&w->in_flight));
}

static void maybe_log_stats(struct kinfer_worker *w)
{
    if (w->cfg.stats_interval_ms <= 0)
        return;
    int64_t now = kinfer_now_ms();
    if (now - w->last_stats_ms < w->cfg.stats_interval_ms)
        return;
    w->last_stats_ms = now;
    unsigned long long c = atomic_load(&w->consumed);
    if (c != w->last_stats_consumed || atomic_load(&w->in_flight) > 0)
        log_stats(w, "");
    w->last_stats_consumed = c;
}

/* ------------------------------------------------------------ lifetime */

static const struct kinfer_kafka_prop consumer_defaults[] = {
    {"partition.assignment.strategy", "cooperative-sticky"},
    {"enable.auto.commit", "true"},
    {"enable.auto.offset.store", "false"},
    {"auto.offset.reset", "earliest"},
    {"client.id", "kinfer-worker"},
};

static const struct kinfer_kafka_prop producer_defaults[] = {
    {"enable.idempotence", "true"},
    {"linger.ms", "5"},
    /* Room for a dead-letter copy of any request under the default
     * --max-request-bytes plus its headers, and still under the broker's
     * default max.message.bytes (1048588). */
    {"message.max.bytes", "1048576"},
    {"client.id", "kinfer-worker"},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

enum kinfer_err kinfer_worker_new(const struct kinfer_worker_config *cfg,
                                  const struct kinfer_models *models,
                                  struct kinfer_worker **out, char *err,
                                  size_t errsize)
{
    struct kinfer_worker *w = kinfer_xcalloc(1, sizeof *w);
    w->cfg = *cfg;
    w->models = models;
    if (w->cfg.threads == 0)
        w->cfg.threads = 1;
    if (w->cfg.max_in_flight == 0)
        w->cfg.max_in_flight = 1;
    if (w->cfg.max_in_flight_bytes == 0)
        w->cfg.max_in_flight_bytes = 1;

    char why[512];
    rd_kafka_conf_t *cc = kinfer_kafka_conf(
        cfg->brokers, consumer_defaults, N_ELEMS(consumer_defaults), cfg->props,
        cfg->n_props, err, errsize);
    if (cc == NULL)
        goto fail;
    const struct kinfer_kafka_prop group = {"group.id", cfg->group};
    rd_kafka_conf_t *pc = NULL;
    if (rd_kafka_conf_set(cc, group.name, group.value, why, sizeof why) !=
        RD_KAFKA_CONF_OK) {
        kinfer_fmt(err, errsize, "--group: %s", why);
        rd_kafka_conf_destroy(cc);
        goto fail;
    }
    rd_kafka_conf_set_opaque(cc, w);
    rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
    rd_kafka_conf_set_error_cb(cc, error_cb);
    w->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, why, sizeof why);
    if (w->consumer == NULL) {
        kinfer_fmt(err, errsize, "creating the consumer: %s", why);
        rd_kafka_conf_destroy(cc);
        goto fail;
    }
    rd_kafka_poll_set_consumer(w->consumer);

    pc = kinfer_kafka_conf(cfg->brokers, producer_defaults,
                           N_ELEMS(producer_defaults), cfg->props, cfg->n_props,
                           err, errsize);
    if (pc == NULL)
        goto fail;
    rd_kafka_conf_set_opaque(pc, w);
    rd_kafka_conf_set_dr_msg_cb(pc, dr_msg_cb);
    rd_kafka_conf_set_error_cb(pc, error_cb);
    w->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, why, sizeof why);
    if (w->producer == NULL) {
        kinfer_fmt(err, errsize, "creating the producer: %s", why);
        rd_kafka_conf_destroy(pc);
        goto fail;
    }

    const struct kinfer_stage_config sc = {
        .threads = w->cfg.threads,
        .capacity = w->cfg.max_in_flight + 64,
        .default_model = w->cfg.default_model,
        .limits = w->cfg.limits,
    };
    const struct kinfer_stage_ops ops = {
        .admit = stage_admit,
        .rejected = stage_rejected,
        .unknown_model = stage_unknown_model,
        .answered = stage_answered,
        .arg = w,
    };
    if (kinfer_tracker_new(&w->tracker) != KINFER_OK ||
        kinfer_stage_new(&sc, models, &ops, &w->stage) != KINFER_OK) {
        kinfer_fmt(err, errsize, "starting %zu inference threads failed",
                   w->cfg.threads);
        goto fail;
    }
    /* The delivery thread inherits a mask that blocks every signal, so
     * signals reach the main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&w->dr_thread, NULL, dr_thread_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        kinfer_fmt(err, errsize, "starting the delivery thread failed");
        goto fail;
    }
    w->dr_started = 1;
    *out = w;
    return KINFER_OK;

fail:
    kinfer_worker_free(w);
    return KINFER_ERR_CONFIG;
}

void kinfer_worker_stop(struct kinfer_worker *w)
{
    atomic_store(&w->stop, 1);
}

void kinfer_worker_get_stats(const struct kinfer_worker *w,
                             struct kinfer_worker_stats *st)
{
    struct kinfer_worker *mw = (struct kinfer_worker *)w;
    st->consumed = atomic_load(&mw->consumed);
    st->answered = atomic_load(&mw->answered);
    st->errors = atomic_load(&mw->errors);
    st->dead_letters = atomic_load(&mw->dead_letters);
    st->failures = atomic_load(&mw->failures);
}

/* Leave the group, serving rebalance callbacks meanwhile, but never for
 * longer than CLOSE_TIMEOUT_MS: librdkafka 2.0.2 can wait on a cooperative
 * rebalance in progress for minutes.  The offsets are already committed,
 * so giving up only means the group notices our absence after
 * session.timeout.ms instead of at once. */
#define CLOSE_TIMEOUT_MS 10000

static void close_consumer(struct kinfer_worker *w)
{
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(w->consumer);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(w->consumer, q);
    if (e != NULL) {
        kinfer_log(KINFER_LOG_WARN, "closing the consumer: %s",
                   rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else {
        int64_t deadline = kinfer_now_ms() + CLOSE_TIMEOUT_MS;
        while (!rd_kafka_consumer_closed(w->consumer) &&
               kinfer_now_ms() < deadline) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
            if (m != NULL)
                rd_kafka_message_destroy(m);
        }
    }
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (!rd_kafka_consumer_closed(w->consumer)) {
        kinfer_log(KINFER_LOG_WARN,
                   "leaving the group did not finish in %d ms; the group "
                   "drops this member after session.timeout.ms",
                   CLOSE_TIMEOUT_MS);
        w->close_abandoned = 1;
    }
}

/* librdkafka before 2.3.0 asserts (or crashes) when a cooperative-sticky
 * consumer is destroyed after its JoinGroup response but before its first
 * assignment (librdkafka issue 4312).  So a worker stopped that early keeps
 * serving the consumer until the first assignment arrives; if it never
 * does, the handle is left for process exit instead of being destroyed. */
#define FIRST_ASSIGN_TIMEOUT_MS 10000
#define LIBRDKAFKA_FIXED_4312 0x020300ff

static void await_first_assignment(struct kinfer_worker *w)
{
    if (w->assigned_once || rd_kafka_version() >= LIBRDKAFKA_FIXED_4312)
        return;
    kinfer_log(KINFER_LOG_INFO,
               "waiting for the group to finish joining "
               "before leaving it (librdkafka %s)",
               rd_kafka_version_str());
    int64_t deadline = kinfer_now_ms() + FIRST_ASSIGN_TIMEOUT_MS;
    while (!w->assigned_once && kinfer_now_ms() < deadline &&
           !atomic_load(&w->fatal)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
        if (m != NULL)
            rd_kafka_message_destroy(m);
    }
    if (!w->assigned_once) {
        kinfer_log(KINFER_LOG_WARN,
                   "no group assignment within %d ms; leaving the consumer "
                   "to process exit (destroying it would crash librdkafka "
                   "%s)",
                   FIRST_ASSIGN_TIMEOUT_MS, rd_kafka_version_str());
        w->consumer_unsafe = 1;
    }
}

/* Stop taking work, let what is in flight finish (bounded), flush, store
 * and commit, leave the group. */
static void shutdown_pipeline(struct kinfer_worker *w)
{
    int64_t start = kinfer_now_ms();
    int64_t deadline = start + w->cfg.drain_timeout_ms;
    kinfer_log(KINFER_LOG_INFO,
               "stopping: %zu requests in flight, waiting up to %d ms",
               atomic_load(&w->in_flight), w->cfg.drain_timeout_ms);
    pause_resume(w, 1, NULL);
    w->paused = 1;
    /* Keep serving the consumer (rebalances, heartbeats) while draining;
     * anything it still hands out is left uncommitted. */
    while (atomic_load(&w->in_flight) > 0 && kinfer_now_ms() < deadline &&
           !atomic_load(&w->fatal)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 50);
        if (m != NULL)
            rd_kafka_message_destroy(m);
        store_offsets(w);
    }
    if (atomic_load(&w->in_flight) > 0)
        atomic_store(&w->abandon, 1);
    /* Every queued request, and every one still gathering in a batcher,
     * has its results in the producer before it is flushed. */
    kinfer_stage_drain(w->stage);

    int left = (int)(deadline - kinfer_now_ms());
    if (rd_kafka_flush(w->producer, left > 1000 ? left : 1000) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        kinfer_log(KINFER_LOG_WARN,
                   "%d results undelivered at the deadline; purging them "
                   "(their requests stay uncommitted)",
                   rd_kafka_outq_len(w->producer));
        rd_kafka_purge(w->producer,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(w->producer, 5000);
    }
    atomic_store(&w->dr_stop, 1);
    pthread_join(w->dr_thread, NULL);
    w->dr_started = 0;

    store_offsets(w);
    rd_kafka_resp_err_t err = rd_kafka_commit(w->consumer, NULL, 0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
        err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        kinfer_log(KINFER_LOG_WARN, "final commit: %s", rd_kafka_err2str(err));
    await_first_assignment(w);
    if (!w->consumer_unsafe)
        close_consumer(w);
    log_stats(w, "stopped: ");
    for (size_t i = 0; i < kinfer_models_count(w->models); i++) {
        const struct kinfer_model *m = kinfer_models_at(w->models, i);
        size_t batches, items;
        kinfer_stage_batch_counts(w->stage, m, &batches, &items);
        if (batches > 0)
            kinfer_log(KINFER_LOG_INFO,
                       "model %s: %zu requests in %zu batches (mean %.2f)",
                       kinfer_model_name(m), items, batches,
                       (double)items / (double)batches);
    }
    kinfer_log(KINFER_LOG_INFO, "shutdown took %lld ms",
               (long long)(kinfer_now_ms() - start));
}

enum kinfer_err kinfer_worker_run(struct kinfer_worker *w)
{
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, w->cfg.input_topic,
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(w->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kinfer_log(KINFER_LOG_ERROR, "subscribing to %s: %s",
                   w->cfg.input_topic, rd_kafka_err2str(err));
        return KINFER_ERR_KAFKA;
    }
    kinfer_log(KINFER_LOG_INFO,
               "consuming %s as group %s with %zu inference threads; "
               "results to %s, dead letters to %s",
               w->cfg.input_topic, w->cfg.group, w->cfg.threads,
               w->cfg.output_topic, w->cfg.dlq_topic);
    w->last_stats_ms = kinfer_now_ms();
    /* Learn the output partitions now rather than holding the first
     * results (see kinfer_kafka_warm); a missing topic is worth a word. */
    const char *outs[] = {w->cfg.output_topic, w->cfg.dlq_topic};
    for (size_t i = 0; i < 2; i++) {
        char why[256];
        if (atomic_load(&w->stop))
            break;
        if (kinfer_kafka_warm(w->producer, outs[i], 2000, why, sizeof why))
            kinfer_log(KINFER_LOG_WARN,
                       "%s (results cannot be delivered "
                       "until it exists)",
                       why);
    }

    while (!atomic_load(&w->stop) && !atomic_load(&w->fatal)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
        if (m != NULL)
            dispatch(w, m);
        store_offsets(w);
        flow_control(w);
        maybe_log_stats(w);
    }
    shutdown_pipeline(w);
    return atomic_load(&w->fatal) ? KINFER_ERR_KAFKA : KINFER_OK;
}

void kinfer_worker_free(struct kinfer_worker *w)
{
    if (w == NULL)
        return;
    /* Before the producer: the stage's last requests are produced. */
    kinfer_stage_free(w->stage);
    if (w->dr_started) {
        atomic_store(&w->dr_stop, 1);
        pthread_join(w->dr_thread, NULL);
    }
    if (w->producer != NULL)
        rd_kafka_destroy(w->producer);
    if (w->consumer != NULL && !w->consumer_unsafe)
        rd_kafka_destroy_flags(
            w->consumer,
            w->close_abandoned ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0);
    kinfer_tracker_free(w->tracker);
    free(w);
}
