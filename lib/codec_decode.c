/* The request decoder: an Open Inference Protocol (KServe V2) JSON
 * request, straight off Kafka from anyone, into a struct kinfer_request.
 * Bounds size and nesting before Jansson sees a byte, tries the numeric
 * fast path (codec_lift.c) first and names the exact place of every error.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"

enum kinfer_err kinfer_codec_fail(struct codec_dec *d, enum kinfer_err code,
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

enum kinfer_err kinfer_codec_fail_nomem(struct codec_dec *d)
{
    return kinfer_codec_fail(d, KINFER_ERR_NOMEM,
                             "out of memory decoding the request");
}

/* ------------------------------------------------------------------ */
/* Jansson's memory during one decode                                 */

/* A parsed request is a few dozen small Jansson objects (each value, each
 * object's hash table and pairs), all freed before the decode returns:
 * glibc malloc and free for each were about a fifth of the worker's CPU.
 * While a decode holds Jansson's document, its allocations come from a
 * bump arena of the calling thread and its frees of them cost nothing;
 * the arena is reset when the document has been released.  Anything that
 * does not fit, and every allocation outside a decode (repo.c, the
 * backends, other threads), is plain malloc/free, so the allocator stays
 * correct for every other user of Jansson in the process. */
#define ARENA_SIZE 16384
#define ARENA_ALIGN 16

struct arena {
    size_t used;
    int active; /* between arena_begin and arena_end on this thread */
    _Alignas(ARENA_ALIGN) unsigned char mem[ARENA_SIZE];
};

static _Thread_local struct arena arena;

static void *arena_malloc(size_t n)
{
    size_t at = (arena.used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (!arena.active || n > ARENA_SIZE || at > ARENA_SIZE - n)
        return malloc(n);
    arena.used = at + n;
    return arena.mem + at;
}

static void arena_free(void *p)
{
    uintptr_t u = (uintptr_t)p, base = (uintptr_t)arena.mem;
    /* Arena memory is only ever freed on its own thread, inside the
     * decode that allocated it: no json_t outlives decode(). */
    if (u >= base && u < base + ARENA_SIZE)
        return;
    free(p);
}

/* Installed before main, while the process has one thread: Jansson's
 * allocator is process-wide and must not change under a running thread.
 * Both functions behave as malloc/free until a decode turns the arena
 * on, so what was allocated before (or elsewhere) is freed correctly. */
__attribute__((constructor)) static void arena_install(void)
{
    json_set_alloc_funcs(arena_malloc, arena_free);
}

static void arena_begin(void)
{
    arena.used = 0;
    arena.active = 1;
}

/* Call only after every json_t of the decode has been released. */
static void arena_end(void)
{
    arena.active = 0;
    arena.used = 0;
}

/* ------------------------------------------------------------------ */

/* Short local names: this file reports an error on almost every line. */
#define fail kinfer_codec_fail
#define fail_nomem kinfer_codec_fail_nomem

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

/* The bytes prescan acts on; every other byte (digits, commas, letters:
 * most of a request) is skipped in a tight loop. */
static const unsigned char prescan_stop[256] = {
    ['\0'] = 1, ['"'] = 1, ['\\'] = 1, ['['] = 1,
    ['{'] = 1,  [']'] = 1, ['}'] = 1,
};

/* One pass over the raw bytes before Jansson parses them: Jansson
 * recurses once per nesting level, so a megabyte of '[' would exhaust the
 * stack of an inference thread.  Also rejects a NUL byte and malformed
 * UTF-8 with their byte offset, which Jansson reports less clearly. */
static enum kinfer_err prescan(struct codec_dec *d, const char *s, size_t n)
{
    size_t depth = 0;
    int in_string = 0, escaped = 0;
    for (size_t i = 0; i < n; i++) {
        /* A skipped byte only ends an escape ("\x": the x). */
        if (!prescan_stop[(unsigned char)s[i]]) {
            escaped = 0;
            while (i + 1 < n && !prescan_stop[(unsigned char)s[i + 1]])
                i++;
            continue;
        }
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
    size_t ok = kinfer_codec_utf8_prefix(s, n);
    if (ok < n)
        return fail(d, KINFER_ERR_INVALID,
                    "request is not valid UTF-8: byte 0x%02x at offset %zu",
                    (unsigned char)s[ok], ok);
    return KINFER_OK;
}

static enum kinfer_err fail_json(struct codec_dec *d, const json_error_t *je)
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
static enum kinfer_err read_opt_string(struct codec_dec *d, const json_t *obj,
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

/* One member of "parameters" into p (whose name is set). */
static enum kinfer_err read_param(struct codec_dec *d, const char *key,
                                  const json_t *v, struct kinfer_param *p)
{
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
                        kinfer_codec_echo_len(key), key);
        p->kind = KINFER_PARAM_STRING;
        p->string = copy_string(json_string_value(v), json_string_length(v));
        if (p->string == NULL)
            return fail_nomem(d);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        p->kind = KINFER_PARAM_BOOL;
        p->boolean = json_is_true(v);
        break;
    case JSON_NULL:
        p->kind = KINFER_PARAM_OTHER;
        break;
    default:
        /* The protocol's $parameter is a string, number or boolean. */
        return fail(d, KINFER_ERR_INVALID,
                    "%sparameters.%.*s: expected a string, number or "
                    "boolean, got %s",
                    d->where, kinfer_codec_echo_len(key), key,
                    json_is_object(v) ? "an object" : "an array");
    }
    return KINFER_OK;
}

/* The "parameters" of obj into *params, *n (both zero on entry); d->where
 * prefixes the messages ("" for the request's own, "outputs[1]." ...). */
static enum kinfer_err read_params(struct codec_dec *d, const json_t *obj,
                                   struct kinfer_param **params, size_t *n_out)
{
    json_t *params_json = json_object_get(obj, "parameters");
    if (params_json == NULL || json_is_null(params_json))
        return KINFER_OK;
    if (!json_is_object(params_json))
        return fail(d, KINFER_ERR_INVALID, "%sparameters: expected an object",
                    d->where);
    size_t n = json_object_size(params_json);
    if (n == 0)
        return KINFER_OK;
    *params = calloc(n, sizeof **params);
    if (*params == NULL)
        return fail_nomem(d);

    const char *key;
    json_t *v;
    json_object_foreach(params_json, key, v)
    {
        struct kinfer_param *p = &(*params)[*n_out];
        p->name = copy_string(key, strlen(key));
        if (p->name == NULL)
            return fail_nomem(d);
        (*n_out)++;
        enum kinfer_err rc = read_param(d, key, v, p);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

static enum kinfer_err decode_params(struct codec_dec *d, const json_t *root,
                                     struct kinfer_request *req)
{
    d->where = "";
    enum kinfer_err rc = read_params(d, root, &req->params, &req->n_params);
    for (size_t i = 0; rc == KINFER_OK && i < req->n_params; i++)
        if (strcmp(req->params[i].name, "binary_data_output") == 0 &&
            req->params[i].kind != KINFER_PARAM_BOOL)
            rc = fail(d, KINFER_ERR_INVALID,
                      "parameters.binary_data_output: expected true or false");
    return rc;
}

/* The request's "outputs": the outputs asked for by name, each with its
 * own parameters. */
static enum kinfer_err decode_outputs(struct codec_dec *d, const json_t *root,
                                      struct kinfer_request *req)
{
    json_t *outs = json_object_get(root, "outputs");
    if (outs == NULL || json_is_null(outs))
        return KINFER_OK;
    if (!json_is_array(outs))
        return fail(d, KINFER_ERR_INVALID, "outputs: expected an array");
    size_t n = json_array_size(outs);
    if (n == 0)
        return KINFER_OK; /* asks for nothing in particular: all */
    if (n > d->lim.max_inputs)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "outputs: %zu outputs, over the %zu-output limit", n,
                    d->lim.max_inputs);
    req->outputs = calloc(n, sizeof *req->outputs);
    if (req->outputs == NULL)
        return fail_nomem(d);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(outs, i);
        if (!json_is_object(o))
            return fail(d, KINFER_ERR_INVALID,
                        "outputs[%zu]: expected an object", i);
        json_t *name = json_object_get(o, "name");
        if (name == NULL)
            return fail(d, KINFER_ERR_INVALID, "outputs[%zu].name: missing", i);
        if (!json_is_string(name) || json_string_length(name) == 0)
            return fail(d, KINFER_ERR_INVALID,
                        "outputs[%zu].name: expected a non-empty string", i);
        if (has_nul(name))
            return fail(d, KINFER_ERR_INVALID,
                        "outputs[%zu].name: contains a NUL character", i);
        const char *nm = json_string_value(name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->outputs[j].name, nm) == 0)
                return fail(d, KINFER_ERR_INVALID,
                            "outputs[%zu].name: output '%.*s' is asked for "
                            "twice",
                            i, kinfer_codec_echo_len(nm), nm);
        struct kinfer_requested_output *ro = &req->outputs[i];
        ro->name = copy_string(nm, json_string_length(name));
        if (ro->name == NULL)
            return fail_nomem(d);
        req->n_outputs++;
        char where[48];
        snprintf(where, sizeof where, "outputs[%zu].", i);
        d->where = where;
        enum kinfer_err rc = read_params(d, o, &ro->params, &ro->n_params);
        d->where = "";
        if (rc != KINFER_OK)
            return rc;
        const struct kinfer_param *bd = NULL;
        for (size_t k = 0; k < ro->n_params; k++)
            if (strcmp(ro->params[k].name, "binary_data") == 0)
                bd = &ro->params[k];
        if (bd != NULL && bd->kind != KINFER_PARAM_BOOL)
            return fail(d, KINFER_ERR_INVALID,
                        "outputs[%zu].parameters.binary_data: expected true "
                        "or false",
                        i);
    }
    return KINFER_OK;
}

/* inputs[index].name: a non-empty string without NUL that no earlier
 * input (req->inputs[0..index)) has. */
static enum kinfer_err read_name(struct codec_dec *d, const json_t *obj,
                                 const struct kinfer_request *req,
                                 struct codec_input *in)
{
    size_t index = in->index;
    json_t *name = json_object_get(obj, "name");
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
                        kinfer_codec_echo_len(nm), nm);
    in->name = nm;
    return KINFER_OK;
}

static enum kinfer_err read_dtype(struct codec_dec *d, const json_t *obj,
                                  struct codec_input *in)
{
    json_t *dt = json_object_get(obj, "datatype");
    if (dt == NULL)
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu].datatype: missing",
                    in->index);
    if (!json_is_string(dt))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].datatype: expected a string", in->index);
    const char *dtname = json_string_value(dt);
    in->dtype = kinfer_dtype_from_name(dtname);
    if (in->dtype == KINFER_DTYPE_INVALID || has_nul(dt))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].datatype: unknown datatype '%.*s'", in->index,
                    kinfer_codec_echo_len(dtname), dtname);
    return KINFER_OK;
}

/* in->count from the shape, or an error if it overflows or passes the
 * limit.  A zero dimension makes the count 0 however big the rest are. */
static enum kinfer_err shape_count(struct codec_dec *d, struct codec_input *in)
{
    char text[CODEC_SHAPE_TEXT];
    size_t n = 1;
    int overflow = 0;
    for (int i = 0; i < in->ndim; i++) {
        int64_t dim = in->shape[i];
        if (dim == 0) {
            in->count = 0;
            return KINFER_OK;
        }
        if ((uint64_t)dim > SIZE_MAX || n > SIZE_MAX / (size_t)dim)
            overflow = 1;
        else
            n *= (size_t)dim;
    }
    kinfer_codec_fmt_shape(text, sizeof text, in->shape, in->ndim);
    if (overflow)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "inputs[%zu].shape: element count of %s overflows",
                    in->index, text);
    if (n > d->lim.max_elements)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "inputs[%zu].shape: %s is %zu elements, over the "
                    "%zu-element limit",
                    in->index, text, n, d->lim.max_elements);
    in->count = n;
    return KINFER_OK;
}

static enum kinfer_err read_shape(struct codec_dec *d, const json_t *obj,
                                  struct codec_input *in)
{
    size_t index = in->index;
    json_t *sh = json_object_get(obj, "shape");
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
    in->ndim = (int)json_array_size(sh);
    for (int i = 0; i < in->ndim; i++) {
        json_t *dim = json_array_get(sh, (size_t)i);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0)
            return fail(d, KINFER_ERR_INVALID,
                        "inputs[%zu].shape[%d]: expected a non-negative "
                        "integer",
                        index, i);
        in->shape[i] = (int64_t)json_integer_value(dim);
    }
    return shape_count(d, in);
}

/* An input's own parameters: string, number or boolean values; the binary
 * extension's binary_data_size (a non-negative integer) into in; the
 * content_type a client may label it with (a string). */
static enum kinfer_err read_input_params(struct codec_dec *d, const json_t *obj,
                                         struct codec_input *in)
{
    struct kinfer_param *ps = NULL;
    size_t n = 0;
    char where[48];
    snprintf(where, sizeof where, "inputs[%zu].", in->index);
    d->where = where;
    enum kinfer_err rc = read_params(d, obj, &ps, &n);
    d->where = "";
    in->binary_size = -1;
    for (size_t i = 0; i < n && rc == KINFER_OK; i++) {
        const struct kinfer_param *p = &ps[i];
        if (strcmp(p->name, "binary_data_size") == 0) {
            if (p->kind != KINFER_PARAM_NUMBER || !p->is_integer ||
                p->integer < 0)
                rc = fail(d, KINFER_ERR_INVALID,
                          "inputs[%zu].parameters.binary_data_size: "
                          "expected a non-negative integer",
                          in->index);
            else
                in->binary_size = p->integer;
        } else if (strcmp(p->name, "content_type") == 0 &&
                   p->kind != KINFER_PARAM_STRING) {
            rc = fail(d, KINFER_ERR_INVALID,
                      "inputs[%zu].parameters.content_type: expected a "
                      "string",
                      in->index);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(ps[i].name);
        free(ps[i].string);
    }
    free(ps);
    return rc;
}

static enum kinfer_err read_data(struct codec_dec *d, const json_t *obj,
                                 struct codec_input *in)
{
    json_t *data = json_object_get(obj, "data");
    if (in->binary_size >= 0) {
        if (data != NULL)
            return fail(d, KINFER_ERR_INVALID,
                        "inputs[%zu]: both data and "
                        "parameters.binary_data_size; send one",
                        in->index);
        return KINFER_OK;
    }
    if (data == NULL)
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu].data: missing",
                    in->index);
    if (!json_is_array(data))
        return fail(d, KINFER_ERR_INVALID,
                    "inputs[%zu].data: expected an array", in->index);
    in->data = data;
    return KINFER_OK;
}

/* Fill t from the fast path's array a.  Any mismatch just fails (with no
 * message): decode() then starts over the ordinary way, which reports it. */
static enum kinfer_err fill_lifted(struct codec_dec *d,
                                   const struct codec_lifted *a,
                                   const struct codec_input *in,
                                   struct kinfer_tensor *t)
{
    if (json_array_size(in->data) != 0 || a->n != in->count)
        return KINFER_ERR_INVALID;
    enum kinfer_err rc =
        kinfer_tensor_init(t, in->name, in->dtype, in->ndim, in->shape);
    if (rc != KINFER_OK)
        return rc;
    return kinfer_codec_lift_fill(d->lift, a, t) == 0 ? KINFER_OK
                                                      : KINFER_ERR_INVALID;
}

static enum kinfer_err decode_input(struct codec_dec *d, const json_t *obj,
                                    size_t index, struct kinfer_request *req)
{
    if (!json_is_object(obj))
        return fail(d, KINFER_ERR_INVALID, "inputs[%zu]: expected an object",
                    index);
    struct codec_input in = {.index = index};
    enum kinfer_err rc = read_name(d, obj, req, &in);
    if (rc == KINFER_OK)
        rc = read_dtype(d, obj, &in);
    if (rc == KINFER_OK)
        rc = read_shape(d, obj, &in);
    if (rc == KINFER_OK)
        rc = read_input_params(d, obj, &in);
    if (rc == KINFER_OK)
        rc = read_data(d, obj, &in);
    if (rc != KINFER_OK)
        return rc;
    if (in.binary_size >= 0)
        return kinfer_codec_binary_fill(d, &in, &req->inputs[index]);
    const struct codec_lifted *a = kinfer_codec_lift_find(d->lift, index);
    if (a != NULL)
        return fill_lifted(d, a, &in, &req->inputs[index]);
    return kinfer_codec_data_fill(d, &in, &req->inputs[index]);
}

static enum kinfer_err decode_inputs(struct codec_dec *d, const json_t *root,
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
    if (d->bin_used != d->bin_len)
        return fail(d, KINFER_ERR_INVALID,
                    "binary data: %zu bytes follow the JSON header, but the "
                    "inputs' binary_data_size add up to %zu",
                    d->bin_len, d->bin_used);
    return KINFER_OK;
}

static enum kinfer_err decode_root(struct codec_dec *d, const json_t *root,
                                   struct kinfer_request *req)
{
    if (!json_is_object(root))
        return fail(d, KINFER_ERR_INVALID, "request is not a JSON object");
    enum kinfer_err rc = read_opt_string(d, root, "id", &req->id);
    /* model_name is read even when id is unusable, so the error result
     * can carry it; the message stays the one about id. */
    struct codec_dec quiet = *d;
    quiet.err = NULL;
    quiet.errsize = 0;
    enum kinfer_err rc_model = read_opt_string(
        rc == KINFER_OK ? d : &quiet, root, "model_name", &req->model_name);
    if (rc != KINFER_OK)
        return rc;
    if (rc_model != KINFER_OK)
        return rc_model;
    rc = read_opt_string(d, root, "model_version", &req->model_version);
    if (rc == KINFER_OK)
        rc = decode_params(d, root, req);
    if (rc == KINFER_OK)
        rc = decode_outputs(d, root, req);
    if (rc != KINFER_OK)
        return rc;
    return decode_inputs(d, root, req);
}

static const size_t json_flags =
    JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY;

/* The fast path: KINFER_OK, or anything else (with req cleared and no
 * message written) when the ordinary path must decode buf instead. */
static enum kinfer_err decode_fast(const struct codec_dec *d, const char *buf,
                                   size_t len, struct kinfer_request *req)
{
    struct codec_lift lift;
    if (kinfer_codec_lift_scan(&lift, buf, len) != 1)
        return KINFER_ERR_INVALID;
    struct codec_dec fast = *d;
    fast.err = NULL;
    fast.errsize = 0;
    fast.lift = &lift;
    json_error_t je;
    arena_begin();
    json_t *root = json_loadb(lift.text, lift.len, json_flags, &je);
    enum kinfer_err rc =
        root != NULL ? decode_root(&fast, root, req) : KINFER_ERR_INVALID;
    json_decref(root);
    arena_end();
    kinfer_codec_lift_free(&lift);
    if (rc != KINFER_OK)
        kinfer_request_clear(req);
    return rc;
}

static enum kinfer_err decode(struct codec_dec *d, const char *buf, size_t len,
                              size_t json_len, struct kinfer_request *req)
{
    if (len > d->lim.max_request_bytes)
        return fail(d, KINFER_ERR_TOO_LARGE,
                    "request is %zu bytes, over the %zu-byte limit", len,
                    d->lim.max_request_bytes);
    if (buf == NULL || len == 0)
        return fail(d, KINFER_ERR_INVALID, "request is empty");
    if (json_len > len)
        return fail(d, KINFER_ERR_INVALID,
                    "the JSON header is said to be %zu bytes, but the "
                    "request has only %zu",
                    json_len, len);
    if (json_len == 0)
        return fail(d, KINFER_ERR_INVALID, "the JSON header is empty");
    d->bin = (const unsigned char *)buf + json_len;
    d->bin_len = len - json_len;
    len = json_len;
    enum kinfer_err rc = prescan(d, buf, len);
    if (rc != KINFER_OK)
        return rc;
    if (decode_fast(d, buf, len, req) == KINFER_OK)
        return KINFER_OK;

    /* Start over the ordinary way, which says what is wrong. */
    json_error_t je;
    arena_begin();
    json_t *root = json_loadb(buf, len, json_flags, &je);
    if (root == NULL) {
        arena_end();
        return fail_json(d, &je);
    }
    rc = decode_root(d, root, req);
    json_decref(root);
    arena_end();
    return rc;
}

enum kinfer_err kinfer_request_decode(const void *buf, size_t len,
                                      const struct kinfer_limits *lim,
                                      struct kinfer_request *req, char *err,
                                      size_t errsize)
{
    return kinfer_request_decode_binary(buf, len, len, lim, req, err, errsize);
}

enum kinfer_err kinfer_request_decode_binary(const void *buf, size_t len,
                                             size_t json_len,
                                             const struct kinfer_limits *lim,
                                             struct kinfer_request *req,
                                             char *err, size_t errsize)
{
    struct codec_dec d = {.err = err, .errsize = errsize, .where = ""};
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
    enum kinfer_err rc = decode(&d, buf, len, json_len, req);
    /* The message goes into a JSON error result: cut it before any
     * character that truncation (or anything else) left malformed. */
    if (rc != KINFER_OK && err != NULL && errsize > 0)
        err[kinfer_codec_utf8_prefix(err, strlen(err))] = '\0';
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
    free(req->model_version);
    for (size_t i = 0; i < req->n_outputs; i++) {
        struct kinfer_requested_output *o = &req->outputs[i];
        free(o->name);
        for (size_t j = 0; j < o->n_params; j++) {
            free(o->params[j].name);
            free(o->params[j].string);
        }
        free(o->params);
    }
    free(req->outputs);
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
