/* Tests of the safetensors reader: every case directory written by
 * ops/models/gen_dense.py under GEN/expected/safetensors (invalid/<case>
 * with the error it must give, valid/<case> with what it holds), plus the
 * file-system errors and the small helpers.
 *
 * usage: test_safetensors GEN   (the gen_dense.py output directory)
 */
#include <dirent.h>
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
#include "safetensors.h"

static const char *gen_dir;

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The case directories under GEN/expected/safetensors/<kind>, sorted. */
static size_t list_cases(const char *kind, char ***out, char **base)
{
    size_t len = strlen(gen_dir) + strlen(kind) + 64, n = 0, cap = 64;
    char **names = calloc(cap, sizeof *names);
    struct dirent *e;
    DIR *d;

    *base = malloc(len);
    assert_non_null(*base);
    assert_non_null(names);
    snprintf(*base, len, "%s/expected/safetensors/%s", gen_dir, kind);
    d = opendir(*base);
    if (d == NULL)
        print_error("cannot open %s\n", *base);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        assert_true(n < cap);
        names[n] = strdup(e->d_name);
        assert_non_null(names[n]);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    *out = names;
    return n;
}

static void free_cases(char **names, size_t n, char *base)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(base);
}

static char *case_file(const char *base, const char *name, const char *file)
{
    size_t len = strlen(base) + strlen(name) + strlen(file) + 3;
    char *p = malloc(len);

    assert_non_null(p);
    snprintf(p, len, "%s/%s/%s", base, name, file);
    return p;
}

static void test_invalid_cases(void **state)
{
    char **names, *base;
    size_t n = list_cases("invalid", &names, &base);

    (void)state;
    /* A missing or half-written directory must not pass quietly. */
    assert_true(n >= 40);
    for (size_t i = 0; i < n; i++) {
        char *input = case_file(base, names[i], "input");
        char *errfile = case_file(base, names[i], "error");
        char *want = bk_read_file(errfile, NULL);
        struct kinfer_st *st = NULL;
        char err[512] = "";
        enum kinfer_err rc;
        enum kinfer_err want_rc = KINFER_ERR_INVALID;

        want[strcspn(want, "\n")] = '\0';
        if (strcmp(names[i], "header_over_limit") == 0 ||
            strcmp(names[i], "header_length_max_u64") == 0)
            want_rc = KINFER_ERR_TOO_LARGE;
        rc = kinfer_st_open(input, &st, err, sizeof err);
        if (rc != want_rc || strstr(err, want) == NULL ||
            strstr(err, input) == NULL) {
            print_error("case %s: rc %d (want %d), error \"%s\", want one "
                        "naming the file and containing \"%s\"\n",
                        names[i], rc, want_rc, err, want);
            fail();
        }
        /* On failure the out-parameter is untouched. */
        assert_null(st);
        free(want);
        free(errfile);
        free(input);
    }
    free_cases(names, n, base);
}

static size_t st_size(enum kinfer_st_dtype d)
{
    return kinfer_st_dtype_size(d);
}

static void check_values(const struct kinfer_st_tensor *t, const json_t *v)
{
    assert_int_equal(json_array_size(v), t->count);
    for (size_t i = 0; i < t->count; i++) {
        const json_t *x = json_array_get(v, i);

        switch (t->dtype) {
        case KINFER_ST_F32:
            assert_true(((const float *)t->data)[i] ==
                        (float)json_number_value(x));
            break;
        case KINFER_ST_F64:
            assert_true(((const double *)t->data)[i] == json_number_value(x));
            break;
        case KINFER_ST_I32:
            assert_int_equal(((const int32_t *)t->data)[i],
                             strtoll(json_string_value(x), NULL, 10));
            break;
        case KINFER_ST_I64:
            assert_true(((const int64_t *)t->data)[i] ==
                        strtoll(json_string_value(x), NULL, 10));
            break;
        default:
            fail_msg("values given for dtype %s",
                     kinfer_st_dtype_name(t->dtype));
        }
    }
}

static void check_valid(const char *base, const char *name)
{
    char *input = case_file(base, name, "input");
    char *expfile = case_file(base, name, "expect.json");
    json_t *exp = json_load_file(expfile, 0, NULL);
    const json_t *tensors = json_object_get(exp, "tensors");
    const json_t *meta = json_object_get(exp, "metadata");
    struct kinfer_st *st = NULL;
    char err[512] = "";
    const char *key;
    json_t *val;
    enum kinfer_err rc;

    assert_non_null(exp);
    rc = kinfer_st_open(input, &st, err, sizeof err);
    if (rc != KINFER_OK)
        print_error("case %s: %s\n", name, err);
    assert_int_equal(rc, KINFER_OK);
    assert_string_equal(kinfer_st_path(st), input);
    assert_int_equal(kinfer_st_count(st), json_object_size(tensors));
    for (size_t i = 1; i < kinfer_st_count(st); i++)
        assert_true(strcmp(kinfer_st_at(st, i - 1)->name,
                           kinfer_st_at(st, i)->name) < 0);
    assert_null(kinfer_st_at(st, kinfer_st_count(st)));

    json_object_foreach((json_t *)tensors, key, val)
    {
        const struct kinfer_st_tensor *t = kinfer_st_find(st, key);
        const json_t *shape = json_object_get(val, "shape");
        const json_t *values = json_object_get(val, "values");
        size_t count = 1;

        if (t == NULL)
            print_error("case %s: tensor %s missing\n", name, key);
        assert_non_null(t);
        assert_string_equal(t->name, key);
        assert_string_equal(kinfer_st_dtype_name(t->dtype),
                            json_string_value(json_object_get(val, "dtype")));
        assert_int_equal(t->ndim, json_array_size(shape));
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d],
                             json_integer_value(json_array_get(shape, d)));
            count *= (size_t)t->shape[d];
        }
        assert_int_equal(t->count, count);
        assert_int_equal(t->nbytes, count * st_size(t->dtype));
        /* Usable directly: never NULL, always aligned to the element. */
        assert_non_null(t->data);
        assert_int_equal((uintptr_t)t->data % st_size(t->dtype), 0);
        if (values != NULL)
            check_values(t, values);
    }
    json_object_foreach((json_t *)meta, key, val)
    {
        const char *got = kinfer_st_metadata(st, key);

        assert_non_null(got);
        assert_string_equal(got, json_string_value(val));
    }
    assert_null(kinfer_st_metadata(st, "no such key"));
    assert_null(kinfer_st_find(st, "no such tensor"));
    kinfer_st_close(st);
    json_decref(exp);
    free(expfile);
    free(input);
}

static void test_valid_cases(void **state)
{
    char **names, *base;
    size_t n = list_cases("valid", &names, &base);

    (void)state;
    assert_true(n >= 6);
    for (size_t i = 0; i < n; i++)
        check_valid(base, names[i]);
    free_cases(names, n, base);
}

static void test_file_errors(void **state)
{
    struct kinfer_st *st = NULL;
    char err[256], tiny[8];
    char *dir;
    size_t len = strlen(gen_dir) + 32;

    (void)state;
    assert_int_equal(
        kinfer_st_open("/nonexistent/x.safetensors", &st, err, sizeof err),
        KINFER_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/x.safetensors: cannot open"));
    assert_null(st);

    dir = malloc(len);
    assert_non_null(dir);
    snprintf(dir, len, "%s/expected", gen_dir);
    assert_int_equal(kinfer_st_open(dir, &st, err, sizeof err), KINFER_ERR_IO);
    assert_non_null(strstr(err, "not a regular file"));
    assert_null(st);

    /* A short buffer is cut, still terminated; none at all is allowed. */
    assert_int_equal(kinfer_st_open(dir, &st, tiny, sizeof tiny),
                     KINFER_ERR_IO);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    assert_int_equal(kinfer_st_open(dir, &st, NULL, 0), KINFER_ERR_IO);
    free(dir);
}

static void test_helpers(void **state)
{
    int64_t shape[3] = {2, 30, 4};
    char buf[64], small[6];

    (void)state;
    kinfer_st_close(NULL);
    assert_null(kinfer_st_find(NULL, "x"));
    assert_int_equal(kinfer_st_count(NULL), 0);
    assert_null(kinfer_st_at(NULL, 0));
    assert_null(kinfer_st_metadata(NULL, "x"));
    assert_string_equal(kinfer_st_dtype_name(KINFER_ST_BF16), "BF16");
    assert_string_equal(kinfer_st_dtype_name(KINFER_ST_U64), "U64");
    assert_string_equal(kinfer_st_dtype_name((enum kinfer_st_dtype)99),
                        "INVALID");
    assert_int_equal(kinfer_st_dtype_size(KINFER_ST_F16), 2);
    assert_int_equal(kinfer_st_dtype_size(KINFER_ST_C64), 8);
    assert_int_equal(kinfer_st_dtype_size((enum kinfer_st_dtype)99), 0);
    assert_string_equal(kinfer_st_shape_str(shape, 3, buf, sizeof buf),
                        "[2,30,4]");
    assert_string_equal(kinfer_st_shape_str(shape, 0, buf, sizeof buf), "[]");
    assert_string_equal(kinfer_st_shape_str(shape, 3, small, sizeof small),
                        "[2,30");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_cases),
        cmocka_unit_test(test_valid_cases),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_helpers),
    };

    if (argc != 2) {
        fprintf(stderr, "usage: %s GEN_DIR\n", argv[0]);
        return 2;
    }
    gen_dir = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
