/* A reader for the safetensors weight format: an 8-byte little-endian
 * header length N, N bytes of JSON describing each tensor, then the raw
 * little-endian row-major data.  The file is mapped read-only once and the
 * tensors point into the mapping, so weights are never copied per request.
 *
 * Validation follows the reference implementation (huggingface/safetensors):
 * the tensors must tile the data area exactly, starting at offset 0, with no
 * overlap, no hole and no trailing byte (the spec forbids holes so that a
 * file cannot smuggle other content; we refuse rather than guess).
 *
 * Threads: kinfer_st_open and kinfer_st_close from one thread; everything
 * an open file hands out is immutable and may be read from any thread.
 *
 * Deploying: replace a weights file by writing a new one and renaming it
 * over the old; never rewrite it in place, since a mapped file truncated
 * under a running worker makes the next read fault (SIGBUS).
 */
#ifndef KINFER_SAFETENSORS_H
#define KINFER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Cap on the JSON header, as in the reference implementation. */
#define KINFER_ST_MAX_HEADER ((uint64_t)100000000)

/* Every dtype the format names.  Only some are usable by kinfer's
 * backends (F32, F64, I32, I64); the others are parsed and validated so a
 * file holding them opens, and a backend that finds one refuses it by
 * name. */
enum kinfer_st_dtype {
    KINFER_ST_BOOL,
    KINFER_ST_U8,
    KINFER_ST_I8,
    KINFER_ST_F8_E5M2,
    KINFER_ST_F8_E4M3,
    KINFER_ST_F8_E8M0,
    KINFER_ST_I16,
    KINFER_ST_U16,
    KINFER_ST_F16,
    KINFER_ST_BF16,
    KINFER_ST_I32,
    KINFER_ST_U32,
    KINFER_ST_F32,
    KINFER_ST_C64,
    KINFER_ST_F64,
    KINFER_ST_I64,
    KINFER_ST_U64
};

/* One tensor of an open file.  Every pointer is borrowed from the file
 * and valid until kinfer_st_close. */
struct kinfer_st_tensor {
    const char *name;
    enum kinfer_st_dtype dtype;
    int ndim;             /* 0 for a scalar */
    const int64_t *shape; /* [ndim] */
    size_t count;         /* product of shape (1 for a scalar) */
    /* count elements, aligned to the element size: either inside the
     * mapping or, when the file placed the tensor at a misaligned
     * offset, in a copy made once at open. */
    const void *data;
    size_t nbytes; /* count * element size */
};

struct kinfer_st;

/* Map and validate the safetensors file at path.
 *
 * On KINFER_OK *out is the open file; close it with kinfer_st_close.
 * Otherwise *out is untouched and err[0..errsize) says what is wrong,
 * naming the file and, where there is one, the tensor:
 *   KINFER_ERR_IO       cannot open, stat or map the file
 *   KINFER_ERR_INVALID  the contents break the format
 *   KINFER_ERR_TOO_LARGE header length over KINFER_ST_MAX_HEADER
 *   KINFER_ERR_NOMEM    no memory for the index or an aligned copy */
enum kinfer_err kinfer_st_open(const char *path, struct kinfer_st **out,
                               char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Unmap the file and free everything it handed out.  NULL is a no-op. */
void kinfer_st_close(struct kinfer_st *st);

/* The tensor called name, or NULL.  O(log n). */
const struct kinfer_st_tensor *kinfer_st_find(const struct kinfer_st *st,
                                              const char *name);

/* Number of tensors, and tensor i (0 <= i < count) in name order. */
size_t kinfer_st_count(const struct kinfer_st *st);
const struct kinfer_st_tensor *kinfer_st_at(const struct kinfer_st *st,
                                            size_t i);

/* The "__metadata__" value for key, or NULL.  Borrowed from st. */
const char *kinfer_st_metadata(const struct kinfer_st *st, const char *key);

/* The path st was opened from.  Borrowed from st. */
const char *kinfer_st_path(const struct kinfer_st *st);

/* "F32", "BF16", ...: the format's own names.  Static string. */
const char *kinfer_st_dtype_name(enum kinfer_st_dtype dtype);

/* Bytes per element. */
size_t kinfer_st_dtype_size(enum kinfer_st_dtype dtype);

/* Write "[2,3]" (or "[]") for shape[0..ndim) into buf, truncating if
 * needed; returns buf.  For error messages. */
char *kinfer_st_shape_str(const int64_t *shape, int ndim, char *buf,
                          size_t size);

#ifdef __cplusplus
}
#endif
#endif
