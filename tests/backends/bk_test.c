/* Fixtures of the dense-backend tests (see bk_test.h).  The comparison
 * functions report through a message buffer instead of cmocka asserts so
 * that worker threads can use them too (cmocka's fail() may only run on
 * the test's own thread).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "bk_test.h"
#include "kinfer/host.h"

/* ------------------------------------------------------------ the host */

static void *bk_alloc(size_t size)
{
    return calloc(1, size ? size : 1);
}

/* Like kinfer_tensor_init, but an empty tensor gets data == NULL, the
 * strictest reading of the contract: a backend that does pointer
 * arithmetic or memcpy on an empty output trips UBSan here. */
static enum kinfer_err bk_tensor_init(struct kinfer_tensor *t, const char *name,
                                      enum kinfer_dtype dtype, int ndim,
                                      const int64_t *shape)
{
    size_t count = 1, esize = kinfer_dtype_size(dtype);

    memset(t, 0, sizeof *t);
    if (esize == 0 || ndim < 0 || ndim > KINFER_MAX_DIMS)
        return KINFER_ERR_INVALID;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return KINFER_ERR_INVALID;
        if (shape[d] != 0 && count > SIZE_MAX / esize / (size_t)shape[d])
            return KINFER_ERR_INVALID;
        count *= (size_t)shape[d];
        t->shape[d] = shape[d];
    }
    t->name = strdup(name);
    if (count != 0)
        t->data = calloc(count, esize);
    if (t->name == NULL || (count != 0 && t->data == NULL)) {
        free(t->name);
        free(t->data);
        memset(t, 0, sizeof *t);
        return KINFER_ERR_NOMEM;
    }
    t->dtype = dtype;
    t->ndim = ndim;
    t->count = count;
    return KINFER_OK;
}

static enum kinfer_err bk_tensor_set_bytes(struct kinfer_tensor *t, size_t i,
                                           const char *src, size_t len)
{
    struct kinfer_bytes *b;

    if (t->dtype != KINFER_DTYPE_BYTES || i >= t->count)
        return KINFER_ERR_INVALID;
    b = &((struct kinfer_bytes *)t->data)[i];
    free(b->data);
    b->data = malloc(len + 1);
    if (b->data == NULL)
        return KINFER_ERR_NOMEM;
    memcpy(b->data, src, len);
    b->data[len] = '\0';
    b->len = len;
    return KINFER_OK;
}

static void bk_tensor_clear(struct kinfer_tensor *t)
{
    if (t == NULL)
        return;
    if (t->dtype == KINFER_DTYPE_BYTES && t->data != NULL)
        for (size_t i = 0; i < t->count; i++)
            free(((struct kinfer_bytes *)t->data)[i].data);
    free(t->name);
    free(t->data);
    memset(t, 0, sizeof *t);
}

static void bk_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bk_log(int level, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "[backend log %d] ", level);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const struct kinfer_host bk_host_table = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .alloc = bk_alloc,
    .tensor_init = bk_tensor_init,
    .tensor_set_bytes = bk_tensor_set_bytes,
    .log = bk_log,
    .dtype_name = kinfer_dtype_name,
};

const struct kinfer_host *bk_host(void)
{
    return &bk_host_table;
}

/* ------------------------------------------------------------ files */

/* Fixture data is ours: malformed JSON there is a bug in the generator,
 * not a test result, so it aborts (also safe on any thread). */
static void bk_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn));

static void bk_die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

char *bk_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, n = 0, got;
    char *buf;

    if (f == NULL)
        bk_die("%s: %s", path, strerror(errno));
    buf = malloc(cap);
    while (buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);

            if (nb == NULL)
                free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL)
        bk_die("%s: out of memory", path);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

static char *bk_join(const char *a, const char *b, const char *c)
{
    size_t len = strlen(a) + strlen(b) + strlen(c) + 3;
    char *p = malloc(len);

    if (p == NULL)
        bk_die("out of memory");
    snprintf(p, len, "%s/%s%s%s", a, b, c[0] ? "/" : "", c);
    return p;
}

char *bk_model_dir(const char *gen, const char *name)
{
    return bk_join(gen, "models", name);
}

json_t *bk_cases_load(const char *gen, const char *name)
{
    char file[256];
    char *path;
    json_error_t jerr;
    json_t *cases;

    snprintf(file, sizeof file, "%s.json", name);
    path = bk_join(gen, "expected", file);
    cases = json_load_file(path, 0, &jerr);
    if (cases == NULL || !json_is_array(cases) || json_array_size(cases) == 0)
        bk_die("%s: not a non-empty JSON array: %s", path, jerr.text);
    free(path);
    return cases;
}

enum kinfer_err bk_model_try(const struct kinfer_backend *b, const char *dir,
                             const char *config, char *err, size_t errsize)
{
    void *model = NULL;
    enum kinfer_err rc;

    err[0] = '\0';
    rc = b->create(bk_host(), dir, config, &model, err, errsize);
    if (rc == KINFER_OK)
        b->destroy(model);
    return rc;
}

void *bk_model_load(const struct kinfer_backend *b, const char *gen,
                    const char *name, const json_t *patch)
{
    char *dir = bk_model_dir(gen, name);
    char *cfgpath = bk_join(dir, "config.json", "");
    char *text = bk_read_file(cfgpath, NULL);
    char err[512] = "";
    void *model = NULL;
    enum kinfer_err rc;

    if (patch != NULL) {
        json_t *cfg = json_loads(text, 0, NULL);

        assert_non_null(cfg);
        assert_int_equal(json_object_update(cfg, (json_t *)patch), 0);
        free(text);
        text = json_dumps(cfg, 0);
        json_decref(cfg);
        assert_non_null(text);
    }
    rc = b->create(bk_host(), dir, text, &model, err, sizeof err);
    if (rc != KINFER_OK)
        print_error("create %s: %s\n", dir, err);
    assert_int_equal(rc, KINFER_OK);
    assert_non_null(model);
    free(text);
    free(cfgpath);
    free(dir);
    return model;
}

/* ------------------------------------------------------------ requests */

static void bk_tensor_from_json(const json_t *j, struct kinfer_tensor *t)
{
    const json_t *jshape = json_object_get(j, "shape");
    const json_t *jdata = json_object_get(j, "data");
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *dt = json_string_value(json_object_get(j, "datatype"));
    enum kinfer_dtype dtype = dt ? kinfer_dtype_from_name(dt) : 0;
    int64_t shape[KINFER_MAX_DIMS];
    size_t ndim = json_array_size(jshape);

    if (name == NULL || dtype == KINFER_DTYPE_INVALID ||
        dtype == KINFER_DTYPE_BYTES || ndim > KINFER_MAX_DIMS ||
        !json_is_array(jdata))
        bk_die("fixture: unsupported tensor in a request");
    for (size_t d = 0; d < ndim; d++)
        shape[d] = json_integer_value(json_array_get(jshape, d));
    if (bk_tensor_init(t, name, dtype, (int)ndim, shape) != KINFER_OK ||
        json_array_size(jdata) != t->count)
        bk_die("fixture: tensor \"%s\": shape and data disagree", name);
    for (size_t i = 0; i < t->count; i++) {
        const json_t *v = json_array_get(jdata, i);

        switch (dtype) {
        case KINFER_DTYPE_FP32:
            ((float *)t->data)[i] = (float)json_number_value(v);
            break;
        case KINFER_DTYPE_FP64:
            ((double *)t->data)[i] = json_number_value(v);
            break;
        case KINFER_DTYPE_INT32:
            ((int32_t *)t->data)[i] = (int32_t)json_integer_value(v);
            break;
        case KINFER_DTYPE_INT64:
            ((int64_t *)t->data)[i] = json_integer_value(v);
            break;
        case KINFER_DTYPE_BOOL:
            ((uint8_t *)t->data)[i] = json_is_true(v);
            break;
        default:
            break;
        }
    }
}

static char *bk_strdup_or_null(const char *s)
{
    char *p;

    if (s == NULL)
        return NULL;
    p = strdup(s);
    if (p == NULL)
        bk_die("out of memory");
    return p;
}

static void bk_request_from_json(const json_t *j, struct kinfer_request *r)
{
    const json_t *params = json_object_get(j, "parameters");
    const json_t *inputs = json_object_get(j, "inputs");
    const char *key;
    json_t *v;
    size_t i = 0;

    memset(r, 0, sizeof *r);
    r->id = bk_strdup_or_null(json_string_value(json_object_get(j, "id")));
    r->model_name =
        bk_strdup_or_null(json_string_value(json_object_get(j, "model_name")));
    r->n_params = json_object_size(params);
    r->params = calloc(r->n_params + 1, sizeof *r->params);
    r->n_inputs = json_array_size(inputs);
    r->inputs = calloc(r->n_inputs + 1, sizeof *r->inputs);
    if (r->params == NULL || r->inputs == NULL)
        bk_die("out of memory");
    json_object_foreach((json_t *)params, key, v)
    {
        struct kinfer_param *p = &r->params[i++];

        p->name = bk_strdup_or_null(key);
        if (json_is_integer(v)) {
            p->kind = KINFER_PARAM_NUMBER;
            p->is_integer = 1;
            p->integer = json_integer_value(v);
            p->number = (double)p->integer;
        } else if (json_is_real(v)) {
            p->kind = KINFER_PARAM_NUMBER;
            p->number = json_real_value(v);
        } else if (json_is_string(v)) {
            p->kind = KINFER_PARAM_STRING;
            p->string = bk_strdup_or_null(json_string_value(v));
        } else if (json_is_boolean(v)) {
            p->kind = KINFER_PARAM_BOOL;
            p->boolean = json_is_true(v);
        } else {
            p->kind = KINFER_PARAM_OTHER;
        }
    }
    for (i = 0; i < r->n_inputs; i++)
        bk_tensor_from_json(json_array_get(inputs, i), &r->inputs[i]);
}

static void bk_request_clear(struct kinfer_request *r)
{
    for (size_t i = 0; i < r->n_params; i++) {
        free(r->params[i].name);
        free(r->params[i].string);
    }
    for (size_t i = 0; i < r->n_inputs; i++)
        bk_tensor_clear(&r->inputs[i]);
    free(r->params);
    free(r->inputs);
    free(r->id);
    free(r->model_name);
    memset(r, 0, sizeof *r);
}

/* What kinfer_infer_item_clear does: outputs are freed whether or not the
 * item failed. */
static void bk_item_clear(struct kinfer_infer_item *item)
{
    for (size_t i = 0; i < item->n_outputs; i++)
        bk_tensor_clear(&item->outputs[i]);
    free(item->outputs);
    item->outputs = NULL;
    item->n_outputs = 0;
    item->failed = 0;
    item->error[0] = '\0';
}

void bk_batch_init(struct bk_batch *bb, const json_t *cases, size_t first,
                   size_t n)
{
    bb->n = n;
    bb->reqs = calloc(n + 1, sizeof *bb->reqs);
    bb->items = calloc(n + 1, sizeof *bb->items);
    if (bb->reqs == NULL || bb->items == NULL)
        bk_die("out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(cases, first + i);

        bk_request_from_json(json_object_get(c, "request"), &bb->reqs[i]);
        bb->items[i].request = &bb->reqs[i];
    }
}

void bk_batch_clear(struct bk_batch *bb)
{
    for (size_t i = 0; i < bb->n; i++) {
        bk_item_clear(&bb->items[i]);
        bk_request_clear(&bb->reqs[i]);
    }
    free(bb->items);
    free(bb->reqs);
    memset(bb, 0, sizeof *bb);
}

void bk_batch_run(const struct kinfer_backend *b, void *model,
                  struct bk_batch *bb)
{
    assert_int_equal(b->infer(model, bb->items, bb->n), KINFER_OK);
}

/* ------------------------------------------------------------ checks */

static int bk_close(double got, double want)
{
    return fabs(got - want) <= BK_TOL_ABS + BK_TOL_REL * fabs(want);
}

static const struct kinfer_tensor *
bk_output(const struct kinfer_infer_item *item, const char *name)
{
    for (size_t i = 0; i < item->n_outputs; i++)
        if (item->outputs[i].name && strcmp(item->outputs[i].name, name) == 0)
            return &item->outputs[i];
    return NULL;
}

/* 1 when t matches the expected OIP output e; else 0 and why. */
static int bk_compare_output(const struct kinfer_tensor *t, const json_t *e,
                             char *why, size_t size)
{
    const char *dt = json_string_value(json_object_get(e, "datatype"));
    const json_t *shape = json_object_get(e, "shape");
    const json_t *data = json_object_get(e, "data");

    if (strcmp(kinfer_dtype_name(t->dtype), dt) != 0) {
        snprintf(why, size, "output %s: datatype %s, want %s", t->name,
                 kinfer_dtype_name(t->dtype), dt);
        return 0;
    }
    if ((size_t)t->ndim != json_array_size(shape)) {
        snprintf(why, size, "output %s: rank %d, want %zu", t->name, t->ndim,
                 json_array_size(shape));
        return 0;
    }
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] != json_integer_value(json_array_get(shape, d))) {
            snprintf(why, size, "output %s: dim %d is %lld, want %lld", t->name,
                     d, (long long)t->shape[d],
                     (long long)json_integer_value(json_array_get(shape, d)));
            return 0;
        }
    }
    if (t->count != json_array_size(data)) {
        snprintf(why, size, "output %s: %zu values, want %zu", t->name,
                 t->count, json_array_size(data));
        return 0;
    }
    for (size_t i = 0; i < t->count; i++) {
        const json_t *v = json_array_get(data, i);

        if (t->dtype == KINFER_DTYPE_FP32) {
            double got = ((const float *)t->data)[i];

            if (!bk_close(got, json_number_value(v))) {
                snprintf(why, size, "output %s[%zu] = %.9g, want %.9g", t->name,
                         i, got, json_number_value(v));
                return 0;
            }
        } else if (t->dtype == KINFER_DTYPE_INT64) {
            int64_t got = ((const int64_t *)t->data)[i];

            if (got != json_integer_value(v)) {
                snprintf(why, size, "output %s[%zu] = %lld, want %lld", t->name,
                         i, (long long)got, (long long)json_integer_value(v));
                return 0;
            }
        } else {
            snprintf(why, size, "output %s: unexpected datatype", t->name);
            return 0;
        }
    }
    return 1;
}

/* 1 when item answers case c as expected; else 0 and why. */
static int bk_compare_case(const struct kinfer_infer_item *item,
                           const json_t *c, char *why, size_t size)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    const json_t *error = json_object_get(c, "error");
    const json_t *outputs = json_object_get(c, "outputs");
    char sub[256];

    if (error != NULL) {
        if (!item->failed) {
            snprintf(why, size, "case \"%s\": answered, want error \"%s\"",
                     name, json_string_value(error));
            return 0;
        }
        if (strstr(item->error, json_string_value(error)) == NULL) {
            snprintf(why, size,
                     "case \"%s\": error \"%s\", want one "
                     "containing \"%s\"",
                     name, item->error, json_string_value(error));
            return 0;
        }
        return 1;
    }
    if (item->failed) {
        snprintf(why, size, "case \"%s\": failed: %s", name, item->error);
        return 0;
    }
    if (item->n_outputs != json_array_size(outputs)) {
        snprintf(why, size, "case \"%s\": %zu outputs, want %zu", name,
                 item->n_outputs, json_array_size(outputs));
        return 0;
    }
    for (size_t i = 0; i < json_array_size(outputs); i++) {
        const json_t *e = json_array_get(outputs, i);
        const char *oname = json_string_value(json_object_get(e, "name"));
        const struct kinfer_tensor *t = bk_output(item, oname);

        if (t == NULL) {
            snprintf(why, size, "case \"%s\": no output \"%s\"", name, oname);
            return 0;
        }
        if (!bk_compare_output(t, e, sub, sizeof sub)) {
            snprintf(why, size, "case \"%s\": %s", name, sub);
            return 0;
        }
    }
    return 1;
}

void bk_check_case(const struct kinfer_infer_item *item, const json_t *c)
{
    char why[512];

    if (!bk_compare_case(item, c, why, sizeof why)) {
        print_error("%s\n", why);
        fail();
    }
}

void bk_check_same(const struct kinfer_infer_item *a,
                   const struct kinfer_infer_item *b)
{
    assert_int_equal(a->failed, b->failed);
    if (a->failed) {
        assert_string_equal(a->error, b->error);
        return;
    }
    assert_int_equal(a->n_outputs, b->n_outputs);
    for (size_t i = 0; i < a->n_outputs; i++) {
        const struct kinfer_tensor *x = &a->outputs[i], *y = &b->outputs[i];

        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        assert_memory_equal(x->shape, y->shape, sizeof x->shape);
        assert_int_equal(x->count, y->count);
        for (size_t k = 0; k < x->count; k++) {
            if (x->dtype == KINFER_DTYPE_FP32) {
                double u = ((const float *)x->data)[k];
                double v = ((const float *)y->data)[k];

                if (!bk_close(v, u)) {
                    print_error("%s[%zu]: %.9g vs %.9g\n", x->name, k, u, v);
                    fail();
                }
            } else {
                assert_int_equal(((const int64_t *)x->data)[k],
                                 ((const int64_t *)y->data)[k]);
            }
        }
    }
}

void bk_check_model(const struct kinfer_backend *b, void *model,
                    const json_t *cases)
{
    size_t n = json_array_size(cases), n8 = n < 8 ? n : 8;
    struct bk_batch all, eight, one[8];

    /* Each case alone. */
    for (size_t i = 0; i < n; i++) {
        struct bk_batch bb;

        bk_batch_init(&bb, cases, i, 1);
        bk_batch_run(b, model, &bb);
        bk_check_case(&bb.items[0], json_array_get(cases, i));
        bk_batch_clear(&bb);
    }

    /* All at once: failing items must not disturb the others. */
    bk_batch_init(&all, cases, 0, n);
    bk_batch_run(b, model, &all);
    for (size_t i = 0; i < n; i++)
        bk_check_case(&all.items[i], json_array_get(cases, i));
    bk_batch_clear(&all);

    /* One batch of eight against eight batches of one. */
    bk_batch_init(&eight, cases, 0, n8);
    bk_batch_run(b, model, &eight);
    for (size_t i = 0; i < n8; i++) {
        bk_batch_init(&one[i], cases, i, 1);
        bk_batch_run(b, model, &one[i]);
        bk_check_same(&eight.items[i], &one[i].items[0]);
        bk_batch_clear(&one[i]);
    }
    bk_batch_clear(&eight);
}

struct bk_thread {
    const struct kinfer_backend *b;
    void *model;
    const json_t *cases;
    int bad;
    char why[512];
};

static void *bk_thread_main(void *arg)
{
    struct bk_thread *t = arg;
    size_t n = json_array_size(t->cases);

    for (int rep = 0; rep < 5 && !t->bad; rep++) {
        struct bk_batch bb;

        bk_batch_init(&bb, t->cases, 0, n);
        if (t->b->infer(t->model, bb.items, n) != KINFER_OK) {
            t->bad = 1;
            snprintf(t->why, sizeof t->why, "infer failed");
        }
        for (size_t i = 0; i < n && !t->bad; i++)
            if (!bk_compare_case(&bb.items[i], json_array_get(t->cases, i),
                                 t->why, sizeof t->why))
                t->bad = 1;
        bk_batch_clear(&bb);
    }
    return NULL;
}

void bk_check_threads(const struct kinfer_backend *b, void *model,
                      const json_t *cases, int nthreads)
{
    pthread_t tid[8];
    struct bk_thread st[8];

    assert_true(nthreads > 0 && nthreads <= 8);
    for (int i = 0; i < nthreads; i++) {
        st[i] = (struct bk_thread){.b = b, .model = model, .cases = cases};
        assert_int_equal(pthread_create(&tid[i], NULL, bk_thread_main, &st[i]),
                         0);
    }
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_join(tid[i], NULL), 0);
    for (int i = 0; i < nthreads; i++) {
        if (st[i].bad)
            print_error("thread %d: %s\n", i, st[i].why);
        assert_false(st[i].bad);
    }
}

void bk_check_threads_file(const struct kinfer_backend *b, const char *gen,
                           const char *name, int nthreads)
{
    void *m = bk_model_load(b, gen, name, NULL);
    json_t *cases = bk_cases_load(gen, name);
    bk_check_threads(b, m, cases, nthreads);
    json_decref(cases);
    b->destroy(m);
}

void bk_check_descriptor(const struct kinfer_backend *b, const char *name)
{
    assert_int_equal(b->abi_version, KINFER_BACKEND_ABI_VERSION);
    assert_string_equal(b->name, name);
    b->destroy(NULL);
}
