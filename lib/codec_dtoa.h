/* Private to the codec: the shortest decimal digits of a binary float,
 * from Debian's double-conversion library (C++) behind a C function in
 * codec_dtoa.cc.  codec_text.c lays the digits out as JSON number text.
 *
 * Threads: pure; any thread may call it. */
#ifndef KINFER_CODEC_DTOA_H
#define KINFER_CODEC_DTOA_H

#ifdef __cplusplus
extern "C" {
#endif

/* Room for the digits: 17 for a double, one for the library's NUL. */
#define CODEC_DTOA_DIGITS 18

/* The fewest decimal digits that read back as exactly v (as a float when
 * is_float, v then being a float's value), written to digits without a
 * sign or NUL; *point is where the decimal point goes, so that
 * |v| = 0.DIGITS x 10^point, and *negative is 1 when v's sign bit is set.
 * Returns how many digits (>= 1; 0 gives "0").  v must be finite. */
int kinfer_codec_dtoa(double v, int is_float, char digits[CODEC_DTOA_DIGITS],
                      int *point, int *negative);

/* v (finite, not 0) rounded to prec (1 .. 17) significant digits, laid
 * out as kinfer_codec_dtoa lays them out (trailing zeros dropped). */
int kinfer_codec_dtoa_prec(double v, int prec, char digits[CODEC_DTOA_DIGITS],
                           int *point, int *negative);

/* 0.DIGITS x 10^point (n digits, no sign) as the nearest double. */
double kinfer_codec_digits_value(const char *digits, int n, int point);

#ifdef __cplusplus
}
#endif
#endif
