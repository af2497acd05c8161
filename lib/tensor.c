/* Tensors: datatype names and sizes, and the owned storage behind struct
 * kinfer_tensor.  The codec fills tensors from requests, models read and
 * write them; every size here may come from a request, so every product is
 * checked for overflow and allocation failure is reported, not fatal.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/host.h"
#include "kinfer/tensor.h"

static const struct {
    enum kinfer_dtype dtype;
    const char *name;
    size_t size;
} dtypes[] = {
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

#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *kinfer_dtype_name(enum kinfer_dtype dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == dtype)
            return dtypes[i].name;
    return "INVALID";
}

enum kinfer_dtype kinfer_dtype_from_name(const char *name)
{
    if (name == NULL)
        return KINFER_DTYPE_INVALID;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return dtypes[i].dtype;
    return KINFER_DTYPE_INVALID;
}

size_t kinfer_dtype_size(enum kinfer_dtype dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == dtype)
            return dtypes[i].size;
    return 0;
}

enum kinfer_err kinfer_tensor_init(struct kinfer_tensor *t, const char *name,
                                   enum kinfer_dtype dtype, int ndim,
                                   const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    size_t elemsize = kinfer_dtype_size(dtype);
    if (name == NULL || elemsize == 0 || ndim < 0 || ndim > KINFER_MAX_DIMS ||
        (ndim > 0 && shape == NULL))
        return KINFER_ERR_INVALID;

    /* A zero dimension makes the product 0 however large the others are,
     * so only a product of non-zero dimensions can overflow. */
    size_t count = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return KINFER_ERR_INVALID;
        if ((uint64_t)shape[i] > SIZE_MAX)
            overflow = 1;
        else if (shape[i] == 0)
            count = 0;
        else if (count > SIZE_MAX / (size_t)shape[i])
            overflow = 1;
        else
            count *= (size_t)shape[i];
    }
    if (count != 0 && (overflow || count > SIZE_MAX / elemsize))
        return KINFER_ERR_INVALID;

    size_t namelen = strlen(name);
    char *namecopy = malloc(namelen + 1);
    /* An empty tensor still gets a buffer, so data is never NULL and
     * memcpy(dst, t->data, 0) stays defined for callers. */
    void *data = calloc(count ? count : 1, elemsize);
    if (namecopy == NULL || data == NULL) {
        free(namecopy);
        free(data);
        return KINFER_ERR_NOMEM;
    }
    memcpy(namecopy, name, namelen + 1);

    t->name = namecopy;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->count = count;
    t->data = data;
    return KINFER_OK;
}

enum kinfer_err kinfer_tensor_set_bytes(struct kinfer_tensor *t, size_t i,
                                        const char *src, size_t len)
{
    if (t == NULL || t->dtype != KINFER_DTYPE_BYTES || t->data == NULL ||
        i >= t->count || (src == NULL && len > 0) || len == SIZE_MAX)
        return KINFER_ERR_INVALID;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return KINFER_ERR_NOMEM;
    if (len > 0)
        memcpy(copy, src, len);
    copy[len] = '\0';

    struct kinfer_bytes *elem = (struct kinfer_bytes *)t->data + i;
    free(elem->data);
    elem->data = copy;
    elem->len = len;
    return KINFER_OK;
}

void kinfer_tensor_clear(struct kinfer_tensor *t)
{
    if (t == NULL)
        return;
    if (t->dtype == KINFER_DTYPE_BYTES && t->data != NULL) {
        struct kinfer_bytes *elems = t->data;
        for (size_t i = 0; i < t->count; i++)
            free(elems[i].data);
    }
    free(t->data);
    free(t->name);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------ */
/* FP16 and BF16                                                      */

/* A 16-bit binary float: mantissa bits, exponent bias, and the exponent
 * field of infinities and NaNs. */
struct half_fmt {
    int mbits, bias, emax;
};

static const struct half_fmt fmt_fp16 = {10, 15, 31};
static const struct half_fmt fmt_bf16 = {7, 127, 255};

static const struct half_fmt *half_fmt(enum kinfer_dtype dtype)
{
    return dtype == KINFER_DTYPE_FP16   ? &fmt_fp16
           : dtype == KINFER_DTYPE_BF16 ? &fmt_bf16
                                        : NULL;
}

/* The element nearest (ties to even) to (-1)^neg * sig * 2^exp2, rounded
 * once from the exact value; +-infinity beyond the range. */
static uint16_t half_round(const struct half_fmt *f, int neg, uint64_t sig,
                           int exp2)
{
    uint16_t sign = neg ? 0x8000 : 0;
    if (sig == 0)
        return sign;
    int lead = exp2 + 63 - __builtin_clzll(sig); /* exponent of the top bit */
    int q = lead - f->mbits;                     /* exponent of the last bit */
    int qmin = 1 - f->bias - f->mbits;           /* ... of a subnormal */
    if (q < qmin)
        q = qmin;
    int shift = q - exp2;
    uint64_t h;
    if (shift <= 0) {
        h = sig << -shift; /* exact: fewer than mbits + 1 bits */
    } else if (shift > 64) {
        h = 0; /* below half the smallest step */
    } else {
        uint64_t rem = shift == 64 ? sig : sig & ((UINT64_C(1) << shift) - 1);
        uint64_t halfway = UINT64_C(1) << (shift - 1);
        h = shift == 64 ? 0 : sig >> shift;
        if (rem > halfway || (rem == halfway && (h & 1)))
            h++;
    }
    if (h >> (f->mbits + 1)) { /* rounding carried into a new bit */
        h >>= 1;
        q++;
    }
    if (h >> f->mbits == 0) /* subnormal (or zero) */
        return sign | (uint16_t)h;
    int be = q + f->mbits + f->bias;
    if (be >= f->emax)
        return sign | (uint16_t)(f->emax << f->mbits);
    return sign | (uint16_t)(be << f->mbits) |
           (uint16_t)(h & ((UINT64_C(1) << f->mbits) - 1));
}

static int half_is_inf(const struct half_fmt *f, uint16_t h)
{
    return (h & 0x7fff) == (uint16_t)(f->emax << f->mbits);
}

static uint16_t half_from_double(const struct half_fmt *f, double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    int neg = (int)(u >> 63);
    int e = (int)(u >> 52 & 0x7ff);
    uint64_t m = u & ((UINT64_C(1) << 52) - 1);
    if (e == 0x7ff) /* infinity, or a quiet NaN */
        return (uint16_t)((neg ? 0x8000 : 0) | f->emax << f->mbits |
                          (m ? 1 << (f->mbits - 1) : 0));
    if (e == 0)
        return half_round(f, neg, m, -1074);
    return half_round(f, neg, m | UINT64_C(1) << 52, e - 1075);
}

static double half_to_double(const struct half_fmt *f, uint16_t h)
{
    int be = h >> f->mbits & f->emax;
    unsigned m = h & ((1u << f->mbits) - 1);
    double v;
    if (be == f->emax)
        v = m ? NAN : INFINITY;
    else if (be == 0)
        v = ldexp(m, 1 - f->bias - f->mbits);
    else
        v = ldexp(m | 1u << f->mbits, be - f->bias - f->mbits);
    return h & 0x8000 ? -v : v;
}

double kinfer_half_to_double(enum kinfer_dtype dtype, uint16_t bits)
{
    const struct half_fmt *f = half_fmt(dtype);
    return f ? half_to_double(f, bits) : NAN;
}

uint16_t kinfer_half_from_double(enum kinfer_dtype dtype, double v)
{
    const struct half_fmt *f = half_fmt(dtype);
    return f ? half_from_double(f, v) : 0;
}

float kinfer_half_to_float(enum kinfer_dtype dtype, uint16_t bits)
{
    return (float)kinfer_half_to_double(dtype, bits); /* exact */
}

uint16_t kinfer_float_to_half(enum kinfer_dtype dtype, float v)
{
    return kinfer_half_from_double(dtype, v);
}

/* ------------------------------------------------------------------ */
/* Elements as numbers                                                */

/* The smallest magnitude that rounds to infinity as a float: FLT_MAX plus
 * half a step.  Below it a value rounds to at most FLT_MAX. */
#define FP32_LIMIT 0x1.ffffffp127

enum kinfer_put kinfer_tensor_put_int(struct kinfer_tensor *t, size_t k,
                                      int64_t v)
{
    void *d = t->data;
    switch (t->dtype) {
    case KINFER_DTYPE_BOOL:
        if (v != 0 && v != 1)
            return KINFER_PUT_RANGE;
        ((uint8_t *)d)[k] = (uint8_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_INT8:
        if (v < INT8_MIN || v > INT8_MAX)
            return KINFER_PUT_RANGE;
        ((int8_t *)d)[k] = (int8_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_INT16:
        if (v < INT16_MIN || v > INT16_MAX)
            return KINFER_PUT_RANGE;
        ((int16_t *)d)[k] = (int16_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_INT32:
        if (v < INT32_MIN || v > INT32_MAX)
            return KINFER_PUT_RANGE;
        ((int32_t *)d)[k] = (int32_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_INT64:
        ((int64_t *)d)[k] = v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_UINT8:
        if (v < 0 || v > UINT8_MAX)
            return KINFER_PUT_RANGE;
        ((uint8_t *)d)[k] = (uint8_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_UINT16:
        if (v < 0 || v > UINT16_MAX)
            return KINFER_PUT_RANGE;
        ((uint16_t *)d)[k] = (uint16_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_UINT32:
        if (v < 0 || v > UINT32_MAX)
            return KINFER_PUT_RANGE;
        ((uint32_t *)d)[k] = (uint32_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_UINT64:
        if (v < 0)
            return KINFER_PUT_RANGE;
        ((uint64_t *)d)[k] = (uint64_t)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP32:
        ((float *)d)[k] = (float)v; /* one rounding, from the integer */
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP64:
        ((double *)d)[k] = (double)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP16:
    case KINFER_DTYPE_BF16: {
        const struct half_fmt *f = half_fmt(t->dtype);
        uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        uint16_t h = half_round(f, v < 0, mag, 0);
        if (half_is_inf(f, h))
            return KINFER_PUT_RANGE;
        ((uint16_t *)d)[k] = h;
        return KINFER_PUT_OK;
    }
    case KINFER_DTYPE_BYTES:
    case KINFER_DTYPE_INVALID:
        break;
    }
    return KINFER_PUT_TYPE;
}

enum kinfer_put kinfer_tensor_put_uint(struct kinfer_tensor *t, size_t k,
                                       uint64_t v)
{
    if (v <= INT64_MAX)
        return kinfer_tensor_put_int(t, k, (int64_t)v);
    switch (t->dtype) {
    case KINFER_DTYPE_UINT64:
        ((uint64_t *)t->data)[k] = v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP32:
        ((float *)t->data)[k] = (float)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP64:
        ((double *)t->data)[k] = (double)v;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP16:
    case KINFER_DTYPE_BF16: {
        const struct half_fmt *f = half_fmt(t->dtype);
        uint16_t h = half_round(f, 0, v, 0);
        if (half_is_inf(f, h))
            return KINFER_PUT_RANGE;
        ((uint16_t *)t->data)[k] = h;
        return KINFER_PUT_OK;
    }
    case KINFER_DTYPE_BYTES:
    case KINFER_DTYPE_INVALID:
        return KINFER_PUT_TYPE;
    default:
        return KINFER_PUT_RANGE;
    }
}

enum kinfer_put kinfer_tensor_put_real(struct kinfer_tensor *t, size_t k,
                                       double x)
{
    switch (t->dtype) {
    case KINFER_DTYPE_FP32:
        if (!isnan(x) && !isinf(x) && fabs(x) >= FP32_LIMIT)
            return KINFER_PUT_RANGE;
        /* Just above FLT_MAX still rounds to it; the cast would be
         * undefined. */
        if (!isinf(x) && fabs(x) > FLT_MAX)
            x = x > 0 ? FLT_MAX : -FLT_MAX;
        ((float *)t->data)[k] = (float)x;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP64:
        ((double *)t->data)[k] = x;
        return KINFER_PUT_OK;
    case KINFER_DTYPE_FP16:
    case KINFER_DTYPE_BF16: {
        const struct half_fmt *f = half_fmt(t->dtype);
        uint16_t h = half_from_double(f, x);
        if (!isinf(x) && half_is_inf(f, h))
            return KINFER_PUT_RANGE;
        ((uint16_t *)t->data)[k] = h;
        return KINFER_PUT_OK;
    }
    case KINFER_DTYPE_BYTES:
    case KINFER_DTYPE_INVALID:
        return KINFER_PUT_TYPE;
    default:
        break;
    }
    /* The integer types and BOOL: whole values in range only. */
    if (isnan(x) || isinf(x))
        return KINFER_PUT_RANGE;
    if (x != trunc(x))
        return KINFER_PUT_FRACTION;
    if (x >= -0x1p63 && x < 0x1p63)
        return kinfer_tensor_put_int(t, k, (int64_t)x);
    if (x >= 0x1p63 && x < 0x1p64)
        return kinfer_tensor_put_uint(t, k, (uint64_t)x);
    return KINFER_PUT_RANGE;
}

enum kinfer_put kinfer_tensor_put_number(struct kinfer_tensor *t, size_t k,
                                         const struct kinfer_number *v)
{
    switch (v->kind) {
    case KINFER_NUM_INT:
        return kinfer_tensor_put_int(t, k, v->i);
    case KINFER_NUM_UINT:
        return kinfer_tensor_put_uint(t, k, v->u);
    case KINFER_NUM_REAL:
        break;
    }
    return kinfer_tensor_put_real(t, k, v->d);
}

int kinfer_tensor_get_number(const struct kinfer_tensor *t, size_t k,
                             struct kinfer_number *v)
{
    const void *d = t->data;
    memset(v, 0, sizeof *v);
    v->kind = KINFER_NUM_INT;
    switch (t->dtype) {
    case KINFER_DTYPE_BOOL:
    case KINFER_DTYPE_UINT8:
        v->i = ((const uint8_t *)d)[k];
        return 0;
    case KINFER_DTYPE_INT8:
        v->i = ((const int8_t *)d)[k];
        return 0;
    case KINFER_DTYPE_INT16:
        v->i = ((const int16_t *)d)[k];
        return 0;
    case KINFER_DTYPE_UINT16:
        v->i = ((const uint16_t *)d)[k];
        return 0;
    case KINFER_DTYPE_INT32:
        v->i = ((const int32_t *)d)[k];
        return 0;
    case KINFER_DTYPE_UINT32:
        v->i = ((const uint32_t *)d)[k];
        return 0;
    case KINFER_DTYPE_INT64:
        v->i = ((const int64_t *)d)[k];
        return 0;
    case KINFER_DTYPE_UINT64: {
        uint64_t u = ((const uint64_t *)d)[k];
        if (u > INT64_MAX) {
            v->kind = KINFER_NUM_UINT;
            v->u = u;
        } else {
            v->i = (int64_t)u;
        }
        return 0;
    }
    case KINFER_DTYPE_FP32:
        v->kind = KINFER_NUM_REAL;
        v->d = ((const float *)d)[k];
        return 0;
    case KINFER_DTYPE_FP64:
        v->kind = KINFER_NUM_REAL;
        v->d = ((const double *)d)[k];
        return 0;
    case KINFER_DTYPE_FP16:
    case KINFER_DTYPE_BF16:
        v->kind = KINFER_NUM_REAL;
        v->d = half_to_double(half_fmt(t->dtype), ((const uint16_t *)d)[k]);
        return 0;
    case KINFER_DTYPE_BYTES:
    case KINFER_DTYPE_INVALID:
        break;
    }
    return -1;
}

/* v as text for a message. */
static void number_text(char *buf, size_t size, const struct kinfer_number *v,
                        enum kinfer_dtype from)
{
    if (v->kind == KINFER_NUM_INT)
        snprintf(buf, size, "%" PRId64, v->i);
    else if (v->kind == KINFER_NUM_UINT)
        snprintf(buf, size, "%" PRIu64, v->u);
    else
        snprintf(buf, size, "%.*g", from == KINFER_DTYPE_FP64 ? 17 : 9, v->d);
}

static void conv_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conv_err(char *err, size_t errsize, const char *fmt, ...)
{
    if (err == NULL || errsize == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

enum kinfer_err kinfer_tensor_convert(struct kinfer_tensor *dst,
                                      const struct kinfer_tensor *src,
                                      enum kinfer_dtype dtype, char *err,
                                      size_t errsize)
{
    if (dst == NULL)
        return KINFER_ERR_INVALID;
    memset(dst, 0, sizeof *dst);
    if (src == NULL || src->name == NULL || kinfer_dtype_size(dtype) == 0 ||
        kinfer_dtype_size(src->dtype) == 0) {
        conv_err(err, errsize, "cannot convert: invalid tensor or datatype");
        return KINFER_ERR_INVALID;
    }
    const char *from = kinfer_dtype_name(src->dtype);
    const char *to = kinfer_dtype_name(dtype);
    if ((src->dtype == KINFER_DTYPE_BYTES) != (dtype == KINFER_DTYPE_BYTES)) {
        conv_err(err, errsize, "%s cannot be converted to %s", from, to);
        return KINFER_ERR_INVALID;
    }
    enum kinfer_err rc =
        kinfer_tensor_init(dst, src->name, dtype, src->ndim, src->shape);
    if (rc != KINFER_OK) {
        conv_err(err, errsize, "%s",
                 rc == KINFER_ERR_NOMEM ? "out of memory"
                                        : "cannot convert: invalid shape");
        return rc;
    }
    if (dst->count != src->count || (src->count > 0 && src->data == NULL)) {
        kinfer_tensor_clear(dst);
        conv_err(err, errsize, "cannot convert: count does not match shape");
        return KINFER_ERR_INVALID;
    }
    if (dtype == KINFER_DTYPE_BYTES) {
        const struct kinfer_bytes *e = src->data;
        for (size_t k = 0; k < src->count; k++) {
            rc = kinfer_tensor_set_bytes(dst, k, e[k].data, e[k].len);
            if (rc != KINFER_OK) {
                kinfer_tensor_clear(dst);
                conv_err(err, errsize, "element %zu: cannot copy", k);
                return rc;
            }
        }
        return KINFER_OK;
    }
    if (dtype == src->dtype) {
        if (src->count > 0)
            memcpy(dst->data, src->data, src->count * kinfer_dtype_size(dtype));
        return KINFER_OK;
    }
    for (size_t k = 0; k < src->count; k++) {
        struct kinfer_number v;
        kinfer_tensor_get_number(src, k, &v);
        enum kinfer_put put = kinfer_tensor_put_number(dst, k, &v);
        if (put == KINFER_PUT_OK)
            continue;
        char text[40];
        number_text(text, sizeof text, &v, src->dtype);
        kinfer_tensor_clear(dst);
        if (dtype == KINFER_DTYPE_BOOL)
            conv_err(err, errsize, "element %zu: %s %s is not 0 or 1 for BOOL",
                     k, from, text);
        else if (put == KINFER_PUT_FRACTION)
            conv_err(err, errsize,
                     "element %zu: %s %s has a fraction; %s "
                     "holds whole numbers",
                     k, from, text, to);
        else
            conv_err(err, errsize, "element %zu: %s %s is out of range for %s",
                     k, from, text, to);
        return KINFER_ERR_INVALID;
    }
    return KINFER_OK;
}
