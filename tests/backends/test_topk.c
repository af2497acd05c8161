/* Tests of the "topk" backend against the NumPy answers of
 * ops/models/gen_dense.py: every case alone, all in one batch, batch
 * invariance, exact ties (lower id first), exclusion, chunked scoring
 * under a tiny scratch budget, concurrent calls, parameter forms and bad
 * configurations.
 *
 * usage: test_topk GEN   (the gen_dense.py output directory)
 */
#include <jansson.h>
#include <math.h>
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

/* Every answered row is best first, ties by the lower id, ids unique. */
static void check_order(const struct kinfer_infer_item *item)
{
    const struct kinfer_tensor *ids, *sc;
    size_t rows, k;

    if (item->failed)
        return;
    assert_int_equal(item->n_outputs, 2);
    ids = &item->outputs[0];
    sc = &item->outputs[1];
    assert_string_equal(ids->name, "items");
    assert_string_equal(sc->name, "scores");
    assert_int_equal(ids->ndim, 2);
    rows = (size_t)ids->shape[0];
    k = (size_t)ids->shape[1];
    if (rows == 0 || k == 0)
        return; /* empty outputs may have no data at all */
    for (size_t r = 0; r < rows; r++) {
        const int64_t *id = (const int64_t *)ids->data + r * k;
        const float *s = (const float *)sc->data + r * k;

        for (size_t j = 1; j < k; j++) {
            assert_true(s[j - 1] >= s[j]);
            if (s[j - 1] == s[j])
                assert_true(id[j - 1] < id[j]);
            for (size_t i = 0; i < j; i++)
                assert_true(id[i] != id[j]);
        }
    }
}

static void check_file(const char *model, const json_t *patch)
{
    const struct kinfer_backend *b = kinfer_backend_topk();
    void *m = bk_model_load(b, gen_dir, model, patch);
    json_t *cases = bk_cases_load(gen_dir, model);
    struct bk_batch bb;

    bk_check_model(b, m, cases);
    bk_batch_init(&bb, cases, 0, json_array_size(cases));
    bk_batch_run(b, m, &bb);
    for (size_t i = 0; i < bb.n; i++)
        check_order(&bb.items[i]);
    bk_batch_clear(&bb);
    json_decref(cases);
    b->destroy(m);
}

static void test_recsys_expected(void **state)
{
    (void)state;
    check_file("recsys", NULL);
}

static void test_ties_expected(void **state)
{
    (void)state;
    check_file("recsys_ties", NULL);
}

/* 4 KiB: blocks of 16 query rows, the 1000 items in chunks of 32; 1 byte:
 * one row against one item per sgemm.  The answers must not change. */
static void test_small_scratch(void **state)
{
    json_t *patch = json_pack("{s:i}", "scratch_bytes", 4096);

    (void)state;
    check_file("recsys", patch);
    json_decref(patch);
    patch = json_pack("{s:i}", "scratch_bytes", 1);
    check_file("recsys", patch);
    check_file("recsys_ties", patch);
    json_decref(patch);
}

static void test_threads(void **state)
{
    (void)state;
    bk_check_threads_file(kinfer_backend_topk(), gen_dir, "recsys", 4);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_ptr_equal(kinfer_backend_topk(), kinfer_backend_topk());
    bk_check_descriptor(kinfer_backend_topk(), "topk");
}

/* Requests in other accepted forms must give the same answer as the
 * canonical one: k as 3.0, ids and exclusions as INT32, duplicates. */
static const char *const same_pairs[][2] = {
    {"{\"name\": \"k real\", \"request\": {\"parameters\": {\"k\": 3.0}, "
     "\"inputs\": [{\"name\": \"input\", \"datatype\": \"INT64\", "
     "\"shape\": [2], \"data\": [3, 5]}]}}",
     "{\"name\": \"k int\", \"request\": {\"parameters\": {\"k\": 3}, "
     "\"inputs\": [{\"name\": \"input\", \"datatype\": \"INT64\", "
     "\"shape\": [2], \"data\": [3, 5]}]}}"},
    {"{\"name\": \"int32\", \"request\": {\"inputs\": [{\"name\": \"input\", "
     "\"datatype\": \"INT32\", \"shape\": [3], \"data\": [0, 199, 7]}, "
     "{\"name\": \"exclude\", \"datatype\": \"INT32\", \"shape\": [3], "
     "\"data\": [999, 0, 999]}]}}",
     "{\"name\": \"int64\", \"request\": {\"inputs\": [{\"name\": \"input\", "
     "\"datatype\": \"INT64\", \"shape\": [3], \"data\": [0, 199, 7]}, "
     "{\"name\": \"exclude\", \"datatype\": \"INT64\", \"shape\": [2], "
     "\"data\": [0, 999]}]}}"},
    {"{\"name\": \"empty exclude\", \"request\": {\"inputs\": [{\"name\": "
     "\"input\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": [42]}, "
     "{\"name\": \"exclude\", \"datatype\": \"INT64\", \"shape\": [0], "
     "\"data\": []}]}}",
     "{\"name\": \"no exclude\", \"request\": {\"inputs\": [{\"name\": "
     "\"input\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": [42]}]}}"},
};

/* Refused forms, and an empty query (answered with [0, k] outputs). */
static const char *const more_cases[] = {
    "{\"name\": \"k fraction\", \"request\": {\"parameters\": {\"k\": 2.5}, "
    "\"inputs\": [{\"name\": \"input\", \"datatype\": \"INT64\", "
    "\"shape\": [1], \"data\": [3]}]}, \"error\": \"parameter \\\"k\\\" must "
    "be an integer in [1, 1000]\"}",
    "{\"name\": \"k bool\", \"request\": {\"parameters\": {\"k\": true}, "
    "\"inputs\": [{\"name\": \"input\", \"datatype\": \"INT64\", "
    "\"shape\": [1], \"data\": [3]}]}, \"error\": \"parameter \\\"k\\\" must "
    "be an integer\"}",
    "{\"name\": \"k negative real\", \"request\": {\"parameters\": {\"k\": "
    "-4.0}, \"inputs\": [{\"name\": \"input\", \"datatype\": \"INT64\", "
    "\"shape\": [1], \"data\": [3]}]}, \"error\": \"parameter \\\"k\\\"\"}",
    "{\"name\": \"exclude 2-D\", \"request\": {\"inputs\": [{\"name\": "
    "\"input\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": [3]}, "
    "{\"name\": \"exclude\", \"datatype\": \"INT64\", \"shape\": [1, 2], "
    "\"data\": [1, 2]}]}, \"error\": \"input \\\"exclude\\\": expected INT64 "
    "[m] item ids, got INT64 [1,2]\"}",
    "{\"name\": \"exclude FP32\", \"request\": {\"inputs\": [{\"name\": "
    "\"input\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": [3]}, "
    "{\"name\": \"exclude\", \"datatype\": \"FP32\", \"shape\": [1], "
    "\"data\": [1]}]}, \"error\": \"got FP32 [1]\"}",
    "{\"name\": \"exclude negative\", \"request\": {\"inputs\": [{\"name\": "
    "\"input\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": [3]}, "
    "{\"name\": \"exclude\", \"datatype\": \"INT64\", \"shape\": [1], "
    "\"data\": [-1]}]}, \"error\": \"item id -1 is not in [0, 1000)\"}",
    "{\"name\": \"ids 2-D\", \"request\": {\"inputs\": [{\"name\": "
    "\"input\", \"datatype\": \"INT64\", \"shape\": [1, 1], \"data\": [3]}]},"
    " \"error\": \"expected user ids of shape [n], got INT64 [1,1]\"}",
    "{\"name\": \"BOOL input\", \"request\": {\"inputs\": [{\"name\": "
    "\"input\", \"datatype\": \"BOOL\", \"shape\": [1], \"data\": [true]}]},"
    " \"error\": \"expected FP32 vectors or INT64 user ids, got BOOL [1]\"}",
    "{\"name\": \"no rows\", \"request\": {\"inputs\": [{\"name\": "
    "\"input\", \"datatype\": \"INT64\", \"shape\": [0], \"data\": []}]}, "
    "\"outputs\": [{\"name\": \"items\", \"datatype\": \"INT64\", \"shape\": "
    "[0, 10], \"data\": []}, {\"name\": \"scores\", \"datatype\": \"FP32\", "
    "\"shape\": [0, 10], \"data\": []}]}",
};

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);

    if (j == NULL)
        print_error("fixture: %s\n", jerr.text);
    assert_non_null(j);
    return j;
}

static void test_request_forms(void **state)
{
    const struct kinfer_backend *b = kinfer_backend_topk();
    void *m = bk_model_load(b, gen_dir, "recsys", NULL);
    json_t *cases = json_array();
    struct bk_batch bb;
    size_t np = sizeof same_pairs / sizeof same_pairs[0];
    size_t nb = sizeof more_cases / sizeof more_cases[0];

    (void)state;
    for (size_t i = 0; i < np; i++) {
        json_array_append_new(cases, parse(same_pairs[i][0]));
        json_array_append_new(cases, parse(same_pairs[i][1]));
    }
    for (size_t i = 0; i < nb; i++)
        json_array_append_new(cases, parse(more_cases[i]));

    /* All in one batch, so the failures sit between answered items. */
    bk_batch_init(&bb, cases, 0, json_array_size(cases));
    bk_batch_run(b, m, &bb);
    for (size_t i = 0; i < np; i++) {
        bk_check_same(&bb.items[2 * i], &bb.items[2 * i + 1]);
        check_order(&bb.items[2 * i]);
        assert_false(bb.items[2 * i].failed);
    }
    assert_int_equal(bb.items[0].outputs[0].shape[1], 3);
    for (size_t i = 0; i < nb; i++)
        bk_check_case(&bb.items[2 * np + i], json_array_get(cases, 2 * np + i));
    bk_batch_clear(&bb);
    json_decref(cases);
    b->destroy(m);
}

struct bad_config {
    const char *config;
    enum kinfer_err rc;
    const char *error;
};

static const struct bad_config bad_configs[] = {
    {NULL, KINFER_ERR_CONFIG, "topk: the model needs a config.json"},
    {"{}", KINFER_ERR_CONFIG, "config needs \"weights\""},
    {"{\"weights\": \"missing.safetensors\"}", KINFER_ERR_MODEL,
     "missing.safetensors: cannot open"},
    {"{\"weights\": \"embeddings.safetensors\", \"item_embeddings\": "
     "\"nope\"}",
     KINFER_ERR_CONFIG, "item_embeddings: no tensor \"nope\" in"},
    {"{\"weights\": \"embeddings.safetensors\", \"user_embeddings\": "
     "\"nope\"}",
     KINFER_ERR_CONFIG, "user_embeddings: no tensor \"nope\" in"},
    {"{\"weights\": \"embeddings.safetensors\", \"k\": 0}", KINFER_ERR_CONFIG,
     "config \"k\" must be an integer in [1, 1000]"},
    {"{\"weights\": \"embeddings.safetensors\", \"k\": 50, \"max_k\": 20}",
     KINFER_ERR_CONFIG, "config \"k\" must be an integer in [1, 20]"},
    {"{\"weights\": \"embeddings.safetensors\", \"max_k\": 1001}",
     KINFER_ERR_CONFIG, "config \"max_k\" must be an integer in [1, 1000]"},
    {"{\"weights\": \"embeddings.safetensors\", \"input\": \"q\", "
     "\"exclude_input\": \"q\"}",
     KINFER_ERR_CONFIG, "\"input\" and \"exclude_input\" must differ"},
    {"{\"weights\": \"embeddings.safetensors\", \"exclude_input\": 4}",
     KINFER_ERR_CONFIG,
     "config \"exclude_input\" must be a non-empty "
     "string"},
};

static void test_config_errors(void **state)
{
    const struct kinfer_backend *b = kinfer_backend_topk();
    char *dir = bk_model_dir(gen_dir, "recsys");
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
    /* Defaults: items "items", no user table, k 10 of max 1000. */
    assert_int_equal(bk_model_try(b, dir,
                                  "{\"weights\": \"embeddings.safetensors\"}",
                                  err, sizeof err),
                     KINFER_OK);
    free(dir);

    /* The user table must share the items' dimension.  Borrow the mlp's
     * weights: fc1.weight [32, 16] as items, fc2.weight [16, 32] as
     * users. */
    dir = bk_model_dir(gen_dir, "mlp");
    assert_int_equal(bk_model_try(b, dir,
                                  "{\"weights\": \"model.safetensors\", "
                                  "\"item_embeddings\": \"fc1.weight\", "
                                  "\"user_embeddings\": \"fc2.weight\"}",
                                  err, sizeof err),
                     KINFER_ERR_CONFIG);
    assert_non_null(strstr(err, "user_embeddings \"fc2.weight\" has dim 32 "
                                "but item_embeddings \"fc1.weight\" has dim "
                                "16"));
    assert_int_equal(bk_model_try(b, dir,
                                  "{\"weights\": \"model.safetensors\", "
                                  "\"item_embeddings\": \"fc1.bias\"}",
                                  err, sizeof err),
                     KINFER_ERR_CONFIG);
    assert_non_null(strstr(err, "tensor \"fc1.bias\" is F32 [32]; expected "
                                "F32 [rows, dim]"));
    free(dir);
}

/* Embeddings with inf would give scores JSON cannot carry: refused at
 * load.  The file is written here, in a fresh directory of the build
 * tree. */
static void test_nonfinite_embeddings(void **state)
{
    static const char header[] =
        "{\"items\":{\"dtype\":\"F32\",\"shape\":[2,2],"
        "\"data_offsets\":[0,16]}}";
    const float data[4] = {1.0f, INFINITY, 0.0f, 0.0f};
    uint64_t hlen = sizeof header - 1;
    unsigned char len8[8];
    char dir[1024], file[1100], err[512];
    FILE *f;

    (void)state;
    snprintf(dir, sizeof dir, "%s/topk-nonfinite-XXXXXX", gen_dir);
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/e.safetensors", dir);
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(hlen >> (8 * i));
    f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(len8, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, hlen, f), hlen);
    assert_int_equal(fwrite(data, sizeof data[0], 4, f), 4);
    assert_int_equal(fclose(f), 0);

    assert_int_equal(bk_model_try(kinfer_backend_topk(), dir,
                                  "{\"weights\": \"e.safetensors\"}", err,
                                  sizeof err),
                     KINFER_ERR_CONFIG);
    assert_non_null(strstr(err, "tensor \"items\" holds inf or NaN"));
    assert_int_equal(remove(file), 0);
    assert_int_equal(remove(dir), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_recsys_expected),
        cmocka_unit_test(test_ties_expected),
        cmocka_unit_test(test_small_scratch),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_request_forms),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_nonfinite_embeddings),
    };

    if (argc != 2) {
        fprintf(stderr, "usage: %s GEN_DIR\n", argv[0]);
        return 2;
    }
    gen_dir = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
