/* The worker's pipeline semantics, between the poll thread's dispatch and
 * the inference stage (docs/design.md, "Pipeline semantics"): deadlines
 * (an expired request is answered "expired" and never runs), per-key
 * ordering (a request waits until the one before it on its key has been
 * answered) and retries of transient model failures (a timer thread
 * submits them again after a backoff; no inference thread waits).  It wraps the
 * delivery side's stage callbacks, so every outcome of a request passes through
 * here first.
 *
 * It also keeps the DLQ ratio guard's window: every answered request is
 * counted, dead-lettered or not.
 *
 * Threads: pipe_submit on the poll thread; the wrapped callbacks on
 * inference (or batcher timer) threads; retries come due on the delay
 * queue's thread (delay.h).  A job is held by one thread at a
 * time.  Locks: the ordering module's own and guard_lock, both leaves; the
 * stage is never called with either held.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delay.h"
#include "kinfer/log.h"
#include "ordering.h"
#include "shared/util.h"
#include "worker_internal.h"

#define DEADLINE_HEADER "kinfer-deadline-ms"
#define TIMEOUT_PARAM "timeout_ms"

/* Wall-clock milliseconds since the epoch: deadlines and Kafka timestamps
 * are on this clock, not on the monotonic one. */
static int64_t epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ deadlines */

/* Parse the deadline header of m into *deadline (0 when absent).
 * Returns 0, or -1 with why set when the header is not a decimal epoch
 * millisecond count. */
static int header_deadline(const rd_kafka_message_t *m, int64_t *deadline,
                           char *why, size_t size)
{
    *deadline = 0;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    const void *val = NULL;
    size_t len = 0;
    if (rd_kafka_header_get_last(h, DEADLINE_HEADER, &val, &len) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    char buf[32];
    int ok = val != NULL && len > 0 && len < sizeof buf;
    if (ok) {
        memcpy(buf, val, len);
        buf[len] = '\0';
        for (size_t i = 0; i < len && ok; i++)
            ok = buf[i] >= '0' && buf[i] <= '9';
    }
    if (ok) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        ok = errno == 0 && v > 0;
        *deadline = v;
    }
    if (!ok) {
        *deadline = 0;
        kinfer_fmt(why, size,
                   "header " DEADLINE_HEADER ": expected the deadline in "
                   "milliseconds since the epoch (digits only), got %zu "
                   "bytes that are not",
                   len);
        return -1;
    }
    return 0;
}

/* The request's parameters.timeout_ms: 1 with *ms set, 0 when absent, -1
 * with why set when it is not a non-negative number. */
static int param_timeout(const struct kinfer_request *req, int64_t *ms,
                         char *why, size_t size)
{
    for (size_t i = 0; i < req->n_params; i++) {
        const struct kinfer_param *p = &req->params[i];
        if (strcmp(p->name, TIMEOUT_PARAM) != 0)
            continue;
        if (p->kind != KINFER_PARAM_NUMBER || !(p->number >= 0) ||
            p->number > 9.0e15) {
            kinfer_fmt(why, size,
                       "parameters." TIMEOUT_PARAM ": expected a "
                       "non-negative number of milliseconds");
            return -1;
        }
        *ms = (int64_t)p->number;
        return 1;
    }
    return 0;
}

/* Answer j "expired" (no dead letter: the request was valid, only late;
 * docs/protocol.md) and count it.  req may be NULL. */
static void expire(struct job *j, const struct kinfer_request *req,
                   int64_t deadline, int64_t now, const char *source)
{
    char why[256];
    if (j->attempts > 0) /* waiting for a retry (docs/protocol.md) */
        kinfer_fmt(why, sizeof why,
                   "expired: the deadline (%s) passed %" PRId64
                   " ms before the request could run again; it failed "
                   "transiently %u times and was not run again",
                   source, now - deadline, j->attempts);
    else
        kinfer_fmt(why, sizeof why,
                   "expired: the deadline (%s) passed %" PRId64
                   " ms before the request could run; it was not run",
                   source, now - deadline);
    atomic_fetch_add(&j->w->expired, 1);
    j->reason = REASON_EXPIRED;
    kinfer_log(KINFER_LOG_DEBUG, "partition %" PRId32 " offset %" PRId64 ": %s",
               j->partition, j->offset, why);
    kinfer_worker_job_answer_error(j, req, why, 0);
}

/* ------------------------------------------------------------- ordering */

static void order_release(struct kinfer_worker *w, struct kinfer_order_key *k);

/* Submit j to the stage; a refused submit (the stage is draining) drops
 * it, uncommitted.  Any thread: the stage's pool takes submits from any
 * thread, and the worker stops the ones here before draining it. */
static void stage_submit(struct kinfer_worker *w, struct job *j)
{
    struct kinfer_order_key *k = j->order;
    if (kinfer_stage_submit(w->stage, j, j->msg->payload, j->msg->len) ==
        KINFER_OK)
        return;
    kinfer_worker_job_drop(j);
    if (k != NULL)
        order_release(w, k);
}

/* The request that held key k has its answer produced: let the next one
 * of k run.  Any thread. */
static void order_release(struct kinfer_worker *w, struct kinfer_order_key *k)
{
    if (k == NULL)
        return;
    struct job *next = kinfer_order_leave(w->order, k);
    /* Past the shutdown deadline the stage is being drained: the key's
     * waiting requests stay uncommitted, without touching the stage. */
    while (next != NULL && atomic_load(&w->abandon)) {
        kinfer_worker_job_drop(next);
        next = kinfer_order_leave(w->order, k);
    }
    if (next != NULL)
        stage_submit(w, next);
}

void kinfer_worker_pipe_submit(struct kinfer_worker *w, struct job *j)
{
    j->timestamp_ms = rd_kafka_message_timestamp(j->msg, NULL);
    if (w->order != NULL) {
        const void *key = NULL;
        size_t len = 0;
        if (w->cfg.ordering == KINFER_ORDERING_KEY) {
            key = j->msg->key;
            len = j->msg->key_len;
        }
        /* Null keys are unordered in key mode (docs/design.md). */
        if (w->cfg.ordering == KINFER_ORDERING_PARTITION || key != NULL) {
            if (!kinfer_order_enter(w->order, j->partition, key, len, j,
                                    &j->order))
                return; /* runs when the one before it is answered */
        }
    }
    stage_submit(w, j);
}

/* ----------------------------------------------------------- DLQ guard */

/* Count one answered request (dead: it was dead-lettered) in the guard's
 * window; at the window's end, trip when too many were. */
static void guard_count(struct kinfer_worker *w, int dead)
{
    if (w->cfg.dlq_guard_percent == 0 || w->cfg.dlq_guard_window == 0)
        return;
    pthread_mutex_lock(&w->guard_lock);
    w->guard_seen++;
    w->guard_dead += dead != 0;
    size_t seen = w->guard_seen, dead_n = w->guard_dead;
    int trip = 0;
    if (seen >= w->cfg.dlq_guard_window) {
        trip = dead_n * 100 > (size_t)w->cfg.dlq_guard_percent * seen;
        w->guard_seen = 0;
        w->guard_dead = 0;
    }
    pthread_mutex_unlock(&w->guard_lock);
    if (!trip || atomic_exchange(&w->guard_tripped, 1))
        return;
    kinfer_log(KINFER_LOG_ERROR,
               "DLQ guard: %zu of the last %zu requests were dead-lettered, "
               "over --dlq-guard %u%%; the worker stops consuming (a broken "
               "upstream or model?).  Requests not yet started stay "
               "uncommitted; fix the cause and restart it (exit status 3)",
               dead_n, seen, w->cfg.dlq_guard_percent);
    kinfer_worker_stop(w);
}

int kinfer_worker_pipe_tripped(struct kinfer_worker *w)
{
    return atomic_load(&w->guard_tripped);
}

/* ----------------------------------------------------- wrapped callbacks */

static int pipe_admit(void *job, void *arg)
{
    struct kinfer_worker *w = arg;
    struct job *j = job;
    struct kinfer_order_key *k = j->order;
    int abandoning = atomic_load(&w->abandon);
    if (!abandoning && atomic_load(&w->guard_tripped)) {
        /* Stopped by the DLQ guard: what has not started stays
         * uncommitted, for after the fix. */
        kinfer_worker_job_drop(j);
        order_release(w, k);
        return 0;
    }
    if (!abandoning) {
        char why[256];
        if (header_deadline(j->msg, &j->deadline_ms, why, sizeof why) != 0) {
            kinfer_worker_job_answer_error(j, NULL, why, 1);
            guard_count(w, 1);
            order_release(w, k);
            return 0;
        }
        int64_t now = epoch_ms();
        if (j->deadline_ms > 0 && now > j->deadline_ms) {
            /* Not even decoded: the answer has no id (as for a request
             * over a cap); key and headers still identify it. */
            expire(j, NULL, j->deadline_ms, now, "header " DEADLINE_HEADER);
            guard_count(w, 0);
            order_release(w, k);
            return 0;
        }
    }
    if (w->inner_ops.admit(job, w->inner_ops.arg))
        return 1;
    if (!abandoning)
        guard_count(w, 1); /* over a cap: error result + dead letter */
    order_release(w, k);
    return 0;
}

static int pipe_ready(void *job, const struct kinfer_request *req, void *arg)
{
    struct kinfer_worker *w = arg;
    struct job *j = job;
    struct kinfer_order_key *k = j->order;
    char why[256];
    int64_t timeout = 0;
    int has = param_timeout(req, &timeout, why, sizeof why);
    if (has < 0) {
        kinfer_worker_job_answer_error(j, req, why, 1);
        guard_count(w, 1);
        order_release(w, k);
        return 0;
    }
    int64_t deadline = j->deadline_ms;
    const char *source = "header " DEADLINE_HEADER;
    /* Relative deadlines count from the Kafka timestamp; without one,
     * from now (so they never expire a request by themselves). */
    int64_t now = epoch_ms();
    int64_t base = j->timestamp_ms >= 0 ? j->timestamp_ms : now;
    if (has > 0 && (deadline == 0 || base + timeout < deadline)) {
        deadline = base + timeout;
        source = "parameters." TIMEOUT_PARAM;
    }
    if (deadline == 0 && w->cfg.max_age_ms > 0 && j->timestamp_ms >= 0) {
        deadline = j->timestamp_ms + w->cfg.max_age_ms;
        source = "--max-age";
    }
    if (deadline > 0 && now > deadline) {
        expire(j, req, deadline, now, source);
        guard_count(w, 0);
        order_release(w, k);
        return 0;
    }
    return 1;
}

static void pipe_rejected(void *job, const struct kinfer_request *req,
                          const char *why, void *arg)
{
    struct kinfer_worker *w = arg;
    struct kinfer_order_key *k = ((struct job *)job)->order;
    w->inner_ops.rejected(job, req, why, w->inner_ops.arg);
    guard_count(w, 1);
    order_release(w, k);
}

static void pipe_unknown_model(void *job, const struct kinfer_request *req,
                               const char *why, void *arg)
{
    struct kinfer_worker *w = arg;
    struct kinfer_order_key *k = ((struct job *)job)->order;
    w->inner_ops.unknown_model(job, req, why, w->inner_ops.arg);
    guard_count(w, 0);
    order_release(w, k);
}

/* -------------------------------------------------------------- retries */

/* The backoff before attempt j->attempts + 1: the first backoff doubled
 * per attempt made, capped, then "equal jitter" (half fixed, half random)
 * so requests that failed together do not retry together. */
static int64_t backoff_ms(const struct kinfer_worker *w, const struct job *j)
{
    int64_t d = w->cfg.retry_backoff_ms > 0 ? w->cfg.retry_backoff_ms : 1;
    for (unsigned i = 1; i < j->attempts && d < w->cfg.retry_backoff_max_ms;
         i++)
        d *= 2;
    if (w->cfg.retry_backoff_max_ms > 0 && d > w->cfg.retry_backoff_max_ms)
        d = w->cfg.retry_backoff_max_ms;
    /* splitmix64 of the clock and the offset: no shared PRNG state. */
    uint64_t x = (uint64_t)kinfer_now_ns() ^ ((uint64_t)j->offset << 20) ^
                 (uint64_t)j->partition;
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    int64_t half = d / 2;
    return d - half + (int64_t)(x % (uint64_t)(half + 1));
}

/* A retry came due: run the request again (its key stays held). */
static void retry_due(void *item, void *arg)
{
    stage_submit(arg, item);
}

/* A retry that will not run (shutting down): leave it uncommitted. */
static void retry_drop(void *item, void *arg)
{
    struct job *j = item;
    struct kinfer_order_key *k = j->order;
    kinfer_worker_job_drop(j);
    order_release(arg, k);
}

/* j failed transiently on attempt j->attempts.  Returns 1 when it was
 * settled here (scheduled again, or dropped), 0 when the caller answers
 * it (out of attempts). */
static int retry(struct kinfer_worker *w, struct job *j,
                 const struct kinfer_request *req, const char *error)
{
    if (j->attempts < w->cfg.retry_attempts) {
        int64_t wait = backoff_ms(w, j);
        kinfer_log(KINFER_LOG_DEBUG,
                   "partition %" PRId32 " offset %" PRId64 ": attempt %u "
                   "failed transiently (%s); again in %" PRId64 " ms",
                   j->partition, j->offset, j->attempts, error, wait);
        if (kinfer_delay_add(w->delay, kinfer_now_ms() + wait, j) ==
            KINFER_OK) {
            atomic_fetch_add(&w->retries, 1);
            kinfer_counter_add(w->metrics.retries, 1);
            return 1;
        }
        retry_drop(j, w);
        return 1;
    }
    char why[KINFER_ITEM_ERROR_SIZE + 64];
    kinfer_fmt(why, sizeof why, "%s (transient; gave up after %u attempts)",
               error, j->attempts);
    atomic_fetch_add(&w->exhausted, 1);
    j->reason = REASON_MODEL_ERROR;
    struct kinfer_order_key *k = j->order;
    kinfer_worker_job_answer_error(j, req, why, w->cfg.retry_dlq);
    guard_count(w, w->cfg.retry_dlq);
    order_release(w, k);
    return 1;
}

static void pipe_answered(void *job, const struct kinfer_request *req,
                          const struct kinfer_model *m,
                          const struct kinfer_infer_item *item, void *arg)
{
    struct kinfer_worker *w = arg;
    struct kinfer_order_key *k = ((struct job *)job)->order;
    struct job *j = job;
    j->attempts++;
    j->model = m; /* for the metrics of a retried or exhausted request */
    if (item->failed == KINFER_ITEM_TRANSIENT && w->delay != NULL &&
        retry(w, j, req, item->error))
        return;
    /* The result is in the producer's queue when this returns (the job
     * itself may be gone).  With enable.idempotence the producer keeps
     * one partition's messages in the order they were queued, retries
     * included, and a key always maps to one result partition: releasing
     * the key now keeps its results in offset order without waiting a
     * round trip for the delivery report (docs/design.md). */
    w->inner_ops.answered(job, req, m, item, w->inner_ops.arg);
    guard_count(w, 0);
    order_release(w, k);
}

/* ---------------------------------------------------------- life cycle */

int kinfer_worker_pipe_new(struct kinfer_worker *w,
                           struct kinfer_stage_ops *ops, char *err,
                           size_t errsize)
{
    atomic_init(&w->expired, 0);
    pthread_mutex_init(&w->guard_lock, NULL);
    w->guard_ready = 1;
    atomic_init(&w->guard_tripped, 0);
    atomic_init(&w->retries, 0);
    atomic_init(&w->exhausted, 0);
    w->inner_ops = *ops;
    if (w->cfg.retry_attempts > 1 &&
        kinfer_delay_new(retry_due, w, &w->delay) != KINFER_OK) {
        kinfer_fmt(err, errsize, "starting the retry timer thread failed");
        return -1;
    }
    if (w->cfg.ordering != KINFER_ORDERING_NONE)
        w->order = kinfer_order_new(w->cfg.max_in_flight);
    *ops = (struct kinfer_stage_ops){
        .admit = pipe_admit,
        .ready = pipe_ready,
        .rejected = pipe_rejected,
        .unknown_model = pipe_unknown_model,
        .answered = pipe_answered,
        .ran = w->inner_ops.ran, /* metrics only; its arg is w too */
        .json_length = w->inner_ops.json_length, /* likewise */
        .arg = w,
    };
    return 0;
}

void kinfer_worker_pipe_stop(struct kinfer_worker *w)
{
    if (w->delay == NULL)
        return;
    size_t n = kinfer_delay_stop(w->delay, retry_drop, w);
    if (n > 0)
        kinfer_log(KINFER_LOG_INFO,
                   "%zu requests were waiting to be retried; they stay "
                   "uncommitted and the partitions' next owner runs them",
                   n);
}

void kinfer_worker_pipe_free(struct kinfer_worker *w)
{
    unsigned long long expired = atomic_load(&w->expired);
    if (expired > 0)
        kinfer_log(KINFER_LOG_INFO,
                   "%llu requests expired before they could run", expired);
    unsigned long long retries = atomic_load(&w->retries);
    if (retries > 0)
        kinfer_log(KINFER_LOG_INFO,
                   "%llu retries after transient model failures; %llu "
                   "requests ran out of attempts",
                   retries, atomic_load(&w->exhausted));
    kinfer_delay_free(w->delay);
    w->delay = NULL;
    if (w->guard_ready)
        pthread_mutex_destroy(&w->guard_lock);
    w->guard_ready = 0;
    kinfer_order_free(w->order);
    w->order = NULL;
}
