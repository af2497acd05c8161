/* Request keys, synthetic requests and result checks for kinfer-produce.
 * Requests are written with snprintf (their shape is fixed and the loop
 * is hot); lines and results are parsed with Jansson because they come
 * from outside. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "shared/util.h"

char *kprod_request_key(const char *line, size_t len, const char *key_field,
                        uint64_t lineno, size_t *keylen)
{
    json_t *root = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
    json_t *v = json_is_object(root) ? json_object_get(root, key_field) : NULL;
    char *key;
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        key = kinfer_xmalloc(n + 1);
        memcpy(key, json_string_value(v), n);
        key[n] = '\0';
        *keylen = n;
    } else {
        char buf[40];
        kinfer_fmt(buf, sizeof buf, "line-%" PRIu64, lineno);
        key = kinfer_xstrdup(buf);
        *keylen = strlen(key);
    }
    json_decref(root);
    return key;
}

/* splitmix64's finaliser: a cheap, well-mixed function of the counter. */
static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double kprod_gen_value(uint64_t index, size_t j)
{
    uint64_t h = mix(mix(index) ^ (uint64_t)j);
    /* 20001 steps of 1/1024: at most 14 significant bits, exact in FP32. */
    return (double)((int64_t)(h % 20001) - 10000) / 1024.0;
}

size_t kprod_gen_key(const struct kprod_gen *g, uint64_t index, char *buf,
                     size_t size)
{
    kinfer_fmt(buf, size, "gen-%s-%" PRIu64, g->runid, index);
    return size ? strlen(buf) : 0;
}

/* Longest "%.17g" plus a comma, with room to spare. */
#define NUMBER_MAX 32

size_t kprod_gen_max_size(const struct kprod_gen *g)
{
    return 320 + sizeof g->runid + 3 * NUMBER_MAX + g->dim * NUMBER_MAX;
}

/* Append to buf at *pos; the caller sized buf with kprod_gen_max_size, so
 * running out is a bug, not an input error. */
__attribute__((format(printf, 4, 5))) static void
append(char *buf, size_t size, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, size - *pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size - *pos) {
        fprintf(stderr, "kinfer-produce: request buffer too small\n");
        abort();
    }
    *pos += (size_t)n;
}

size_t kprod_gen_request(const struct kprod_gen *g, uint64_t index, char *buf,
                         size_t size)
{
    char key[sizeof g->runid + 32];
    size_t pos = 0;
    kprod_gen_key(g, index, key, sizeof key);
    append(buf, size, &pos,
           "{\"id\":\"%s\",\"model_name\":\"scale\","
           "\"parameters\":{\"factor\":%.17g},"
           "\"inputs\":[{\"name\":\"x\",\"datatype\":\"%s\","
           "\"shape\":[%zu],\"data\":[",
           key, g->factor, g->fp64 ? "FP64" : "FP32", g->dim);
    for (size_t j = 0; j < g->dim; j++)
        append(buf, size, &pos, "%s%.17g", j ? "," : "",
               kprod_gen_value(index, j));
    append(buf, size, &pos, "]}]}");
    return pos;
}

size_t kprod_gen_request_form(const struct kprod_gen *g, uint64_t index,
                              char *buf, size_t size, size_t *json_len)
{
    if (!g->binary) {
        size_t len = kprod_gen_request(g, index, buf, size);
        *json_len = len;
        return len;
    }
    char key[sizeof g->runid + 32];
    size_t pos = 0, esize = g->fp64 ? 8 : 4;
    kprod_gen_key(g, index, key, sizeof key);
    append(buf, size, &pos,
           "{\"id\":\"%s\",\"model_name\":\"scale\","
           "\"parameters\":{\"factor\":%.17g,\"binary_data_output\":true},"
           "\"inputs\":[{\"name\":\"x\",\"datatype\":\"%s\","
           "\"shape\":[%zu],\"parameters\":{\"binary_data_size\":%zu}}]}",
           key, g->factor, g->fp64 ? "FP64" : "FP32", g->dim, g->dim * esize);
    *json_len = pos;
    if (size - pos < g->dim * esize) {
        fprintf(stderr, "kinfer-produce: request buffer too small\n");
        abort();
    }
    /* Little-endian, as the protocol's binary form is (x86 and arm64
     * are; a big-endian build would swap here). */
    for (size_t j = 0; j < g->dim; j++) {
        double v = kprod_gen_value(index, j);
        if (g->fp64) {
            memcpy(buf + pos, &v, 8);
        } else {
            float f = (float)v;
            memcpy(buf + pos, &f, 4);
        }
        pos += esize;
    }
    return pos;
}

/* State of the walk over outputs[0].data. */
struct check {
    const struct kprod_gen *g;
    uint64_t index;
    double tol;
    size_t seen; /* numbers visited so far */
    int bad;     /* a reason was written */
    char *why;
    size_t whysize;
};

static void walk(struct check *c, const json_t *v)
{
    if (c->bad)
        return;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && !c->bad; i++)
            walk(c, json_array_get(v, i));
        return;
    }
    if (!json_is_number(v)) {
        kinfer_fmt(c->why, c->whysize, "outputs[0].data[%zu]: not a number",
                   c->seen);
        c->bad = 1;
        return;
    }
    size_t j = c->seen++;
    if (j >= c->g->dim)
        return; /* counted; the length check reports it */
    double got = json_number_value(v);
    double want = kprod_gen_value(c->index, j) * c->g->factor;
    double scale = fmax(fabs(want), fabs(got));
    if (!(fabs(got - want) <= c->tol * scale)) {
        kinfer_fmt(c->why, c->whysize,
                   "outputs[0].data[%zu]: %.17g, expected %.17g", j, got, want);
        c->bad = 1;
    }
}

/* outputs[0] in the binary form: g->dim values of g's datatype at
 * bin[0..bin_len). */
static enum kprod_verdict check_binary(const json_t *first,
                                       const unsigned char *bin, size_t bin_len,
                                       const struct kprod_gen *g,
                                       uint64_t index, char *why,
                                       size_t whysize)
{
    const char *dt = json_string_value(json_object_get(first, "datatype"));
    const char *want_dt = g->fp64 ? "FP64" : "FP32";
    size_t esize = g->fp64 ? 8 : 4;
    json_int_t size = json_integer_value(json_object_get(
        json_object_get(first, "parameters"), "binary_data_size"));
    if (dt == NULL || strcmp(dt, want_dt) != 0) {
        kinfer_fmt(why, whysize, "outputs[0].datatype: %s, expected %s",
                   dt ? dt : "(none)", want_dt);
        return KPROD_RESULT_WRONG;
    }
    if (size < 0 || (size_t)size != g->dim * esize || (size_t)size != bin_len) {
        kinfer_fmt(why, whysize,
                   "outputs[0]: binary_data_size %" JSON_INTEGER_FORMAT
                   " and %zu bytes after the header, expected %zu",
                   size, bin_len, g->dim * esize);
        return KPROD_RESULT_WRONG;
    }
    double tol = g->fp64 ? KPROD_TOLERANCE_FP64 : KPROD_TOLERANCE_FP32;
    for (size_t j = 0; j < g->dim; j++) {
        double got;
        if (g->fp64) {
            memcpy(&got, bin + j * 8, 8);
        } else {
            float f;
            memcpy(&f, bin + j * 4, 4);
            got = f;
        }
        double want = kprod_gen_value(index, j) * g->factor;
        if (!(fabs(got - want) <= tol * fmax(fabs(want), fabs(got)))) {
            kinfer_fmt(why, whysize,
                       "outputs[0] (binary) element %zu: %.17g, expected "
                       "%.17g",
                       j, got, want);
            return KPROD_RESULT_WRONG;
        }
    }
    return KPROD_RESULT_OK;
}

static enum kprod_verdict check_values(const json_t *root,
                                       const struct kprod_gen *g,
                                       uint64_t index, const unsigned char *bin,
                                       size_t bin_len, char *why,
                                       size_t whysize)
{
    const json_t *outputs = json_object_get(root, "outputs");
    const json_t *first = json_array_get(outputs, 0);
    const json_t *data = json_object_get(first, "data");
    if (data == NULL && json_object_get(json_object_get(first, "parameters"),
                                        "binary_data_size") != NULL)
        return check_binary(first, bin, bin_len, g, index, why, whysize);
    if (g->binary) {
        kinfer_fmt(why, whysize, "outputs[0]: JSON data, binary asked for");
        return KPROD_RESULT_WRONG;
    }
    if (!json_is_array(data)) {
        kinfer_fmt(why, whysize, "no outputs[0].data array");
        return KPROD_RESULT_WRONG;
    }
    struct check c = {
        .g = g,
        .index = index,
        .tol = g->fp64 ? KPROD_TOLERANCE_FP64 : KPROD_TOLERANCE_FP32,
        .why = why,
        .whysize = whysize,
    };
    walk(&c, data);
    if (c.bad)
        return KPROD_RESULT_WRONG;
    if (c.seen != g->dim) {
        kinfer_fmt(why, whysize, "outputs[0].data: %zu values, expected %zu",
                   c.seen, g->dim);
        return KPROD_RESULT_WRONG;
    }
    return KPROD_RESULT_OK;
}

enum kprod_verdict kprod_result_check(const void *buf, size_t len,
                                      const struct kprod_gen *g, int64_t index,
                                      char *why, size_t whysize)
{
    return kprod_result_check_form(buf, len, len, g, index, why, whysize);
}

enum kprod_verdict kprod_result_check_form(const void *buf, size_t len,
                                           size_t json_len,
                                           const struct kprod_gen *g,
                                           int64_t index, char *why,
                                           size_t whysize)
{
    json_error_t jerr;
    if (json_len > len) {
        kinfer_fmt(why, whysize,
                   "result header length %zu is past its %zu bytes", json_len,
                   len);
        return KPROD_RESULT_WRONG;
    }
    json_t *root = json_loadb(buf, json_len, 0, &jerr);
    enum kprod_verdict verdict = KPROD_RESULT_OK;
    if (root == NULL) {
        kinfer_fmt(why, whysize, "result is not JSON: %s", jerr.text);
        return KPROD_RESULT_WRONG;
    }
    const json_t *error = json_object_get(root, "error");
    if (!json_is_object(root)) {
        kinfer_fmt(why, whysize, "result is not a JSON object");
        verdict = KPROD_RESULT_WRONG;
    } else if (error != NULL) {
        kinfer_fmt(why, whysize, "%s",
                   json_is_string(error) ? json_string_value(error)
                                         : "(error is not a string)");
        verdict = KPROD_RESULT_ERROR;
    } else if (g != NULL && index >= 0) {
        verdict = check_values(root, g, (uint64_t)index,
                               (const unsigned char *)buf + json_len,
                               len - json_len, why, whysize);
    }
    json_decref(root);
    return verdict;
}
