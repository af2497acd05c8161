/* Unit tests of lib/model.c (the registry of backends and models, and how
 * kinfer_model_infer turns backend failures into per-item errors) and of
 * the built-in "scale" backend in lib/backends/scale.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/host.h"
#include "kinfer/model.h"
#include "kinfer/request.h"
#include "kinfer/tensor.h"

#define ERR_SIZE 512

/* --- helpers ---------------------------------------------------------- */

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

static struct kinfer_models *models_new(void)
{
    struct kinfer_models *ms = NULL;
    assert_int_equal(kinfer_models_new(&ms), KINFER_OK);
    assert_non_null(ms);
    return ms;
}

/* A registry with one "scale" model called name, default settings. */
static struct kinfer_models *models_with_scale(const char *name)
{
    struct kinfer_models *ms = models_new();
    char err[ERR_SIZE] = "";
    enum kinfer_err rc = kinfer_models_load(ms, name, "scale", NULL, NULL, NULL,
                                            err, sizeof err);
    if (rc != KINFER_OK)
        fail_msg("loading scale: %s", err);
    return ms;
}

/* Decode JSON text into req; the test fails on a decode error. */
static void decode(struct kinfer_request *req, const char *json)
{
    char err[ERR_SIZE] = "";
    memset(req, 0, sizeof *req);
    enum kinfer_err rc =
        kinfer_request_decode(json, strlen(json), NULL, req, err, sizeof err);
    if (rc != KINFER_OK)
        fail_msg("decode %s: %s", json, err);
}

/* Run one request on m; item holds the result (clear it afterwards). */
static void infer_one(const struct kinfer_model *m,
                      const struct kinfer_request *req,
                      struct kinfer_infer_item *item)
{
    memset(item, 0, sizeof *item);
    item->request = req;
    kinfer_model_infer(m, item, 1);
}

static void assert_output(const struct kinfer_infer_item *it, size_t i,
                          const char *name, enum kinfer_dtype dtype, int ndim,
                          const int64_t *shape, size_t count)
{
    if (it->failed)
        fail_msg("item failed: %s", it->error);
    assert_non_null(it->outputs);
    assert_true(i < it->n_outputs);
    const struct kinfer_tensor *t = &it->outputs[i];
    assert_string_equal(t->name, name);
    assert_int_equal(t->dtype, dtype);
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        assert_int_equal(t->shape[d], shape[d]);
    assert_int_equal(t->count, count);
    assert_non_null(t->data);
}

/* Expect one request to fail on a fresh scale model with a message
 * containing want. */
static void expect_scale_failure(const char *json, const char *want)
{
    struct kinfer_models *ms = models_with_scale("s");
    struct kinfer_request req;
    decode(&req, json);
    struct kinfer_infer_item it;
    infer_one(kinfer_models_find(ms, "s"), &req, &it);
    assert_int_equal(it.failed, 1);
    assert_contains(it.error, want);
    assert_true(strlen(it.error) < sizeof it.error);
    kinfer_infer_item_clear(&it);
    assert_int_equal(it.failed, 0);
    assert_null(it.outputs);
    kinfer_request_clear(&req);
    kinfer_models_free(ms);
}

/* --- registry ---------------------------------------------------------- */

static void test_new_registers_builtins(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_new();
    assert_int_equal(kinfer_models_count(ms), 0);
    assert_string_equal(kinfer_models_names(ms), "");
    assert_null(kinfer_models_at(ms, 0));
    assert_null(kinfer_models_find(ms, "scale"));

    /* The unknown-backend message lists exactly what is registered. */
    char err[ERR_SIZE] = "";
    assert_int_equal(
        kinfer_models_load(ms, "m", "nope", NULL, NULL, NULL, err, sizeof err),
        KINFER_ERR_NOT_FOUND);
    assert_string_equal(err, "model 'm': backend 'nope' is not registered "
                             "(known: scale, mlp, topk)");
    assert_int_equal(kinfer_models_count(ms), 0);
    assert_null(kinfer_models_find(ms, "m"));

    /* mlp and topk are registered: their own create runs and refuses a
     * model without a config.json (not "not registered"). */
    const char *dense[] = {"mlp", "topk"};
    for (size_t i = 0; i < 2; i++) {
        err[0] = '\0';
        assert_int_equal(kinfer_models_load(ms, "d", dense[i], NULL, NULL, NULL,
                                            err, sizeof err),
                         KINFER_ERR_MODEL);
        char want[64];
        snprintf(want, sizeof want, "model 'd' (backend %s): ", dense[i]);
        assert_contains(err, want);
        assert_contains(err, "config.json");
        assert_int_equal(kinfer_models_count(ms), 0);
    }
    kinfer_models_free(ms);
}

static void test_free_null(void **state)
{
    (void)state;
    kinfer_models_free(NULL);
}

static void test_host_table(void **state)
{
    (void)state;
    const struct kinfer_host *h = kinfer_host_get();
    assert_non_null(h);
    assert_int_equal(h->abi_version, KINFER_BACKEND_ABI_VERSION);
    assert_non_null(h->log);
    assert_string_equal(h->dtype_name(KINFER_DTYPE_FP32), "FP32");
    unsigned char *p = h->alloc(64);
    assert_non_null(p);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(p[i], 0);
    free(p);
    struct kinfer_tensor t;
    int64_t shape[] = {2};
    assert_int_equal(h->tensor_init(&t, "b", KINFER_DTYPE_BYTES, 1, shape),
                     KINFER_OK);
    assert_int_equal(h->tensor_set_bytes(&t, 1, "xy", 2), KINFER_OK);
    const struct kinfer_bytes *e = t.data;
    assert_int_equal(e[1].len, 2);
    assert_memory_equal(e[1].data, "xy", 2);
    kinfer_tensor_clear(&t);
}

static void test_load_scale_defaults(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("double");
    assert_int_equal(kinfer_models_count(ms), 1);
    const struct kinfer_model *m = kinfer_models_find(ms, "double");
    assert_non_null(m);
    assert_ptr_equal(kinfer_models_at(ms, 0), m);
    assert_int_equal(kinfer_model_index(m), 0);
    assert_string_equal(kinfer_model_name(m), "double");
    assert_string_equal(kinfer_model_version(m), "1");
    const struct kinfer_model_settings *s = kinfer_model_settings(m);
    assert_string_equal(s->version, "1");
    assert_int_equal(s->max_batch_size, 1);
    assert_int_equal(s->preferred_batch_size, 1);
    assert_int_equal(s->max_queue_delay_us, 0);
    assert_string_equal(kinfer_models_names(ms), "double");
    kinfer_models_free(ms);
}

static const struct kinfer_model *
load_with(struct kinfer_models *ms, const char *name,
          const struct kinfer_model_settings *s)
{
    char err[ERR_SIZE] = "";
    enum kinfer_err rc =
        kinfer_models_load(ms, name, "scale", s, NULL, NULL, err, sizeof err);
    if (rc != KINFER_OK)
        fail_msg("load %s: %s", name, err);
    return kinfer_models_find(ms, name);
}

static void test_settings_normalised(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_new();

    /* The version is copied: changing the caller's buffer afterwards
     * does not change the model's. */
    char version[8] = "7";
    struct kinfer_model_settings s = {.version = version,
                                      .max_batch_size = 0,
                                      .max_queue_delay_us = 5000,
                                      .preferred_batch_size = 3};
    const struct kinfer_model *a = load_with(ms, "a", &s);
    version[0] = '9';
    assert_string_equal(kinfer_model_version(a), "7");
    const struct kinfer_model_settings *got = kinfer_model_settings(a);
    assert_int_equal(got->max_batch_size, 1);       /* 0 -> 1 */
    assert_int_equal(got->preferred_batch_size, 1); /* clamped */
    assert_int_equal(got->max_queue_delay_us, 5000);

    s = (struct kinfer_model_settings){.max_batch_size = 8};
    const struct kinfer_model *b = load_with(ms, "b", &s);
    assert_string_equal(kinfer_model_version(b), "1");
    assert_int_equal(kinfer_model_settings(b)->max_batch_size, 8);
    assert_int_equal(kinfer_model_settings(b)->preferred_batch_size, 8);

    s = (struct kinfer_model_settings){.max_batch_size = 8,
                                       .preferred_batch_size = 20};
    const struct kinfer_model *c = load_with(ms, "c", &s);
    assert_int_equal(kinfer_model_settings(c)->preferred_batch_size, 8);

    s = (struct kinfer_model_settings){.max_batch_size = 8,
                                       .preferred_batch_size = 4};
    const struct kinfer_model *d = load_with(ms, "d", &s);
    assert_int_equal(kinfer_model_settings(d)->max_batch_size, 8);
    assert_int_equal(kinfer_model_settings(d)->preferred_batch_size, 4);

    kinfer_models_free(ms);
}

static void test_load_twice_fails(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("m");
    char err[ERR_SIZE] = "";
    assert_int_equal(
        kinfer_models_load(ms, "m", "scale", NULL, NULL, NULL, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "model 'm' version 1 is defined twice");
    /* Even with another backend the name is taken. */
    err[0] = '\0';
    assert_int_equal(
        kinfer_models_load(ms, "m", "mlp", NULL, NULL, NULL, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "model 'm' version 1 is defined twice");
    assert_int_equal(kinfer_models_count(ms), 1);
    assert_string_equal(kinfer_models_names(ms), "m");
    kinfer_models_free(ms);
}

static void test_find_at_index_names(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_new();
    const char *names[] = {"alpha", "b", "gamma-model"};
    for (size_t i = 0; i < 3; i++)
        load_with(ms, names[i], NULL);
    assert_int_equal(kinfer_models_count(ms), 3);
    for (size_t i = 0; i < 3; i++) {
        const struct kinfer_model *m = kinfer_models_at(ms, i);
        assert_non_null(m);
        assert_string_equal(kinfer_model_name(m), names[i]);
        assert_int_equal(kinfer_model_index(m), i);
        assert_ptr_equal(kinfer_models_find(ms, names[i]), m);
    }
    assert_null(kinfer_models_at(ms, 3));
    assert_null(kinfer_models_find(ms, "gamma"));
    assert_null(kinfer_models_find(ms, "alph"));
    assert_null(kinfer_models_find(ms, ""));
    assert_string_equal(kinfer_models_names(ms), "alpha, b, gamma-model");
    kinfer_models_free(ms);
}

/* --- add_backend, with small test backends ----------------------------- */

/* The handle of the test backends: what infer should do. */
enum fake_mode {
    FAKE_FAIL_BATCH,   /* write an output to item 0, then return an error */
    FAKE_NO_OUTPUTS,   /* return OK without touching the items */
    FAKE_FAILED_BLANK, /* mark items failed without a message */
};

struct fake {
    enum fake_mode mode;
    int calls;
    size_t last_n;
    int destroyed;
};

static struct fake fake_state;

static enum kinfer_err fake_create(const struct kinfer_host *h, const char *dir,
                                   const char *config, void **model, char *err,
                                   size_t errsize)
{
    (void)h;
    (void)dir;
    if (config != NULL && strcmp(config, "refuse") == 0) {
        snprintf(err, errsize, "fake: refused on purpose");
        return KINFER_ERR_CONFIG;
    }
    *model = &fake_state;
    return KINFER_OK;
}

static enum kinfer_err fake_infer(void *model, struct kinfer_infer_item *items,
                                  size_t n)
{
    struct fake *f = model;
    f->calls++;
    f->last_n = n;
    switch (f->mode) {
    case FAKE_FAIL_BATCH: {
        /* Half-done work must be freed by kinfer (ASan checks). */
        const struct kinfer_host *h = kinfer_host_get();
        items[0].outputs = h->alloc(sizeof *items[0].outputs);
        items[0].n_outputs = 1;
        int64_t shape[] = {3};
        if (h->tensor_init(&items[0].outputs[0], "half", KINFER_DTYPE_FP64, 1,
                           shape) != KINFER_OK)
            return KINFER_ERR_NOMEM;
        return KINFER_ERR_MODEL;
    }
    case FAKE_NO_OUTPUTS:
        return KINFER_OK;
    case FAKE_FAILED_BLANK:
        for (size_t i = 0; i < n; i++)
            items[i].failed = 1;
        return KINFER_OK;
    }
    return KINFER_ERR_INVALID;
}

static void fake_destroy(void *model)
{
    struct fake *f = model;
    if (f != NULL)
        f->destroyed++;
}

static const struct kinfer_backend fake_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = "fake",
    .create = fake_create,
    .infer = fake_infer,
    .destroy = fake_destroy,
};

static void test_add_backend_abi(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_new();
    struct kinfer_backend other = fake_backend;
    other.abi_version = KINFER_BACKEND_ABI_VERSION + 1;
    char err[ERR_SIZE] = "";
    assert_int_equal(kinfer_models_add_backend(ms, &other, err, sizeof err),
                     KINFER_ERR_ABI);
    char want[ERR_SIZE];
    snprintf(want, sizeof want,
             "backend 'fake' was built for backend ABI %u, kinfer speaks %u",
             KINFER_BACKEND_ABI_VERSION + 1, KINFER_BACKEND_ABI_VERSION);
    assert_string_equal(err, want);

    /* Not registered: a model cannot name it. */
    err[0] = '\0';
    assert_int_equal(
        kinfer_models_load(ms, "f", "fake", NULL, NULL, NULL, err, sizeof err),
        KINFER_ERR_NOT_FOUND);
    assert_contains(err, "(known: scale, mlp, topk)");

    other.abi_version = 0;
    assert_int_equal(kinfer_models_add_backend(ms, &other, err, sizeof err),
                     KINFER_ERR_ABI);
    assert_contains(err, "ABI 0");
    kinfer_models_free(ms);
}

static void test_add_backend_duplicate_and_incomplete(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_new();
    char err[ERR_SIZE] = "";
    assert_int_equal(
        kinfer_models_add_backend(ms, &fake_backend, err, sizeof err),
        KINFER_OK);
    err[0] = '\0';
    assert_int_equal(
        kinfer_models_add_backend(ms, &fake_backend, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "backend 'fake' is registered twice");

    /* A built-in's name is taken too, by another descriptor. */
    struct kinfer_backend scale2 = fake_backend;
    scale2.name = "scale";
    assert_int_equal(kinfer_models_add_backend(ms, &scale2, err, sizeof err),
                     KINFER_ERR_INVALID);
    assert_string_equal(err, "backend 'scale' is registered twice");

    struct kinfer_backend broken = fake_backend;
    broken.name = "broken";
    broken.infer = NULL;
    assert_int_equal(kinfer_models_add_backend(ms, &broken, err, sizeof err),
                     KINFER_ERR_INVALID);
    assert_contains(err, "'broken' lacks a name or a function");
    broken = fake_backend;
    broken.name = NULL;
    assert_int_equal(kinfer_models_add_backend(ms, &broken, err, sizeof err),
                     KINFER_ERR_INVALID);
    assert_contains(err, "lacks a name or a function");

    /* The registered one works, and is listed after the built-ins. */
    err[0] = '\0';
    assert_int_equal(
        kinfer_models_load(ms, "f", "nope", NULL, NULL, NULL, err, sizeof err),
        KINFER_ERR_NOT_FOUND);
    assert_contains(err, "(known: scale, mlp, topk, fake)");
    load_with(ms, "s", NULL);
    assert_int_equal(
        kinfer_models_load(ms, "f", "fake", NULL, NULL, NULL, err, sizeof err),
        KINFER_OK);
    assert_string_equal(kinfer_models_names(ms), "s, f");
    assert_int_equal(kinfer_model_index(kinfer_models_find(ms, "f")), 1);
    kinfer_models_free(ms);
}

static void test_create_failure_names_model(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_new();
    char err[ERR_SIZE] = "";
    assert_int_equal(
        kinfer_models_add_backend(ms, &fake_backend, err, sizeof err),
        KINFER_OK);
    assert_int_equal(kinfer_models_load(ms, "f", "fake", NULL, NULL, "refuse",
                                        err, sizeof err),
                     KINFER_ERR_MODEL);
    assert_string_equal(err, "model 'f' (backend fake): fake: refused on "
                             "purpose");
    assert_int_equal(kinfer_models_count(ms), 0);
    assert_null(kinfer_models_find(ms, "f"));
    kinfer_models_free(ms);
}

/* Load "f" on the fake backend in mode, run three items on it. */
static void run_fake(enum fake_mode mode, struct kinfer_infer_item items[3],
                     struct kinfer_request *req)
{
    memset(&fake_state, 0, sizeof fake_state);
    fake_state.mode = mode;
    struct kinfer_models *ms = models_new();
    char err[ERR_SIZE] = "";
    assert_int_equal(
        kinfer_models_add_backend(ms, &fake_backend, err, sizeof err),
        KINFER_OK);
    const struct kinfer_model *m = NULL;
    assert_int_equal(
        kinfer_models_load(ms, "f", "fake", NULL, NULL, NULL, err, sizeof err),
        KINFER_OK);
    m = kinfer_models_find(ms, "f");
    decode(req, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],"
                "\"datatype\":\"FP64\",\"data\":[1]}]}");
    memset(items, 0, 3 * sizeof *items);
    for (size_t i = 0; i < 3; i++)
        items[i].request = req;
    kinfer_model_infer(m, items, 3);
    assert_int_equal(fake_state.calls, 1);
    assert_int_equal(fake_state.last_n, 3);
    kinfer_models_free(ms);
    assert_int_equal(fake_state.destroyed, 1);
}

static void test_infer_error_fails_every_item(void **state)
{
    (void)state;
    struct kinfer_infer_item items[3];
    struct kinfer_request req;
    run_fake(FAKE_FAIL_BATCH, items, &req);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(items[i].failed, 1);
        assert_string_equal(items[i].error, "model 'f' failed: model error");
        /* The half-written output of item 0 is gone. */
        assert_null(items[i].outputs);
        assert_int_equal(items[i].n_outputs, 0);
    }
    kinfer_request_clear(&req);
}

static void test_infer_no_outputs(void **state)
{
    (void)state;
    struct kinfer_infer_item items[3];
    struct kinfer_request req;
    run_fake(FAKE_NO_OUTPUTS, items, &req);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(items[i].failed, 1);
        assert_string_equal(items[i].error, "model 'f' returned no outputs");
    }
    kinfer_request_clear(&req);
}

static void test_infer_failed_without_message(void **state)
{
    (void)state;
    struct kinfer_infer_item items[3];
    struct kinfer_request req;
    run_fake(FAKE_FAILED_BLANK, items, &req);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(items[i].failed, 1);
        assert_string_equal(items[i].error, "model 'f' failed on this request");
    }
    kinfer_request_clear(&req);
}

/* --- the scale backend ------------------------------------------------- */

static void test_scale_fp64_default_factor(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("s");
    struct kinfer_request req;
    decode(&req, "{\"id\":\"r1\",\"inputs\":[{\"name\":\"x\",\"shape\":"
                 "[2,3],\"datatype\":\"FP64\",\"data\":[1,-2.5,0,1e300,"
                 "0.125,-7]}]}");
    struct kinfer_infer_item it;
    infer_one(kinfer_models_find(ms, "s"), &req, &it);
    int64_t shape[] = {2, 3};
    assert_int_equal(it.n_outputs, 1);
    assert_output(&it, 0, "x", KINFER_DTYPE_FP64, 2, shape, 6);
    const double want[] = {2, -5, 0, 2e300, 0.25, -14};
    const double *got = it.outputs[0].data;
    for (size_t i = 0; i < 6; i++)
        assert_true(got[i] == want[i]);
    /* The input is not modified. */
    assert_true(((const double *)req.inputs[0].data)[1] == -2.5);
    kinfer_infer_item_clear(&it);
    kinfer_request_clear(&req);
    kinfer_models_free(ms);
}

static void test_scale_fp32_real_factor(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("s");
    struct kinfer_request req;
    decode(&req, "{\"parameters\":{\"factor\":0.5},\"inputs\":[{\"name\":"
                 "\"f\",\"shape\":[4],\"datatype\":\"FP32\",\"data\":"
                 "[1,-3,0.5,1024]}]}");
    struct kinfer_infer_item it;
    infer_one(kinfer_models_find(ms, "s"), &req, &it);
    int64_t shape[] = {4};
    assert_output(&it, 0, "f", KINFER_DTYPE_FP32, 1, shape, 4);
    const float want[] = {0.5f, -1.5f, 0.25f, 512.0f};
    const float *got = it.outputs[0].data;
    for (size_t i = 0; i < 4; i++)
        assert_true(got[i] == want[i]);
    kinfer_infer_item_clear(&it);
    kinfer_request_clear(&req);
    kinfer_models_free(ms);
}

static void test_scale_int_integer_factor(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("s");
    struct kinfer_request req;
    /* Two inputs: one output each, same names, order, shapes. */
    decode(&req, "{\"parameters\":{\"factor\":3},\"inputs\":["
                 "{\"name\":\"i32\",\"shape\":[3,1],\"datatype\":\"INT32\","
                 "\"data\":[[1],[-2],[715827882]]},"
                 "{\"name\":\"i64\",\"shape\":[2],\"datatype\":\"INT64\","
                 "\"data\":[-3074457345618258602,5]}]}");
    struct kinfer_infer_item it;
    infer_one(kinfer_models_find(ms, "s"), &req, &it);
    assert_int_equal(it.n_outputs, 2);
    int64_t s32[] = {3, 1};
    assert_output(&it, 0, "i32", KINFER_DTYPE_INT32, 2, s32, 3);
    const int32_t *a = it.outputs[0].data;
    assert_int_equal(a[0], 3);
    assert_int_equal(a[1], -6);
    assert_int_equal(a[2], 2147483646);
    int64_t s64[] = {2};
    assert_output(&it, 1, "i64", KINFER_DTYPE_INT64, 1, s64, 2);
    const int64_t *b = it.outputs[1].data;
    assert_true(b[0] == INT64_C(-9223372036854775806));
    assert_true(b[1] == 15);
    kinfer_infer_item_clear(&it);
    kinfer_request_clear(&req);
    kinfer_models_free(ms);
}

static void test_scale_int_default_factor(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("s");
    struct kinfer_request req;
    decode(&req, "{\"inputs\":[{\"name\":\"n\",\"shape\":[],\"datatype\":"
                 "\"INT64\",\"data\":[-21]}]}");
    struct kinfer_infer_item it;
    infer_one(kinfer_models_find(ms, "s"), &req, &it);
    assert_output(&it, 0, "n", KINFER_DTYPE_INT64, 0, NULL, 1);
    assert_true(((const int64_t *)it.outputs[0].data)[0] == -42);
    kinfer_infer_item_clear(&it);
    kinfer_request_clear(&req);
    kinfer_models_free(ms);
}

static void test_scale_int32_overflow(void **state)
{
    (void)state;
    expect_scale_failure("{\"inputs\":[{\"name\":\"big\",\"shape\":[2],"
                         "\"datatype\":\"INT32\",\"data\":[1,"
                         "1073741824]}]}",
                         "input 'big': result overflows INT32");
    expect_scale_failure("{\"parameters\":{\"factor\":-1},\"inputs\":["
                         "{\"name\":\"min\",\"shape\":[1],\"datatype\":"
                         "\"INT32\",\"data\":[-2147483648]}]}",
                         "input 'min': result overflows INT32");
    expect_scale_failure("{\"inputs\":[{\"name\":\"w\",\"shape\":[1],"
                         "\"datatype\":\"INT64\",\"data\":"
                         "[4611686018427387904]}]}",
                         "input 'w': result overflows INT64");
}

static void test_scale_fp32_overflow(void **state)
{
    (void)state;
    expect_scale_failure("{\"inputs\":[{\"name\":\"v\",\"shape\":[1],"
                         "\"datatype\":\"FP32\",\"data\":[3e38]}]}",
                         "input 'v': element 0 times 2 overflows FP32");
}

static void test_scale_real_factor_for_int(void **state)
{
    (void)state;
    expect_scale_failure("{\"parameters\":{\"factor\":0.5},\"inputs\":["
                         "{\"name\":\"k\",\"shape\":[1],\"datatype\":"
                         "\"INT64\",\"data\":[4]}]}",
                         "parameters.factor: must be an integer for INT64 "
                         "input 'k', got 0.5");
    expect_scale_failure("{\"parameters\":{\"factor\":1.5},\"inputs\":["
                         "{\"name\":\"k\",\"shape\":[1],\"datatype\":"
                         "\"INT32\",\"data\":[4]}]}",
                         "must be an integer for INT32");
}

static void test_scale_factor_not_number(void **state)
{
    (void)state;
    const char *factors[] = {"\"2\"", "true", "null"};
    for (size_t i = 0; i < sizeof factors / sizeof factors[0]; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"parameters\":{\"factor\":%s},\"inputs\":[{\"name\":"
                 "\"x\",\"shape\":[1],\"datatype\":\"FP64\",\"data\":[1]}]}",
                 factors[i]);
        expect_scale_failure(json, "parameters.factor: expected a number");
    }
}

static void test_scale_bool_bytes_refused(void **state)
{
    (void)state;
    expect_scale_failure("{\"inputs\":[{\"name\":\"b\",\"shape\":[2],"
                         "\"datatype\":\"BOOL\",\"data\":[true,false]}]}",
                         "input 'b': scale takes numbers (UINT8 .. "
                         "UINT64, INT8 .. INT64, FP16, BF16, FP32, FP64), "
                         "not BOOL");
    expect_scale_failure("{\"inputs\":[{\"name\":\"t\",\"shape\":[1],"
                         "\"datatype\":\"BYTES\",\"data\":[\"hi\"]}]}",
                         "input 't': scale takes numbers (UINT8 .. "
                         "UINT64, INT8 .. INT64, FP16, BF16, FP32, FP64), "
                         "not BYTES");
    /* A good first input does not save the request. */
    expect_scale_failure("{\"inputs\":[{\"name\":\"ok\",\"shape\":[1],"
                         "\"datatype\":\"FP64\",\"data\":[1]},{\"name\":"
                         "\"b\",\"shape\":[1],\"datatype\":\"BOOL\","
                         "\"data\":[true]}]}",
                         "not BOOL");
}

static void test_scale_batch_middle_fails(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("s");
    struct kinfer_request reqs[3];
    decode(&reqs[0], "{\"inputs\":[{\"name\":\"a\",\"shape\":[1],"
                     "\"datatype\":\"INT32\",\"data\":[10]}]}");
    decode(&reqs[1], "{\"inputs\":[{\"name\":\"b\",\"shape\":[1],"
                     "\"datatype\":\"BOOL\",\"data\":[true]}]}");
    decode(&reqs[2], "{\"parameters\":{\"factor\":-1},\"inputs\":[{\"name\":"
                     "\"c\",\"shape\":[1],\"datatype\":\"FP64\","
                     "\"data\":[2.5]}]}");
    struct kinfer_infer_item items[3];
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < 3; i++)
        items[i].request = &reqs[i];
    /* Leftovers from an earlier run are cleared first. */
    for (size_t i = 0; i < 3; i++) {
        items[i].failed = 1;
        snprintf(items[i].error, sizeof items[i].error, "stale");
    }

    kinfer_model_infer(kinfer_models_find(ms, "s"), items, 3);

    int64_t shape[] = {1};
    assert_int_equal(items[0].failed, 0);
    assert_string_equal(items[0].error, "");
    assert_output(&items[0], 0, "a", KINFER_DTYPE_INT32, 1, shape, 1);
    assert_int_equal(((const int32_t *)items[0].outputs[0].data)[0], 20);

    assert_int_equal(items[1].failed, 1);
    assert_contains(items[1].error, "not BOOL");

    assert_int_equal(items[2].failed, 0);
    assert_string_equal(items[2].error, "");
    assert_output(&items[2], 0, "c", KINFER_DTYPE_FP64, 1, shape, 1);
    assert_true(((const double *)items[2].outputs[0].data)[0] == -2.5);

    for (size_t i = 0; i < 3; i++) {
        kinfer_infer_item_clear(&items[i]);
        kinfer_request_clear(&reqs[i]);
    }
    kinfer_models_free(ms);
}

/* Requests built by hand, without the codec: what a plugin host or a
 * benchmark would do. */
static void test_scale_hand_built_request(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("s");
    struct kinfer_tensor in;
    int64_t shape[] = {2, 2};
    assert_int_equal(kinfer_tensor_init(&in, "m", KINFER_DTYPE_INT64, 2, shape),
                     KINFER_OK);
    int64_t *d = in.data;
    d[0] = 1;
    d[1] = 2;
    d[2] = 3;
    d[3] = INT64_MAX / 7;
    struct kinfer_param factor = {.name = "factor",
                                  .kind = KINFER_PARAM_NUMBER,
                                  .number = 7,
                                  .is_integer = 1,
                                  .integer = 7};
    struct kinfer_request req = {
        .params = &factor, .n_params = 1, .inputs = &in, .n_inputs = 1};
    struct kinfer_infer_item it;
    infer_one(kinfer_models_find(ms, "s"), &req, &it);
    assert_output(&it, 0, "m", KINFER_DTYPE_INT64, 2, shape, 4);
    const int64_t *o = it.outputs[0].data;
    assert_true(o[0] == 7 && o[1] == 14 && o[2] == 21);
    assert_true(o[3] == (INT64_MAX / 7) * 7);
    kinfer_infer_item_clear(&it);
    kinfer_tensor_clear(&in);
    kinfer_models_free(ms);
}

/* --- describe -------------------------------------------------------- */

static const struct kinfer_tensor_desc described[] = {
    {"x", KINFER_DTYPE_FP32, 2, {-1, 16}},
    {"y", KINFER_DTYPE_INT64, -1, {0}},
};

static enum kinfer_err described_io(void *model, struct kinfer_model_io *io)
{
    (void)model;
    io->inputs = &described[0];
    io->n_inputs = 1;
    io->outputs = &described[1];
    io->n_outputs = 1;
    return KINFER_OK;
}

static void test_describe(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_scale("s");
    char buf[128];
    kinfer_model_describe(kinfer_models_find(ms, "s"), buf, sizeof buf);
    assert_string_equal(buf, "any inputs");

    struct kinfer_backend d = fake_backend;
    d.name = "described";
    d.describe = described_io;
    char err[ERR_SIZE] = "";
    assert_int_equal(kinfer_models_add_backend(ms, &d, err, sizeof err),
                     KINFER_OK);
    assert_int_equal(kinfer_models_load(ms, "d", "described", NULL, NULL, NULL,
                                        err, sizeof err),
                     KINFER_OK);
    kinfer_model_describe(kinfer_models_find(ms, "d"), buf, sizeof buf);
    assert_string_equal(buf, "x FP32 [-1,16] -> y INT64 [...]");
    /* A short buffer truncates instead of overflowing. */
    kinfer_model_describe(kinfer_models_find(ms, "d"), buf, 8);
    assert_string_equal(buf, "x FP32 ");
    kinfer_models_free(ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_registers_builtins),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_host_table),
        cmocka_unit_test(test_load_scale_defaults),
        cmocka_unit_test(test_settings_normalised),
        cmocka_unit_test(test_load_twice_fails),
        cmocka_unit_test(test_find_at_index_names),
        cmocka_unit_test(test_add_backend_abi),
        cmocka_unit_test(test_add_backend_duplicate_and_incomplete),
        cmocka_unit_test(test_create_failure_names_model),
        cmocka_unit_test(test_infer_error_fails_every_item),
        cmocka_unit_test(test_infer_no_outputs),
        cmocka_unit_test(test_infer_failed_without_message),
        cmocka_unit_test(test_scale_fp64_default_factor),
        cmocka_unit_test(test_scale_fp32_real_factor),
        cmocka_unit_test(test_scale_int_integer_factor),
        cmocka_unit_test(test_scale_int_default_factor),
        cmocka_unit_test(test_scale_int32_overflow),
        cmocka_unit_test(test_scale_fp32_overflow),
        cmocka_unit_test(test_scale_real_factor_for_int),
        cmocka_unit_test(test_scale_factor_not_number),
        cmocka_unit_test(test_scale_bool_bytes_refused),
        cmocka_unit_test(test_scale_batch_middle_fails),
        cmocka_unit_test(test_scale_hand_built_request),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
