/* Inference requests and results in the JSON shape of the Open Inference
 * Protocol (KServe V2).  The codec (codec.c) is the only code that includes
 * Jansson; everything else sees these plain structs.  struct kinfer_request
 * is part of the backend ABI (model.h).
 */
#ifndef KINFER_REQUEST_H
#define KINFER_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"
#include "kinfer/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

enum kinfer_param_kind {
    KINFER_PARAM_NUMBER, /* JSON integer or real: number (and integer) */
    KINFER_PARAM_STRING, /* string */
    KINFER_PARAM_BOOL,   /* boolean */
    KINFER_PARAM_OTHER   /* null, array or object: kept by name only */
};

/* One entry of the request's "parameters" object. */
struct kinfer_param {
    char *name; /* owned */
    enum kinfer_param_kind kind;
    double number;   /* NUMBER */
    int is_integer;  /* NUMBER given as a JSON integer */
    int64_t integer; /* NUMBER when is_integer */
    char *string;    /* STRING: owned; else NULL */
    int boolean;     /* BOOL */
};

struct kinfer_request {
    char *id;                    /* owned; NULL when absent */
    char *model_name;            /* owned; NULL when absent */
    struct kinfer_param *params; /* owned array */
    size_t n_params;
    struct kinfer_tensor *inputs; /* owned array */
    size_t n_inputs;
};

/* Caps that keep hostile input from exhausting memory.  Zero fields take
 * the defaults below. */
struct kinfer_limits {
    size_t max_request_bytes; /* whole message value; default 1000000 */
    size_t max_elements;      /* per tensor; default 4 Mi elements */
    size_t max_inputs;        /* inputs per request; default 64 */
    size_t max_depth;         /* JSON nesting; default 32 */
};

#define KINFER_DEFAULT_MAX_REQUEST_BYTES ((size_t)1000000)
#define KINFER_DEFAULT_MAX_ELEMENTS ((size_t)4 << 20)
#define KINFER_DEFAULT_MAX_INPUTS 64
#define KINFER_DEFAULT_MAX_DEPTH 32

/* Decode the message value buf[0..len) into req (contents ignored; caller
 * clears it with kinfer_request_clear whatever the result).
 *
 * On success returns KINFER_OK.  On bad input returns KINFER_ERR_INVALID or
 * KINFER_ERR_TOO_LARGE and writes a precise, NUL-terminated reason to
 * err[0..errsize) (e.g. "inputs[0].data: expected 6 elements for shape
 * [2,3], got 5"); req->id and req->model_name are still filled when they
 * could be read, so the error result can carry them.  lim may be NULL.
 * err may be NULL when errsize is 0; the reason is always valid UTF-8
 * (truncated on a character boundary).  KINFER_ERR_NOMEM when memory for
 * the tensors runs out.
 *
 * Accepted: data flat (row-major) or nested one array per dimension;
 * JSON null for the optional id, model_name and parameters means absent;
 * unknown keys and each input's "parameters" are ignored.  Rejected:
 * duplicate object keys, a NUL byte, malformed UTF-8, strings holding
 * \u0000 where a C string is needed (id, model_name, input names,
 * string parameters; BYTES elements may hold it), two inputs with the same
 * name, integers beyond int64 (reported by the JSON parser). */
enum kinfer_err kinfer_request_decode(const void *buf, size_t len,
                                      const struct kinfer_limits *lim,
                                      struct kinfer_request *req, char *err,
                                      size_t errsize)
    __attribute__((warn_unused_result));

/* Free what req owns and leave it empty.  NULL is a no-op. */
void kinfer_request_clear(struct kinfer_request *req);

/* The parameter called name, or NULL.  Borrowed from req. */
const struct kinfer_param *
kinfer_request_param(const struct kinfer_request *req, const char *name);

/* Encode a successful result:
 *   {"id":..., "model_name":..., "model_version":..., "outputs":[...]}
 * "id", "model_name" and "model_version" are omitted when NULL.  On
 * KINFER_OK *out is a malloc'd buffer of *outlen bytes (not NUL-terminated
 * is allowed; it is in fact terminated), which the caller frees with
 * free().  Output "data" is always flat; numbers are written so they read
 * back exactly (as float for FP32): the short form when it does (0.1),
 * else at most one digit longer than the shortest exact text.
 *
 * Returns KINFER_ERR_INVALID, writing nothing, when the result cannot be
 * JSON: a NaN or infinite FP32/FP64 element, a BYTES element, name, id,
 * model_name or model_version that is not valid UTF-8, or a tensor whose
 * count does not match its shape.  The caller then sends an error result
 * (kinfer_error_encode) instead.  KINFER_ERR_NOMEM when out of memory. */
enum kinfer_err kinfer_result_encode(const char *id, const char *model_name,
                                     const char *model_version,
                                     const struct kinfer_tensor *outputs,
                                     size_t n_outputs, char **out,
                                     size_t *outlen)
    __attribute__((warn_unused_result));

/* Encode an error result: {"id":..., "model_name":..., "error":...}.
 * id and model_name may be NULL (then omitted); message NULL reads
 * "unknown error".  Same ownership as kinfer_result_encode.  So that an
 * error result can always be sent, malformed UTF-8 in any of the strings
 * becomes U+FFFD instead of failing: only KINFER_ERR_NOMEM, or
 * KINFER_ERR_INVALID for a NULL out or outlen, can come back. */
enum kinfer_err kinfer_error_encode(const char *id, const char *model_name,
                                    const char *message, char **out,
                                    size_t *outlen)
    __attribute__((warn_unused_result));

#ifdef __cplusplus
}
#endif
#endif
