/* The codec's text helpers: UTF-8 checking for what comes off the wire and
 * what goes into JSON strings, and numbers, shapes and indices as text for
 * results and error messages.  No Jansson here.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* Longest echo of a client-supplied string (datatype, input name) inside
 * an error message, in bytes. */
#define ECHO_MAX 64

/* ------------------------------------------------------------------ */
/* UTF-8                                                              */

size_t kinfer_codec_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    /* n is checked before any byte after the first is read. */
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

size_t kinfer_codec_utf8_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = kinfer_codec_utf8_seq(u + i, n - i);
        if (k == 0)
            break;
        i += k;
    }
    return i;
}

int kinfer_codec_echo_len(const char *s)
{
    size_t n = strlen(s);
    if (n <= ECHO_MAX)
        return (int)n;
    n = ECHO_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

/* ------------------------------------------------------------------ */
/* Numbers and shapes as text                                         */

/* %.17g (%.9g) always reads back exactly; shorter texts are tried first
 * so 0.1 is sent as 0.1, not 0.10000000000000001.  For a normal number
 * the short form (15 or 6 digits) is tried, then 16 or 8, then 17 or 9;
 * subnormals carry fewer digits, so they start from 1 (5e-324, not
 * 4.94065645841247e-324).  The decimal point is forced to '.' in case
 * someone calls setlocale(). */
void kinfer_codec_fmt_real(char *buf, size_t size, double v, int is_float)
{
    int subnormal = is_float ? fpclassify((float)v) == FP_SUBNORMAL
                             : fpclassify(v) == FP_SUBNORMAL;
    int prec = subnormal ? 1 : is_float ? 6 : 15;
    int max = is_float ? 9 : 17;
    for (; prec <= max; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        int same =
            is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v;
        if (same)
            break;
        /* A normal number that needs more than the short form almost
         * always needs all but the last digit or all of them (a model's
         * outputs do): skip the precisions in between, which would each
         * cost an snprintf and a strtod on the encoder's hot path.  The
         * text can then be a digit longer than the shortest. */
        if (!subnormal && prec < max - 2)
            prec = max - 2;
    }
    for (char *p = buf; *p; p++)
        if (*p == ',')
            *p = '.';
    /* Jansson reads "-0" as the integer 0; "-0.0" keeps the sign. */
    if (v == 0 && signbit(v))
        snprintf(buf, size, "-0.0");
}

void kinfer_codec_fmt_shape(char *buf, size_t size, const int64_t *shape,
                            int ndim)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && n < size; i++) {
        int k =
            snprintf(buf + n, size - n, "%s%" PRId64, i ? "," : "[", shape[i]);
        if (k < 0)
            return;
        n += (size_t)k;
    }
    if (n < size)
        snprintf(buf + n, size - n, "%s", ndim ? "]" : "[]");
}

void kinfer_codec_fmt_index(char *buf, size_t size, const size_t *idx, int n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < size; i++) {
        int k = snprintf(buf + len, size - len, "[%zu]", idx[i]);
        if (k < 0)
            return;
        len += (size_t)k;
    }
}
