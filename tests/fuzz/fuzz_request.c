/* What every codec fuzz target checks about a decoded request, and the
 * bit-for-bit comparison the differential targets use. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "fuzz_request.h"

static void check_cstr(const char *s, const char *what)
{
    FUZZ_CHECK(fuzz_utf8_valid(s, strlen(s)), "%s is not UTF-8", what);
}

void fuzz_request_check(const struct kinfer_request *req)
{
    if (req->id != NULL)
        check_cstr(req->id, "id");
    if (req->model_name != NULL)
        check_cstr(req->model_name, "model_name");
    FUZZ_CHECK(req->n_params == 0 || req->params != NULL, "params NULL");
    for (size_t i = 0; i < req->n_params; i++) {
        const struct kinfer_param *p = &req->params[i];
        FUZZ_CHECK(p->name != NULL, "params[%zu] has no name", i);
        check_cstr(p->name, "parameter name");
        FUZZ_CHECK((p->kind == KINFER_PARAM_STRING) == (p->string != NULL),
                   "params[%zu]: string set for kind %d", i, (int)p->kind);
        if (p->string != NULL)
            check_cstr(p->string, "string parameter");
        FUZZ_CHECK(kinfer_request_param(req, p->name) == p,
                   "params[%zu] '%s' not found by name", i, p->name);
    }
    if (req->model_version != NULL)
        check_cstr(req->model_version, "model_version");
    FUZZ_CHECK(req->n_outputs == 0 || req->outputs != NULL, "outputs NULL");
    for (size_t i = 0; i < req->n_outputs; i++) {
        const struct kinfer_requested_output *o = &req->outputs[i];
        FUZZ_CHECK(o->name != NULL && o->name[0] != '\0',
                   "outputs[%zu] has no name", i);
        check_cstr(o->name, "output name");
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(req->outputs[j].name, o->name) != 0,
                       "outputs[%zu]: repeated name", i);
        for (size_t k = 0; k < o->n_params; k++) {
            const struct kinfer_param *p = &o->params[k];
            FUZZ_CHECK(p->name != NULL && (p->kind == KINFER_PARAM_STRING) ==
                                              (p->string != NULL),
                       "outputs[%zu].parameters[%zu]", i, k);
            /* binary_data, when there, is a boolean. */
            FUZZ_CHECK(strcmp(p->name, "binary_data") != 0 ||
                           p->kind == KINFER_PARAM_BOOL,
                       "outputs[%zu].parameters.binary_data kind %d", i,
                       (int)p->kind);
        }
    }
    FUZZ_CHECK(req->n_inputs >= 1 && req->inputs != NULL, "no inputs");
    for (size_t i = 0; i < req->n_inputs; i++) {
        const struct kinfer_tensor *t = &req->inputs[i];
        FUZZ_CHECK(t->name != NULL && t->name[0] != '\0',
                   "inputs[%zu] has no name", i);
        check_cstr(t->name, "input name");
        FUZZ_CHECK(t->dtype > KINFER_DTYPE_INVALID &&
                       t->dtype < KINFER_DTYPE_COUNT,
                   "inputs[%zu]: dtype %d", i, (int)t->dtype);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= KINFER_MAX_DIMS,
                   "inputs[%zu]: ndim %d", i, t->ndim);
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "inputs[%zu]: negative dim", i);
            count *= (size_t)t->shape[d];
        }
        FUZZ_CHECK(count == t->count, "inputs[%zu]: count %zu, shape says %zu",
                   i, t->count, count);
        FUZZ_CHECK(count == 0 || t->data != NULL, "inputs[%zu]: no data", i);
        if (t->dtype == KINFER_DTYPE_BYTES) {
            const struct kinfer_bytes *b = t->data;
            for (size_t k = 0; k < count; k++) {
                FUZZ_CHECK(b[k].len == 0 || b[k].data != NULL,
                           "inputs[%zu][%zu]: no bytes", i, k);
                /* The NUL kept one past the end. */
                if (b[k].data != NULL) {
                    fuzz_touch(b[k].data, b[k].len + 1);
                    FUZZ_CHECK(b[k].data[b[k].len] == '\0',
                               "inputs[%zu][%zu]: not terminated", i, k);
                }
            }
        } else {
            fuzz_touch(t->data, count * kinfer_dtype_size(t->dtype));
        }
        if (t->dtype == KINFER_DTYPE_BOOL) {
            const unsigned char *v = t->data;
            for (size_t k = 0; k < count; k++)
                FUZZ_CHECK(v[k] <= 1, "inputs[%zu][%zu]: BOOL %u", i, k, v[k]);
        }
    }
}

int fuzz_same_cstr(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static int same_tensor(const struct kinfer_tensor *a,
                       const struct kinfer_tensor *b)
{
    if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype ||
        a->ndim != b->ndim || a->count != b->count)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    if (a->dtype != KINFER_DTYPE_BYTES)
        return a->count == 0 ||
               memcmp(a->data, b->data,
                      a->count * kinfer_dtype_size(a->dtype)) == 0;
    const struct kinfer_bytes *x = a->data, *y = b->data;
    for (size_t k = 0; k < a->count; k++) {
        if (x[k].len != y[k].len ||
            (x[k].len > 0 && memcmp(x[k].data, y[k].data, x[k].len) != 0))
            return 0;
    }
    return 1;
}

static int same_param(const struct kinfer_param *a,
                      const struct kinfer_param *b)
{
    if (strcmp(a->name, b->name) != 0 || a->kind != b->kind)
        return 0;
    switch (a->kind) {
    case KINFER_PARAM_NUMBER:
        return a->is_integer == b->is_integer &&
               memcmp(&a->number, &b->number, sizeof a->number) == 0 &&
               (!a->is_integer || a->integer == b->integer);
    case KINFER_PARAM_STRING:
        return strcmp(a->string, b->string) == 0;
    case KINFER_PARAM_BOOL:
        return a->boolean == b->boolean;
    case KINFER_PARAM_OTHER:
        return 1;
    }
    return 0;
}

void fuzz_request_same(const struct kinfer_request *a,
                       const struct kinfer_request *b, int with_params,
                       const char *what)
{
    FUZZ_CHECK(fuzz_same_cstr(a->id, b->id), "%s: id differs", what);
    FUZZ_CHECK(fuzz_same_cstr(a->model_name, b->model_name),
               "%s: model_name differs", what);
    if (with_params) {
        FUZZ_CHECK(a->n_params == b->n_params, "%s: %zu vs %zu parameters",
                   what, a->n_params, b->n_params);
        for (size_t i = 0; i < a->n_params; i++)
            FUZZ_CHECK(same_param(&a->params[i], &b->params[i]),
                       "%s: parameter %zu differs", what, i);
    }
    FUZZ_CHECK(a->n_inputs == b->n_inputs, "%s: %zu vs %zu inputs", what,
               a->n_inputs, b->n_inputs);
    for (size_t i = 0; i < a->n_inputs; i++)
        FUZZ_CHECK(same_tensor(&a->inputs[i], &b->inputs[i]),
                   "%s: input %zu ('%s') differs", what, i, a->inputs[i].name);
}

void fuzz_request_check_error(const struct kinfer_request *req, const char *err,
                              size_t errsize)
{
    size_t len = strnlen(err, errsize);
    FUZZ_CHECK(len < errsize, "error message not terminated");
    FUZZ_CHECK(len > 0, "failed decode without a message");
    FUZZ_CHECK(fuzz_utf8_valid(err, len), "error message is not UTF-8: %s",
               err);

    char *out = NULL;
    size_t outlen = 0;
    enum kinfer_err rc =
        kinfer_error_encode(req->id, req->model_name, err, &out, &outlen);
    FUZZ_CHECK(rc == KINFER_OK, "kinfer_error_encode: %s", kinfer_strerror(rc));
    json_error_t je;
    json_t *root = json_loadb(out, outlen, JSON_REJECT_DUPLICATES, &je);
    FUZZ_CHECK(root != NULL, "error result is not JSON (%s): %.*s", je.text,
               (int)outlen, out);
    const char *msg = json_string_value(json_object_get(root, "error"));
    FUZZ_CHECK(msg != NULL && strcmp(msg, err) == 0,
               "error result lost the message");
    const char *id = json_string_value(json_object_get(root, "id"));
    FUZZ_CHECK(fuzz_same_cstr(id, req->id), "error result lost the id");
    const char *model = json_string_value(json_object_get(root, "model_name"));
    FUZZ_CHECK(fuzz_same_cstr(model, req->model_name),
               "error result lost the model name");
    json_decref(root);
    free(out);
}
