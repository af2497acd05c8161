/* Latency percentiles and the summary of a kinfer-produce run.  The
 * percentile is the nearest-rank one (no interpolation), so every number
 * printed is a latency some request really had. */
#include <inttypes.h>
#include <stdlib.h>

#include "stats.h"
#include "shared/util.h"

void kprod_latencies_init(struct kprod_latencies *l)
{
    l->us = NULL;
    l->n = 0;
    l->cap = 0;
}

void kprod_latencies_add(struct kprod_latencies *l, int64_t us)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->us = kinfer_xrealloc(l->us, l->cap * sizeof *l->us);
    }
    l->us[l->n++] = us;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void kprod_latencies_sort(struct kprod_latencies *l)
{
    if (l->n > 1)
        qsort(l->us, l->n, sizeof *l->us, cmp_i64);
}

void kprod_latencies_clear(struct kprod_latencies *l)
{
    if (l == NULL)
        return;
    free(l->us);
    kprod_latencies_init(l);
}

int64_t kprod_percentile(const int64_t *sorted, size_t n, unsigned p)
{
    if (n == 0)
        return 0;
    if (p > 10000)
        p = 10000;
    /* ceil(p * n / 10000) without floating point: 0.95 * 20 must be
     * exactly 19, not 19.000000000000004 rounded up to 20. */
    uint64_t rank = ((uint64_t)p * n + 9999) / 10000;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

double kprod_mean(const int64_t *v, size_t n)
{
    if (n == 0)
        return 0.0;
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    return (double)sum / (double)n;
}

static double ms(int64_t us)
{
    return (double)us / 1000.0;
}

static double throughput(const struct kprod_summary *s)
{
    uint64_t count = s->awaited ? s->answered : s->sent;
    return s->seconds > 0 ? (double)count / s->seconds : 0.0;
}

static void print_text(const struct kprod_summary *s, FILE *f)
{
    if (s->awaited)
        fprintf(f,
                "sent %" PRIu64 "  answered %" PRIu64 "  errors %" PRIu64
                "  wrong %" PRIu64 "  missing %" PRIu64 "  duplicates %" PRIu64
                "\n",
                s->sent, s->answered, s->errors, s->wrong, s->missing,
                s->duplicates);
    else
        fprintf(f, "sent %" PRIu64 "\n", s->sent);
    if (s->failed > 0)
        fprintf(f, "delivery failures %" PRIu64 "\n", s->failed);
    if (s->skipped > 0)
        fprintf(f, "skipped over-long lines %" PRIu64 "\n", s->skipped);
    fprintf(f, "throughput %.1f req/s over %.2f s\n", throughput(s),
            s->seconds);
    if (s->awaited) {
        if (s->n_lat == 0)
            fprintf(f, "latency ms  none\n");
        else
            fprintf(f,
                    "latency ms  p50 %.1f  p90 %.1f  p95 %.1f  p99 %.1f  "
                    "max %.1f  mean %.1f\n",
                    ms(kprod_percentile(s->lat_us, s->n_lat, 5000)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 9000)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 9500)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 9900)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 10000)),
                    kprod_mean(s->lat_us, s->n_lat) / 1000.0);
    }
    if (s->concurrency > 0)
        fprintf(f,
                "closed loop  concurrency %" PRIu64 "  max outstanding %" PRIu64
                "\n",
                s->concurrency, s->max_outstanding);
    if (s->interrupted)
        fprintf(f, "interrupted\n");
}

static void print_json(const struct kprod_summary *s, FILE *f)
{
    fprintf(f, "{\"sent\":%" PRIu64 ",\"delivery_failures\":%" PRIu64, s->sent,
            s->failed);
    if (s->skipped > 0)
        fprintf(f, ",\"skipped_lines\":%" PRIu64, s->skipped);
    if (s->awaited)
        fprintf(f,
                ",\"answered\":%" PRIu64 ",\"errors\":%" PRIu64
                ",\"wrong\":%" PRIu64 ",\"missing\":%" PRIu64
                ",\"duplicates\":%" PRIu64,
                s->answered, s->errors, s->wrong, s->missing, s->duplicates);
    fprintf(f, ",\"seconds\":%.6f,\"throughput\":%.3f", s->seconds,
            throughput(s));
    if (s->awaited) {
        if (s->n_lat == 0)
            fprintf(f, ",\"latency_ms\":null");
        else
            fprintf(f,
                    ",\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,"
                    "\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f,"
                    "\"mean\":%.3f}",
                    ms(kprod_percentile(s->lat_us, s->n_lat, 5000)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 9000)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 9500)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 9900)),
                    ms(kprod_percentile(s->lat_us, s->n_lat, 10000)),
                    kprod_mean(s->lat_us, s->n_lat) / 1000.0);
        fprintf(f, ",\"max_outstanding\":%" PRIu64, s->max_outstanding);
    }
    if (s->concurrency > 0)
        fprintf(f, ",\"concurrency\":%" PRIu64, s->concurrency);
    fprintf(f, ",\"interrupted\":%s}\n", s->interrupted ? "true" : "false");
}

void kprod_summary_print(const struct kprod_summary *s, int json, FILE *f)
{
    if (json)
        print_json(s, f);
    else
        print_text(s, f);
}
