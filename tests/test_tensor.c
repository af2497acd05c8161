/* Unit tests of lib/tensor.c: datatype names and sizes, tensor storage,
 * overflow checks on shapes that come from requests, BYTES elements.
 */
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/host.h"
#include "kinfer/tensor.h"

/* The NOMEM test asks for 2^60 bytes; under ASan that must come back as
 * NULL instead of a fatal report. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static int tensor_is_empty(const struct kinfer_tensor *t)
{
    return t->name == NULL && t->dtype == KINFER_DTYPE_INVALID &&
           t->ndim == 0 && t->count == 0 && t->data == NULL;
}

static void test_dtype_names_round_trip(void **state)
{
    (void)state;
    static const struct {
        enum kinfer_dtype dtype;
        const char *name;
        size_t size;
    } all[] = {
        {KINFER_DTYPE_BOOL, "BOOL", 1},
        {KINFER_DTYPE_INT32, "INT32", 4},
        {KINFER_DTYPE_INT64, "INT64", 8},
        {KINFER_DTYPE_FP32, "FP32", 4},
        {KINFER_DTYPE_FP64, "FP64", 8},
        {KINFER_DTYPE_BYTES, "BYTES", sizeof(struct kinfer_bytes)},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_string_equal(kinfer_dtype_name(all[i].dtype), all[i].name);
        assert_int_equal(kinfer_dtype_from_name(all[i].name), all[i].dtype);
        assert_int_equal(kinfer_dtype_size(all[i].dtype), all[i].size);
    }
    assert_string_equal(kinfer_dtype_name(KINFER_DTYPE_INVALID), "INVALID");
    assert_string_equal(kinfer_dtype_name((enum kinfer_dtype)99), "INVALID");
    assert_int_equal(kinfer_dtype_size(KINFER_DTYPE_INVALID), 0);
    static const char *const bad[] = {"fp32",    "FP16",  "FP8", "",
                                      "INVALID", "FP32 ", "BYTE"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kinfer_dtype_from_name(bad[i]), KINFER_DTYPE_INVALID);
    assert_int_equal(kinfer_dtype_from_name(NULL), KINFER_DTYPE_INVALID);
}

static void test_init_clear(void **state)
{
    (void)state;
    struct kinfer_tensor t;
    memset(&t, 0xAB, sizeof t); /* contents are ignored */
    char name[] = "input";
    int64_t shape[] = {2, 3};
    assert_int_equal(kinfer_tensor_init(&t, name, KINFER_DTYPE_FP32, 2, shape),
                     KINFER_OK);
    name[0] = 'X'; /* the tensor owns a copy */
    assert_string_equal(t.name, "input");
    assert_int_equal(t.dtype, KINFER_DTYPE_FP32);
    assert_int_equal(t.ndim, 2);
    assert_int_equal(t.shape[0], 2);
    assert_int_equal(t.shape[1], 3);
    assert_int_equal(t.count, 6);
    assert_non_null(t.data);
    for (size_t i = 0; i < 6; i++)
        assert_true(((float *)t.data)[i] == 0.0f);
    ((float *)t.data)[5] = 1.5f; /* writable to the end */
    kinfer_tensor_clear(&t);
    assert_true(tensor_is_empty(&t));
    kinfer_tensor_clear(&t); /* clearing twice is harmless */
    kinfer_tensor_clear(NULL);
}

static void test_scalar_and_empty_shapes(void **state)
{
    (void)state;
    struct kinfer_tensor t;
    assert_int_equal(kinfer_tensor_init(&t, "s", KINFER_DTYPE_INT64, 0, NULL),
                     KINFER_OK);
    assert_int_equal(t.count, 1);
    assert_int_equal(t.ndim, 0);
    assert_int_equal(((int64_t *)t.data)[0], 0);
    kinfer_tensor_clear(&t);

    /* A zero dimension makes the count 0 however large the others are. */
    int64_t zero[] = {INT64_MAX, 0, INT64_MAX};
    assert_int_equal(kinfer_tensor_init(&t, "z", KINFER_DTYPE_FP64, 3, zero),
                     KINFER_OK);
    assert_int_equal(t.count, 0);
    assert_non_null(t.data);
    kinfer_tensor_clear(&t);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    struct kinfer_tensor t;
    int64_t ok[] = {2, 2};
    int64_t neg[] = {2, -1};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_INVALID, 2, ok),
                     KINFER_ERR_INVALID);
    assert_true(tensor_is_empty(&t));
    assert_int_equal(kinfer_tensor_init(&t, "x", (enum kinfer_dtype)42, 2, ok),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP32, -1, ok),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP32, 9, nine),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP32, 2, neg),
                     KINFER_ERR_INVALID);
    assert_true(tensor_is_empty(&t));
    assert_int_equal(kinfer_tensor_init(&t, NULL, KINFER_DTYPE_FP32, 2, ok),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP32, 2, NULL),
                     KINFER_ERR_INVALID);
    kinfer_tensor_clear(&t);
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP32, 8, nine),
                     KINFER_OK);
    assert_int_equal(t.count, 1);
    kinfer_tensor_clear(&t);
}

static void test_overflow_rejected(void **state)
{
    (void)state;
    struct kinfer_tensor t;
    /* The element count itself overflows size_t. */
    int64_t big[] = {INT64_C(1) << 32, INT64_C(1) << 32};
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_BOOL, 2, big),
                     KINFER_ERR_INVALID);
    assert_true(tensor_is_empty(&t));
    int64_t huge[] = {INT64_MAX, INT64_MAX};
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_BOOL, 2, huge),
                     KINFER_ERR_INVALID);
    /* The count fits, count * element size does not. */
    int64_t bytes_overflow[] = {INT64_C(1) << 61};
    assert_int_equal(
        kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP64, 1, bytes_overflow),
        KINFER_ERR_INVALID);
    assert_int_equal(
        kinfer_tensor_init(&t, "x", KINFER_DTYPE_BYTES, 1, bytes_overflow),
        KINFER_ERR_INVALID);
    assert_true(tensor_is_empty(&t));
    /* 2^57 FP64 elements fit in size_t but never in an address space. */
    int64_t no_memory[] = {INT64_C(1) << 57};
    assert_int_equal(
        kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP64, 1, no_memory),
        KINFER_ERR_NOMEM);
    assert_true(tensor_is_empty(&t));
}

static void test_bytes(void **state)
{
    (void)state;
    struct kinfer_tensor t;
    int64_t shape[] = {3};
    assert_int_equal(kinfer_tensor_init(&t, "b", KINFER_DTYPE_BYTES, 1, shape),
                     KINFER_OK);
    struct kinfer_bytes *e = t.data;
    for (size_t i = 0; i < 3; i++) {
        assert_null(e[i].data);
        assert_int_equal(e[i].len, 0);
    }

    assert_int_equal(kinfer_tensor_set_bytes(&t, 0, "first", 5), KINFER_OK);
    /* Replacing an element frees the old copy (LeakSanitizer checks). */
    assert_int_equal(kinfer_tensor_set_bytes(&t, 0, "abc", 3), KINFER_OK);
    assert_int_equal(e[0].len, 3);
    assert_memory_equal(e[0].data, "abc", 4); /* NUL kept past the end */

    const char nul_inside[] = {'a', '\0', 'b'};
    assert_int_equal(kinfer_tensor_set_bytes(&t, 1, nul_inside, 3), KINFER_OK);
    assert_int_equal(e[1].len, 3);
    assert_memory_equal(e[1].data, nul_inside, 3);
    assert_int_equal(e[1].data[3], '\0');

    assert_int_equal(kinfer_tensor_set_bytes(&t, 2, NULL, 0), KINFER_OK);
    assert_non_null(e[2].data);
    assert_int_equal(e[2].len, 0);
    assert_int_equal(e[2].data[0], '\0');

    assert_int_equal(kinfer_tensor_set_bytes(&t, 3, "x", 1),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tensor_set_bytes(&t, 0, NULL, 1),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tensor_set_bytes(&t, 0, "x", SIZE_MAX),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_tensor_set_bytes(NULL, 0, "x", 1),
                     KINFER_ERR_INVALID);
    assert_memory_equal(e[0].data, "abc", 4); /* failures change nothing */
    kinfer_tensor_clear(&t); /* frees every element: LeakSanitizer checks */
    assert_true(tensor_is_empty(&t));

    assert_int_equal(kinfer_tensor_init(&t, "f", KINFER_DTYPE_FP32, 1, shape),
                     KINFER_OK);
    assert_int_equal(kinfer_tensor_set_bytes(&t, 0, "x", 1),
                     KINFER_ERR_INVALID);
    kinfer_tensor_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_names_round_trip),
        cmocka_unit_test(test_init_clear),
        cmocka_unit_test(test_scalar_and_empty_shapes),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_overflow_rejected),
        cmocka_unit_test(test_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
