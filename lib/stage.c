/* The inference stage (stage.h): pool threads decode a request, find its
 * model and either run it at once or hand it to the model's batcher, whose
 * batches run on whichever thread fills them (or on its timer).  Moved out
 * of the worker so the batching benchmark measures this very code.
 *
 * Locking: none of its own; the pool and the batchers lock inside, and the
 * counters are atomics. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/batcher.h"
#include "kinfer/pool.h"
#include "kinfer/stage.h"
#include "shared/util.h"

/* One submitted job on its way through the stage. */
struct work {
    void *job;
    const void *buf;
    size_t len;
    const struct kinfer_request *req; /* &owned, or the caller's decoded */
    struct kinfer_request owned;
};

struct batching {
    struct kinfer_stage *s;
    const struct kinfer_model *model;
    struct kinfer_batcher *batcher; /* NULL: one request per call */
};

struct kinfer_stage {
    struct kinfer_stage_config cfg;
    const struct kinfer_models *models;
    struct kinfer_stage_ops ops;
    struct kinfer_pool *pool;   /* NULL once drained */
    struct batching *per_model; /* by kinfer_model_index */
    size_t n_models;
    atomic_size_t decoding; /* jobs between dequeue and their batcher */
    atomic_ullong decoded, decode_ns, runs, run_items, run_ns;
};

static void work_free(struct work *w)
{
    kinfer_request_clear(&w->owned);
    free(w);
}

/* Runs one backend call and answers each request of it. */
static void run_model(struct kinfer_stage *s, const struct kinfer_model *m,
                      struct work **ws, size_t n)
{
    struct kinfer_infer_item one, *its = n == 1 ? &one : NULL;
    if (its == NULL)
        its = kinfer_xcalloc(n, sizeof *its);
    else
        memset(&one, 0, sizeof one);
    for (size_t i = 0; i < n; i++)
        its[i].request = ws[i]->req;
    int64_t t = kinfer_now_ns();
    kinfer_model_infer(m, its, n);
    int64_t run_ns = kinfer_now_ns() - t;
    atomic_fetch_add(&s->run_ns, (unsigned long long)run_ns);
    atomic_fetch_add(&s->runs, 1);
    atomic_fetch_add(&s->run_items, n);
    for (size_t i = 0; i < n; i++) {
        if (s->ops.ran != NULL)
            s->ops.ran(ws[i]->job, m, t, run_ns, i, n, s->ops.arg);
        s->ops.answered(ws[i]->job, ws[i]->req, m, &its[i], s->ops.arg);
        kinfer_infer_item_clear(&its[i]);
        work_free(ws[i]);
    }
    if (its != &one)
        free(its);
}

/* A batch of one model, from its batcher. */
static void run_batch(void **items, size_t n, void *arg)
{
    struct batching *b = arg;
    run_model(b->s, b->model, (struct work **)items, n);
}

/* Whether more requests may reach a batcher soon: some are being decoded
 * or are queued for the pool.  When neither holds, holding a batch open
 * only adds latency. */
static int more_work(void *arg)
{
    struct kinfer_stage *s = arg;
    return atomic_load(&s->decoding) > 0 ||
           (s->pool != NULL && kinfer_pool_queued(s->pool) > 0);
}

static void run_work(struct kinfer_stage *s, struct work *w)
{
    if (s->ops.admit != NULL && !s->ops.admit(w->job, s->ops.arg)) {
        work_free(w);
        return;
    }
    char why[512];
    if (w->req == NULL) {
        size_t json_len = w->len;
        if (s->ops.json_length != NULL &&
            s->ops.json_length(w->job, &json_len, why, sizeof why, s->ops.arg) <
                0) {
            s->ops.rejected(w->job, &w->owned, why, s->ops.arg);
            work_free(w);
            return;
        }
        int64_t t = kinfer_now_ns();
        enum kinfer_err rc = kinfer_request_decode_binary(
            w->buf, w->len, json_len, &s->cfg.limits, &w->owned, why,
            sizeof why);
        atomic_fetch_add(&s->decode_ns,
                         (unsigned long long)(kinfer_now_ns() - t));
        atomic_fetch_add(&s->decoded, 1);
        if (rc != KINFER_OK) {
            s->ops.rejected(w->job, &w->owned, why, s->ops.arg);
            work_free(w);
            return;
        }
        w->req = &w->owned;
    }
    const char *name =
        w->req->model_name ? w->req->model_name : s->cfg.default_model;
    const struct kinfer_model *m = kinfer_models_find_version(
        s->models, name, w->req->model_version, why, sizeof why);
    if (m == NULL) {
        s->ops.unknown_model(w->job, w->req, why, s->ops.arg);
        work_free(w);
        return;
    }
    if (s->ops.ready != NULL && !s->ops.ready(w->job, w->req, s->ops.arg)) {
        work_free(w);
        return;
    }
    struct batching *b = &s->per_model[kinfer_model_index(m)];
    if (b->batcher == NULL) {
        run_model(s, m, &w, 1);
        return;
    }
    /* This thread is not "decoding" while it submits (it may run a batch
     * there), so a batch is not held open waiting for itself. */
    atomic_fetch_sub(&s->decoding, 1);
    kinfer_batcher_submit(b->batcher, w);
    atomic_fetch_add(&s->decoding, 1);
}

static void pool_cb(void *item, void *arg)
{
    struct kinfer_stage *s = arg;
    atomic_fetch_add(&s->decoding, 1);
    run_work(s, item);
    atomic_fetch_sub(&s->decoding, 1);
}

enum kinfer_err kinfer_stage_new(const struct kinfer_stage_config *cfg,
                                 const struct kinfer_models *models,
                                 const struct kinfer_stage_ops *ops,
                                 struct kinfer_stage **out)
{
    if (cfg->threads == 0 || cfg->capacity == 0 || ops->rejected == NULL ||
        ops->unknown_model == NULL || ops->answered == NULL)
        return KINFER_ERR_INVALID;
    struct kinfer_stage *s = kinfer_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->models = models;
    s->ops = *ops;
    s->n_models = kinfer_models_count(models);
    s->per_model = kinfer_xcalloc(s->n_models + 1, sizeof *s->per_model);
    enum kinfer_err rc = KINFER_OK;
    for (size_t i = 0; i < s->n_models && rc == KINFER_OK; i++) {
        struct batching *b = &s->per_model[i];
        b->s = s;
        b->model = kinfer_models_at(models, i);
        const struct kinfer_model_settings *st =
            kinfer_model_settings(b->model);
        if (st->max_batch_size <= 1)
            continue;
        struct kinfer_batcher_config bc = {
            .max_batch = st->max_batch_size,
            .preferred = st->preferred_batch_size,
            .max_delay_us = st->max_queue_delay_us,
        };
        rc = kinfer_batcher_new(&bc, run_batch, b, more_work, s, &b->batcher);
    }
    if (rc == KINFER_OK)
        rc = kinfer_pool_new(cfg->threads, cfg->capacity, pool_cb, s, &s->pool);
    if (rc != KINFER_OK) {
        kinfer_stage_free(s);
        return rc;
    }
    *out = s;
    return KINFER_OK;
}

static enum kinfer_err submit(struct kinfer_stage *s, void *job,
                              const void *buf, size_t len,
                              const struct kinfer_request *req)
{
    if (s->pool == NULL)
        return KINFER_ERR_CLOSED;
    struct work *w = kinfer_xcalloc(1, sizeof *w);
    w->job = job;
    w->buf = buf;
    w->len = len;
    w->req = req;
    enum kinfer_err rc = kinfer_pool_submit(s->pool, w);
    if (rc != KINFER_OK)
        free(w);
    return rc;
}

enum kinfer_err kinfer_stage_submit(struct kinfer_stage *s, void *job,
                                    const void *buf, size_t len)
{
    return submit(s, job, buf, len, NULL);
}

enum kinfer_err kinfer_stage_submit_decoded(struct kinfer_stage *s, void *job,
                                            const struct kinfer_request *req)
{
    return submit(s, job, NULL, 0, req);
}

size_t kinfer_stage_queued(struct kinfer_stage *s)
{
    return s->pool != NULL ? kinfer_pool_queued(s->pool) : 0;
}

void kinfer_stage_drain(struct kinfer_stage *s)
{
    struct kinfer_pool *p = s->pool;
    /* Join first (every queued job runs), then run what the batchers
     * still gather, here. */
    kinfer_pool_free(p);
    s->pool = NULL;
    for (size_t i = 0; i < s->n_models; i++)
        if (s->per_model[i].batcher != NULL)
            kinfer_batcher_flush(s->per_model[i].batcher);
}

void kinfer_stage_get_stats(struct kinfer_stage *s,
                            struct kinfer_stage_stats *st)
{
    st->decoded = atomic_load(&s->decoded);
    st->decode_ns = atomic_load(&s->decode_ns);
    st->runs = atomic_load(&s->runs);
    st->run_items = atomic_load(&s->run_items);
    st->run_ns = atomic_load(&s->run_ns);
}

void kinfer_stage_batch_counts(struct kinfer_stage *s,
                               const struct kinfer_model *m, size_t *batches,
                               size_t *items)
{
    *batches = 0;
    *items = 0;
    struct kinfer_batcher *b = s->per_model[kinfer_model_index(m)].batcher;
    if (b != NULL)
        kinfer_batcher_counts(b, batches, items);
}

void kinfer_stage_free(struct kinfer_stage *s)
{
    if (s == NULL)
        return;
    kinfer_stage_drain(s);
    for (size_t i = 0; i < s->n_models; i++)
        kinfer_batcher_free(s->per_model[i].batcher);
    free(s->per_model);
    free(s);
}
