/* The worker: wires one consumer, the inference stage, one producer and the
 * offset tracker into the pipeline of docs/design.md.  This file creates
 * and frees it; the poll thread's work is in worker_consume.c, the results
 * and delivery reports in worker_delivery.c, the shared state in
 * worker_internal.h. */
#include <stdlib.h>
#include <time.h>

#include "kinfer/log.h"
#include "shared/thread.h"
#include "shared/util.h"
#include "worker_internal.h"

static const struct kinfer_kafka_prop consumer_defaults[] = {
    {"partition.assignment.strategy", "cooperative-sticky"},
    {"enable.auto.commit", "true"},
    {"enable.auto.offset.store", "false"},
    {"auto.offset.reset", "earliest"},
    {"client.id", "kinfer-worker"},
    /* Lag per partition and broker reachability (docs/metrics.md). */
    {"statistics.interval.ms", KINFER_DEFAULT_STATS_INTERVAL},
    /* Failover: a dead worker's partitions move after session.timeout.ms
     * (librdkafka's default, 45 s, stalled them 45 s).  10 s is above the
     * broker's default minimum (6 s) with room for a slow heartbeat; one
     * heartbeat a second also makes the second step of a cooperative
     * rebalance (handing revoked partitions to a joining worker) start
     * within a second instead of three. */
    {"session.timeout.ms", "10000"},
    {"heartbeat.interval.ms", "1000"},
    /* librdkafka's prefetch is the first bound on memory, at its own
     * defaults: queued.max.messages.kbytes=65536, queued.min.messages=
     * 100000.  Lowering them to 32768/20000 cut a tiny-request backlog
     * drain from ~143k to ~37k req/s (tests/bench/e2e.sh): the fetcher
     * then stalls behind the poll thread's own bound. */
};

/* linger.ms=1 and no Nagle: a result waits at most 1 ms for a batch
 * instead of 5, which took ~10 of the ~12 ms p50 end to end (both
 * producers).  Under load batches still fill while requests are in
 * flight: ~0.85x the drain rate of 5 ms, where linger.ms=0 halved it on a
 * busy machine (issue 11; docs/configuration.md has the knobs). */
static const struct kinfer_kafka_prop producer_defaults[] = {
    {"enable.idempotence", "true"},
    {"linger.ms", "1"},
    {"socket.nagle.disable", "true"},
    /* Room for a dead-letter copy of any request under the default
     * --max-request-bytes plus its headers, and still under the broker's
     * default max.message.bytes (1048588). */
    {"message.max.bytes", "1048576"},
    {"client.id", "kinfer-worker"},
    /* Producer queue and broker round trips (docs/metrics.md). */
    {"statistics.interval.ms", KINFER_DEFAULT_STATS_INTERVAL},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Both handles, from kinfer's defaults, the user's properties and, for the
 * consumer, --group (which -X cannot override). */
static enum kinfer_err make_handles(struct kinfer_worker *w, char *err,
                                    size_t errsize)
{
    const struct kinfer_worker_config *cfg = &w->cfg;
    w->events = (struct kinfer_kafka_events){
        .owner = w,
        .fatal = &w->fatal,
        .delivered = kinfer_worker_delivered_cb,
        .rebalance = kinfer_worker_rebalance_cb,
        .stats = kinfer_worker_stats_cb,
        .all_brokers_down = &w->metrics.all_down,
    };
    /* --group and --instance-id, which -X cannot override. */
    struct kinfer_kafka_prop fixed[2 + KINFER_TXN_MAX_PROPS] = {
        {"group.id", cfg->group},
        {"group.instance.id", cfg->instance_id},
    };
    size_t n_fixed = cfg->instance_id != NULL && cfg->instance_id[0] ? 2 : 1;
    /* Exactly-once: no auto-commit; the producer's transactional.id. */
    n_fixed +=
        kinfer_worker_txn_props(w, KINFER_KAFKA_CONSUMER, fixed + n_fixed);
    struct kinfer_kafka_prop pfixed[KINFER_TXN_MAX_PROPS];
    size_t n_pfixed = kinfer_worker_txn_props(w, KINFER_KAFKA_PRODUCER, pfixed);
    const struct kinfer_kafka_setup cs = {
        .role = KINFER_KAFKA_CONSUMER,
        .brokers = cfg->brokers,
        .defaults = consumer_defaults,
        .n_defaults = N_ELEMS(consumer_defaults),
        .user = cfg->props,
        .n_user = cfg->n_props,
        .fixed = fixed,
        .n_fixed = n_fixed,
        .events = &w->events,
    };
    const struct kinfer_kafka_setup ps = {
        .role = KINFER_KAFKA_PRODUCER,
        .brokers = cfg->brokers,
        .defaults = producer_defaults,
        .n_defaults = N_ELEMS(producer_defaults),
        .user = cfg->props,
        .n_user = cfg->n_props,
        .fixed = pfixed,
        .n_fixed = n_pfixed,
        .events = &w->events,
    };
    enum kinfer_err rc = kinfer_kafka_new(&cs, &w->consumer, err, errsize);
    if (rc == KINFER_OK)
        rc = kinfer_kafka_new(&ps, &w->producer, err, errsize);
    return rc;
}

enum kinfer_err kinfer_worker_new(const struct kinfer_worker_config *cfg,
                                  const struct kinfer_models *models,
                                  struct kinfer_worker **out, char *err,
                                  size_t errsize)
{
    struct kinfer_worker *w = kinfer_xcalloc(1, sizeof *w);
    w->cfg = *cfg;
    w->models = models;
    kinfer_worker_flow_init(w);
    if (w->cfg.threads == 0)
        w->cfg.threads = 1;
    if (w->cfg.max_in_flight == 0)
        w->cfg.max_in_flight = 1;
    if (w->cfg.max_in_flight_bytes == 0)
        w->cfg.max_in_flight_bytes = 1;
    kinfer_worker_metrics_init(w);
    if (kinfer_worker_txn_setup(w, err, errsize) != KINFER_OK ||
        make_handles(w, err, errsize) != KINFER_OK)
        goto fail;

    const struct kinfer_stage_config sc = {
        .threads = w->cfg.threads,
        .capacity = w->cfg.max_in_flight + 64,
        .default_model = w->cfg.default_model,
        .limits = w->cfg.limits,
    };
    struct kinfer_stage_ops ops;
    kinfer_worker_stage_ops(w, &ops);
    if (kinfer_worker_pipe_new(w, &ops, err, errsize) != 0)
        goto fail;
    if (kinfer_tracker_new(&w->tracker) != KINFER_OK ||
        kinfer_stage_new(&sc, models, &ops, &w->stage) != KINFER_OK) {
        kinfer_fmt(err, errsize, "starting %zu inference threads failed",
                   w->cfg.threads);
        goto fail;
    }
    if (kinfer_worker_dr_start(w) != 0) {
        kinfer_fmt(err, errsize, "starting the delivery thread failed");
        goto fail;
    }
    *out = w;
    return KINFER_OK;

fail:
    (void)kinfer_worker_free(w);
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
    st->expired = atomic_load(&mw->expired);
    st->retries = atomic_load(&mw->retries);
    st->exhausted = atomic_load(&mw->exhausted);
}

/* Destroying a handle can hang inside librdkafka 2.0.2 with the broker
 * down; the shutdown budget (--drain-timeout) has run out by then, so
 * wait this long at most and leave the rest to process exit. */
#define DESTROY_TIMEOUT_MS 1500

/* The handles being destroyed on a helper thread; freed by whichever of
 * the two threads finishes last. */
struct destroyer {
    rd_kafka_t *producer, *consumer;
    int consumer_flags;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* with lock */
    int done;            /* under lock */
    int refs;            /* under lock */
};

static void destroyer_unref(struct destroyer *d)
{
    pthread_mutex_lock(&d->lock);
    int last = --d->refs == 0;
    pthread_mutex_unlock(&d->lock);
    if (last) {
        pthread_cond_destroy(&d->cond);
        pthread_mutex_destroy(&d->lock);
        free(d);
    }
}

static void *destroyer_main(void *arg)
{
    struct destroyer *d = arg;
    if (d->producer != NULL)
        rd_kafka_destroy(d->producer);
    if (d->consumer != NULL)
        rd_kafka_destroy_flags(d->consumer, d->consumer_flags);
    pthread_mutex_lock(&d->lock);
    d->done = 1;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    destroyer_unref(d);
    return NULL;
}

/* Destroy the handles within DESTROY_TIMEOUT_MS.  Returns 0, or -1 when
 * the destruction still runs (on a detached thread that may still call
 * the worker's callbacks, so the worker must not be freed). */
static int destroy_handles(struct kinfer_worker *w)
{
    struct destroyer *d = kinfer_xcalloc(1, sizeof *d);
    d->producer = w->producer;
    d->consumer = w->consumer_unsafe ? NULL : w->consumer;
    d->consumer_flags =
        w->close_abandoned ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0;
    d->refs = 2;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t th;
    if (kinfer_thread_start(&th, destroyer_main, d) != 0) {
        /* No thread: destroy here, unbounded, rather than leak. */
        d->refs = 1;
        destroyer_main(d);
        return 0;
    }
    pthread_detach(th);
    struct timespec deadline;
    kinfer_deadline(&deadline, DESTROY_TIMEOUT_MS);
    pthread_mutex_lock(&d->lock);
    while (!d->done &&
           pthread_cond_timedwait(&d->cond, &d->lock, &deadline) == 0)
        ;
    int done = d->done;
    pthread_mutex_unlock(&d->lock);
    destroyer_unref(d);
    if (!done)
        kinfer_log(KINFER_LOG_WARN,
                   "destroying the Kafka handles did not finish in %d ms; "
                   "leaving them to process exit",
                   DESTROY_TIMEOUT_MS);
    return done ? 0 : -1;
}

int kinfer_worker_free(struct kinfer_worker *w)
{
    if (w == NULL)
        return 0;
    kinfer_worker_pipe_stop(w); /* its timer submits to the stage */
    /* Before the producer: the stage's last requests are produced. */
    kinfer_stage_free(w->stage);
    kinfer_worker_dr_stop(w);
    kinfer_worker_pipe_free(w);
    /* The consumer is not destroyed at all when that would crash. */
    int left_running = w->consumer_unsafe;
    if (destroy_handles(w) != 0)
        return 1; /* w stays allocated for the thread still destroying */
    kinfer_tracker_free(w->tracker);
    kinfer_worker_txn_free(w);
    kinfer_worker_flow_destroy(w);
    kinfer_worker_metrics_free(w);
    free(w);
    return left_running;
}
