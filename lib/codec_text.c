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
#include "codec_dtoa.h"

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
        /* A request is nearly all ASCII: eight bytes at a time while no
         * high bit is set (memcpy: no alignment assumed). */
        uint64_t w;
        while (n - i >= sizeof w) {
            memcpy(&w, u + i, sizeof w);
            if (w & 0x8080808080808080u)
                break;
            i += sizeof w;
        }
        if (i >= n)
            break;
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

/* The shortest digits that read back exactly (codec_dtoa.cc), laid out
 * the way "%g" would lay them out at a precision of max(digits, 15) (6 for
 * FP32): plain notation for decimal exponents from -4 up to that
 * precision, else d.ddde+XX with at least two exponent digits.  So 0.1 is
 * sent as 0.1, 100 as 100 and 1e21 as 1e+21, as before, but each number
 * costs one digit generation instead of snprintf and strtod per
 * precision tried.  No locale is consulted. */
size_t kinfer_codec_fmt_real(char *buf, size_t size, double v, int is_float)
{
    char dig[CODEC_DTOA_DIGITS];
    char text[40]; /* longest: "-0.0000" + 17 digits, or 17 + ".e+308" */
    int point = 0, neg = 0;
    int n = kinfer_codec_dtoa(v, is_float, dig, &point, &neg);
    size_t len = 0;
    if (neg)
        text[len++] = '-';
    int exp10 = point - 1; /* of the first digit */
    int prec = n > (is_float ? 6 : 15) ? n : is_float ? 6 : 15;
    if (v == 0) {
        /* Jansson reads "-0" as the integer 0; "-0.0" keeps the sign. */
        memcpy(text + len, neg ? "0.0" : "0", neg ? 3 : 1);
        len += neg ? 3 : 1;
    } else if (exp10 < -4 || exp10 >= prec) {
        text[len++] = dig[0];
        if (n > 1) {
            text[len++] = '.';
            memcpy(text + len, dig + 1, (size_t)n - 1);
            len += (size_t)n - 1;
        }
        unsigned e = (unsigned)(exp10 < 0 ? -exp10 : exp10);
        text[len++] = 'e';
        text[len++] = exp10 < 0 ? '-' : '+';
        if (e >= 100)
            text[len++] = (char)('0' + e / 100);
        text[len++] = (char)('0' + e / 10 % 10);
        text[len++] = (char)('0' + e % 10);
    } else if (point <= 0) {
        /* 0.000ddd: at most four zeros after the point (exp10 >= -4). */
        memcpy(text + len, "0.0000", (size_t)(2 - point));
        len += (size_t)(2 - point);
        memcpy(text + len, dig, (size_t)n);
        len += (size_t)n;
    } else if (point >= n) {
        /* An integer: ddd000, fewer than prec digits in all. */
        memcpy(text + len, dig, (size_t)n);
        len += (size_t)n;
        memset(text + len, '0', (size_t)(point - n));
        len += (size_t)(point - n);
    } else {
        memcpy(text + len, dig, (size_t)point);
        len += (size_t)point;
        text[len++] = '.';
        memcpy(text + len, dig + point, (size_t)(n - point));
        len += (size_t)(n - point);
    }
    if (size == 0)
        return 0;
    if (len >= size)
        len = size - 1; /* cut short, as snprintf would */
    memcpy(buf, text, len);
    buf[len] = '\0';
    return len;
}

size_t kinfer_codec_fmt_half(char *buf, size_t size, enum kinfer_dtype dtype,
                             uint16_t bits)
{
    double v = kinfer_half_to_double(dtype, bits);
    if (v != 0) {
        /* Few digits ever do (5 for FP16, 4 for BF16): try each count, and
         * read the digits back exactly, not through the locale. */
        for (int prec = 1; prec <= 17; prec++) {
            char dig[CODEC_DTOA_DIGITS];
            int point = 0, neg = 0;
            int n = kinfer_codec_dtoa_prec(v, prec, dig, &point, &neg);
            double back = kinfer_codec_digits_value(dig, n, point);
            if (kinfer_half_from_double(dtype, back) == (bits & 0x7fff))
                return kinfer_codec_fmt_real(buf, size, neg ? -back : back, 0);
        }
    }
    return kinfer_codec_fmt_real(buf, size, v, 0);
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
