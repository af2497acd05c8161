/* Tensors as kinfer passes them between the codec and the models: a name,
 * a datatype, a shape and a flat row-major buffer.  Part of the backend ABI
 * (model.h): the layout of struct kinfer_tensor is frozen per
 * KINFER_BACKEND_ABI_VERSION.
 */
#ifndef KINFER_TENSOR_H
#define KINFER_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KINFER_MAX_DIMS 8

enum kinfer_dtype {
    KINFER_DTYPE_INVALID = 0,
    KINFER_DTYPE_BOOL, /* one byte per element, 0 or 1 */
    KINFER_DTYPE_INT32,
    KINFER_DTYPE_INT64,
    KINFER_DTYPE_FP32,
    KINFER_DTYPE_FP64,
    KINFER_DTYPE_BYTES /* elements are struct kinfer_bytes */
};

/* One element of a BYTES tensor: len bytes at data, not NUL-terminated
 * (a NUL is kept one past the end for convenience). */
struct kinfer_bytes {
    char *data;
    size_t len;
};

struct kinfer_tensor {
    char *name; /* owned, NUL-terminated */
    enum kinfer_dtype dtype;
    int ndim; /* 0 .. KINFER_MAX_DIMS */
    int64_t shape[KINFER_MAX_DIMS];
    size_t count; /* product of shape; 1 when ndim == 0 */
    void *data;   /* owned; count elements of dtype */
};

/* "FP32", "INT64", ... (the Open Inference Protocol names); "INVALID" for
 * anything else.  Static string. */
const char *kinfer_dtype_name(enum kinfer_dtype dtype);

/* The dtype named name (exact, upper case), or KINFER_DTYPE_INVALID. */
enum kinfer_dtype kinfer_dtype_from_name(const char *name);

/* Bytes per element: 1, 4 or 8, sizeof(struct kinfer_bytes) for BYTES,
 * 0 for INVALID. */
size_t kinfer_dtype_size(enum kinfer_dtype dtype);

/* Initialise t (contents ignored) as a tensor called name with the given
 * shape, and allocate zeroed storage for its elements.  BYTES elements start
 * empty (data NULL, len 0).  Returns KINFER_ERR_INVALID for a bad dtype or
 * ndim, a negative dimension, or an element count that overflows;
 * KINFER_ERR_NOMEM when allocation fails.  On error t is left empty (safe to
 * pass to kinfer_tensor_clear). */
enum kinfer_err kinfer_tensor_init(struct kinfer_tensor *t, const char *name,
                                   enum kinfer_dtype dtype, int ndim,
                                   const int64_t *shape)
    __attribute__((warn_unused_result));

/* Set element i of a BYTES tensor to a copy of len bytes at src. */
enum kinfer_err kinfer_tensor_set_bytes(struct kinfer_tensor *t, size_t i,
                                        const char *src, size_t len)
    __attribute__((warn_unused_result));

/* Free what t owns and leave it empty.  t == NULL is a no-op. */
void kinfer_tensor_clear(struct kinfer_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
