/* Private to the request codec (codec_*.c, public side in
 * kinfer/host.h): the pieces its files share.  codec_text.c checks UTF-8
 * and writes numbers as text, codec_lift.c is the numeric fast path that
 * codec_decode.c consults, codec_encode.c writes results, codec_dtoa.cc
 * (the one C++ file, header codec_dtoa.h) finds a number's digits.
 *
 * Threads: every function here is pure or works only on what the caller
 * passes, so any thread may call it on its own data. */
#ifndef KINFER_CODEC_H
#define KINFER_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"
#include "kinfer/host.h"
#include "kinfer/request.h"
#include "kinfer/tensor.h"

/* "[" + 8 dims of up to 20 digits + commas + "]": shape and index text. */
#define CODEC_SHAPE_TEXT 200

/* The smallest magnitude that rounds to infinity as a float (FLT_MAX plus
 * half an ulp).  The decimal text of FLT_MAX (3.4028235e+38) is a little
 * above FLT_MAX and must still be accepted as FP32: below this it rounds
 * to FLT_MAX, from here on it is out of range. */
#define CODEC_FP32_LIMIT 0x1.ffffffp127

/* --- UTF-8 and number text (codec_text.c) -------------------------- */

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0.  n >= 1; reads
 * nothing at or past s[n]. */
size_t kinfer_codec_utf8_seq(const unsigned char *s, size_t n);

/* Length of the longest well-formed UTF-8 prefix of s[0..n). */
size_t kinfer_codec_utf8_prefix(const char *s, size_t n);

/* How many bytes of the NUL-terminated s to echo in an error message:
 * at most 64, never splitting a multi-byte character. */
int kinfer_codec_echo_len(const char *s);

/* The shortest text of v that reads back as exactly v (as a float when
 * is_float: v is then a float's value), in "%g" notation, into
 * buf[0..size), NUL-terminated; at most 25 bytes with the NUL, so a
 * buffer of 32 never cuts it.  '.' is the decimal point whatever the
 * locale; -0 is written "-0.0" so a JSON reader keeps the sign.  v must be
 * finite.  Returns the length written, without the NUL. */
#define CODEC_REAL_TEXT 32
size_t kinfer_codec_fmt_real(char *buf, size_t size, double v, int is_float);

/* The FP16 or BF16 element bits (finite) as the shortest text that reads
 * back (rounded to nearest) as the same element, laid out as
 * kinfer_codec_fmt_real lays out a double.  Same buffer rules. */
size_t kinfer_codec_fmt_half(char *buf, size_t size, enum kinfer_dtype dtype,
                             uint16_t bits);

/* shape[0..ndim) as "[2,3]" ("[]" for none) into buf[0..size). */
void kinfer_codec_fmt_shape(char *buf, size_t size, const int64_t *shape,
                            int ndim);

/* idx[0..n) as "[1][0]" into buf[0..size). */
void kinfer_codec_fmt_index(char *buf, size_t size, const size_t *idx, int n);

/* --- The numeric fast path (codec_lift.c) -------------------------- */

/* One lifted array: the "data" of inputs[input]. */
struct codec_lifted {
    size_t input; /* index in "inputs" */
    size_t first; /* first value in struct codec_lift's arrays */
    size_t n;     /* values */
};

/* What kinfer_codec_lift_scan found; all of it owned. */
struct codec_lift {
    char *text; /* the request with lifted arrays replaced by [] */
    size_t len;
    struct codec_lifted *arrays;
    size_t n_arrays, cap_arrays;
    double *num;     /* every value as a double */
    int64_t *ival;   /* the value, when it was written as an integer */
    uint8_t *is_int; /* 1: written as an integer (no fraction/exponent);
                        2: an integer above INT64_MAX, ival its uint64_t */
    size_t n_vals, cap_vals;
};

/* Scan the request s[0..n) (already checked: valid UTF-8, no NUL, bounded
 * depth; anything else about it may be wrong, strings unterminated
 * included) and lift every root."inputs"[i]."data" array of plain JSON
 * numbers (LIFT_MIN or more) into l (contents ignored).  Reads nothing at or
 * past s[n].  Returns 1 when something was lifted: l->text[0..l->len) is then
 * the request with those arrays emptied, and the caller frees l with
 * kinfer_codec_lift_free.  Returns 0 when nothing was lifted and -1 when
 * out of memory; l then owns nothing. */
int kinfer_codec_lift_scan(struct codec_lift *l, const char *s, size_t n);

/* Free what l owns. */
void kinfer_codec_lift_free(struct codec_lift *l);

/* The lifted array of inputs[input], borrowed from l; NULL when there is
 * none (or l is NULL). */
const struct codec_lifted *kinfer_codec_lift_find(const struct codec_lift *l,
                                                  size_t input);

/* Fill t (initialised with a->n elements) from a, converting each value
 * exactly as the Jansson path does.  0 on success; -1 on any value that
 * path would refuse or a dtype the fast path does not fill, so the caller
 * decodes again the ordinary way, which says why. */
int kinfer_codec_lift_fill(const struct codec_lift *l,
                           const struct codec_lifted *a,
                           struct kinfer_tensor *t);

/* --- The Jansson decoder (codec_decode.c, codec_data.c) ------------ */

struct json_t; /* jansson.h's json_t, for the two files that include it */

/* One decode call: its limits and where its error message goes. */
struct codec_dec {
    struct kinfer_limits lim; /* zero fields already replaced */
    char *err;                /* NULL on the fast path: no message */
    size_t errsize;
    const struct codec_lift *lift; /* fast path: pre-parsed data arrays */
    const char *where;             /* prefix of parameter messages */
    const unsigned char *bin;      /* binary part after the JSON header */
    size_t bin_len, bin_used;      /* its size; bytes taken by inputs */
};

/* Write the message to d->err, when there is one, and return code. */
enum kinfer_err kinfer_codec_fail(struct codec_dec *d, enum kinfer_err code,
                                  const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* kinfer_codec_fail with KINFER_ERR_NOMEM and its one message. */
enum kinfer_err kinfer_codec_fail_nomem(struct codec_dec *d);

/* inputs[index] as read so far: everything but its elements. */
struct codec_input {
    size_t index;
    const char *name; /* borrowed from the JSON document */
    enum kinfer_dtype dtype;
    int64_t shape[KINFER_MAX_DIMS];
    int ndim;
    size_t count;              /* elements the shape holds */
    const struct json_t *data; /* the "data" array, borrowed */
    int64_t binary_size;       /* parameters.binary_data_size, or -1 */
};

/* Check in->data against the shape (flat row-major, or nested one array
 * per dimension), then initialise t (zeroed) and store every element.
 * On bad data writes a message naming the element and returns
 * KINFER_ERR_INVALID; KINFER_ERR_NOMEM when out of memory.  t may be
 * half-filled on error: the caller clears it. */
enum kinfer_err kinfer_codec_data_fill(struct codec_dec *d,
                                       const struct codec_input *in,
                                       struct kinfer_tensor *t);

/* Fill t from the next in->binary_size bytes of the binary part (the
 * binary tensor extension: little-endian, row-major, BOOL one byte 0 or
 * 1, BYTES each a 4-byte little-endian length and the bytes).  Same
 * contract as kinfer_codec_data_fill. */
enum kinfer_err kinfer_codec_binary_fill(struct codec_dec *d,
                                         const struct codec_input *in,
                                         struct kinfer_tensor *t);

#endif
