/* Checks on decoded requests shared by the codec fuzz targets
 * (fuzz_decode.c, fuzz_decode_json.c, fuzz_roundtrip.c).
 * Threads: any; the functions only read their arguments.
 */
#ifndef KINFER_FUZZ_REQUEST_H
#define KINFER_FUZZ_REQUEST_H

#include <stddef.h>

#include "kinfer/host.h"
#include "kinfer/request.h"

/* fuzz_fail unless req (borrowed), a successful decode, keeps the
 * contract of request.h and tensor.h: shapes match counts, data covers
 * count elements (every byte is read, for ASan), strings are
 * NUL-terminated UTF-8. */
void fuzz_request_check(const struct kinfer_request *req);

/* fuzz_fail, naming what (e.g. "fast vs ordinary"), unless a and b hold
 * the same id, model name, parameters and inputs, element for element and
 * bit for bit.  Parameters are compared only when with_params is set (a
 * result carries none). */
void fuzz_request_same(const struct kinfer_request *a,
                       const struct kinfer_request *b, int with_params,
                       const char *what);

/* 1 when a and b are both NULL or equal strings. */
int fuzz_same_cstr(const char *a, const char *b);

/* fuzz_fail unless err (borrowed), the message of a failed decode, is
 * non-empty, NUL-terminated within errsize bytes and valid UTF-8, and the
 * error result made from it is JSON holding it (checked with Jansson). */
void fuzz_request_check_error(const struct kinfer_request *req, const char *err,
                              size_t errsize);

#endif
