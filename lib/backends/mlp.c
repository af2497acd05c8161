/* Backend "mlp": a stack of fully connected layers with weights from a
 * safetensors file.  A batch of requests becomes one matrix (every
 * request's rows stacked), each layer one cblas_sgemm over it, and the rows
 * are split back into one result per request.
 *
 * config.json (the fields this backend reads; kinfer's own serving fields
 * such as max_batch_size sit beside them and are ignored here):
 *
 *   {
 *     "backend": "mlp",
 *     "weights": "model.safetensors", required; relative to the model dir
 *     "input":   "x",        name of the request input; default "input"
 *     "output":  "y",        name of the result output; default "output"
 *     "layers": [            required, at least one, applied in order
 *       {"weight": "fc1.weight",   required: F32 [out, in]
 *        "bias": "fc1.bias",       optional: F32 [out]; absent or null
 *                                  means no bias
 *        "activation": "relu"},    optional: relu, tanh, sigmoid, gelu
 *                                  (erf form, PyTorch's default),
 *                                  gelu_tanh (approximate='tanh'), none
 *                                  (default)
 *       ...
 *     ],
 *     "softmax": false,      softmax over each output row; default false
 *     "blas_threads": 1,     OpenBLAS threads per call; default 1 (see
 *                            ml_common.c)
 *     "scratch_bytes": N     cap on one call's intermediate matrices;
 *                            default 16 MiB.  Bigger batches run in
 *                            blocks of rows, one sgemm per layer each.
 *   }
 *
 * A layer object with any other key is refused (a typo there would change
 * the model silently).  Weights use PyTorch's nn.Linear layout: weight is
 * [out, in] and a layer computes y = x W^T + b, so a state_dict saved with
 * safetensors.torch.save_file works as is.  Each layer's in must equal the
 * previous layer's out.
 *
 * Requests: one input tensor, FP32 (or FP64, converted), of shape [n, in]
 * (n rows, n may be 0) or [in] (one row).  The result is FP32 [n, out], or
 * [out] for a 1-D input.  A request with another shape fails alone; the
 * rest of the batch is answered.
 *
 * Threads: the model is immutable after create and each call owns its
 * scratch, so any number of threads may run infer at once.
 */
#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "kinfer/log.h"
#include "ml_common.h"
#include "safetensors.h"

#define MLP "mlp"

enum mlp_act {
    MLP_ACT_NONE,
    MLP_ACT_RELU,
    MLP_ACT_TANH,
    MLP_ACT_SIGMOID,
    MLP_ACT_GELU,
    MLP_ACT_GELU_TANH
};

static const char *const mlp_act_names[] = {
    [MLP_ACT_NONE] = "none", [MLP_ACT_RELU] = "relu",
    [MLP_ACT_TANH] = "tanh", [MLP_ACT_SIGMOID] = "sigmoid",
    [MLP_ACT_GELU] = "gelu", [MLP_ACT_GELU_TANH] = "gelu_tanh",
};

struct mlp_layer {
    const float *w; /* [out, in], borrowed from the mapping */
    const float *b; /* [out] or NULL */
    int in;
    int out;
    enum mlp_act act;
};

struct mlp_model {
    const struct kinfer_host *host;
    struct kinfer_st *st;
    char *input;  /* owned */
    char *output; /* owned */
    struct mlp_layer *layers;
    size_t n_layers;
    int softmax;
    int n_in;                        /* features of a request row */
    int n_out;                       /* features of a result row */
    int max_width;                   /* widest activation, input included */
    size_t scratch;                  /* bytes of scratch one call may use */
    struct kinfer_tensor_desc io[2]; /* input, output: for describe */
};

static void mlp_destroy(void *model)
{
    struct mlp_model *m = model;

    if (m == NULL)
        return;
    kinfer_st_close(m->st);
    free(m->layers);
    free(m->input);
    free(m->output);
    free(m);
}

/* Find the F32 tensor name of the expected rank in the weights file. */
static enum kinfer_err mlp_tensor(const struct mlp_model *m, size_t li,
                                  const char *role, const char *name, int ndim,
                                  const struct kinfer_st_tensor **out,
                                  char *err, size_t errsize)
{
    const struct kinfer_st_tensor *t = kinfer_st_find(m->st, name);
    char shape[96];

    if (t == NULL) {
        snprintf(err, errsize,
                 MLP ": layers[%zu].%s: no tensor \"%s\" in "
                     "%s",
                 li, role, name, kinfer_st_path(m->st));
        return KINFER_ERR_CONFIG;
    }
    if (t->dtype != KINFER_ST_F32 || t->ndim != ndim) {
        snprintf(err, errsize,
                 MLP ": layers[%zu].%s: tensor \"%s\" is %s "
                     "%s; expected F32 of rank %d",
                 li, role, name, kinfer_st_dtype_name(t->dtype),
                 kinfer_st_shape_str(t->shape, t->ndim, shape, sizeof shape),
                 ndim);
        return KINFER_ERR_CONFIG;
    }
    for (int d = 0; d < ndim; d++) {
        if (t->shape[d] < 1 || t->shape[d] > INT_MAX) {
            snprintf(
                err, errsize,
                MLP ": layers[%zu].%s: tensor \"%s\" "
                    "has shape %s; every dimension must be in [1, %d]",
                li, role, name,
                kinfer_st_shape_str(t->shape, t->ndim, shape, sizeof shape),
                INT_MAX);
            return KINFER_ERR_CONFIG;
        }
    }
    *out = t;
    return KINFER_OK;
}

/* l->b from the layer's "bias" (jb: absent or null means no bias). */
static enum kinfer_err mlp_parse_bias(const struct mlp_model *m, size_t li,
                                      struct mlp_layer *l, const json_t *jb,
                                      const char *wname, char *err,
                                      size_t errsize)
{
    const struct kinfer_st_tensor *b;
    enum kinfer_err rc;

    if (jb == NULL || json_is_null(jb))
        return KINFER_OK;
    if (!json_is_string(jb)) {
        snprintf(err, errsize,
                 MLP ": layers[%zu].bias must be a tensor "
                     "name or null",
                 li);
        return KINFER_ERR_CONFIG;
    }
    rc = mlp_tensor(m, li, "bias", json_string_value(jb), 1, &b, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    if (b->shape[0] != l->out) {
        snprintf(err, errsize,
                 MLP ": layers[%zu]: bias \"%s\" has %lld "
                     "elements but weight \"%s\" has %d outputs",
                 li, b->name, (long long)b->shape[0], wname, l->out);
        return KINFER_ERR_CONFIG;
    }
    l->b = b->data;
    return KINFER_OK;
}

/* l->act from the layer's "activation" (ja: absent means none). */
static enum kinfer_err mlp_parse_activation(size_t li, struct mlp_layer *l,
                                            const json_t *ja, char *err,
                                            size_t errsize)
{
    size_t a, na = sizeof mlp_act_names / sizeof mlp_act_names[0];

    l->act = MLP_ACT_NONE;
    if (ja == NULL)
        return KINFER_OK;
    for (a = 0; a < na; a++)
        if (json_is_string(ja) &&
            strcmp(json_string_value(ja), mlp_act_names[a]) == 0)
            break;
    if (a == na) {
        snprintf(err, errsize,
                 MLP ": layers[%zu].activation must be "
                     "one of relu, tanh, sigmoid, gelu, gelu_tanh, none",
                 li);
        return KINFER_ERR_CONFIG;
    }
    l->act = (enum mlp_act)a;
    return KINFER_OK;
}

static enum kinfer_err mlp_parse_layer(struct mlp_model *m, size_t li,
                                       const json_t *jl, char *err,
                                       size_t errsize)
{
    struct mlp_layer *l = &m->layers[li];
    const struct kinfer_st_tensor *w;
    const json_t *jw, *v;
    const char *key;
    enum kinfer_err rc;

    if (!json_is_object(jl)) {
        snprintf(err, errsize, MLP ": layers[%zu] must be an object", li);
        return KINFER_ERR_CONFIG;
    }
    json_object_foreach((json_t *)jl, key, v)
    {
        if (strcmp(key, "weight") != 0 && strcmp(key, "bias") != 0 &&
            strcmp(key, "activation") != 0) {
            snprintf(err, errsize,
                     MLP ": layers[%zu]: unknown key \"%s\" "
                         "(expected weight, bias, activation)",
                     li, key);
            return KINFER_ERR_CONFIG;
        }
    }
    jw = json_object_get(jl, "weight");
    if (!json_is_string(jw)) {
        snprintf(err, errsize,
                 MLP ": layers[%zu].weight must be a tensor "
                     "name",
                 li);
        return KINFER_ERR_CONFIG;
    }
    rc =
        mlp_tensor(m, li, "weight", json_string_value(jw), 2, &w, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    l->w = w->data;
    l->out = (int)w->shape[0];
    l->in = (int)w->shape[1];
    rc = mlp_parse_bias(m, li, l, json_object_get(jl, "bias"), w->name, err,
                        errsize);
    if (rc == KINFER_OK)
        rc = mlp_parse_activation(li, l, json_object_get(jl, "activation"), err,
                                  errsize);
    if (rc != KINFER_OK)
        return rc;

    if (li > 0 && l->in != m->layers[li - 1].out) {
        snprintf(err, errsize,
                 MLP ": layers[%zu]: weight \"%s\" takes %d "
                     "inputs but layers[%zu] gives %d outputs",
                 li, w->name, l->in, li - 1, m->layers[li - 1].out);
        return KINFER_ERR_CONFIG;
    }
    return KINFER_OK;
}

/* Read the layers from the open weights file and size the model. */
static enum kinfer_err mlp_load_layers(struct mlp_model *m,
                                       const json_t *jlayers, char *err,
                                       size_t errsize)
{
    for (size_t i = 0; i < m->n_layers; i++) {
        enum kinfer_err rc =
            mlp_parse_layer(m, i, json_array_get(jlayers, i), err, errsize);
        if (rc != KINFER_OK)
            return rc;
    }
    m->n_in = m->layers[0].in;
    m->n_out = m->layers[m->n_layers - 1].out;
    m->max_width = m->n_in;
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->layers[i].out > m->max_width)
            m->max_width = m->layers[i].out;
    return KINFER_OK;
}

static enum kinfer_err mlp_create(const struct kinfer_host *host,
                                  const char *dir, const char *config_json,
                                  void **model, char *err, size_t errsize)
{
    struct mlp_model *m = NULL;
    struct kinfer_ml_config c;
    const json_t *jlayers, *jsoft;
    const char *input, *output;
    const struct kinfer_ml_field fields[] = {
        {"input", "input", &input},
        {"output", "output", &output},
    };
    enum kinfer_err rc;

    rc = kinfer_ml_config_open(host, MLP, config_json, fields,
                               sizeof fields / sizeof fields[0], &c, err,
                               errsize);
    if (rc != KINFER_OK)
        return rc;
    jsoft = json_object_get(c.root, "softmax");
    if (jsoft != NULL && !json_is_boolean(jsoft)) {
        snprintf(err, errsize,
                 MLP ": config \"softmax\" must be true or "
                     "false");
        rc = KINFER_ERR_CONFIG;
        goto fail;
    }
    jlayers = json_object_get(c.root, "layers");
    if (!json_is_array(jlayers) || json_array_size(jlayers) == 0) {
        snprintf(err, errsize,
                 MLP ": config needs \"layers\": a non-empty "
                     "array of {weight, bias, activation}");
        rc = KINFER_ERR_CONFIG;
        goto fail;
    }

    m = calloc(1, sizeof *m);
    if (m == NULL)
        goto nomem;
    m->host = host;
    m->scratch = c.scratch;
    m->softmax = json_is_true(jsoft);
    m->input = strdup(input);
    m->output = strdup(output);
    m->n_layers = json_array_size(jlayers);
    m->layers = calloc(m->n_layers, sizeof *m->layers);
    if (m->input == NULL || m->output == NULL || m->layers == NULL)
        goto nomem;
    rc = kinfer_ml_weights_open(MLP, dir, &c, &m->st, err, errsize);
    if (rc == KINFER_OK)
        rc = mlp_load_layers(m, jlayers, err, errsize);
    if (rc != KINFER_OK)
        goto fail;

    kinfer_ml_blas_threads(host, MLP, c.blas_threads);
    if (host->log != NULL)
        host->log(KINFER_LOG_INFO, MLP ": %s: %zu layers, %d -> %d%s", c.path,
                  m->n_layers, m->n_in, m->n_out,
                  m->softmax ? ", softmax" : "");
    kinfer_ml_config_close(&c);
    *model = m;
    return KINFER_OK;

nomem:
    snprintf(err, errsize, MLP ": out of memory");
    rc = KINFER_ERR_NOMEM;
fail:
    mlp_destroy(m);
    kinfer_ml_config_close(&c);
    return rc;
}

/* Check item's input against the model.  On success returns its row count
 * and attaches its output tensor; otherwise marks it failed and returns 0.
 * *nomem is set when an allocation failed. */
static size_t mlp_prepare(const struct mlp_model *m,
                          struct kinfer_infer_item *item, int *nomem)
{
    const struct kinfer_tensor *x = kinfer_ml_input(item->request, m->input);
    int64_t shape[2];
    char desc[128];
    size_t rows;
    int ndim;

    if (x == NULL) {
        kinfer_ml_item_fail(item,
                            "model needs input \"%s\" (FP32 [n,%d] or "
                            "[%d])",
                            m->input, m->n_in, m->n_in);
        return 0;
    }
    if ((x->dtype != KINFER_DTYPE_FP32 && x->dtype != KINFER_DTYPE_FP64) ||
        (x->ndim != 1 && x->ndim != 2) || x->shape[x->ndim - 1] != m->n_in) {
        kinfer_ml_item_fail(
            item,
            "input \"%s\": expected FP32 or FP64 of "
            "shape [n,%d] or [%d], got %s",
            m->input, m->n_in, m->n_in,
            kinfer_ml_tensor_desc(m->host, x, desc, sizeof desc));
        return 0;
    }
    rows = x->ndim == 2 ? (size_t)x->shape[0] : 1;
    if (x->dtype == KINFER_DTYPE_FP32) {
        if (!kinfer_ml_all_finite(x->data, x->count)) {
            kinfer_ml_item_fail(item, "input \"%s\": values must be finite",
                                m->input);
            return 0;
        }
    } else {
        for (size_t i = 0; i < x->count; i++) {
            double v = ((const double *)x->data)[i];

            if (!(fabs(v) <= FLT_MAX)) {
                kinfer_ml_item_fail(item,
                                    "input \"%s\": FP64 value %g is "
                                    "not representable in FP32",
                                    m->input, v);
                return 0;
            }
        }
    }

    ndim = x->ndim;
    shape[0] = ndim == 2 ? (int64_t)rows : m->n_out;
    shape[1] = m->n_out;
    if (kinfer_ml_outputs(m->host, item, 1) != KINFER_OK ||
        m->host->tensor_init(&item->outputs[0], m->output, KINFER_DTYPE_FP32,
                             ndim, shape) != KINFER_OK) {
        *nomem = 1;
        kinfer_ml_item_fail(item, "out of memory");
        return 0;
    }
    return rows;
}

static float mlp_activate(enum mlp_act act, float x)
{
    switch (act) {
    case MLP_ACT_NONE:
        return x;
    case MLP_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case MLP_ACT_TANH:
        return tanhf(x);
    case MLP_ACT_SIGMOID:
        /* Written so exp never overflows. */
        if (x >= 0.0f)
            return 1.0f / (1.0f + expf(-x));
        return expf(x) / (1.0f + expf(x));
    case MLP_ACT_GELU:
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case MLP_ACT_GELU_TANH: {
        float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);

        return 0.5f * x * (1.0f + tanhf(u));
    }
    }
    return x;
}

/* y[rows, l->out] = act(x[rows, l->in] W^T + b). */
static void mlp_layer_run(const struct mlp_layer *l, const float *x, float *y,
                          size_t rows)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, l->out,
                l->in, 1.0f, x, l->in, l->w, l->in, 0.0f, y, l->out);
    for (size_t r = 0; r < rows; r++) {
        float *row = y + r * (size_t)l->out;

        for (int j = 0; j < l->out; j++)
            row[j] = mlp_activate(l->act, row[j] + (l->b ? l->b[j] : 0.0f));
    }
}

static void mlp_softmax(float *y, size_t rows, int width)
{
    for (size_t r = 0; r < rows; r++) {
        float *row = y + r * (size_t)width;
        float max = row[0], sum = 0.0f;

        for (int j = 1; j < width; j++)
            if (row[j] > max)
                max = row[j];
        for (int j = 0; j < width; j++) {
            row[j] = expf(row[j] - max);
            sum += row[j];
        }
        for (int j = 0; j < width; j++)
            row[j] /= sum;
    }
}

/* Rows [r0, r1) of the batch matrix, whose item i holds rows
 * [start[i], start[i] + rows[i]): copy them in (dir 0) from the inputs to
 * buf, or out (dir 1) from buf to the outputs. */
static void mlp_move_rows(const struct mlp_model *m,
                          struct kinfer_infer_item *items, size_t n,
                          const size_t *start, const size_t *rows, size_t r0,
                          size_t r1, float *buf, int out)
{
    for (size_t i = 0; i < n; i++) {
        size_t lo = start[i] > r0 ? start[i] : r0;
        size_t hi = start[i] + rows[i] < r1 ? start[i] + rows[i] : r1;
        size_t w = out ? (size_t)m->n_out : (size_t)m->n_in;
        float *b = buf + (lo - r0) * w;

        if (rows[i] == 0 || lo >= hi)
            continue;
        if (out) {
            float *dst = (float *)items[i].outputs[0].data;

            memcpy(dst + (lo - start[i]) * w, b, (hi - lo) * w * sizeof *b);
        } else {
            const struct kinfer_tensor *x =
                kinfer_ml_input(items[i].request, m->input);
            size_t off = (lo - start[i]) * w;
            const void *src =
                x->dtype == KINFER_DTYPE_FP32
                    ? (const void *)((const float *)x->data + off)
                    : (const void *)((const double *)x->data + off);

            /* Finiteness was checked in mlp_prepare. */
            (void)kinfer_ml_load_floats(b, src, x->dtype, (hi - lo) * w);
        }
    }
}

static enum kinfer_err mlp_infer(void *model, struct kinfer_infer_item *items,
                                 size_t n)
{
    const struct mlp_model *m = model;
    size_t *start = NULL, *rows = NULL, total = 0, block, width;
    float *a = NULL, *b = NULL;
    enum kinfer_err rc = KINFER_OK;
    int nomem = 0;

    start = calloc(n, sizeof *start);
    rows = calloc(n, sizeof *rows);
    if (start == NULL || rows == NULL) {
        rc = KINFER_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rows[i] = mlp_prepare(m, &items[i], &nomem);
        start[i] = total;
        total += rows[i];
    }
    if (nomem) {
        rc = KINFER_ERR_NOMEM;
        goto out;
    }
    if (total == 0)
        goto out;

    /* Normally the whole batch is one block: one sgemm per layer. */
    width = (size_t)m->max_width;
    block = m->scratch / (2 * width * sizeof(float));
    if (block == 0)
        block = 1;
    if (block > total)
        block = total;
    if (block > INT_MAX)
        block = INT_MAX; /* sgemm takes int dimensions */
    a = malloc(block * width * sizeof *a);
    b = malloc(block * width * sizeof *b);
    if (a == NULL || b == NULL) {
        rc = KINFER_ERR_NOMEM;
        goto out;
    }
    for (size_t r0 = 0; r0 < total; r0 += block) {
        size_t r1 = r0 + block < total ? r0 + block : total;
        float *cur = a, *nxt = b, *tmp;

        mlp_move_rows(m, items, n, start, rows, r0, r1, cur, 0);
        for (size_t li = 0; li < m->n_layers; li++) {
            mlp_layer_run(&m->layers[li], cur, nxt, r1 - r0);
            tmp = cur;
            cur = nxt;
            nxt = tmp;
        }
        if (m->softmax)
            mlp_softmax(cur, r1 - r0, m->n_out);
        mlp_move_rows(m, items, n, start, rows, r0, r1, cur, 1);
    }

    /* Huge weights or inputs can overflow; JSON has no inf or NaN. */
    for (size_t i = 0; i < n; i++) {
        if (rows[i] != 0 && !kinfer_ml_all_finite(items[i].outputs[0].data,
                                                  items[i].outputs[0].count))
            kinfer_ml_item_fail(&items[i],
                                "output \"%s\" is not finite "
                                "(input values too large for this model?)",
                                m->output);
    }
out:
    free(a);
    free(b);
    free(start);
    free(rows);
    return rc;
}

/* Rows of n_in features in, rows of n_out out (1-D requests allowed too,
 * but [-1, n] is the general form). */
static enum kinfer_err mlp_describe(void *model, struct kinfer_model_io *io)
{
    struct mlp_model *m = model;
    m->io[0] = (struct kinfer_tensor_desc){.name = m->input,
                                           .dtype = KINFER_DTYPE_FP32,
                                           .ndim = 2,
                                           .shape = {-1, m->n_in}};
    m->io[1] = (struct kinfer_tensor_desc){.name = m->output,
                                           .dtype = KINFER_DTYPE_FP32,
                                           .ndim = 2,
                                           .shape = {-1, m->n_out}};
    io->inputs = &m->io[0];
    io->n_inputs = 1;
    io->outputs = &m->io[1];
    io->n_outputs = 1;
    return KINFER_OK;
}

static const struct kinfer_backend mlp_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = MLP,
    .create = mlp_create,
    .infer = mlp_infer,
    .destroy = mlp_destroy,
    .describe = mlp_describe,
};

const struct kinfer_backend *kinfer_backend_mlp(void)
{
    return &mlp_backend;
}
