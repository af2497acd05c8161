/* Exactly-once mode (--exactly-once; docs/design.md, "Exactly once"): the
 * results, error results and dead letters of a batch of requests and the
 * consumed offsets after it are committed in one Kafka transaction.
 *
 * A batch opens with its first dispatched request (begin_transaction) and
 * closes after --txn-max-messages requests or --txn-interval-ms.  Closing
 * stops dispatching, waits until every job in flight has ended (all its
 * messages delivered, so the tracker's watermarks are the next offsets of
 * exactly the dispatched requests), sends those offsets with the
 * consumer's group metadata, and commits.  Errors follow librdkafka's
 * three kinds: retriable calls are retried, within a bound; abortable ones
 * abort the transaction, let the jobs still running fail harmlessly
 * (producing outside a transaction is refused), and rewind each partition
 * to the first offset polled since the last commit -- which is the
 * committed offset, as our transactions are the only committer of an
 * assigned partition; fatal ones (a newer producer with the same
 * transactional.id: fencing) stop the worker with exit status 1, leaving
 * the open transaction to be aborted by the broker or our successor.
 *
 * Threads: everything here runs on the poll thread, except
 * kinfer_worker_txn_job_failed (any thread: it only sets an atomic flag and
 * logs).  The transactional calls block the poll thread; no worker lock is
 * held meanwhile, so delivery reports keep flowing on their own thread. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/log.h"
#include "shared/util.h"
#include "worker_internal.h"

/* A close waits this long at most for the batch's jobs.  A job's messages
 * time out within transaction.timeout.ms (librdkafka caps
 * message.timeout.ms to it, 60 s by default), so only a model that runs
 * longer gets here; the batch is then aborted. */
#define CLOSE_WAIT_MAX_MS 90000
/* Bound on retrying one transactional call (broker or coordinator away);
 * below max.poll.interval.ms (300 s), since the consumer is not polled
 * meanwhile.  Past it the outcome is unknown and the worker stops. */
#define CALL_MAX_MS 120000
/* One attempt of a resumable call: checks for SIGTERM in between. */
#define CALL_SLICE_MS 2000
/* Pause before retrying a call that failed faster than this. */
#define RETRY_BACKOFF_MS 100
/* After an abort, the jobs still running must end before a new transaction
 * may take their messages; this bounds that wait. */
#define DISCARD_WAIT_MAX_MS 90000
/* This many transactions aborted in a row without a commit (a result the
 * broker refuses every time, say) stop the worker instead of looping. */
#define MAX_ABORTS_IN_ROW 10
/* Seeking is local to the consumer. */
#define SEEK_TIMEOUT_MS 10000

/* Where a partition goes back to when the transaction aborts: the first
 * offset polled from it since the last commit. */
struct restart {
    int32_t partition;
    int64_t offset;
};

struct kinfer_txn {
    char *id; /* transactional.id, "<group>.<instance-id>" */
    size_t max_messages;
    int interval_ms;
    int open;          /* a transaction is open */
    int64_t opened_ms; /* when it opened (its first request) */
    size_t dispatched; /* requests dispatched in it */
    atomic_int failed; /* any thread: one of its jobs failed; abort */
    unsigned aborts_in_row;
    int64_t stop_seen_ms;    /* kinfer_worker_stop noticed here; 0 not yet */
    struct restart *restart; /* [n_restart], unordered */
    size_t n_restart, cap_restart;
    /* Counters for the last log line. */
    unsigned long long commits, aborts, committed_requests;
    int64_t commit_ms_sum, commit_ms_max;
};

/* -------------------------------------------------------------- set-up */

enum kinfer_err kinfer_worker_txn_setup(struct kinfer_worker *w, char *err,
                                        size_t errsize)
{
    const struct kinfer_worker_config *c = &w->cfg;
    w->txn = NULL;
    if (!c->exactly_once)
        return KINFER_OK;
    if (c->instance_id == NULL || c->instance_id[0] == '\0') {
        kinfer_fmt(err, errsize,
                   "--exactly-once needs --instance-id: the transactional "
                   "id comes from it and must stay the same across "
                   "restarts of one worker and differ between workers");
        return KINFER_ERR_CONFIG;
    }
    struct kinfer_txn *t = kinfer_xcalloc(1, sizeof *t);
    size_t n = strlen(c->group) + strlen(c->instance_id) + 2;
    t->id = kinfer_xmalloc(n);
    kinfer_fmt(t->id, n, "%s.%s", c->group, c->instance_id);
    t->max_messages = c->txn_max_messages > 0 ? c->txn_max_messages
                                              : KINFER_DEFAULT_TXN_MAX_MESSAGES;
    t->interval_ms = c->txn_interval_ms > 0 ? c->txn_interval_ms
                                            : KINFER_DEFAULT_TXN_INTERVAL_MS;
    atomic_init(&t->failed, 0);
    w->txn = t;
    return KINFER_OK;
}

void kinfer_worker_txn_free(struct kinfer_worker *w)
{
    struct kinfer_txn *t = w->txn;
    if (t == NULL)
        return;
    free(t->id);
    free(t->restart);
    free(t);
    w->txn = NULL;
}

size_t kinfer_worker_txn_props(const struct kinfer_worker *w,
                               enum kinfer_kafka_role role,
                               struct kinfer_kafka_prop *out)
{
    if (w->txn == NULL)
        return 0;
    if (role == KINFER_KAFKA_PRODUCER) {
        out[0] = (struct kinfer_kafka_prop){"transactional.id", w->txn->id};
        return 1;
    }
    /* Offsets are committed only inside transactions.  read_committed
     * (librdkafka's default, fixed here) also makes the consumer fetch its
     * committed offsets with require_stable: a partition taken over from
     * a worker whose transaction is still open starts only once that
     * transaction is committed or aborted. */
    out[0] = (struct kinfer_kafka_prop){"enable.auto.commit", "false"};
    out[1] = (struct kinfer_kafka_prop){"isolation.level", "read_committed"};
    return 2;
}

/* ------------------------------------------------------ restart points */

static struct restart *restart_find(struct kinfer_txn *t, int32_t partition)
{
    for (size_t i = 0; i < t->n_restart; i++)
        if (t->restart[i].partition == partition)
            return &t->restart[i];
    return NULL;
}

static void restart_note(struct kinfer_txn *t, int32_t partition,
                         int64_t offset)
{
    if (restart_find(t, partition) != NULL)
        return;
    if (t->n_restart == t->cap_restart) {
        t->cap_restart = t->cap_restart ? 2 * t->cap_restart : 16;
        t->restart =
            kinfer_xrealloc(t->restart, t->cap_restart * sizeof *t->restart);
    }
    t->restart[t->n_restart++] = (struct restart){partition, offset};
}

static void restart_forget(struct kinfer_txn *t, int32_t partition)
{
    struct restart *r = restart_find(t, partition);
    if (r != NULL)
        *r = t->restart[--t->n_restart];
}

/* ------------------------------------------------- transactional calls */

enum op { OP_INIT, OP_OFFSETS, OP_COMMIT, OP_ABORT };

static const char *op_name(enum op op)
{
    switch (op) {
    case OP_INIT:
        return "initializing transactions";
    case OP_OFFSETS:
        return "sending the offsets to the transaction";
    case OP_COMMIT:
        return "committing the transaction";
    case OP_ABORT:
        return "aborting the transaction";
    }
    return "?";
}

enum outcome { DONE, MUST_ABORT, FAILED };

/* The deadline of a call or wait that would end at d: earlier once a stop
 * was requested, so the shutdown budget still has room. */
static int64_t cap_deadline(struct kinfer_worker *w, int64_t d)
{
    struct kinfer_txn *t = w->txn;
    if (atomic_load(&w->stop)) {
        if (t->stop_seen_ms == 0)
            t->stop_seen_ms = kinfer_now_ms();
        int64_t s = t->stop_seen_ms + w->cfg.drain_timeout_ms / 2;
        if (s < d)
            d = s;
    }
    if (w->stop_deadline_ms > 0 && w->stop_deadline_ms < d)
        d = w->stop_deadline_ms;
    return d;
}

/* Run op, retrying retriable errors until deadline.  FAILED means the
 * worker must stop (w->fatal is set, after an ERROR line): a fatal error,
 * an error of no documented kind, or retries past the deadline. */
static enum outcome run_op(struct kinfer_worker *w, enum op op,
                           const rd_kafka_topic_partition_list_t *offsets,
                           const rd_kafka_consumer_group_metadata_t *cgmd,
                           int64_t deadline)
{
    int warned = 0;
    for (;;) {
        int64_t left = cap_deadline(w, deadline) - kinfer_now_ms();
        int slice = left < CALL_SLICE_MS ? (int)(left > 100 ? left : 100)
                                         : CALL_SLICE_MS;
        rd_kafka_error_t *e = NULL;
        int64_t began = kinfer_now_ms();
        switch (op) {
        case OP_INIT:
            e = rd_kafka_init_transactions(w->producer, slice);
            break;
        case OP_OFFSETS:
            e = rd_kafka_send_offsets_to_transaction(w->producer, offsets, cgmd,
                                                     slice);
            break;
        case OP_COMMIT:
            e = rd_kafka_commit_transaction(w->producer, slice);
            break;
        case OP_ABORT:
            e = rd_kafka_abort_transaction(w->producer, slice);
            break;
        }
        if (e == NULL) {
            if (warned)
                kinfer_log(KINFER_LOG_INFO, "%s succeeded after retries",
                           op_name(op));
            return DONE;
        }
        enum outcome out = FAILED;
        int retry = 0;
        if (rd_kafka_error_is_fatal(e))
            out = FAILED;
        else if (rd_kafka_error_is_retriable(e))
            retry = cap_deadline(w, deadline) > kinfer_now_ms();
        else if (rd_kafka_error_txn_requires_abort(e) && op != OP_ABORT &&
                 op != OP_INIT)
            out = MUST_ABORT;
        if (retry) {
            if (!warned)
                kinfer_log(KINFER_LOG_WARN, "%s: %s; retrying", op_name(op),
                           rd_kafka_error_string(e));
            warned = 1;
            rd_kafka_error_destroy(e);
            if (kinfer_now_ms() - began < RETRY_BACKOFF_MS) {
                /* Refused at once (no coordinator yet): do not spin. */
                struct timespec ts = {0, RETRY_BACKOFF_MS * 1000000L};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (out == MUST_ABORT)
            kinfer_log(KINFER_LOG_WARN, "%s: %s", op_name(op),
                       rd_kafka_error_string(e));
        else
            kinfer_log(KINFER_LOG_ERROR,
                       "%s: %s (%s%s); the worker stops, and the open "
                       "transaction is aborted by the broker or by the "
                       "next worker with transactional.id %s",
                       op_name(op), rd_kafka_error_string(e),
                       rd_kafka_error_is_fatal(e) ? "fatal" : "gave up",
                       rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__FENCED
                           ? ": fenced by a newer worker with this id"
                           : "",
                       w->txn->id);
        rd_kafka_error_destroy(e);
        if (out == FAILED)
            atomic_store(&w->fatal, 1);
        return out;
    }
}

enum kinfer_err kinfer_worker_txn_start(struct kinfer_worker *w)
{
    struct kinfer_txn *t = w->txn;
    if (t == NULL)
        return KINFER_OK;
    kinfer_log(KINFER_LOG_INFO,
               "exactly-once: transactional.id %s; a transaction closes "
               "after %zu requests or %d ms",
               t->id, t->max_messages, t->interval_ms);
    int64_t bound =
        w->cfg.connect_timeout_ms > 0 ? w->cfg.connect_timeout_ms : CALL_MAX_MS;
    if (run_op(w, OP_INIT, NULL, NULL, kinfer_now_ms() + bound) != DONE)
        return KINFER_ERR_KAFKA;
    return KINFER_OK;
}

/* ------------------------------------------------------ abort, rewind */

/* Wait until no job is in flight, or deadline.  0 when none is. */
static int wait_idle(struct kinfer_worker *w, int64_t deadline)
{
    while (atomic_load(&w->in_flight) > 0) {
        int64_t left = deadline - kinfer_now_ms();
        if (left <= 0)
            return -1;
        struct timespec ts;
        /* Job ends signal flow_cond while someone waits (flow_waiting);
         * the slice covers a wake-up they skip over a high byte count. */
        kinfer_deadline(&ts, left < 5 ? (int)left : 5);
        pthread_mutex_lock(&w->flow_lock);
        atomic_store(&w->flow_waiting, 1);
        if (atomic_load(&w->in_flight) > 0)
            (void)pthread_cond_timedwait(&w->flow_cond, &w->flow_lock, &ts);
        atomic_store(&w->flow_waiting, 0);
        pthread_mutex_unlock(&w->flow_lock);
    }
    return 0;
}

static int assigned(const rd_kafka_topic_partition_list_t *a, const char *topic,
                    int32_t partition)
{
    for (int i = 0; a != NULL && i < a->cnt; i++)
        if (a->elems[i].partition == partition &&
            strcmp(a->elems[i].topic, topic) == 0)
            return 1;
    return 0;
}

/* Seek every assigned partition polled since the last commit back to its
 * restart point and track it afresh.  A partition that cannot be rewound
 * would lose requests: the worker stops instead. */
static void rewind_partitions(struct kinfer_worker *w)
{
    struct kinfer_txn *t = w->txn;
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (rd_kafka_assignment(w->consumer, &mine) != RD_KAFKA_RESP_ERR_NO_ERROR)
        mine = NULL;
    const char *topic = w->cfg.input_topic;
    rd_kafka_topic_partition_list_t *seek =
        rd_kafka_topic_partition_list_new((int)t->n_restart + 1);
    char buf[512];
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->n_restart; i++) {
        const struct restart *r = &t->restart[i];
        if (!assigned(mine, topic, r->partition))
            continue;
        rd_kafka_topic_partition_list_add(seek, topic, r->partition)->offset =
            r->offset;
        /* Completions of the aborted jobs carry the old generation and
         * are ignored; the offsets come again from r->offset. */
        kinfer_tracker_assign(w->tracker, r->partition);
        if (used < sizeof buf) {
            int k = snprintf(buf + used, sizeof buf - used,
                             "%s%" PRId32 "@%" PRId64, used ? "," : "",
                             r->partition, r->offset);
            if (k > 0)
                used += (size_t)k;
        }
    }
    t->n_restart = 0;
    if (mine != NULL)
        rd_kafka_topic_partition_list_destroy(mine);
    if (seek->cnt > 0) {
        rd_kafka_error_t *e =
            rd_kafka_seek_partitions(w->consumer, seek, SEEK_TIMEOUT_MS);
        const char *why = e != NULL ? rd_kafka_error_string(e) : NULL;
        for (int i = 0; why == NULL && i < seek->cnt; i++)
            if (seek->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
                why = rd_kafka_err2str(seek->elems[i].err);
        if (why != NULL) {
            kinfer_log(KINFER_LOG_ERROR,
                       "rewinding partitions [%s] after the abort: %s; the "
                       "worker stops (nothing was committed past them)",
                       buf, why);
            atomic_store(&w->fatal, 1);
        } else {
            kinfer_log(KINFER_LOG_INFO,
                       "rewound partitions [%s] (partition@offset) to the "
                       "last commit",
                       buf);
        }
        if (e != NULL)
            rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(seek);
}

/* Abort the open transaction.  recover: then wait for the jobs still
 * running to end (queued ones are skipped) and rewind, so work goes on;
 * without it (shutdown) the caller deals with what is left. */
static void abort_batch(struct kinfer_worker *w, const char *why,
                        int64_t deadline, int recover)
{
    struct kinfer_txn *t = w->txn;
    kinfer_log(KINFER_LOG_WARN,
               "aborting the transaction of %zu requests: %s; they are "
               "consumed again from the last commit",
               t->dispatched, why);
    t->aborts++;
    t->aborts_in_row++;
    /* Queued jobs of the aborted batch are skipped (stage admit). */
    atomic_store(&w->abandon, 1);
    enum outcome out = run_op(w, OP_ABORT, NULL, NULL, deadline);
    t->open = 0;
    if (out != DONE || !recover)
        return;
    if (wait_idle(w, cap_deadline(w, kinfer_now_ms() + DISCARD_WAIT_MAX_MS)) !=
        0) {
        kinfer_log(KINFER_LOG_ERROR,
                   "%zu requests of the aborted transaction still run after "
                   "%d ms; the worker stops",
                   atomic_load(&w->in_flight), DISCARD_WAIT_MAX_MS);
        atomic_store(&w->fatal, 1);
        return;
    }
    atomic_store(&w->abandon, 0);
    atomic_store(&t->failed, 0);
    rewind_partitions(w);
    if (t->aborts_in_row >= MAX_ABORTS_IN_ROW) {
        kinfer_log(KINFER_LOG_ERROR,
                   "%u transactions in a row aborted (the last: %s); the "
                   "worker stops",
                   t->aborts_in_row, why);
        atomic_store(&w->fatal, 1);
    }
}

/* ------------------------------------------------------------ closing */

static void offset_cb(int32_t partition, int64_t next, void *arg)
{
    rd_kafka_topic_partition_list_t *list = arg;
    rd_kafka_topic_partition_list_add(list, "", partition)->offset = next;
}

/* Commit the open transaction once its jobs have ended (waiting until
 * wait_deadline), or abort it.  Transactional calls retry until
 * call_deadline.  recover as for abort_batch. */
static void close_batch(struct kinfer_worker *w, int64_t wait_deadline,
                        int64_t call_deadline, int recover)
{
    struct kinfer_txn *t = w->txn;
    if (!t->open || atomic_load(&w->fatal))
        return;
    int64_t t0 = kinfer_now_ms();
    if (!atomic_load(&t->failed) &&
        wait_idle(w, cap_deadline(w, wait_deadline)) != 0) {
        char why[128];
        kinfer_fmt(
            why, sizeof why, "%zu of its requests still ran after %lld ms",
            atomic_load(&w->in_flight), (long long)(kinfer_now_ms() - t0));
        abort_batch(w, why, call_deadline, recover);
        return;
    }
    if (atomic_load(&t->failed)) {
        abort_batch(w, "a result could not be produced or delivered",
                    call_deadline, recover);
        return;
    }
    if (kinfer_tracker_held(w->tracker) > 0) {
        /* A job was dropped unanswered: committing the offsets after it
         * would lose it. */
        abort_batch(w, "a request was dropped unanswered", call_deadline,
                    recover);
        return;
    }
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new(8);
    kinfer_tracker_collect(w->tracker, offset_cb, list);
    for (int i = 0; i < list->cnt; i++) {
        free(list->elems[i].topic);
        list->elems[i].topic = kinfer_xstrdup(w->cfg.input_topic);
    }
    int64_t c0 = kinfer_now_ms();
    enum outcome out = DONE;
    if (list->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *cgmd =
            rd_kafka_consumer_group_metadata(w->consumer);
        out = run_op(w, OP_OFFSETS, list, cgmd, call_deadline);
        rd_kafka_consumer_group_metadata_destroy(cgmd);
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (out == DONE)
        out = run_op(w, OP_COMMIT, NULL, NULL, call_deadline);
    if (out == MUST_ABORT) {
        abort_batch(w, "the broker refused to commit it", call_deadline,
                    recover);
        return;
    }
    if (out != DONE)
        return; /* the worker stops */
    int64_t ms = kinfer_now_ms() - c0;
    t->open = 0;
    t->n_restart = 0;
    t->aborts_in_row = 0;
    t->commits++;
    t->committed_requests += t->dispatched;
    t->commit_ms_sum += ms;
    if (ms > t->commit_ms_max)
        t->commit_ms_max = ms;
    kinfer_log(KINFER_LOG_DEBUG,
               "committed a transaction of %zu requests: %lld ms open, "
               "%lld ms waiting for results, %lld ms committing",
               t->dispatched, (long long)(t0 - t->opened_ms),
               (long long)(c0 - t0), (long long)ms);
}

/* -------------------------------------------------------------- hooks */

int kinfer_worker_txn_admit(struct kinfer_worker *w,
                            const rd_kafka_message_t *m)
{
    struct kinfer_txn *t = w->txn;
    if (t == NULL)
        return 0;
    if (atomic_load(&w->fatal))
        return -1;
    restart_note(t, m->partition, m->offset);
    if (!t->open) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(w->producer);
        if (e != NULL) {
            kinfer_log(KINFER_LOG_ERROR,
                       "beginning a transaction: %s; the worker stops",
                       rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            atomic_store(&w->fatal, 1);
            return -1;
        }
        t->open = 1;
        t->opened_ms = kinfer_now_ms();
        t->dispatched = 0;
    }
    t->dispatched++;
    return 0;
}

int kinfer_worker_txn_tick(struct kinfer_worker *w, int timeout_ms)
{
    struct kinfer_txn *t = w->txn;
    if (t == NULL || !t->open || atomic_load(&w->fatal))
        return timeout_ms;
    int64_t now = kinfer_now_ms();
    if (atomic_load(&t->failed)) {
        abort_batch(w, "a result could not be produced or delivered",
                    now + CALL_MAX_MS, 1);
        return timeout_ms < 0 ? timeout_ms : 0;
    }
    int64_t due = t->opened_ms + t->interval_ms;
    if (t->dispatched >= t->max_messages || now >= due) {
        close_batch(w, now + CLOSE_WAIT_MAX_MS, now + CALL_MAX_MS, 1);
        return timeout_ms < 0 ? timeout_ms : 0;
    }
    if (timeout_ms > due - now)
        timeout_ms = (int)(due - now);
    return timeout_ms;
}

void kinfer_worker_txn_revoke(struct kinfer_worker *w,
                              const rd_kafka_topic_partition_list_t *parts,
                              int lost, int wait_ms)
{
    struct kinfer_txn *t = w->txn;
    if (t == NULL)
        return;
    /* Where the revoked partitions restart is their next owner's
     * business: an abort below rewinds only the ones we keep. */
    for (int i = 0; i < parts->cnt; i++)
        if (strcmp(parts->elems[i].topic, w->cfg.input_topic) == 0)
            restart_forget(t, parts->elems[i].partition);
    int64_t now = kinfer_now_ms();
    if (t->open && !atomic_load(&w->fatal)) {
        if (lost)
            abort_batch(w, "the assignment was lost", now + CALL_MAX_MS, 1);
        else
            close_batch(w, now + wait_ms, now + CALL_MAX_MS, 1);
    }
}

void kinfer_worker_txn_shutdown(struct kinfer_worker *w, int64_t deadline_ms)
{
    struct kinfer_txn *t = w->txn;
    if (t == NULL)
        return;
    if (t->open && atomic_load(&w->fatal)) {
        /* Stopping on another error (the consumer's, say): abort, so that
         * readers need not wait transaction.timeout.ms for the broker to.
         * A fenced producer cannot; its successor has aborted it. */
        if (rd_kafka_fatal_error(w->producer, NULL, 0) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            t->aborts++;
            (void)run_op(w, OP_ABORT, NULL, NULL, deadline_ms);
        }
        t->open = 0;
    } else if (t->open) {
        close_batch(w, deadline_ms, deadline_ms, 0);
    }
    kinfer_log(KINFER_LOG_INFO,
               "transactions: %llu committed with %llu requests (commit "
               "mean %.1f ms, max %lld ms), %llu aborted",
               t->commits, t->committed_requests,
               t->commits ? (double)t->commit_ms_sum / (double)t->commits : 0.0,
               (long long)t->commit_ms_max, t->aborts);
}

int kinfer_worker_txn_job_failed(struct kinfer_worker *w, int32_t partition,
                                 int64_t offset, const char *what,
                                 const char *why)
{
    struct kinfer_txn *t = w->txn;
    if (t == NULL)
        return 0;
    /* After an abort the jobs still running fail to produce: expected. */
    if (atomic_exchange(&t->failed, 1) == 0 && !atomic_load(&w->abandon))
        kinfer_log(KINFER_LOG_WARN,
                   "partition %" PRId32 " offset %" PRId64 ": %s failed: %s; "
                   "the transaction aborts and its requests are consumed "
                   "again",
                   partition, offset, what, why);
    return 1;
}
