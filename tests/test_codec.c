/* Unit tests of the request codec (lib/codec_*.c).  Usage: test_codec DATA_DIR
 * (tests/data/codec). Requests are data: DATA_DIR/invalid/<case>/{input,error}
 * must fail with exactly that message (an optional second line of error names
 * the code, e.g. KINFER_ERR_TOO_LARGE; default KINFER_ERR_INVALID), and
 * DATA_DIR/valid/<case>/{input,expect} must decode to what expect
 * describes (the format is render_request below).  Adding a case needs no
 * code.  The rest: limits built in code, result encoding, round trips and
 * a truncation/mutation loop over every valid input.  Every request is
 * decoded from buffers that end where it ends (decode_edge), so a read
 * past the end fails the test.
 */
/* MAP_ANONYMOUS for the guard page, beside the build's _POSIX_C_SOURCE. */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/host.h"
#include "kinfer/request.h"

static const char *data_dir;

/* ------------------------------------------------------------------ */
/* Helpers                                                            */

struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    /* len + n + 1 must not wrap around: were n SIZE_MAX it would be 0, no
     * room would be made and memcpy would run off the buffer (gcc 12 at
     * -O3 sees that path through reencode and warns). */
    if (n > PTRDIFF_MAX / 4 || t->len > PTRDIFF_MAX / 4) {
        fail_msg("text of %zu + %zu bytes", t->len, n);
        return;
    }
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    text_add(t, buf, (size_t)n);
}

/* Whole file; NULL when it does not exist. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct text t = {0};
    char buf[4096];
    size_t n;
    text_add(&t, "", 0);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        text_add(&t, buf, n);
    assert_int_equal(ferror(f), 0);
    fclose(f);
    *len = t.len;
    return t.p;
}

/* Whole file DATA_DIR/kind/name/file; NULL when it does not exist. */
static char *read_case_file(const char *kind, const char *name,
                            const char *file, size_t *len)
{
    char path[2048];
    int n =
        snprintf(path, sizeof path, "%s/%s/%s/%s", data_dir, kind, name, file);
    assert_true(n > 0 && (size_t)n < sizeof path);
    return read_file(path, len);
}

static void trim_end(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && strchr(" \t\r\n", s[n - 1]) != NULL)
        s[--n] = '\0';
}

/* Names of the subdirectories of dir, sorted; returns how many. */
static int list_cases(const char *dir, struct dirent ***names)
{
    int n = scandir(dir, names, NULL, alphasort);
    if (n < 0)
        fail_msg("cannot list %s", dir);
    return n;
}

static int is_case(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int utf8_valid(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        int n = *u < 0x80                  ? 0
                : *u >= 0xC2 && *u <= 0xDF ? 1
                : (*u & 0xF0) == 0xE0      ? 2
                : *u >= 0xF0 && *u <= 0xF4 ? 3
                                           : -1;
        if (n < 0)
            return 0;
        u++;
        for (int i = 0; i < n; i++, u++)
            if ((*u & 0xC0) != 0x80)
                return 0;
    }
    return 1;
}

/* Buffers that end exactly where a request ends, so that a read past the
 * end fails the test: an exact-size malloc'd copy (ASan sees instrumented
 * reads, memcmp included) and a copy that ends at a PROT_NONE page (any
 * read faults, strtod's inside libc included, in any build).  The mapping
 * is made once, by setup_edge. */
static struct {
    char *map;  /* at least EDGE_ROOM bytes, then a PROT_NONE page */
    size_t len; /* of the whole mapping */
    char *end;  /* the guard page: a request at end - n ends right here */
} edge;

#define EDGE_ROOM ((size_t)64 << 10)

static int setup_edge(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t room = (EDGE_ROOM + page - 1) / page * page;
    edge.len = room + page;
    edge.map = mmap(NULL, edge.len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (edge.map == MAP_FAILED)
        return -1;
    edge.end = edge.map + room;
    return mprotect(edge.end, page, PROT_NONE);
}

static int teardown_edge(void **state)
{
    (void)state;
    return munmap(edge.map, edge.len);
}

/* kinfer_request_decode of input[0..n) from both buffers: they must give
 * the same code and message.  req and err get the malloc'd copy's result
 * (req borrows nothing from the buffer). */
static enum kinfer_err decode_edge(const char *input, size_t n,
                                   const struct kinfer_limits *lim,
                                   struct kinfer_request *req, char *err,
                                   size_t errsize)
{
    char *exact = malloc(n > 0 ? n : 1);
    assert_non_null(exact);
    if (n > 0)
        memcpy(exact, input, n);
    enum kinfer_err rc =
        kinfer_request_decode(exact, n, lim, req, err, errsize);
    free(exact);
    if (n > EDGE_ROOM)
        return rc;

    char *tail = edge.end - n;
    if (n > 0)
        memcpy(tail, input, n);
    struct kinfer_request req2;
    char err2[512];
    enum kinfer_err rc2 =
        kinfer_request_decode(tail, n, lim, &req2, err2, sizeof err2);
    if (rc2 != rc ||
        (rc != KINFER_OK && errsize >= sizeof err2 && strcmp(err, err2)))
        fail_msg("at a page end: %d '%s'; exact copy: %d '%s'", rc2, err2, rc,
                 rc != KINFER_OK ? err : "");
    kinfer_request_clear(&req2);
    return rc;
}

/* How the expect files write numbers: "%g" with the fewest digits, from
 * 15 (6 for FP32) up, that read back exactly; subnormals from 1. */
static void fmt_num(char *buf, size_t size, double v, int is_float)
{
    int sub = is_float ? fpclassify((float)v) == FP_SUBNORMAL
                       : fpclassify(v) == FP_SUBNORMAL;
    for (int p = sub ? 1 : is_float ? 6 : 15; p <= 17; p++) {
        snprintf(buf, size, "%.*g", p, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    if (v == 0 && signbit(v))
        snprintf(buf, size, "-0");
}

static void render_bytes(struct text *t, const struct kinfer_bytes *b)
{
    text_add(t, "\"", 1);
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            text_add(t, (const char *)&c, 1);
        else
            text_printf(t, "\\x%02x", c);
    }
    text_add(t, "\"", 1);
    assert_int_equal(b->data[b->len], '\0');
}

/* The expect file format, one fact per line:
 *   id: r-42                       (or "id: (none)")
 *   model_name: scale              (or "model_name: (none)")
 *   param factor: number 3 (integer)
 *   param ratio: number 0.5
 *   param label: string "abc"      (bytes outside printable ASCII as \xNN)
 *   param on: bool true
 *   param extra: other
 *   input x: FP64 [2,3] count 6
 *   data: 1 2 3 4 5 6              (BOOL true/false, BYTES quoted)
 */
static void render_request(struct text *t, const struct kinfer_request *r)
{
    text_printf(t, "id: %s\n", r->id ? r->id : "(none)");
    text_printf(t, "model_name: %s\n",
                r->model_name ? r->model_name : "(none)");
    if (r->model_version != NULL)
        text_printf(t, "model_version: %s\n", r->model_version);
    for (size_t i = 0; i < r->n_outputs; i++) {
        const struct kinfer_requested_output *o = &r->outputs[i];
        text_printf(t, "output %s:", o->name);
        for (size_t k = 0; k < o->n_params; k++)
            text_printf(t, " %s", o->params[k].name);
        text_printf(t, "\n");
    }
    for (size_t i = 0; i < r->n_params; i++) {
        const struct kinfer_param *p = &r->params[i];
        char num[40];
        text_printf(t, "param %s: ", p->name);
        switch (p->kind) {
        case KINFER_PARAM_NUMBER:
            if (p->is_integer) {
                assert_true(p->number == (double)p->integer);
                text_printf(t, "number %" PRId64 " (integer)\n", p->integer);
            } else {
                fmt_num(num, sizeof num, p->number, 0);
                text_printf(t, "number %s\n", num);
            }
            break;
        case KINFER_PARAM_STRING: {
            struct kinfer_bytes b = {p->string, strlen(p->string)};
            text_add(t, "string ", 7);
            render_bytes(t, &b);
            text_add(t, "\n", 1);
            break;
        }
        case KINFER_PARAM_BOOL:
            text_printf(t, "bool %s\n", p->boolean ? "true" : "false");
            break;
        case KINFER_PARAM_OTHER:
            text_printf(t, "other\n");
            break;
        }
        if (p->kind != KINFER_PARAM_STRING)
            assert_null(p->string);
    }
    for (size_t i = 0; i < r->n_inputs; i++) {
        const struct kinfer_tensor *in = &r->inputs[i];
        text_printf(t, "input %s: %s [", in->name,
                    kinfer_dtype_name(in->dtype));
        for (int d = 0; d < in->ndim; d++)
            text_printf(t, "%s%" PRId64, d ? "," : "", in->shape[d]);
        text_printf(t, "] count %zu\ndata:", in->count);
        for (size_t k = 0; k < in->count; k++) {
            char num[40];
            text_add(t, " ", 1);
            switch (in->dtype) {
            case KINFER_DTYPE_BOOL: {
                uint8_t v = ((uint8_t *)in->data)[k];
                assert_true(v == 0 || v == 1);
                text_printf(t, "%s", v ? "true" : "false");
                break;
            }
            case KINFER_DTYPE_INT32:
                text_printf(t, "%" PRId32, ((int32_t *)in->data)[k]);
                break;
            case KINFER_DTYPE_INT64:
                text_printf(t, "%" PRId64, ((int64_t *)in->data)[k]);
                break;
            case KINFER_DTYPE_FP32:
                fmt_num(num, sizeof num, ((float *)in->data)[k], 1);
                text_printf(t, "%s", num);
                break;
            case KINFER_DTYPE_FP64:
                fmt_num(num, sizeof num, ((double *)in->data)[k], 0);
                text_printf(t, "%s", num);
                break;
            case KINFER_DTYPE_BYTES:
                render_bytes(t, (struct kinfer_bytes *)in->data + k);
                break;
            default:
                fail_msg("bad dtype %d", in->dtype);
            }
        }
        text_add(t, "\n", 1);
    }
}

static int tensors_equal(const struct kinfer_tensor *a,
                         const struct kinfer_tensor *b)
{
    if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype ||
        a->ndim != b->ndim || a->count != b->count)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    if (a->dtype != KINFER_DTYPE_BYTES)
        return memcmp(a->data, b->data,
                      a->count * kinfer_dtype_size(a->dtype)) == 0;
    for (size_t k = 0; k < a->count; k++) {
        const struct kinfer_bytes *x = (struct kinfer_bytes *)a->data + k;
        const struct kinfer_bytes *y = (struct kinfer_bytes *)b->data + k;
        if (x->len != y->len || memcmp(x->data, y->data, x->len) != 0)
            return 0;
    }
    return 1;
}

/* Encode ts as a result, turn it back into a request ("outputs" becomes
 * "inputs"; the extra model_version key is ignored) and decode it. */
static void reencode(const struct kinfer_tensor *ts, size_t n,
                     struct kinfer_request *back)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(kinfer_result_encode("rt", "m", "1", ts, n, &out, &len),
                     KINFER_OK);
    assert_int_equal(strlen(out), len);
    char *key = strstr(out, "\"outputs\":");
    assert_non_null(key);
    struct text req = {0};
    text_add(&req, out, (size_t)(key - out));
    text_add(&req, "\"inputs\":", 9);
    text_add(&req, key + 10, len - (size_t)(key - out) - 10);
    free(out);
    char err[256];
    struct kinfer_limits lim = {.max_request_bytes = SIZE_MAX};
    enum kinfer_err rc =
        kinfer_request_decode(req.p, req.len, &lim, back, err, sizeof err);
    if (rc != KINFER_OK)
        fail_msg("re-decoding failed: %s\n%s", err, req.p);
    free(req.p);
}

/* ------------------------------------------------------------------ */
/* Data-driven cases                                                  */

static void test_invalid_cases(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/invalid", data_dir);
    struct dirent **names;
    int n = list_cases(dir, &names);
    int cases = 0, failures = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (!is_case(names[i])) {
            free(names[i]);
            continue;
        }
        size_t len, elen;
        char *input = read_case_file("invalid", name, "input", &len);
        char *expect = read_case_file("invalid", name, "error", &elen);
        if (input == NULL || expect == NULL)
            fail_msg("case %s: needs input and error files", name);

        /* error: message on line 1, optional code name on line 2 */
        enum kinfer_err want_rc = KINFER_ERR_INVALID;
        char *nl = strchr(expect, '\n');
        if (nl != NULL) {
            *nl = '\0';
            trim_end(nl + 1);
            if (strcmp(nl + 1, "KINFER_ERR_TOO_LARGE") == 0)
                want_rc = KINFER_ERR_TOO_LARGE;
            else if (nl[1] != '\0' && strcmp(nl + 1, "KINFER_ERR_INVALID"))
                fail_msg("case %s: unknown code '%s'", name, nl + 1);
        }
        trim_end(expect);

        struct kinfer_request req;
        char err[512];
        memset(err, 'x', sizeof err);
        enum kinfer_err rc =
            decode_edge(input, len, NULL, &req, err, sizeof err);
        if (rc != want_rc || strcmp(err, expect) != 0) {
            print_error("case %s:\n  want %s \"%s\"\n  got  %s \"%s\"\n", name,
                        kinfer_strerror(want_rc), expect, kinfer_strerror(rc),
                        rc ? err : "");
            failures++;
        }
        assert_true(utf8_valid(err));
        kinfer_request_clear(&req);
        free(input);
        free(expect);
        free(names[i]);
        cases++;
    }
    free(names);
    assert_int_equal(failures, 0);
    assert_true(cases >= 25);
}

static void test_valid_cases(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/valid", data_dir);
    struct dirent **names;
    int n = list_cases(dir, &names);
    int cases = 0, failures = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (!is_case(names[i])) {
            free(names[i]);
            continue;
        }
        size_t len, elen;
        char *input = read_case_file("valid", name, "input", &len);
        char *expect = read_case_file("valid", name, "expect", &elen);
        if (input == NULL || expect == NULL)
            fail_msg("case %s: needs input and expect files", name);
        trim_end(expect);

        struct kinfer_request req;
        char err[512];
        enum kinfer_err rc =
            decode_edge(input, len, NULL, &req, err, sizeof err);
        if (rc != KINFER_OK) {
            print_error("case %s: %s: %s\n", name, kinfer_strerror(rc), err);
            failures++;
        } else {
            struct text got = {0};
            render_request(&got, &req);
            trim_end(got.p);
            if (strcmp(got.p, expect) != 0) {
                print_error("case %s:\n--- want\n%s\n--- got\n%s\n", name,
                            expect, got.p);
                failures++;
            }
            free(got.p);
        }
        kinfer_request_clear(&req);
        free(input);
        free(expect);
        free(names[i]);
        cases++;
    }
    free(names);
    assert_int_equal(failures, 0);
    assert_true(cases >= 10);
}

/* Calls fn on the input of every valid case. */
static void each_valid_input(void (*fn)(const char *name, const char *input,
                                        size_t len))
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/valid", data_dir);
    struct dirent **names;
    int n = list_cases(dir, &names);
    for (int i = 0; i < n; i++) {
        if (is_case(names[i])) {
            size_t len;
            char *input =
                read_case_file("valid", names[i]->d_name, "input", &len);
            assert_non_null(input);
            fn(names[i]->d_name, input, len);
            free(input);
        }
        free(names[i]);
    }
    free(names);
}

/* decode -> encode the inputs as outputs -> decode: the same tensors. */
static void round_trip_one(const char *name, const char *input, size_t len)
{
    struct kinfer_request req, back;
    char err[512];
    assert_int_equal(decode_edge(input, len, NULL, &req, err, sizeof err),
                     KINFER_OK);
    reencode(req.inputs, req.n_inputs, &back);
    assert_int_equal(back.n_inputs, req.n_inputs);
    for (size_t i = 0; i < req.n_inputs; i++)
        if (!tensors_equal(&req.inputs[i], &back.inputs[i]))
            fail_msg("case %s: input %zu differs after a round trip", name, i);
    kinfer_request_clear(&req);
    kinfer_request_clear(&back);
}

static void test_round_trip_valid_cases(void **state)
{
    (void)state;
    each_valid_input(round_trip_one);
}

/* Every strict prefix of a valid request is an error, never a crash; so
 * is almost any one-byte change, and when it is an error the message is
 * non-empty, valid UTF-8, and the request is safe to clear. */
static void mangle_one(const char *name, const char *input, size_t len)
{
    while (len > 0 && strchr(" \t\r\n", input[len - 1]) != NULL)
        len--; /* "{...}" + "\n" minus the "\n" would still be valid */
    char *buf = malloc(len);
    assert_non_null(buf);
    char err[512];
    struct kinfer_request req;
    for (size_t n = 0; n < len; n++) {
        enum kinfer_err rc = decode_edge(input, n, NULL, &req, err, sizeof err);
        if (rc == KINFER_OK)
            fail_msg("case %s: prefix of %zu bytes decoded", name, n);
        assert_true(err[0] != '\0' && utf8_valid(err));
        kinfer_request_clear(&req);
    }
    static const char subst[] = {'"',  '[', '{',  ']',        '}',
                                 '\\', ',', ':',  '0',        '-',
                                 'x',  ' ', '\0', (char)0xff, (char)0xc3};
    for (size_t i = 0; i < len; i++) {
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(buf, input, len);
            buf[i] = subst[s];
            enum kinfer_err rc =
                decode_edge(buf, len, NULL, &req, err, sizeof err);
            if (rc != KINFER_OK)
                assert_true(err[0] != '\0' && utf8_valid(err));
            kinfer_request_clear(&req);
        }
    }
    free(buf);
}

static void test_truncation_and_mutation(void **state)
{
    (void)state;
    each_valid_input(mangle_one);
}

/* ------------------------------------------------------------------ */
/* Limits and partial results, built in code                          */

static const char small_request[] =
    "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT32\","
    "\"data\":[1]}]}";

static void test_oversized(void **state)
{
    (void)state;
    size_t len = 2000000;
    char *buf = malloc(len);
    assert_non_null(buf);
    /* A valid request padded with spaces: only the size is wrong. */
    memset(buf, ' ', len);
    memcpy(buf, small_request, sizeof small_request - 1);
    struct kinfer_request req;
    char err[256];
    assert_int_equal(
        kinfer_request_decode(buf, len, NULL, &req, err, sizeof err),
        KINFER_ERR_TOO_LARGE);
    assert_string_equal(err, "request is 2000000 bytes, over the 1000000-byte "
                             "limit");
    kinfer_request_clear(&req);

    /* Exactly at the limit is fine. */
    size_t limit = KINFER_DEFAULT_MAX_REQUEST_BYTES;
    assert_int_equal(
        kinfer_request_decode(buf, limit, NULL, &req, err, sizeof err),
        KINFER_OK);
    assert_int_equal(req.n_inputs, 1);
    kinfer_request_clear(&req);

    struct kinfer_limits lim = {.max_request_bytes = 64};
    assert_int_equal(kinfer_request_decode(small_request,
                                           sizeof small_request - 1, &lim, &req,
                                           err, sizeof err),
                     KINFER_ERR_TOO_LARGE);
    assert_string_equal(err, "request is 67 bytes, over the 64-byte limit");
    kinfer_request_clear(&req);
    free(buf);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* A megabyte of '[' must be refused by the scan, not by the stack. */
    size_t len = KINFER_DEFAULT_MAX_REQUEST_BYTES;
    char *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, '[', len);
    struct kinfer_request req;
    char err[256];
    assert_int_equal(
        kinfer_request_decode(buf, len, NULL, &req, err, sizeof err),
        KINFER_ERR_TOO_LARGE);
    assert_string_equal(err, "JSON nesting deeper than 32");
    kinfer_request_clear(&req);

    /* Brackets inside strings, escaped quotes included, do not count. */
    struct text t = {0};
    text_add(&t, "{\"id\":\"\\\"", 9);
    for (int i = 0; i < 100; i++)
        text_add(&t, "[{", 2);
    text_add(&t, "\",", 2);
    text_add(&t, small_request + 1, sizeof small_request - 2);
    assert_int_equal(
        kinfer_request_decode(t.p, t.len, NULL, &req, err, sizeof err),
        KINFER_OK);
    assert_int_equal(strlen(req.id), 201);
    kinfer_request_clear(&req);
    free(t.p);

    /* The cap is configurable; the request itself nests 4 deep. */
    struct kinfer_limits lim = {.max_depth = 3};
    assert_int_equal(kinfer_request_decode(small_request,
                                           sizeof small_request - 1, &lim, &req,
                                           err, sizeof err),
                     KINFER_ERR_TOO_LARGE);
    assert_string_equal(err, "JSON nesting deeper than 3");
    kinfer_request_clear(&req);
    lim.max_depth = 4;
    assert_int_equal(kinfer_request_decode(small_request,
                                           sizeof small_request - 1, &lim, &req,
                                           err, sizeof err),
                     KINFER_OK);
    kinfer_request_clear(&req);
    free(buf);
}

static void test_limits(void **state)
{
    (void)state;
    struct kinfer_request req;
    char err[256];
    const char two[] =
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[3],\"datatype\":\"FP32\","
        "\"data\":[1,2,3]},{\"name\":\"b\",\"shape\":[1],\"datatype\":"
        "\"FP32\",\"data\":[1]}]}";
    struct kinfer_limits lim = {.max_inputs = 1};
    assert_int_equal(
        kinfer_request_decode(two, sizeof two - 1, &lim, &req, err, sizeof err),
        KINFER_ERR_TOO_LARGE);
    assert_string_equal(err, "inputs: 2 inputs, over the 1-input limit");
    kinfer_request_clear(&req);

    lim = (struct kinfer_limits){.max_elements = 2};
    assert_int_equal(
        kinfer_request_decode(two, sizeof two - 1, &lim, &req, err, sizeof err),
        KINFER_ERR_TOO_LARGE);
    assert_string_equal(err, "inputs[0].shape: [3] is 3 elements, over the "
                             "2-element limit");
    kinfer_request_clear(&req);

    lim.max_elements = 3;
    assert_int_equal(
        kinfer_request_decode(two, sizeof two - 1, &lim, &req, err, sizeof err),
        KINFER_OK);
    assert_int_equal(req.n_inputs, 2);
    kinfer_request_clear(&req);

    /* A short err buffer gets a terminated prefix; NULL err is allowed. */
    char tiny[8];
    assert_int_equal(
        kinfer_request_decode("[]", 2, NULL, &req, tiny, sizeof tiny),
        KINFER_ERR_INVALID);
    assert_string_equal(tiny, "request");
    kinfer_request_clear(&req);
    assert_int_equal(kinfer_request_decode("[]", 2, NULL, &req, NULL, 0),
                     KINFER_ERR_INVALID);
    kinfer_request_clear(&req);
    /* A Kafka tombstone has no value at all. */
    assert_int_equal(
        kinfer_request_decode(NULL, 0, NULL, &req, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_string_equal(err, "request is empty");
    kinfer_request_clear(&req);
}

static void test_names_kept_on_error(void **state)
{
    (void)state;
    struct kinfer_request req;
    char err[256];
    const char bad_input[] =
        "{\"id\":\"r-1\",\"model_name\":\"scale\",\"inputs\":[{\"name\":"
        "\"x\",\"shape\":[2],\"datatype\":\"FP64\",\"data\":[1]}]}";
    assert_int_equal(kinfer_request_decode(bad_input, sizeof bad_input - 1,
                                           NULL, &req, err, sizeof err),
                     KINFER_ERR_INVALID);
    assert_string_equal(err,
                        "inputs[0].data: expected 2 elements for shape [2], "
                        "got 1");
    assert_string_equal(req.id, "r-1");
    assert_string_equal(req.model_name, "scale");
    kinfer_request_clear(&req);

    /* A bad id does not hide a good model_name, and vice versa. */
    const char bad_id[] = "{\"id\":7,\"model_name\":\"m\",\"inputs\":[]}";
    assert_int_equal(kinfer_request_decode(bad_id, sizeof bad_id - 1, NULL,
                                           &req, err, sizeof err),
                     KINFER_ERR_INVALID);
    assert_string_equal(err, "id: expected a string");
    assert_null(req.id);
    assert_string_equal(req.model_name, "m");
    kinfer_request_clear(&req);

    const char bad_model[] = "{\"id\":\"i\",\"model_name\":[],\"inputs\":[]}";
    assert_int_equal(kinfer_request_decode(bad_model, sizeof bad_model - 1,
                                           NULL, &req, err, sizeof err),
                     KINFER_ERR_INVALID);
    assert_string_equal(err, "model_name: expected a string");
    assert_string_equal(req.id, "i");
    assert_null(req.model_name);
    kinfer_request_clear(&req);
    kinfer_request_clear(NULL);
}

static void test_param_lookup(void **state)
{
    (void)state;
    const char in[] =
        "{\"parameters\":{\"factor\":3,\"mode\":\"fast\",\"big\":"
        "9007199254740993},\"inputs\":[{\"name\":\"x\",\"shape\":[],"
        "\"datatype\":\"BOOL\",\"data\":[true]}]}";
    struct kinfer_request req;
    char err[256];
    assert_int_equal(
        kinfer_request_decode(in, sizeof in - 1, NULL, &req, err, sizeof err),
        KINFER_OK);
    const struct kinfer_param *p = kinfer_request_param(&req, "factor");
    assert_non_null(p);
    assert_int_equal(p->kind, KINFER_PARAM_NUMBER);
    assert_true(p->is_integer);
    assert_int_equal(p->integer, 3);
    p = kinfer_request_param(&req, "mode");
    assert_non_null(p);
    assert_string_equal(p->string, "fast");
    /* Integers keep all 64 bits even where the double cannot. */
    p = kinfer_request_param(&req, "big");
    assert_non_null(p);
    assert_int_equal(p->integer, INT64_C(9007199254740993));
    assert_null(kinfer_request_param(&req, "Factor"));
    assert_null(kinfer_request_param(&req, ""));
    assert_null(kinfer_request_param(&req, NULL));
    assert_null(kinfer_request_param(NULL, "factor"));
    kinfer_request_clear(&req);
}

/* ------------------------------------------------------------------ */
/* Encoding                                                           */

static void make_tensor(struct kinfer_tensor *t, const char *name,
                        enum kinfer_dtype dtype, int ndim, const int64_t *shape,
                        const void *values)
{
    assert_int_equal(kinfer_tensor_init(t, name, dtype, ndim, shape),
                     KINFER_OK);
    if (values != NULL)
        memcpy(t->data, values, t->count * kinfer_dtype_size(dtype));
}

static void expect_result(const char *id, const char *model,
                          const char *version, const struct kinfer_tensor *ts,
                          size_t n, const char *want)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(
        kinfer_result_encode(id, model, version, ts, n, &out, &len), KINFER_OK);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_result_encode_exact(void **state)
{
    (void)state;
    struct kinfer_tensor ts[5];
    int64_t s23[] = {2, 3}, s2[] = {2}, s0[] = {0};
    const double fp[] = {3, 6, 9, 12, 15, -0.5};
    const int32_t i32[] = {INT32_MIN, INT32_MAX};
    const uint8_t b[] = {1, 0};
    make_tensor(&ts[0], "x", KINFER_DTYPE_FP64, 2, s23, fp);
    make_tensor(&ts[1], "i", KINFER_DTYPE_INT32, 1, s2, i32);
    make_tensor(&ts[2], "flag", KINFER_DTYPE_BOOL, 1, s2, b);
    make_tensor(&ts[3], "s", KINFER_DTYPE_BYTES, 1, s2, NULL);
    assert_int_equal(kinfer_tensor_set_bytes(&ts[3], 0, "h\xc3\xa9", 3),
                     KINFER_OK);
    assert_int_equal(kinfer_tensor_set_bytes(&ts[3], 1, "a\0\"\n", 4),
                     KINFER_OK);
    make_tensor(&ts[4], "empty", KINFER_DTYPE_INT64, 1, s0, NULL);
    expect_result(
        "r-42", "scale", "1", ts, 5,
        "{\"id\":\"r-42\",\"model_name\":\"scale\",\"model_version\":\"1\","
        "\"outputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP64\","
        "\"data\":[3,6,9,12,15,-0.5]},{\"name\":\"i\",\"shape\":[2],"
        "\"datatype\":\"INT32\",\"data\":[-2147483648,2147483647]},"
        "{\"name\":\"flag\",\"shape\":[2],\"datatype\":\"BOOL\",\"data\":"
        "[true,false]},{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
        "\"data\":[\"h\xc3\xa9\",\"a\\u0000\\\"\\n\"]},{\"name\":\"empty\","
        "\"shape\":[0],\"datatype\":\"INT64\",\"data\":[]}]}");

    /* Absent id, model and version are left out; a scalar has shape []. */
    int64_t i64 = INT64_MIN;
    struct kinfer_tensor scalar;
    make_tensor(&scalar, "n", KINFER_DTYPE_INT64, 0, NULL, &i64);
    expect_result(NULL, NULL, NULL, &scalar, 1,
                  "{\"outputs\":[{\"name\":\"n\",\"shape\":[],\"datatype\":"
                  "\"INT64\",\"data\":[-9223372036854775808]}]}");
    expect_result("a", NULL, "2", NULL, 0,
                  "{\"id\":\"a\",\"model_version\":\"2\",\"outputs\":[]}");
    kinfer_tensor_clear(&scalar);
    for (int i = 0; i < 5; i++)
        kinfer_tensor_clear(&ts[i]);
}

static void test_fp_round_trip(void **state)
{
    (void)state;
    struct kinfer_tensor t[2];
    int64_t s1[] = {1};
    const double tenth = 0.1;
    const float f = 0.1f;
    make_tensor(&t[0], "d", KINFER_DTYPE_FP64, 1, s1, &tenth);
    make_tensor(&t[1], "f", KINFER_DTYPE_FP32, 1, s1, &f);
    /* The shortest text that reads back exactly, per element type. */
    expect_result(NULL, NULL, NULL, t, 2,
                  "{\"outputs\":[{\"name\":\"d\",\"shape\":[1],\"datatype\":"
                  "\"FP64\",\"data\":[0.1]},{\"name\":\"f\",\"shape\":[1],"
                  "\"datatype\":\"FP32\",\"data\":[0.1]}]}");
    struct kinfer_request back;
    reencode(t, 2, &back);
    assert_true(((double *)back.inputs[0].data)[0] == 0.1);
    assert_true(((float *)back.inputs[1].data)[0] == 0.1f);
    kinfer_request_clear(&back);
    kinfer_tensor_clear(&t[0]);
    kinfer_tensor_clear(&t[1]);

    /* Notation: %g's choice, shortest digits, subnormals included. */
    int64_t s7[] = {7};
    const double dv7[] = {100, 1e21, 1e-7, 5e-324, 2.5e-308, -1.5, 1.0 / 3};
    const float fv7[] = {100, 1e21f, 1e-7f, 1e-45f, 16777216, -0.0f, 1.0f / 3};
    make_tensor(&t[0], "d", KINFER_DTYPE_FP64, 1, s7, dv7);
    make_tensor(&t[1], "f", KINFER_DTYPE_FP32, 1, s7, fv7);
    expect_result(NULL, NULL, NULL, t, 2,
                  "{\"outputs\":[{\"name\":\"d\",\"shape\":[7],\"datatype\":"
                  "\"FP64\",\"data\":[100,1e+21,1e-07,5e-324,2.5e-308,-1.5,"
                  "0.3333333333333333]},{\"name\":\"f\",\"shape\":[7],"
                  "\"datatype\":\"FP32\",\"data\":[100,1e+21,1e-07,1e-45,"
                  "16777216,-0.0,0.33333334]}]}");
    reencode(t, 2, &back);
    assert_true(tensors_equal(&t[0], &back.inputs[0]));
    assert_true(tensors_equal(&t[1], &back.inputs[1]));
    kinfer_request_clear(&back);
    kinfer_tensor_clear(&t[0]);
    kinfer_tensor_clear(&t[1]);

    /* Extremes and random bit patterns come back bit for bit. */
    enum { N = 20000 };
    int64_t sn[] = {N};
    make_tensor(&t[0], "d", KINFER_DTYPE_FP64, 1, sn, NULL);
    make_tensor(&t[1], "f", KINFER_DTYPE_FP32, 1, sn, NULL);
    double *dv = t[0].data;
    float *fv = t[1].data;
    const double dfixed[] = {DBL_MAX,  -DBL_MAX, DBL_MIN,
                             4.9e-324, -0.0,     0.0,
                             1.0 / 3,  1e21,     123456789012345678.0};
    const float ffixed[] = {FLT_MAX, -FLT_MAX,    FLT_MIN,  1.4e-45f,
                            -0.0f,   16777216.0f, 1.0f / 3, 3.4028235e38f};
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t bits = x;
        uint32_t bits32 = (uint32_t)(x >> 32);
        memcpy(&dv[i], &bits, sizeof bits);
        memcpy(&fv[i], &bits32, sizeof bits32);
        if (!isfinite(dv[i]))
            dv[i] = 1.5;
        if (!isfinite(fv[i]))
            fv[i] = 2.5f;
    }
    memcpy(dv, dfixed, sizeof dfixed);
    memcpy(fv, ffixed, sizeof ffixed);
    reencode(t, 2, &back);
    assert_true(tensors_equal(&t[0], &back.inputs[0]));
    assert_true(tensors_equal(&t[1], &back.inputs[1]));
    kinfer_request_clear(&back);
    kinfer_tensor_clear(&t[0]);
    kinfer_tensor_clear(&t[1]);
}

/* Significant digits of a number's text: the digits before any exponent,
 * leading and trailing zeros left out (80 has one). */
static int sig_digits(const char *s, size_t n)
{
    int k = 0, upto_last_nonzero = 0, lead = 1;
    for (size_t i = 0; i < n && s[i] != 'e'; i++) {
        if (s[i] < '0' || s[i] > '9')
            continue;
        if (lead && s[i] == '0')
            continue;
        lead = 0;
        k++;
        if (s[i] != '0')
            upto_last_nonzero = k;
    }
    return upto_last_nonzero;
}

/* Check one element's text against v, independently of the encoder: it
 * reads back bit for bit with strtod/strtof; no text with one digit fewer
 * (the correctly rounded one) does; and it is exactly what "%.*g" prints
 * at a precision of max(digits, 15) (6 for FP32; 1 for subnormals), -0
 * aside. */
static void check_number(const char *s, size_t n, double v, int is_float)
{
    char text[64], want[64], shorter[64];
    assert_true(n > 0 && n < sizeof text);
    memcpy(text, s, n);
    text[n] = '\0';
    if (is_float) {
        float back = strtof(text, NULL), f = (float)v;
        if (memcmp(&back, &f, sizeof f) != 0)
            fail_msg("FP32 %a written %s reads back %a", v, text, back);
    } else {
        double back = strtod(text, NULL);
        if (memcmp(&back, &v, sizeof v) != 0)
            fail_msg("FP64 %a written %s reads back %a", v, text, back);
    }
    if (v == 0) {
        assert_string_equal(text, signbit(v) ? "-0.0" : "0");
        return;
    }
    int k = sig_digits(text, n);
    /* A subnormal holds fewer digits than the floor: compare at its own
     * (its exponent alone picks e-notation). */
    int sub = is_float ? fpclassify((float)v) == FP_SUBNORMAL
                       : fpclassify(v) == FP_SUBNORMAL;
    int floor = sub ? 1 : is_float ? 6 : 15;
    snprintf(want, sizeof want, "%.*g", k > floor ? k : floor, v);
    if (strcmp(text, want) != 0)
        fail_msg("%s %a written %s, %%g at %d digits gives %s",
                 is_float ? "FP32" : "FP64", v, text, k, want);
    if (k > 1) {
        snprintf(shorter, sizeof shorter, "%.*e", k - 2, v);
        int same = is_float ? strtof(shorter, NULL) == (float)v
                            : strtod(shorter, NULL) == v;
        if (same)
            fail_msg("%a written %s but %s reads back too", v, text, shorter);
    }
}

/* Encode t (FP32 or FP64, one dimension) and check every element's text. */
static void check_encoded_numbers(const struct kinfer_tensor *t)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(kinfer_result_encode(NULL, NULL, NULL, t, 1, &out, &len),
                     KINFER_OK);
    const char *p = strstr(out, "\"data\":[");
    assert_non_null(p);
    p += 8;
    int is_float = t->dtype == KINFER_DTYPE_FP32;
    for (size_t i = 0; i < t->count; i++) {
        size_t n = strcspn(p, ",]");
        double v = is_float ? ((const float *)t->data)[i]
                            : ((const double *)t->data)[i];
        check_number(p, n, v, is_float);
        assert_true(p[n] == (i + 1 < t->count ? ',' : ']'));
        p += n + 1;
    }
    free(out);
}

static void test_fp_shortest(void **state)
{
    (void)state;
    enum { N = 40000 };
    int64_t sn[] = {N};
    struct kinfer_tensor d, f;
    make_tensor(&d, "d", KINFER_DTYPE_FP64, 1, sn, NULL);
    make_tensor(&f, "f", KINFER_DTYPE_FP32, 1, sn, NULL);
    double *dv = d.data;
    float *fv = f.data;
    /* Extremes, subnormals, the edges of plain notation, powers. */
    const double dfixed[] = {DBL_MAX,
                             -DBL_MAX,
                             DBL_MIN,
                             -DBL_MIN,
                             DBL_TRUE_MIN,
                             0x0.fffffffffffffp-1022,
                             0.0,
                             -0.0,
                             1e-4,
                             9.999999999999999e-5,
                             1e15,
                             1e16,
                             1e17,
                             123456789012345678.0,
                             9007199254740993.0,
                             0.1,
                             0.3,
                             2.0 / 3,
                             5e-324,
                             1e23,
                             8.41e21,
                             5e-310};
    const float ffixed[] = {
        FLT_MAX,       -FLT_MAX,         FLT_MIN, -FLT_MIN,
        FLT_TRUE_MIN,  0x0.fffffep-126f, 0.0f,    -0.0f,
        1e-4f,         9.9999997e-5f,    1e6f,    999999.94f,
        16777216.0f,   16777218.0f,      0.1f,    1.0f / 3,
        3.4028235e38f, 7.0e-45f,         1e-45f,  33554432.0f};
    uint64_t x = 0x2545F4914F6CDD1Du;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t bits = x;
        uint32_t bits32 = (uint32_t)x;
        /* A quarter with a zero exponent field: subnormals. */
        if (i % 4 == 1) {
            bits &= 0x800fffffffffffffu;
            bits32 &= 0x807fffffu;
        }
        memcpy(&dv[i], &bits, sizeof bits);
        memcpy(&fv[i], &bits32, sizeof bits32);
        if (!isfinite(dv[i]))
            dv[i] = ldexp(1.0, (int)(i % 2098) - 1074); /* powers of 2 */
        if (!isfinite(fv[i]))
            fv[i] = ldexpf(1.0f, (int)(i % 277) - 149);
        /* Some short decimals, which the shortest form must find. */
        if (i % 16 == 3) {
            dv[i] = (double)(int64_t)(x % 2000001) / 1000.0;
            fv[i] = (float)((int64_t)(x % 20001) - 10000) / 100.0f;
        }
    }
    memcpy(dv, dfixed, sizeof dfixed);
    memcpy(fv, ffixed, sizeof ffixed);
    check_encoded_numbers(&d);
    check_encoded_numbers(&f);
    kinfer_tensor_clear(&d);
    kinfer_tensor_clear(&f);
}

static void test_result_encode_refuses(void **state)
{
    (void)state;
    int64_t s1[] = {1};
    struct kinfer_tensor t;
    char untouched[] = "untouched";
    char *out = untouched;
    size_t len = 7;
    const double bad_d[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        make_tensor(&t, "x", KINFER_DTYPE_FP64, 1, s1, &bad_d[i]);
        assert_int_equal(kinfer_result_encode("i", "m", "1", &t, 1, &out, &len),
                         KINFER_ERR_INVALID);
        kinfer_tensor_clear(&t);
    }
    const float bad_f = INFINITY;
    make_tensor(&t, "x", KINFER_DTYPE_FP32, 1, s1, &bad_f);
    assert_int_equal(kinfer_result_encode("i", "m", "1", &t, 1, &out, &len),
                     KINFER_ERR_INVALID);
    kinfer_tensor_clear(&t);

    /* BYTES and names must be UTF-8 to become JSON strings. */
    make_tensor(&t, "x", KINFER_DTYPE_BYTES, 1, s1, NULL);
    assert_int_equal(kinfer_tensor_set_bytes(&t, 0, "\xff", 1), KINFER_OK);
    assert_int_equal(kinfer_result_encode("i", "m", "1", &t, 1, &out, &len),
                     KINFER_ERR_INVALID);
    kinfer_tensor_clear(&t);
    make_tensor(&t, "\xc3", KINFER_DTYPE_INT32, 1, s1, NULL);
    assert_int_equal(kinfer_result_encode("i", "m", "1", &t, 1, &out, &len),
                     KINFER_ERR_INVALID);
    assert_int_equal(
        kinfer_result_encode("\xed\xa0\x80", "m", "1", NULL, 0, &out, &len),
        KINFER_ERR_INVALID);

    /* A tensor whose count disagrees with its shape is a model bug. */
    free(t.name);
    t.name = NULL;
    assert_int_equal(kinfer_result_encode("i", "m", "1", &t, 1, &out, &len),
                     KINFER_ERR_INVALID);
    t.name = strdup("x");
    assert_non_null(t.name);
    t.count = 2;
    assert_int_equal(kinfer_result_encode("i", "m", "1", &t, 1, &out, &len),
                     KINFER_ERR_INVALID);
    t.count = 1;
    assert_int_equal(kinfer_result_encode("i", "m", "1", NULL, 1, &out, &len),
                     KINFER_ERR_INVALID);
    assert_int_equal(kinfer_result_encode("i", "m", "1", &t, 1, NULL, &len),
                     KINFER_ERR_INVALID);
    kinfer_tensor_clear(&t);
    /* Nothing was written through the out-parameters. */
    assert_string_equal(out, "untouched");
    assert_int_equal(len, 7);
}

static void expect_error(const char *id, const char *model, const char *msg,
                         const char *want)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(kinfer_error_encode(id, model, msg, &out, &len),
                     KINFER_OK);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_error_encode(void **state)
{
    (void)state;
    expect_error("r-42", "scale", "inputs[0].datatype: unknown datatype 'FP8'",
                 "{\"id\":\"r-42\",\"model_name\":\"scale\",\"error\":"
                 "\"inputs[0].datatype: unknown datatype 'FP8'\"}");
    expect_error(NULL, NULL, "request is not a JSON object",
                 "{\"error\":\"request is not a JSON object\"}");
    expect_error(NULL, "m", "x", "{\"model_name\":\"m\",\"error\":\"x\"}");
    /* Quotes, backslashes and control characters are escaped. */
    expect_error("a\"b", NULL, "near '\"id\"' \\ tab\there\x01 \xe2\x82\xac",
                 "{\"id\":\"a\\\"b\",\"error\":\"near '\\\"id\\\"' \\\\ "
                 "tab\\there\\u0001 \xe2\x82\xac\"}");
    /* An error result must always go out: bad UTF-8 becomes U+FFFD. */
    expect_error("\xff", NULL, "bad \xc3",
                 "{\"id\":\"\xef\xbf\xbd\","
                 "\"error\":\"bad \xef\xbf\xbd\"}");
    expect_error(NULL, NULL, NULL, "{\"error\":\"unknown error\"}");
    assert_int_equal(kinfer_error_encode("i", "m", "x", NULL, NULL),
                     KINFER_ERR_INVALID);
}

/* Every decode error message must be sendable as an error result. */
static void test_decode_errors_encode(void **state)
{
    (void)state;
    const char in[] = "{\"id\":\"q\\\"1\",\"inputs\":[{\"name\":\"x\","
                      "\"shape\":[1],\"datatype\":\"\\u00e9\\\"\","
                      "\"data\":[1]}]}";
    struct kinfer_request req;
    char err[256];
    assert_int_equal(
        kinfer_request_decode(in, sizeof in - 1, NULL, &req, err, sizeof err),
        KINFER_ERR_INVALID);
    expect_error(req.id, req.model_name, err,
                 "{\"id\":\"q\\\"1\",\"error\":\"inputs[0].datatype: unknown "
                 "datatype '\xc3\xa9\\\"'\"}");
    kinfer_request_clear(&req);

    /* A long multi-byte datatype is cut on a character boundary. */
    struct text t = {0};
    text_add(&t, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"", 35);
    for (int i = 0; i < 40; i++)
        text_add(&t, "\xe2\x82\xac", 3);
    text_add(&t, "\",\"shape\":[1],\"data\":[1]}]}", 27);
    assert_int_equal(
        kinfer_request_decode(t.p, t.len, NULL, &req, err, sizeof err),
        KINFER_ERR_INVALID);
    assert_true(utf8_valid(err));
    assert_int_equal(strlen(err), strlen("inputs[0].datatype: unknown "
                                         "datatype ''") +
                                      63);
    kinfer_request_clear(&req);
    /* ... and so is one cut by a short err buffer. */
    char small[41]; /* room for the quote and 2 of the 3 bytes of a euro */
    assert_int_equal(
        kinfer_request_decode(t.p, t.len, NULL, &req, small, sizeof small),
        KINFER_ERR_INVALID);
    assert_string_equal(small, "inputs[0].datatype: unknown datatype '");
    kinfer_request_clear(&req);
    free(t.p);
}

/* --- the numeric fast path ----------------------------------------- */

/* The decoder parses big flat "data" arrays itself (lib/codec_lift.c, the
 * numeric fast path).  An escaped key ("d\u0061ta") means the same to
 * JSON but is never lifted, so decoding the same request both ways must
 * give the same result to the bit, or the same error word for word. */

static uint64_t fp_rng = 88172645463325252ULL;

static uint64_t fp_next(void)
{
    fp_rng ^= fp_rng << 13;
    fp_rng ^= fp_rng >> 7;
    fp_rng ^= fp_rng << 17;
    return fp_rng;
}

/* One number token, in one of the forms a client may write. */
static void fp_token(char *buf, size_t size)
{
    static const char *const odd[] = {
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1e5",
        "1E+5",
        "-2.5e-3",
        "1e-400",
        "3.4028235e38",
        "-3.4028235e38",
        "3.5e38",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "9223372036854775807",
        "-9223372036854775808",
        "123456789012345678",
        "1.0",
        "7",
        "4.9e-324",
        "1E400",
        "9223372036854775808",
        "0.1",
    };
    uint64_t r = fp_next();
    switch (r % 4) {
    case 0:
        snprintf(buf, size, "%s", odd[(r >> 8) % (sizeof odd / sizeof *odd)]);
        break;
    case 1:
        snprintf(buf, size, "%" PRId64, (int64_t)(r >> 16) % 100000 - 50000);
        break;
    case 2: {
        double v = (double)(int64_t)(r >> 11) / 9007199254740992.0 * 2000.0;
        snprintf(buf, size, "%.17g", v);
        break;
    }
    default:
        snprintf(buf, size, "%.9g", (float)((double)(r >> 40) / 1e5 - 80.0));
        break;
    }
}

static void fp_request(char *buf, size_t size, const char *key,
                       const char *dtype, int n, int shape_n, int key_first,
                       const char *tokens)
{
    if (key_first)
        snprintf(buf, size,
                 "{\"id\":\"f\",\"meta\":{\"data\":[1,2,3,4,5,6,7,8,9,10,"
                 "11,12,13,14,15,16,17]},\"inputs\":[{\"name\":\"a\","
                 "\"datatype\":\"INT32\",\"shape\":[1],\"data\":[5]},"
                 "{\"%s\":[%s],\"name\":\"x\",\"datatype\":\"%s\","
                 "\"shape\":[%d]}]}",
                 key, tokens, dtype, shape_n);
    else
        snprintf(buf, size,
                 "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"%s\","
                 "\"shape\":[2,%d],\"%s\":[ %s ]}],\"id\":\"f\"}",
                 dtype, shape_n / 2, key, tokens);
    (void)n;
}

/* The two texts differ in length before the data (the escaped key), so a
 * JSON syntax error is at another column: compare messages without it. */
static void strip_position(char *msg)
{
    char *at = strstr(msg, " at line ");
    if (at != NULL)
        *at = '\0';
}

/* Returns 1 when the request decoded, 0 when both paths refused it. */
static int fp_compare(const char *fast_text, const char *slow_text)
{
    struct kinfer_request a, b;
    char ea[512], eb[512];
    enum kinfer_err ra =
        decode_edge(fast_text, strlen(fast_text), NULL, &a, ea, sizeof ea);
    enum kinfer_err rb =
        decode_edge(slow_text, strlen(slow_text), NULL, &b, eb, sizeof eb);
    strip_position(ea);
    strip_position(eb);
    if (ra != rb || (ra != KINFER_OK && strcmp(ea, eb) != 0))
        fail_msg("fast path: %d '%s'; ordinary path: %d '%s'\n%s", ra, ea, rb,
                 eb, fast_text);
    if (ra == KINFER_OK) {
        assert_int_equal(a.n_inputs, b.n_inputs);
        for (size_t i = 0; i < a.n_inputs; i++) {
            const struct kinfer_tensor *x = &a.inputs[i], *y = &b.inputs[i];
            assert_string_equal(x->name, y->name);
            assert_int_equal(x->dtype, y->dtype);
            assert_int_equal(x->ndim, y->ndim);
            assert_int_equal(x->count, y->count);
            assert_memory_equal(x->shape, y->shape,
                                sizeof(int64_t) * (size_t)x->ndim);
            if (memcmp(x->data, y->data,
                       x->count * kinfer_dtype_size(x->dtype)) != 0)
                fail_msg("values differ for %s", fast_text);
        }
    }
    kinfer_request_clear(&a);
    kinfer_request_clear(&b);
    return ra == KINFER_OK;
}

static void test_fast_path_matches_ordinary(void **state)
{
    (void)state;
    static const char *const dtypes[] = {"FP32", "FP64", "INT32", "INT64",
                                         "BOOL"};
    /* Small arrays too: the tiny requests are lifted from one value up. */
    static const int sizes[] = {1, 2, 8, 15, 16, 17, 64, 301};
    enum { N_SIZES = sizeof sizes / sizeof sizes[0] };
    enum { TOK = 40 };
    char *tokens = malloc(301 * TOK + 16);
    char *fast = malloc(301 * TOK + 1024), *slow = malloc(301 * TOK + 1024);
    assert_non_null(tokens);
    assert_non_null(fast);
    assert_non_null(slow);
    int decoded = 0, refused = 0;
    for (int round = 0; round < 600; round++) {
        int n = sizes[fp_next() % N_SIZES];
        const char *dtype = dtypes[fp_next() % 5];
        /* Mostly clean integers for INT types, so success is common. */
        int ints_only = strncmp(dtype, "INT", 3) == 0 && fp_next() % 2;
        size_t used = 0;
        for (int k = 0; k < n; k++) {
            char t[TOK];
            if (ints_only)
                snprintf(t, sizeof t, "%d", (int)(fp_next() % 2001) - 1000);
            else
                fp_token(t, sizeof t);
            used += (size_t)snprintf(tokens + used, TOK + 2, "%s%s",
                                     k ? (k % 7 ? "," : " ,\n") : "", t);
        }
        /* Now and then the shape disagrees with the data. */
        int shape_n = fp_next() % 10 == 0 ? n + 2 : n;
        int key_first = (int)(fp_next() % 2);
        if (!key_first && shape_n % 2)
            shape_n++; /* [2, n/2] must cover the data to be valid */
        fp_request(fast, 301 * TOK + 1024, "data", dtype, n, shape_n, key_first,
                   tokens);
        fp_request(slow, 301 * TOK + 1024, "d\\u0061ta", dtype, n, shape_n,
                   key_first, tokens);
        if (fp_compare(fast, slow))
            decoded++;
        else
            refused++;
    }
    /* Both outcomes must be well represented for the comparison to mean
     * anything. */
    if (decoded < 100 || refused < 100)
        fail_msg("%d decoded, %d refused: too lopsided", decoded, refused);
    free(tokens);
    free(fast);
    free(slow);
}

/* Requests cut off inside an escape, a number or a literal, where a scan
 * that trusts the syntax steps past the end: the fast path's string scan
 * over `\` + one byte (`{"abcd\` read 6 bytes past the end) and strtod on
 * a real that ends the buffer.  Each must give Jansson's message, from
 * buffers that end where the request does. */
#define N15 "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"
#define DATA "{\"inputs\":[{\"data\":["
#define X17                                                                    \
    "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP64\",\"shape\":[17],"       \
    "\"data\":[" N15 ",16,"

static const struct {
    const char *input, *error;
} cut_off[] = {
    {"{\"abcd\\", "invalid escape near '\"abcd\\' at line 1 column 7"},
    {"\"\\", "invalid escape near '\"\\' at line 1 column 2"},
    {"{\"inputs\\", "invalid escape near '\"inputs\\' at line 1 column 9"},
    {"{\"inputs\":[{\"data\\",
     "invalid escape near '\"data\\' at line 1 column 18"},
    {"{\"inputs\":[{\"name\":\"x\\",
     "invalid escape near '\"x\\' at line 1 column 22"},
    {"{\"id\":\"\\u00", "invalid escape near '\"\\u00' at line 1 column 11"},
    {DATA "1.5", "']' expected near end of file at line 1 column 23"},
    {DATA N15 ",16.5", "']' expected near end of file at line 1 column 60"},
    {DATA N15 ",16,17", "']' expected near end of file at line 1 column 61"},
    {DATA N15 ",1e5", "']' expected near end of file at line 1 column 59"},
    {DATA N15 ",-2.5E-3", "']' expected near end of file at line 1 column 63"},
    {DATA N15 ",1.", "invalid token near '1.' at line 1 column 58"},
    {DATA N15 ",1e", "invalid token near '1e' at line 1 column 58"},
    {DATA N15 ",1e-", "invalid token near '1e-' at line 1 column 59"},
    {DATA N15 ",-", "invalid token near '-' at line 1 column 57"},
    {DATA N15 ",-0", "']' expected near end of file at line 1 column 58"},
    {DATA "true,fals", "invalid token near 'fals' at line 1 column 29"},
    {DATA "nul", "invalid token near 'nul' at line 1 column 23"},
    {"{\"id\":tr", "invalid token near 'tr' at line 1 column 8"},
    {X17 "1.5", "']' expected near end of file at line 1 column 104"},
    {X17 "1.5]", "'}' expected near end of file at line 1 column 105"},
};

static void test_no_read_past_end(void **state)
{
    (void)state;
    struct kinfer_request req;
    char err[512], want[512];
    for (size_t i = 0; i < sizeof cut_off / sizeof *cut_off; i++) {
        const char *in = cut_off[i].input;
        snprintf(want, sizeof want, "request is not valid JSON: %s",
                 cut_off[i].error);
        enum kinfer_err rc =
            decode_edge(in, strlen(in), NULL, &req, err, sizeof err);
        if (rc != KINFER_ERR_INVALID || strcmp(err, want) != 0)
            fail_msg("%s:\n  want \"%s\"\n  got  %d \"%s\"", in, want, rc, err);
        kinfer_request_clear(&req);
    }

    /* The same request complete ends at the guard page too, and the fast
     * path lifts all of it, the real before the closing brackets
     * included. */
    const char whole[] = X17 "1.5]}]}";
    assert_int_equal(
        decode_edge(whole, sizeof whole - 1, NULL, &req, err, sizeof err),
        KINFER_OK);
    assert_int_equal(req.n_inputs, 1);
    assert_int_equal(req.inputs[0].count, 17);
    const double *v = req.inputs[0].data;
    for (int k = 0; k < 16; k++)
        assert_true(v[k] == k + 1);
    assert_true(v[16] == 1.5);
    kinfer_request_clear(&req);
}

/* Every datatype through the binary form and back, and through JSON and
 * back: a result's outputs, read as a request's inputs, are the same
 * elements bit for bit.  The binary bytes are checked against the layout
 * the protocol fixes (little-endian; BYTES as a 4-byte length and the
 * bytes). */
static void test_binary_round_trip(void **state)
{
    (void)state;
    enum { N_T = 14 };
    struct kinfer_tensor t[N_T];
    int64_t three = 3;
    static const enum kinfer_dtype types[] = {
        KINFER_DTYPE_BOOL,   KINFER_DTYPE_UINT8,  KINFER_DTYPE_UINT16,
        KINFER_DTYPE_UINT32, KINFER_DTYPE_UINT64, KINFER_DTYPE_INT8,
        KINFER_DTYPE_INT16,  KINFER_DTYPE_INT32,  KINFER_DTYPE_INT64,
        KINFER_DTYPE_FP16,   KINFER_DTYPE_BF16,   KINFER_DTYPE_FP32,
        KINFER_DTYPE_FP64,   KINFER_DTYPE_BYTES};
    size_t expect_bin = 0;
    for (size_t i = 0; i < N_T; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%zu", i);
        assert_int_equal(kinfer_tensor_init(&t[i], name, types[i], 1, &three),
                         KINFER_OK);
        size_t es = kinfer_dtype_size(types[i]);
        if (types[i] == KINFER_DTYPE_BYTES) {
            assert_int_equal(kinfer_tensor_set_bytes(&t[i], 0, "", 0),
                             KINFER_OK);
            assert_int_equal(kinfer_tensor_set_bytes(&t[i], 1, "a\0\"", 3),
                             KINFER_OK);
            assert_int_equal(
                kinfer_tensor_set_bytes(&t[i], 2, "caf\xc3\xa9", 5), KINFER_OK);
            expect_bin += 3 * 4 + 8;
            continue;
        }
        unsigned char *b = t[i].data;
        for (size_t k = 0; k < 3 * es; k++) /* distinct bytes */
            b[k] = (unsigned char)(0x11 * (k + 1) + i);
        if (types[i] == KINFER_DTYPE_BOOL)
            b[0] = 1, b[1] = 0, b[2] = 1;
        if (types[i] == KINFER_DTYPE_FP16 || types[i] == KINFER_DTYPE_BF16 ||
            types[i] == KINFER_DTYPE_FP32 || types[i] == KINFER_DTYPE_FP64)
            for (size_t k = 0; k < 3; k++) /* finite: clear the top bits */
                b[k * es + es - 1] &= 0x3f;
        expect_bin += 3 * es;
    }
    struct kinfer_param all = {
        .name = "binary_data_output", .kind = KINFER_PARAM_BOOL, .boolean = 1};
    struct kinfer_request asked = {.params = &all, .n_params = 1};
    for (int binary = 0; binary < 2; binary++) {
        char *out = NULL;
        size_t len = 0, json_len = 0;
        assert_int_equal(kinfer_result_encode_for(binary ? &asked : NULL, "m",
                                                  "1", t, N_T, &out, &len,
                                                  &json_len),
                         KINFER_OK);
        assert_int_equal(len - json_len, binary ? expect_bin : 0);
        if (binary) {
            /* The first tensor's bytes lead, BOOL as 01 00 01. */
            assert_memory_equal(out + json_len, "\x01\x00\x01", 3);
            /* BYTES last: lengths 0, 3, 5 little-endian, then the bytes. */
            const char *tail = out + len - 20;
            assert_memory_equal(tail,
                                "\0\0\0\0\3\0\0\0a\0\"\5\0\0\0caf\xc3\xa9", 20);
        }
        /* "outputs" -> "inputs": the result as a request. */
        char *at = strstr(out, "\"outputs\":");
        assert_non_null(at);
        size_t pre = (size_t)(at - out);
        char *req_text = malloc(len);
        assert_non_null(req_text);
        memcpy(req_text, out, pre);
        memcpy(req_text + pre, "\"inputs\":", 9);
        memcpy(req_text + pre + 9, at + 10, len - pre - 10);
        struct kinfer_request back;
        char err[256] = "";
        assert_int_equal(kinfer_request_decode_binary(req_text, len - 1,
                                                      json_len - 1, NULL, &back,
                                                      err, sizeof err),
                         KINFER_OK);
        assert_int_equal(back.n_inputs, N_T);
        for (size_t i = 0; i < N_T; i++) {
            assert_int_equal(back.inputs[i].dtype, types[i]);
            assert_int_equal(back.inputs[i].count, 3);
            if (types[i] != KINFER_DTYPE_BYTES) {
                assert_memory_equal(back.inputs[i].data, t[i].data,
                                    3 * kinfer_dtype_size(types[i]));
                continue;
            }
            const struct kinfer_bytes *x = back.inputs[i].data, *y = t[i].data;
            for (size_t k = 0; k < 3; k++) {
                assert_int_equal(x[k].len, y[k].len);
                assert_memory_equal(x[k].data, y[k].data, y[k].len);
            }
        }
        kinfer_request_clear(&back);
        free(req_text);
        free(out);
    }
    for (size_t i = 0; i < N_T; i++)
        kinfer_tensor_clear(&t[i]);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR (tests/data/codec)\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_cases),
        cmocka_unit_test(test_valid_cases),
        cmocka_unit_test(test_round_trip_valid_cases),
        cmocka_unit_test(test_truncation_and_mutation),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_names_kept_on_error),
        cmocka_unit_test(test_param_lookup),
        cmocka_unit_test(test_result_encode_exact),
        cmocka_unit_test(test_fp_round_trip),
        cmocka_unit_test(test_fp_shortest),
        cmocka_unit_test(test_result_encode_refuses),
        cmocka_unit_test(test_error_encode),
        cmocka_unit_test(test_decode_errors_encode),
        cmocka_unit_test(test_fast_path_matches_ordinary),
        cmocka_unit_test(test_no_read_past_end),
        cmocka_unit_test(test_binary_round_trip),
    };
    return cmocka_run_group_tests(tests, setup_edge, teardown_edge);
}
