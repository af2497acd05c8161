/* An example kinfer backend plugin, built outside the kinfer tree against
 * the installed headers (pkg-config kinfer-backend; see Makefile).  The
 * backend "rowsum" answers an FP32 matrix input "x" [rows, cols] with the
 * FP32 vector "sum" [rows] of its row sums.
 *
 * It uses only what a plugin may: the structs of backend.h, tensor.h and
 * request.h, and the host table kinfer hands to kinfer_backend_entry.  It
 * links nothing of kinfer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <kinfer/backend.h>

/* One loaded model.  Read-only after create, so infer may run on several
 * threads at once without a lock (backend.h's thread rule). */
struct rowsum_model {
    const struct kinfer_host *host; /* borrowed: outlives every model */
};

static const struct kinfer_tensor_desc rowsum_inputs[] = {
    {.name = "x", .dtype = KINFER_DTYPE_FP32, .ndim = 2, .shape = {-1, -1}},
};
static const struct kinfer_tensor_desc rowsum_outputs[] = {
    {.name = "sum", .dtype = KINFER_DTYPE_FP32, .ndim = 1, .shape = {-1}},
};

/* The model has no files and no settings of its own: dir and config_json
 * are not read (a real backend parses config_json for its fields). */
static enum kinfer_err rowsum_create(const struct kinfer_host *host,
                                     const char *dir, const char *config_json,
                                     void **model, char *err, size_t errsize)
{
    (void)dir;
    (void)config_json;
    struct rowsum_model *m = malloc(sizeof *m);
    if (m == NULL) {
        snprintf(err, errsize, "rowsum: out of memory");
        return KINFER_ERR_NOMEM;
    }
    m->host = host;
    *model = m;
    return KINFER_OK;
}

/* Answer one request, or mark it failed when its input does not fit the
 * model.  Anything else than KINFER_OK fails the whole batch, so only
 * running out of memory returns early. */
static enum kinfer_err rowsum_item(const struct kinfer_host *host,
                                   struct kinfer_infer_item *item)
{
    const struct kinfer_request *req = item->request;
    if (req->n_inputs != 1 || req->inputs[0].dtype != KINFER_DTYPE_FP32 ||
        req->inputs[0].ndim != 2) {
        item->failed = 1;
        snprintf(item->error, sizeof item->error,
                 "rowsum: expected one FP32 input of rank 2");
        return KINFER_OK;
    }
    const struct kinfer_tensor *x = &req->inputs[0];
    int64_t rows = x->shape[0], cols = x->shape[1];

    /* kinfer frees the outputs array and every tensor in it. */
    item->outputs = host->alloc(sizeof *item->outputs);
    if (item->outputs == NULL)
        return KINFER_ERR_NOMEM;
    item->n_outputs = 1;
    enum kinfer_err rc =
        host->tensor_init(item->outputs, "sum", KINFER_DTYPE_FP32, 1, &rows);
    if (rc != KINFER_OK)
        return rc;

    const float *in = x->data;
    float *out = item->outputs[0].data;
    for (int64_t r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int64_t c = 0; c < cols; c++)
            s += in[r * cols + c];
        out[r] = s;
    }
    return KINFER_OK;
}

static enum kinfer_err rowsum_infer(void *model,
                                    struct kinfer_infer_item *items, size_t n)
{
    const struct rowsum_model *m = model;
    for (size_t i = 0; i < n; i++) {
        enum kinfer_err rc = rowsum_item(m->host, &items[i]);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

static void rowsum_destroy(void *model)
{
    free(model);
}

static enum kinfer_err rowsum_describe(void *model, struct kinfer_model_io *io)
{
    (void)model;
    io->inputs = rowsum_inputs;
    io->n_inputs = 1;
    io->outputs = rowsum_outputs;
    io->n_outputs = 1;
    return KINFER_OK;
}

static const struct kinfer_backend rowsum_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = "rowsum",
    .create = rowsum_create,
    .infer = rowsum_infer,
    .destroy = rowsum_destroy,
    .describe = rowsum_describe,
};

/* The one exported symbol (the Makefile hides all others).  kinfer calls it
 * once, on its main thread, when it loads the plugin; returning NULL
 * refuses a host of another ABI version. */
__attribute__((visibility("default"))) const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    if (host == NULL || host->abi_version != KINFER_BACKEND_ABI_VERSION)
        return NULL;
    return &rowsum_backend;
}
