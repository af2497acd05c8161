/* The request codec: Open Inference Protocol (KServe V2) JSON requests in,
 * results out.  Requests come straight off Kafka from anyone, so decoding
 * bounds size and nesting before Jansson sees a byte and names the exact
 * place of every error.  The only code in kinfer that includes Jansson.
 */
#include <float.h>
#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kinfer/request.h"

/* Longest echo of a client-supplied string (datatype, input name) inside
 * an error message, in bytes. */
#define ECHO_MAX 64

/* "[" + 8 dims of up to 20 digits + commas + "]": shape and index text. */
#define SHAPE_TEXT 200

/* ------------------------------------------------------------------ */
/* UTF-8                                                              */

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
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
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* Length of the longest well-formed UTF-8 prefix of s[0..n). */
static size_t utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (k == 0)
            break;
        i += k;
    }
    return i;
}

/* How many bytes of s to echo in a message: at most ECHO_MAX, never
 * splitting a multi-byte character. */
static int echo_len(const char *s)
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

/* A short "%g" text that reads back as exactly v (as a float when
 * is_float).  %.17g (%.9g) always does; shorter ones are tried first so
 * 0.1 is sent as 0.1, not 0.10000000000000001.  For a normal number the
 * short form (15 or 6 digits) is tried, then 16 or 8, then 17 or 9;
 * subnormals carry fewer digits, so they start from 1 (5e-324, not
 * 4.94065645841247e-324).  The decimal point is forced to '.' in case
 * someone calls setlocale(). */
static void fmt_real(char *buf, size_t size, double v, int is_float)
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

/* "[2,3]" */
static void fmt_shape(char *buf, size_t size, const int64_t *shape, int ndim)
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

/* "[1][0]" for the first n indices. */
static void fmt_index(char *buf, size_t size, const size_t *idx, int n)
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

/* What a JSON value is, for "got ..." in messages. */
static void describe(const json_t *v, char *buf, size_t size)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        /* 1e3 is a real: say 1000.0, not 1000, when an integer was due. */
        fmt_real(buf, size, json_real_value(v), 0);
        if (strpbrk(buf, ".e") == NULL)
            snprintf(buf + strlen(buf), size - strlen(buf), ".0");
        break;
    case JSON_STRING:
        snprintf(buf, size, "a string");
        break;
    case JSON_TRUE:
        snprintf(buf, size, "true");
        break;
    case JSON_FALSE:
        snprintf(buf, size, "false");
        break;
    case JSON_NULL:
        snprintf(buf, size, "null");
        break;
    case JSON_ARRAY:
        snprintf(buf, size, "an array");
        break;
    case JSON_OBJECT:
        snprintf(buf, size, "an object");
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Decoding                                                           */

struct lift;

struct dec {
    struct kinfer_limits lim; /* zero fields already replaced */
    char *err;
    size_t errsize;
    const struct lift *lift; /* fast path: pre-parsed data arrays */
};

static enum kinfer_err fail(struct dec *d, enum kinfer_err code,
                            const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum kinfer_err fail(struct dec *d, enum kinfer_err code,
                            const char *fmt, ...)
{
    if (d->err != NULL && d->errsize > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(d->err, d->errsize, fmt, ap);
        va_end(ap);
        if (n < 0)
            d->err[0] = '\0';
    }
    return code;
}

static enum kinfer_err fail_nomem(struct dec *d)
{
    return fail(d, KINFER_ERR_NOMEM, "out of memory decoding the request");
}

static char *copy_string(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c != NULL) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

/* A JSON string that holds \u0000 cannot become a C string. */
static int has_nul(const json_t *s)
{
    return strlen(json_string_value(s)) != json_string_length(s);
}

/* One pass over the raw bytes before Jansson parses them: Jansson
 * recurses once per nesting level, so a megabyte of '[' would exhaust the
 * stack of an inference thread.  Also rejects a NUL byte and malformed
 * UTF-8 with their byte offset, which Jansson reports less clearly. */
static enum kinfer_err prescan(struct dec *d, const char *s, size_t n)
{
    size_t depth = 0;
    int in_string = 0, escaped = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\0')
            return fail(d, KINFER_ERR_INVALID,
                        "request contains a NUL byte at offset %zu", i);
        if (in_string) {
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > d->lim.max_depth)
                return fail(d, KINFER_ERR_TOO_LARGE,
                            "JSON nesting deeper than %zu", d->lim.max_depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    size_t ok = utf8_valid_prefix(s, n);
    if (ok < n)
        return fail(d, KINFER_ERR_INVALID,
                    "request is not valid UTF-8: byte 0x%02x at offset %zu",
                    (unsigned char)s[ok], ok);
    return KINFER_OK;
}

/* ------------------------------------------------------------------ */
/* Fast path for numeric data                                         */

/* Most of a request is its "data" arrays of numbers, and Jansson spends
 * a heap object and a locale look-up on each one.  Before Jansson sees the
 * text, the scanner below finds each input's flat "data" array of plain
 * JSON numbers, parses the numbers itself into one buffer and hands Jansson
 * a copy of the text with those arrays emptied.  decode_input then fills
 * the tensor from the buffer with the same conversions store_elem makes.
 *
 * It changes nothing a client can see: only arrays of at least LIFT_MIN
 * strictly valid numbers are lifted, and whenever the fast decode fails
 * for any reason the request is decoded again the ordinary way, so every
 * error message comes from one place.  A test decodes the same data under
 * "data" and under an escaped "d\u0061ta" key (never lifted) and compares
 * the results bit for bit. */

#define LIFT_MIN 16

struct lifted {
    size_t input; /* index in "inputs" */
    size_t first; /* first value in struct lift's arrays */
    size_t n;     /* values */
};

struct lift {
    char *text; /* the request with lifted arrays replaced by [] */
    size_t len;
    struct lifted *arrays;
    size_t n_arrays, cap_arrays;
    double *num;     /* every value as a double */
    int64_t *ival;   /* the value, when it was written as an integer */
    uint8_t *is_int; /* 1: written as an integer (no fraction/exponent) */
    size_t n_vals, cap_vals;
};

static void lift_free(struct lift *l)
{
    free(l->text);
    free(l->arrays);
    free(l->num);
    free(l->ival);
    free(l->is_int);
}

static int lift_grow_vals(struct lift *l)
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

/* Parse one strict JSON number at s[*i..n) into the next value slot.
 * 0 on success (with *i past it); -1 when the text is not a plain JSON
 * number Jansson would accept with the same value (integers beyond int64
 * and reals that overflow are left to Jansson and its messages). */
static int lift_number(struct lift *l, const char *s, size_t n, size_t *i)
{
    size_t j = *i, start = j;
    int integral = 1;
    if (j < n && s[j] == '-')
        j++;
    if (j >= n || !is_digit(s[j]))
        return -1;
    if (s[j] == '0')
        j++;
    else
        while (j < n && is_digit(s[j]))
            j++;
    if (j < n && s[j] == '.') {
        integral = 0;
        j++;
        if (j >= n || !is_digit(s[j]))
            return -1;
        while (j < n && is_digit(s[j]))
            j++;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        integral = 0;
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j >= n || !is_digit(s[j]))
            return -1;
        while (j < n && is_digit(s[j]))
            j++;
    }
    if (lift_grow_vals(l) != 0)
        return -1;
    size_t k = l->n_vals;
    if (integral) {
        int neg = s[start] == '-';
        uint64_t mag = 0;
        for (size_t p = start + (size_t)neg; p < j; p++) {
            unsigned dgt = (unsigned)(s[p] - '0');
            if (mag > (UINT64_MAX - dgt) / 10)
                return -1;
            mag = mag * 10 + dgt;
        }
        if (mag > (uint64_t)INT64_MAX + (uint64_t)neg)
            return -1;
        int64_t v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        l->ival[k] = v;
        l->num[k] = (double)v;
    } else {
        /* s is not NUL-terminated, but the number is followed by ',', ']'
         * or white space, where strtod stops. */
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

/* Try to lift the array opening at s[at] (the value of inputs[input].data):
 * on success appends it and returns the index just past its ']'; on
 * anything but a flat array of at least LIFT_MIN numbers returns 0 and
 * leaves l as it was. */
static size_t lift_array(struct lift *l, const char *s, size_t n, size_t at,
                         size_t input)
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
        if (i < n && s[i] == ']' && l->n_vals - first >= LIFT_MIN) {
            if (l->n_arrays == l->cap_arrays) {
                size_t cap = l->cap_arrays ? l->cap_arrays * 2 : 4;
                struct lifted *a = realloc(l->arrays, cap * sizeof *a);
                if (a == NULL)
                    break;
                l->arrays = a;
                l->cap_arrays = cap;
            }
            l->arrays[l->n_arrays++] = (struct lifted){
                .input = input, .first = first, .n = l->n_vals - first};
            return i + 1;
        }
        break;
    }
    l->n_vals = first;
    return 0;
}

/* Walk the (already prescanned: valid UTF-8, bounded depth) text, lifting
 * every root."inputs"[i]."data" array it can.  Keys are compared as raw
 * bytes, so an escaped key is simply not lifted.  Returns 1 when something
 * was lifted (l->text then holds the shortened copy), 0 when not, -1 when
 * out of memory. */
static int lift_scan(struct lift *l, const char *s, size_t n)
{
    /* Container path: only the first three levels matter. */
    enum { MAXF = 4 };
    char type[MAXF];    /* '{' or '[' */
    int key_inputs = 0; /* root's current key is "inputs" */
    int key_data = 0;   /* the input object's current key is "data" */
    int expect_key[MAXF] = {0};
    size_t elem = 0; /* index in the inputs array */
    size_t depth = 0, copied = 0, out = 0;

    memset(l, 0, sizeof *l);
    if (localeconv()->decimal_point[0] != '.')
        return 0; /* strtod would not read JSON reals */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != '"')
                j += s[j] == '\\' ? 2 : 1;
            if (depth >= 1 && depth <= MAXF && type[depth - 1] == '{' &&
                expect_key[depth - 1]) {
                size_t klen = j - i - 1;
                int is_inputs =
                    klen == 6 && memcmp(s + i + 1, "inputs", 6) == 0;
                int is_data = klen == 4 && memcmp(s + i + 1, "data", 4) == 0;
                if (depth == 1)
                    key_inputs = is_inputs;
                else if (depth == 3)
                    key_data = is_data;
                expect_key[depth - 1] = 0;
            }
            i = j;
            continue;
        }
        if (c == '[' && depth == 3 && type[0] == '{' && type[1] == '[' &&
            type[2] == '{' && key_inputs && key_data) {
            size_t end = lift_array(l, s, n, i, elem);
            if (end != 0) {
                if (l->text == NULL) {
                    l->text = malloc(n);
                    if (l->text == NULL)
                        return -1;
                }
                memcpy(l->text + out, s + copied, i - copied);
                out += i - copied;
                memcpy(l->text + out, "[]", 2);
                out += 2;
                copied = end;
                i = end - 1;
                continue;
            }
        }
        if (c == '{' || c == '[') {
            if (depth < MAXF) {
                type[depth] = c;
                expect_key[depth] = c == '{';
            }
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',') {
            if (depth >= 1 && depth <= MAXF && type[depth - 1] == '{')
                expect_key[depth - 1] = 1;
            if (depth == 2 && type[1] == '[' && key_inputs)
                elem++;
        }
    }
    if (l->n_arrays == 0) {
        lift_free(l);
        memset(l, 0, sizeof *l);
        return 0;
    }
    memcpy(l->text + out, s + copied, n - copied);
    l->len = out + n - copied;
    return 1;
}

static const struct lifted *lift_find(const struct lift *l, size_t input)
{
    for (size_t k = 0; l != NULL && k < l->n_arrays; k++)
        if (l->arrays[k].input == input)
            return &l->arrays[k];
    return NULL;
}

/* Fill t from a lifted array, converting as store_elem does; -1 on any
 * value store_elem would refuse (the slow path then says why). */
static int lift_fill(const struct lift *l, const struct lifted *a,
                     struct kinfer_tensor *t)
{
    static const double fp32_limit = 0x1.ffffffp127;
    for (size_t k = 0; k < a->n; k++) {
        size_t v = a->first + k;
        switch (t->dtype) {
        case KINFER_DTYPE_INT64:
            if (!l->is_int[v])
                return -1;
            ((int64_t *)t->data)[k] = l->ival[v];
            break;
        case KINFER_DTYPE_INT32:
            if (!l->is_int[v] || l->ival[v] < INT32_MIN ||
                l->ival[v] > INT32_MAX)
                return -1;
            ((int32_t *)t->data)[k] = (int32_t)l->ival[v];
            break;
        case KINFER_DTYPE_FP32: {
            double x = l->num[v];
            if (fabs(x) >= fp32_limit)
                return -1;
            ((float *)t->data)[k] =
                fabs(x) > FLT_MAX ? (x > 0 ? FLT_MAX : -FLT_MAX) : (float)x;
            break;
        }
        case KINFER_DTYPE_FP64:
            ((double *)t->data)[k] = l->num[v];
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static enum kinfer_err fail_json(struct dec *d, const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_out_of_memory:
        return fail_nomem(d);
    case json_error_stack_overflow:
        return fail(d, KINFER_ERR_TOO_LARGE, "JSON nesting deeper than %d",
                    JSON_PARSER_MAX_DEPTH);
    case json_error_invalid_utf8: /* prescan catches it first */
        return fail(d, KINFER_ERR_INVALID,
                    "request is not valid UTF-8: %s at line %d column %d",
                    je->text, je->line, je->column);
    default:
        /* Duplicate keys land here too ("duplicate object key near
         * '"id"'"): which one would win is a guess we refuse to make. */
        return fail(d, KINFER_ERR_INVALID,
                    "request is not valid JSON: %s at line %d column %d",
                    je->text, je->line, je->column);
    }
}

/* Read optional string member key of obj into *out.  JSON null counts as
 * absent (clients built on optional fields often send it).  On a bad
 * value writes the error and returns its code. */
static enum kinfer_err read_opt_string(struct dec *d, const json_t *obj,
                                       const char *key, char **out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return KINFER_OK;
    if (!json_is_string(v))
        return fail(d, KINFER_ERR_INVALID, "%s: expected a string", key);
    if (has_nul(v))
        return fail(d, KINFER_ERR_INVALID, "%s: contains a NUL character", key);
    *out = copy_string(json_string_value(v), json_string_length(v));
    return *out == NULL ? fail_nomem(d) : KINFER_OK;
}

static enum kinfer_err decode_params(struct dec *d, const json_t *root,
                                     struct kinfer_request *req)
{
    json_t *params = json_object_get(root, "parameters");
    if (params == NULL || json_is_null(params))
        return KINFER_OK;
    if (!json_is_object(params))
        return fail(d, KINFER_ERR_INVALID, "parameters: expected an object");
    size_t n = json_object_size(params);
    if (n == 0)
        return KINFER_OK;
    req->params = calloc(n, sizeof *req->params);
    if (req->params == NULL)
        return fail_nomem(d);

    const char *key;
    json_t *v;
    json_object_foreach(params, key, v)
    {
        struct kinfer_param *p = &req->params[req->n_params];
        p->name = copy_string(key, strlen(key));
        if (p->name == NULL)
            return fail_nomem(d);
        req->n_params++;
        switch (json_typeof(v)) {
        case JSON_INTEGER:
            p->kind = KINFER_PARAM_NUMBER;
            p->is_integer = 1;
            p->integer = json_integer_value(v);
            p->number = (double)p->integer;
            break;
        case JSON_REAL:
            p->kind = KINFER_PARAM_NUMBER;
            p->number = json_real_value(v);
            break;
        case JSON_STRING:
            if (has_nul(v))
                return fail(d, KINFER_ERR_INVALID,
                            "parameters.%.*s: contains a NUL character",
                            echo_len(key), key);
            p->kind = KINFER_PARAM_STRING;
            p->string =
                copy_string(json_string_value(v), json_string_length(v));
            if (p->string == NULL)
                return fail_nomem(d);
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            p->kind = KINFER_PARAM_BOOL;
            p->boolean = json_is_true(v);
            break;
        default:
            p->kind = KINFER_PARAM_OTHER;
            break;
        }
    }
    return KINFER_OK;
}

/* Store JSON value v as element k of t.  On a type or range error writes
 * the reason (without the path) to why and returns KINFER_ERR_INVALID. */
static enum kinfer_err store_elem(struct kinfer_tensor *t, size_t k,
                                  const json_t *v, char *why, size_t whysize)
{
    char got[40];
    const char *dname = kinfer_dtype_name(t->dtype);
    switch (t->dtype) {
    case KINFER_DTYPE_BOOL:
        if (!json_is_boolean(v))
            break;
        ((uint8_t *)t->data)[k] = json_is_true(v) ? 1 : 0;
        return KINFER_OK;
    case KINFER_DTYPE_INT32:
    case KINFER_DTYPE_INT64: {
        if (!json_is_integer(v))
            break;
        json_int_t x = json_integer_value(v);
        if (t->dtype == KINFER_DTYPE_INT64) {
            ((int64_t *)t->data)[k] = (int64_t)x;
            return KINFER_OK;
        }
        if (x < INT32_MIN || x > INT32_MAX) {
            snprintf(why, whysize,
                     "integer %" JSON_INTEGER_FORMAT
                     " is out of range for INT32",
                     x);
            return KINFER_ERR_INVALID;
        }
        ((int32_t *)t->data)[k] = (int32_t)x;
        return KINFER_OK;
    }
    case KINFER_DTYPE_FP32: {
        if (!json_is_number(v))
            break;
        /* Decimal text of FLT_MAX (3.4028235e+38) is a little above it
         * and must still be accepted: anything below FLT_MAX plus half an
         * ulp rounds to FLT_MAX, anything from there on to infinity. */
        static const double limit = 0x1.ffffffp127;
        double x = json_number_value(v);
        if (fabs(x) >= limit) {
            fmt_real(got, sizeof got, x, 0);
            snprintf(why, whysize, "value %s is out of range for FP32", got);
            return KINFER_ERR_INVALID;
        }
        float f;
        if (fabs(x) > FLT_MAX) /* converting it would be undefined */
            f = x > 0 ? FLT_MAX : -FLT_MAX;
        else
            f = (float)x;
        ((float *)t->data)[k] = f;
        return KINFER_OK;
    }
    case KINFER_DTYPE_FP64:
        if (!json_is_number(v))
            break;
        ((double *)t->data)[k] = json_number_value(v);
        return KINFER_OK;
    case KINFER_DTYPE_BYTES:
        if (!json_is_string(v))
            break;
        return kinfer_tensor_set_bytes(t, k, json_string_value(v),
                                       json_string_length(v));
    case KINFER_DTYPE_INVALID:
        snprintf(why, whysize, "invalid datatype");
        return KINFER_ERR_INVALID;
    }

    static const char *const expected[] = {
        [KINFER_DTYPE_BOOL] = "true or false",
        [KINFER_DTYPE_INT32] = "an integer",
        [KINFER_DTYPE_INT64] = "an integer",
        [KINFER_DTYPE_FP32] = "a number",
        [KINFER_DTYPE_FP64] = "a number",
        [KINFER_DTYPE_BYTES] = "a string",
    };
    describe(v, got, sizeof got);
    snprintf(why, whysize, "expected %s for %s, got %s", expected[t->dtype],
             dname, got);
    return KINFER_ERR_INVALID;
}

/* Decoding state of one input, for the data walkers below. */
struct input_ctx {
    struct dec *d;
    size_t index;            /* position in "inputs" */
    struct kinfer_tensor *t; /* initialised; elements filled in order */
    const int64_t *shape;
    int ndim;
    size_t idx[KINFER_MAX_DIMS]; /* current position in nested data */
    size_t pos;                  /* next flat element */
};

/* Check that nested data a at level depth matches shape[depth..ndim-1],
 * before anything is allocated for it. */
static enum kinfer_err check_nested(struct input_ctx *c, const json_t *a,
                                    int depth)
{
    char where[SHAPE_TEXT], shape[SHAPE_TEXT];
    size_t want = (size_t)c->shape[depth];
    if (!json_is_array(a) || json_array_size(a) != want) {
        fmt_index(where, sizeof where, c->idx, depth);
        fmt_shape(shape, sizeof shape, c->shape, c->ndim);
        if (json_is_array(a))
            return fail(c->d, KINFER_ERR_INVALID,
                        "inputs[%zu].data%s: expected %zu element%s for "
                        "dimension %d of shape %s, got %zu",
                        c->index, where, want, want == 1 ? "" : "s", depth,
                        shape, json_array_size(a));
        char got[40];
        describe(a, got, sizeof got);
        return fail(c->d, KINFER_ERR_INVALID,
                    "inputs[%zu].data%s: expected an array for dimension %d "
                    "of shape %s, got %s",
                    c->index, where, depth, shape, got);
    }
    if (depth + 1 == c->ndim)
        return KINFER_OK;
    for (size_t k = 0; k < want; k++) {
        c->idx[depth] = k;
        enum kinfer_err rc = check_nested(c, json_array_get(a, k), depth + 1);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

/* Store the elements of a, whose own indices are idx[0..depth), in
 * row-major order; a is a leaf array when depth == leaf. */
static enum kinfer_err fill(struct input_ctx *c, const json_t *a, int depth,
                            int leaf)
{
    size_t n = json_array_size(a);
    for (size_t k = 0; k < n; k++) {
        c->idx[depth] = k;
        const json_t *v = json_array_get(a, k);
        if (depth < leaf) {
            enum kinfer_err rc = fill(c, v, depth + 1, leaf);
            if (rc != KINFER_OK)
                return rc;
            continue;
        }
        char why[160], where[SHAPE_TEXT];
        enum kinfer_err rc = store_elem(c->t, c->pos, v, why, sizeof why);
        if (rc == KINFER_ERR_NOMEM)
            return fail_nomem(c->d);
        if (rc != KINFER_OK) {
            fmt_index(where, sizeof where, c->idx, depth + 1);
            return fail(c->d, rc, "inputs[%zu].data%s: %s", c->index, where,
                        why);
        }
        c->pos++;
    }
    return KINFER_OK;
}

/* Element count of shape, or an error if it overflows or passes the
 * limit.  A zero dimension makes the count 0 however big the rest are. */
static enum kinfer_err shape_count(struct dec *d, size_t index,
                                   const int64_t *shape, int ndim,
                                   size_t *count)
{
    char text[SHAPE_TEXT];
    size_t n = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) {
            *count = 0;
            return KINFER_OK;
        }
        if ((uint64_t)shape[i] > SIZE_MAX || n > SIZE_MAX / (size_t)shape[i])
            overflow = 1;
        else
            n *= (size_t)shape[i];
    }
    fmt_shape(text, sizeof text, shape, ndim);
    if (overflow)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "inputs[%zu].shape: element count of %s overflows", index,
                    text);
    if (n > d->lim.max_elements)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "inputs[%zu].shape: %s is %zu elements, over the "
                    "%zu-element limit",
                    index, text, n, d->lim.max_elements);
    *count = n;
    return KINFER_OK;
}

static enum kinfer_err decode_input(struct dec *d, const json_t *in,
                                    size_t index, struct kinfer_request *req)
{
    if (!json_is_object(in))
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu]: expected an object",
                    index);

    json_t *name = json_object_get(in, "name");
    if (name == NULL)
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu].name: missing", index);
    if (!json_is_string(name) || json_string_length(name) == 0)
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].name: expected a non-empty string", index);
    if (has_nul(name))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].name: contains a NUL character", index);
    const char *nm = json_string_value(name);
    for (size_t j = 0; j < index; j++)
        if (strcmp(req->inputs[j].name, nm) == 0)
            return fail(d, KINFER_ERR_INVALID,
                        "inputs[%zu].name: duplicate input name '%.*s'", index,
                        echo_len(nm), nm);

    json_t *dt = json_object_get(in, "datatype");
    if (dt == NULL)
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu].datatype: missing",
                    index);
    if (!json_is_string(dt))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].datatype: expected a string", index);
    const char *dtname = json_string_value(dt);
    enum kinfer_dtype dtype = kinfer_dtype_from_name(dtname);
    if (dtype == KINFER_DTYPE_INVALID || has_nul(dt))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].datatype: unknown datatype '%.*s'", index,
                    echo_len(dtname), dtname);

    json_t *sh = json_object_get(in, "shape");
    if (sh == NULL)
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu].shape: missing", index);
    if (!json_is_array(sh))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].shape: expected an array", index);
    if (json_array_size(sh) > KINFER_MAX_DIMS)
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].shape: %zu dimensions, over the maximum "
                    "of %d",
                    index, json_array_size(sh), KINFER_MAX_DIMS);
    int64_t shape[KINFER_MAX_DIMS];
    int ndim = (int)json_array_size(sh);
    for (int i = 0; i < ndim; i++) {
        json_t *dim = json_array_get(sh, (size_t)i);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0)
            return fail(d, KINFER_ERR_INVALID,
                        "inputs[%zu].shape[%d]: expected a non-negative "
                        "integer",
                        index, i);
        shape[i] = (int64_t)json_integer_value(dim);
    }
    size_t count;
    enum kinfer_err rc = shape_count(d, index, shape, ndim, &count);
    if (rc != KINFER_OK)
        return rc;

    json_t *data = json_object_get(in, "data");
    if (data == NULL)
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu].data: missing", index);
    if (!json_is_array(data))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].data: expected an array", index);

    const struct lifted *lifted = lift_find(d->lift, index);
    if (lifted != NULL) {
        /* Any mismatch: fail, and decode() starts over the ordinary way,
         * which reports it. */
        if (json_array_size(data) != 0 || lifted->n != count)
            return KINFER_ERR_INVALID;
        rc = kinfer_tensor_init(&req->inputs[index], nm, dtype, ndim, shape);
        if (rc != KINFER_OK)
            return rc;
        return lift_fill(d->lift, lifted, &req->inputs[index]) == 0
                   ? KINFER_OK
                   : KINFER_ERR_INVALID;
    }

    /* Flat row-major or nested one level per dimension; for one dimension
     * the two are the same thing, for none the data is [value]. */
    struct input_ctx c = {.d = d,
                          .index = index,
                          .t = &req->inputs[index],
                          .shape = shape,
                          .ndim = ndim};
    int nested = ndim >= 2 && json_array_size(data) > 0 &&
                 json_is_array(json_array_get(data, 0));
    if (nested) {
        rc = check_nested(&c, data, 0);
        if (rc != KINFER_OK)
            return rc;
    } else if (json_array_size(data) != count) {
        char text[SHAPE_TEXT];
        fmt_shape(text, sizeof text, shape, ndim);
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].data: expected %zu element%s for shape "
                    "%s, got %zu",
                    index, count, count == 1 ? "" : "s", text,
                    json_array_size(data));
    }

    rc = kinfer_tensor_init(c.t, nm, dtype, ndim, shape);
    if (rc == KINFER_ERR_NOMEM)
        return fail_nomem(d);
    if (rc != KINFER_OK)
        return fail(d, rc, "inputs[%zu]: cannot create the tensor", index);
    return fill(&c, data, 0, nested ? ndim - 1 : 0);
}

static enum kinfer_err decode_inputs(struct dec *d, const json_t *root,
                                     struct kinfer_request *req)
{
    json_t *inputs = json_object_get(root, "inputs");
    if (inputs == NULL)
        return fail(d, KINFER_ERR_INVALID, "inputs: missing");
    if (!json_is_array(inputs))
        return fail(d, KINFER_ERR_INVALID, "inputs: expected an array");
    size_t n = json_array_size(inputs);
    if (n == 0)
        return fail(d, KINFER_ERR_INVALID,
                    "inputs: expected at least one input");
    if (n > d->lim.max_inputs)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "inputs: %zu inputs, over the %zu-input limit", n,
                    d->lim.max_inputs);
    req->inputs = calloc(n, sizeof *req->inputs);
    if (req->inputs == NULL)
        return fail_nomem(d);
    /* Zeroed tensors are empty, so clearing a half-decoded request is
     * safe from here on. */
    req->n_inputs = n;
    for (size_t i = 0; i < n; i++) {
        enum kinfer_err rc = decode_input(d, json_array_get(inputs, i), i, req);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

static enum kinfer_err decode_root(struct dec *d, const json_t *root,
                                   struct kinfer_request *req)
{
    if (!json_is_object(root))
        return fail(d, KINFER_ERR_INVALID, "request is not a JSON object");
    enum kinfer_err rc = read_opt_string(d, root, "id", &req->id);
    /* model_name is read even when id is unusable, so the error result
     * can carry it; the message stays the one about id. */
    struct dec quiet = *d;
    quiet.err = NULL;
    quiet.errsize = 0;
    enum kinfer_err rc_model = read_opt_string(
        rc == KINFER_OK ? d : &quiet, root, "model_name", &req->model_name);
    if (rc != KINFER_OK)
        return rc;
    if (rc_model != KINFER_OK)
        return rc_model;
    rc = decode_params(d, root, req);
    if (rc != KINFER_OK)
        return rc;
    return decode_inputs(d, root, req);
}

static enum kinfer_err decode(struct dec *d, const char *buf, size_t len,
                              struct kinfer_request *req)
{
    if (len > d->lim.max_request_bytes)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "request is %zu bytes, over the %zu-byte limit", len,
                    d->lim.max_request_bytes);
    if (buf == NULL || len == 0)
        return fail(d, KINFER_ERR_INVALID, "request is empty");
    enum kinfer_err rc = prescan(d, buf, len);
    if (rc != KINFER_OK)
        return rc;

    const size_t flags =
        JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY;
    json_error_t je;
    struct lift lift;
    if (lift_scan(&lift, buf, len) == 1) {
        struct dec fast = *d;
        fast.err = NULL;
        fast.errsize = 0;
        fast.lift = &lift;
        json_t *root = json_loadb(lift.text, lift.len, flags, &je);
        rc = root != NULL ? decode_root(&fast, root, req) : KINFER_ERR_INVALID;
        json_decref(root);
        lift_free(&lift);
        if (rc == KINFER_OK)
            return KINFER_OK;
        /* Start over the ordinary way, which says what is wrong. */
        kinfer_request_clear(req);
    }

    json_t *root = json_loadb(buf, len, flags, &je);
    if (root == NULL)
        return fail_json(d, &je);
    rc = decode_root(d, root, req);
    json_decref(root);
    return rc;
}

enum kinfer_err kinfer_request_decode(const void *buf, size_t len,
                                      const struct kinfer_limits *lim,
                                      struct kinfer_request *req, char *err,
                                      size_t errsize)
{
    struct dec d = {.err = err, .errsize = errsize};
    if (lim != NULL)
        d.lim = *lim;
    if (d.lim.max_request_bytes == 0)
        d.lim.max_request_bytes = KINFER_DEFAULT_MAX_REQUEST_BYTES;
    if (d.lim.max_elements == 0)
        d.lim.max_elements = KINFER_DEFAULT_MAX_ELEMENTS;
    if (d.lim.max_inputs == 0)
        d.lim.max_inputs = KINFER_DEFAULT_MAX_INPUTS;
    if (d.lim.max_depth == 0)
        d.lim.max_depth = KINFER_DEFAULT_MAX_DEPTH;

    memset(req, 0, sizeof *req);
    if (err != NULL && errsize > 0)
        err[0] = '\0';
    enum kinfer_err rc = decode(&d, buf, len, req);
    /* The message goes into a JSON error result: cut it before any
     * character that truncation (or anything else) left malformed. */
    if (rc != KINFER_OK && err != NULL && errsize > 0)
        err[utf8_valid_prefix(err, strlen(err))] = '\0';
    return rc;
}

void kinfer_request_clear(struct kinfer_request *req)
{
    if (req == NULL)
        return;
    free(req->id);
    free(req->model_name);
    for (size_t i = 0; i < req->n_params; i++) {
        free(req->params[i].name);
        free(req->params[i].string);
    }
    free(req->params);
    for (size_t i = 0; i < req->n_inputs; i++)
        kinfer_tensor_clear(&req->inputs[i]);
    free(req->inputs);
    memset(req, 0, sizeof *req);
}

const struct kinfer_param *
kinfer_request_param(const struct kinfer_request *req, const char *name)
{
    if (req == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < req->n_params; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return &req->params[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                           */

/* Results are written by hand rather than through json_dumps: Jansson
 * prints every real with one precision (%.17g by default) for the whole
 * document, which would turn FP32 0.1 into 0.10000000149011612 and FP64
 * 0.1 into 0.10000000000000001, and it would need a json_t per element. */

struct jbuf {
    char *p;
    size_t len, cap;
    int nomem;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->nomem)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->nomem = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->nomem = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void jb_puts(struct jbuf *b, const char *s)
{
    jb_put(b, s, strlen(s));
}

/* s[0..n) as a JSON string.  Malformed UTF-8 becomes U+FFFD when lossy,
 * else makes the call return -1 with nothing more written. */
static int jb_string(struct jbuf *b, const char *s, size_t n, int lossy)
{
    const unsigned char *u = (const unsigned char *)s;
    jb_put(b, "\"", 1);
    size_t run = 0; /* start of bytes not yet copied */
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        size_t k = c < 0x80 ? 1 : utf8_seq(u + i, n - i);
        if (k > 1) {
            i += k;
            continue;
        }
        jb_put(b, s + run, i - run);
        if (k == 0) {
            if (!lossy)
                return -1;
            jb_puts(b, "\xEF\xBF\xBD");
        } else if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            jb_put(b, esc, 2);
        } else {
            char esc[8];
            const char *named = c == '\n'   ? "\\n"
                                : c == '\r' ? "\\r"
                                : c == '\t' ? "\\t"
                                : c == '\b' ? "\\b"
                                : c == '\f' ? "\\f"
                                            : NULL;
            if (named == NULL) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                named = esc;
            }
            jb_puts(b, named);
        }
        i++;
        run = i;
    }
    jb_put(b, s + run, n - run);
    jb_put(b, "\"", 1);
    return 0;
}

/* ,"key":"value" (without the comma when first). */
static int jb_member(struct jbuf *b, int first, const char *key,
                     const char *value, int lossy)
{
    if (!first)
        jb_put(b, ",", 1);
    jb_string(b, key, strlen(key), 0);
    jb_put(b, ":", 1);
    return jb_string(b, value, strlen(value), lossy);
}

static int jb_element(struct jbuf *b, const struct kinfer_tensor *t, size_t k)
{
    char num[40];
    switch (t->dtype) {
    case KINFER_DTYPE_BOOL:
        jb_puts(b, ((const uint8_t *)t->data)[k] ? "true" : "false");
        return 0;
    case KINFER_DTYPE_INT32:
        snprintf(num, sizeof num, "%" PRId32, ((const int32_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_INT64:
        snprintf(num, sizeof num, "%" PRId64, ((const int64_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_FP32: {
        float f = ((const float *)t->data)[k];
        if (!isfinite(f))
            return -1;
        fmt_real(num, sizeof num, f, 1);
        break;
    }
    case KINFER_DTYPE_FP64: {
        double x = ((const double *)t->data)[k];
        if (!isfinite(x))
            return -1;
        fmt_real(num, sizeof num, x, 0);
        break;
    }
    case KINFER_DTYPE_BYTES: {
        const struct kinfer_bytes *e = (const struct kinfer_bytes *)t->data + k;
        if (e->data == NULL && e->len > 0)
            return -1;
        return jb_string(b, e->data ? e->data : "", e->len, 0);
    }
    default:
        return -1;
    }
    jb_puts(b, num);
    return 0;
}

/* Check that t is self-consistent before trusting count and data. */
static int tensor_ok(const struct kinfer_tensor *t)
{
    if (t->name == NULL || kinfer_dtype_size(t->dtype) == 0 || t->ndim < 0 ||
        t->ndim > KINFER_MAX_DIMS)
        return 0;
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (uint64_t)t->shape[i] > SIZE_MAX)
            return 0;
        size_t dim = (size_t)t->shape[i];
        if (dim != 0 && n > SIZE_MAX / dim)
            n = SIZE_MAX; /* any product this big cannot equal count */
        else
            n *= dim;
    }
    return n == t->count && (t->count == 0 || t->data != NULL);
}

static int jb_tensor(struct jbuf *b, const struct kinfer_tensor *t)
{
    if (!tensor_ok(t))
        return -1;
    char num[32];
    jb_puts(b, "{\"name\":");
    if (jb_string(b, t->name, strlen(t->name), 0) != 0)
        return -1;
    jb_puts(b, ",\"shape\":[");
    for (int i = 0; i < t->ndim; i++) {
        snprintf(num, sizeof num, "%s%" PRId64, i ? "," : "", t->shape[i]);
        jb_puts(b, num);
    }
    jb_puts(b, "],\"datatype\":\"");
    jb_puts(b, kinfer_dtype_name(t->dtype));
    jb_puts(b, "\",\"data\":[");
    for (size_t k = 0; k < t->count && !b->nomem; k++) {
        if (k > 0)
            jb_put(b, ",", 1);
        if (jb_element(b, t, k) != 0)
            return -1;
    }
    jb_puts(b, "]}");
    return 0;
}

/* Hand the buffer over as a NUL-terminated string, or free it. */
static enum kinfer_err jb_finish(struct jbuf *b, int bad, char **out,
                                 size_t *outlen)
{
    if (!bad)
        jb_put(b, "", 1);
    if (bad || b->nomem) {
        free(b->p);
        return bad ? KINFER_ERR_INVALID : KINFER_ERR_NOMEM;
    }
    *out = b->p;
    *outlen = b->len - 1;
    return KINFER_OK;
}

enum kinfer_err kinfer_result_encode(const char *id, const char *model_name,
                                     const char *model_version,
                                     const struct kinfer_tensor *outputs,
                                     size_t n_outputs, char **out,
                                     size_t *outlen)
{
    if (out == NULL || outlen == NULL || (outputs == NULL && n_outputs > 0))
        return KINFER_ERR_INVALID;
    struct jbuf b = {0};
    int bad = 0, first = 1;
    const char *keys[] = {"id", "model_name", "model_version"};
    const char *values[] = {id, model_name, model_version};
    jb_put(&b, "{", 1);
    for (size_t i = 0; i < 3 && !bad; i++) {
        if (values[i] == NULL)
            continue;
        bad = jb_member(&b, first, keys[i], values[i], 0) != 0;
        first = 0;
    }
    jb_puts(&b, first ? "\"outputs\":[" : ",\"outputs\":[");
    for (size_t i = 0; i < n_outputs && !bad && !b.nomem; i++) {
        if (i > 0)
            jb_put(&b, ",", 1);
        bad = jb_tensor(&b, &outputs[i]) != 0;
    }
    jb_puts(&b, "]}");
    return jb_finish(&b, bad, out, outlen);
}

enum kinfer_err kinfer_error_encode(const char *id, const char *model_name,
                                    const char *message, char **out,
                                    size_t *outlen)
{
    if (out == NULL || outlen == NULL)
        return KINFER_ERR_INVALID;
    struct jbuf b = {0};
    int first = 1;
    jb_put(&b, "{", 1);
    if (id != NULL) {
        jb_member(&b, first, "id", id, 1);
        first = 0;
    }
    if (model_name != NULL) {
        jb_member(&b, first, "model_name", model_name, 1);
        first = 0;
    }
    jb_member(&b, first, "error", message ? message : "unknown error", 1);
    jb_put(&b, "}", 1);
    return jb_finish(&b, 0, out, outlen);
}
