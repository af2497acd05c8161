/* The worker's delivery side: each request's outcome, from the inference
 * stage's callbacks, becomes a result, an error result or a dead letter on
 * the producer; delivery reports count them, replace a message the broker
 * refuses for its size, and end the job, which marks its offset answered
 * in the tracker.  Jobs live here too: the last delivery frees them.
 *
 * Threads: the stage callbacks run on inference (or batcher timer)
 * threads; delivery reports on the delivery-report thread, or on the main
 * thread while it flushes the producer at shutdown.  A job is touched by
 * one of them at a time; its pending count decides which one ends it.
 * No lock of this file's own; the tracker's is taken in job_end, never
 * while calling librdkafka. */
#include <inttypes.h>
#include <stdlib.h>
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

void kinfer_worker_job_drop(struct job *j)
{
    atomic_store(&j->failed, 1);
    job_settle(j);
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

/* Produce one message of kind for j to topic, with the request's key and
 * headers -- plus headers saying why and from where when why is not NULL
 * (dead letters).  value and flags as in struct kinfer_kafka_msg.  Retries
 * while the producer's local queue is full.  Returns the librdkafka error;
 * on error nothing was sent and the caller still owns value. */
static rd_kafka_resp_err_t send_msg(struct job *j, enum send_kind kind,
                                    const char *topic, void *value, size_t len,
                                    int flags, const char *why)
{
    struct kinfer_worker *w = j->w;
    struct send_tag *tag = kinfer_xmalloc(sizeof *tag);
    tag->job = j;
    tag->kind = kind;
    rd_kafka_headers_t *hdrs = copy_headers(j->msg);
    if (why != NULL)
        add_source_headers(hdrs, j, w->cfg.input_topic, why);
    const struct kinfer_kafka_msg m = {
        .topic = topic,
        .key = j->msg->key,
        .key_len = j->msg->key_len,
        .value = value,
        .len = len,
        .flags = flags,
        .headers = hdrs,
        .opaque = tag,
    };
    rd_kafka_resp_err_t err;
    for (;;) {
        err = kinfer_kafka_produce(w->producer, &m);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        /* Backpressure from the producer's local queue: wait for the
         * delivery-report thread to drain it. */
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);
        free(tag);
    }
    return err;
}

static int is_size_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

static void send_error_result(struct job *j, const char *message);

/* Sends a success or error result.  buf moves to this function. */
static void send_result(struct job *j, enum send_kind kind, char *buf,
                        size_t len)
{
    rd_kafka_resp_err_t err = send_msg(j, kind, j->w->cfg.output_topic, buf,
                                       len, RD_KAFKA_MSG_F_FREE, NULL);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    free(buf);
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

/* When the DLQ topic refuses the original value for its size, a record
 * without the value still says what was rejected and where it is. */
static void send_dlq_stub(struct job *j, const char *why)
{
    char text[600];
    kinfer_fmt(text, sizeof text,
               "%s (the original %zu-byte value was too large to copy to "
               "the dead-letter topic)",
               why, j->msg->len);
    rd_kafka_resp_err_t err =
        send_msg(j, SEND_DLQ_STUB, j->w->cfg.dlq_topic, NULL, 0, 0, text);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        job_fail(j, "producing the dead letter", rd_kafka_err2str(err));
}

/* The rejected request, byte for byte, with headers saying why and from
 * where. */
static void send_dlq(struct job *j, const char *why)
{
    rd_kafka_resp_err_t err =
        send_msg(j, SEND_DLQ, j->w->cfg.dlq_topic, j->msg->payload, j->msg->len,
                 RD_KAFKA_MSG_F_COPY, why);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (is_size_error(err)) {
        send_dlq_stub(j, why);
        return;
    }
    job_fail(j, "producing the dead letter", rd_kafka_err2str(err));
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
    case SEND_DLQ_STUB:
        atomic_fetch_add(&w->dead_letters, 1);
        break;
    }
}

/* The "kinfer-error" header of a refused dead letter, so its stub says the
 * same; buf holds the copy. */
static const char *dlq_reason(const rd_kafka_message_t *m, char *buf,
                              size_t size)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t vlen = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, "kinfer-error", &v, &vlen) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
        return "rejected";
    kinfer_fmt(buf, size, "%.*s", (int)vlen, (const char *)v);
    return buf;
}

void kinfer_worker_delivered_cb(void *owner, const rd_kafka_message_t *m)
{
    (void)owner;
    struct send_tag *tag = m->_private;
    struct job *j = tag->job;
    enum send_kind kind = tag->kind;
    free(tag);

    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        count_delivered(j->w, kind);
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
        char buf[512];
        send_dlq_stub(j, dlq_reason(m, buf, sizeof buf));
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

int kinfer_worker_dr_start(struct kinfer_worker *w)
{
    int rc = kinfer_thread_start(&w->dr_thread, dr_thread_main, w);
    if (rc == 0)
        w->dr_started = 1;
    return rc;
}

void kinfer_worker_dr_stop(struct kinfer_worker *w)
{
    if (!w->dr_started)
        return;
    atomic_store(&w->dr_stop, 1);
    pthread_join(w->dr_thread, NULL);
    w->dr_started = 0;
}

/* ----------------------------------------------------- stage callbacks */

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
    struct kinfer_worker *w = arg;
    if (!atomic_load(&w->abandon))
        return 1;
    /* Shutting down past the deadline: leave it unanswered and
     * uncommitted; the partition's next owner answers it. */
    kinfer_worker_job_drop(job);
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

void kinfer_worker_stage_ops(struct kinfer_worker *w,
                             struct kinfer_stage_ops *ops)
{
    *ops = (struct kinfer_stage_ops){
        .admit = stage_admit,
        .rejected = stage_rejected,
        .unknown_model = stage_unknown_model,
        .answered = stage_answered,
        .arg = w,
    };
}
