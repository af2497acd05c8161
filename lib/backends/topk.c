/* Backend "topk": embedding retrieval.  Scores every item of an item
 * matrix against each query vector (a dot product) and returns the k best
 * items per query.  A batch's queries form one matrix, scored with one
 * cblas_sgemm against the item matrix, followed by a bounded selection per
 * row (a size-k min-heap: O(items log k) time, O(k) memory; topk_select.c).
 *
 * config.json (kinfer's serving fields beside these are ignored here):
 *
 *   {
 *     "backend": "topk",
 *     "weights": "embeddings.safetensors", required; relative to model dir
 *     "item_embeddings": "items",  F32 [items, dim]; default "items"
 *     "user_embeddings": "users",  optional F32 [users, dim]; without it
 *                                  requests must send vectors, not ids
 *     "input": "input",            query input name; default "input"
 *     "exclude_input": "exclude",  name of the optional exclusion input;
 *                                  default "exclude"
 *     "k": 10,                     default k; default min(10, items)
 *     "max_k": 1000,               largest k a request may ask for;
 *                                  default min(1000, items)
 *     "blas_threads": 1,           see ml_common.c
 *     "scratch_bytes": N           cap on one call's scratch; default
 *                                  16 MiB (see Memory below)
 *   }
 *
 * Item ids are row numbers of the item matrix (0-based), user ids row
 * numbers of the user matrix.  Embeddings must be finite (checked at load).
 *
 * Requests:
 *   input "input": FP32 (or FP64) [dim] or [n, dim] query vectors, or
 *                  INT64 (or INT32) [n] user ids looked up in the user table
 *                  (an unknown id fails the request);
 *   input "exclude" (optional): INT64 or INT32 [m] item ids that must not be
 *                  returned, for every row of the request (parameters are
 *                  scalars, so the list travels as a tensor);
 *   parameter "k" (optional integer): 1..max_k, default "k" of the config.
 * Results: "items" INT64 [n, k'] and "scores" FP32 [n, k'], best first,
 * ties broken by the lower item id, where k' = min(k, items not
 * excluded).  A [dim] query counts as n = 1.
 *
 * Memory: scratch is bounded by "scratch_bytes" per call.  When
 * rows x items would need more, the queries are cut into blocks of rows
 * and the item matrix into chunks; normally both are one piece.
 *
 * Threads: the model is immutable after create; infer is reentrant.
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
#include "topk_select.h"

#define TOPK "topk"

/* Most rows scored in one sgemm; keeps the per-row state small. */
#define TOPK_MAX_BLOCK_ROWS 1024

struct topk_model {
    const struct kinfer_host *host;
    struct kinfer_st *st;
    const float *items; /* [n_items, dim], borrowed from the mapping */
    size_t n_items;
    const float *users; /* [n_users, dim] or NULL */
    size_t n_users;
    int dim;
    char *input;   /* owned */
    char *exclude; /* owned */
    size_t k_default;
    size_t max_k;
    size_t scratch;                  /* bytes of scratch one call may use */
    struct kinfer_tensor_desc io[4]; /* query, exclude; items, scores */
};

/* What infer learnt about one request. */
struct topk_req {
    const struct kinfer_tensor *x; /* the query input */
    size_t rows;                   /* 0 when failed or empty */
    size_t k;                      /* k' */
    size_t scored;                 /* rows to score: 0 when k' is 0 */
    int64_t *excl;                 /* sorted, unique; owned */
    size_t n_excl;
};

static void topk_destroy(void *model)
{
    struct topk_model *m = model;

    if (m == NULL)
        return;
    kinfer_st_close(m->st);
    free(m->input);
    free(m->exclude);
    free(m);
}

static enum kinfer_err topk_matrix(const struct topk_model *m, const char *key,
                                   const char *name,
                                   const struct kinfer_st_tensor **out,
                                   char *err, size_t errsize)
{
    const struct kinfer_st_tensor *t = kinfer_st_find(m->st, name);
    char shape[96];

    if (t == NULL) {
        snprintf(err, errsize, TOPK ": %s: no tensor \"%s\" in %s", key, name,
                 kinfer_st_path(m->st));
        return KINFER_ERR_CONFIG;
    }
    kinfer_st_shape_str(t->shape, t->ndim, shape, sizeof shape);
    if (t->dtype != KINFER_ST_F32 || t->ndim != 2 || t->shape[0] < 1 ||
        t->shape[1] < 1 || t->shape[1] > INT_MAX) {
        snprintf(err, errsize,
                 TOPK ": %s: tensor \"%s\" is %s %s; expected "
                      "F32 [rows, dim] with rows, dim >= 1",
                 key, name, kinfer_st_dtype_name(t->dtype), shape);
        return KINFER_ERR_CONFIG;
    }
    if (!kinfer_ml_all_finite(t->data, t->count)) {
        snprintf(err, errsize, TOPK ": %s: tensor \"%s\" holds inf or NaN", key,
                 name);
        return KINFER_ERR_CONFIG;
    }
    *out = t;
    return KINFER_OK;
}

/* Find the item table (and the user table, when users is not NULL) in the
 * open weights file, then read k and max_k, whose bounds depend on the
 * number of items. */
static enum kinfer_err topk_load_tables(struct topk_model *m,
                                        const json_t *root, const char *items,
                                        const char *users, char *err,
                                        size_t errsize)
{
    const struct kinfer_st_tensor *ti, *tu;
    long long k, max_k;
    enum kinfer_err rc;

    rc = topk_matrix(m, "item_embeddings", items, &ti, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    m->items = ti->data;
    m->n_items = (size_t)ti->shape[0];
    m->dim = (int)ti->shape[1];
    if (users != NULL) {
        rc = topk_matrix(m, "user_embeddings", users, &tu, err, errsize);
        if (rc != KINFER_OK)
            return rc;
        if (tu->shape[1] != m->dim) {
            snprintf(err, errsize,
                     TOPK ": user_embeddings \"%s\" has dim "
                          "%lld but item_embeddings \"%s\" has dim %d",
                     users, (long long)tu->shape[1], items, m->dim);
            return KINFER_ERR_CONFIG;
        }
        m->users = tu->data;
        m->n_users = (size_t)tu->shape[0];
    }

    rc = kinfer_ml_config_int(TOPK, root, "max_k",
                              m->n_items < 1000 ? (long long)m->n_items : 1000,
                              1, (long long)m->n_items, &max_k, err, errsize);
    if (rc == KINFER_OK)
        rc = kinfer_ml_config_int(TOPK, root, "k", max_k < 10 ? max_k : 10, 1,
                                  max_k, &k, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    m->k_default = (size_t)k;
    m->max_k = (size_t)max_k;
    return KINFER_OK;
}

static enum kinfer_err topk_create(const struct kinfer_host *host,
                                   const char *dir, const char *config_json,
                                   void **model, char *err, size_t errsize)
{
    struct topk_model *m = NULL;
    struct kinfer_ml_config c;
    const char *items, *users, *input, *exclude;
    const struct kinfer_ml_field fields[] = {
        {"item_embeddings", "items", &items},
        {"user_embeddings", NULL, &users},
        {"input", "input", &input},
        {"exclude_input", "exclude", &exclude},
    };
    enum kinfer_err rc;

    rc = kinfer_ml_config_open(host, TOPK, config_json, fields,
                               sizeof fields / sizeof fields[0], &c, err,
                               errsize);
    if (rc != KINFER_OK)
        return rc;
    if (strcmp(input, exclude) == 0) {
        snprintf(err, errsize,
                 TOPK ": \"input\" and \"exclude_input\" must "
                      "differ");
        rc = KINFER_ERR_CONFIG;
        goto fail;
    }

    m = calloc(1, sizeof *m);
    if (m == NULL)
        goto nomem;
    m->host = host;
    m->scratch = c.scratch;
    m->input = strdup(input);
    m->exclude = strdup(exclude);
    if (m->input == NULL || m->exclude == NULL)
        goto nomem;
    rc = kinfer_ml_weights_open(TOPK, dir, &c, &m->st, err, errsize);
    if (rc == KINFER_OK)
        rc = topk_load_tables(m, c.root, items, users, err, errsize);
    if (rc != KINFER_OK)
        goto fail;

    kinfer_ml_blas_threads(host, TOPK, c.blas_threads);
    if (host->log != NULL)
        host->log(KINFER_LOG_INFO,
                  TOPK ": %s: %zu items, %zu users, dim %d, "
                       "k %zu (max %zu)",
                  c.path, m->n_items, m->n_users, m->dim, m->k_default,
                  m->max_k);
    kinfer_ml_config_close(&c);
    *model = m;
    return KINFER_OK;

nomem:
    snprintf(err, errsize, TOPK ": out of memory");
    rc = KINFER_ERR_NOMEM;
fail:
    topk_destroy(m);
    kinfer_ml_config_close(&c);
    return rc;
}

/* Element i of an INT32 or INT64 tensor. */
static int64_t topk_int_at(const struct kinfer_tensor *t, size_t i)
{
    if (t->dtype == KINFER_DTYPE_INT32)
        return ((const int32_t *)t->data)[i];
    return ((const int64_t *)t->data)[i];
}

static int topk_is_int(const struct kinfer_tensor *t)
{
    return t->dtype == KINFER_DTYPE_INT32 || t->dtype == KINFER_DTYPE_INT64;
}

/* The request's k, or 0 after failing the item. */
static size_t topk_param_k(const struct topk_model *m,
                           struct kinfer_infer_item *item)
{
    const struct kinfer_request *req = item->request;

    for (size_t i = 0; i < req->n_params; i++) {
        const struct kinfer_param *p = &req->params[i];
        long long k;

        if (p->name == NULL || strcmp(p->name, "k") != 0)
            continue;
        if (p->kind != KINFER_PARAM_NUMBER ||
            (!p->is_integer && p->number != floor(p->number))) {
            kinfer_ml_item_fail(item,
                                "parameter \"k\" must be an integer "
                                "in [1, %zu]",
                                m->max_k);
            return 0;
        }
        if (p->is_integer)
            k = p->integer;
        else if (p->number >= 1.0 && p->number <= (double)m->max_k)
            k = (long long)p->number;
        else
            k = 0;
        if (k < 1 || (unsigned long long)k > m->max_k) {
            kinfer_ml_item_fail(item,
                                "parameter \"k\" must be an integer "
                                "in [1, %zu]",
                                m->max_k);
            return 0;
        }
        return (size_t)k;
    }
    return m->k_default;
}

/* Sort and deduplicate the request's exclusion list into r.  Returns 0
 * after failing the item; *nomem on allocation failure. */
static int topk_exclusions(const struct topk_model *m,
                           struct kinfer_infer_item *item, struct topk_req *r,
                           int *nomem)
{
    const struct kinfer_tensor *e = kinfer_ml_input(item->request, m->exclude);
    char desc[128];
    size_t u = 0;

    if (e == NULL)
        return 1;
    if (!topk_is_int(e) || e->ndim != 1) {
        kinfer_ml_item_fail(
            item,
            "input \"%s\": expected INT64 [m] item "
            "ids, got %s",
            m->exclude, kinfer_ml_tensor_desc(m->host, e, desc, sizeof desc));
        return 0;
    }
    if (e->count == 0)
        return 1;
    r->excl = malloc(e->count * sizeof *r->excl);
    if (r->excl == NULL) {
        *nomem = 1;
        kinfer_ml_item_fail(item, "out of memory");
        return 0;
    }
    for (size_t i = 0; i < e->count; i++) {
        int64_t id = topk_int_at(e, i);

        if (id < 0 || (uint64_t)id >= m->n_items) {
            kinfer_ml_item_fail(item,
                                "input \"%s\": item id %lld is not in "
                                "[0, %zu)",
                                m->exclude, (long long)id, m->n_items);
            return 0;
        }
        r->excl[i] = id;
    }
    qsort(r->excl, e->count, sizeof *r->excl, kinfer_topk_cmp_id);
    for (size_t i = 0; i < e->count; i++)
        if (u == 0 || r->excl[u - 1] != r->excl[i])
            r->excl[u++] = r->excl[i];
    r->n_excl = u;
    return 1;
}

/* Check the query input x of item (NULL when absent) and count its rows
 * into *rows.  Returns 0 after failing the item. */
static int topk_check_query(const struct topk_model *m,
                            struct kinfer_infer_item *item,
                            const struct kinfer_tensor *x, size_t *rows)
{
    char desc[128];

    if (x == NULL) {
        kinfer_ml_item_fail(item,
                            "model needs input \"%s\": FP32 [n,%d] or "
                            "[%d] vectors%s",
                            m->input, m->dim, m->dim,
                            m->users ? ", or INT64 [n] user ids" : "");
        return 0;
    }
    if (x->dtype == KINFER_DTYPE_FP32 || x->dtype == KINFER_DTYPE_FP64) {
        if ((x->ndim != 1 && x->ndim != 2) || x->shape[x->ndim - 1] != m->dim) {
            kinfer_ml_item_fail(
                item,
                "input \"%s\": expected vectors of "
                "shape [n,%d] or [%d], got %s",
                m->input, m->dim, m->dim,
                kinfer_ml_tensor_desc(m->host, x, desc, sizeof desc));
            return 0;
        }
        *rows = x->ndim == 2 ? (size_t)x->shape[0] : 1;
        for (size_t i = 0; i < x->count; i++) {
            double v = x->dtype == KINFER_DTYPE_FP32
                           ? ((const float *)x->data)[i]
                           : ((const double *)x->data)[i];

            if (!(fabs(v) <= FLT_MAX)) {
                kinfer_ml_item_fail(item,
                                    "input \"%s\": value %g is not a "
                                    "finite FP32",
                                    m->input, v);
                return 0;
            }
        }
    } else if (topk_is_int(x)) {
        if (m->users == NULL) {
            kinfer_ml_item_fail(item,
                                "input \"%s\": this model has no user "
                                "table; send FP32 [n,%d] vectors",
                                m->input, m->dim);
            return 0;
        }
        if (x->ndim != 1) {
            kinfer_ml_item_fail(
                item,
                "input \"%s\": expected user ids of "
                "shape [n], got %s",
                m->input, kinfer_ml_tensor_desc(m->host, x, desc, sizeof desc));
            return 0;
        }
        *rows = x->count;
        for (size_t i = 0; i < *rows; i++) {
            int64_t id = topk_int_at(x, i);

            if (id < 0 || (uint64_t)id >= m->n_users) {
                kinfer_ml_item_fail(item,
                                    "input \"%s\": unknown user id "
                                    "%lld (the table has ids 0..%zu)",
                                    m->input, (long long)id, m->n_users - 1);
                return 0;
            }
        }
    } else {
        kinfer_ml_item_fail(
            item,
            "input \"%s\": expected FP32 vectors or "
            "INT64 user ids, got %s",
            m->input, kinfer_ml_tensor_desc(m->host, x, desc, sizeof desc));
        return 0;
    }
    return 1;
}

/* Check one request and attach its outputs.  Leaves r->rows 0 after
 * failing the item. */
static void topk_prepare(const struct topk_model *m,
                         struct kinfer_infer_item *item, struct topk_req *r,
                         int *nomem)
{
    const struct kinfer_tensor *x = kinfer_ml_input(item->request, m->input);
    int64_t shape[2];
    size_t rows, k;

    if (!topk_check_query(m, item, x, &rows))
        return;
    k = topk_param_k(m, item);
    if (k == 0 || !topk_exclusions(m, item, r, nomem))
        return;
    if (k > m->n_items - r->n_excl)
        k = m->n_items - r->n_excl;

    shape[0] = (int64_t)rows;
    shape[1] = (int64_t)k;
    if (kinfer_ml_outputs(m->host, item, 2) != KINFER_OK ||
        m->host->tensor_init(&item->outputs[0], "items", KINFER_DTYPE_INT64, 2,
                             shape) != KINFER_OK ||
        m->host->tensor_init(&item->outputs[1], "scores", KINFER_DTYPE_FP32, 2,
                             shape) != KINFER_OK) {
        *nomem = 1;
        kinfer_ml_item_fail(item, "out of memory");
        return;
    }
    r->x = x;
    r->rows = rows;
    r->k = k;
    r->scored = k != 0 ? rows : 0;
}

/* Score one block of query rows (q[nrows, dim]) against the item matrix,
 * chunk by chunk, into the rows' heaps. */
static void topk_score_block(const struct topk_model *m, const float *q,
                             struct kinfer_topk_row *rows, size_t nrows,
                             float *s, size_t chunk)
{
    for (size_t c0 = 0; c0 < m->n_items; c0 += chunk) {
        size_t cc = m->n_items - c0 < chunk ? m->n_items - c0 : chunk;

        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nrows,
                    (int)cc, m->dim, 1.0f, q, m->dim,
                    m->items + c0 * (size_t)m->dim, m->dim, 0.0f, s, (int)cc);
        for (size_t j = 0; j < nrows; j++)
            kinfer_topk_offer(&rows[j], s + j * cc, c0, cc);
    }
}

/* Copy query row `row` of request r into dst. */
static void topk_query(const struct topk_model *m, const struct topk_req *r,
                       size_t row, float *dst)
{
    size_t d = (size_t)m->dim;

    if (topk_is_int(r->x)) {
        int64_t id = topk_int_at(r->x, row);

        memcpy(dst, m->users + (size_t)id * d, d * sizeof *dst);
    } else if (r->x->dtype == KINFER_DTYPE_FP32) {
        memcpy(dst, (const float *)r->x->data + row * d, d * sizeof *dst);
    } else {
        for (size_t i = 0; i < d; i++)
            dst[i] = (float)((const double *)r->x->data)[row * d + i];
    }
}

/* Scratch for one call: half for a block of query rows, half for their
 * scores against a chunk of the item matrix. */
static void topk_blocks(const struct topk_model *m, size_t total, size_t *block,
                        size_t *chunk)
{
    size_t half = m->scratch / 2, b, c;

    b = half / ((size_t)m->dim * sizeof(float));
    if (b > TOPK_MAX_BLOCK_ROWS)
        b = TOPK_MAX_BLOCK_ROWS;
    if (b > total)
        b = total;
    if (b == 0)
        b = 1;
    c = half / (b * sizeof(float));
    if (c > m->n_items)
        c = m->n_items;
    if (c > INT_MAX)
        c = INT_MAX;
    if (c == 0)
        c = 1;
    *block = b;
    *chunk = c;
}

/* Where the next block starts: request ci, row ri within it. */
struct topk_cursor {
    size_t ci;
    size_t ri;
};

/* Set up the next nrows rows to score (their heaps in rows[], their
 * queries in q) and advance the cursor.  Requests with k' = 0 were left
 * out of the total and are skipped: their outputs are empty. */
static void topk_gather(const struct topk_model *m,
                        struct kinfer_infer_item *items,
                        const struct topk_req *reqs, struct topk_cursor *cur,
                        struct kinfer_topk_row *rows, size_t nrows, float *q)
{
    for (size_t j = 0; j < nrows; j++) {
        const struct topk_req *r;
        struct kinfer_topk_row *h = &rows[j];

        while (cur->ri >= reqs[cur->ci].scored) {
            cur->ci++;
            cur->ri = 0;
        }
        r = &reqs[cur->ci];
        h->k = r->k;
        h->size = 0;
        h->score = (float *)items[cur->ci].outputs[1].data + cur->ri * r->k;
        h->id = (int64_t *)items[cur->ci].outputs[0].data + cur->ri * r->k;
        h->excl = r->excl;
        h->n_excl = r->n_excl;
        h->req = cur->ci;
        topk_query(m, r, cur->ri, q + j * (size_t)m->dim);
        cur->ri++;
    }
}

static enum kinfer_err topk_infer(void *model, struct kinfer_infer_item *items,
                                  size_t n)
{
    const struct topk_model *m = model;
    struct topk_req *reqs;
    struct kinfer_topk_row *rows = NULL;
    struct topk_cursor cur = {0, 0};
    size_t total = 0, block, chunk;
    float *q = NULL, *s = NULL;
    enum kinfer_err rc = KINFER_OK;
    int nomem = 0;

    reqs = calloc(n, sizeof *reqs);
    if (reqs == NULL)
        return KINFER_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        topk_prepare(m, &items[i], &reqs[i], &nomem);
        total += reqs[i].scored;
    }
    if (nomem) {
        rc = KINFER_ERR_NOMEM;
        goto out;
    }
    if (total == 0)
        goto out;

    topk_blocks(m, total, &block, &chunk);
    q = malloc(block * (size_t)m->dim * sizeof *q);
    s = malloc(block * chunk * sizeof *s);
    rows = calloc(block, sizeof *rows);
    if (q == NULL || s == NULL || rows == NULL) {
        rc = KINFER_ERR_NOMEM;
        goto out;
    }
    for (size_t done = 0; done < total;) {
        size_t nrows = total - done < block ? total - done : block;

        topk_gather(m, items, reqs, &cur, rows, nrows, q);
        topk_score_block(m, q, rows, nrows, s, chunk);
        for (size_t j = 0; j < nrows; j++) {
            kinfer_topk_finish(&rows[j]);
            if (!items[rows[j].req].failed &&
                !kinfer_ml_all_finite(rows[j].score, rows[j].size))
                kinfer_ml_item_fail(&items[rows[j].req],
                                    "scores are not "
                                    "finite (query values too large?)");
        }
        done += nrows;
    }
out:
    for (size_t i = 0; i < n; i++)
        free(reqs[i].excl);
    free(reqs);
    free(rows);
    free(q);
    free(s);
    return rc;
}

/* The query as vectors (user ids are the INT64 alternative of the same
 * input), the optional exclusion list, and the two [-1, k] outputs. */
static enum kinfer_err topk_describe(void *model, struct kinfer_model_io *io)
{
    struct topk_model *m = model;
    m->io[0] = (struct kinfer_tensor_desc){.name = m->input,
                                           .dtype = KINFER_DTYPE_FP32,
                                           .ndim = 2,
                                           .shape = {-1, m->dim}};
    m->io[1] = (struct kinfer_tensor_desc){.name = m->exclude,
                                           .dtype = KINFER_DTYPE_INT64,
                                           .ndim = 1,
                                           .shape = {-1}};
    m->io[2] = (struct kinfer_tensor_desc){.name = "items",
                                           .dtype = KINFER_DTYPE_INT64,
                                           .ndim = 2,
                                           .shape = {-1, -1}};
    m->io[3] = (struct kinfer_tensor_desc){.name = "scores",
                                           .dtype = KINFER_DTYPE_FP32,
                                           .ndim = 2,
                                           .shape = {-1, -1}};
    io->inputs = &m->io[0];
    io->n_inputs = 2;
    io->outputs = &m->io[2];
    io->n_outputs = 2;
    return KINFER_OK;
}

static const struct kinfer_backend topk_backend = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .name = TOPK,
    .create = topk_create,
    .infer = topk_infer,
    .destroy = topk_destroy,
    .describe = topk_describe,
};

const struct kinfer_backend *kinfer_backend_topk(void)
{
    return &topk_backend;
}
