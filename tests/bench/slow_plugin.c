/* A deliberately slow backend for the memory benchmark (memory.sh): the
 * model "slow" answers every request with a copy of its inputs after
 * sleeping delay_us (config.json, default 1000) per batch.  It stands for
 * a heavy model, so a backlog piles up in front of the worker and the
 * benchmark can show that the worker's memory stays bounded by its
 * in-flight limits, not by the size of the backlog.  Never installed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/backend.h"

struct slow_model {
    const struct kinfer_host *host; /* borrowed: outlives every model */
    long delay_us;
};

/* The config's "delay_us": a small hand scan is enough for a bench model
 * (the host has already checked config.json is valid JSON). */
static long config_delay_us(const char *config_json)
{
    const char *p = strstr(config_json, "\"delay_us\"");
    if (p == NULL)
        return 1000;
    p = strchr(p + strlen("\"delay_us\""), ':');
    if (p == NULL)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(p + 1, &end, 10);
    if (errno != 0 || end == p + 1 || v < 0 || v > 10000000)
        return -1;
    return v;
}

static enum kinfer_err slow_create(const struct kinfer_host *host,
                                   const char *dir, const char *config_json,
                                   void **model, char *err, size_t errsize)
{
    (void)dir;
    long delay = config_delay_us(config_json);
    if (delay < 0) {
        snprintf(err, errsize,
                 "slow: delay_us: expected an integer from 0 to 10000000");
        return KINFER_ERR_INVALID;
    }
    struct slow_model *m = malloc(sizeof *m);
    if (m == NULL) {
        snprintf(err, errsize, "slow: out of memory");
        return KINFER_ERR_NOMEM;
    }
    m->host = host;
    m->delay_us = delay;
    *model = m;
    return KINFER_OK;
}

/* The outputs are copies of the inputs, names included; only fixed-size
 * numeric and BOOL inputs (this model only needs numbers). */
static enum kinfer_err slow_item(const struct kinfer_host *host,
                                 struct kinfer_infer_item *item)
{
    const struct kinfer_request *req = item->request;
    if (req->n_inputs == 0)
        return KINFER_OK;
    item->outputs = host->alloc(req->n_inputs * sizeof *item->outputs);
    if (item->outputs == NULL)
        return KINFER_ERR_NOMEM;
    item->n_outputs = req->n_inputs;
    for (size_t i = 0; i < req->n_inputs; i++) {
        const struct kinfer_tensor *in = &req->inputs[i];
        struct kinfer_tensor *out = &item->outputs[i];
        enum kinfer_err rc =
            host->tensor_init(out, in->name, in->dtype, in->ndim, in->shape);
        if (rc != KINFER_OK)
            return rc;
        size_t elem;
        switch (in->dtype) {
        case KINFER_DTYPE_BOOL:
            elem = 1;
            break;
        case KINFER_DTYPE_INT32:
        case KINFER_DTYPE_FP32:
            elem = 4;
            break;
        case KINFER_DTYPE_INT64:
        case KINFER_DTYPE_FP64:
            elem = 8;
            break;
        default:
            item->failed = 1;
            snprintf(item->error, sizeof item->error,
                     "slow: input '%s': datatype %s is not supported", in->name,
                     host->dtype_name(in->dtype));
            return KINFER_OK;
        }
        if (in->count > 0)
            memcpy(out->data, in->data, in->count * elem);
    }
    return KINFER_OK;
}

static enum kinfer_err slow_infer(void *model, struct kinfer_infer_item *items,
                                  size_t n)
{
    const struct slow_model *m = model;
    if (m->delay_us > 0) {
        struct timespec ts = {.tv_sec = m->delay_us / 1000000,
                              .tv_nsec = (m->delay_us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    for (size_t i = 0; i < n; i++) {
        enum kinfer_err rc = slow_item(m->host, &items[i]);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

static void slow_destroy(void *model)
{
    free(model);
}

static enum kinfer_err slow_describe(void *model, struct kinfer_model_io *io)
{
    (void)model;
    io->inputs = NULL;
    io->n_inputs = 0;
    io->outputs = NULL;
    io->n_outputs = 0;
    return KINFER_OK;
}

static const struct kinfer_backend slow_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = "slow",
    .create = slow_create,
    .infer = slow_infer,
    .destroy = slow_destroy,
    .describe = slow_describe,
};

__attribute__((visibility("default"))) const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    if (host == NULL || host->abi_version != KINFER_BACKEND_ABI_VERSION)
        return NULL;
    return &slow_backend;
}
