// The codec's one C++ file: a C entry point to double-conversion's
// shortest round-trip digit generator (Grisu3 with an exact fallback),
// used by kinfer_codec_fmt_real for every FP32 and FP64 element written,
// and its fixed-precision digits and exact reader for FP16 and BF16.
#include "codec_dtoa.h"

#include <double-conversion/double-to-string.h>
#include <double-conversion/strtod.h>

int kinfer_codec_dtoa(double v, int is_float, char digits[CODEC_DTOA_DIGITS],
                      int *point, int *negative)
{
    using double_conversion::DoubleToStringConverter;
    bool sign = false;
    int length = 0;
    // SHORTEST_SINGLE stops at the fewest digits that read back as the
    // same float, which is fewer than a double of that value needs.
    DoubleToStringConverter::DoubleToAscii(
        v,
        is_float ? DoubleToStringConverter::SHORTEST_SINGLE
                 : DoubleToStringConverter::SHORTEST,
        0, digits, CODEC_DTOA_DIGITS, &sign, &length, point);
    *negative = sign ? 1 : 0;
    return length;
}

int kinfer_codec_dtoa_prec(double v, int prec, char digits[CODEC_DTOA_DIGITS],
                           int *point, int *negative)
{
    using double_conversion::DoubleToStringConverter;
    bool sign = false;
    int length = 0;
    DoubleToStringConverter::DoubleToAscii(
        v, DoubleToStringConverter::PRECISION, prec, digits, CODEC_DTOA_DIGITS,
        &sign, &length, point);
    *negative = sign ? 1 : 0;
    return length;
}

double kinfer_codec_digits_value(const char *digits, int n, int point)
{
    // Correctly rounded: 0.DIGITS x 10^point is DIGITS x 10^(point - n).
    return double_conversion::Strtod(
        double_conversion::Vector<const char>(digits, n), point - n);
}
