/* What kinfer-produce knows about message contents: the Kafka key of a
 * request line, the synthetic `scale` requests of --generate, and the
 * check of a result (error result, wrong values).  The producer's only
 * Jansson user; no Kafka here.
 */
#ifndef KPROD_MESSAGE_H
#define KPROD_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

/* The Kafka key for input line number lineno, line[0..len): the string
 * member key_field of a line that is one JSON object, else "line-<lineno>"
 * (the line is not JSON, not an object, or has no such string member).
 * Returns a malloc'd NUL-terminated copy that the caller frees; *keylen is
 * its length (a JSON string may contain "\u0000").  Aborts on out of
 * memory. */
char *kprod_request_key(const char *line, size_t len, const char *key_field,
                        uint64_t lineno, size_t *keylen);

/* The synthetic requests of one run:
 *   {"id":"gen-<runid>-<i>","model_name":"scale",
 *    "parameters":{"factor":F},
 *    "inputs":[{"name":"x","datatype":"FP32","shape":[D],"data":[...]}]} */
struct kprod_gen {
    char runid[32]; /* NUL-terminated, JSON-safe characters only */
    size_t dim;     /* D >= 1 */
    double factor;  /* finite */
    int fp64;       /* datatype FP64, else FP32 */
    /* The binary tensor form: the input's values as raw little-endian
     * bytes after the JSON (parameters.binary_data_size), and the result
     * asked for the same way ("binary_data_output": true). */
    int binary;
};

/* Element j of request index's input: a deterministic pseudo-random
 * multiple of 1/1024 in (-10, 10), exactly representable in FP32 and FP64
 * and printed exactly, so the check compares against what was sent. */
double kprod_gen_value(uint64_t index, size_t j);

/* Write the key (and id) "gen-<runid>-<index>" to buf[0..size),
 * NUL-terminated (truncated if size is too small); returns its length. */
size_t kprod_gen_key(const struct kprod_gen *g, uint64_t index, char *buf,
                     size_t size);

/* Bytes kprod_gen_request may need for any index of g. */
size_t kprod_gen_max_size(const struct kprod_gen *g);

/* Write request index to buf[0..size), size >= kprod_gen_max_size(g).
 * Returns the length (no NUL counted; one is written). */
size_t kprod_gen_request(const struct kprod_gen *g, uint64_t index, char *buf,
                         size_t size);

/* kprod_gen_request in g's form: in the binary form *json_len is the
 * length of the JSON header, which the kinfer-inference-header-length
 * Kafka header must carry; otherwise it is the whole length. */
size_t kprod_gen_request_form(const struct kprod_gen *g, uint64_t index,
                              char *buf, size_t size, size_t *json_len);

enum kprod_verdict {
    KPROD_RESULT_OK,    /* a result (and, when checked, a right one) */
    KPROD_RESULT_ERROR, /* an error result: the object has "error" */
    KPROD_RESULT_WRONG  /* not a JSON object, or wrong values */
};

/* Relative tolerances of the check, by input datatype. */
#define KPROD_TOLERANCE_FP64 1e-6
#define KPROD_TOLERANCE_FP32 1e-5

/* Classify the result value buf[0..len).  When g is non-NULL and
 * index >= 0 the result answers synthetic request index and must carry
 * outputs[0].data with g->dim numbers (nested arrays are flattened), each
 * within the datatype's relative tolerance of value * factor.  On
 * KPROD_RESULT_ERROR or _WRONG a one-line reason goes to why[0..whysize)
 * (the error message, or e.g. "outputs[0].data[3]: 2.5, expected 5"). */
enum kprod_verdict kprod_result_check(const void *buf, size_t len,
                                      const struct kprod_gen *g, int64_t index,
                                      char *why, size_t whysize);

/* kprod_result_check for a result whose JSON header is buf[0..json_len)
 * (the kinfer-inference-header-length Kafka header; len when absent): an
 * output with parameters.binary_data_size is read from the bytes after
 * the header, in output order, and must be g's datatype. */
enum kprod_verdict kprod_result_check_form(const void *buf, size_t len,
                                           size_t json_len,
                                           const struct kprod_gen *g,
                                           int64_t index, char *why,
                                           size_t whysize);

#endif
