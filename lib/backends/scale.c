/* Backend "scale": multiplies every element of every input by
 * parameters.factor (default 2) and returns one output per input with the
 * same name, shape and datatype.  Used by the demo, the tests and the
 * benchmarks.  Like the other built-in backends it reaches kinfer only
 * through the host table.
 *
 * Threads: the model is immutable after create; infer is reentrant.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"

struct scale_model {
    const struct kinfer_host *host; /* borrowed: outlives every model */
};

static enum kinfer_err scale_create(const struct kinfer_host *host,
                                    const char *dir, const char *config,
                                    void **model, char *err, size_t errsize)
{
    (void)dir;
    (void)config;
    struct scale_model *m = malloc(sizeof *m);
    if (m == NULL) {
        snprintf(err, errsize, "scale: out of memory");
        return KINFER_ERR_NOMEM;
    }
    m->host = host;
    *model = m;
    return KINFER_OK;
}

static void scale_destroy(void *model)
{
    free(model);
}

static void scale_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void scale_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(err, errsize, fmt, ap) < 0 && errsize > 0)
        err[0] = '\0';
    va_end(ap);
}

/* The request's "factor" parameter, or NULL. */
static const struct kinfer_param *scale_factor(const struct kinfer_request *r)
{
    for (size_t i = 0; i < r->n_params; i++)
        if (strcmp(r->params[i].name, "factor") == 0)
            return &r->params[i];
    return NULL;
}

/* A finite element whose product is not finite overflows the type. */
static int scale_fp32(const struct kinfer_tensor *in, float *b, double f,
                      char *err, size_t errsize)
{
    const float *a = in->data;
    for (size_t i = 0; i < in->count; i++) {
        b[i] = (float)(a[i] * f);
        if (!isfinite(b[i]) && isfinite(a[i])) {
            scale_err(err, errsize,
                      "input '%s': element %zu times %g overflows FP32",
                      in->name, i, f);
            return -1;
        }
    }
    return 0;
}

static int scale_fp64(const struct kinfer_tensor *in, double *b, double f,
                      char *err, size_t errsize)
{
    const double *a = in->data;
    for (size_t i = 0; i < in->count; i++) {
        b[i] = a[i] * f;
        if (!isfinite(b[i]) && isfinite(a[i])) {
            scale_err(err, errsize,
                      "input '%s': element %zu times %g overflows FP64",
                      in->name, i, f);
            return -1;
        }
    }
    return 0;
}

/* Integer tensors: exact products, or -1 when one leaves the type. */
static int scale_ints(const struct kinfer_tensor *in, void *out, int64_t f)
{
    int64_t r;
    if (in->dtype == KINFER_DTYPE_INT64) {
        const int64_t *a = in->data;
        for (size_t i = 0; i < in->count; i++) {
            if (__builtin_mul_overflow(a[i], f, &r))
                return -1;
            ((int64_t *)out)[i] = r;
        }
        return 0;
    }
    const int32_t *a = in->data;
    for (size_t i = 0; i < in->count; i++) {
        if (__builtin_mul_overflow((int64_t)a[i], f, &r) || r < INT32_MIN ||
            r > INT32_MAX)
            return -1;
        ((int32_t *)out)[i] = (int32_t)r;
    }
    return 0;
}

static int scale_converted(const struct kinfer_host *host,
                           const struct kinfer_tensor *in,
                           struct kinfer_tensor *out,
                           const struct kinfer_param *factor, char *err,
                           size_t errsize);

/* Scale input in into out (initialised here).  factor NULL means 2. */
static int scale_one(const struct kinfer_host *host,
                     const struct kinfer_tensor *in, struct kinfer_tensor *out,
                     const struct kinfer_param *factor, char *err,
                     size_t errsize)
{
    double f = factor ? factor->number : 2.0;
    int is_int = factor ? factor->is_integer : 1;
    int64_t fi = factor ? factor->integer : 2;
    const char *dtype = host->dtype_name(in->dtype);

    if (host->tensor_init(out, in->name, in->dtype, in->ndim, in->shape) !=
        KINFER_OK) {
        scale_err(err, errsize, "input '%s': out of memory", in->name);
        return -1;
    }
    switch (in->dtype) {
    case KINFER_DTYPE_FP32:
        return scale_fp32(in, out->data, f, err, errsize);
    case KINFER_DTYPE_FP64:
        return scale_fp64(in, out->data, f, err, errsize);
    case KINFER_DTYPE_INT32:
    case KINFER_DTYPE_INT64:
        if (!is_int) {
            scale_err(err, errsize,
                      "parameters.factor: must be an integer for %s input "
                      "'%s', got %g",
                      dtype, in->name, f);
            return -1;
        }
        if (scale_ints(in, out->data, fi) == 0)
            return 0;
        scale_err(err, errsize, "input '%s': result overflows %s", in->name,
                  dtype);
        return -1;
    case KINFER_DTYPE_BOOL:
    case KINFER_DTYPE_BYTES:
    case KINFER_DTYPE_INVALID:
        break;
    default:
        return scale_converted(host, in, out, factor, err, errsize);
    }
    scale_err(err, errsize,
              "input '%s': scale takes numbers (UINT8 .. UINT64, INT8 .. "
              "INT64, FP16, BF16, FP32, FP64), not %s",
              in->name, dtype);
    return -1;
}

/* UINT64 elements times a whole factor f, which must keep them in range. */
static int scale_uint64(const struct kinfer_host *host,
                        const struct kinfer_tensor *in,
                        struct kinfer_tensor *out, int64_t f, char *err,
                        size_t errsize)
{
    if (host->tensor_init(out, in->name, in->dtype, in->ndim, in->shape) !=
        KINFER_OK) {
        scale_err(err, errsize, "input '%s': out of memory", in->name);
        return -1;
    }
    const uint64_t *a = in->data;
    uint64_t *b = out->data;
    for (size_t i = 0; i < in->count; i++)
        if ((f < 0 && a[i] != 0) ||
            __builtin_mul_overflow(a[i], (uint64_t)(f < 0 ? 0 : f), &b[i])) {
            scale_err(err, errsize, "input '%s': result overflows UINT64",
                      in->name);
            return -1;
        }
    return 0;
}

/* The other numeric types, through the host's exact conversions: the
 * integers as INT64, FP16 and BF16 as FP64, and back, so the product must
 * fit the input's type. */
static int scale_converted(const struct kinfer_host *host,
                           const struct kinfer_tensor *in,
                           struct kinfer_tensor *out,
                           const struct kinfer_param *factor, char *err,
                           size_t errsize)
{
    enum kinfer_dtype wide_type =
        in->dtype == KINFER_DTYPE_FP16 || in->dtype == KINFER_DTYPE_BF16
            ? KINFER_DTYPE_FP64
            : KINFER_DTYPE_INT64;
    struct kinfer_tensor wide, scaled;
    char why[200];
    host->tensor_free(out);
    if (wide_type == KINFER_DTYPE_INT64 && factor != NULL &&
        !factor->is_integer) {
        scale_err(err, errsize,
                  "parameters.factor: must be an integer for %s input '%s', "
                  "got %g",
                  host->dtype_name(in->dtype), in->name, factor->number);
        return -1;
    }
    if (in->dtype == KINFER_DTYPE_UINT64) /* beyond INT64: on its own */
        return scale_uint64(host, in, out, factor ? factor->integer : 2, err,
                            errsize);
    if (host->tensor_convert(&wide, in, wide_type, why, sizeof why) !=
        KINFER_OK) {
        scale_err(err, errsize, "input '%s': %s", in->name, why);
        return -1;
    }
    int rc = scale_one(host, &wide, &scaled, factor, err, errsize);
    host->tensor_free(&wide);
    if (rc != 0) {
        host->tensor_free(&scaled);
        return rc;
    }
    if (host->tensor_convert(out, &scaled, in->dtype, why, sizeof why) !=
        KINFER_OK) {
        scale_err(err, errsize, "input '%s': the result does not fit: %s",
                  in->name, why);
        rc = -1;
    }
    host->tensor_free(&scaled);
    return rc;
}

static enum kinfer_err scale_infer(void *model, struct kinfer_infer_item *items,
                                   size_t n)
{
    const struct scale_model *m = model;
    for (size_t k = 0; k < n; k++) {
        struct kinfer_infer_item *it = &items[k];
        const struct kinfer_request *req = it->request;
        const struct kinfer_param *factor = scale_factor(req);
        if (factor != NULL && factor->kind != KINFER_PARAM_NUMBER) {
            it->failed = 1;
            scale_err(it->error, sizeof it->error,
                      "parameters.factor: expected a number");
            continue;
        }
        it->outputs = m->host->alloc(req->n_inputs * sizeof *it->outputs);
        if (it->outputs == NULL)
            return KINFER_ERR_NOMEM;
        it->n_outputs = req->n_inputs;
        for (size_t i = 0; i < req->n_inputs; i++) {
            if (scale_one(m->host, &req->inputs[i], &it->outputs[i], factor,
                          it->error, sizeof it->error) != 0) {
                it->failed = 1;
                break;
            }
        }
    }
    return KINFER_OK;
}

static const struct kinfer_backend scale_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = "scale",
    .create = scale_create,
    .infer = scale_infer,
    .destroy = scale_destroy,
};

const struct kinfer_backend *kinfer_backend_scale(void)
{
    return &scale_backend;
}
