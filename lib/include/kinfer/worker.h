/* The worker pipeline: one consumer polled by the calling thread, a pool of
 * inference threads, one producer whose delivery reports are served by a
 * thread of their own, and the offset tracker between them (see
 * docs/design.md for the picture).
 *
 * Threads: kinfer_worker_new/_run/_free from the main thread;
 * kinfer_worker_stop from anywhere, including a signal handler. */
#ifndef KINFER_WORKER_H
#define KINFER_WORKER_H

#include <stddef.h>

#include "kinfer/error.h"
#include "kinfer/kafka_prop.h"
#include "kinfer/model.h"
#include "kinfer/host.h"
#include "kinfer/request.h"

/* Which requests must run and be answered in offset order (--ordering). */
enum kinfer_ordering {
    KINFER_ORDERING_NONE = 0,  /* any order (the fastest) */
    KINFER_ORDERING_PARTITION, /* one request at a time per partition */
    KINFER_ORDERING_KEY        /* one at a time per key of a partition */
};

struct kinfer_worker_config {
    const char *brokers; /* bootstrap.servers */
    const char *group;   /* group.id */
    /* group.instance.id (static membership); NULL or "": dynamic. */
    const char *instance_id;
    const char *input_topic;
    const char *output_topic;
    const char *dlq_topic;
    const char *default_model;  /* for requests without model_name */
    size_t threads;             /* inference threads, >= 1 */
    size_t max_in_flight;       /* requests consumed and not yet answered */
    size_t max_in_flight_bytes; /* their total size */
    /* The shutdown budget: drain, flush, commit and leaving the group all
     * fit in it (destroying the handles adds at most 1.5 s).  A revoke
     * waits min(this, 1 s). */
    int drain_timeout_ms;
    int stats_interval_ms; /* periodic stats log line; 0: off */
    /* End the run with an error when the consumer has not reached the
     * cluster this long after start (bad credentials, TLS, addresses);
     * 0: retry forever. */
    int connect_timeout_ms;
    struct kinfer_limits limits;
    /* Caps on the untrusted parts the value cap (limits) does not cover; a
     * request over one gets an error result and a dead letter.  0 takes
     * the KINFER_DEFAULT_MAX_* below. */
    size_t max_key_bytes;    /* key length */
    size_t max_header_bytes; /* header names plus values */
    size_t max_headers;      /* header count */
    /* librdkafka properties, applied in order after kinfer's own, to both
     * the consumer and the producer (group.id always comes from group).
     * Borrowed. */
    const struct kinfer_kafka_prop *props;
    size_t n_props;
    /* Liveness bound: the poll loop or the delivery-report thread making
     * no progress this long fails kinfer_worker_live.  0 takes
     * KINFER_DEFAULT_WATCHDOG_MS. */
    int watchdog_ms;
    /* Pipeline semantics (lib/worker_pipe.c, docs/design.md).  Zero
     * values keep the behaviour of a worker without them. */
    /* Requests without a deadline of their own (kinfer-deadline-ms,
     * parameters.timeout_ms) expire this long after their Kafka
     * timestamp; 0: never. */
    long long max_age_ms;
    enum kinfer_ordering ordering;
    /* Retries of failures a model marks transient (backend.h): attempts in
     * all (0 or 1: none), the first backoff, doubled per attempt up to the
     * maximum, each with jitter; dead-letter an exhausted request too. */
    unsigned retry_attempts;
    long long retry_backoff_ms;
    long long retry_backoff_max_ms;
    int retry_dlq;
    /* DLQ ratio guard: when more than dlq_guard_percent of a window of
     * dlq_guard_window requests is dead-lettered, stop (run returns
     * KINFER_ERR_INVALID); 0: off. */
    unsigned dlq_guard_percent;
    size_t dlq_guard_window;
    /* Exactly-once mode (docs/design.md, "Exactly once"): results, error
     * results, dead letters and the consumed offsets of each batch of
     * requests in one Kafka transaction.  Needs instance_id, from which
     * the transactional.id comes.  A batch closes after txn_max_messages
     * requests or txn_interval_ms after its first one (0 takes the
     * KINFER_DEFAULT_TXN_* below). */
    int exactly_once;
    size_t txn_max_messages;
    int txn_interval_ms;
};

/* Far above the longest step the poll loop takes by design (a revoke
 * waits at most 1 s, warming a topic 2 s, a flow-control nap 50 ms). */
#define KINFER_DEFAULT_WATCHDOG_MS 30000

/* librdkafka statistics, unless -X statistics.interval.ms says otherwise:
 * the lag, backlog, broker round-trip and producer-queue metrics come
 * from them (docs/metrics.md). */
#define KINFER_DEFAULT_STATS_INTERVAL "5000"

#define KINFER_DEFAULT_TXN_MAX_MESSAGES ((size_t)5000)
#define KINFER_DEFAULT_TXN_INTERVAL_MS 100

/* Keys are ids for partitioning and joins; headers carry trace context
 * and correlation ids, well under 1 KiB in practice.  These leave room for
 * generous baggage while keeping every answer far below the ~1 MB message
 * limit even with the request's key and headers forwarded. */
#define KINFER_DEFAULT_MAX_KEY_BYTES ((size_t)16384)
#define KINFER_DEFAULT_MAX_HEADER_BYTES ((size_t)65536)
#define KINFER_DEFAULT_MAX_HEADERS ((size_t)64)

/* Counters, for logs and tests. */
struct kinfer_worker_stats {
    unsigned long long consumed;     /* requests dispatched */
    unsigned long long answered;     /* results delivered */
    unsigned long long errors;       /* error results delivered */
    unsigned long long dead_letters; /* DLQ copies delivered */
    unsigned long long failures;     /* deliveries that failed for good */
    unsigned long long expired;      /* answered "expired", never run */
    unsigned long long retries;      /* runs again after a transient failure */
    unsigned long long exhausted;    /* transient failures out of attempts */
};

struct kinfer_worker;

/* Create the Kafka handles and the pool.  cfg is copied, but its strings
 * and props are borrowed, like models: all must outlive the worker.  On
 * error err names the cause (a bad -X property, say) and *out is
 * untouched. */
enum kinfer_err kinfer_worker_new(const struct kinfer_worker_config *cfg,
                                  const struct kinfer_models *models,
                                  struct kinfer_worker **out, char *err,
                                  size_t errsize)
    __attribute__((warn_unused_result));

/* Run until kinfer_worker_stop, then drain, flush, commit and leave the
 * group.  Returns KINFER_OK after a clean stop; KINFER_ERR_KAFKA when a
 * fatal Kafka error or a failed delivery ended the run (offsets of the
 * unanswered requests were not committed, so they will be consumed again);
 * KINFER_ERR_INVALID when the DLQ ratio guard stopped it (the same clean
 * stop, but requests not yet started were left uncommitted).
 */
enum kinfer_err kinfer_worker_run(struct kinfer_worker *w);

/* Ask the run loop to stop.  Async-signal-safe. */
void kinfer_worker_stop(struct kinfer_worker *w);

/* A snapshot of the counters into *st.  Any thread. */
void kinfer_worker_get_stats(const struct kinfer_worker *w,
                             struct kinfer_worker_stats *st);

/* The worker's metrics (docs/metrics.md), for the HTTP server.  Borrowed:
 * valid until kinfer_worker_free.  Any thread. */
struct kinfer_metrics *kinfer_worker_metrics(struct kinfer_worker *w);

/* Liveness: 1 while the poll loop and the delivery-report thread make
 * progress within cfg.watchdog_ms (or the worker was asked to stop);
 * otherwise 0 with the stuck thread named in why.  Any thread. */
int kinfer_worker_live(struct kinfer_worker *w, char *why, size_t size);

/* Readiness: 1 when the consumer has joined the group (an assignment
 * came, possibly empty), a broker is reachable, no fatal error happened
 * and the worker is not draining for shutdown (models are loaded before
 * the worker exists); otherwise 0 with the first unmet condition in why.
 * Any thread. */
int kinfer_worker_ready(struct kinfer_worker *w, char *why, size_t size);

/* Free w.  Returns 1 when librdkafka threads were left running because a
 * handle could not be destroyed safely or in time (docs/operations.md,
 * shutdown): the process should then end with _exit(), since exit()'s
 * handlers (OpenSSL's clean-up among them) would run under those threads
 * and may crash it.  0 otherwise; NULL is a no-op (0). */
int kinfer_worker_free(struct kinfer_worker *w);

#endif
