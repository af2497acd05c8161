/* kinfer-produce's numbers: per-request latencies, nearest-rank
 * percentiles and the end-of-run summary (text or one JSON object).  Pure
 * logic without Kafka, so tests/test_produce_stats.c can check it exactly.
 */
#ifndef KPROD_STATS_H
#define KPROD_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A growing array of latencies in microseconds.  Bounded by the number of
 * requests of the run: one entry per first answer. */
struct kprod_latencies {
    int64_t *us;
    size_t n, cap;
};

void kprod_latencies_init(struct kprod_latencies *l);
void kprod_latencies_add(struct kprod_latencies *l, int64_t us);
/* Sort ascending, as kprod_percentile requires. */
void kprod_latencies_sort(struct kprod_latencies *l);
/* Free the storage and leave l empty; NULL is a no-op. */
void kprod_latencies_clear(struct kprod_latencies *l);

/* Nearest-rank percentile of sorted[0..n) (ascending): the smallest value
 * v such that at least p of all values are <= v, i.e. sorted[r - 1] with
 * rank r = ceil(p * n / 10000), clamped to [1, n].  p is given in basis
 * points (hundredths of a percent: 5000 = p50, 9990 = p99.9, 10000 = the
 * maximum) so the rank is computed in exact integer arithmetic.  p = 0
 * gives the minimum.  Returns 0 when n == 0. */
int64_t kprod_percentile(const int64_t *sorted, size_t n, unsigned p);

/* Arithmetic mean of v[0..n) (any order), in the values' unit; 0 when
 * n == 0.  The sum is taken in 64-bit integers, exact for any run whose
 * latencies add up to less than 2^63 us (292,000 years). */
double kprod_mean(const int64_t *v, size_t n);

/* Everything the summary shows.  Counts are of requests (messages). */
struct kprod_summary {
    uint64_t sent;         /* requests handed to the producer */
    uint64_t failed;       /* of which delivery failed */
    uint64_t skipped;      /* over-long input lines, not sent; printed
                              only when not 0 */
    int awaited;           /* --await: the fields below are meaningful */
    uint64_t answered;     /* requests with at least one result */
    uint64_t errors;       /* of the answered: results with an "error" */
    uint64_t wrong;        /* of the answered: unreadable or wrong values */
    uint64_t missing;      /* delivered but never answered */
    uint64_t duplicates;   /* results beyond the first for a request */
    double seconds;        /* first send to last answer (--await) or to the
                              end of the flush */
    const int64_t *lat_us; /* sorted latencies, one per answered request */
    size_t n_lat;
    int interrupted; /* SIGINT cut the run short */
    /* --concurrency N (closed loop): N, else 0.  max_outstanding is the
     * most requests ever sent and not yet answered at once (awaited runs
     * only); closed loop keeps it <= concurrency. */
    uint64_t concurrency;
    uint64_t max_outstanding;
};

/* Write the summary to f: a readable block of lines, or with json != 0
 * one JSON object on one line.  Throughput is answered/seconds with
 * --await, sent/seconds without (0 when seconds is 0); in closed-loop
 * mode it is the throughput the N outstanding requests achieved.  The
 * latency line gives p50, p90, p95, p99, the maximum and the mean. */
void kprod_summary_print(const struct kprod_summary *s, int json, FILE *f);

#endif
