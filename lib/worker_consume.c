/* The worker's consumer side, all on the poll thread (the thread that
 * calls kinfer_worker_run): poll the input topic, dispatch each request to
 * the inference stage, store the offsets the tracker reports answered,
 * pause and resume partitions to bound what is in flight, serve rebalances,
 * and shut the pipeline down when asked.
 *
 * Threads: only this thread touches the consumer handle.  Everything here
 * runs on it, rebalance callbacks included (they come from
 * rd_kafka_consumer_poll).  It reads the in-flight counters that the
 * delivery side (worker_delivery.c) lowers from other threads.
 *
 * Locks: flow_lock (worker_internal.h) only around the flow-control sleep
 * and its wake-up, a leaf: the counters it guards against lost wake-ups
 * are atomics, and the tracker's lock, taken to read them, is a leaf too.
 * The tracker's and the stage's locks are taken inside their calls, never
 * together, and never while calling librdkafka.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/log.h"
#include "shared/util.h"
#include "worker_internal.h"

/* ------------------------------------------------------------ offsets */

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
    if (w->txn != NULL)
        return; /* exactly-once: offsets go in transactions (worker_txn.c) */
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

/* ------------------------------------------------------- flow control */

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

/* Over the bound, the poll thread first just stops polling and waits for
 * the stage to catch up; only an excess lasting FLOW_GRACE_MS pauses the
 * partitions.  Pausing is costly with librdkafka 2.0.2: it throws away
 * what was prefetched and fetches again only ~700 ms after the resume, so
 * pausing on every brief excess capped throughput at about the bound per
 * second (issue 11).  Not polling for the grace period is safe: it is far
 * below max.poll.interval.ms, heartbeats run on librdkafka's own thread,
 * and librdkafka's prefetch stops at queued.max.messages.kbytes. */
#define FLOW_GRACE_MS 500
/* Longest single sleep while over the bound or paused: the loop then
 * checks stop, serves rebalances (poll with timeout 0) and re-evaluates. */
#define FLOW_SLICE_MS 50
/* Polling timeout with room under the bound: a message ends it at once. */
#define POLL_MS 100

/* The low mark: three quarters of a bound. */
static size_t low_mark(size_t bound)
{
    return bound - bound / 4;
}

static size_t held_max(const struct kinfer_worker *w)
{
    /* Answered offsets queue up behind one that is stuck (a delivery being
     * retried): bound those too, at a multiple of the in-flight limit. */
    return HELD_FACTOR * w->cfg.max_in_flight;
}

static int over_bound(struct kinfer_worker *w)
{
    return atomic_load(&w->in_flight) >= w->cfg.max_in_flight ||
           atomic_load(&w->in_flight_bytes) >= w->cfg.max_in_flight_bytes ||
           kinfer_tracker_held(w->tracker) >= held_max(w);
}

static int below_low_mark(struct kinfer_worker *w)
{
    return atomic_load(&w->in_flight) <= low_mark(w->cfg.max_in_flight) &&
           atomic_load(&w->in_flight_bytes) <=
               low_mark(w->cfg.max_in_flight_bytes) &&
           kinfer_tracker_held(w->tracker) <= held_max(w) / 2;
}

void kinfer_worker_flow_init(struct kinfer_worker *w)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* kinfer_deadline computes CLOCK_MONOTONIC deadlines. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->flow_lock, NULL);
    pthread_cond_init(&w->flow_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&w->flow_waiting, 0);
}

void kinfer_worker_flow_destroy(struct kinfer_worker *w)
{
    pthread_cond_destroy(&w->flow_cond);
    pthread_mutex_destroy(&w->flow_lock);
}

void kinfer_worker_job_ended(struct kinfer_worker *w)
{
    /* Sequentially consistent: either this thread sees flow_waiting set,
     * or the poll thread, which sets it before checking the counters,
     * sees this job's decrement and does not sleep. */
    if (!atomic_load(&w->flow_waiting) || !below_low_mark(w))
        return;
    pthread_mutex_lock(&w->flow_lock);
    pthread_cond_signal(&w->flow_cond);
    pthread_mutex_unlock(&w->flow_lock);
}

/* Sleep until in-flight work is below the low mark, or ms pass. */
static void flow_wait(struct kinfer_worker *w, int ms)
{
    struct timespec deadline;
    kinfer_deadline(&deadline, ms);
    pthread_mutex_lock(&w->flow_lock);
    atomic_store(&w->flow_waiting, 1);
    if (!below_low_mark(w))
        (void)pthread_cond_timedwait(&w->flow_cond, &w->flow_lock, &deadline);
    atomic_store(&w->flow_waiting, 0);
    pthread_mutex_unlock(&w->flow_lock);
}

/* Bound what is in flight by count and bytes, so memory stays bounded
 * whatever the backlog.  Returns the timeout for the next poll, or -1 when
 * the loop must not poll now (over the bound, within the grace period).
 * Resumes paused partitions at the low mark: hysteresis. */
static int flow_control(struct kinfer_worker *w)
{
    int over = over_bound(w);
    int64_t now = kinfer_now_ms();
    if (!over)
        w->over_since_ms = 0;
    else if (w->over_since_ms == 0)
        w->over_since_ms = now;
    if (over && !w->paused && now - w->over_since_ms >= FLOW_GRACE_MS) {
        pause_resume(w, 1, NULL);
        w->paused = 1;
        atomic_store(&w->metrics.paused_all, 1);
        kinfer_log(KINFER_LOG_DEBUG,
                   "paused after %d ms over the bound: %zu requests, %zu "
                   "bytes in flight",
                   FLOW_GRACE_MS, atomic_load(&w->in_flight),
                   atomic_load(&w->in_flight_bytes));
    } else if (w->paused && below_low_mark(w)) {
        pause_resume(w, 0, NULL);
        w->paused = 0;
        atomic_store(&w->metrics.paused_all, 0);
        kinfer_log(KINFER_LOG_DEBUG, "resumed");
        return POLL_MS;
    }
    if (!over && !w->paused)
        return POLL_MS;
    /* Woken by the job end that crosses the low mark, so a resume or the
     * next poll is not late. */
    flow_wait(w, FLOW_SLICE_MS);
    return w->paused ? 0 : -1;
}

/* ---------------------------------------------------------- rebalance */

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
    kinfer_worker_metrics_assign(w, ids, n);
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

/* The whole group's rebalance waits for this callback, so it waits for
 * in-flight results only briefly: what is still running after that is
 * dropped, as for a lost assignment (late completions are ignored) and
 * answered again by the new owner.  A joining worker then gets its
 * partitions within about a second, not a --drain-timeout. */
#define REVOKE_WAIT_MAX_MS 1000

static int revoke_wait_ms(const struct kinfer_worker *w)
{
    int ms = w->cfg.drain_timeout_ms;
    if (ms > REVOKE_WAIT_MAX_MS)
        ms = REVOKE_WAIT_MAX_MS;
    /* During shutdown the budget's deadline also bounds it. */
    if (w->stop_deadline_ms > 0) {
        int64_t left = w->stop_deadline_ms - kinfer_now_ms();
        if (left < ms)
            ms = left > 0 ? (int)left : 0;
    }
    return ms;
}

static void on_revoke(struct kinfer_worker *w, rd_kafka_t *rk,
                      rd_kafka_topic_partition_list_t *parts, int cooperative)
{
    size_t n;
    int32_t *ids = partition_ids(w, parts, &n);
    int lost = rd_kafka_assignment_lost(rk);
    kinfer_worker_txn_revoke(w, parts, lost, revoke_wait_ms(w));
    if (!lost && n > 0) {
        /* Let the results of these partitions land so their offsets can be
         * committed before another member takes them over: fewer
         * duplicates.  Other partitions keep flowing meanwhile. */
        int wait_ms = revoke_wait_ms(w);
        if (kinfer_tracker_wait_drained(w->tracker, ids, n, wait_ms) !=
            KINFER_OK)
            kinfer_log(KINFER_LOG_WARN,
                       "revoked partitions still had requests in flight "
                       "after %d ms; their new owner answers them again",
                       wait_ms);
        store_offsets(w);
    }
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++)
        dropped += kinfer_tracker_revoke(w->tracker, ids[i]);
    kinfer_worker_metrics_revoke(w, ids, n, lost);
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

void kinfer_worker_rebalance_cb(void *owner, rd_kafka_t *rk,
                                rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t *parts)
{
    struct kinfer_worker *w = owner;
    int cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(w, rk, parts, cooperative);
    else
        on_revoke(w, rk, parts, cooperative);
}

/* ----------------------------------------------------------- poll loop */

static void dispatch(struct kinfer_worker *w, rd_kafka_message_t *m)
{
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kinfer_log(KINFER_LOG_WARN, "consumer: %s",
                       rd_kafka_message_errstr(m));
        /* A fatal consumer error (a static member fenced by another with
         * its group.instance.id) comes as a message, not to error_cb: the
         * consumer is dead, so is the run. */
        if (m->err == RD_KAFKA_RESP_ERR__FATAL)
            atomic_store(&w->fatal, 1);
        rd_kafka_message_destroy(m);
        return;
    }
    if (kinfer_worker_txn_admit(w, m) != 0) {
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
    struct job *j = kinfer_worker_job_new(w, m, gen);
    atomic_fetch_add(&w->consumed, 1);
    kinfer_worker_metrics_consumed(w, m->partition);
    kinfer_worker_pipe_submit(w, j);
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

/* ------------------------------------------------------------ shutdown */

/* Leave the group, serving rebalance callbacks meanwhile, but never for
 * longer than timeout_ms (what is left of the shutdown budget): librdkafka
 * 2.0.2 can wait on a cooperative rebalance in progress for minutes, and
 * with the broker down it waits forever.  Giving up only means the group
 * notices our absence after session.timeout.ms instead of at once. */
static void close_consumer(struct kinfer_worker *w, int timeout_ms)
{
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(w->consumer);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(w->consumer, q);
    if (e != NULL) {
        kinfer_log(KINFER_LOG_WARN, "closing the consumer: %s",
                   rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else {
        int64_t deadline = kinfer_now_ms() + timeout_ms;
        while (!rd_kafka_consumer_closed(w->consumer) &&
               kinfer_now_ms() < deadline) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 50);
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
                   timeout_ms);
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

static void await_first_assignment(struct kinfer_worker *w, int timeout_ms)
{
    if (w->assigned_once || rd_kafka_version() >= LIBRDKAFKA_FIXED_4312)
        return;
    kinfer_log(KINFER_LOG_INFO,
               "waiting for the group to finish joining "
               "before leaving it (librdkafka %s)",
               rd_kafka_version_str());
    if (timeout_ms > FIRST_ASSIGN_TIMEOUT_MS)
        timeout_ms = FIRST_ASSIGN_TIMEOUT_MS;
    int64_t deadline = kinfer_now_ms() + timeout_ms;
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
                   timeout_ms, rd_kafka_version_str());
        w->consumer_unsafe = 1;
    }
}

/* Part of the shutdown budget kept for the final commit and leaving the
 * group: a quarter, at most CLOSE_SHARE_MAX_MS, at least CLOSE_MIN_MS
 * (which may overrun a tiny budget). */
#define CLOSE_SHARE_MAX_MS 3000
#define CLOSE_MIN_MS 300
/* Serving the delivery reports of purged messages takes no broker. */
#define PURGE_FLUSH_MS 500

static int ms_left(int64_t deadline, int floor_ms)
{
    int64_t left = deadline - kinfer_now_ms();
    return left > floor_ms ? (int)left : floor_ms;
}

/* Flush the producer until deadline; purge what is left.  Returns the
 * number of messages purged. */
static int flush_or_purge(struct kinfer_worker *w, int64_t deadline)
{
    if (rd_kafka_flush(w->producer, ms_left(deadline, 0)) ==
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    int purged = rd_kafka_outq_len(w->producer);
    /* Their delivery reports drop the jobs: the requests stay
     * uncommitted, not failed (worker_delivery.c). */
    rd_kafka_purge(w->producer,
                   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(w->producer, PURGE_FLUSH_MS);
    return purged;
}

/* Stop taking work, let what is in flight finish, flush, store and
 * commit, leave the group: all within one budget, --drain-timeout.  The
 * last CLOSE_SHARE of it is kept for the commit and leaving the group;
 * kinfer_worker_free bounds the handles' destruction separately
 * (DESTROY_TIMEOUT_MS).  Work still running at the drain deadline is
 * abandoned: a normal outcome, reported with counts, exit status 0. */
static void shutdown_pipeline(struct kinfer_worker *w)
{
    int64_t start = kinfer_now_ms();
    int64_t end = start + w->cfg.drain_timeout_ms;
    int64_t close_share = w->cfg.drain_timeout_ms / 4;
    if (close_share > CLOSE_SHARE_MAX_MS)
        close_share = CLOSE_SHARE_MAX_MS;
    if (close_share < CLOSE_MIN_MS)
        close_share = CLOSE_MIN_MS;
    int64_t drain_deadline = end - close_share;
    w->stop_deadline_ms = end;
    kinfer_log(KINFER_LOG_INFO,
               "stopping: %zu requests in flight, waiting up to %d ms",
               atomic_load(&w->in_flight), w->cfg.drain_timeout_ms);
    pause_resume(w, 1, NULL);
    w->paused = 1;
    atomic_store(&w->metrics.paused_all, 1);
    /* Keep serving the consumer (rebalances, heartbeats) while draining;
     * anything it still hands out is left uncommitted. */
    while (atomic_load(&w->in_flight) > 0 && kinfer_now_ms() < drain_deadline &&
           !atomic_load(&w->fatal)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 50);
        if (m != NULL)
            rd_kafka_message_destroy(m);
        store_offsets(w);
    }
    kinfer_worker_txn_shutdown(w, end - close_share / 2);
    size_t abandoned = atomic_load(&w->in_flight);
    if (abandoned > 0)
        atomic_store(&w->abandon, 1);
    kinfer_worker_pipe_stop(w); /* retries still waiting stay uncommitted */
    /* Every queued request is dropped now (abandon) or already has its
     * results in the producer; the ones running finish first. */
    kinfer_stage_drain(w->stage);
    int purged = flush_or_purge(w, drain_deadline);
    kinfer_worker_dr_stop(w);

    /* Asynchronous: leaving the group below commits again, and waits for
     * it, within the deadline. */
    store_offsets(w);
    rd_kafka_resp_err_t err = rd_kafka_commit(w->consumer, NULL, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
        err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        kinfer_log(KINFER_LOG_WARN, "final commit: %s", rd_kafka_err2str(err));
    await_first_assignment(w, ms_left(end, CLOSE_MIN_MS));
    if (!w->consumer_unsafe)
        close_consumer(w, ms_left(end, CLOSE_MIN_MS));
    if (abandoned > 0 || purged > 0)
        kinfer_log(KINFER_LOG_WARN,
                   "the %d ms shutdown budget ran out: %zu requests were "
                   "still in flight, %d undelivered results purged; they "
                   "stay uncommitted and the partitions' next owner "
                   "answers them",
                   w->cfg.drain_timeout_ms, abandoned, purged);
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

static enum kinfer_err subscribe(struct kinfer_worker *w)
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
    return KINFER_OK;
}

/* Learn the output partitions now rather than holding the first results
 * (see kinfer_kafka_warm); a missing topic is worth a word. */
static void warm_outputs(struct kinfer_worker *w)
{
    const char *outs[] = {w->cfg.output_topic, w->cfg.dlq_topic};
    for (size_t i = 0; i < 2; i++) {
        char why[256];
        if (atomic_load(&w->stop))
            break;
        if (kinfer_kafka_warm(w->producer, outs[i], 2000, why, sizeof why) !=
            KINFER_OK)
            kinfer_log(KINFER_LOG_WARN,
                       "%s (results cannot be delivered "
                       "until it exists)",
                       why);
    }
}

enum kinfer_err kinfer_worker_run(struct kinfer_worker *w)
{
    if (kinfer_worker_txn_start(w) != KINFER_OK || subscribe(w) != KINFER_OK)
        return KINFER_ERR_KAFKA;
    kinfer_log(KINFER_LOG_INFO,
               "consuming %s as group %s with %zu inference threads; "
               "results to %s, dead letters to %s",
               w->cfg.input_topic, w->cfg.group, w->cfg.threads,
               w->cfg.output_topic, w->cfg.dlq_topic);
    w->last_stats_ms = kinfer_now_ms();
    kinfer_kafka_watch_start(&w->watch, w->cfg.connect_timeout_ms);
    warm_outputs(w);

    while (!atomic_load(&w->stop) && !atomic_load(&w->fatal)) {
        atomic_store(&w->metrics.poll_beat, kinfer_now_ms());
        /* Exactly-once: closes a full or old transaction first. */
        int timeout = kinfer_worker_txn_tick(w, flow_control(w));
        if (timeout >= 0) {
            rd_kafka_message_t *m =
                rd_kafka_consumer_poll(w->consumer, timeout);
            if (m != NULL)
                dispatch(w, m);
        }
        store_offsets(w);
        maybe_log_stats(w);
        if (kinfer_kafka_watch_check(&w->watch, w->consumer,
                                     w->assigned_once) != 0)
            atomic_store(&w->fatal, 1);
    }
    shutdown_pipeline(w);
    if (!atomic_load(&w->fatal) && kinfer_worker_pipe_tripped(w))
        return KINFER_ERR_INVALID; /* the DLQ ratio guard (worker_pipe.c) */
    return atomic_load(&w->fatal) ? KINFER_ERR_KAFKA : KINFER_OK;
}
