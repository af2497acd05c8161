/* Unit tests of lib/stage.c: every submitted request gets exactly one
 * callback -- rejected, unknown_model or answered -- with the right
 * content, batching models run in batches, drain finishes everything and
 * submit is refused afterwards. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/model.h"
#include "kinfer/stage.h"

#define N_JOBS 64

struct job {
    const char *text;
    atomic_int rejected, unknown, answered, skipped;
    char why[256];
    double first_output; /* answered: outputs[0] element 0 (FP64) */
    int failed;
};

static atomic_int skip_all;

/* While closed, admit holds the stage's threads, so that the queue fills
 * before anything runs (bounded wait: a stuck test fails, never hangs). */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_closed;

static void gate_set(int closed)
{
    pthread_mutex_lock(&gate_mu);
    gate_closed = closed;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static int on_admit(void *job, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    while (gate_closed)
        if (pthread_cond_timedwait(&gate_cv, &gate_mu, &dl) != 0)
            break;
    pthread_mutex_unlock(&gate_mu);
    if (!atomic_load(&skip_all))
        return 1;
    atomic_fetch_add(&((struct job *)job)->skipped, 1);
    return 0;
}

static void on_rejected(void *job, const struct kinfer_request *req,
                        const char *why, void *arg)
{
    struct job *j = job;
    (void)req;
    (void)arg;
    snprintf(j->why, sizeof j->why, "%s", why);
    atomic_fetch_add(&j->rejected, 1);
}

static void on_unknown(void *job, const struct kinfer_request *req,
                       const char *why, void *arg)
{
    struct job *j = job;
    (void)req;
    (void)arg;
    snprintf(j->why, sizeof j->why, "%s", why);
    atomic_fetch_add(&j->unknown, 1);
}

static void on_answered(void *job, const struct kinfer_request *req,
                        const struct kinfer_model *m,
                        const struct kinfer_infer_item *item, void *arg)
{
    struct job *j = job;
    (void)req;
    (void)m;
    (void)arg;
    j->failed = item->failed;
    if (!item->failed)
        j->first_output = ((const double *)item->outputs[0].data)[0];
    atomic_fetch_add(&j->answered, 1);
}

static const struct kinfer_stage_ops ops = {
    .admit = on_admit,
    .rejected = on_rejected,
    .unknown_model = on_unknown,
    .answered = on_answered,
};

/* A registry with "scale" (one request per call) and "scale8" (batches of
 * up to 8, 50 ms delay). */
static struct kinfer_models *models(void)
{
    struct kinfer_models *ms = NULL;
    char err[256];
    assert_int_equal(kinfer_models_new(&ms), KINFER_OK);
    assert_int_equal(kinfer_models_load(ms, "scale", "scale", NULL, NULL, NULL,
                                        err, sizeof err),
                     KINFER_OK);
    struct kinfer_model_settings s = {.max_batch_size = 8,
                                      .max_queue_delay_us = 50000};
    assert_int_equal(kinfer_models_load(ms, "scale8", "scale", &s, NULL, NULL,
                                        err, sizeof err),
                     KINFER_OK);
    return ms;
}

static struct kinfer_stage *stage(const struct kinfer_models *ms,
                                  size_t threads)
{
    struct kinfer_stage_config cfg = {
        .threads = threads, .capacity = N_JOBS, .default_model = "scale"};
    struct kinfer_stage *s = NULL;
    assert_int_equal(kinfer_stage_new(&cfg, ms, &ops, &s), KINFER_OK);
    return s;
}

static void submit(struct kinfer_stage *s, struct job *j, const char *text)
{
    memset(j, 0, sizeof *j);
    j->text = text;
    assert_int_equal(kinfer_stage_submit(s, j, text, strlen(text)), KINFER_OK);
}

static void test_one_callback_each(void **state)
{
    (void)state;
    struct kinfer_models *ms = models();
    struct kinfer_stage *s = stage(ms, 2);
    struct job ok, bad, unknown, failed;
    submit(s, &ok,
           "{\"parameters\":{\"factor\":3},\"inputs\":[{\"name\":\"x\","
           "\"shape\":[1],\"datatype\":\"FP64\",\"data\":[1.5]}]}");
    submit(s, &bad, "not json");
    submit(s, &unknown,
           "{\"model_name\":\"nope\",\"inputs\":[{\"name\":\"x\","
           "\"shape\":[1],\"datatype\":\"FP64\",\"data\":[1]}]}");
    submit(s, &failed,
           "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":"
           "\"BOOL\",\"data\":[true]}]}");
    kinfer_stage_drain(s);

    assert_int_equal(ok.answered, 1);
    assert_int_equal(ok.failed, 0);
    assert_true(ok.first_output == 4.5);
    assert_int_equal(bad.rejected, 1);
    assert_non_null(strstr(bad.why, "not valid JSON"));
    assert_int_equal(unknown.unknown, 1);
    assert_non_null(strstr(unknown.why, "unknown model 'nope'"));
    assert_non_null(strstr(unknown.why, "scale, scale8"));
    assert_int_equal(failed.answered, 1);
    assert_int_equal(failed.failed, 1);
    struct job *all[] = {&ok, &bad, &unknown, &failed};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(all[i]->rejected + all[i]->unknown + all[i]->answered,
                         1);

    struct kinfer_stage_stats st;
    kinfer_stage_get_stats(s, &st);
    assert_int_equal(st.decoded, 4);
    assert_int_equal(st.run_items, 2);

    /* Drained: no more work is taken. */
    assert_int_equal(kinfer_stage_submit(s, &ok, "x", 1), KINFER_ERR_CLOSED);
    kinfer_stage_free(s);
    kinfer_models_free(ms);
}

static void test_batching_model_batches(void **state)
{
    (void)state;
    struct kinfer_models *ms = models();
    /* One thread with a full queue: requests gather while it decodes. */
    struct kinfer_stage *s = stage(ms, 1);
    gate_set(1);
    static struct job jobs[N_JOBS];
    static char texts[N_JOBS][160];
    for (int i = 0; i < N_JOBS; i++) {
        snprintf(texts[i], sizeof texts[i],
                 "{\"model_name\":\"scale8\",\"inputs\":[{\"name\":\"x\","
                 "\"shape\":[1],\"datatype\":\"FP64\",\"data\":[%d]}]}",
                 i);
        submit(s, &jobs[i], texts[i]);
    }
    gate_set(0);
    kinfer_stage_drain(s);
    for (int i = 0; i < N_JOBS; i++) {
        assert_int_equal(jobs[i].answered, 1);
        assert_true(jobs[i].first_output == 2.0 * i);
    }
    size_t batches, items;
    kinfer_stage_batch_counts(s, kinfer_models_find(ms, "scale8"), &batches,
                              &items);
    assert_int_equal(items, N_JOBS);
    if (batches >= N_JOBS)
        fail_msg("%zu batches for %d requests: nothing was batched", batches,
                 N_JOBS);
    kinfer_stage_batch_counts(s, kinfer_models_find(ms, "scale"), &batches,
                              &items);
    assert_int_equal(batches, 0);
    kinfer_stage_free(s);
    kinfer_models_free(ms);
}

static void test_admit_can_skip(void **state)
{
    (void)state;
    struct kinfer_models *ms = models();
    struct kinfer_stage *s = stage(ms, 1);
    struct job j;
    atomic_store(&skip_all, 1);
    submit(s, &j, "not json");
    kinfer_stage_drain(s);
    atomic_store(&skip_all, 0);
    assert_int_equal(j.skipped, 1);
    assert_int_equal(j.rejected + j.unknown + j.answered, 0);
    kinfer_stage_free(s);
    kinfer_models_free(ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_callback_each),
        cmocka_unit_test(test_batching_model_batches),
        cmocka_unit_test(test_admit_can_skip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
