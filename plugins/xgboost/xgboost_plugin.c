/* kinfer backend "xgboost": gradient-boosted trees through the C API of
 * Debian's libxgboost (1.7).  Built as the plugin kinfer_xgboost.so and
 * loaded with --plugin; a typical use is the ranking stage after "topk"
 * in a recommendation pipeline (docs/models.md).
 *
 * config.json (besides kinfer's own fields, see repo.h):
 *   "model"    the booster file, relative to the model directory
 *              (required); XGBoost's JSON (.json) or UBJSON (.ubj) format
 *   "predict"  "probability" (default): the objective's output, e.g. a
 *              probability for binary:logistic, per-class probabilities
 *              for multi:softprob, the value for a regression; or
 *              "margin": the raw sum of the trees before that transform
 *   "input"    name of the request input; default "features"
 *   "output"   name of the result output; default "scores"
 *   "threads"  XGBoost threads per call, 1 .. 64; default 1 (kinfer's
 *              pool already runs calls in parallel)
 * Request: one FP32 (or FP64, converted) input of shape [n, f] or [f],
 * f the booster's feature count; NaN cannot travel in JSON, so every
 * feature is present.
 * Result: FP32 [n] (one value per row), or [n, k] when the model gives k
 * values per row (k classes of multi:softprob); [k] or a scalar-less [1]
 * for a 1-D request.
 *
 * Batching: the rows of every request of a batch go to XGBoost as one
 * dense matrix (XGBoosterPredictFromDense, in place, no DMatrix) and the
 * answer is split back by rows.
 *
 * Threads: no lock.  XGBoost's in-place prediction keeps its output in a
 * buffer per booster and per calling thread, so concurrent calls on one
 * booster do not share scratch; the booster's lazy configuration is done
 * in create by a first prediction, before any infer call.
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <xgboost/c_api.h>

#include "kinfer/backend.h"
#include "kinfer/log.h"

#define XGB_NAME "xgboost"
#define XGB_MAX_THREADS 64

__attribute__((visibility("default"))) const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

struct xgb_model {
    const struct kinfer_host *host; /* borrowed: outlives every model */
    BoosterHandle booster;
    char *input;  /* owned */
    char *output; /* owned */
    int margin;   /* predict type 1 (margin) rather than 0 */
    int64_t n_features;
    int64_t per_row; /* values per row; > 1 gives a [n, per_row] output */
    struct kinfer_tensor_desc io[2];
};

__attribute__((format(printf, 3, 4))) static void say(char *buf, size_t size,
                                                      const char *fmt, ...)
{
    if (size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(buf, size, fmt, ap) < 0)
        buf[0] = '\0';
    va_end(ap);
}

/* XGBoost's last error on this thread without the stack trace it appends
 * after the first line: as "%.*s" arguments. */
#define XGB_ERR_LINE (int)strcspn(XGBGetLastError(), "\n"), XGBGetLastError()

static void xgb_destroy(void *model)
{
    struct xgb_model *m = model;
    if (m == NULL)
        return;
    if (m->booster != NULL && XGBoosterFree(m->booster) != 0)
        m->host->log(KINFER_LOG_WARN, "xgboost: freeing a booster: %.*s",
                     XGB_ERR_LINE);
    free(m->input);
    free(m->output);
    free(m);
}

/* The prediction config of XGBoosterPredictFromDense for this model. */
static const char *predict_config(const struct xgb_model *m)
{
    return m->margin
               ? "{\"type\": 1, \"training\": false, "
                 "\"iteration_begin\": 0, \"iteration_end\": 0, "
                 "\"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}"
               : "{\"type\": 0, \"training\": false, "
                 "\"iteration_begin\": 0, \"iteration_end\": 0, "
                 "\"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}";
}

/* Predict rows x n_features values of x (row-major FP32).  On success
 * *out points at rows * m->per_row values in XGBoost's buffer for this
 * thread (valid until this thread's next call on the booster) and *dims
 * at the shape XGBoost gives.  Returns 0, or -1 with XGBGetLastError. */
static int predict(const struct xgb_model *m, const float *x, size_t rows,
                   const bst_ulong **shape, bst_ulong *dims, const float **out)
{
    char iface[256];
    snprintf(iface, sizeof iface,
             "{\"data\": [%" PRIuPTR ", true], \"shape\": [%zu, %" PRId64
             "], \"typestr\": \"<f4\", \"version\": 3}",
             (uintptr_t)x, rows, m->n_features);
    return XGBoosterPredictFromDense(m->booster, iface, predict_config(m), NULL,
                                     shape, dims, out);
}

/* Read config_json into m; 0 on success. */
static int parse_config(struct xgb_model *m, const char *config_json,
                        char **model_file, int *threads, char *err,
                        size_t errsize)
{
    json_error_t jerr;
    json_t *root = json_loads(config_json ? config_json : "{}", 0, &jerr);
    if (!json_is_object(root)) {
        say(err, errsize, "config: invalid JSON at line %d: %s", jerr.line,
            jerr.text);
        json_decref(root);
        return -1;
    }
    int rc = -1;
    const json_t *file = json_object_get(root, "model");
    const json_t *pred = json_object_get(root, "predict");
    const json_t *in = json_object_get(root, "input");
    const json_t *out = json_object_get(root, "output");
    const json_t *thr = json_object_get(root, "threads");
    if (!json_is_string(file) || json_string_length(file) == 0) {
        say(err, errsize,
            "model: expected the booster file's name (.json or .ubj, "
            "relative to the model directory)");
    } else if (pred != NULL &&
               (!json_is_string(pred) ||
                (strcmp(json_string_value(pred), "probability") != 0 &&
                 strcmp(json_string_value(pred), "margin") != 0))) {
        say(err, errsize, "predict: expected \"probability\" or \"margin\"");
    } else if ((in != NULL &&
                (!json_is_string(in) || json_string_length(in) == 0)) ||
               (out != NULL &&
                (!json_is_string(out) || json_string_length(out) == 0))) {
        say(err, errsize, "%s: expected a tensor name",
            in != NULL && (!json_is_string(in) || json_string_length(in) == 0)
                ? "input"
                : "output");
    } else if (thr != NULL &&
               (!json_is_integer(thr) || json_integer_value(thr) < 1 ||
                json_integer_value(thr) > XGB_MAX_THREADS)) {
        say(err, errsize, "threads: expected an integer from 1 to %d",
            XGB_MAX_THREADS);
    } else {
        *model_file = strdup(json_string_value(file));
        m->input = strdup(in ? json_string_value(in) : "features");
        m->output = strdup(out ? json_string_value(out) : "scores");
        m->margin =
            pred != NULL && strcmp(json_string_value(pred), "margin") == 0;
        *threads = thr ? (int)json_integer_value(thr) : 1;
        if (*model_file == NULL || m->input == NULL || m->output == NULL)
            say(err, errsize, "out of memory");
        else
            rc = 0;
    }
    json_decref(root);
    return rc;
}

static enum kinfer_err xgb_create(const struct kinfer_host *host,
                                  const char *dir, const char *config_json,
                                  void **out, char *err, size_t errsize)
{
    struct xgb_model *m = calloc(1, sizeof *m);
    char *file = NULL, *path = NULL;
    enum kinfer_err rc = KINFER_ERR_CONFIG;
    int threads = 1;
    if (m == NULL) {
        say(err, errsize, "out of memory");
        return KINFER_ERR_NOMEM;
    }
    m->host = host;
    if (parse_config(m, config_json, &file, &threads, err, errsize) != 0)
        goto fail;

    size_t len = strlen(file) + (dir ? strlen(dir) : 0) + 2;
    path = malloc(len);
    if (path == NULL) {
        say(err, errsize, "out of memory");
        rc = KINFER_ERR_NOMEM;
        goto fail;
    }
    if (file[0] == '/' || dir == NULL)
        snprintf(path, len, "%s", file);
    else
        snprintf(path, len, "%s/%s", dir, file);

    rc = KINFER_ERR_MODEL;
    char nthread[16];
    snprintf(nthread, sizeof nthread, "%d", threads);
    bst_ulong nf = 0;
    /* nthread before loading as well: XGBoost would otherwise run the
     * load's parallel loops on an OpenMP team of every core. */
    if (XGBoosterCreate(NULL, 0, &m->booster) != 0 ||
        XGBoosterSetParam(m->booster, "nthread", nthread) != 0 ||
        XGBoosterLoadModel(m->booster, path) != 0 ||
        XGBoosterSetParam(m->booster, "nthread", nthread) != 0 ||
        XGBoosterGetNumFeature(m->booster, &nf) != 0) {
        say(err, errsize, "model: %s: %.*s", path, XGB_ERR_LINE);
        goto fail;
    }
    if (nf < 1 || nf > (bst_ulong)INT32_MAX) {
        say(err, errsize, "model: %s: booster has %llu features", path,
            (unsigned long long)nf);
        goto fail;
    }
    m->n_features = (int64_t)nf;

    /* One row of zeros: configures the booster (its lazy set-up must not
     * race in concurrent infer calls) and tells how many values a row
     * gives. */
    float *zeros = calloc((size_t)nf, sizeof *zeros);
    const bst_ulong *shape = NULL;
    bst_ulong dims = 0;
    const float *res = NULL;
    if (zeros == NULL) {
        say(err, errsize, "out of memory");
        rc = KINFER_ERR_NOMEM;
        goto fail;
    }
    int prc = predict(m, zeros, 1, &shape, &dims, &res);
    free(zeros);
    if (prc != 0) {
        say(err, errsize, "model: %s: first prediction: %.*s", path,
            XGB_ERR_LINE);
        goto fail;
    }
    m->per_row = 1;
    for (bst_ulong d = 1; d < dims; d++)
        m->per_row *= (int64_t)shape[d];
    if (dims < 1 || dims > 2 || shape[0] != 1 || m->per_row < 1) {
        say(err, errsize,
            "model: %s: a prediction of rank %llu (only one value or one "
            "vector per row is served)",
            path, (unsigned long long)dims);
        goto fail;
    }

    m->io[0] = (struct kinfer_tensor_desc){.name = m->input,
                                           .dtype = KINFER_DTYPE_FP32,
                                           .ndim = 2,
                                           .shape = {-1, m->n_features}};
    m->io[1] = (struct kinfer_tensor_desc){.name = m->output,
                                           .dtype = KINFER_DTYPE_FP32,
                                           .ndim = m->per_row > 1 ? 2 : 1,
                                           .shape = {-1, m->per_row}};
    host->log(KINFER_LOG_INFO,
              "xgboost: %s: %" PRId64 " features, %" PRId64
              " value(s) per row (%s), %d thread(s) per call",
              path, m->n_features, m->per_row,
              m->margin ? "margin" : "probability", threads);
    free(file);
    free(path);
    *out = m;
    return KINFER_OK;

fail:
    free(file);
    free(path);
    xgb_destroy(m);
    return rc;
}

__attribute__((format(printf, 2, 3))) static void
item_fail(struct kinfer_infer_item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(it->error, sizeof it->error, fmt, ap) < 0)
        it->error[0] = '\0';
    va_end(ap);
    it->failed = 1;
}

/* The item's input, checked against the model; NULL with the item failed
 * when it does not fit. */
static const struct kinfer_tensor *item_input(const struct xgb_model *m,
                                              struct kinfer_infer_item *it)
{
    const struct kinfer_request *req = it->request;
    const struct kinfer_tensor *x = NULL;
    for (size_t i = 0; i < req->n_inputs; i++)
        if (req->inputs[i].name && strcmp(req->inputs[i].name, m->input) == 0)
            x = &req->inputs[i];
    if (x == NULL) {
        item_fail(it, "model needs input \"%s\" (FP32 [n,%" PRId64 "])",
                  m->input, m->n_features);
        return NULL;
    }
    if ((x->dtype != KINFER_DTYPE_FP32 && x->dtype != KINFER_DTYPE_FP64) ||
        (x->ndim != 1 && x->ndim != 2) ||
        x->shape[x->ndim - 1] != m->n_features) {
        char shape[96] = "";
        size_t used = 0;
        for (int d = 0; d < x->ndim && used < sizeof shape; d++) {
            int w = snprintf(shape + used, sizeof shape - used, "%s%" PRId64,
                             d ? "," : "", x->shape[d]);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        item_fail(it,
                  "input \"%s\": expected FP32 or FP64 of shape [n,%" PRId64
                  "] or [%" PRId64 "], got %s [%s]",
                  m->input, m->n_features, m->n_features,
                  m->host->dtype_name(x->dtype), shape);
        return NULL;
    }
    if (x->dtype == KINFER_DTYPE_FP64) {
        const double *v = x->data;
        for (size_t i = 0; i < x->count; i++)
            if (!(fabs(v[i]) <= FLT_MAX)) {
                item_fail(it,
                          "input \"%s\": FP64 value %g is not representable "
                          "in FP32",
                          m->input, v[i]);
                return NULL;
            }
    }
    return x;
}

static size_t rows_of(const struct kinfer_tensor *x)
{
    return x->ndim == 2 ? (size_t)x->shape[0] : 1;
}

static enum kinfer_err xgb_infer(void *model, struct kinfer_infer_item *items,
                                 size_t n)
{
    const struct xgb_model *m = model;
    const struct kinfer_host *h = m->host;
    size_t nf = (size_t)m->n_features, rows = 0;

    /* Every fitting item's rows, in order, in one matrix. */
    for (size_t i = 0; i < n; i++) {
        const struct kinfer_tensor *x = item_input(m, &items[i]);
        if (x != NULL)
            rows += rows_of(x);
    }
    if (rows == 0)
        return KINFER_OK;
    if (rows > SIZE_MAX / sizeof(float) / nf)
        return KINFER_ERR_NOMEM;
    float *mat = malloc(rows * nf * sizeof *mat);
    if (mat == NULL)
        return KINFER_ERR_NOMEM;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].failed)
            continue;
        const struct kinfer_tensor *x = item_input(m, &items[i]);
        if (x->dtype == KINFER_DTYPE_FP32) {
            memcpy(mat + at, x->data, x->count * sizeof *mat);
        } else {
            const double *v = x->data;
            for (size_t k = 0; k < x->count; k++)
                mat[at + k] = (float)v[k];
        }
        at += x->count;
    }

    const bst_ulong *shape = NULL;
    bst_ulong dims = 0;
    const float *res = NULL;
    if (predict(m, mat, rows, &shape, &dims, &res) != 0) {
        /* XGBoost refused the whole matrix: every request gets why. */
        for (size_t i = 0; i < n; i++)
            if (!items[i].failed)
                item_fail(&items[i], "xgboost: %.*s", XGB_ERR_LINE);
        free(mat);
        return KINFER_OK;
    }
    free(mat);
    if (dims < 1 || shape[0] != rows) {
        h->log(KINFER_LOG_ERROR,
               "xgboost: prediction of %zu rows came back with %llu rows", rows,
               dims ? (unsigned long long)shape[0] : 0ULL);
        return KINFER_ERR_MODEL;
    }

    size_t per = (size_t)m->per_row, row = 0;
    for (size_t i = 0; i < n; i++) {
        struct kinfer_infer_item *it = &items[i];
        if (it->failed)
            continue;
        const struct kinfer_tensor *x = item_input(m, it);
        size_t r = rows_of(x);
        int64_t oshape[2] = {(int64_t)r, m->per_row};
        int ondim = 1 + (per > 1);
        if (x->ndim == 1) { /* one row: [per_row] */
            oshape[0] = m->per_row;
            ondim = 1;
        }
        it->outputs = h->alloc(sizeof *it->outputs);
        if (it->outputs == NULL)
            return KINFER_ERR_NOMEM;
        it->n_outputs = 1;
        if (h->tensor_init(it->outputs, m->output, KINFER_DTYPE_FP32, ondim,
                           oshape) != KINFER_OK)
            return KINFER_ERR_NOMEM;
        memcpy(it->outputs->data, res + row * per, r * per * sizeof(float));
        row += r;
    }
    return KINFER_OK;
}

static enum kinfer_err xgb_describe(void *model, struct kinfer_model_io *io)
{
    struct xgb_model *m = model;
    io->inputs = &m->io[0];
    io->n_inputs = 1;
    io->outputs = &m->io[1];
    io->n_outputs = 1;
    return KINFER_OK;
}

static const struct kinfer_backend xgb_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = XGB_NAME,
    .create = xgb_create,
    .infer = xgb_infer,
    .destroy = xgb_destroy,
    .describe = xgb_describe,
};

/* The only exported symbol (hidden visibility otherwise); NULL refuses a
 * host of another ABI. */
const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    if (host == NULL || host->abi_version != KINFER_BACKEND_ABI_VERSION)
        return NULL;
    return &xgb_backend;
}
