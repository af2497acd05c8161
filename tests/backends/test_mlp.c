/* Tests of the "mlp" backend against the NumPy answers of
 * ops/models/gen_dense.py: every case alone, all in one batch, batch
 * invariance, bounded scratch (many blocks), concurrent calls, bad
 * configurations and inputs that overflow FP32.
 *
 * usage: test_mlp GEN   (the gen_dense.py output directory)
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "bk_test.h"
#include "builtin.h"

static const char *gen_dir;

static void check_file(const char *model, const json_t *patch)
{
    const struct kinfer_backend *b = kinfer_backend_mlp();
    void *m = bk_model_load(b, gen_dir, model, patch);
    json_t *cases = bk_cases_load(gen_dir, model);

    bk_check_model(b, m, cases);
    json_decref(cases);
    b->destroy(m);
}

static void test_mlp_expected(void **state)
{
    (void)state;
    check_file("mlp", NULL);
}

static void test_mlp_acts_expected(void **state)
{
    (void)state;
    check_file("mlp_acts", NULL);
}

/* 256 bytes hold two rows of the widest layer (32 floats, twice): a batch
 * runs as many blocks, each its own sgemm per layer. */
static void test_small_scratch(void **state)
{
    json_t *patch = json_pack("{s:i}", "scratch_bytes", 256);

    (void)state;
    check_file("mlp", patch);
    json_decref(patch);
    patch = json_pack("{s:i}", "scratch_bytes", 1);
    check_file("mlp_acts", patch);
    json_decref(patch);
}

static void test_threads(void **state)
{
    (void)state;
    bk_check_threads_file(kinfer_backend_mlp(), gen_dir, "mlp", 4);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_ptr_equal(kinfer_backend_mlp(), kinfer_backend_mlp());
    bk_check_descriptor(kinfer_backend_mlp(), "mlp");
}

struct bad_config {
    const char *config;
    enum kinfer_err rc;
    const char *error;
};

static const struct bad_config bad_configs[] = {
    {NULL, KINFER_ERR_CONFIG, "mlp: the model needs a config.json"},
    {"{\"weights\": ", KINFER_ERR_CONFIG, "config.json is not valid JSON"},
    {"[1]", KINFER_ERR_CONFIG, "config.json must be a JSON object"},
    {"{\"layers\": [{\"weight\": \"fc1.weight\"}]}", KINFER_ERR_CONFIG,
     "config needs \"weights\""},
    {"{\"weights\": 3, \"layers\": []}", KINFER_ERR_CONFIG,
     "config \"weights\" must be a non-empty string"},
    {"{\"weights\": \"model.safetensors\"}", KINFER_ERR_CONFIG,
     "config needs \"layers\""},
    {"{\"weights\": \"model.safetensors\", \"layers\": []}", KINFER_ERR_CONFIG,
     "config needs \"layers\""},
    {"{\"weights\": \"nope.safetensors\", \"layers\": [{\"weight\": "
     "\"fc1.weight\"}]}",
     KINFER_ERR_MODEL, "nope.safetensors: cannot open"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"weight\": "
     "\"fc1.weight\", \"activaton\": \"relu\"}]}",
     KINFER_ERR_CONFIG, "layers[0]: unknown key \"activaton\""},
    {"{\"weights\": \"model.safetensors\", \"layers\": [7]}", KINFER_ERR_CONFIG,
     "layers[0] must be an object"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"bias\": "
     "\"fc1.bias\"}]}",
     KINFER_ERR_CONFIG, "layers[0].weight must be a tensor name"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"weight\": "
     "\"fc9.weight\"}]}",
     KINFER_ERR_CONFIG, "layers[0].weight: no tensor \"fc9.weight\" in"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"weight\": "
     "\"fc1.bias\"}]}",
     KINFER_ERR_CONFIG,
     "layers[0].weight: tensor \"fc1.bias\" is F32 [32]; expected F32 of "
     "rank 2"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"weight\": "
     "\"fc1.weight\", \"bias\": \"fc2.bias\"}]}",
     KINFER_ERR_CONFIG,
     "layers[0]: bias \"fc2.bias\" has 16 elements but weight \"fc1.weight\" "
     "has 32 outputs"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"weight\": "
     "\"fc1.weight\", \"bias\": 5}]}",
     KINFER_ERR_CONFIG, "layers[0].bias must be a tensor name or null"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"weight\": "
     "\"fc1.weight\"}, {\"weight\": \"fc3.weight\"}]}",
     KINFER_ERR_CONFIG,
     "layers[1]: weight \"fc3.weight\" takes 16 inputs but layers[0] gives "
     "32 outputs"},
    {"{\"weights\": \"model.safetensors\", \"layers\": [{\"weight\": "
     "\"fc1.weight\", \"activation\": \"swish\"}]}",
     KINFER_ERR_CONFIG, "layers[0].activation must be one of"},
    {"{\"weights\": \"model.safetensors\", \"softmax\": \"yes\", \"layers\": "
     "[{\"weight\": \"fc1.weight\"}]}",
     KINFER_ERR_CONFIG, "config \"softmax\" must be true or false"},
    {"{\"weights\": \"model.safetensors\", \"blas_threads\": 0, \"layers\": "
     "[{\"weight\": \"fc1.weight\"}]}",
     KINFER_ERR_CONFIG,
     "config \"blas_threads\" must be an integer in "
     "[1, 64]"},
    {"{\"weights\": \"model.safetensors\", \"scratch_bytes\": 0, \"layers\": "
     "[{\"weight\": \"fc1.weight\"}]}",
     KINFER_ERR_CONFIG, "config \"scratch_bytes\" must be an integer"},
    {"{\"weights\": \"model.safetensors\", \"input\": \"\", \"layers\": "
     "[{\"weight\": \"fc1.weight\"}]}",
     KINFER_ERR_CONFIG, "config \"input\" must be a non-empty string"},
    {"{\"weights\": \"model.safetensors\", \"weights\": \"x\", \"layers\": "
     "[{\"weight\": \"fc1.weight\"}]}",
     KINFER_ERR_CONFIG, "duplicate object key"},
};

static void test_config_errors(void **state)
{
    const struct kinfer_backend *b = kinfer_backend_mlp();
    char *dir = bk_model_dir(gen_dir, "mlp");
    char err[512];

    (void)state;
    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        const struct bad_config *c = &bad_configs[i];
        enum kinfer_err rc = bk_model_try(b, dir, c->config, err, sizeof err);

        if (rc != c->rc || strstr(err, c->error) == NULL) {
            print_error("config %s: rc %d, \"%s\"; want rc %d, \"%s\"\n",
                        c->config ? c->config : "(null)", rc, err, c->rc,
                        c->error);
            fail();
        }
    }

    /* A relative weights path needs a directory; an absolute one not. */
    assert_int_equal(bk_model_try(b, NULL,
                                  "{\"weights\": \"model.safetensors\", "
                                  "\"layers\": [{\"weight\": \"w\"}]}",
                                  err, sizeof err),
                     KINFER_ERR_CONFIG);
    assert_non_null(strstr(err, "is relative but the model has no "
                                "directory"));
    {
        char cfg[1024];

        snprintf(cfg, sizeof cfg,
                 "{\"weights\": \"%s/model.safetensors\", "
                 "\"layers\": [{\"weight\": \"fc1.weight\"}], \"future\": "
                 "{\"ignored\": true}}",
                 dir);
        assert_int_equal(bk_model_try(b, NULL, cfg, err, sizeof err),
                         KINFER_OK);
    }
    free(dir);
}

static void test_host_abi(void **state)
{
    const struct kinfer_backend *b = kinfer_backend_mlp();
    struct kinfer_host old = *bk_host();
    void *model = NULL;
    char err[256];

    (void)state;
    old.abi_version = KINFER_BACKEND_ABI_VERSION + 1;
    assert_int_equal(b->create(&old, "/", "{}", &model, err, sizeof err),
                     KINFER_ERR_ABI);
    assert_null(model);
}

/* A case whose input "x" is shape [n] filled with v. */
static json_t *filled_case(const char *dtype, size_t n, double v,
                           const char *error)
{
    json_t *data = json_array();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, json_real(v));
    return json_pack("{s:s, s:{s:[{s:s, s:s, s:[i], s:o}]}, s:s}", "name",
                     dtype, "request", "inputs", "name", "x", "datatype", dtype,
                     "shape", (int)n, "data", data, "error", error);
}

static void test_out_of_range(void **state)
{
    const struct kinfer_backend *b = kinfer_backend_mlp();
    void *m = bk_model_load(b, gen_dir, "mlp", NULL);
    json_t *cases = json_array();
    struct bk_batch bb;

    (void)state;
    /* FP64 beyond FP32 is refused before anything runs. */
    json_array_append_new(cases, filled_case("FP64", 16, 1e300,
                                             "value 1e+300 is not "
                                             "representable in FP32"));
    /* Finite FP32 input whose products overflow: no inf or NaN may reach
     * a result (JSON cannot carry them). */
    json_array_append_new(
        cases, filled_case("FP32", 16, 3e38, "output \"y\" is not finite"));
    bk_batch_init(&bb, cases, 0, json_array_size(cases));
    bk_batch_run(b, m, &bb);
    for (size_t i = 0; i < bb.n; i++)
        bk_check_case(&bb.items[i], json_array_get(cases, i));
    bk_batch_clear(&bb);
    json_decref(cases);
    b->destroy(m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_mlp_expected),
        cmocka_unit_test(test_mlp_acts_expected),
        cmocka_unit_test(test_small_scratch),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_host_abi),
        cmocka_unit_test(test_out_of_range),
    };

    if (argc != 2) {
        fprintf(stderr, "usage: %s GEN_DIR\n", argv[0]);
        return 2;
    }
    gen_dir = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
