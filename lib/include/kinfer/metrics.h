/* A small metrics registry rendered in the Prometheus text exposition
 * format 0.0.4: counters, gauges and histograms, each a family with a
 * fixed set of label names and one series per set of label values.  The
 * worker registers its families and per-model series once (at start-up,
 * or when a partition is assigned), keeps the series pointers and updates
 * them on the hot path with atomics alone; the HTTP server renders the
 * registry on its own thread.  docs/metrics.md lists kinfer's metrics.
 *
 * Threads: any thread may register, look up, update and render.  Updates
 * take no lock; registering, looking up a series and rendering take the
 * registry's one mutex (a leaf).  Series live as long as the registry: a
 * pointer from kinfer_metrics_series stays valid until kinfer_metrics_free.
 */
#ifndef KINFER_METRICS_H
#define KINFER_METRICS_H

#include <stddef.h>

#include "kinfer/error.h"

enum kinfer_metric_type {
    KINFER_METRIC_COUNTER, /* whole number that only goes up */
    KINFER_METRIC_GAUGE,   /* any double, set or added to */
    KINFER_METRIC_HISTOGRAM
};

/* At most this many label names per family, and bucket bounds per
 * histogram. */
#define KINFER_METRIC_MAX_LABELS 4
#define KINFER_METRIC_MAX_BUCKETS 32

struct kinfer_metrics;
struct kinfer_metric_family;
struct kinfer_metric_series;

/* Called at the start of every render, on the rendering thread, with no
 * lock of the registry held: the place to set gauges from state kept
 * elsewhere (in-flight counts, ...).  It may call every function here
 * except kinfer_metrics_render and kinfer_metrics_free. */
typedef void (*kinfer_metrics_collect_cb)(void *arg);

/* A new, empty registry.  Free with kinfer_metrics_free. */
struct kinfer_metrics *kinfer_metrics_new(void);

/* Every family and series goes with it.  NULL is a no-op. */
void kinfer_metrics_free(struct kinfer_metrics *m);

/* Set the collect callback (NULL: none).  Before the first render. */
void kinfer_metrics_set_collect(struct kinfer_metrics *m,
                                kinfer_metrics_collect_cb cb, void *arg);

/* Register a family.  name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be new
 * to m; labels[0..n_labels) (n_labels <= KINFER_METRIC_MAX_LABELS) match
 * [a-zA-Z_][a-zA-Z0-9_]* and are not "le"; buckets are the histogram's
 * upper bounds, finite and strictly increasing (n_buckets from 1 to
 * KINFER_METRIC_MAX_BUCKETS; +Inf is implicit), NULL and 0 otherwise.
 * help is one line of text (escaped when rendered).  Strings are copied.
 * On KINFER_OK *out is the family, owned by m; KINFER_ERR_INVALID when an
 * argument breaks these rules (a programming error: the registry is
 * unchanged).  A family without labels has its single series at once. */
enum kinfer_err kinfer_metrics_family(
    struct kinfer_metrics *m, enum kinfer_metric_type type, const char *name,
    const char *help, const char *const *labels, size_t n_labels,
    const double *buckets, size_t n_buckets, struct kinfer_metric_family **out)
    __attribute__((warn_unused_result));

/* The series of f with these label values (values[0..n_labels) in the
 * family's label order; NULL when it has no labels), created on first use
 * with value 0 and shown.  Values are any UTF-8 text (copied).  Never
 * NULL (memory for bookkeeping aborts on failure).  Takes the registry's
 * lock: call it when a series comes into being, not per request. */
struct kinfer_metric_series *
kinfer_metrics_series(struct kinfer_metric_family *f,
                      const char *const *values);

/* Hide s from renders (a partition that was revoked) or show it again.
 * A hidden series keeps its value and pointer.  kinfer_metrics_series
 * shows the series it returns. */
void kinfer_metric_show(struct kinfer_metric_series *s, int shown);

/* Counters.  Lock-free. */
void kinfer_counter_add(struct kinfer_metric_series *s, unsigned long long n);
unsigned long long kinfer_counter_get(const struct kinfer_metric_series *s);

/* Gauges.  Lock-free (add is a compare-and-swap loop). */
void kinfer_gauge_set(struct kinfer_metric_series *s, double v);
void kinfer_gauge_add(struct kinfer_metric_series *s, double v);
double kinfer_gauge_get(const struct kinfer_metric_series *s);

/* Count v in the first bucket whose bound is >= v (le is inclusive; NaN
 * and values over the last bound land in +Inf only) and add it to the
 * sum.  Lock-free. */
void kinfer_histogram_observe(struct kinfer_metric_series *s, double v);

/* Observations so far, and how many were <= bounds[i] (cumulative, as
 * rendered); i == n_buckets gives the +Inf bucket, equal to the count. */
unsigned long long kinfer_histogram_count(const struct kinfer_metric_series *s);
unsigned long long kinfer_histogram_bucket(const struct kinfer_metric_series *s,
                                           size_t i);
double kinfer_histogram_sum(const struct kinfer_metric_series *s);

/* The whole registry as Prometheus text exposition 0.0.4 (content type
 * "text/plain; version=0.0.4; charset=utf-8"): families in registration
 * order, each with its # HELP and # TYPE lines, then its shown series in
 * creation order; histograms as _bucket{le=...} (cumulative, +Inf last),
 * _sum and _count.  Runs the collect callback first.  On KINFER_OK *text
 * is NUL-terminated, *len its length; the caller frees it with free(). */
enum kinfer_err kinfer_metrics_render(struct kinfer_metrics *m, char **text,
                                      size_t *len)
    __attribute__((warn_unused_result));

/* The bucket bounds kinfer's duration histograms use, in seconds, from
 * 0.0005 to 10; *n gets their count. */
const double *kinfer_metrics_duration_buckets(size_t *n);

#endif
