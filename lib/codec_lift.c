/* The decoder's numeric fast path: before Jansson sees a request, find
 * each input's flat "data" array of plain numbers, parse the numbers here
 * and hand Jansson the text with those arrays emptied (codec_decode.c).
 * Works on raw bytes from Kafka: no read ever passes the end of them.
 */
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* Most of a request is its "data" arrays of numbers, and Jansson spends
 * a heap object and a locale look-up on each one.  The scanner below finds
 * each input's flat "data" array of plain JSON numbers, parses the numbers
 * itself into one buffer and hands Jansson a copy of the text with those
 * arrays emptied.  The decoder then fills the tensor from the buffer
 * (kinfer_codec_lift_fill) with the same conversions codec_data.c makes.
 *
 * It changes nothing a client can see, with one exception: a UINT64
 * element above INT64_MAX, which Jansson cannot read, is read here, so it
 * decodes in a flat "data" array (nested, it is refused as before).
 * Otherwise: only arrays of at least LIFT_MIN
 * strictly valid numbers are lifted, and whenever the fast decode fails
 * for any reason the request is decoded again the ordinary way, so every
 * error message comes from one place.  A test decodes the same data under
 * "data" and under an escaped "d\u0061ta" key (never lifted) and compares
 * the results bit for bit.
 *
 * The text is untrusted and not NUL-terminated: every scan below checks
 * the index against n before it reads a byte, and strtod is only handed a
 * number that is followed by a byte of the request that ends it. */

/* Even one number is worth lifting: a lifted value costs a strtod, a
 * Jansson one a heap object, a locale look-up and the same strtod; the
 * tiny requests (8 values) decoded about a fifth faster lifted. */
#define LIFT_MIN 1

/* Container levels the scanner tracks: root object, "inputs" array, an
 * input object and its "data" array. */
#define LEVELS 4

void kinfer_codec_lift_free(struct codec_lift *l)
{
    free(l->text);
    free(l->arrays);
    free(l->num);
    free(l->ival);
    free(l->is_int);
}

static int lift_grow_vals(struct codec_lift *l)
{
    if (l->n_vals < l->cap_vals)
        return 0;
    size_t cap = l->cap_vals ? l->cap_vals * 2 : 256;
    double *num = realloc(l->num, cap * sizeof *num);
    if (num != NULL)
        l->num = num;
    int64_t *ival = realloc(l->ival, cap * sizeof *ival);
    if (ival != NULL)
        l->ival = ival;
    uint8_t *is_int = realloc(l->is_int, cap);
    if (is_int != NULL)
        l->is_int = is_int;
    if (num == NULL || ival == NULL || is_int == NULL)
        return -1;
    l->cap_vals = cap;
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A byte that may follow a number inside a flat array.  None of them can
 * continue a number, so strtod stops on it without reading further. */
static int ends_number(char c)
{
    return c == ',' || c == ']' || is_space(c);
}

/* Index just past the strict JSON number at s[i..n), or 0 when there is
 * none.  *integral says whether it has no fraction and no exponent. */
static size_t number_end(const char *s, size_t n, size_t i, int *integral)
{
    size_t j = i;
    *integral = 1;
    if (j < n && s[j] == '-')
        j++;
    if (j >= n || !is_digit(s[j]))
        return 0;
    if (s[j] == '0')
        j++;
    else
        while (j < n && is_digit(s[j]))
            j++;
    if (j < n && s[j] == '.') {
        *integral = 0;
        j++;
        if (j >= n || !is_digit(s[j]))
            return 0;
        while (j < n && is_digit(s[j]))
            j++;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        *integral = 0;
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j >= n || !is_digit(s[j]))
            return 0;
        while (j < n && is_digit(s[j]))
            j++;
    }
    return j;
}

/* The integer text s[start..end) (an optional '-', then digits) into *v;
 * -1 when it does not fit in int64 (left to Jansson and its message). */
static int parse_int64(const char *s, size_t start, size_t end, int64_t *v)
{
    int neg = s[start] == '-';
    uint64_t mag = 0;
    for (size_t p = start + (size_t)neg; p < end; p++) {
        unsigned dgt = (unsigned)(s[p] - '0');
        if (mag > (UINT64_MAX - dgt) / 10)
            return -1;
        mag = mag * 10 + dgt;
    }
    if (mag > (uint64_t)INT64_MAX + (uint64_t)neg)
        return -1;
    *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

/* The unsigned integer text s[start..end) (digits only) into *v; -1 when
 * it has a sign or does not fit in uint64. */
static int parse_uint64(const char *s, size_t start, size_t end, uint64_t *v)
{
    uint64_t mag = 0;
    if (s[start] == '-')
        return -1;
    for (size_t p = start; p < end; p++) {
        unsigned dgt = (unsigned)(s[p] - '0');
        if (mag > (UINT64_MAX - dgt) / 10)
            return -1;
        mag = mag * 10 + dgt;
    }
    *v = mag;
    return 0;
}

/* Parse one strict JSON number at s[*i..n) into the next value slot.
 * 0 on success (with *i past it); -1 when the text is not a plain JSON
 * number Jansson would accept with the same value (integers beyond int64
 * and reals that overflow are left to Jansson and its messages), or when
 * the request ends right after it (then no array can close, and strtod
 * would read past the end looking for more digits). */
static int lift_number(struct codec_lift *l, const char *s, size_t n, size_t *i)
{
    int integral;
    size_t start = *i, j = number_end(s, n, start, &integral);
    if (j == 0 || j >= n || !ends_number(s[j]))
        return -1;
    if (lift_grow_vals(l) != 0)
        return -1;
    size_t k = l->n_vals;
    if (integral) {
        if (parse_int64(s, start, j, &l->ival[k]) == 0) {
            l->num[k] = (double)l->ival[k];
        } else {
            /* Above INT64_MAX: only UINT64 can take it, and Jansson cannot
             * read it at all, so this path is the only one that does
             * (is_int 2: the bits of a uint64_t in ival). */
            uint64_t u;
            if (parse_uint64(s, start, j, &u) != 0)
                return -1;
            memcpy(&l->ival[k], &u, sizeof u);
            l->num[k] = (double)u;
            integral = 2;
        }
    } else {
        /* s[j] ends the number (checked above), so strtod stops there. */
        char *end = NULL;
        errno = 0;
        double v = strtod(s + start, &end);
        if (end != s + j || (errno == ERANGE && isinf(v)))
            return -1;
        l->num[k] = v;
        l->ival[k] = 0;
    }
    l->is_int[k] = (uint8_t)integral;
    l->n_vals++;
    *i = j;
    return 0;
}

static int lift_push(struct codec_lift *l, size_t input, size_t first)
{
    if (l->n_arrays == l->cap_arrays) {
        size_t cap = l->cap_arrays ? l->cap_arrays * 2 : 4;
        struct codec_lifted *a = realloc(l->arrays, cap * sizeof *a);
        if (a == NULL)
            return -1;
        l->arrays = a;
        l->cap_arrays = cap;
    }
    l->arrays[l->n_arrays++] = (struct codec_lifted){
        .input = input, .first = first, .n = l->n_vals - first};
    return 0;
}

/* Try to lift the array opening at s[at] (the value of inputs[input].data):
 * on success appends it and returns the index just past its ']'; on
 * anything but a flat array of at least LIFT_MIN numbers returns 0 and
 * leaves l as it was. */
static size_t lift_array(struct codec_lift *l, const char *s, size_t n,
                         size_t at, size_t input)
{
    size_t i = at + 1, first = l->n_vals;
    for (;;) {
        while (i < n && is_space(s[i]))
            i++;
        if (lift_number(l, s, n, &i) != 0)
            break;
        while (i < n && is_space(s[i]))
            i++;
        if (i < n && s[i] == ',') {
            i++;
            continue;
        }
        if (i < n && s[i] == ']' && l->n_vals - first >= LIFT_MIN &&
            lift_push(l, input, first) == 0)
            return i + 1;
        break;
    }
    l->n_vals = first;
    return 0;
}

/* Index of the '"' that closes the string opening at s[i], or n when the
 * request ends first (also when it ends inside an escape: "\ at the very
 * end must not make the scan step over the last byte). */
static size_t string_end(const char *s, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && s[j] != '"') {
        if (s[j] == '\\' && n - j < 2)
            return n;
        j += s[j] == '\\' ? 2 : 1;
    }
    return j;
}

/* Where the scan is in the container tree: only the first LEVELS levels
 * matter, deeper ones are only counted. */
struct scan {
    char type[LEVELS];      /* '{' or '[' */
    int expect_key[LEVELS]; /* the next string in this object is a key */
    int key_inputs;         /* root's current key is "inputs" */
    int key_data;           /* the input object's current key is "data" */
    size_t elem;            /* index in the inputs array */
    size_t depth;           /* containers open */
    size_t copied, out;     /* bytes of s consumed, of l->text written */
};

/* The string s[i..j] (quotes included) was read: note it if it is a key.
 * Keys are compared as raw bytes, so an escaped key is simply not
 * lifted. */
static void scan_string(struct scan *sc, const char *s, size_t i, size_t j)
{
    size_t d = sc->depth;
    if (d < 1 || d > LEVELS || sc->type[d - 1] != '{' || !sc->expect_key[d - 1])
        return;
    size_t klen = j - i - 1;
    if (d == 1)
        sc->key_inputs = klen == 6 && memcmp(s + i + 1, "inputs", 6) == 0;
    else if (d == 3)
        sc->key_data = klen == 4 && memcmp(s + i + 1, "data", 4) == 0;
    sc->expect_key[d - 1] = 0;
}

/* Structure outside strings. */
static void scan_punct(struct scan *sc, char c)
{
    size_t d = sc->depth;
    if (c == '{' || c == '[') {
        if (d < LEVELS) {
            sc->type[d] = c;
            sc->expect_key[d] = c == '{';
        }
        sc->depth++;
    } else if ((c == '}' || c == ']') && d > 0) {
        /* A stray closer is Jansson's to report; here it must not wrap
         * the depth around. */
        sc->depth--;
    } else if (c == ',') {
        if (d >= 1 && d <= LEVELS && sc->type[d - 1] == '{')
            sc->expect_key[d - 1] = 1;
        if (d == 2 && sc->type[1] == '[' && sc->key_inputs)
            sc->elem++;
    }
}

/* At a '[' that opens root."inputs"[elem]."data". */
static int at_data(const struct scan *sc)
{
    return sc->depth == 3 && sc->type[0] == '{' && sc->type[1] == '[' &&
           sc->type[2] == '{' && sc->key_inputs && sc->key_data;
}

/* Copy s[sc->copied..at) to l->text and write "[]" for the lifted array
 * s[at..end).  0, or -1 when out of memory. */
static int splice(struct codec_lift *l, struct scan *sc, const char *s,
                  size_t n, size_t at, size_t end)
{
    if (l->text == NULL) {
        /* Never longer than s: each lifted array shrinks to "[]". */
        l->text = malloc(n);
        if (l->text == NULL)
            return -1;
    }
    memcpy(l->text + sc->out, s + sc->copied, at - sc->copied);
    sc->out += at - sc->copied;
    memcpy(l->text + sc->out, "[]", 2);
    sc->out += 2;
    sc->copied = end;
    return 0;
}

int kinfer_codec_lift_scan(struct codec_lift *l, const char *s, size_t n)
{
    struct scan sc = {.depth = 0};
    memset(l, 0, sizeof *l);
    if (localeconv()->decimal_point[0] != '.')
        return 0; /* strtod would not read JSON reals */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            size_t j = string_end(s, n, i);
            if (j == n)
                goto none; /* unterminated: Jansson says so */
            scan_string(&sc, s, i, j);
            i = j;
            continue;
        }
        if (c == '[' && at_data(&sc)) {
            size_t end = lift_array(l, s, n, i, sc.elem);
            if (end != 0) {
                if (splice(l, &sc, s, n, i, end) != 0) {
                    kinfer_codec_lift_free(l);
                    memset(l, 0, sizeof *l);
                    return -1;
                }
                i = end - 1;
                continue;
            }
        }
        scan_punct(&sc, c);
    }
    if (l->n_arrays == 0)
        goto none;
    memcpy(l->text + sc.out, s + sc.copied, n - sc.copied);
    l->len = sc.out + n - sc.copied;
    return 1;
none:
    kinfer_codec_lift_free(l);
    memset(l, 0, sizeof *l);
    return 0;
}

const struct codec_lifted *kinfer_codec_lift_find(const struct codec_lift *l,
                                                  size_t input)
{
    for (size_t k = 0; l != NULL && k < l->n_arrays; k++)
        if (l->arrays[k].input == input)
            return &l->arrays[k];
    return NULL;
}

int kinfer_codec_lift_fill(const struct codec_lift *l,
                           const struct codec_lifted *a,
                           struct kinfer_tensor *t)
{
    /* The same rules as store_elem in codec_data.c: integer datatypes
     * take integers only, the float ones any number. */
    int want_int;
    switch (t->dtype) {
    case KINFER_DTYPE_FP16:
    case KINFER_DTYPE_BF16:
    case KINFER_DTYPE_FP32:
    case KINFER_DTYPE_FP64:
        want_int = 0;
        break;
    case KINFER_DTYPE_INT8:
    case KINFER_DTYPE_INT16:
    case KINFER_DTYPE_INT32:
    case KINFER_DTYPE_INT64:
    case KINFER_DTYPE_UINT8:
    case KINFER_DTYPE_UINT16:
    case KINFER_DTYPE_UINT32:
    case KINFER_DTYPE_UINT64:
        want_int = 1;
        break;
    default:
        return -1;
    }
    for (size_t k = 0; k < a->n; k++) {
        size_t v = a->first + k;
        if (want_int && !l->is_int[v])
            return -1;
        enum kinfer_put put;
        if (l->is_int[v] == 2) {
            /* Only UINT64 takes these; for any other type the ordinary
             * path says what it always said (Jansson's "too big
             * integer"). */
            if (t->dtype != KINFER_DTYPE_UINT64)
                return -1;
            uint64_t u;
            memcpy(&u, &l->ival[v], sizeof u);
            put = kinfer_tensor_put_uint(t, k, u);
        } else if (l->is_int[v]) {
            put = kinfer_tensor_put_int(t, k, l->ival[v]);
        } else {
            put = kinfer_tensor_put_real(t, k, l->num[v]);
        }
        if (put != KINFER_PUT_OK)
            return -1;
    }
    return 0;
}
