/* Checks the out-of-tree example plugin (examples/plugin), built by
 * tests/plugin_example.sh against an installed kinfer with pkg-config:
 * the worker's loader accepts it, its example model repository loads, and
 * the model sums rows, batch by batch, failing only the items it cannot
 * answer.
 *
 * usage: test_plugin_example ROWSUM.so MODEL_REPO */
#include <stdio.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/model.h"
#include "kinfer/plugin.h"
#include "kinfer/repo.h"
#include "kinfer/host.h"
#include "kinfer/request.h"

static const char *plugin_so, *model_repo;

/* Built by the group setup, shared read-only by the tests. */
static struct kinfer_plugins *plugins;
static struct kinfer_models *models;

static int setup(void **state)
{
    (void)state;
    const struct kinfer_backend *b = NULL;
    char err[1024];
    if (kinfer_plugins_new(&plugins) != KINFER_OK ||
        kinfer_models_new(&models) != KINFER_OK)
        return -1;
    if (kinfer_plugins_load(plugins, plugin_so, &b, err, sizeof err) !=
            KINFER_OK ||
        kinfer_models_add_backend(models, b, err, sizeof err) != KINFER_OK ||
        kinfer_repo_load(models, model_repo, err, sizeof err) != KINFER_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* Models first: their code lives in the plugin. */
    kinfer_models_free(models);
    kinfer_plugins_free(plugins);
    return 0;
}

static const struct kinfer_model *rowsum_model(void)
{
    const struct kinfer_model *m = kinfer_models_find(models, "rowsum");
    assert_non_null(m);
    return m;
}

/* The loader registered the plugin's backend, and the repository's
 * config.json settings reached the model. */
static void test_loaded(void **state)
{
    (void)state;
    char sig[256];
    assert_int_equal(kinfer_plugins_count(plugins), 1);
    assert_int_equal(kinfer_models_count(models), 1);
    const struct kinfer_model *m = rowsum_model();
    assert_string_equal(kinfer_model_version(m), "1");
    assert_int_equal(kinfer_model_settings(m)->max_batch_size, 8);
    kinfer_model_describe(m, sig, sizeof sig);
    assert_string_equal(sig, "x FP32 [-1,-1] -> sum FP32 [-1]");
}

static void decode(const char *text, struct kinfer_request *req)
{
    char err[512];
    memset(req, 0, sizeof *req);
    if (kinfer_request_decode(text, strlen(text), NULL, req, err, sizeof err) !=
        KINFER_OK)
        fail_msg("codec refused %s: %s", text, err);
}

/* One batch of three: two matrices answered with their row sums, a
 * vector refused with the plugin's message. */
static void test_infer_batch(void **state)
{
    (void)state;
    static const char *texts[] = {
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2,3],"
        "\"data\":[1,2,3,4,5,6]}]}",
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[3],"
        "\"data\":[1,2,3]}]}",
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,4],"
        "\"data\":[0.5,-0.25,2,-8]}]}",
    };
    struct kinfer_request reqs[3];
    struct kinfer_infer_item items[3];
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < 3; i++) {
        decode(texts[i], &reqs[i]);
        items[i].request = &reqs[i];
    }
    kinfer_model_infer(rowsum_model(), items, 3);

    assert_false(items[0].failed);
    assert_int_equal(items[0].n_outputs, 1);
    const struct kinfer_tensor *t = &items[0].outputs[0];
    assert_string_equal(t->name, "sum");
    assert_int_equal(t->dtype, KINFER_DTYPE_FP32);
    assert_int_equal(t->ndim, 1);
    assert_int_equal(t->shape[0], 2);
    const float *s = t->data;
    assert_true(s[0] == 6.0f && s[1] == 15.0f);

    assert_true(items[1].failed);
    assert_int_equal(items[1].n_outputs, 0);
    assert_string_equal(items[1].error,
                        "rowsum: expected one FP32 input of rank 2");

    assert_false(items[2].failed);
    t = &items[2].outputs[0];
    assert_int_equal(t->shape[0], 1);
    assert_true(((const float *)t->data)[0] == -5.75f);

    for (size_t i = 0; i < 3; i++) {
        kinfer_infer_item_clear(&items[i]);
        kinfer_request_clear(&reqs[i]);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROWSUM.so MODEL_REPO\n", argv[0]);
        return 2;
    }
    plugin_so = argv[1];
    model_repo = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loaded),
        cmocka_unit_test(test_infer_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
