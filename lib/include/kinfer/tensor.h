/* Tensors as kinfer passes them between the codec and the models: a name,
 * a datatype, a shape and a flat row-major buffer.  Part of the backend ABI
 * (backend.h): the layout of struct kinfer_tensor is frozen per
 * KINFER_BACKEND_ABI_VERSION.  This header holds only types, so a plugin
 * may include it; the functions that work on tensors (create, fill, free)
 * are the host's, in host.h, and reach a plugin through struct kinfer_host.
 *
 * Threads: a tensor has no lock of its own.  One thread fills it; once it
 * is handed on (to a backend, to the encoder) it is only read, and any
 * number of threads may read it at once.
 */
#ifndef KINFER_TENSOR_H
#define KINFER_TENSOR_H

#include <stddef.h>
#include <stdint.h>

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
    KINFER_DTYPE_BYTES, /* elements are struct kinfer_bytes */
    /* Added in ABI 2, after the others so their numbers stay. */
    KINFER_DTYPE_UINT8,
    KINFER_DTYPE_UINT16,
    KINFER_DTYPE_UINT32,
    KINFER_DTYPE_UINT64,
    KINFER_DTYPE_INT8,
    KINFER_DTYPE_INT16,
    /* IEEE 754 binary16 and bfloat16 (the top half of an FP32): each element
     * a uint16_t holding the bit pattern (host->half_to_float and
     * host->float_to_half convert). */
    KINFER_DTYPE_FP16,
    KINFER_DTYPE_BF16
};

/* One past the largest dtype, for tables indexed by dtype. */
#define KINFER_DTYPE_COUNT (KINFER_DTYPE_BF16 + 1)

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

#ifdef __cplusplus
}
#endif
#endif
