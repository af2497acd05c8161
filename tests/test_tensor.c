/* Unit tests of lib/tensor.c: datatype names and sizes, tensor storage,
 * overflow checks on shapes that come from requests, BYTES elements.
 */
#include <math.h>
#include <stdio.h>
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
        {KINFER_DTYPE_UINT8, "UINT8", 1},
        {KINFER_DTYPE_UINT16, "UINT16", 2},
        {KINFER_DTYPE_UINT32, "UINT32", 4},
        {KINFER_DTYPE_UINT64, "UINT64", 8},
        {KINFER_DTYPE_INT8, "INT8", 1},
        {KINFER_DTYPE_INT16, "INT16", 2},
        {KINFER_DTYPE_FP16, "FP16", 2},
        {KINFER_DTYPE_BF16, "BF16", 2},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_string_equal(kinfer_dtype_name(all[i].dtype), all[i].name);
        assert_int_equal(kinfer_dtype_from_name(all[i].name), all[i].dtype);
        assert_int_equal(kinfer_dtype_size(all[i].dtype), all[i].size);
    }
    assert_string_equal(kinfer_dtype_name(KINFER_DTYPE_INVALID), "INVALID");
    assert_string_equal(kinfer_dtype_name((enum kinfer_dtype)99), "INVALID");
    assert_int_equal(kinfer_dtype_size(KINFER_DTYPE_INVALID), 0);
    static const char *const bad[] = {"fp32",    "fp16",  "FP8",  "",
                                      "INVALID", "FP32 ", "BYTE", "UINT128"};
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

/* Every FP16 and BF16 bit pattern: exact to a double and back; the
 * midpoint between two neighbours rounds to the even one, and a hair
 * either side of it to the nearer one. */
static void test_half_exhaustive(void **state)
{
    (void)state;
    static const enum kinfer_dtype ds[] = {KINFER_DTYPE_FP16,
                                           KINFER_DTYPE_BF16};
    for (size_t d = 0; d < 2; d++) {
        size_t checked = 0;
        for (unsigned b = 0; b < 0x10000; b++) {
            double v = kinfer_half_to_double(ds[d], (uint16_t)b);
            if (isnan(v))
                continue;
            assert_int_equal(kinfer_half_from_double(ds[d], v), b);
            assert_true(kinfer_half_to_float(ds[d], (uint16_t)b) == (float)v);
            if (b >= 0x8000 || isinf(v))
                continue;
            double next = kinfer_half_to_double(ds[d], (uint16_t)(b + 1));
            if (isinf(next))
                continue;
            double mid = (v + next) / 2; /* exact in a double */
            unsigned even = (b & 1) ? b + 1 : b;
            assert_int_equal(kinfer_half_from_double(ds[d], mid), even);
            assert_int_equal(kinfer_half_from_double(ds[d], -mid),
                             even | 0x8000);
            assert_int_equal(
                kinfer_half_from_double(ds[d], nextafter(mid, INFINITY)),
                b + 1);
            assert_int_equal(kinfer_half_from_double(ds[d], nextafter(mid, 0)),
                             b);
            checked++;
        }
        assert_true(checked > 30000);
    }
    /* Known values. */
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_FP16, 1.0), 0x3c00);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_FP16, 65504), 0x7bff);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_FP16, 65519.99),
                     0x7bff);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_FP16, 65520), 0x7c00);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_FP16, 0x1p-24),
                     0x0001);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_FP16, 0x1p-25), 0);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_FP16, -0.0), 0x8000);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_BF16, 1.0), 0x3f80);
    assert_int_equal(kinfer_float_to_half(KINFER_DTYPE_FP16, NAN) & 0x7e00,
                     0x7e00);
    assert_int_equal(kinfer_half_from_double(KINFER_DTYPE_INT32, 1.0), 0);
    assert_true(isnan(kinfer_half_to_double(KINFER_DTYPE_FP32, 0x3c00)));
}

/* BF16 from a float is the float's top half rounded to nearest even:
 * checked against that bit formula on a spread of floats. */
static void test_bf16_from_float(void **state)
{
    (void)state;
    uint32_t u = 12345;
    for (int i = 0; i < 200000; i++) {
        u = u * 1664525u + 1013904223u; /* any spread of bit patterns */
        float f;
        memcpy(&f, &u, sizeof f);
        if (isnan(f))
            continue;
        uint32_t r = u + 0x7fff + ((u >> 16) & 1);
        assert_int_equal(kinfer_float_to_half(KINFER_DTYPE_BF16, f),
                         (uint16_t)(r >> 16));
    }
}

static void test_put_ranges(void **state)
{
    (void)state;
    static const struct {
        enum kinfer_dtype dtype;
        int64_t lo, hi;
    } ints[] = {
        {KINFER_DTYPE_INT8, INT8_MIN, INT8_MAX},
        {KINFER_DTYPE_INT16, INT16_MIN, INT16_MAX},
        {KINFER_DTYPE_INT32, INT32_MIN, INT32_MAX},
        {KINFER_DTYPE_UINT8, 0, UINT8_MAX},
        {KINFER_DTYPE_UINT16, 0, UINT16_MAX},
        {KINFER_DTYPE_UINT32, 0, UINT32_MAX},
        {KINFER_DTYPE_BOOL, 0, 1},
    };
    int64_t one = 1;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        struct kinfer_tensor t;
        assert_int_equal(kinfer_tensor_init(&t, "x", ints[i].dtype, 1, &one),
                         KINFER_OK);
        struct kinfer_number v;
        assert_int_equal(kinfer_tensor_put_int(&t, 0, ints[i].lo),
                         KINFER_PUT_OK);
        assert_int_equal(kinfer_tensor_get_number(&t, 0, &v), 0);
        assert_int_equal(v.i, ints[i].lo);
        assert_int_equal(kinfer_tensor_put_int(&t, 0, ints[i].hi),
                         KINFER_PUT_OK);
        assert_int_equal(kinfer_tensor_get_number(&t, 0, &v), 0);
        assert_int_equal(v.i, ints[i].hi);
        assert_int_equal(kinfer_tensor_put_int(&t, 0, ints[i].lo - 1),
                         KINFER_PUT_RANGE);
        assert_int_equal(kinfer_tensor_put_int(&t, 0, ints[i].hi + 1),
                         KINFER_PUT_RANGE);
        assert_int_equal(kinfer_tensor_put_real(&t, 0, 1.5),
                         KINFER_PUT_FRACTION);
        assert_int_equal(kinfer_tensor_put_real(&t, 0, (double)ints[i].hi),
                         KINFER_PUT_OK);
        kinfer_tensor_clear(&t);
    }
    struct kinfer_tensor t;
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_UINT64, 1, &one),
                     KINFER_OK);
    assert_int_equal(kinfer_tensor_put_uint(&t, 0, UINT64_MAX), KINFER_PUT_OK);
    struct kinfer_number v;
    assert_int_equal(kinfer_tensor_get_number(&t, 0, &v), 0);
    assert_int_equal(v.kind, KINFER_NUM_UINT);
    assert_true(v.u == UINT64_MAX);
    assert_int_equal(kinfer_tensor_put_int(&t, 0, -1), KINFER_PUT_RANGE);
    assert_int_equal(kinfer_tensor_put_real(&t, 0, 0x1p64), KINFER_PUT_RANGE);
    assert_int_equal(kinfer_tensor_put_real(&t, 0, 0x1p63), KINFER_PUT_OK);
    kinfer_tensor_clear(&t);

    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP16, 1, &one),
                     KINFER_OK);
    assert_int_equal(kinfer_tensor_put_int(&t, 0, 65519), KINFER_PUT_OK);
    assert_int_equal(kinfer_tensor_put_int(&t, 0, 65520), KINFER_PUT_RANGE);
    assert_int_equal(kinfer_tensor_put_real(&t, 0, -1e6), KINFER_PUT_RANGE);
    assert_int_equal(kinfer_tensor_put_real(&t, 0, INFINITY), KINFER_PUT_OK);
    kinfer_tensor_clear(&t);
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_BF16, 1, &one),
                     KINFER_OK);
    /* One rounding straight from the integer: 2^62 + 2^54 + 1 is just
     * above the midpoint of two BF16 neighbours; through a double it would
     * land on the midpoint and round to even (down). */
    int64_t big = ((int64_t)1 << 62) + ((int64_t)1 << 54) + 1;
    assert_int_equal(kinfer_tensor_put_int(&t, 0, big), KINFER_PUT_OK);
    assert_int_not_equal(
        ((uint16_t *)t.data)[0],
        kinfer_half_from_double(KINFER_DTYPE_BF16, (double)big));
    assert_int_equal(((uint16_t *)t.data)[0],
                     kinfer_half_from_double(KINFER_DTYPE_BF16, 0x1.02p62));
    kinfer_tensor_clear(&t);
    assert_int_equal(kinfer_tensor_init(&t, "x", KINFER_DTYPE_FP32, 1, &one),
                     KINFER_OK);
    assert_int_equal(kinfer_tensor_put_real(&t, 0, 3.4028235e38),
                     KINFER_PUT_OK);
    assert_int_equal(kinfer_tensor_put_real(&t, 0, 3.5e38), KINFER_PUT_RANGE);
    kinfer_tensor_clear(&t);
}

static void test_convert(void **state)
{
    (void)state;
    int64_t shape[] = {2, 2};
    struct kinfer_tensor src, dst;
    char err[256];
    assert_int_equal(kinfer_tensor_init(&src, "x", KINFER_DTYPE_FP64, 2, shape),
                     KINFER_OK);
    double vals[] = {0, 255, -1, 0.1};
    memcpy(src.data, vals, sizeof vals);
    /* To FP32 and FP16: rounded. */
    assert_int_equal(
        kinfer_tensor_convert(&dst, &src, KINFER_DTYPE_FP32, err, sizeof err),
        KINFER_OK);
    assert_string_equal(dst.name, "x");
    assert_int_equal(dst.ndim, 2);
    assert_true(((float *)dst.data)[3] == 0.1f);
    kinfer_tensor_clear(&dst);
    assert_int_equal(
        kinfer_tensor_convert(&dst, &src, KINFER_DTYPE_FP16, err, sizeof err),
        KINFER_OK);
    assert_int_equal(((uint16_t *)dst.data)[1], 0x5bf8); /* 255 */
    kinfer_tensor_clear(&dst);
    /* To UINT8: -1 does not fit, and the message says where. */
    assert_int_equal(
        kinfer_tensor_convert(&dst, &src, KINFER_DTYPE_UINT8, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "element 2: FP64 -1 is out of range for UINT8");
    assert_null(dst.data);
    /* To INT16: 0.1 has a fraction. */
    ((double *)src.data)[2] = -7;
    assert_int_equal(
        kinfer_tensor_convert(&dst, &src, KINFER_DTYPE_INT16, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "element 3: FP64 0.10000000000000001 has a "
                             "fraction; INT16 holds whole numbers");
    ((double *)src.data)[3] = 1;
    assert_int_equal(
        kinfer_tensor_convert(&dst, &src, KINFER_DTYPE_INT16, err, sizeof err),
        KINFER_OK);
    assert_int_equal(((int16_t *)dst.data)[2], -7);
    /* Back again, and to BOOL: only 0 and 1. */
    struct kinfer_tensor b;
    assert_int_equal(
        kinfer_tensor_convert(&b, &dst, KINFER_DTYPE_BOOL, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "element 1: INT16 255 is not 0 or 1 for BOOL");
    kinfer_tensor_clear(&dst);
    /* BYTES only to BYTES. */
    assert_int_equal(
        kinfer_tensor_convert(&dst, &src, KINFER_DTYPE_BYTES, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "FP64 cannot be converted to BYTES");
    kinfer_tensor_clear(&src);
    int64_t two = 2;
    assert_int_equal(kinfer_tensor_init(&src, "s", KINFER_DTYPE_BYTES, 1, &two),
                     KINFER_OK);
    assert_int_equal(kinfer_tensor_set_bytes(&src, 1, "a\0b", 3), KINFER_OK);
    assert_int_equal(
        kinfer_tensor_convert(&dst, &src, KINFER_DTYPE_BYTES, err, sizeof err),
        KINFER_OK);
    assert_int_equal(((struct kinfer_bytes *)dst.data)[1].len, 3);
    assert_memory_equal(((struct kinfer_bytes *)dst.data)[1].data, "a\0b", 3);
    kinfer_tensor_clear(&dst);
    kinfer_tensor_clear(&src);
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
        cmocka_unit_test(test_half_exhaustive),
        cmocka_unit_test(test_bf16_from_float),
        cmocka_unit_test(test_put_ranges),
        cmocka_unit_test(test_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
