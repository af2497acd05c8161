/* Helpers shared by the dense backends (mlp, topk): the opening of their
 * create (config.json and the weights file), OpenBLAS thread policy,
 * per-item errors and output allocation.  Threads: the config and weights
 * helpers run in create (main thread); the rest on any thread.  Private
 * to lib/backends; like the backends themselves they reach kinfer only
 * through the host table, so the same objects could form a plugin.
 */
#ifndef KINFER_ML_COMMON_H
#define KINFER_ML_COMMON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kinfer/backend.h"
#include "kinfer/error.h"
#include "kinfer/request.h"
#include "kinfer/tensor.h"

/* Default scratch memory one infer call may use for its intermediate
 * matrices (config "scratch_bytes").
 * Larger batches are cut into blocks of rows (and topk's item matrix into
 * chunks) so that memory stays bounded whatever the batch holds. */
#define KINFER_ML_SCRATCH_BYTES ((size_t)16 << 20)

/* Upper bound of the "scratch_bytes" config field (1 TiB). */
#define KINFER_ML_SCRATCH_MAX (1LL << 40)

struct kinfer_st;

/* One optional string field of config.json that a backend reads: its key,
 * its default (NULL: none) and where the value goes (borrowed from the
 * parsed config). */
struct kinfer_ml_field {
    const char *key;
    const char *def;
    const char **out;
};

/* What every dense backend's config.json holds besides its own fields. */
struct kinfer_ml_config {
    json_t *root;           /* the parsed config.json; owned */
    const char *weights;    /* "weights": the safetensors file; borrowed */
    long long blas_threads; /* "blas_threads" */
    size_t scratch;         /* "scratch_bytes" */
    char *path; /* weights joined to the model dir (kinfer_ml_weights_open);
                   owned */
};

/* The opening each dense backend's create shares: check the host's ABI
 * version, parse config_json, then read, in this order, "weights"
 * (required), the backend's own string fields fields[0..n_fields),
 * "blas_threads" and "scratch_bytes".  On KINFER_OK *c is filled (the
 * caller releases it with kinfer_ml_config_close); otherwise *c holds
 * nothing and err says why. */
enum kinfer_err
kinfer_ml_config_open(const struct kinfer_host *host, const char *backend,
                      const char *config_json,
                      const struct kinfer_ml_field *fields, size_t n_fields,
                      struct kinfer_ml_config *c, char *err, size_t errsize);

/* Join c->weights to dir into c->path and open that safetensors file into
 * *st (the caller closes it with kinfer_st_close).  The reader's own codes
 * (IO, INVALID ...) become KINFER_ERR_MODEL: for the registry they all
 * mean "no model"; KINFER_ERR_NOMEM stays. */
enum kinfer_err kinfer_ml_weights_open(const char *backend, const char *dir,
                                       struct kinfer_ml_config *c,
                                       struct kinfer_st **st, char *err,
                                       size_t errsize);

/* Free what c owns (the parsed config and the path).  Fields borrowed
 * from it die with it. */
void kinfer_ml_config_close(struct kinfer_ml_config *c);

/* Parse config_json (NULL or not an object: KINFER_ERR_CONFIG).  On
 * KINFER_OK *root is a new reference the caller releases with
 * json_decref. */
enum kinfer_err kinfer_ml_config_parse(const char *backend,
                                       const char *config_json, json_t **root,
                                       char *err, size_t errsize);

/* Read the optional string field key of obj into *out (borrowed from
 * obj); def when absent.  KINFER_ERR_CONFIG when present but not a
 * non-empty string. */
enum kinfer_err kinfer_ml_config_string(const char *backend, const json_t *obj,
                                        const char *key, const char *def,
                                        const char **out, char *err,
                                        size_t errsize);

/* Read the optional integer field key of obj into *out, def when absent.
 * KINFER_ERR_CONFIG when present but not an integer in [min, max]. */
enum kinfer_err kinfer_ml_config_int(const char *backend, const json_t *obj,
                                     const char *key, long long def,
                                     long long min, long long max,
                                     long long *out, char *err, size_t errsize);

/* dir + "/" + file, or file itself when it is absolute.  dir NULL with a
 * relative file is a config error.  On KINFER_OK *out is malloc'd. */
enum kinfer_err kinfer_ml_path_join(const char *backend, const char *dir,
                                    const char *file, char **out, char *err,
                                    size_t errsize);

/* Apply the OpenBLAS thread policy: threads per BLAS call (config field
 * "blas_threads", default 1).  See ml_common.c for why 1. */
void kinfer_ml_blas_threads(const struct kinfer_host *host, const char *backend,
                            long long threads);

/* Mark item failed with a formatted message. */
void kinfer_ml_item_fail(struct kinfer_infer_item *item, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The input tensor called name, or NULL.  Borrowed from req. */
const struct kinfer_tensor *kinfer_ml_input(const struct kinfer_request *req,
                                            const char *name);

/* Attach n zeroed output tensors to item (host->alloc).  kinfer frees
 * them, even when the item is later marked failed: a backend has no way
 * to give host memory back. */
enum kinfer_err kinfer_ml_outputs(const struct kinfer_host *host,
                                  struct kinfer_infer_item *item, size_t n);

/* "FP32 [2,3]" for messages. */
char *kinfer_ml_tensor_desc(const struct kinfer_host *host,
                            const struct kinfer_tensor *t, char *buf,
                            size_t size);

/* Copy n elements of an FP32 or FP64 source to dst as float.  Returns 0
 * when a value is not finite in FP32 (an FP64 value out of range, say). */
int kinfer_ml_load_floats(float *dst, const void *src, enum kinfer_dtype dtype,
                          size_t n);

/* 1 when all of x[0..n) are finite. */
int kinfer_ml_all_finite(const float *x, size_t n);

#endif
