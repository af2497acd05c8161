/* The host side of the backend ABI: the functions libkinfer offers on the
 * ABI types of tensor.h and request.h -- tensor storage (tensor.c) and the
 * request codec (codec_*.c, the JSON of the Open Inference Protocol).
 *
 * Host-only: these live in the static libkinfer, and kinfer's programs do
 * not export its symbols, so a plugin that called one would fail to load.
 * A plugin reaches tensor_init, tensor_set_bytes and dtype_name through
 * struct kinfer_host (backend.h) instead, and does not include this file.
 *
 * Threads: every function here works only on what the caller passes, so
 * any thread may call it on its own data (tensor.h and request.h say who
 * owns a tensor or a request at each step).
 */
#ifndef KINFER_HOST_H
#define KINFER_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"
#include "kinfer/request.h"
#include "kinfer/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- Tensors (tensor.c) ------------------------------------------- */

/* "FP32", "INT64", ... (the Open Inference Protocol names); "INVALID" for
 * anything else.  Static string. */
const char *kinfer_dtype_name(enum kinfer_dtype dtype);

/* The dtype named name (exact, upper case), or KINFER_DTYPE_INVALID. */
enum kinfer_dtype kinfer_dtype_from_name(const char *name);

/* Bytes per element: 1, 2, 4 or 8, sizeof(struct kinfer_bytes) for BYTES,
 * 0 for INVALID. */
size_t kinfer_dtype_size(enum kinfer_dtype dtype);

/* FP16 and BF16 elements (dtype says which) and doubles: to a double is
 * exact (NaN for another dtype); from a double rounds once, to nearest with
 * ties to even, straight from the double's exact value, +-infinity beyond
 * the range (0 for another dtype).  The float versions are host->
 * half_to_float and host->float_to_half. */
double kinfer_half_to_double(enum kinfer_dtype dtype, uint16_t bits);
uint16_t kinfer_half_from_double(enum kinfer_dtype dtype, double v);
float kinfer_half_to_float(enum kinfer_dtype dtype, uint16_t bits);
uint16_t kinfer_float_to_half(enum kinfer_dtype dtype, float v);

/* One element's value as a number: an integer (i), an integer above
 * INT64_MAX (u; only from UINT64) or a real (d). */
struct kinfer_number {
    enum { KINFER_NUM_INT, KINFER_NUM_UINT, KINFER_NUM_REAL } kind;
    int64_t i;
    uint64_t u;
    double d;
};

/* What storing a number into an element came to. */
enum kinfer_put {
    KINFER_PUT_OK,
    KINFER_PUT_RANGE,    /* does not fit the dtype (BOOL: not 0 or 1) */
    KINFER_PUT_FRACTION, /* a real with a fraction for an integer dtype */
    KINFER_PUT_TYPE      /* BYTES or INVALID: not numbers */
};

/* Store a number as element k (< t->count) of t, exactly or not at all:
 * integers must fit the dtype, reals go to integer dtypes only when whole
 * and in range, and to FP16 .. FP64 rounded to nearest (a finite value that
 * would round to infinity is KINFER_PUT_RANGE).  BOOL takes 0 and 1. */
enum kinfer_put kinfer_tensor_put_int(struct kinfer_tensor *t, size_t k,
                                      int64_t v);
enum kinfer_put kinfer_tensor_put_uint(struct kinfer_tensor *t, size_t k,
                                       uint64_t v);
enum kinfer_put kinfer_tensor_put_real(struct kinfer_tensor *t, size_t k,
                                       double v);
enum kinfer_put kinfer_tensor_put_number(struct kinfer_tensor *t, size_t k,
                                         const struct kinfer_number *v);

/* Element k of t as a number (BOOL as 0 or 1); -1 for BYTES. */
int kinfer_tensor_get_number(const struct kinfer_tensor *t, size_t k,
                             struct kinfer_number *v);

/* host->tensor_convert (backend.h says what converts). */
enum kinfer_err kinfer_tensor_convert(struct kinfer_tensor *dst,
                                      const struct kinfer_tensor *src,
                                      enum kinfer_dtype dtype, char *err,
                                      size_t errsize)
    __attribute__((warn_unused_result));

/* Initialise t (contents ignored) as a tensor called name with the given
 * shape, and allocate zeroed storage for its elements.  BYTES elements start
 * empty (data NULL, len 0).  Returns KINFER_ERR_INVALID for a bad dtype or
 * ndim, a negative dimension, or an element count that overflows;
 * KINFER_ERR_NOMEM when allocation fails.  On error t is left empty (safe to
 * pass to kinfer_tensor_clear).  The caller frees t's storage with
 * kinfer_tensor_clear. */
enum kinfer_err kinfer_tensor_init(struct kinfer_tensor *t, const char *name,
                                   enum kinfer_dtype dtype, int ndim,
                                   const int64_t *shape)
    __attribute__((warn_unused_result));

/* Set element i of a BYTES tensor to a copy of len bytes at src (src is
 * borrowed; t owns the copy). */
enum kinfer_err kinfer_tensor_set_bytes(struct kinfer_tensor *t, size_t i,
                                        const char *src, size_t len)
    __attribute__((warn_unused_result));

/* Free what t owns and leave it empty.  t == NULL is a no-op. */
void kinfer_tensor_clear(struct kinfer_tensor *t);

/* --- Request codec (codec_*.c) ------------------------------------ */

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
 * unknown keys are ignored; "model_version" and "outputs" (names and
 * their "parameters") are read into req; an input's "parameters" are
 * checked (binary_data_size, content_type) and not kept.  Parameter values
 * are strings, numbers, booleans or null (objects and arrays are refused:
 * the protocol's $parameter is none of them).  Rejected:
 * duplicate object keys, a NUL byte, malformed UTF-8, strings holding
 * \u0000 where a C string is needed (id, model_name, input names,
 * string parameters; BYTES elements may hold it), two inputs with the same
 * name, integers beyond int64 (reported by the JSON parser). */
enum kinfer_err kinfer_request_decode(const void *buf, size_t len,
                                      const struct kinfer_limits *lim,
                                      struct kinfer_request *req, char *err,
                                      size_t errsize)
    __attribute__((warn_unused_result));

/* The Kafka header that carries the JSON header's length of a request or
 * result in the binary tensor form (decimal digits), as HTTP's
 * Inference-Header-Content-Length does for Triton. */
#define KINFER_HEADER_LENGTH "kinfer-inference-header-length"

/* Decode a request in the binary tensor form (docs/protocol.md, "Binary
 * tensors"): buf[0..json_len) is the JSON header, buf[json_len..len) the
 * inputs' raw bytes, taken in input order by each input whose parameters
 * give binary_data_size (such an input has no "data").  Every byte after
 * the header must belong to an input.  json_len == len is
 * kinfer_request_decode.  Same contract otherwise. */
enum kinfer_err kinfer_request_decode_binary(const void *buf, size_t len,
                                             size_t json_len,
                                             const struct kinfer_limits *lim,
                                             struct kinfer_request *req,
                                             char *err, size_t errsize)
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

/* Whether req asks for its output called output in binary form: that
 * output's "parameters" binary_data when given, else the request's
 * binary_data_output parameter (false when neither is there). */
int kinfer_result_wants_binary(const struct kinfer_request *req,
                               const char *output);

/* kinfer_result_encode for the request req (its id), writing each output
 * req wants binary (kinfer_result_wants_binary) with
 * "parameters":{"binary_data_size":N} instead of "data", and its bytes
 * after the JSON, in output order (docs/protocol.md, "Binary tensors").
 * *json_len is the JSON header's length: *outlen when nothing is binary.
 * A binary output may hold NaN and infinities. */
enum kinfer_err
kinfer_result_encode_for(const struct kinfer_request *req,
                         const char *model_name, const char *model_version,
                         const struct kinfer_tensor *outputs, size_t n_outputs,
                         char **out, size_t *outlen, size_t *json_len)
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
