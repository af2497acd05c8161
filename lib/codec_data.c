/* The decoder's element walker: one input's "data" array, parsed by
 * Jansson, checked against the input's shape and stored into its tensor
 * element by element, with a message that names the exact element when a
 * value does not fit the datatype.  Called by codec_decode.c.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"

/* What each datatype wants, for "expected ... got ..." messages. */
static const char *const expected[KINFER_DTYPE_COUNT] = {
    [KINFER_DTYPE_BOOL] = "true or false", [KINFER_DTYPE_INT32] = "an integer",
    [KINFER_DTYPE_INT64] = "an integer",   [KINFER_DTYPE_FP32] = "a number",
    [KINFER_DTYPE_FP64] = "a number",      [KINFER_DTYPE_BYTES] = "a string",
    [KINFER_DTYPE_UINT8] = "an integer",   [KINFER_DTYPE_UINT16] = "an integer",
    [KINFER_DTYPE_UINT32] = "an integer",  [KINFER_DTYPE_UINT64] = "an integer",
    [KINFER_DTYPE_INT8] = "an integer",    [KINFER_DTYPE_INT16] = "an integer",
    [KINFER_DTYPE_FP16] = "a number",      [KINFER_DTYPE_BF16] = "a number",
};

/* What a JSON value is, for "got ..." in messages. */
static void describe(const json_t *v, char *buf, size_t size)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        /* 1e3 is a real: say 1000.0, not 1000, when an integer was due. */
        kinfer_codec_fmt_real(buf, size, json_real_value(v), 0);
        if (strpbrk(buf, ".e") == NULL)
            snprintf(buf + strlen(buf), size - strlen(buf), ".0");
        break;
    case JSON_STRING:
        snprintf(buf, size, "a string");
        break;
    case JSON_TRUE:
        snprintf(buf, size, "true");
        break;
    case JSON_FALSE:
        snprintf(buf, size, "false");
        break;
    case JSON_NULL:
        snprintf(buf, size, "null");
        break;
    case JSON_ARRAY:
        snprintf(buf, size, "an array");
        break;
    case JSON_OBJECT:
        snprintf(buf, size, "an object");
        break;
    }
}

/* Why a number did not fit element k of t (kinfer_tensor_put_*). */
static enum kinfer_err put_failed(const struct kinfer_tensor *t,
                                  const json_t *v, char *why, size_t whysize)
{
    char got[40];
    if (json_is_integer(v))
        snprintf(got, sizeof got, "integer %" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
    else {
        snprintf(got, sizeof got, "value ");
        kinfer_codec_fmt_real(got + 6, sizeof got - 6, json_real_value(v), 0);
    }
    snprintf(why, whysize, "%s is out of range for %s", got,
             kinfer_dtype_name(t->dtype));
    return KINFER_ERR_INVALID;
}

/* Store JSON value v as element k of t.  On a type or range error writes
 * the reason (without the path) to why and returns KINFER_ERR_INVALID.
 * Integer datatypes take JSON integers only (1.0 and 1e3 are refused);
 * FP16 .. FP64 take any number, rounded to nearest from the double the
 * JSON text reads as; BOOL takes true and false. */
static enum kinfer_err store_elem(struct kinfer_tensor *t, size_t k,
                                  const json_t *v, char *why, size_t whysize)
{
    enum kinfer_put put;
    switch (t->dtype) {
    case KINFER_DTYPE_BOOL:
        if (!json_is_boolean(v))
            break;
        ((uint8_t *)t->data)[k] = json_is_true(v) ? 1 : 0;
        return KINFER_OK;
    case KINFER_DTYPE_FP16:
    case KINFER_DTYPE_BF16:
    case KINFER_DTYPE_FP32:
    case KINFER_DTYPE_FP64:
        if (!json_is_number(v))
            break;
        put = json_is_integer(v)
                  ? kinfer_tensor_put_int(t, k, json_integer_value(v))
                  : kinfer_tensor_put_real(t, k, json_real_value(v));
        return put == KINFER_PUT_OK ? KINFER_OK
                                    : put_failed(t, v, why, whysize);
    case KINFER_DTYPE_INT8:
    case KINFER_DTYPE_INT16:
    case KINFER_DTYPE_INT32:
    case KINFER_DTYPE_INT64:
    case KINFER_DTYPE_UINT8:
    case KINFER_DTYPE_UINT16:
    case KINFER_DTYPE_UINT32:
    case KINFER_DTYPE_UINT64:
        if (!json_is_integer(v))
            break;
        put = kinfer_tensor_put_int(t, k, json_integer_value(v));
        return put == KINFER_PUT_OK ? KINFER_OK
                                    : put_failed(t, v, why, whysize);
    case KINFER_DTYPE_BYTES:
        if (!json_is_string(v))
            break;
        return kinfer_tensor_set_bytes(t, k, json_string_value(v),
                                       json_string_length(v));
    case KINFER_DTYPE_INVALID:
        snprintf(why, whysize, "invalid datatype");
        return KINFER_ERR_INVALID;
    }

    char got[40];
    describe(v, got, sizeof got);
    snprintf(why, whysize, "expected %s for %s, got %s", expected[t->dtype],
             kinfer_dtype_name(t->dtype), got);
    return KINFER_ERR_INVALID;
}

/* Decoding state of one input, for the data walkers below. */
struct input_ctx {
    struct codec_dec *d;
    const struct codec_input *in;
    struct kinfer_tensor *t;     /* initialised; elements filled in order */
    size_t idx[KINFER_MAX_DIMS]; /* current position in nested data */
    size_t pos;                  /* next flat element */
};

/* Check that nested data a at level depth matches shape[depth..ndim-1],
 * before anything is allocated for it. */
static enum kinfer_err check_nested(struct input_ctx *c, const json_t *a,
                                    int depth)
{
    const struct codec_input *in = c->in;
    char where[CODEC_SHAPE_TEXT], shape[CODEC_SHAPE_TEXT];
    size_t want = (size_t)in->shape[depth];
    if (!json_is_array(a) || json_array_size(a) != want) {
        kinfer_codec_fmt_index(where, sizeof where, c->idx, depth);
        kinfer_codec_fmt_shape(shape, sizeof shape, in->shape, in->ndim);
        if (json_is_array(a))
            return kinfer_codec_fail(
                c->d, KINFER_ERR_INVALID,
                "inputs[%zu].data%s: expected %zu element%s for "
                "dimension %d of shape %s, got %zu",
                in->index, where, want, want == 1 ? "" : "s", depth, shape,
                json_array_size(a));
        char got[40];
        describe(a, got, sizeof got);
        return kinfer_codec_fail(c->d, KINFER_ERR_INVALID,
                                 "inputs[%zu].data%s: expected an array for "
                                 "dimension %d of shape %s, got %s",
                                 in->index, where, depth, shape, got);
    }
    if (depth + 1 == in->ndim)
        return KINFER_OK;
    for (size_t k = 0; k < want; k++) {
        c->idx[depth] = k;
        enum kinfer_err rc = check_nested(c, json_array_get(a, k), depth + 1);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

/* Store the elements of a, whose own indices are idx[0..depth), in
 * row-major order; a is a leaf array when depth == leaf. */
static enum kinfer_err fill(struct input_ctx *c, const json_t *a, int depth,
                            int leaf)
{
    size_t n = json_array_size(a);
    for (size_t k = 0; k < n; k++) {
        c->idx[depth] = k;
        const json_t *v = json_array_get(a, k);
        if (depth < leaf) {
            enum kinfer_err rc = fill(c, v, depth + 1, leaf);
            if (rc != KINFER_OK)
                return rc;
            continue;
        }
        char why[160], where[CODEC_SHAPE_TEXT];
        enum kinfer_err rc = store_elem(c->t, c->pos, v, why, sizeof why);
        if (rc == KINFER_ERR_NOMEM)
            return kinfer_codec_fail_nomem(c->d);
        if (rc != KINFER_OK) {
            kinfer_codec_fmt_index(where, sizeof where, c->idx, depth + 1);
            return kinfer_codec_fail(c->d, rc, "inputs[%zu].data%s: %s",
                                     c->in->index, where, why);
        }
        c->pos++;
    }
    return KINFER_OK;
}

enum kinfer_err kinfer_codec_data_fill(struct codec_dec *d,
                                       const struct codec_input *in,
                                       struct kinfer_tensor *t)
{
    /* Flat row-major or nested one level per dimension; for one dimension
     * the two are the same thing, for none the data is [value]. */
    const json_t *data = in->data;
    struct input_ctx c = {.d = d, .in = in, .t = t};
    int nested = in->ndim >= 2 && json_array_size(data) > 0 &&
                 json_is_array(json_array_get(data, 0));
    if (nested) {
        enum kinfer_err rc = check_nested(&c, data, 0);
        if (rc != KINFER_OK)
            return rc;
    } else if (json_array_size(data) != in->count) {
        char text[CODEC_SHAPE_TEXT];
        kinfer_codec_fmt_shape(text, sizeof text, in->shape, in->ndim);
        return kinfer_codec_fail(d, KINFER_ERR_INVALID,
                                 "inputs[%zu].data: expected %zu element%s "
                                 "for shape %s, got %zu",
                                 in->index, in->count,
                                 in->count == 1 ? "" : "s", text,
                                 json_array_size(data));
    }

    enum kinfer_err rc =
        kinfer_tensor_init(t, in->name, in->dtype, in->ndim, in->shape);
    if (rc == KINFER_ERR_NOMEM)
        return kinfer_codec_fail_nomem(d);
    if (rc != KINFER_OK)
        return kinfer_codec_fail(d, rc, "inputs[%zu]: cannot create the tensor",
                                 in->index);
    return fill(&c, data, 0, nested ? in->ndim - 1 : 0);
}

/* ------------------------------------------------------------------ */
/* The binary tensor extension                                        */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "binary tensors are little-endian: this host needs byte swapping"
#endif

static uint32_t read_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

enum kinfer_err kinfer_codec_binary_fill(struct codec_dec *d,
                                         const struct codec_input *in,
                                         struct kinfer_tensor *t)
{
    size_t left = d->bin_len - d->bin_used;
    if ((uint64_t)in->binary_size > left)
        return kinfer_codec_fail(
            d, KINFER_ERR_INVALID,
            "inputs[%zu].parameters.binary_data_size: %" PRId64 " bytes, but "
            "only %zu of the %zu after the JSON header are left%s",
            in->index, in->binary_size, left, d->bin_len,
            d->bin_len == 0 ? " (was the header length sent?)" : "");
    size_t size = (size_t)in->binary_size;
    const unsigned char *p = d->bin + d->bin_used;
    size_t esize = kinfer_dtype_size(in->dtype);
    char text[CODEC_SHAPE_TEXT];
    kinfer_codec_fmt_shape(text, sizeof text, in->shape, in->ndim);
    if (in->dtype != KINFER_DTYPE_BYTES && size != in->count * esize)
        return kinfer_codec_fail(
            d, KINFER_ERR_INVALID,
            "inputs[%zu].parameters.binary_data_size: %zu bytes, but shape "
            "%s of %s takes %zu",
            in->index, size, text, kinfer_dtype_name(in->dtype),
            in->count * esize);

    enum kinfer_err rc =
        kinfer_tensor_init(t, in->name, in->dtype, in->ndim, in->shape);
    if (rc == KINFER_ERR_NOMEM)
        return kinfer_codec_fail_nomem(d);
    if (rc != KINFER_OK)
        return kinfer_codec_fail(d, rc, "inputs[%zu]: cannot create the tensor",
                                 in->index);
    if (in->dtype == KINFER_DTYPE_BYTES) {
        size_t at = 0;
        for (size_t k = 0; k < in->count; k++) {
            if (size - at < 4)
                return kinfer_codec_fail(
                    d, KINFER_ERR_INVALID,
                    "inputs[%zu]: binary BYTES element %zu: its 4-byte "
                    "length is past the %zu bytes of binary_data_size",
                    in->index, k, size);
            uint32_t n = read_le32(p + at);
            at += 4;
            if (n > size - at)
                return kinfer_codec_fail(
                    d, KINFER_ERR_INVALID,
                    "inputs[%zu]: binary BYTES element %zu: %" PRIu32
                    " bytes, past the %zu bytes of binary_data_size",
                    in->index, k, n, size);
            rc = kinfer_tensor_set_bytes(t, k, (const char *)p + at, n);
            if (rc != KINFER_OK)
                return kinfer_codec_fail_nomem(d);
            at += n;
        }
        if (at != size)
            return kinfer_codec_fail(
                d, KINFER_ERR_INVALID,
                "inputs[%zu]: binary BYTES: %zu elements take %zu bytes, "
                "binary_data_size says %zu",
                in->index, in->count, at, size);
    } else {
        if (size > 0)
            memcpy(t->data, p, size);
        if (in->dtype == KINFER_DTYPE_BOOL)
            for (size_t k = 0; k < in->count; k++)
                if (p[k] > 1)
                    return kinfer_codec_fail(
                        d, KINFER_ERR_INVALID,
                        "inputs[%zu]: binary BOOL element %zu is %u, not 0 "
                        "or 1",
                        in->index, k, p[k]);
    }
    d->bin_used += size;
    return KINFER_OK;
}
