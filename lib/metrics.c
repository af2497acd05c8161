/* The metrics registry (metrics.h): families and series kept in lists
 * under one mutex, values in atomics so the hot path never locks, and the
 * Prometheus text rendering with its escaping rules.
 *
 * Locking: m->lock guards the family list and every family's series list
 * (a leaf: nothing is called with it held).  Values are atomics; a double
 * is kept as its bit pattern in a 64-bit atomic. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/metrics.h"
#include "shared/util.h"

struct kinfer_metric_series {
    struct kinfer_metric_family *family;
    struct kinfer_metric_series *next; /* under the registry's lock */
    char *values[KINFER_METRIC_MAX_LABELS];
    atomic_int shown;
    atomic_ullong count;        /* counters */
    atomic_uint_least64_t bits; /* gauges: the value; histograms: the sum */
    atomic_ullong buckets[];    /* histograms: n_buckets + 1, not cumulative */
};

struct kinfer_metric_family {
    struct kinfer_metrics *m;
    struct kinfer_metric_family *next; /* under the registry's lock */
    enum kinfer_metric_type type;
    char *name, *help;
    char *labels[KINFER_METRIC_MAX_LABELS];
    size_t n_labels;
    double buckets[KINFER_METRIC_MAX_BUCKETS];
    size_t n_buckets;
    struct kinfer_metric_series *first, *last; /* under the lock */
};

struct kinfer_metrics {
    pthread_mutex_t lock;
    struct kinfer_metric_family *first, *last; /* under lock */
    kinfer_metrics_collect_cb collect;
    void *collect_arg;
};

static uint64_t to_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double from_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

struct kinfer_metrics *kinfer_metrics_new(void)
{
    struct kinfer_metrics *m = kinfer_xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void series_free(struct kinfer_metric_series *s, size_t n_labels)
{
    for (size_t i = 0; i < n_labels; i++)
        free(s->values[i]);
    free(s);
}

void kinfer_metrics_free(struct kinfer_metrics *m)
{
    if (m == NULL)
        return;
    struct kinfer_metric_family *f = m->first;
    while (f != NULL) {
        struct kinfer_metric_family *fn = f->next;
        struct kinfer_metric_series *s = f->first;
        while (s != NULL) {
            struct kinfer_metric_series *sn = s->next;
            series_free(s, f->n_labels);
            s = sn;
        }
        for (size_t i = 0; i < f->n_labels; i++)
            free(f->labels[i]);
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void kinfer_metrics_set_collect(struct kinfer_metrics *m,
                                kinfer_metrics_collect_cb cb, void *arg)
{
    m->collect = cb;
    m->collect_arg = arg;
}

static int is_name(const char *s, int colon)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* Lock held. */
static struct kinfer_metric_family *find_family(struct kinfer_metrics *m,
                                                const char *name)
{
    for (struct kinfer_metric_family *f = m->first; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static int family_args_ok(enum kinfer_metric_type type, const char *name,
                          const char *const *labels, size_t n_labels,
                          const double *buckets, size_t n_buckets)
{
    if (!is_name(name, 1) || n_labels > KINFER_METRIC_MAX_LABELS ||
        (n_labels > 0 && labels == NULL))
        return 0;
    for (size_t i = 0; i < n_labels; i++)
        if (!is_name(labels[i], 0) || strcmp(labels[i], "le") == 0)
            return 0;
    if (type != KINFER_METRIC_HISTOGRAM)
        return n_buckets == 0;
    if (buckets == NULL || n_buckets == 0 ||
        n_buckets > KINFER_METRIC_MAX_BUCKETS)
        return 0;
    for (size_t i = 0; i < n_buckets; i++)
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
            return 0;
    return 1;
}

enum kinfer_err kinfer_metrics_family(
    struct kinfer_metrics *m, enum kinfer_metric_type type, const char *name,
    const char *help, const char *const *labels, size_t n_labels,
    const double *buckets, size_t n_buckets, struct kinfer_metric_family **out)
{
    if (!family_args_ok(type, name, labels, n_labels, buckets, n_buckets))
        return KINFER_ERR_INVALID;
    struct kinfer_metric_family *f = kinfer_xcalloc(1, sizeof *f);
    f->m = m;
    f->type = type;
    f->name = kinfer_xstrdup(name);
    f->help = kinfer_xstrdup(help != NULL ? help : "");
    f->n_labels = n_labels;
    for (size_t i = 0; i < n_labels; i++)
        f->labels[i] = kinfer_xstrdup(labels[i]);
    f->n_buckets = n_buckets;
    for (size_t i = 0; i < n_buckets; i++)
        f->buckets[i] = buckets[i];
    pthread_mutex_lock(&m->lock);
    int dup = find_family(m, name) != NULL;
    if (!dup) {
        if (m->last != NULL)
            m->last->next = f;
        else
            m->first = f;
        m->last = f;
    }
    pthread_mutex_unlock(&m->lock);
    if (dup) {
        for (size_t i = 0; i < n_labels; i++)
            free(f->labels[i]);
        free(f->name);
        free(f->help);
        free(f);
        return KINFER_ERR_INVALID;
    }
    if (n_labels == 0)
        (void)kinfer_metrics_series(f, NULL);
    *out = f;
    return KINFER_OK;
}

/* Lock held. */
static struct kinfer_metric_series *find_series(struct kinfer_metric_family *f,
                                                const char *const *values)
{
    for (struct kinfer_metric_series *s = f->first; s != NULL; s = s->next) {
        size_t i = 0;
        while (i < f->n_labels && strcmp(s->values[i], values[i]) == 0)
            i++;
        if (i == f->n_labels)
            return s;
    }
    return NULL;
}

struct kinfer_metric_series *
kinfer_metrics_series(struct kinfer_metric_family *f, const char *const *values)
{
    struct kinfer_metrics *m = f->m;
    pthread_mutex_lock(&m->lock);
    struct kinfer_metric_series *s = find_series(f, values);
    if (s == NULL) {
        size_t nb = f->type == KINFER_METRIC_HISTOGRAM ? f->n_buckets + 1 : 0;
        s = kinfer_xcalloc(1, sizeof *s + nb * sizeof s->buckets[0]);
        s->family = f;
        for (size_t i = 0; i < f->n_labels; i++)
            s->values[i] = kinfer_xstrdup(values[i]);
        atomic_init(&s->count, 0);
        atomic_init(&s->bits, to_bits(0.0));
        for (size_t i = 0; i < nb; i++)
            atomic_init(&s->buckets[i], 0);
        if (f->last != NULL)
            f->last->next = s;
        else
            f->first = s;
        f->last = s;
    }
    atomic_store(&s->shown, 1);
    pthread_mutex_unlock(&m->lock);
    return s;
}

void kinfer_metric_show(struct kinfer_metric_series *s, int shown)
{
    atomic_store(&s->shown, shown ? 1 : 0);
}

void kinfer_counter_add(struct kinfer_metric_series *s, unsigned long long n)
{
    atomic_fetch_add_explicit(&s->count, n, memory_order_relaxed);
}

unsigned long long kinfer_counter_get(const struct kinfer_metric_series *s)
{
    return atomic_load(&((struct kinfer_metric_series *)s)->count);
}

void kinfer_gauge_set(struct kinfer_metric_series *s, double v)
{
    atomic_store_explicit(&s->bits, to_bits(v), memory_order_relaxed);
}

static void add_double(atomic_uint_least64_t *bits, double v)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(
        bits, &old, to_bits(from_bits(old) + v), memory_order_relaxed,
        memory_order_relaxed))
        ;
}

void kinfer_gauge_add(struct kinfer_metric_series *s, double v)
{
    add_double(&s->bits, v);
}

double kinfer_gauge_get(const struct kinfer_metric_series *s)
{
    return from_bits(atomic_load(&((struct kinfer_metric_series *)s)->bits));
}

void kinfer_histogram_observe(struct kinfer_metric_series *s, double v)
{
    const struct kinfer_metric_family *f = s->family;
    size_t i = 0;
    /* A dozen bounds or so: a linear scan beats a search. */
    while (i < f->n_buckets && !(v <= f->buckets[i]))
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    add_double(&s->bits, v);
}

unsigned long long kinfer_histogram_bucket(const struct kinfer_metric_series *s,
                                           size_t i)
{
    struct kinfer_metric_series *ms = (struct kinfer_metric_series *)s;
    size_t n = s->family->n_buckets;
    unsigned long long sum = 0;
    for (size_t k = 0; k <= i && k <= n; k++)
        sum += atomic_load(&ms->buckets[k]);
    return sum;
}

unsigned long long kinfer_histogram_count(const struct kinfer_metric_series *s)
{
    return kinfer_histogram_bucket(s, s->family->n_buckets);
}

double kinfer_histogram_sum(const struct kinfer_metric_series *s)
{
    return kinfer_gauge_get(s);
}

/* ------------------------------------------------------------ rendering */

/* A growing text buffer; bookkeeping, so it aborts on out-of-memory. */
struct buf {
    char *p;
    size_t len, cap;
};

static void put_n(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = kinfer_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put(struct buf *b, const char *s)
{
    put_n(b, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also the double
 * quote (the exposition format's only escapes). */
static void put_escaped(struct buf *b, const char *s, int quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            put(b, "\\\\");
        else if (*s == '\n')
            put(b, "\\n");
        else if (quote && *s == '"')
            put(b, "\\\"");
        else
            put_n(b, s, 1);
    }
}

/* v as the shortest text that reads back as v; Prometheus spells the
 * specials NaN, +Inf and -Inf. */
static void put_double(struct buf *b, double v)
{
    char text[40];
    if (isnan(v)) {
        put(b, "NaN");
        return;
    }
    if (isinf(v)) {
        put(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* Exponents only where plain digits would be long ("1e+21", not
     * "1e+01" for 10). */
    int plain = fabs(v) < 1e15 && (v == 0 || fabs(v) >= 1e-4);
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(text, sizeof text, "%.*g", prec, v);
        if (strtod(text, NULL) == v && (!plain || !strchr(text, 'e')))
            break;
    }
    put(b, text);
}

static void put_ull(struct buf *b, unsigned long long v)
{
    char text[24];
    snprintf(text, sizeof text, "%llu", v);
    put(b, text);
}

/* name{l1="v1",...,extra="..."} with the family's labels, plus le when
 * le_text is not NULL. */
static void put_series_name(struct buf *b, const struct kinfer_metric_series *s,
                            const char *suffix, const char *le_text)
{
    const struct kinfer_metric_family *f = s->family;
    put(b, f->name);
    put(b, suffix);
    if (f->n_labels == 0 && le_text == NULL) {
        put(b, " ");
        return;
    }
    put(b, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i > 0)
            put(b, ",");
        put(b, f->labels[i]);
        put(b, "=\"");
        put_escaped(b, s->values[i], 1);
        put(b, "\"");
    }
    if (le_text != NULL) {
        put(b, f->n_labels > 0 ? ",le=\"" : "le=\"");
        put(b, le_text);
        put(b, "\"");
    }
    put(b, "} ");
}

static void put_histogram(struct buf *b, struct kinfer_metric_series *s)
{
    const struct kinfer_metric_family *f = s->family;
    /* One read of each bucket, so that the +Inf bucket and _count agree
     * even while observations land. */
    unsigned long long cum = 0;
    for (size_t i = 0; i <= f->n_buckets; i++) {
        cum += atomic_load(&s->buckets[i]);
        struct buf le = {0};
        if (i < f->n_buckets)
            put_double(&le, f->buckets[i]);
        else
            put(&le, "+Inf");
        put_series_name(b, s, "_bucket", le.p);
        free(le.p);
        put_ull(b, cum);
        put(b, "\n");
    }
    put_series_name(b, s, "_sum", NULL);
    put_double(b, from_bits(atomic_load(&s->bits)));
    put(b, "\n");
    put_series_name(b, s, "_count", NULL);
    put_ull(b, cum);
    put(b, "\n");
}

static const char *type_name(enum kinfer_metric_type t)
{
    return t == KINFER_METRIC_COUNTER ? "counter"
           : t == KINFER_METRIC_GAUGE ? "gauge"
                                      : "histogram";
}

enum kinfer_err kinfer_metrics_render(struct kinfer_metrics *m, char **text,
                                      size_t *len)
{
    if (m->collect != NULL)
        m->collect(m->collect_arg);
    struct buf b = {0};
    put(&b, "");
    pthread_mutex_lock(&m->lock);
    for (struct kinfer_metric_family *f = m->first; f != NULL; f = f->next) {
        put(&b, "# HELP ");
        put(&b, f->name);
        put(&b, " ");
        put_escaped(&b, f->help, 0);
        put(&b, "\n# TYPE ");
        put(&b, f->name);
        put(&b, " ");
        put(&b, type_name(f->type));
        put(&b, "\n");
        for (struct kinfer_metric_series *s = f->first; s != NULL;
             s = s->next) {
            if (!atomic_load(&s->shown))
                continue;
            if (f->type == KINFER_METRIC_HISTOGRAM) {
                put_histogram(&b, s);
                continue;
            }
            put_series_name(&b, s, "", NULL);
            if (f->type == KINFER_METRIC_COUNTER)
                put_ull(&b, atomic_load(&s->count));
            else
                put_double(&b, from_bits(atomic_load(&s->bits)));
            put(&b, "\n");
        }
    }
    pthread_mutex_unlock(&m->lock);
    *text = b.p;
    *len = b.len;
    return KINFER_OK;
}

static const double duration_buckets[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,  0.5,    1,     2.5,  5,     10,
};

const double *kinfer_metrics_duration_buckets(size_t *n)
{
    *n = sizeof duration_buckets / sizeof duration_buckets[0];
    return duration_buckets;
}
