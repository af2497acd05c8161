/* The kinfer model backend ABI, version KINFER_BACKEND_ABI_VERSION.
 *
 * A backend turns a model directory into a loaded model and runs batches of
 * requests on it.  Built-in backends register statically; a plugin is a
 * shared object exporting
 *
 *     const struct kinfer_backend *kinfer_backend_entry(
 *         const struct kinfer_host *host);
 *
 * kinfer refuses a backend whose abi_version differs from its own.
 *
 * The ABI is this header and the types it includes: tensor.h, request.h
 * (struct kinfer_request) and error.h (enum kinfer_err), plus the level
 * numbers of log.h for host->log.  A plugin calls no kinfer_* function:
 * they live in libkinfer, which a plugin does not link (host.h, model.h
 * and the rest are host-only).  What a backend needs from kinfer comes
 * through struct kinfer_host below.
 *
 * Ownership: everything kinfer passes in is borrowed for the duration of the
 * call.  Output tensors the backend creates (with host->tensor_init) belong
 * to kinfer once infer returns.
 *
 * Threads: create and destroy are called from the main thread.  infer may
 * be called on several threads at once for the same model (kinfer runs a
 * pool of inference threads); a backend whose model is not safe for that
 * must lock inside.  A backend must not start threads of its own for one
 * call (kinfer's pool already provides the parallelism).
 */
#ifndef KINFER_BACKEND_H
#define KINFER_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"
#include "kinfer/request.h"
#include "kinfer/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: the dtypes UINT8 .. BF16 (appended to enum kinfer_dtype) and the host
 * members from dtype_size on (appended to struct kinfer_host).  Existing
 * numbers and offsets did not move, yet the version had to change: a
 * version-1 plugin would now be handed tensors of datatypes it has never
 * heard of, and a version-2 plugin calling host->dtype_size on a version-1
 * host would read past the end of its table.  Rebuilding is all a
 * version-1 plugin needs. */
#define KINFER_BACKEND_ABI_VERSION 2u

/* Room for a per-item error message, including the NUL. */
#define KINFER_ITEM_ERROR_SIZE 256

/* kinfer_infer_item.failed for a failure worth retrying.  Added in ABI
 * version 2 (the struct's layout is unchanged). */
#define KINFER_ITEM_TRANSIENT 2

/* One request of a batch. */
struct kinfer_infer_item {
    const struct kinfer_request *request; /* borrowed, read-only */
    /* Written by the backend: an array of n_outputs tensors allocated with
     * host->alloc and each initialised with host->tensor_init.  kinfer
     * frees them. */
    struct kinfer_tensor *outputs;
    size_t n_outputs;
    /* The backend sets failed = 1 and a message in error when this item
     * cannot be answered (bad shape for this model, say); the other items
     * of the batch are unaffected.  failed = KINFER_ITEM_TRANSIENT says the
     * failure may pass (a remote dependency timed out, a resource was
     * busy): the host may run the item again later, within its retry
     * settings, and answers it with the error only after the last
     * attempt. */
    int failed;
    char error[KINFER_ITEM_ERROR_SIZE];
};

/* What one input or output of a model looks like.  -1 in shape means any
 * size in that dimension; ndim -1 means any rank. */
struct kinfer_tensor_desc {
    const char *name;
    enum kinfer_dtype dtype;
    int ndim;
    int64_t shape[KINFER_MAX_DIMS];
};

/* A model's signature.  The arrays belong to the backend and stay valid
 * until destroy. */
struct kinfer_model_io {
    const struct kinfer_tensor_desc *inputs;
    size_t n_inputs;
    const struct kinfer_tensor_desc *outputs;
    size_t n_outputs;
};

/* Services kinfer offers a backend (plugins cannot link against kinfer's
 * symbols directly). */
struct kinfer_host {
    uint32_t abi_version;
    void *(*alloc)(size_t size); /* zeroed; NULL on failure */
    enum kinfer_err (*tensor_init)(struct kinfer_tensor *t, const char *name,
                                   enum kinfer_dtype dtype, int ndim,
                                   const int64_t *shape);
    enum kinfer_err (*tensor_set_bytes)(struct kinfer_tensor *t, size_t i,
                                        const char *src, size_t len);
    void (*log)(int level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
    /* "FP32", "INT64", ... for messages (static strings). */
    const char *(*dtype_name)(enum kinfer_dtype dtype);

    /* --- Added in ABI 2 (new members go at the end) --- */

    /* Bytes per element: 1, 2, 4 or 8; sizeof(struct kinfer_bytes) for
     * BYTES; 0 for INVALID or a value outside the enum. */
    size_t (*dtype_size)(enum kinfer_dtype dtype);
    /* The dtype called name ("FP16", exact, upper case), or
     * KINFER_DTYPE_INVALID. */
    enum kinfer_dtype (*dtype_from_name)(const char *name);
    /* An FP16 or BF16 element (dtype says which) as a float: exact.  NaN for
     * another dtype. */
    float (*half_to_float)(enum kinfer_dtype dtype, uint16_t bits);
    /* v as an FP16 or BF16 element, rounded to nearest (ties to even); a
     * value beyond the type's range becomes +-infinity, NaN stays NaN.  0
     * for another dtype. */
    uint16_t (*float_to_half)(enum kinfer_dtype dtype, float v);
    /* Initialise dst (contents ignored) as a copy of src with datatype
     * dtype, so a backend can take what it was sent and work in the type
     * its model needs.  Each element converts exactly or is refused:
     * integers must fit the new type; a real becomes an integer only when
     * it has no fraction and fits; reals and integers become FP16 .. FP64
     * rounded to nearest, refused when out of range; BOOL reads as 0 and 1
     * and only 0 and 1 become BOOL; BYTES converts only to BYTES.  On
     * failure returns KINFER_ERR_INVALID with a reason naming the element
     * in err[0..errsize) ("element 3: 300 is out of range for UINT8") and
     * leaves dst empty; KINFER_ERR_NOMEM when out of memory.  dst is then
     * an output-style tensor the caller frees with host->tensor_free. */
    enum kinfer_err (*tensor_convert)(struct kinfer_tensor *dst,
                                      const struct kinfer_tensor *src,
                                      enum kinfer_dtype dtype, char *err,
                                      size_t errsize);
    /* Free what t owns (a tensor made by tensor_init or tensor_convert that
     * is not handed to kinfer) and leave it empty.  NULL is a no-op. */
    void (*tensor_free)(struct kinfer_tensor *t);
};

struct kinfer_backend {
    uint32_t abi_version; /* KINFER_BACKEND_ABI_VERSION */
    const char *name;     /* the "backend" of a model's config.json */

    /* Load a model.  dir is the model's directory (NULL for a built-in
     * model without files); config_json is its config.json text (NULL when
     * there is none).  On KINFER_OK *model is the backend's handle;
     * otherwise a reason goes to err[0..errsize). */
    enum kinfer_err (*create)(const struct kinfer_host *host, const char *dir,
                              const char *config_json, void **model, char *err,
                              size_t errsize);

    /* Run items[0..n) (n >= 1) as one call.  Returns KINFER_OK when every
     * item was either answered or marked failed; any other code fails the
     * whole batch (kinfer answers each item with an error result), and
     * KINFER_ERR_UNAVAILABLE fails it transiently (each item as if marked
     * KINFER_ITEM_TRANSIENT). */
    enum kinfer_err (*infer)(void *model, struct kinfer_infer_item *items,
                             size_t n);

    /* Free the model.  NULL is a no-op. */
    void (*destroy)(void *model);

    /* Describe the model's inputs and outputs into *io (main thread, after
     * create).  May be NULL for a backend that takes anything (scale). */
    enum kinfer_err (*describe)(void *model, struct kinfer_model_io *io);
};

typedef const struct kinfer_backend *(*kinfer_backend_entry_fn)(
    const struct kinfer_host *host);

#define KINFER_BACKEND_ENTRY_SYMBOL "kinfer_backend_entry"

#ifdef __cplusplus
}
#endif
#endif
