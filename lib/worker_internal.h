/* The worker's private state, shared by its three files:
 *   worker.c          creates and frees it (handles, stage, tracker);
 *   worker_consume.c  the poll thread: poll loop, dispatch, rebalance,
 *                     flow control, offsets, shutdown;
 *   worker_delivery.c jobs, results, error results, dead letters and the
 *                     delivery-report thread.
 * Private to lib/.  A Kafka module: librdkafka types appear here by design
 * (see shared/kafka.h for the list of Kafka modules). */
#ifndef KINFER_WORKER_INTERNAL_H
#define KINFER_WORKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kinfer/metrics.h"
#include "kinfer/stage.h"
#include "kinfer/tracker.h"
#include "kinfer/worker.h"
#include "shared/kafka.h"

struct out;
struct kinfer_order;
struct kinfer_order_key;
struct kinfer_delay;

/* Why a request got an error result: the reason label of
 * kinfer_request_errors_total (docs/metrics.md). */
enum err_reason {
    REASON_DECODE,
    REASON_UNKNOWN_MODEL,
    REASON_MODEL_ERROR,
    REASON_TOO_LARGE,
    REASON_LIMITS,
    REASON_EXPIRED,
    N_REASONS
};

/* One consumed request, from dispatch until its last message is delivered
 * (or it is dropped).  Lifetime: polled -> tracked -> queued -> decoded and
 * run -> 1 or 2 messages produced (result, plus a DLQ copy for rejected
 * input) -> all delivered -> offset marked answered -> freed.  Created on
 * the poll thread, then owned by whichever thread settles it last. */
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
    int64_t polled_ns;  /* kinfer_now_ns() at dispatch */
    /* The model it ran on, once it did (NULL before and for requests that
     * named none that is loaded), and why its error result is one.  Set
     * by the thread that holds the job, read by the one that ends it. */
    const struct kinfer_model *model;
    enum err_reason reason;
    /* Pipeline semantics (worker_pipe.c), set on the poll thread at
     * dispatch and read by the one thread that holds the job. */
    int64_t timestamp_ms; /* the message's Kafka timestamp; -1: none */
    int64_t deadline_ms;  /* epoch ms from kinfer-deadline-ms; 0: none */
    struct kinfer_order_key *order; /* its key's FIFO; NULL: unordered */
    unsigned attempts;              /* model runs so far */
};

/* The series of one model (created with the worker). */
struct model_series {
    struct kinfer_metric_series *ok, *failed; /* results_total by outcome */
    struct kinfer_metric_series *inferences, *executions;
    struct kinfer_metric_series *queue, *compute, *request; /* histograms */
};

/* What the poll thread knows of one partition of the input topic, for
 * the lag and backlog gauges.  Poll thread only. */
struct part_state {
    int assigned;
    unsigned long long consumed; /* requests dispatched while assigned */
    unsigned long long last_consumed;
    int64_t last_ms;  /* when last_consumed was sampled; 0: never */
    double rate;      /* recent consume rate, messages/s; < 0: none yet */
    int64_t lag;      /* last lag from the statistics; -1: unknown */
    double backlog_s; /* lag / rate, capped */
    struct kinfer_metric_series *lag_series, *backlog_series;
};

/* The worker's metrics (worker_metrics.c, docs/metrics.md).  Series
 * pointers are written at creation; per-partition state is the poll
 * thread's. */
struct worker_metrics {
    struct kinfer_metrics *reg;
    struct kinfer_metric_series *consumed, *dead_letters, *failures;
    struct kinfer_metric_series *errors[N_REASONS];
    struct kinfer_metric_series *assigns, *revokes, *losses;
    struct kinfer_metric_series *in_flight, *in_flight_bytes, *assigned,
        *paused, *backlog_max, *ready, *draining, *producer_queue;
    struct kinfer_metric_series *retries, *guard_tripped; /* worker_pipe.c */
    struct kinfer_metric_family *lag_family, *backlog_family, *rtt_family;
    struct model_series *models; /* by kinfer_model_index */
    struct part_state *parts;    /* by partition id; poll thread only */
    size_t n_parts;
    atomic_int n_assigned; /* partitions of the input topic assigned */
    atomic_int paused_all; /* the poll thread paused them all */
    atomic_int joined;     /* an assignment came (possibly empty) */
    atomic_int brokers_up; /* from the consumer's statistics; -1: none yet */
    atomic_int all_down;   /* events.all_brokers_down */
    /* Watchdog heartbeats, kinfer_now_ms(): the poll loop's and the
     * delivery-report thread's. */
    atomic_llong poll_beat, dr_beat;
};

/* Fields are written once by kinfer_worker_new unless a note says
 * otherwise; "poll thread only" fields need no lock. */
struct kinfer_worker {
    struct kinfer_worker_config cfg; /* strings borrowed from the caller */
    const struct kinfer_models *models;
    /* What both handles report to (shared/kafka.h); owner is this worker,
     * fatal is &fatal below. */
    struct kinfer_kafka_events events;
    rd_kafka_t *consumer;       /* poll thread only */
    rd_kafka_t *producer;       /* any thread */
    struct kinfer_stage *stage; /* decodes, batches, runs the models */
    struct kinfer_tracker *tracker;

    pthread_t dr_thread;
    int dr_started; /* main thread only */
    atomic_int dr_stop;
    /* Re-sends the delivery-report thread could not enqueue (full local
     * queue); it retries them between polls (worker_delivery.c). */
    pthread_mutex_t deferred_lock;
    struct out *deferred;     /* under deferred_lock */
    size_t max_message_bytes; /* the producer's message.max.bytes */

    atomic_int stop;    /* kinfer_worker_stop was called */
    atomic_int abandon; /* shutdown deadline passed: skip queued jobs */
    atomic_int fatal;   /* run must end with an error */

    atomic_size_t in_flight;       /* jobs dispatched and not ended */
    atomic_size_t in_flight_bytes; /* their message sizes */
    /* The poll thread sleeps on flow_cond while in-flight work is over its
     * bound; job ends signal it once below the low mark (worker_consume.c).
     * flow_waiting says someone sleeps, so job ends skip the lock
     * otherwise. */
    pthread_mutex_t flow_lock;
    pthread_cond_t flow_cond; /* with flow_lock */
    atomic_int flow_waiting;
    int64_t over_since_ms;    /* poll thread only: over the bound since; 0 no */
    int64_t stop_deadline_ms; /* main thread: end of the shutdown budget */
    int paused;               /* poll thread only */
    int close_abandoned;      /* consumer close timed out */
    int assigned_once;        /* poll thread only: an assignment came */
    struct kinfer_kafka_watch watch; /* poll thread only: connect timeout */
    int consumer_unsafe;             /* destroying it would crash (2.0.2) */

    /* Exactly-once mode's state (worker_txn.c); NULL in at-least-once
     * mode.  Poll thread, except where worker_txn.c says otherwise. */
    struct kinfer_txn *txn;

    atomic_ullong consumed, answered, errors, dead_letters, failures;
    /* Pipeline semantics (worker_pipe.c). */
    struct kinfer_stage_ops inner_ops; /* the delivery side's callbacks */
    struct kinfer_order *order;        /* NULL: --ordering none */
    struct kinfer_delay *delay;        /* retries waiting for their backoff */
    atomic_ullong expired, retries, exhausted;
    /* DLQ ratio guard: requests and dead letters of the current window,
     * under guard_lock; tripped once, then the worker stops. */
    pthread_mutex_t guard_lock;
    int guard_ready; /* main thread: guard_lock initialised */
    size_t guard_seen, guard_dead;
    atomic_int guard_tripped;
    int64_t last_stats_ms; /* poll thread only */
    unsigned long long last_stats_consumed;

    struct worker_metrics metrics;
};

/* ------------------------------------------------- worker_delivery.c */

/* A job for message m (ownership moves to the job) at tracker generation
 * gen, counted in flight.  Poll thread. */
struct job *kinfer_worker_job_new(struct kinfer_worker *w,
                                  rd_kafka_message_t *m, uint64_t gen);

/* End j without answering it: its offset stays uncommitted, so the
 * request is consumed again later (by this or another member).  For a job
 * that never reached the stage.  Any thread. */
void kinfer_worker_job_drop(struct job *j);

/* Fill *ops with the stage callbacks that turn each request's outcome into
 * the messages to produce (arg = w). */
void kinfer_worker_stage_ops(struct kinfer_worker *w,
                             struct kinfer_stage_ops *ops);

/* The producer's delivery-report callback (events.delivered). */
void kinfer_worker_delivered_cb(void *owner, const rd_kafka_message_t *m);

/* Start / stop the thread that serves the producer's delivery reports.
 * Start also settles the delivery side's settings (caps, the producer's
 * message.max.bytes).  Main thread.  Start returns 0 or pthread_create's error;
 * stop joins the thread and is a no-op when none runs. */
int kinfer_worker_dr_start(struct kinfer_worker *w);
void kinfer_worker_dr_stop(struct kinfer_worker *w);

/* Answer j with an error result saying why, for a request that never
 * reached its model; req (may be NULL: not decoded) gives its id and
 * model name.  dead_letter: also send the request to the DLQ.  Any
 * thread that holds j. */
void kinfer_worker_job_answer_error(struct job *j,
                                    const struct kinfer_request *req,
                                    const char *why, int dead_letter);

/* ------------------------------------------------------ worker_pipe.c */

/* Deadlines, per-key ordering, retries: between dispatch and the stage.
 * pipe_new sets them up (after the stage ops: it wraps w->stage ops in
 * *ops); returns 0 or -1 with err set.  Main thread. */
int kinfer_worker_pipe_new(struct kinfer_worker *w,
                           struct kinfer_stage_ops *ops, char *err,
                           size_t errsize);
void kinfer_worker_pipe_free(struct kinfer_worker *w);

/* Stop the retry timer: requests waiting for a retry are dropped
 * (uncommitted; the partition's next owner runs them again).  Before the
 * stage drains, which takes no submits after.  Main thread; idempotent. */
void kinfer_worker_pipe_stop(struct kinfer_worker *w);

/* 1 when the DLQ ratio guard stopped the worker.  Any thread. */
int kinfer_worker_pipe_tripped(struct kinfer_worker *w);

/* Hand j (tracked, counted in flight) on to the stage, or hold it behind
 * its key's earlier requests.  Poll thread. */
void kinfer_worker_pipe_submit(struct kinfer_worker *w, struct job *j);

/* -------------------------------------------------- worker_consume.c */

/* A job ended (answered, dropped or failed): wake the poll thread when it
 * waits for in-flight work to drain below the low mark.  Any thread; cheap
 * when nobody waits. */
void kinfer_worker_job_ended(struct kinfer_worker *w);

/* Set up / tear down flow_lock and flow_cond.  Main thread, in
 * kinfer_worker_new and kinfer_worker_free. */
void kinfer_worker_flow_init(struct kinfer_worker *w);
void kinfer_worker_flow_destroy(struct kinfer_worker *w);

/* The consumer's rebalance callback (events.rebalance).  Poll thread. */
void kinfer_worker_rebalance_cb(void *owner, rd_kafka_t *rk,
                                rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t *parts);

/* -------------------------------------------------- worker_metrics.c */

/* Register the worker's metric families and every per-model series.
 * Main thread, in kinfer_worker_new, before the handles exist. */
void kinfer_worker_metrics_init(struct kinfer_worker *w);
void kinfer_worker_metrics_free(struct kinfer_worker *w);

/* Both handles' statistics callback (events.stats): the consumer's on the
 * poll thread, the producer's on the delivery-report thread. */
void kinfer_worker_stats_cb(void *owner, rd_kafka_t *rk,
                            const struct kinfer_kafka_stats *st);

/* The input topic's partitions in ids[0..n) were assigned / revoked (or
 * lost).  Poll thread. */
void kinfer_worker_metrics_assign(struct kinfer_worker *w, const int32_t *ids,
                                  size_t n);
void kinfer_worker_metrics_revoke(struct kinfer_worker *w, const int32_t *ids,
                                  size_t n, int lost);

/* A request of partition was dispatched.  Poll thread. */
void kinfer_worker_metrics_consumed(struct kinfer_worker *w, int32_t partition);

/* A message of kind (enum send_kind of worker_delivery.c: 0 result, 1
 * error result, 2 dead letter) for j was delivered.  Any thread. */
void kinfer_worker_metrics_delivered(struct kinfer_worker *w,
                                     const struct job *j, int kind);

/* The stage's ran callback (stage.h). */
void kinfer_worker_metrics_ran(void *job, const struct kinfer_model *m,
                               int64_t start_ns, int64_t run_ns, size_t index,
                               size_t size, void *arg);

/* ------------------------------------------------------ worker_txn.c */

/* Exactly-once mode (docs/design.md, "Exactly once").  Every function is
 * a no-op (returning 0 or KINFER_OK) when w->txn is NULL, so the hooks in
 * the other files cost nothing in at-least-once mode.  Poll thread, unless
 * noted. */

/* Set up w->txn from w->cfg (main thread, in kinfer_worker_new, before the
 * handles exist).  KINFER_ERR_CONFIG with err naming the cause when
 * --exactly-once lacks --instance-id. */
enum kinfer_err kinfer_worker_txn_setup(struct kinfer_worker *w, char *err,
                                        size_t errsize);
void kinfer_worker_txn_free(struct kinfer_worker *w);

/* The properties exactly-once mode fixes for a handle of role: written to
 * out[0..return), at most KINFER_TXN_MAX_PROPS; strings borrowed from w. */
#define KINFER_TXN_MAX_PROPS 2
size_t kinfer_worker_txn_props(const struct kinfer_worker *w,
                               enum kinfer_kafka_role role,
                               struct kinfer_kafka_prop *out);

/* init_transactions, retried within --connect-timeout: fences an older
 * producer of this transactional.id and aborts its open transaction.
 * KINFER_ERR_KAFKA after an ERROR line when that failed. */
enum kinfer_err kinfer_worker_txn_start(struct kinfer_worker *w);

/* Message m is about to be dispatched: open a transaction if none is.
 * Returns 0 to go on, -1 to drop m undispatched (the worker is stopping
 * with an error). */
int kinfer_worker_txn_admit(struct kinfer_worker *w,
                            const rd_kafka_message_t *m);

/* Once per poll-loop turn, with the poll timeout the loop chose (-1: do
 * not poll): commit the open transaction when its batch is full or old
 * enough, abort it when a job failed.  Returns the timeout to use, cut so
 * the batch closes on time. */
int kinfer_worker_txn_tick(struct kinfer_worker *w, int timeout_ms);

/* Partitions parts are being revoked (lost: taken already): commit the
 * open transaction, waiting at most wait_ms for its requests, or abort it.
 * From the rebalance callback, before the partitions go. */
void kinfer_worker_txn_revoke(struct kinfer_worker *w,
                              const rd_kafka_topic_partition_list_t *parts,
                              int lost, int wait_ms);

/* Shutdown, after the drain: commit the open transaction by deadline, or
 * abort it; log the transaction counters. */
void kinfer_worker_txn_shutdown(struct kinfer_worker *w, int64_t deadline_ms);

/* A job's message could not be produced or delivered: in exactly-once mode
 * the open transaction must abort (and its requests are consumed again),
 * which is not a reason to stop.  Returns 1 when that is so (the caller
 * drops the job), 0 in at-least-once mode.  Any thread. */
int kinfer_worker_txn_job_failed(struct kinfer_worker *w, int32_t partition,
                                 int64_t offset, const char *what,
                                 const char *why);

#endif
