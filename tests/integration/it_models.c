/* Integration test: one kinfer-worker serving the generated model
 * repository (mlp, mlp_acts, recsys, recsys_ties and the fastText "nlp"
 * plugin model) answers every case of ops/models' expected files through
 * Kafka as NumPy / the fastText CLI did; then batched and unbatched copies
 * of "mlp" answer a burst of the same requests alike.
 */
#include "expect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_BURST 200 /* requests per model in the batching burst */

static const char *const files[] = {"mlp", "mlp_acts", "recsys", "recsys_ties",
                                    "nlp"};
#define N_FILES (sizeof files / sizeof files[0])

/* Set by main from the command line. */
static const char *gen_dir;   /* the generators' OUTDIR */
static const char *ft_plugin; /* kinfer_fasttext.so */

/* ------------------------------------------------- every expected case */

/* exp_add with this test's tolerances: expect.h's FP32 tolerance (that of
 * tests/backends) for every file but "nlp": the fastText CLI prints 6
 * significant digits, so its probabilities match within TOL_ABS alone. */
static void add_case(struct exp_run *r, const char *file, size_t i,
                     const json_t *e, const char *version)
{
    exp_add(r, file, i, e, version);
    if (strcmp(file, "nlp") == 0) {
        struct exp_case *c = &r->cases[r->n - 1];
        c->abs_tol = TOL_ABS;
        c->rel_tol = 0;
    }
}

static void test_expected_cases(void **state)
{
    struct it_ctx *ctx = *state;
    char repo[1024];
    snprintf(repo, sizeof repo, "%s/models", gen_dir);

    struct exp_run r = {.prefix = "m"};
    size_t per_file[N_FILES];
    for (size_t f = 0; f < N_FILES; f++) {
        json_t *cases = exp_load(gen_dir, files[f]);
        char *version = exp_config_version(repo, files[f]);
        size_t i;
        json_t *e;
        json_array_foreach(cases, i, e) add_case(&r, files[f], i, e, version);
        per_file[f] = json_array_size(cases);
        free(version);
        json_decref(cases);
    }
    /* A model nobody serves: an error result that names it. */
    struct exp_case *c = exp_run_add(&r);
    json_t *req = json_pack("{s:s, s:s, s:[{s:s, s:s, s:[i], s:[f,f]}]}", "id",
                            "unknown-model-1", "model_name", "no_such_model",
                            "inputs", "name", "x", "datatype", "FP32", "shape",
                            2, "data", 1.0, 2.0);
    assert_non_null(req);
    exp_case_set_request(c, req);
    json_decref(req);
    snprintf(c->label, sizeof c->label, "unknown model");
    c->want_error = exp_xstrdup("no_such_model");

    char in[256], out[256], group[256];
    exp_make_topics(ctx, in, out, group, sizeof in);
    exp_produce_run(ctx, in, &r);
    struct it_reader *rd = it_reader_new(ctx, out, exp_on_result, &r);
    IT_REQUIRE(ctx, rd != NULL, "reader of %s", out);

    const char *args[] = {
        "--group",   group, "--input-topic", in,   "--output-topic", out,
        "--threads", "2",   "--model-repo",  repo, "--plugin",       ft_plugin,
        NULL};
    int64_t start = it_now_ms();
    struct it_proc *w = it_worker_spawn(ctx, "repo", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    exp_finish_run(ctx, w, rd, &r, in, group);

    size_t errors = 0;
    for (size_t i = 0; i < r.n; i++)
        errors += r.cases[i].want_outputs == NULL;
    printf("RESULT it_models cases=%zu (mlp=%zu mlp_acts=%zu recsys=%zu "
           "recsys_ties=%zu nlp=%zu unknown=1) error_cases=%zu "
           "duplicates=%zu seconds=%.1f\n",
           r.n, per_file[0], per_file[1], per_file[2], per_file[3], per_file[4],
           errors, r.duplicates, (it_now_ms() - start) / 1000.0);
    it_reader_free(rd);
    exp_run_clear(&r);
}

/* ------------------------------------------- batched against unbatched */

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "it: copy %s -> %s: %s\n", from, to, strerror(errno));
        fail();
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(ferror(in), 0);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* repo/<name>: a copy of the generated mlp with config fields replaced by
 * those of patch (NULL: unchanged). */
static void copy_mlp(const char *repo, const char *name, json_t *patch)
{
    char src[1024], dst[1024], from[1100], to[1100];
    snprintf(src, sizeof src, "%s/models/mlp", gen_dir);
    snprintf(dst, sizeof dst, "%s/%s", repo, name);
    assert_true(mkdir(dst, 0755) == 0 || errno == EEXIST);
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    snprintf(to, sizeof to, "%s/model.safetensors", dst);
    copy_file(from, to);

    snprintf(from, sizeof from, "%s/config.json", src);
    snprintf(to, sizeof to, "%s/config.json", dst);
    json_error_t jerr;
    json_t *cfg = json_load_file(from, 0, &jerr);
    assert_non_null(cfg);
    if (patch != NULL)
        assert_int_equal(json_object_update(cfg, patch), 0);
    assert_int_equal(json_dump_file(cfg, to, JSON_INDENT(1)), 0);
    json_decref(cfg);
}

static void test_batching(void **state)
{
    struct it_ctx *ctx = *state;
    char repo[1024];
    snprintf(repo, sizeof repo, "%s/batching-repo-%ld", gen_dir,
             (long)getpid());
    assert_true(mkdir(repo, 0755) == 0 || errno == EEXIST);
    /* "mlp" keeps the generator's batching (max_batch_size 8, 1 ms);
     * "mlp_b1" is the same weights without batching, and a version of
     * its own so the result shows which copy answered. */
    copy_mlp(repo, "mlp", NULL);
    json_t *patch = json_pack("{s:i, s:i, s:i}", "max_batch_size", 1,
                              "max_queue_delay_us", 0, "version", 7);
    copy_mlp(repo, "mlp_b1", patch);
    json_decref(patch);
    char *v_batched = exp_config_version(repo, "mlp");
    char *v_single = exp_config_version(repo, "mlp_b1");

    /* Cases 0 .. N_BURST-1 go to "mlp", N_BURST .. 2*N_BURST-1 the same
     * requests to "mlp_b1", all queued before the worker starts so its
     * threads find a backlog and the batcher fills batches. */
    json_t *cases = exp_load(gen_dir, "mlp");
    size_t ncases = json_array_size(cases);
    struct exp_run r = {.prefix = "b"};
    for (int copy = 0; copy < 2; copy++) {
        for (size_t n = 0; n < N_BURST; n++) {
            const json_t *e = json_array_get(cases, n % ncases);
            json_t *req = json_deep_copy(json_object_get(e, "request"));
            char id[64];
            snprintf(id, sizeof id, "%s-%zu", copy ? "u" : "b", n);
            json_object_set_new(req, "id", json_string(id));
            json_object_set_new(req, "model_name",
                                json_string(copy ? "mlp_b1" : "mlp"));
            json_t *one = json_pack("{s:O, s:O*, s:O*, s:O*}", "request", req,
                                    "name", json_object_get(e, "name"),
                                    "outputs", json_object_get(e, "outputs"),
                                    "error", json_object_get(e, "error"));
            assert_non_null(one);
            add_case(&r, "mlp", n % ncases, one, copy ? v_single : v_batched);
            json_decref(one);
            json_decref(req);
        }
    }
    json_decref(cases);

    char in[256], out[256], group[256];
    exp_make_topics(ctx, in, out, group, sizeof in);
    exp_produce_run(ctx, in, &r);
    struct it_reader *rd = it_reader_new(ctx, out, exp_on_result, &r);
    IT_REQUIRE(ctx, rd != NULL, "reader of %s", out);

    const char *args[] = {"--group",
                          group,
                          "--input-topic",
                          in,
                          "--output-topic",
                          out,
                          "--threads",
                          "2",
                          "--model-repo",
                          repo,
                          NULL};
    int64_t start = it_now_ms();
    struct it_proc *w = it_worker_spawn(ctx, "batching", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    exp_finish_run(ctx, w, rd, &r, in, group);
    double seconds = (it_now_ms() - start) / 1000.0;

    /* Each batched answer against its unbatched twin. */
    size_t compared = 0, identical = 0;
    for (size_t n = 0; n < N_BURST; n++) {
        const struct exp_case *b = &r.cases[n];
        const struct exp_case *u = &r.cases[N_BURST + n];
        if (b->want_outputs == NULL)
            continue;
        IT_REQUIRE(ctx, b->got_outputs != NULL && u->got_outputs != NULL,
                   "no outputs kept for %s / %s", b->id, u->id);
        char why[400];
        IT_REQUIRE(ctx,
                   exp_outputs_match(b->got_outputs, u->got_outputs, TOL_ABS,
                                     TOL_REL, why, sizeof why) == 0,
                   "batched %s and unbatched %s differ: %s", b->id, u->id, why);
        compared++;
        identical += json_equal(b->got_outputs, u->got_outputs);
    }
    printf("RESULT it_models_batching requests=%zu (mlp batched=%d, "
           "mlp_b1 unbatched=%d) pairs_compared=%zu bit_identical=%zu "
           "duplicates=%zu seconds=%.1f\n",
           r.n, N_BURST, N_BURST, compared, identical, r.duplicates, seconds);
    /* The worker logs each batching model's counts when it stops: the
     * burst must have formed real batches, and mlp_b1 none at all. */
    size_t items = 0, batches = 0;
    int lines = exp_batch_counts(it_proc_log_path(w), "mlp", &items, &batches);
    IT_REQUIRE(ctx, lines == 1 && items == N_BURST && batches < items,
               "expected one 'model mlp: %d requests in B batches' line "
               "with B < %d; got %d line(s), %zu requests, %zu batches",
               N_BURST, N_BURST, lines, items, batches);
    size_t dummy_i, dummy_b;
    IT_REQUIRE(ctx,
               exp_batch_counts(it_proc_log_path(w), "mlp_b1", &dummy_i,
                                &dummy_b) == 0,
               "mlp_b1 (max_batch_size 1) must not go through a batcher");
    printf("RESULT it_models_batch_counts mlp_requests=%zu mlp_batches=%zu "
           "mean_batch=%.2f\n",
           items, batches, (double)items / (double)batches);
    it_reader_free(rd);
    exp_run_clear(&r);
    free(v_batched);
    free(v_single);
}

/* The harness's part of the command line, for a context per test. */
static int h_argc;
static char **h_argv;

/* A context of its own per test, named by the prestate: the harness
 * treats any worker that exited unasked as a failure, so one test's
 * crashed worker must not fail the next; distinct names keep their topics
 * and logs apart. */
static int setup_ctx(void **state)
{
    *state = it_ctx_new(*state, h_argc, h_argv);
    return *state != NULL ? 0 : -1;
}

static int teardown_ctx(void **state)
{
    it_ctx_free(*state);
    return 0;
}

/* Take our own options out of argv and hand the rest to the harness:
 *   --gen DIR         the generators' OUTDIR (models/, expected/)
 *   --fasttext PATH   the kinfer_fasttext plugin */
int main(int argc, char **argv)
{
    h_argv = calloc((size_t)argc + 1, sizeof *h_argv);
    if (h_argv == NULL)
        return 1;
    h_argv[h_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gen") == 0 && i + 1 < argc)
            gen_dir = argv[++i];
        else if (strcmp(argv[i], "--fasttext") == 0 && i + 1 < argc)
            ft_plugin = argv[++i];
        else
            h_argv[h_argc++] = argv[i];
    }
    if (gen_dir == NULL || ft_plugin == NULL) {
        fprintf(stderr,
                "usage: %s --gen DIR --fasttext PATH "
                "<harness options>\n",
                argv[0]);
        free(h_argv);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_expected_cases, setup_ctx,
                                                 teardown_ctx, "models"),
        cmocka_unit_test_prestate_setup_teardown(
            test_batching, setup_ctx, teardown_ctx, "models-batching"),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(h_argv);
    return failed;
}
