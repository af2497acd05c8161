/* Builds the integration tests' scale-model requests from their index and
 * checks results against the same derivation, with Jansson, so a result
 * is verified by recomputing rather than by remembering what was sent.
 */
#include "requests.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define SPEC_MAX 12

/* What request i asks for. */
struct spec {
    const char *dtype;
    int is_int;
    int ndim;
    int64_t shape[3];
    size_t count;
    double values[SPEC_MAX];
    double factor;
    int factor_is_int; /* send the factor as a JSON integer */
    int data_as_real;  /* send FP data as 1.0 rather than 1 */
};

static void spec_of(size_t i, struct spec *s)
{
    static const char *const dtypes[] = {"FP64", "FP32", "INT64", "INT32"};
    memset(s, 0, sizeof *s);
    s->dtype = dtypes[i % 4];
    s->is_int = i % 4 >= 2;
    switch ((i / 4) % 3) {
    case 0:
        s->ndim = 1;
        s->shape[0] = 1 + (int64_t)(i % 5);
        break;
    case 1:
        s->ndim = 2;
        s->shape[0] = 2;
        s->shape[1] = 1 + (int64_t)(i % 3);
        break;
    default:
        s->ndim = 3;
        s->shape[0] = 1 + (int64_t)(i % 2);
        s->shape[1] = 2;
        s->shape[2] = 3;
        break;
    }
    s->count = 1;
    for (int d = 0; d < s->ndim; d++)
        s->count *= (size_t)s->shape[d];
    /* Small integers: exact in every datatype, and their products with
     * halves are exact in FP32 too, so results compare exactly. */
    for (size_t j = 0; j < s->count; j++)
        s->values[j] = (double)((long)((i * 31 + j * 17) % 201) - 100);
    if (s->is_int) {
        s->factor = (double)((long)(i % 5) - 2);
        s->factor_is_int = 1;
    } else {
        long k = (long)(i % 9) - 4;
        s->factor = (double)k * 0.5;
        s->factor_is_int = k % 2 == 0;
        s->data_as_real = (i / 12) % 2;
    }
}

char *it_req_json(size_t i, size_t *len)
{
    struct spec s;
    spec_of(i, &s);
    char id[32];
    snprintf(id, sizeof id, "r-%zu", i);
    json_t *shape = json_array();
    for (int d = 0; d < s.ndim; d++)
        json_array_append_new(shape, json_integer(s.shape[d]));
    json_t *data = json_array();
    for (size_t j = 0; j < s.count; j++) {
        json_t *v = s.data_as_real ? json_real(s.values[j])
                                   : json_integer((json_int_t)s.values[j]);
        json_array_append_new(data, v);
    }
    json_t *input = json_object();
    json_object_set_new(input, "name", json_string("x"));
    json_object_set_new(input, "shape", shape);
    json_object_set_new(input, "datatype", json_string(s.dtype));
    json_object_set_new(input, "data", data);
    json_t *inputs = json_array();
    json_array_append_new(inputs, input);
    json_t *params = json_object();
    json_object_set_new(params, "factor",
                        s.factor_is_int ? json_integer((json_int_t)s.factor)
                                        : json_real(s.factor));
    json_t *req = json_object();
    json_object_set_new(req, "id", json_string(id));
    json_object_set_new(req, "model_name", json_string("scale"));
    json_object_set_new(req, "parameters", params);
    json_object_set_new(req, "inputs", inputs);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (text == NULL) {
        fprintf(stderr, "it: json_dumps failed\n");
        abort();
    }
    *len = strlen(text);
    return text;
}

int it_req_produce(struct it_ctx *ctx, const char *topic, size_t i,
                   int32_t partition, struct it_delivery *dr)
{
    char key[32], trace[32];
    int klen = snprintf(key, sizeof key, "key-%zu", i);
    int tlen = snprintf(trace, sizeof trace, "trace-%zu", i);
    size_t len = 0;
    char *value = it_req_json(i, &len);
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "trace-id", -1, trace, tlen);
    int rc =
        it_produce(ctx, topic, partition, key, (size_t)klen, value, len, h, dr);
    if (rc != 0)
        rd_kafka_headers_destroy(h);
    free(value);
    return rc;
}

int it_req_produce_range(struct it_ctx *ctx, const char *topic, size_t first,
                         size_t count, struct it_delivery *dr)
{
    for (size_t k = 0; k < count; k++) {
        if (it_req_produce(ctx, topic, first + k, RD_KAFKA_PARTITION_UA,
                           dr != NULL ? &dr[k] : NULL) != 0)
            return -1;
    }
    int failed = it_produce_flush(ctx, 60000);
    if (failed != 0) {
        fprintf(stderr, "it: %d of %zu requests were not delivered\n", failed,
                count);
        return -1;
    }
    return 0;
}

struct it_answers *it_answers_new(size_t n)
{
    struct it_answers *a = calloc(1, sizeof *a);
    unsigned *count = calloc(n != 0 ? n : 1, sizeof *count);
    if (a == NULL || count == NULL) {
        fprintf(stderr, "it: out of memory\n");
        abort();
    }
    a->n = n;
    a->count = count;
    return a;
}

void it_answers_free(struct it_answers *a)
{
    if (a == NULL)
        return;
    free(a->count);
    free(a);
}

static void note_wrong(struct it_answers *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note_wrong(struct it_answers *a, const char *fmt, ...)
{
    size_t slot = a->wrong++;
    if (slot >= sizeof a->first_wrong / sizeof a->first_wrong[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->first_wrong[slot], sizeof a->first_wrong[slot], fmt, ap);
    va_end(ap);
}

/* Index i when s (len bytes) is exactly prefix followed by decimal i < n. */
static int parse_index(const char *s, size_t len, const char *prefix, size_t n,
                       size_t *i)
{
    size_t plen = strlen(prefix);
    if (s == NULL || len <= plen || len > plen + 20 ||
        memcmp(s, prefix, plen) != 0)
        return -1;
    size_t v = 0;
    for (size_t k = plen; k < len; k++) {
        if (s[k] < '0' || s[k] > '9')
            return -1;
        v = v * 10 + (size_t)(s[k] - '0');
    }
    if (v >= n)
        return -1;
    *i = v;
    return 0;
}

/* NULL when result (already parsed) is right for request i, else why. */
static const char *check_result(size_t i, json_t *res, char *why, size_t size)
{
    struct spec s;
    spec_of(i, &s);
    char id[32];
    snprintf(id, sizeof id, "r-%zu", i);
    if (!json_is_object(res))
        return "result is not a JSON object";
    json_t *err = json_object_get(res, "error");
    if (err != NULL) {
        snprintf(why, size, "error result: %s",
                 json_is_string(err) ? json_string_value(err) : "?");
        return why;
    }
    const char *rid = json_string_value(json_object_get(res, "id"));
    if (rid == NULL || strcmp(rid, id) != 0) {
        snprintf(why, size, "id is %s, expected %s", rid ? rid : "(none)", id);
        return why;
    }
    const char *model = json_string_value(json_object_get(res, "model_name"));
    if (model == NULL || strcmp(model, "scale") != 0)
        return "model_name is not \"scale\"";
    json_t *outputs = json_object_get(res, "outputs");
    if (!json_is_array(outputs) || json_array_size(outputs) != 1)
        return "outputs is not an array of one tensor";
    json_t *out = json_array_get(outputs, 0);
    const char *name = json_string_value(json_object_get(out, "name"));
    if (name == NULL || strcmp(name, "x") != 0)
        return "output name is not \"x\"";
    const char *dtype = json_string_value(json_object_get(out, "datatype"));
    if (dtype == NULL || strcmp(dtype, s.dtype) != 0) {
        snprintf(why, size, "output datatype %s, expected %s",
                 dtype ? dtype : "(none)", s.dtype);
        return why;
    }
    json_t *shape = json_object_get(out, "shape");
    if (!json_is_array(shape) || json_array_size(shape) != (size_t)s.ndim)
        return "output shape has the wrong rank";
    for (int d = 0; d < s.ndim; d++) {
        json_t *dim = json_array_get(shape, (size_t)d);
        if (!json_is_integer(dim) || json_integer_value(dim) != s.shape[d])
            return "output shape differs from the input's";
    }
    json_t *data = json_object_get(out, "data");
    if (!json_is_array(data) || json_array_size(data) != s.count)
        return "output data has the wrong element count";
    for (size_t j = 0; j < s.count; j++) {
        json_t *v = json_array_get(data, j);
        double want = s.factor * s.values[j];
        if (!json_is_number(v) || (s.is_int && !json_is_integer(v))) {
            snprintf(why, size, "data[%zu] is not a%s number", j,
                     s.is_int ? "n integer" : "");
            return why;
        }
        double got = json_number_value(v);
        if (fabs(got - want) > 1e-9 * fmax(1.0, fabs(want))) {
            snprintf(why, size, "data[%zu] = %g, expected %g * %g = %g", j, got,
                     s.factor, s.values[j], want);
            return why;
        }
    }
    return NULL;
}

void it_answers_on_msg(const struct it_msg *m, void *arg)
{
    struct it_answers *a = arg;
    size_t i;
    if (parse_index(m->key, m->key_len, "key-", a->n, &i) != 0) {
        a->foreign++;
        return;
    }
    a->results++;
    if (a->count[i]++ == 0) {
        a->last_ms = it_now_ms();
        if (a->unique++ == 0)
            a->first_ms = a->last_ms;
    }

    char trace[64], want[64];
    snprintf(want, sizeof want, "trace-%zu", i);
    if (it_header_str(m->headers, "trace-id", trace, sizeof trace) < 0 ||
        strcmp(trace, want) != 0) {
        note_wrong(a, "r-%zu: header trace-id missing or not %s", i, want);
        return;
    }
    json_error_t jerr;
    json_t *res =
        json_loadb(m->value != NULL ? m->value : "", m->len, 0, &jerr);
    if (res == NULL) {
        note_wrong(a, "r-%zu: result is not JSON (%s): %.200s", i, jerr.text,
                   m->value != NULL ? m->value : "(null)");
        return;
    }
    char why[256];
    const char *bad = check_result(i, res, why, sizeof why);
    json_decref(res);
    if (bad != NULL)
        note_wrong(a, "r-%zu: %s; result %.200s", i, bad, m->value);
}

int it_answers_all(void *arg)
{
    const struct it_answers *a = arg;
    return a->unique == a->n;
}

int it_answers_reached(void *arg)
{
    const struct it_answers *a = arg;
    return a->unique >= a->target;
}

size_t it_answers_duplicates(const struct it_answers *a)
{
    return a->results - a->unique;
}

void it_answers_missing(const struct it_answers *a, size_t max, char *buf,
                        size_t size)
{
    size_t used = 0, listed = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < a->n && listed < max; i++) {
        if (a->count[i] != 0)
            continue;
        int w = snprintf(buf + used, size - used, "%sr-%zu",
                         listed != 0 ? " " : "", i);
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
        listed++;
    }
}
