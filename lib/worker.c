/* The worker: wires one consumer, the inference stage, one producer and the
 * offset tracker into the pipeline of docs/design.md.  This file creates
 * and frees it; the poll thread's work is in worker_consume.c, the results
 * and delivery reports in worker_delivery.c, the shared state in
 * worker_internal.h. */
#include <stdlib.h>

#include "shared/util.h"
#include "worker_internal.h"

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
    };
    const struct kinfer_kafka_prop group = {"group.id", cfg->group};
    const struct kinfer_kafka_setup cs = {
        .role = KINFER_KAFKA_CONSUMER,
        .brokers = cfg->brokers,
        .defaults = consumer_defaults,
        .n_defaults = N_ELEMS(consumer_defaults),
        .user = cfg->props,
        .n_user = cfg->n_props,
        .fixed = &group,
        .n_fixed = 1,
        .events = &w->events,
    };
    const struct kinfer_kafka_setup ps = {
        .role = KINFER_KAFKA_PRODUCER,
        .brokers = cfg->brokers,
        .defaults = producer_defaults,
        .n_defaults = N_ELEMS(producer_defaults),
        .user = cfg->props,
        .n_user = cfg->n_props,
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
    if (w->cfg.threads == 0)
        w->cfg.threads = 1;
    if (w->cfg.max_in_flight == 0)
        w->cfg.max_in_flight = 1;
    if (w->cfg.max_in_flight_bytes == 0)
        w->cfg.max_in_flight_bytes = 1;
    if (make_handles(w, err, errsize) != KINFER_OK)
        goto fail;

    const struct kinfer_stage_config sc = {
        .threads = w->cfg.threads,
        .capacity = w->cfg.max_in_flight + 64,
        .default_model = w->cfg.default_model,
        .limits = w->cfg.limits,
    };
    struct kinfer_stage_ops ops;
    kinfer_worker_stage_ops(w, &ops);
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

void kinfer_worker_free(struct kinfer_worker *w)
{
    if (w == NULL)
        return;
    /* Before the producer: the stage's last requests are produced. */
    kinfer_stage_free(w->stage);
    kinfer_worker_dr_stop(w);
    if (w->producer != NULL)
        rd_kafka_destroy(w->producer);
    if (w->consumer != NULL && !w->consumer_unsafe)
        rd_kafka_destroy_flags(
            w->consumer,
            w->close_abandoned ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0);
    kinfer_tracker_free(w->tracker);
    free(w);
}
