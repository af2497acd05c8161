/* Unit tests of lib/repo.c: every broken repository under
 * tests/data/repo/invalid (argv[1] is tests/data/repo) is refused with the
 * exact message of its `error` file, the valid one loads with the settings
 * its config.json gives, and the size cap and I/O errors are reported. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/model.h"
#include "kinfer/repo.h"

static const char *data_root; /* tests/data/repo */

/* --- the "probe" backend: records what the repo hands to backends ---- */

#define PROBE_MAX 8

static struct {
    size_t n;
    char *dirs[PROBE_MAX];
    char *configs[PROBE_MAX];
} seen;

static void seen_reset(void)
{
    for (size_t i = 0; i < seen.n; i++) {
        free(seen.dirs[i]);
        free(seen.configs[i]);
    }
    memset(&seen, 0, sizeof seen);
}

static enum kinfer_err probe_create(const struct kinfer_host *h,
                                    const char *dir, const char *config,
                                    void **model, char *err, size_t errsize)
{
    (void)h;
    if (config != NULL && strstr(config, "\"probe_refuse\"") != NULL) {
        snprintf(err, errsize, "refused by the probe backend");
        return KINFER_ERR_MODEL;
    }
    if (seen.n < PROBE_MAX) {
        seen.dirs[seen.n] = dir ? strdup(dir) : NULL;
        seen.configs[seen.n] = config ? strdup(config) : NULL;
        seen.n++;
    }
    /* A real allocation, so a model the registry forgets shows as a
     * leak under ASan. */
    *model = malloc(16);
    return *model ? KINFER_OK : KINFER_ERR_NOMEM;
}

static enum kinfer_err probe_infer(void *model, struct kinfer_infer_item *it,
                                   size_t n)
{
    (void)model;
    (void)it;
    (void)n;
    return KINFER_ERR_MODEL;
}

static void probe_destroy(void *model)
{
    free(model);
}

static const struct kinfer_backend probe = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = "probe",
    .create = probe_create,
    .infer = probe_infer,
    .destroy = probe_destroy,
};

static struct kinfer_models *models_with_probe(void)
{
    struct kinfer_models *ms = NULL;
    char err[256];
    assert_int_equal(kinfer_models_new(&ms), KINFER_OK);
    assert_int_equal(kinfer_models_add_backend(ms, &probe, err, sizeof err),
                     KINFER_OK);
    seen_reset();
    return ms;
}

/* --- helpers ---------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --- every broken repository is refused with its message ------------- */

#define MAX_CASES 256

/* The message rc/got must match expected (an `error` file's text);
 * prefix is the case directory, which messages start with. */
static void check_message(const char *name, const char *prefix, const char *got,
                          char *expected)
{
    size_t len = strlen(expected);
    while (len > 0 && expected[len - 1] == '\n')
        expected[--len] = '\0';

    size_t plen = strlen(prefix);
    if (strncmp(got, prefix, plen) != 0 || got[plen] != '/')
        fail_msg("case %s: message does not start with the repo path: %s", name,
                 got);
    got += plen + 1;

    int as_prefix = len >= 3 && strcmp(expected + len - 3, "...") == 0;
    if (as_prefix ? strncmp(got, expected, len - 3) != 0
                  : strcmp(got, expected) != 0)
        fail_msg("case %s:\n  expected: %s\n  got:      %s", name, expected,
                 got);
}

static void test_invalid_cases(void **state)
{
    (void)state;
    char *root = join(data_root, "invalid");
    DIR *d = opendir(root);
    if (d == NULL)
        fail_msg("%s: %s", root, strerror(errno));
    char *names[MAX_CASES];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < MAX_CASES)
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], name_cmp);
    /* Guards against a data directory that went missing or empty. */
    assert_true(n >= 20);

    for (size_t i = 0; i < n; i++) {
        char *casedir = join(root, names[i]);
        char *repo = join(casedir, "models");
        char *errfile = join(casedir, "error");
        char *expected = slurp(errfile);

        struct kinfer_models *ms = models_with_probe();
        char err[1024] = "";
        enum kinfer_err rc = kinfer_repo_load(ms, repo, err, sizeof err);
        if (rc == KINFER_OK)
            fail_msg("case %s: loaded, expected: %s", names[i], expected);
        check_message(names[i], casedir, err, expected);
        /* Config errors are found before any backend runs. */
        if (rc == KINFER_ERR_CONFIG) {
            assert_string_equal(kinfer_models_names(ms), "");
            assert_int_equal(seen.n, 0);
        }
        kinfer_models_free(ms);
        seen_reset();
        free(expected);
        free(errfile);
        free(repo);
        free(casedir);
        free(names[i]);
    }
    free(root);
}

/* --- the valid repository -------------------------------------------- */

static void check_valid(const char *repo)
{
    struct kinfer_models *ms = models_with_probe();
    char err[1024] = "";
    enum kinfer_err rc = kinfer_repo_load(ms, repo, err, sizeof err);
    if (rc != KINFER_OK)
        fail_msg("%s: %s", repo, err);

    /* Sorted; .hidden and notes.txt skipped. */
    assert_string_equal(kinfer_models_names(ms), "alpha, beta");

    const struct kinfer_model *a = kinfer_models_find(ms, "alpha");
    assert_non_null(a);
    const struct kinfer_model_settings *s = kinfer_model_settings(a);
    assert_string_equal(kinfer_model_version(a), "7");
    assert_int_equal(s->max_batch_size, 32);
    assert_int_equal(s->max_queue_delay_us, 500);
    assert_int_equal(s->preferred_batch_size, 16);

    const struct kinfer_model *b = kinfer_models_find(ms, "beta");
    assert_non_null(b);
    s = kinfer_model_settings(b);
    assert_string_equal(kinfer_model_version(b), "3");
    assert_int_equal(s->max_batch_size, 1);
    assert_int_equal(s->max_queue_delay_us, 0);
    assert_int_equal(s->preferred_batch_size, 1);

    /* The probe backend got alpha's directory and config text verbatim
     * (beta belongs to "scale"). */
    char *vrepo = join(data_root, "valid/models");
    char *adir = join(vrepo, "alpha");
    char *cfgpath = join(adir, "config.json");
    char *cfg = slurp(cfgpath);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.dirs[0], adir);
    assert_string_equal(seen.configs[0], cfg);
    free(cfg);
    free(cfgpath);
    free(adir);
    free(vrepo);
    kinfer_models_free(ms);
    seen_reset();
}

static void test_valid(void **state)
{
    (void)state;
    char *repo = join(data_root, "valid/models");
    check_valid(repo);
    free(repo);
}

static void test_valid_trailing_slash(void **state)
{
    (void)state;
    char *repo = join(data_root, "valid/models/");
    check_valid(repo);
    free(repo);
}

/* --- I/O errors and the size cap -------------------------------------- */

static void test_missing_repo(void **state)
{
    (void)state;
    struct kinfer_models *ms = models_with_probe();
    char err[512];
    assert_int_equal(
        kinfer_repo_load(ms, "/nonexistent/kinfer-models", err, sizeof err),
        KINFER_ERR_IO);
    assert_string_equal(err, "/nonexistent/kinfer-models: No such file or "
                             "directory");
    kinfer_models_free(ms);
}

/* A temporary repo with model "m" whose config.json holds len bytes:
 * a valid config padded with spaces. */
struct tmp_repo {
    char root[64];
    char model[96];
    char config[128];
};

static void tmp_repo_make(struct tmp_repo *t, size_t len)
{
    snprintf(t->root, sizeof t->root, "/tmp/kinfer-test-repo-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->model, sizeof t->model, "%s/m", t->root);
    assert_int_equal(mkdir(t->model, 0700), 0);
    snprintf(t->config, sizeof t->config, "%s/config.json", t->model);
    static const char head[] = "{\"backend\": \"probe\"}";
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, ' ', len);
    memcpy(text, head, sizeof head - 1);
    write_file(t->config, text, len);
    free(text);
}

static void tmp_repo_remove(struct tmp_repo *t)
{
    unlink(t->config);
    rmdir(t->config); /* when a test made it a directory */
    rmdir(t->model);
    rmdir(t->root);
}

static void test_config_size_cap(void **state)
{
    (void)state;
    struct tmp_repo t;
    char err[512];
    char expected[512];

    tmp_repo_make(&t, KINFER_REPO_MAX_CONFIG_BYTES);
    struct kinfer_models *ms = models_with_probe();
    if (kinfer_repo_load(ms, t.root, err, sizeof err) != KINFER_OK)
        fail_msg("%s", err);
    assert_non_null(kinfer_models_find(ms, "m"));
    assert_int_equal(strlen(seen.configs[0]), KINFER_REPO_MAX_CONFIG_BYTES);
    kinfer_models_free(ms);
    tmp_repo_remove(&t);

    tmp_repo_make(&t, KINFER_REPO_MAX_CONFIG_BYTES + 1);
    ms = models_with_probe();
    assert_int_equal(kinfer_repo_load(ms, t.root, err, sizeof err),
                     KINFER_ERR_CONFIG);
    snprintf(expected, sizeof expected, "%s: larger than 1048576 bytes",
             t.config);
    assert_string_equal(err, expected);
    kinfer_models_free(ms);
    tmp_repo_remove(&t);
    seen_reset();
}

static void test_config_not_a_file(void **state)
{
    (void)state;
    struct tmp_repo t;
    char err[512];
    char expected[512];

    tmp_repo_make(&t, 32);
    assert_int_equal(unlink(t.config), 0);
    assert_int_equal(mkdir(t.config, 0700), 0);
    struct kinfer_models *ms = models_with_probe();
    assert_int_equal(kinfer_repo_load(ms, t.root, err, sizeof err),
                     KINFER_ERR_CONFIG);
    snprintf(expected, sizeof expected, "%s: not a regular file", t.config);
    assert_string_equal(err, expected);
    kinfer_models_free(ms);
    tmp_repo_remove(&t);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tests/data/repo\n", argv[0]);
        return 2;
    }
    data_root = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_cases),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_valid_trailing_slash),
        cmocka_unit_test(test_missing_repo),
        cmocka_unit_test(test_config_size_cap),
        cmocka_unit_test(test_config_not_a_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
