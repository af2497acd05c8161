/* A test backend plugin, "flaky", for the worker's retries (tests only,
 * never installed).  A request's parameter fail_times (default 0) says
 * how many of its attempts fail transiently, counted per request id
 * across calls; after that it answers "x" (its FP64 input "x", unchanged)
 * and "attempt" (INT64 [1]: which attempt succeeded).  With the parameter
 * whole_batch true a failing attempt fails the whole call with
 * KINFER_ERR_UNAVAILABLE instead of marking its item.  fail_times -1
 * fails for good (failed = 1), to show such failures are not retried.
 *
 * It uses only the ABI: backend.h's structs and the host table.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kinfer/backend.h>

/* Attempts seen per request id: a chained hash table under one lock
 * (infer runs on several threads at once). */
struct seen {
    struct seen *next;
    long attempts;
    char id[];
};

#define BUCKETS 4096

struct flaky_model {
    const struct kinfer_host *host;
    pthread_mutex_t lock;
    struct seen *table[BUCKETS];
};

static unsigned long hash_id(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % BUCKETS;
}

/* This request's attempt number, counting this one; 0 when out of
 * memory. */
static long next_attempt(struct flaky_model *m, const char *id)
{
    pthread_mutex_lock(&m->lock);
    struct seen **at = &m->table[hash_id(id)];
    struct seen *s = *at;
    while (s != NULL && strcmp(s->id, id) != 0)
        s = s->next;
    if (s == NULL) {
        s = malloc(sizeof *s + strlen(id) + 1);
        if (s == NULL) {
            pthread_mutex_unlock(&m->lock);
            return 0;
        }
        strcpy(s->id, id);
        s->attempts = 0;
        s->next = *at;
        *at = s;
    }
    long n = ++s->attempts;
    pthread_mutex_unlock(&m->lock);
    return n;
}

static const struct kinfer_param *param(const struct kinfer_request *req,
                                        const char *name)
{
    for (size_t i = 0; i < req->n_params; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return &req->params[i];
    return NULL;
}

static enum kinfer_err flaky_create(const struct kinfer_host *host,
                                    const char *dir, const char *config_json,
                                    void **model, char *err, size_t errsize)
{
    (void)dir;
    (void)config_json;
    struct flaky_model *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(err, errsize, "flaky: out of memory");
        return KINFER_ERR_NOMEM;
    }
    m->host = host;
    pthread_mutex_init(&m->lock, NULL);
    *model = m;
    return KINFER_OK;
}

/* Answer item (attempt number attempt) with its outputs. */
static enum kinfer_err answer(const struct kinfer_host *host,
                              struct kinfer_infer_item *item, long attempt)
{
    const struct kinfer_request *req = item->request;
    const struct kinfer_tensor *x = NULL;
    for (size_t i = 0; i < req->n_inputs; i++)
        if (strcmp(req->inputs[i].name, "x") == 0 &&
            req->inputs[i].dtype == KINFER_DTYPE_FP64)
            x = &req->inputs[i];
    if (x == NULL) {
        item->failed = 1;
        snprintf(item->error, sizeof item->error,
                 "flaky: expected an FP64 input \"x\"");
        return KINFER_OK;
    }
    item->outputs = host->alloc(2 * sizeof *item->outputs);
    if (item->outputs == NULL)
        return KINFER_ERR_NOMEM;
    item->n_outputs = 2;
    int64_t one = 1;
    enum kinfer_err rc = host->tensor_init(
        &item->outputs[0], "x", KINFER_DTYPE_FP64, x->ndim, x->shape);
    if (rc == KINFER_OK)
        rc = host->tensor_init(&item->outputs[1], "attempt", KINFER_DTYPE_INT64,
                               1, &one);
    if (rc != KINFER_OK)
        return rc;
    memcpy(item->outputs[0].data, x->data, x->count * sizeof(double));
    *(int64_t *)item->outputs[1].data = attempt;
    return KINFER_OK;
}

static enum kinfer_err flaky_infer(void *model, struct kinfer_infer_item *items,
                                   size_t n)
{
    struct flaky_model *m = model;
    enum kinfer_err batch = KINFER_OK;
    for (size_t i = 0; i < n; i++) {
        struct kinfer_infer_item *it = &items[i];
        const struct kinfer_request *req = it->request;
        const struct kinfer_param *ft = param(req, "fail_times");
        const struct kinfer_param *wb = param(req, "whole_batch");
        long fail_times = ft != NULL && ft->kind == KINFER_PARAM_NUMBER
                              ? (long)ft->number
                              : 0;
        long attempt = next_attempt(m, req->id != NULL ? req->id : "");
        if (attempt == 0)
            return KINFER_ERR_NOMEM;
        if (fail_times < 0) {
            it->failed = 1;
            snprintf(it->error, sizeof it->error, "flaky: broken for good");
        } else if (attempt <= fail_times) {
            if (wb != NULL && wb->kind == KINFER_PARAM_BOOL && wb->boolean)
                batch = KINFER_ERR_UNAVAILABLE;
            it->failed = KINFER_ITEM_TRANSIENT;
            snprintf(it->error, sizeof it->error,
                     "flaky: attempt %ld of request %s failed (transient)",
                     attempt, req->id != NULL ? req->id : "");
        } else {
            enum kinfer_err rc = answer(m->host, it, attempt);
            if (rc != KINFER_OK)
                return rc;
        }
    }
    return batch;
}

static void flaky_destroy(void *model)
{
    struct flaky_model *m = model;
    if (m == NULL)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        struct seen *s = m->table[b];
        while (s != NULL) {
            struct seen *next = s->next;
            free(s);
            s = next;
        }
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static const struct kinfer_backend flaky_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = "flaky",
    .create = flaky_create,
    .infer = flaky_infer,
    .destroy = flaky_destroy,
    .describe = NULL,
};

__attribute__((visibility("default"))) const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    if (host == NULL || host->abi_version != KINFER_BACKEND_ABI_VERSION)
        return NULL;
    return &flaky_backend;
}
