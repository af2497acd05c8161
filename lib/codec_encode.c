/* The result encoder: a model's output tensors, or an error message, as
 * the JSON result the worker produces to the output topic.  Written by
 * hand, without Jansson, so every number reads back exactly in its
 * shortest form and no element costs a heap object.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* Results are written by hand rather than through json_dumps: Jansson
 * prints every real with one precision (%.17g by default) for the whole
 * document, which would turn FP32 0.1 into 0.10000000149011612 and FP64
 * 0.1 into 0.10000000000000001, and it would need a json_t per element. */

/* The most kinfer_result_encode allocates up front; a bigger result grows
 * into its size, so a tensor whose count is wrong costs no large
 * allocation before tensor_ok refuses it. */
#define GUESS_MAX ((size_t)1 << 20)

struct jbuf {
    char *p;
    size_t len, cap;
    int nomem;
};

/* Room for n more bytes at b->p + b->len; NULL once out of memory. */
static char *jb_room(struct jbuf *b, size_t n)
{
    if (b->nomem)
        return NULL;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->nomem = 1;
                return NULL;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->nomem = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    /* Nothing asked of an empty buffer: no arithmetic on NULL. */
    return b->p ? b->p + b->len : NULL;
}

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    char *at = jb_room(b, n);
    if (at == NULL)
        return;
    memcpy(at, s, n);
    b->len += n;
}

/* A real straight into the buffer: no copy, no strlen. */
static void jb_real(struct jbuf *b, double v, int is_float)
{
    char *at = jb_room(b, CODEC_REAL_TEXT);
    if (at != NULL)
        b->len += kinfer_codec_fmt_real(at, CODEC_REAL_TEXT, v, is_float);
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
        size_t k = c < 0x80 ? 1 : kinfer_codec_utf8_seq(u + i, n - i);
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
        jb_real(b, f, 1);
        return 0;
    }
    case KINFER_DTYPE_FP64: {
        double x = ((const double *)t->data)[k];
        if (!isfinite(x))
            return -1;
        jb_real(b, x, 0);
        return 0;
    }
    case KINFER_DTYPE_INT8:
        snprintf(num, sizeof num, "%d", ((const int8_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_INT16:
        snprintf(num, sizeof num, "%d", ((const int16_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_UINT8:
        snprintf(num, sizeof num, "%u", ((const uint8_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_UINT16:
        snprintf(num, sizeof num, "%u", ((const uint16_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_UINT32:
        snprintf(num, sizeof num, "%" PRIu32, ((const uint32_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_UINT64:
        snprintf(num, sizeof num, "%" PRIu64, ((const uint64_t *)t->data)[k]);
        break;
    case KINFER_DTYPE_FP16:
    case KINFER_DTYPE_BF16: {
        uint16_t h = ((const uint16_t *)t->data)[k];
        if (!isfinite(kinfer_half_to_double(t->dtype, h)))
            return -1;
        char *at = jb_room(b, CODEC_REAL_TEXT);
        if (at != NULL)
            b->len += kinfer_codec_fmt_half(at, CODEC_REAL_TEXT, t->dtype, h);
        return 0;
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

/* Bytes of t in the binary tensor form. */
static size_t binary_size(const struct kinfer_tensor *t)
{
    if (t->dtype != KINFER_DTYPE_BYTES)
        return t->count * kinfer_dtype_size(t->dtype);
    size_t n = 0;
    const struct kinfer_bytes *e = t->data;
    for (size_t k = 0; k < t->count; k++)
        n += 4 + e[k].len;
    return n;
}

/* t's elements in the binary tensor form (little-endian; BYTES as a
 * 4-byte little-endian length and the bytes). */
static int jb_binary(struct jbuf *b, const struct kinfer_tensor *t)
{
    if (t->dtype != KINFER_DTYPE_BYTES) {
        jb_put(b, t->data, t->count * kinfer_dtype_size(t->dtype));
        return 0;
    }
    const struct kinfer_bytes *e = t->data;
    for (size_t k = 0; k < t->count; k++) {
        if (e[k].len > UINT32_MAX || (e[k].data == NULL && e[k].len > 0))
            return -1;
        uint32_t n = (uint32_t)e[k].len;
        unsigned char le[4] = {(unsigned char)n, (unsigned char)(n >> 8),
                               (unsigned char)(n >> 16),
                               (unsigned char)(n >> 24)};
        jb_put(b, (const char *)le, 4);
        jb_put(b, e[k].data, e[k].len);
    }
    return 0;
}

static int jb_tensor(struct jbuf *b, const struct kinfer_tensor *t, int binary)
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
    if (binary) {
        snprintf(num, sizeof num, "%zu", binary_size(t));
        jb_puts(b, "\",\"parameters\":{\"binary_data_size\":");
        jb_puts(b, num);
        jb_puts(b, "}}");
        return 0;
    }
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

/* The optional members of a result, in the order they are written. */
static const char *const result_keys[] = {"id", "model_name", "model_version"};

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

/* binary[i]: outputs[i] goes in binary form (binary NULL: none does). */
static enum kinfer_err encode_result(const char *id, const char *model_name,
                                     const char *model_version,
                                     const struct kinfer_tensor *outputs,
                                     size_t n_outputs, const uint8_t *binary,
                                     char **out, size_t *outlen,
                                     size_t *json_len)
{
    if (out == NULL || outlen == NULL || (outputs == NULL && n_outputs > 0))
        return KINFER_ERR_INVALID;
    struct jbuf b = {0};
    int bad = 0, first = 1;
    const char *values[] = {id, model_name, model_version};
    /* One allocation for the usual result instead of a doubling series:
     * the longest text of each element plus a comma.  Only a first guess
     * (names and bytes are not counted): the buffer still grows. */
    size_t guess = 256 + CODEC_REAL_TEXT; /* jb_real asks for a full one */
    for (size_t i = 0; i < n_outputs; i++) {
        size_t per = binary != NULL && binary[i]
                         ? kinfer_dtype_size(outputs[i].dtype)
                     : outputs[i].dtype == KINFER_DTYPE_BYTES
                         ? 16
                         : CODEC_REAL_TEXT - 6; /* "-1.2345678901234567e-308" */
        if (outputs[i].count < (GUESS_MAX - guess) / (per + 1))
            guess += outputs[i].count * (per + 1);
    }
    jb_room(&b, guess);
    jb_put(&b, "{", 1);
    for (size_t i = 0; i < 3 && !bad; i++) {
        if (values[i] == NULL)
            continue;
        bad = jb_member(&b, first, result_keys[i], values[i], 0) != 0;
        first = 0;
    }
    jb_puts(&b, first ? "\"outputs\":[" : ",\"outputs\":[");
    for (size_t i = 0; i < n_outputs && !bad && !b.nomem; i++) {
        if (i > 0)
            jb_put(&b, ",", 1);
        bad = jb_tensor(&b, &outputs[i], binary != NULL && binary[i]) != 0;
    }
    jb_puts(&b, "]}");
    if (json_len != NULL)
        *json_len = b.len;
    for (size_t i = 0; binary != NULL && i < n_outputs && !bad; i++)
        if (binary[i])
            bad = jb_binary(&b, &outputs[i]) != 0;
    return jb_finish(&b, bad, out, outlen);
}

enum kinfer_err kinfer_result_encode(const char *id, const char *model_name,
                                     const char *model_version,
                                     const struct kinfer_tensor *outputs,
                                     size_t n_outputs, char **out,
                                     size_t *outlen)
{
    return encode_result(id, model_name, model_version, outputs, n_outputs,
                         NULL, out, outlen, NULL);
}

/* The parameter called name of ps[0..n), or NULL. */
static const struct kinfer_param *param(const struct kinfer_param *ps, size_t n,
                                        const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].name, name) == 0)
            return &ps[i];
    return NULL;
}

int kinfer_result_wants_binary(const struct kinfer_request *req,
                               const char *output)
{
    if (req == NULL)
        return 0;
    for (size_t i = 0; i < req->n_outputs; i++) {
        const struct kinfer_requested_output *o = &req->outputs[i];
        if (strcmp(o->name, output) != 0)
            continue;
        const struct kinfer_param *p =
            param(o->params, o->n_params, "binary_data");
        if (p != NULL && p->kind == KINFER_PARAM_BOOL)
            return p->boolean;
        break;
    }
    const struct kinfer_param *all =
        param(req->params, req->n_params, "binary_data_output");
    return all != NULL && all->kind == KINFER_PARAM_BOOL && all->boolean;
}

enum kinfer_err kinfer_result_encode_for(const struct kinfer_request *req,
                                         const char *model_name,
                                         const char *model_version,
                                         const struct kinfer_tensor *outputs,
                                         size_t n_outputs, char **out,
                                         size_t *outlen, size_t *json_len)
{
    uint8_t small[16], *binary = small;
    if (n_outputs > sizeof small) {
        binary = malloc(n_outputs);
        if (binary == NULL)
            return KINFER_ERR_NOMEM;
    }
    for (size_t i = 0; i < n_outputs; i++)
        binary[i] = outputs != NULL && outputs[i].name != NULL &&
                    kinfer_result_wants_binary(req, outputs[i].name);
    enum kinfer_err rc =
        encode_result(req ? req->id : NULL, model_name, model_version, outputs,
                      n_outputs, binary, out, outlen, json_len);
    if (binary != small)
        free(binary);
    return rc;
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
