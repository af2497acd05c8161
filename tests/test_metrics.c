/* Tests for lib/metrics.c: the exact exposition text of small registries,
 * escaping of HELP text and label values, number formatting, histogram
 * bucket placement (le inclusive), hidden series, argument checks, and a
 * concurrency smoke test (threads updating while another renders). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/metrics.h"

static char *render(struct kinfer_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(kinfer_metrics_render(m, &text, &len), KINFER_OK);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static struct kinfer_metric_family *fam(struct kinfer_metrics *m,
                                        enum kinfer_metric_type t,
                                        const char *name, const char *help,
                                        const char *const *labels, size_t nl,
                                        const double *b, size_t nb)
{
    struct kinfer_metric_family *f = NULL;
    assert_int_equal(
        kinfer_metrics_family(m, t, name, help, labels, nl, b, nb, &f),
        KINFER_OK);
    assert_non_null(f);
    return f;
}

static void test_counter_and_gauge_text(void **state)
{
    (void)state;
    struct kinfer_metrics *m = kinfer_metrics_new();
    static const char *const mv[] = {"model", "version"};
    struct kinfer_metric_family *c =
        fam(m, KINFER_METRIC_COUNTER, "x_total", "Things done", mv, 2, NULL, 0);
    struct kinfer_metric_family *g =
        fam(m, KINFER_METRIC_GAUGE, "x_level", "A level", NULL, 0, NULL, 0);
    struct kinfer_metric_series *a =
        kinfer_metrics_series(c, (const char *[]){"scale", "1"});
    struct kinfer_metric_series *b =
        kinfer_metrics_series(c, (const char *[]){"mlp", "2"});
    kinfer_counter_add(a, 3);
    kinfer_counter_add(a, 4);
    kinfer_counter_add(b, 1);
    /* The same labels give the same series. */
    assert_ptr_equal(kinfer_metrics_series(c, (const char *[]){"scale", "1"}),
                     a);
    kinfer_gauge_set(kinfer_metrics_series(g, NULL), 0.25);
    kinfer_gauge_add(kinfer_metrics_series(g, NULL), 2);
    char *text = render(m);
    assert_string_equal(text, "# HELP x_total Things done\n"
                              "# TYPE x_total counter\n"
                              "x_total{model=\"scale\",version=\"1\"} 7\n"
                              "x_total{model=\"mlp\",version=\"2\"} 1\n"
                              "# HELP x_level A level\n"
                              "# TYPE x_level gauge\n"
                              "x_level 2.25\n");
    free(text);
    assert_int_equal(kinfer_counter_get(a), 7);
    kinfer_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    struct kinfer_metrics *m = kinfer_metrics_new();
    static const char *const l[] = {"path"};
    struct kinfer_metric_family *f =
        fam(m, KINFER_METRIC_GAUGE, "esc", "back\\slash \"quoted\"\nnext line",
            l, 1, NULL, 0);
    kinfer_gauge_set(
        kinfer_metrics_series(f, (const char *[]){"a\\b\"c\"\nd é"}), -1.5);
    char *text = render(m);
    /* HELP escapes \ and newline only; label values also ". */
    assert_string_equal(text,
                        "# HELP esc back\\\\slash \"quoted\"\\nnext line\n"
                        "# TYPE esc gauge\n"
                        "esc{path=\"a\\\\b\\\"c\\\"\\nd é\"} -1.5\n");
    free(text);
    kinfer_metrics_free(m);
}

static void test_special_values(void **state)
{
    (void)state;
    struct kinfer_metrics *m = kinfer_metrics_new();
    static const char *const l[] = {"k"};
    struct kinfer_metric_family *f =
        fam(m, KINFER_METRIC_GAUGE, "v", "", l, 1, NULL, 0);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"nan"}), NAN);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"inf"}),
                     INFINITY);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"ninf"}),
                     -INFINITY);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"tenth"}), 0.1);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"big"}), 1e21);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"third"}),
                     1.0 / 3.0);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"ten"}), 10);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"tiny"}), 1e-5);
    kinfer_gauge_set(kinfer_metrics_series(f, (const char *[]){"int"}),
                     123456789012.0);
    char *text = render(m);
    assert_string_equal(text, "# HELP v \n"
                              "# TYPE v gauge\n"
                              "v{k=\"nan\"} NaN\n"
                              "v{k=\"inf\"} +Inf\n"
                              "v{k=\"ninf\"} -Inf\n"
                              "v{k=\"tenth\"} 0.1\n"
                              "v{k=\"big\"} 1e+21\n"
                              "v{k=\"third\"} 0.3333333333333333\n"
                              "v{k=\"ten\"} 10\n"
                              "v{k=\"tiny\"} 1e-05\n"
                              "v{k=\"int\"} 123456789012\n");
    free(text);
    kinfer_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct kinfer_metrics *m = kinfer_metrics_new();
    static const char *const l[] = {"model"};
    static const double b[] = {0.1, 1, 2.5};
    struct kinfer_metric_family *f =
        fam(m, KINFER_METRIC_HISTOGRAM, "d_seconds", "Durations", l, 1, b, 3);
    struct kinfer_metric_series *s =
        kinfer_metrics_series(f, (const char *[]){"x"});
    /* le is inclusive: 0.1 goes in the 0.1 bucket, 1 in the 1 bucket. */
    kinfer_histogram_observe(s, 0.1);
    kinfer_histogram_observe(s, 0.05);
    kinfer_histogram_observe(s, 1);
    kinfer_histogram_observe(s, 2);
    kinfer_histogram_observe(s, 7);
    assert_int_equal(kinfer_histogram_count(s), 5);
    assert_int_equal(kinfer_histogram_bucket(s, 0), 2);
    assert_int_equal(kinfer_histogram_bucket(s, 1), 3);
    assert_int_equal(kinfer_histogram_bucket(s, 2), 4);
    assert_int_equal(kinfer_histogram_bucket(s, 3), 5);
    char *text = render(m);
    assert_string_equal(text, "# HELP d_seconds Durations\n"
                              "# TYPE d_seconds histogram\n"
                              "d_seconds_bucket{model=\"x\",le=\"0.1\"} 2\n"
                              "d_seconds_bucket{model=\"x\",le=\"1\"} 3\n"
                              "d_seconds_bucket{model=\"x\",le=\"2.5\"} 4\n"
                              "d_seconds_bucket{model=\"x\",le=\"+Inf\"} 5\n"
                              "d_seconds_sum{model=\"x\"} 10.15\n"
                              "d_seconds_count{model=\"x\"} 5\n");
    free(text);
    kinfer_metrics_free(m);
}

static void test_histogram_no_labels_and_nan(void **state)
{
    (void)state;
    struct kinfer_metrics *m = kinfer_metrics_new();
    static const double b[] = {1};
    struct kinfer_metric_family *f =
        fam(m, KINFER_METRIC_HISTOGRAM, "h", "H", NULL, 0, b, 1);
    struct kinfer_metric_series *s = kinfer_metrics_series(f, NULL);
    kinfer_histogram_observe(s, 0.5);
    kinfer_histogram_observe(s, NAN); /* +Inf only */
    char *text = render(m);
    assert_string_equal(text, "# HELP h H\n"
                              "# TYPE h histogram\n"
                              "h_bucket{le=\"1\"} 1\n"
                              "h_bucket{le=\"+Inf\"} 2\n"
                              "h_sum NaN\n"
                              "h_count 2\n");
    free(text);
    kinfer_metrics_free(m);
}

static void test_duration_buckets(void **state)
{
    (void)state;
    size_t n = 0;
    const double *b = kinfer_metrics_duration_buckets(&n);
    assert_true(n >= 10 && n <= KINFER_METRIC_MAX_BUCKETS);
    assert_true(b[0] == 0.0005);
    assert_true(b[n - 1] == 10);
    for (size_t i = 1; i < n; i++)
        assert_true(b[i] > b[i - 1]);
}

static void test_hidden_series(void **state)
{
    (void)state;
    struct kinfer_metrics *m = kinfer_metrics_new();
    static const char *const l[] = {"partition"};
    struct kinfer_metric_family *f =
        fam(m, KINFER_METRIC_GAUGE, "lag", "Lag", l, 1, NULL, 0);
    struct kinfer_metric_series *p0 =
        kinfer_metrics_series(f, (const char *[]){"0"});
    struct kinfer_metric_series *p1 =
        kinfer_metrics_series(f, (const char *[]){"1"});
    kinfer_gauge_set(p0, 5);
    kinfer_gauge_set(p1, 6);
    kinfer_metric_show(p0, 0);
    char *text = render(m);
    assert_string_equal(text, "# HELP lag Lag\n# TYPE lag gauge\n"
                              "lag{partition=\"1\"} 6\n");
    free(text);
    /* Looking it up again shows it, with its value kept. */
    assert_ptr_equal(kinfer_metrics_series(f, (const char *[]){"0"}), p0);
    text = render(m);
    assert_string_equal(text, "# HELP lag Lag\n# TYPE lag gauge\n"
                              "lag{partition=\"0\"} 5\n"
                              "lag{partition=\"1\"} 6\n");
    free(text);
    kinfer_metrics_free(m);
}

static void test_bad_definitions(void **state)
{
    (void)state;
    struct kinfer_metrics *m = kinfer_metrics_new();
    struct kinfer_metric_family *f = NULL;
    static const char *const le[] = {"le"};
    static const char *const bad_label[] = {"0x"};
    static const double unsorted[] = {1, 0.5};
    static const double inf[] = {1, INFINITY};
    static const double one[] = {1};
    enum kinfer_metric_type C = KINFER_METRIC_COUNTER,
                            H = KINFER_METRIC_HISTOGRAM;
    assert_int_equal(
        kinfer_metrics_family(m, C, "9lives", "", NULL, 0, NULL, 0, &f),
        KINFER_ERR_INVALID);
    assert_int_equal(
        kinfer_metrics_family(m, C, "a-b", "", NULL, 0, NULL, 0, &f),
        KINFER_ERR_INVALID);
    assert_int_equal(kinfer_metrics_family(m, H, "h", "", le, 1, one, 1, &f),
                     KINFER_ERR_INVALID);
    assert_int_equal(
        kinfer_metrics_family(m, C, "c", "", bad_label, 1, NULL, 0, &f),
        KINFER_ERR_INVALID);
    assert_int_equal(
        kinfer_metrics_family(m, H, "h", "", NULL, 0, unsorted, 2, &f),
        KINFER_ERR_INVALID);
    assert_int_equal(kinfer_metrics_family(m, H, "h", "", NULL, 0, inf, 2, &f),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_metrics_family(m, H, "h", "", NULL, 0, NULL, 0, &f),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_metrics_family(m, C, "c", "", NULL, 0, one, 1, &f),
                     KINFER_ERR_INVALID);
    assert_null(f);
    assert_int_equal(
        kinfer_metrics_family(m, C, "ns:c_total", "", NULL, 0, NULL, 0, &f),
        KINFER_OK);
    /* A name is registered once. */
    struct kinfer_metric_family *g = NULL;
    assert_int_equal(
        kinfer_metrics_family(m, C, "ns:c_total", "", NULL, 0, NULL, 0, &g),
        KINFER_ERR_INVALID);
    assert_null(g);
    char *text = render(m);
    assert_string_equal(text, "# HELP ns:c_total \n# TYPE ns:c_total counter\n"
                              "ns:c_total 0\n");
    free(text);
    kinfer_metrics_free(m);
}

/* ------------------------------------------------------- concurrency */

#define THREADS 4
#define PER_THREAD 100000

struct shared {
    struct kinfer_metric_series *counter, *gauge, *hist;
    struct kinfer_metrics *m;
};

static void *updater(void *arg)
{
    struct shared *sh = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        kinfer_counter_add(sh->counter, 1);
        kinfer_gauge_add(sh->gauge, 0.5);
        kinfer_histogram_observe(sh->hist, (i % 4) * 0.5); /* 0 .. 1.5 */
    }
    return NULL;
}

static int collects;

static void count_collect(void *arg)
{
    (void)arg;
    collects++;
}

/* Render m once: the +Inf bucket of histogram "h" equals its _count. */
static void assert_inf_bucket_is_count(struct kinfer_metrics *m)
{
    static const char inf_key[] = "h_bucket{le=\"+Inf\"} ";
    static const char cnt_key[] = "h_count ";
    char *text = NULL;
    size_t len = 0;
    enum kinfer_err rc = kinfer_metrics_render(m, &text, &len);
    assert_int_equal(rc, KINFER_OK);
    assert_non_null(text);
    const char *inf = strstr(text, inf_key);
    const char *cnt = strstr(text, cnt_key);
    unsigned long long n_inf = 0, n_cnt = 0;
    int found = inf != NULL && cnt != NULL;
    if (found) {
        n_inf = strtoull(inf + sizeof inf_key - 1, NULL, 10);
        n_cnt = strtoull(cnt + sizeof cnt_key - 1, NULL, 10);
    }
    free(text);
    assert_true(found);
    assert_int_equal(n_inf, n_cnt);
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    struct shared sh = {0};
    sh.m = kinfer_metrics_new();
    static const double b[] = {0.5, 1};
    sh.counter = kinfer_metrics_series(
        fam(sh.m, KINFER_METRIC_COUNTER, "n_total", "", NULL, 0, NULL, 0),
        NULL);
    sh.gauge = kinfer_metrics_series(
        fam(sh.m, KINFER_METRIC_GAUGE, "g", "", NULL, 0, NULL, 0), NULL);
    sh.hist = kinfer_metrics_series(
        fam(sh.m, KINFER_METRIC_HISTOGRAM, "h", "", NULL, 0, b, 2), NULL);
    kinfer_metrics_set_collect(sh.m, count_collect, NULL);
    collects = 0;
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, updater, &sh), 0);
    /* Render while they run: every rendering is well formed and its +Inf
     * bucket equals its _count. */
    int renders = 0;
    for (; renders < 50; renders++)
        assert_inf_bucket_is_count(sh.m);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(collects, renders);
    unsigned long long total = (unsigned long long)THREADS * PER_THREAD;
    assert_int_equal(kinfer_counter_get(sh.counter), total);
    assert_true(kinfer_gauge_get(sh.gauge) == 0.5 * (double)total);
    assert_int_equal(kinfer_histogram_count(sh.hist), total);
    /* 0 and 0.5 <= 0.5; 1 <= 1; 1.5 in +Inf only. */
    assert_int_equal(kinfer_histogram_bucket(sh.hist, 0), total / 2);
    assert_int_equal(kinfer_histogram_bucket(sh.hist, 1), total / 4 * 3);
    assert_true(kinfer_histogram_sum(sh.hist) == 0.75 * (double)total);
    kinfer_metrics_free(sh.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_text),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_no_labels_and_nan),
        cmocka_unit_test(test_duration_buckets),
        cmocka_unit_test(test_hidden_series),
        cmocka_unit_test(test_bad_definitions),
        cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
