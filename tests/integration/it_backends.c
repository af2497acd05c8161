/* Integration test of the plugin backends (xgboost, torchscript, onnx):
 * one kinfer-worker loads the plugin(s) and serves a generator's model
 * repository (ops/models/gen_<backend>.py), and every case of the
 * generator's expected files, sent several times over and queued before
 * the worker starts, must be answered as the generator's independent
 * reference computed it.  The worker log must show each model's signature
 * (the backend's describe()) and, for each model with max_batch_size > 1,
 * batches of more than one request.  A model whose config lacks its
 * "model" file must stop the worker at start-up with exit status 2.
 *
 * usage: it_backends --gen DIR --plugin PATH [--plugin PATH...]
 *                    --models NAME[,NAME...] [--name TEST]
 *                    <harness options>
 */
#include "expect.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define COPIES 4 /* each case is sent this many times */
#define MAX_PLUGINS 4
#define MAX_MODELS 16

static const char *gen_dir;
static const char *test_name = "backends"; /* topics and log files */
static const char *plugins[MAX_PLUGINS];
static size_t n_plugins;
static char *models[MAX_MODELS];
static size_t n_models;

/* Does the log hold a line with "model <name> version <v>: " followed by
 * a signature (not "any inputs")?  Copies that line into sig. */
static int log_signature(const char *log, const char *name, const char *version,
                         char *sig, size_t size)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return 0;
    char needle[256], line[4096];
    snprintf(needle, sizeof needle, "model %s version %s: ", name, version);
    int found = 0;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        const char *at = strstr(line, needle);
        if (at == NULL || strstr(at, " -> ") == NULL)
            continue;
        line[strcspn(line, "\n")] = '\0';
        snprintf(sig, size, "%s", at);
        found = 1;
    }
    fclose(f);
    return found;
}

/* max_batch_size of repo/name/config.json (1 when absent). */
static long config_batch(const char *repo, const char *name)
{
    char path[2300];
    snprintf(path, sizeof path, "%s/%s/config.json", repo, name);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    assert_non_null(cfg);
    const json_t *b = json_object_get(cfg, "max_batch_size");
    long v = json_is_integer(b) ? (long)json_integer_value(b) : 1;
    json_decref(cfg);
    return v;
}

static void test_backends(void **state)
{
    struct it_ctx *ctx = *state;
    char repo[1024];
    snprintf(repo, sizeof repo, "%s/models", gen_dir);

    struct exp_run r = {.prefix = "k"};
    size_t per_model[MAX_MODELS], errors = 0;
    char *versions[MAX_MODELS];
    for (size_t f = 0; f < n_models; f++) {
        json_t *cases = exp_load(gen_dir, models[f]);
        versions[f] = exp_config_version(repo, models[f]);
        for (int copy = 0; copy < COPIES; copy++) {
            size_t i;
            json_t *e;
            json_array_foreach(cases, i, e)
            {
                exp_add(&r, models[f], i, e, versions[f]);
                errors += json_object_get(e, "error") != NULL;
            }
        }
        per_model[f] = json_array_size(cases);
        json_decref(cases);
    }

    char in[256], out[256], group[256];
    exp_make_topics(ctx, in, out, group, sizeof in);
    exp_produce_run(ctx, in, &r);
    struct it_reader *rd = it_reader_new(ctx, out, exp_on_result, &r);
    IT_REQUIRE(ctx, rd != NULL, "reader of %s", out);

    const char *args[8 + 2 * MAX_PLUGINS + 4];
    size_t na = 0;
    const char *fixed[] = {"--group",        group, "--input-topic", in,
                           "--output-topic", out,   "--threads",     "2",
                           "--model-repo",   repo};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        args[na++] = fixed[i];
    for (size_t i = 0; i < n_plugins; i++) {
        args[na++] = "--plugin";
        args[na++] = plugins[i];
    }
    args[na] = NULL;
    int64_t start = it_now_ms();
    struct it_proc *w = it_worker_spawn(ctx, "backends", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    exp_finish_run(ctx, w, rd, &r, in, group);
    double seconds = (it_now_ms() - start) / 1000.0;

    for (size_t f = 0; f < n_models; f++) {
        char sig[1024];
        IT_REQUIRE(ctx,
                   log_signature(it_proc_log_path(w), models[f], versions[f],
                                 sig, sizeof sig),
                   "worker log %s: no signature line 'model %s version %s: "
                   "... -> ...'",
                   it_proc_log_path(w), models[f], versions[f]);
        printf("SIGNATURE %s\n", sig);
        size_t items = 0, batches = 0;
        int lines =
            exp_batch_counts(it_proc_log_path(w), models[f], &items, &batches);
        if (config_batch(repo, models[f]) > 1) {
            /* Every copy of every case reached the batcher, and the
             * backlog made batches of several requests. */
            IT_REQUIRE(ctx,
                       lines == 1 && items == COPIES * per_model[f] &&
                           batches < items,
                       "model %s: expected one 'N requests in B batches' "
                       "line with N = %zu and B < N; got %d line(s), %zu "
                       "requests, %zu batches",
                       models[f], COPIES * per_model[f], lines, items, batches);
            printf("RESULT it_backends_batches model=%s requests=%zu "
                   "batches=%zu mean_batch=%.2f\n",
                   models[f], items, batches, (double)items / (double)batches);
        } else {
            IT_REQUIRE(ctx, lines == 0,
                       "model %s (max_batch_size 1) went through a batcher",
                       models[f]);
        }
    }
    printf("RESULT it_backends results=%zu (", r.n);
    for (size_t f = 0; f < n_models; f++)
        printf("%s%s=%zux%d", f ? " " : "", models[f], per_model[f], COPIES);
    printf(") error_cases=%zu duplicates=%zu seconds=%.1f\n", errors,
           r.duplicates, seconds);
    for (size_t f = 0; f < n_models; f++)
        free(versions[f]);
    it_reader_free(rd);
    exp_run_clear(&r);
}

/* Does the file at path contain text? */
static int log_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

/* A model whose config.json names the backend (--name) but no model file:
 * the worker must refuse to start, exit 2, and say which field is wrong
 * (every plugin reports it as "model: expected ..."). */
static void test_bad_config(void **state)
{
    struct it_ctx *ctx = *state;
    char repo[1024], dir[1100], path[1200];
    snprintf(repo, sizeof repo, "%s/bad-config-repo", gen_dir);
    snprintf(dir, sizeof dir, "%s/broken", repo);
    mkdir(repo, 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"backend\": \"%s\", \"max_batch_size\": 4}\n", test_name);
    assert_int_equal(fclose(f), 0);

    const char *args[8 + 2 * MAX_PLUGINS];
    size_t na = 0;
    args[na++] = "--model-repo";
    args[na++] = repo;
    for (size_t i = 0; i < n_plugins; i++) {
        args[na++] = "--plugin";
        args[na++] = plugins[i];
    }
    args[na] = NULL;
    struct it_proc *w = it_worker_spawn(ctx, "bad-config", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    int status = 0;
    int64_t ms = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(w, 60000, &status, &ms) == 0,
               "worker with a broken config still running after 60 s");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 2,
               "worker with a broken config ended with %s, wanted exit 2",
               it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx,
               log_has(it_proc_log_path(w), "broken") &&
                   log_has(it_proc_log_path(w), "model: expected"),
               "%s: no message naming model 'broken' and its \"model\" "
               "field",
               it_proc_log_path(w));
    printf("RESULT it_backends_bad_config backend=%s exit=2 ms=%lld\n",
           test_name, (long long)ms);
}

/* Take our own options out of argv and hand the rest to the harness. */
int main(int argc, char **argv)
{
    char **h_argv = calloc((size_t)argc + 1, sizeof *h_argv);
    int h_argc = 0, rc = 1;
    char *list = NULL;
    if (h_argv == NULL)
        return 1;
    h_argv[h_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gen") == 0 && i + 1 < argc)
            gen_dir = argv[++i];
        else if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc &&
                 n_plugins < MAX_PLUGINS)
            plugins[n_plugins++] = argv[++i];
        else if (strcmp(argv[i], "--models") == 0 && i + 1 < argc)
            list = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            test_name = argv[++i];
        else
            h_argv[h_argc++] = argv[i];
    }
    for (char *p = list; p != NULL && *p != '\0' && n_models < MAX_MODELS;) {
        size_t len = strcspn(p, ",");
        models[n_models++] = strndup(p, len);
        p += len + (p[len] == ',');
    }
    if (gen_dir == NULL || n_plugins == 0 || n_models == 0) {
        fprintf(stderr,
                "usage: %s --gen DIR --plugin PATH... --models A,B,... "
                "<harness options>\n",
                argv[0]);
        goto out;
    }
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backends),
        cmocka_unit_test(test_bad_config),
    };
    rc = it_main(test_name, h_argc, h_argv, tests, 2);
out:
    for (size_t i = 0; i < n_models; i++)
        free(models[i]);
    free(h_argv);
    return rc;
}
