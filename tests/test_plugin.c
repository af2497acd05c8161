/* Tests of lib/plugin.c and the fasttext plugin: broken plugins are refused
 * with exact messages; the fasttext plugin, loaded like the worker loads
 * it, answers the requests of expected/nlp.json (made by
 * ops/models/gen_fasttext.sh from the fasttext CLI) with the CLI's labels
 * and probabilities, also from several threads at once, and reports bad
 * requests and bad configs per item / per model.
 *
 * usage: test_plugin FASTTEXT.so BAD_ABI.so NULL_ENTRY.so NO_ENTRY.so GENDIR
 * (GENDIR is gen_fasttext.sh's OUTDIR). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "kinfer/host.h"
#include "kinfer/model.h"
#include "kinfer/plugin.h"
#include "kinfer/repo.h"
#include "kinfer/request.h"

/* The CLI prints probabilities with 6 significant digits and none exceeds
 * 1.00001, so a printed value is within 5e-6 of the float it came from. */
#define PROB_TOLERANCE 1e-5

#define N_THREADS 4
#define ROUNDS_PER_THREAD 25

static const char *fasttext_so, *bad_abi_so, *null_entry_so, *no_entry_so;
static const char *gen_dir;

/* Shared by the tests that need the loaded model (group setup). */
static struct kinfer_plugins *plugins;
static struct kinfer_models *models;
static json_t *expected; /* expected/nlp.json */
/* Its requests as JSON text, serialised once: the threads of
 * test_concurrent_infer only read. */
static char **request_texts;

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* --- refusals ----------------------------------------------------- */

static void expect_refusal(const char *path, enum kinfer_err code,
                           const char *reason)
{
    struct kinfer_plugins *ps = NULL;
    const struct kinfer_backend *b = NULL;
    char err[1024], want[1024];
    assert_int_equal(kinfer_plugins_new(&ps), KINFER_OK);
    assert_int_equal(kinfer_plugins_load(ps, path, &b, err, sizeof err), code);
    assert_null(b);
    assert_int_equal(kinfer_plugins_count(ps), 0);
    snprintf(want, sizeof want, "plugin %s: %s", path, reason);
    assert_string_equal(err, want);
    kinfer_plugins_free(ps);
}

static void test_refuse_bad_abi(void **state)
{
    (void)state;
    expect_refusal(bad_abi_so, KINFER_ERR_ABI,
                   "built for backend ABI 999, kinfer speaks 2");
}

static void test_refuse_no_entry(void **state)
{
    (void)state;
    expect_refusal(no_entry_so, KINFER_ERR_INVALID,
                   "no kinfer_backend_entry symbol (not a kinfer backend "
                   "plugin?)");
}

static void test_refuse_null_entry(void **state)
{
    (void)state;
    expect_refusal(null_entry_so, KINFER_ERR_INVALID,
                   "kinfer_backend_entry returned NULL (the plugin refused "
                   "kinfer's host, backend ABI 2)");
}

static void test_refuse_missing_file(void **state)
{
    (void)state;
    char *path = join(gen_dir, "no-such-plugin.so");
    expect_refusal(path, KINFER_ERR_IO,
                   "cannot open shared object file: No such file or "
                   "directory");
    free(path);
}

static void test_refuse_not_elf(void **state)
{
    (void)state;
    char *path = join(gen_dir, "models/nlp/config.json");
    expect_refusal(path, KINFER_ERR_IO, "invalid ELF header");
    free(path);
}

/* --- the fasttext model ------------------------------------------- */

static int setup_fasttext(void **state)
{
    (void)state;
    const struct kinfer_backend *b = NULL;
    char err[1024];
    if (kinfer_plugins_new(&plugins) != KINFER_OK ||
        kinfer_models_new(&models) != KINFER_OK)
        return -1;
    if (kinfer_plugins_load(plugins, fasttext_so, &b, err, sizeof err) !=
            KINFER_OK ||
        kinfer_models_add_backend(models, b, err, sizeof err) != KINFER_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    char *repo = join(gen_dir, "models");
    enum kinfer_err rc = kinfer_repo_load(models, repo, err, sizeof err);
    free(repo);
    if (rc != KINFER_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    char *path = join(gen_dir, "expected/nlp.json");
    json_error_t jerr;
    expected = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (expected == NULL)
        fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
    free(path);
    if (expected == NULL || json_array_size(expected) == 0)
        return -1;
    size_t n = json_array_size(expected);
    request_texts = calloc(n, sizeof *request_texts);
    for (size_t i = 0; request_texts != NULL && i < n; i++) {
        json_t *r = json_object_get(json_array_get(expected, i), "request");
        request_texts[i] = json_dumps(r, JSON_COMPACT);
        if (request_texts[i] == NULL)
            return -1;
    }
    return request_texts != NULL ? 0 : -1;
}

static int teardown_fasttext(void **state)
{
    (void)state;
    for (size_t i = 0; request_texts != NULL && i < json_array_size(expected);
         i++)
        free(request_texts[i]);
    free(request_texts);
    json_decref(expected);
    /* Models first: their code lives in the plugin. */
    kinfer_models_free(models);
    kinfer_plugins_free(plugins);
    return 0;
}

static const struct kinfer_model *nlp_model(void)
{
    const struct kinfer_model *m = kinfer_models_find(models, "nlp");
    assert_non_null(m);
    return m;
}

static void test_repo_settings(void **state)
{
    (void)state;
    const struct kinfer_model *m = nlp_model();
    const struct kinfer_model_settings *s = kinfer_model_settings(m);
    assert_string_equal(kinfer_model_version(m), "1");
    assert_int_equal(s->max_batch_size, 16);
    assert_int_equal(s->max_queue_delay_us, 1000);
}

/* Decode a request from JSON text; fails the test if the codec refuses. */
static void decode(const char *text, struct kinfer_request *req)
{
    char err[512];
    memset(req, 0, sizeof *req);
    if (kinfer_request_decode(text, strlen(text), NULL, req, err, sizeof err) !=
        KINFER_OK)
        fail_msg("codec refused %s: %s", text, err);
}

/* Decode every expected request into reqs (n of them); 0 on success, else
 * a reason in why.  Not cmocka asserts: this also runs on other threads. */
static int decode_expected(struct kinfer_request *reqs, size_t n, char *why,
                           size_t whysize)
{
    for (size_t i = 0; i < n; i++) {
        const char *text = request_texts[i];
        if (kinfer_request_decode(text, strlen(text), NULL, &reqs[i], why,
                                  whysize) != KINFER_OK)
            return -1;
    }
    return 0;
}

/* 0 when the outputs of it match want (an OIP "outputs" array); else a
 * reason in why.  Not cmocka asserts: this also runs on other threads. */
static int outputs_match(const struct kinfer_infer_item *it, const json_t *want,
                         char *why, size_t whysize)
{
    if (it->failed) {
        snprintf(why, whysize, "item failed: %s", it->error);
        return -1;
    }
    if (it->n_outputs != json_array_size(want)) {
        snprintf(why, whysize, "%zu outputs, want %zu", it->n_outputs,
                 json_array_size(want));
        return -1;
    }
    for (size_t o = 0; o < it->n_outputs; o++) {
        const struct kinfer_tensor *t = &it->outputs[o];
        const json_t *w = json_array_get(want, o);
        const char *name = json_string_value(json_object_get(w, "name"));
        const char *dtype = json_string_value(json_object_get(w, "datatype"));
        const json_t *shape = json_object_get(w, "shape");
        const json_t *data = json_object_get(w, "data");
        if (strcmp(t->name, name) != 0 ||
            strcmp(kinfer_dtype_name(t->dtype), dtype) != 0 ||
            (size_t)t->ndim != json_array_size(shape) ||
            t->count != json_array_size(data)) {
            snprintf(why, whysize, "output %zu: got %s %s ndim %d count %zu", o,
                     t->name, kinfer_dtype_name(t->dtype), t->ndim, t->count);
            return -1;
        }
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] !=
                json_integer_value(json_array_get(shape, (size_t)d))) {
                snprintf(why, whysize, "%s: shape[%d] = %lld", name, d,
                         (long long)t->shape[d]);
                return -1;
            }
        for (size_t i = 0; i < t->count; i++) {
            const json_t *e = json_array_get(data, i);
            if (t->dtype == KINFER_DTYPE_BYTES) {
                const struct kinfer_bytes *b =
                    (const struct kinfer_bytes *)t->data + i;
                const char *s = json_string_value(e);
                size_t len = json_string_length(e);
                if (b->len != len ||
                    (len > 0 && memcmp(b->data, s, len) != 0)) {
                    snprintf(why, whysize, "%s[%zu] = \"%.*s\", want \"%s\"",
                             name, i, (int)b->len, b->data ? b->data : "", s);
                    return -1;
                }
            } else {
                double got = ((const float *)t->data)[i];
                double want_p = json_number_value(e);
                if (!(fabs(got - want_p) <= PROB_TOLERANCE)) {
                    snprintf(why, whysize, "%s[%zu] = %.7g, want %.7g", name, i,
                             got, want_p);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* Run every expected request on m as one batch; 0 when all answers
 * match. */
static int run_expected_batch(const struct kinfer_model *m, char *why,
                              size_t whysize)
{
    size_t n = json_array_size(expected);
    struct kinfer_request *reqs = calloc(n, sizeof *reqs);
    struct kinfer_infer_item *items = calloc(n, sizeof *items);
    if (reqs == NULL || items == NULL)
        abort();
    int rc = decode_expected(reqs, n, why, whysize);
    for (size_t i = 0; i < n; i++)
        items[i].request = &reqs[i];
    if (rc == 0)
        kinfer_model_infer(m, items, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const json_t *want =
            json_object_get(json_array_get(expected, i), "outputs");
        char detail[512];
        if (outputs_match(&items[i], want, detail, sizeof detail) != 0) {
            snprintf(why, whysize, "request %s: %s", reqs[i].id, detail);
            rc = -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        kinfer_infer_item_clear(&items[i]);
        kinfer_request_clear(&reqs[i]);
    }
    free(items);
    free(reqs);
    return rc;
}

static void test_expected_outputs(void **state)
{
    (void)state;
    char why[1024];
    /* At least the four requests gen_fasttext.sh writes. */
    assert_true(json_array_size(expected) >= 4);
    if (run_expected_batch(nlp_model(), why, sizeof why) != 0)
        fail_msg("%s", why);
}

struct thread_result {
    const struct kinfer_model *model;
    int failed;
    char why[1024];
};

static void *thread_main(void *arg)
{
    struct thread_result *r = arg;
    for (int i = 0; i < ROUNDS_PER_THREAD && !r->failed; i++)
        r->failed = run_expected_batch(r->model, r->why, sizeof r->why) != 0;
    return NULL;
}

/* The plugin takes no lock (see fasttext_plugin.cc): concurrent batches on
 * one model must all give the CLI's answers. */
static void test_concurrent_infer(void **state)
{
    (void)state;
    pthread_t threads[N_THREADS];
    struct thread_result results[N_THREADS];
    memset(results, 0, sizeof results);
    for (int i = 0; i < N_THREADS; i++)
        results[i].model = nlp_model();
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(
            pthread_create(&threads[i], NULL, thread_main, &results[i]), 0);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < N_THREADS; i++)
        if (results[i].failed)
            fail_msg("thread %d: %s", i, results[i].why);
}

/* --- per-item errors ---------------------------------------------- */

static const struct {
    const char *request;
    const char *error; /* NULL: must succeed */
} item_cases[] = {
    {"{\"inputs\":[{\"name\":\"text\",\"datatype\":\"BYTES\",\"shape\":[1],"
     "\"data\":[\"snow and frost\"]}]}",
     NULL},
    {"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],"
     "\"data\":[1.5]}]}",
     "input 'x': expected datatype BYTES (UTF-8 texts)"},
    {"{\"inputs\":[{\"name\":\"text\",\"datatype\":\"BYTES\",\"shape\":[2,2],"
     "\"data\":[\"a\",\"b\",\"c\",\"d\"]}]}",
     "input 'text': expected shape [n] or [n, 1]"},
    {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"BYTES\",\"shape\":[1],"
     "\"data\":[\"a\"]},{\"name\":\"b\",\"datatype\":\"BYTES\",\"shape\":[1],"
     "\"data\":[\"b\"]}]}",
     "expected one BYTES input of shape [n] or [n, 1], got 2 inputs"},
    {"{\"parameters\":{\"k\":0},\"inputs\":[{\"name\":\"text\","
     "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"rain\"]}]}",
     "parameter k: expected an integer from 1 to 3 (the model's labels)"},
    {"{\"parameters\":{\"k\":4},\"inputs\":[{\"name\":\"text\","
     "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"rain\"]}]}",
     "parameter k: expected an integer from 1 to 3 (the model's labels)"},
    {"{\"parameters\":{\"k\":\"2\"},\"inputs\":[{\"name\":\"text\","
     "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"rain\"]}]}",
     "parameter k: expected an integer from 1 to 3 (the model's labels)"},
    {"{\"parameters\":{\"threshold\":1.5},\"inputs\":[{\"name\":\"text\","
     "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"rain\"]}]}",
     "parameter threshold: expected a number from 0 to 1"},
    /* A text with newlines is one document; threshold 1 leaves only
     * padding, shape [1, 2]. */
    {"{\"parameters\":{\"k\":2,\"threshold\":1},\"inputs\":[{\"name\":"
     "\"text\",\"datatype\":\"BYTES\",\"shape\":[1,1],"
     "\"data\":[\"stocks\\nand\\nbonds\"]}]}",
     NULL},
};

#define N_ITEM_CASES (sizeof item_cases / sizeof item_cases[0])

static void test_item_errors(void **state)
{
    (void)state;
    struct kinfer_request reqs[N_ITEM_CASES];
    struct kinfer_infer_item items[N_ITEM_CASES];
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < N_ITEM_CASES; i++) {
        decode(item_cases[i].request, &reqs[i]);
        items[i].request = &reqs[i];
    }
    /* One batch: the bad items must not spoil the good ones. */
    kinfer_model_infer(nlp_model(), items, N_ITEM_CASES);
    for (size_t i = 0; i < N_ITEM_CASES; i++) {
        if (item_cases[i].error == NULL) {
            if (items[i].failed)
                fail_msg("case %zu failed: %s", i, items[i].error);
            assert_int_equal(items[i].n_outputs, 2);
        } else {
            assert_true(items[i].failed);
            assert_string_equal(items[i].error, item_cases[i].error);
        }
    }

    /* Case 0: k = 1 from the config, a sure "weather". */
    const struct kinfer_tensor *labels = &items[0].outputs[0];
    assert_int_equal(labels->ndim, 2);
    assert_int_equal(labels->shape[0], 1);
    assert_int_equal(labels->shape[1], 1);
    assert_string_equal(((struct kinfer_bytes *)labels->data)[0].data,
                        "weather");
    assert_true(((float *)items[0].outputs[1].data)[0] > 0.5f);

    /* The last case: nothing reaches threshold 1, so two padded slots. */
    size_t last = N_ITEM_CASES - 1;
    labels = &items[last].outputs[0];
    const struct kinfer_tensor *probs = &items[last].outputs[1];
    assert_int_equal(labels->shape[0], 1);
    assert_int_equal(labels->shape[1], 2);
    for (size_t j = 0; j < 2; j++) {
        assert_int_equal(((struct kinfer_bytes *)labels->data)[j].len, 0);
        assert_true(((float *)probs->data)[j] == 0.0f);
    }

    for (size_t i = 0; i < N_ITEM_CASES; i++) {
        kinfer_infer_item_clear(&items[i]);
        kinfer_request_clear(&reqs[i]);
    }
}

/* A multi-line text is classified as a whole: "rain" alone on the second
 * line must still count, like "stocks rain rain rain" on one line. */
static void test_newlines_are_spaces(void **state)
{
    (void)state;
    struct kinfer_request reqs[2];
    struct kinfer_infer_item items[2];
    memset(items, 0, sizeof items);
    decode("{\"parameters\":{\"k\":3},\"inputs\":[{\"name\":\"t\","
           "\"datatype\":\"BYTES\",\"shape\":[1],"
           "\"data\":[\"stocks\\nrain rain\\nrain\"]}]}",
           &reqs[0]);
    decode("{\"parameters\":{\"k\":3},\"inputs\":[{\"name\":\"t\","
           "\"datatype\":\"BYTES\",\"shape\":[1],"
           "\"data\":[\"stocks rain rain rain\"]}]}",
           &reqs[1]);
    items[0].request = &reqs[0];
    items[1].request = &reqs[1];
    kinfer_model_infer(nlp_model(), items, 2);
    assert_false(items[0].failed);
    assert_false(items[1].failed);
    const struct kinfer_bytes *l0 = items[0].outputs[0].data;
    const struct kinfer_bytes *l1 = items[1].outputs[0].data;
    const float *p0 = items[0].outputs[1].data;
    const float *p1 = items[1].outputs[1].data;
    for (size_t j = 0; j < 3; j++) {
        assert_string_equal(l0[j].data, l1[j].data);
        assert_true(p0[j] == p1[j]);
    }
    assert_string_equal(l0[0].data, "weather");
    for (size_t i = 0; i < 2; i++) {
        kinfer_infer_item_clear(&items[i]);
        kinfer_request_clear(&reqs[i]);
    }
}

/* --- model creation errors ---------------------------------------- */

/* reason with every "@DIR@" replaced by dir. */
static void expand_dir(char *out, size_t size, const char *reason,
                       const char *dir)
{
    size_t used = 0;
    out[0] = '\0';
    for (const char *p = reason; *p != '\0' && used + 1 < size;) {
        const char *piece = p;
        size_t len = 1;
        if (strncmp(p, "@DIR@", 5) == 0) {
            piece = dir;
            len = strlen(dir);
            p += 5;
        } else {
            p++;
        }
        if (len > size - used - 1)
            len = size - used - 1;
        memcpy(out + used, piece, len);
        used += len;
        out[used] = '\0';
    }
}

static void expect_create_error(const char *config, const char *reason)
{
    char *dir = join(gen_dir, "models/nlp");
    char err[1024], expanded[1024], want[1200];
    assert_int_equal(kinfer_models_load(models, "bad", "fasttext", NULL, dir,
                                        config, err, sizeof err),
                     KINFER_ERR_MODEL);
    assert_null(kinfer_models_find(models, "bad"));
    expand_dir(expanded, sizeof expanded, reason, dir);
    snprintf(want, sizeof want, "model 'bad' (backend fasttext): %s", expanded);
    assert_string_equal(err, want);
    free(dir);
}

static void test_create_errors(void **state)
{
    (void)state;
    expect_create_error("{\"backend\": \"fasttext\"}",
                        "model: expected the model file's name (relative "
                        "to the model directory)");
    expect_create_error("{\"model\": \"missing.bin\"}",
                        "model: @DIR@/missing.bin cannot be opened for "
                        "loading!");
    expect_create_error("{\"model\": \"config.json\"}",
                        "model: @DIR@/config.json has wrong file format!");
    expect_create_error("{\"model\": \"model.bin\", \"k\": 4}",
                        "k: expected an integer from 1 to 3 (the model's "
                        "labels)");
    expect_create_error("{\"model\": \"model.bin\", \"k\": 0}",
                        "k: expected an integer from 1 to 3 (the model's "
                        "labels)");
    expect_create_error("{\"model\": \"model.bin\", \"k\": \"2\"}",
                        "k: expected an integer from 1 to 3 (the model's "
                        "labels)");
    expect_create_error("{\"model\": \"model.bin\", \"threshold\": 2}",
                        "threshold: expected a number from 0 to 1");
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr,
                "usage: %s FASTTEXT.so BAD_ABI.so NULL_ENTRY.so "
                "NO_ENTRY.so GENDIR\n",
                argv[0]);
        return 2;
    }
    fasttext_so = argv[1];
    bad_abi_so = argv[2];
    null_entry_so = argv[3];
    no_entry_so = argv[4];
    gen_dir = argv[5];

    const struct CMUnitTest refusals[] = {
        cmocka_unit_test(test_refuse_bad_abi),
        cmocka_unit_test(test_refuse_no_entry),
        cmocka_unit_test(test_refuse_null_entry),
        cmocka_unit_test(test_refuse_missing_file),
        cmocka_unit_test(test_refuse_not_elf),
    };
    const struct CMUnitTest fasttext[] = {
        cmocka_unit_test(test_repo_settings),
        cmocka_unit_test(test_expected_outputs),
        cmocka_unit_test(test_concurrent_infer),
        cmocka_unit_test(test_item_errors),
        cmocka_unit_test(test_newlines_are_spaces),
        cmocka_unit_test(test_create_errors),
    };
    int failed = cmocka_run_group_tests(refusals, NULL, NULL);
    failed +=
        cmocka_run_group_tests(fasttext, setup_fasttext, teardown_fasttext);
    return failed;
}
