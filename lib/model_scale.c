/* The built-in "scale" backend: multiplies every element of every input by
 * parameters.factor (default 2) and returns one output per input with the
 * same name, shape and datatype.  Used by the demo, the tests and the
 * benchmarks; stateless, so infer is trivially thread-safe. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/request.h"
#include "model_builtin.h"
#include "util.h"

/* A non-NULL handle so the registry can tell "created" apart. */
static int scale_handle;

static enum kinfer_err scale_create(const struct kinfer_host *h,
                                    const char *dir, const char *config,
                                    void **model, char *err, size_t errsize)
{
    (void)h;
    (void)dir;
    (void)config;
    (void)err;
    (void)errsize;
    *model = &scale_handle;
    return KINFER_OK;
}

static void scale_destroy(void *model)
{
    (void)model;
}

/* Multiply integers with overflow detection; the factor must be an
 * integer for integer tensors. */
static int scale_int64(const int64_t *in, int64_t *out, size_t n, int64_t f,
                       int64_t lo, int64_t hi)
{
    for (size_t i = 0; i < n; i++) {
        int64_t r;
        if (__builtin_mul_overflow(in[i], f, &r) || r < lo || r > hi)
            return -1;
        out[i] = r;
    }
    return 0;
}

static int scale_one(const struct kinfer_tensor *in, struct kinfer_tensor *out,
                     const struct kinfer_param *factor, char *err,
                     size_t errsize)
{
    double f = factor ? factor->number : 2.0;
    int is_int = factor ? factor->is_integer : 1;
    int64_t fi = factor ? factor->integer : 2;

    if (kinfer_tensor_init(out, in->name, in->dtype, in->ndim, in->shape) !=
        KINFER_OK) {
        kinfer_fmt(err, errsize, "input '%s': out of memory", in->name);
        return -1;
    }
    switch (in->dtype) {
    case KINFER_DTYPE_FP32: {
        const float *a = in->data;
        float *b = out->data;
        for (size_t i = 0; i < in->count; i++) {
            b[i] = (float)(a[i] * f);
            if (!isfinite(b[i]) && isfinite(a[i])) {
                kinfer_fmt(err, errsize,
                           "input '%s': element %zu times %g overflows "
                           "FP32",
                           in->name, i, f);
                return -1;
            }
        }
        return 0;
    }
    case KINFER_DTYPE_FP64: {
        const double *a = in->data;
        double *b = out->data;
        for (size_t i = 0; i < in->count; i++) {
            b[i] = a[i] * f;
            if (!isfinite(b[i]) && isfinite(a[i])) {
                kinfer_fmt(err, errsize,
                           "input '%s': element %zu times %g overflows "
                           "FP64",
                           in->name, i, f);
                return -1;
            }
        }
        return 0;
    }
    case KINFER_DTYPE_INT32:
    case KINFER_DTYPE_INT64:
        if (!is_int) {
            kinfer_fmt(err, errsize,
                       "parameters.factor: must be an integer for %s input "
                       "'%s', got %g",
                       kinfer_dtype_name(in->dtype), in->name, f);
            return -1;
        }
        if (in->dtype == KINFER_DTYPE_INT64) {
            if (scale_int64(in->data, out->data, in->count, fi, INT64_MIN,
                            INT64_MAX) == 0)
                return 0;
        } else {
            const int32_t *a = in->data;
            int32_t *b = out->data;
            size_t i;
            for (i = 0; i < in->count; i++) {
                int64_t r;
                if (__builtin_mul_overflow((int64_t)a[i], fi, &r) ||
                    r < INT32_MIN || r > INT32_MAX)
                    break;
                b[i] = (int32_t)r;
            }
            if (i == in->count)
                return 0;
        }
        kinfer_fmt(err, errsize, "input '%s': result overflows %s", in->name,
                   kinfer_dtype_name(in->dtype));
        return -1;
    default:
        kinfer_fmt(err, errsize,
                   "input '%s': scale supports FP32, FP64, INT32 and INT64, "
                   "not %s",
                   in->name, kinfer_dtype_name(in->dtype));
        return -1;
    }
}

static enum kinfer_err scale_infer(void *model, struct kinfer_infer_item *items,
                                   size_t n)
{
    (void)model;
    for (size_t k = 0; k < n; k++) {
        struct kinfer_infer_item *it = &items[k];
        const struct kinfer_request *req = it->request;
        const struct kinfer_param *factor = kinfer_request_param(req, "factor");
        if (factor != NULL && factor->kind != KINFER_PARAM_NUMBER) {
            it->failed = 1;
            kinfer_fmt(it->error, sizeof it->error,
                       "parameters.factor: expected a number");
            continue;
        }
        it->outputs =
            calloc(req->n_inputs ? req->n_inputs : 1, sizeof *it->outputs);
        if (it->outputs == NULL)
            return KINFER_ERR_NOMEM;
        it->n_outputs = req->n_inputs;
        for (size_t i = 0; i < req->n_inputs; i++) {
            if (scale_one(&req->inputs[i], &it->outputs[i], factor, it->error,
                          sizeof it->error) != 0) {
                it->failed = 1;
                break;
            }
        }
    }
    return KINFER_OK;
}

const struct kinfer_backend kinfer_backend_scale = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = "scale",
    .create = scale_create,
    .infer = scale_infer,
    .destroy = scale_destroy,
};
