/* The worker's metrics and health (docs/metrics.md): the families it
 * registers, the per-model series made with the worker, the per-partition
 * lag and backlog from librdkafka's statistics, the gauges refreshed at
 * each scrape, and the liveness (watchdog) and readiness answers.
 *
 * Threads: counters and histograms are updated from the poll thread,
 * inference threads and the delivery-report thread, lock-free.  The
 * consumer's statistics arrive on the poll thread (its main queue is
 * redirected to the consumer queue), so the per-partition state is that
 * thread's alone; the producer's arrive on the delivery-report thread.
 * The collect callback and the health answers run on the HTTP server's
 * thread and read atomics only. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/log.h"
#include "shared/util.h"
#include "worker_internal.h"

/* The consume rate behind the backlog is an exponentially weighted mean
 * with this time constant, sampled at each statistics report. */
#define RATE_TAU_S 30.0
/* What the backlog reads when messages wait and none is being consumed:
 * an hour, past any sensible scaling or alerting bound.  Infinity would
 * be truer but autoscalers (KEDA) cannot use it. */
#define BACKLOG_CAP_S 3600.0
/* The partition ids this worker keeps state for: Kafka's own limits on a
 * topic's partitions are far below. */
#define MAX_PARTITION_ID 1000000

static const char *const reason_names[N_REASONS] = {
    [REASON_DECODE] = "decode",
    [REASON_UNKNOWN_MODEL] = "unknown_model",
    [REASON_MODEL_ERROR] = "model_error",
    [REASON_TOO_LARGE] = "too_large",
    [REASON_LIMITS] = "limits",
    [REASON_EXPIRED] = "expired",
};

/* Registering a fixed family cannot fail but by a programming error. */
static struct kinfer_metric_family *
family(struct kinfer_metrics *m, enum kinfer_metric_type type, const char *name,
       const char *help, const char *const *labels, size_t n_labels)
{
    size_t nb = 0;
    const double *b = type == KINFER_METRIC_HISTOGRAM
                          ? kinfer_metrics_duration_buckets(&nb)
                          : NULL;
    struct kinfer_metric_family *f = NULL;
    if (kinfer_metrics_family(m, type, name, help, labels, n_labels, b, nb,
                              &f) != KINFER_OK) {
        kinfer_log(KINFER_LOG_ERROR, "metric %s: bad definition", name);
        abort();
    }
    return f;
}

static struct kinfer_metric_series *single(struct kinfer_metrics *m,
                                           enum kinfer_metric_type type,
                                           const char *name, const char *help)
{
    return kinfer_metrics_series(family(m, type, name, help, NULL, 0), NULL);
}

static void collect_cb(void *arg);

static void make_model_series(struct kinfer_worker *w,
                              struct kinfer_metric_family *results,
                              struct kinfer_metric_family *inferences,
                              struct kinfer_metric_family *executions,
                              struct kinfer_metric_family *const hist[3])
{
    struct worker_metrics *wm = &w->metrics;
    size_t n = kinfer_models_count(w->models);
    wm->models = kinfer_xcalloc(n + 1, sizeof *wm->models);
    for (size_t i = 0; i < n; i++) {
        const struct kinfer_model *m = kinfer_models_at(w->models, i);
        const char *mv[] = {kinfer_model_name(m), kinfer_model_version(m)};
        const char *ok[] = {mv[0], mv[1], "success"};
        const char *bad[] = {mv[0], mv[1], "error"};
        struct model_series *ms = &wm->models[kinfer_model_index(m)];
        ms->ok = kinfer_metrics_series(results, ok);
        ms->failed = kinfer_metrics_series(results, bad);
        ms->inferences = kinfer_metrics_series(inferences, mv);
        ms->executions = kinfer_metrics_series(executions, mv);
        ms->queue = kinfer_metrics_series(hist[0], mv);
        ms->compute = kinfer_metrics_series(hist[1], mv);
        ms->request = kinfer_metrics_series(hist[2], mv);
    }
}

void kinfer_worker_metrics_init(struct kinfer_worker *w)
{
    struct worker_metrics *wm = &w->metrics;
    struct kinfer_metrics *m = kinfer_metrics_new();
    wm->reg = m;
    const enum kinfer_metric_type C = KINFER_METRIC_COUNTER,
                                  G = KINFER_METRIC_GAUGE,
                                  H = KINFER_METRIC_HISTOGRAM;
    static const char *const mv[] = {"model", "version"};
    static const char *const mvo[] = {"model", "version", "outcome"};
    static const char *const reason[] = {"reason"};
    static const char *const type[] = {"type"};
    static const char *const tp[] = {"topic", "partition"};
    static const char *const broker[] = {"broker"};

    wm->consumed = single(m, C, "kinfer_requests_consumed_total",
                          "Requests consumed from the input topic");
    struct kinfer_metric_family *results =
        family(m, C, "kinfer_results_total",
               "Results delivered for requests that named a loaded model, by "
               "outcome",
               mvo, 3);
    struct kinfer_metric_family *errors = family(
        m, C, "kinfer_request_errors_total",
        "Error results delivered, by reason (one per error result)", reason, 1);
    for (int r = 0; r < N_REASONS; r++) {
        const char *v[] = {reason_names[r]};
        wm->errors[r] = kinfer_metrics_series(errors, v);
    }
    wm->dead_letters = single(m, C, "kinfer_dead_letters_total",
                              "Dead letters delivered to the DLQ topic");
    wm->failures = single(m, C, "kinfer_delivery_failures_total",
                          "Results or dead letters that could not be "
                          "delivered for good");
    struct kinfer_metric_family *inferences =
        family(m, C, "kinfer_inference_count_total",
               "Requests run on the model (batched or not)", mv, 2);
    struct kinfer_metric_family *executions =
        family(m, C, "kinfer_execution_count_total",
               "Model executions (backend calls); inference_count / "
               "execution_count is the mean batch size",
               mv, 2);
    struct kinfer_metric_family *rebalances =
        family(m, C, "kinfer_rebalances_total",
               "Consumer group rebalance events, by type", type, 1);
    wm->assigns = kinfer_metrics_series(rebalances, (const char *[]){"assign"});
    wm->revokes = kinfer_metrics_series(rebalances, (const char *[]){"revoke"});
    wm->losses = kinfer_metrics_series(rebalances, (const char *[]){"lost"});

    wm->in_flight = single(m, G, "kinfer_in_flight_requests",
                           "Requests consumed and not yet answered");
    wm->in_flight_bytes = single(m, G, "kinfer_in_flight_bytes",
                                 "Bytes of the requests in flight");
    wm->assigned = single(m, G, "kinfer_partitions_assigned",
                          "Input topic partitions assigned to this worker");
    wm->paused = single(m, G, "kinfer_partitions_paused",
                        "Assigned partitions paused by flow control or "
                        "shutdown");
    wm->lag_family = family(m, G, "kinfer_consumer_lag_messages",
                            "Messages of the partition not yet answered "
                            "(librdkafka statistics)",
                            tp, 2);
    wm->backlog_family = family(
        m, G, "kinfer_backlog_seconds",
        "Lag divided by the partition's recent consume rate (30 s mean); "
        "3600 when messages wait and none are consumed",
        tp, 2);
    wm->backlog_max = single(m, G, "kinfer_backlog_seconds_max",
                             "Largest kinfer_backlog_seconds of this "
                             "worker's partitions (the autoscaling signal)");
    wm->ready =
        single(m, G, "kinfer_ready", "1 when /v2/health/ready answers 200");
    wm->draining = single(m, G, "kinfer_draining",
                          "1 once the worker drains for shutdown");
    wm->rtt_family = family(m, G, "kinfer_broker_rtt_seconds",
                            "Mean request round trip to the broker from the "
                            "result producer (librdkafka statistics)",
                            broker, 1);
    wm->retries = single(m, C, "kinfer_retries_total",
                         "Model runs scheduled again after a failure the "
                         "model marked transient (--retry-attempts)");
    wm->guard_tripped = single(m, G, "kinfer_dlq_guard_tripped",
                               "1 once the DLQ ratio guard (--dlq-guard) "
                               "stopped the worker");
    wm->producer_queue = single(m, G, "kinfer_producer_queue_messages",
                                "Messages in the result producer's local "
                                "queue (librdkafka msg_cnt)");

    struct kinfer_metric_family *hist[3] = {
        family(m, H, "kinfer_queue_duration_seconds",
               "From poll to the start of the model execution, per request", mv,
               2),
        family(m, H, "kinfer_compute_duration_seconds",
               "Model execution (the whole batch's), per request", mv, 2),
        family(m, H, "kinfer_request_duration_seconds",
               "From poll to the result delivered, per request", mv, 2),
    };
    make_model_series(w, results, inferences, executions, hist);

    atomic_init(&wm->n_assigned, 0);
    atomic_init(&wm->paused_all, 0);
    atomic_init(&wm->joined, 0);
    atomic_init(&wm->brokers_up, -1);
    atomic_init(&wm->all_down, 0);
    atomic_init(&wm->poll_beat, kinfer_now_ms());
    atomic_init(&wm->dr_beat, kinfer_now_ms());
    kinfer_metrics_set_collect(m, collect_cb, w);
}

void kinfer_worker_metrics_free(struct kinfer_worker *w)
{
    kinfer_metrics_free(w->metrics.reg);
    free(w->metrics.models);
    free(w->metrics.parts);
}

struct kinfer_metrics *kinfer_worker_metrics(struct kinfer_worker *w)
{
    return w->metrics.reg;
}

/* ------------------------------------------------------------- partitions */

/* The state of partition id, grown into when new; NULL for an id out of
 * range (then nothing is recorded for it). */
static struct part_state *part(struct kinfer_worker *w, int32_t id)
{
    struct worker_metrics *wm = &w->metrics;
    if (id < 0 || id > MAX_PARTITION_ID)
        return NULL;
    if ((size_t)id >= wm->n_parts) {
        size_t n = wm->n_parts ? wm->n_parts : 16;
        while (n <= (size_t)id)
            n *= 2;
        wm->parts = kinfer_xrealloc(wm->parts, n * sizeof *wm->parts);
        memset(wm->parts + wm->n_parts, 0,
               (n - wm->n_parts) * sizeof *wm->parts);
        wm->n_parts = n;
    }
    return &wm->parts[id];
}

static void update_backlog_max(struct kinfer_worker *w)
{
    struct worker_metrics *wm = &w->metrics;
    double max = 0;
    for (size_t i = 0; i < wm->n_parts; i++)
        if (wm->parts[i].assigned && wm->parts[i].backlog_s > max)
            max = wm->parts[i].backlog_s;
    kinfer_gauge_set(wm->backlog_max, max);
}

static void count_assigned(struct kinfer_worker *w)
{
    struct worker_metrics *wm = &w->metrics;
    int n = 0;
    for (size_t i = 0; i < wm->n_parts; i++)
        n += wm->parts[i].assigned;
    atomic_store(&wm->n_assigned, n);
}

void kinfer_worker_metrics_assign(struct kinfer_worker *w, const int32_t *ids,
                                  size_t n)
{
    struct worker_metrics *wm = &w->metrics;
    atomic_store(&wm->joined, 1);
    kinfer_counter_add(wm->assigns, 1);
    for (size_t i = 0; i < n; i++) {
        struct part_state *p = part(w, ids[i]);
        if (p == NULL)
            continue;
        char num[16];
        kinfer_fmt(num, sizeof num, "%" PRId32, ids[i]);
        const char *labels[] = {w->cfg.input_topic, num};
        p->assigned = 1;
        p->last_consumed = p->consumed;
        p->last_ms = kinfer_now_ms();
        p->rate = -1;
        p->lag = -1;
        p->backlog_s = 0;
        /* Shown from the first statistics report that gives a lag. */
        p->lag_series = kinfer_metrics_series(wm->lag_family, labels);
        p->backlog_series = kinfer_metrics_series(wm->backlog_family, labels);
        kinfer_metric_show(p->lag_series, 0);
        kinfer_metric_show(p->backlog_series, 0);
    }
    count_assigned(w);
}

void kinfer_worker_metrics_revoke(struct kinfer_worker *w, const int32_t *ids,
                                  size_t n, int lost)
{
    struct worker_metrics *wm = &w->metrics;
    kinfer_counter_add(lost ? wm->losses : wm->revokes, 1);
    for (size_t i = 0; i < n; i++) {
        struct part_state *p = part(w, ids[i]);
        if (p == NULL || !p->assigned)
            continue;
        /* Another member reports it now: summing over workers must not
         * count it twice. */
        p->assigned = 0;
        kinfer_metric_show(p->lag_series, 0);
        kinfer_metric_show(p->backlog_series, 0);
    }
    count_assigned(w);
    update_backlog_max(w);
}

void kinfer_worker_metrics_consumed(struct kinfer_worker *w, int32_t partition)
{
    kinfer_counter_add(w->metrics.consumed, 1);
    struct part_state *p = part(w, partition);
    if (p != NULL)
        p->consumed++;
}

/* One statistics report for partition p with lag messages unanswered. */
static void partition_sample(struct part_state *p, int64_t lag, int64_t now)
{
    double dt = (double)(now - p->last_ms) / 1000.0;
    if (dt > 0.2) {
        /* The first sample after the assignment is taken as it is: a
         * mean started at 0 would overstate the backlog for a minute. */
        double inst = (double)(p->consumed - p->last_consumed) / dt;
        double alpha = 1.0 - exp(-dt / RATE_TAU_S);
        p->rate = p->rate < 0 ? inst : p->rate + alpha * (inst - p->rate);
        p->last_consumed = p->consumed;
        p->last_ms = now;
    }
    p->lag = lag;
    if (lag <= 0)
        p->backlog_s = 0;
    else if (p->rate > 0 && (double)lag / p->rate < BACKLOG_CAP_S)
        p->backlog_s = (double)lag / p->rate;
    else
        p->backlog_s = BACKLOG_CAP_S;
    kinfer_gauge_set(p->lag_series, (double)lag);
    kinfer_gauge_set(p->backlog_series, p->backlog_s);
    kinfer_metric_show(p->lag_series, 1);
    kinfer_metric_show(p->backlog_series, 1);
}

/* The consumer's statistics: lag and backlog per assigned partition of
 * the input topic, and whether a broker is connected.  Poll thread. */
static void consumer_stats(struct kinfer_worker *w,
                           const struct kinfer_kafka_stats *st)
{
    struct worker_metrics *wm = &w->metrics;
    int up = 0;
    for (size_t i = 0; i < st->n_brokers; i++)
        up += st->brokers[i].up;
    atomic_store(&wm->brokers_up, up);
    if (up > 0)
        atomic_store(&wm->all_down, 0);
    int64_t now = kinfer_now_ms();
    for (size_t i = 0; i < st->n_partitions; i++) {
        const struct kinfer_kafka_partition_stats *ps = &st->partitions[i];
        if (ps->lag < 0 || strcmp(ps->topic, w->cfg.input_topic) != 0)
            continue;
        struct part_state *p = part(w, ps->partition);
        if (p != NULL && p->assigned)
            partition_sample(p, ps->lag, now);
    }
    update_backlog_max(w);
}

/* The producer's statistics: its queue and each broker's round trip.
 * Delivery-report thread (or main, while it flushes). */
static void producer_stats(struct kinfer_worker *w,
                           const struct kinfer_kafka_stats *st)
{
    struct worker_metrics *wm = &w->metrics;
    if (st->msg_cnt >= 0)
        kinfer_gauge_set(wm->producer_queue, (double)st->msg_cnt);
    for (size_t i = 0; i < st->n_brokers; i++) {
        const struct kinfer_kafka_broker_stats *b = &st->brokers[i];
        /* Bootstrap entries duplicate a real broker; a window without
         * requests has no mean. */
        if (b->nodeid < 0 || b->rtt_cnt <= 0 || b->rtt_avg_us < 0)
            continue;
        const char *labels[] = {b->name};
        kinfer_gauge_set(kinfer_metrics_series(wm->rtt_family, labels),
                         (double)b->rtt_avg_us / 1e6);
    }
}

void kinfer_worker_stats_cb(void *owner, rd_kafka_t *rk,
                            const struct kinfer_kafka_stats *st)
{
    struct kinfer_worker *w = owner;
    if (rd_kafka_type(rk) == RD_KAFKA_CONSUMER)
        consumer_stats(w, st);
    else
        producer_stats(w, st);
}

/* --------------------------------------------------------------- requests */

static double seconds(int64_t ns)
{
    return ns > 0 ? (double)ns / 1e9 : 0.0;
}

void kinfer_worker_metrics_ran(void *job, const struct kinfer_model *m,
                               int64_t start_ns, int64_t run_ns, size_t index,
                               size_t size, void *arg)
{
    struct kinfer_worker *w = arg;
    struct job *j = job;
    (void)size;
    j->model = m;
    struct model_series *ms = &w->metrics.models[kinfer_model_index(m)];
    kinfer_counter_add(ms->inferences, 1);
    if (index == 0)
        kinfer_counter_add(ms->executions, 1);
    kinfer_histogram_observe(ms->queue, seconds(start_ns - j->polled_ns));
    kinfer_histogram_observe(ms->compute, seconds(run_ns));
}

void kinfer_worker_metrics_delivered(struct kinfer_worker *w,
                                     const struct job *j, int kind)
{
    struct worker_metrics *wm = &w->metrics;
    if (kind == 2) {
        kinfer_counter_add(wm->dead_letters, 1);
        return;
    }
    if (kind == 1)
        kinfer_counter_add(wm->errors[j->reason], 1);
    if (j->model == NULL)
        return;
    struct model_series *ms = &wm->models[kinfer_model_index(j->model)];
    kinfer_counter_add(kind == 0 ? ms->ok : ms->failed, 1);
    kinfer_histogram_observe(ms->request,
                             seconds(kinfer_now_ns() - j->polled_ns));
}

/* ----------------------------------------------------------------- health */

int kinfer_worker_live(struct kinfer_worker *w, char *why, size_t size)
{
    struct worker_metrics *wm = &w->metrics;
    if (atomic_load(&w->stop))
        return 1; /* stopping on purpose: a restart would only cut it short */
    int bound = w->cfg.watchdog_ms > 0 ? w->cfg.watchdog_ms
                                       : KINFER_DEFAULT_WATCHDOG_MS;
    int64_t now = kinfer_now_ms();
    int64_t poll_age = now - atomic_load(&wm->poll_beat);
    int64_t dr_age = now - atomic_load(&wm->dr_beat);
    if (poll_age > bound) {
        kinfer_fmt(why, size, "the poll loop made no progress for %lld ms",
                   (long long)poll_age);
        return 0;
    }
    if (!atomic_load(&w->dr_stop) && dr_age > bound) {
        kinfer_fmt(why, size,
                   "the delivery-report thread made no progress for %lld ms",
                   (long long)dr_age);
        return 0;
    }
    return 1;
}

int kinfer_worker_ready(struct kinfer_worker *w, char *why, size_t size)
{
    struct worker_metrics *wm = &w->metrics;
    const char *no = NULL;
    if (atomic_load(&w->stop))
        no = "draining for shutdown";
    else if (atomic_load(&w->fatal))
        no = "a fatal Kafka error ends the run";
    else if (!atomic_load(&wm->joined))
        no = "not yet joined the consumer group";
    else if (atomic_load(&wm->all_down) || atomic_load(&wm->brokers_up) == 0)
        no = "no broker reachable";
    if (no == NULL)
        return 1;
    kinfer_fmt(why, size, "%s", no);
    return 0;
}

/* At each scrape, on the HTTP server's thread: the gauges kept elsewhere. */
static void collect_cb(void *arg)
{
    struct kinfer_worker *w = arg;
    struct worker_metrics *wm = &w->metrics;
    char why[128];
    int n = atomic_load(&wm->n_assigned);
    kinfer_gauge_set(wm->in_flight, (double)atomic_load(&w->in_flight));
    kinfer_gauge_set(wm->in_flight_bytes,
                     (double)atomic_load(&w->in_flight_bytes));
    kinfer_gauge_set(wm->assigned, n);
    kinfer_gauge_set(wm->paused, atomic_load(&wm->paused_all) ? n : 0);
    kinfer_gauge_set(wm->draining, atomic_load(&w->stop) ? 1 : 0);
    kinfer_gauge_set(wm->ready, kinfer_worker_ready(w, why, sizeof why));
    kinfer_gauge_set(wm->guard_tripped, atomic_load(&w->guard_tripped));
}
