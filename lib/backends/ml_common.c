/* Helpers shared by the dense backends (see ml_common.h).  This file and
 * the backends are the only kinfer code that includes <cblas.h>.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/log.h"
#include "ml_common.h"
#include "safetensors.h"

enum kinfer_err kinfer_ml_config_parse(const char *backend,
                                       const char *config_json, json_t **root,
                                       char *err, size_t errsize)
{
    json_error_t jerr;
    json_t *r;

    if (config_json == NULL) {
        snprintf(err, errsize, "%s: the model needs a config.json", backend);
        return KINFER_ERR_CONFIG;
    }
    r = json_loads(config_json, JSON_REJECT_DUPLICATES, &jerr);
    if (r == NULL) {
        snprintf(err, errsize,
                 "%s: config.json is not valid JSON: %s "
                 "(line %d, column %d)",
                 backend, jerr.text, jerr.line, jerr.column);
        return KINFER_ERR_CONFIG;
    }
    if (!json_is_object(r)) {
        json_decref(r);
        snprintf(err, errsize, "%s: config.json must be a JSON object",
                 backend);
        return KINFER_ERR_CONFIG;
    }
    *root = r;
    return KINFER_OK;
}

enum kinfer_err
kinfer_ml_config_open(const struct kinfer_host *host, const char *backend,
                      const char *config_json,
                      const struct kinfer_ml_field *fields, size_t n_fields,
                      struct kinfer_ml_config *c, char *err, size_t errsize)
{
    long long scratch = 0;
    enum kinfer_err rc;

    memset(c, 0, sizeof *c);
    if (host == NULL || host->abi_version != KINFER_BACKEND_ABI_VERSION) {
        snprintf(err, errsize, "%s: host ABI version mismatch", backend);
        return KINFER_ERR_ABI;
    }
    rc = kinfer_ml_config_parse(backend, config_json, &c->root, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    rc = kinfer_ml_config_string(backend, c->root, "weights", NULL, &c->weights,
                                 err, errsize);
    if (rc == KINFER_OK && c->weights == NULL) {
        snprintf(err, errsize,
                 "%s: config needs \"weights\" (a safetensors file)", backend);
        rc = KINFER_ERR_CONFIG;
    }
    for (size_t i = 0; i < n_fields && rc == KINFER_OK; i++)
        rc =
            kinfer_ml_config_string(backend, c->root, fields[i].key,
                                    fields[i].def, fields[i].out, err, errsize);
    if (rc == KINFER_OK)
        rc = kinfer_ml_config_int(backend, c->root, "blas_threads", 1, 1, 64,
                                  &c->blas_threads, err, errsize);
    if (rc == KINFER_OK)
        rc =
            kinfer_ml_config_int(backend, c->root, "scratch_bytes",
                                 (long long)KINFER_ML_SCRATCH_BYTES, 1,
                                 KINFER_ML_SCRATCH_MAX, &scratch, err, errsize);
    if (rc != KINFER_OK) {
        kinfer_ml_config_close(c);
        return rc;
    }
    c->scratch = (size_t)scratch;
    return KINFER_OK;
}

enum kinfer_err kinfer_ml_weights_open(const char *backend, const char *dir,
                                       struct kinfer_ml_config *c,
                                       struct kinfer_st **st, char *err,
                                       size_t errsize)
{
    enum kinfer_err rc;

    rc = kinfer_ml_path_join(backend, dir, c->weights, &c->path, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    rc = kinfer_st_open(c->path, st, err, errsize);
    if (rc != KINFER_OK && rc != KINFER_ERR_NOMEM)
        rc = KINFER_ERR_MODEL;
    return rc;
}

void kinfer_ml_config_close(struct kinfer_ml_config *c)
{
    json_decref(c->root);
    free(c->path);
    memset(c, 0, sizeof *c);
}

enum kinfer_err kinfer_ml_config_string(const char *backend, const json_t *obj,
                                        const char *key, const char *def,
                                        const char **out, char *err,
                                        size_t errsize)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        *out = def;
        return KINFER_OK;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(err, errsize,
                 "%s: config \"%s\" must be a non-empty "
                 "string",
                 backend, key);
        return KINFER_ERR_CONFIG;
    }
    *out = json_string_value(v);
    return KINFER_OK;
}

enum kinfer_err kinfer_ml_config_int(const char *backend, const json_t *obj,
                                     const char *key, long long def,
                                     long long min, long long max,
                                     long long *out, char *err, size_t errsize)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        *out = def;
        return KINFER_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max) {
        snprintf(err, errsize,
                 "%s: config \"%s\" must be an integer in "
                 "[%lld, %lld]",
                 backend, key, min, max);
        return KINFER_ERR_CONFIG;
    }
    *out = json_integer_value(v);
    return KINFER_OK;
}

enum kinfer_err kinfer_ml_path_join(const char *backend, const char *dir,
                                    const char *file, char **out, char *err,
                                    size_t errsize)
{
    size_t len;
    char *p;

    if (file[0] == '/') {
        p = strdup(file);
    } else if (dir == NULL) {
        snprintf(err, errsize,
                 "%s: \"%s\" is relative but the model has "
                 "no directory",
                 backend, file);
        return KINFER_ERR_CONFIG;
    } else {
        len = strlen(dir) + 1 + strlen(file) + 1;
        p = malloc(len);
        if (p != NULL)
            snprintf(p, len, "%s/%s", dir, file);
    }
    if (p == NULL) {
        snprintf(err, errsize, "%s: out of memory", backend);
        return KINFER_ERR_NOMEM;
    }
    *out = p;
    return KINFER_OK;
}

/* kinfer already runs one inference thread per core, each calling sgemm
 * on its own batch.  If OpenBLAS also split every call over its own
 * threads, the two pools would fight for the same cores; and OpenBLAS
 * serialises concurrent multithreaded calls behind a lock, so several
 * inference threads would end up waiting on each other.  With one thread
 * per call, sgemm runs on the calling thread and concurrent calls are
 * independent.  "blas_threads" > 1 only pays when the worker runs a
 * single inference thread on big matrices.
 *
 * Debian's default libopenblas0 is the pthread variant (libopenblas0-
 * pthread): it starts nproc-1 idle threads when the library loads, before
 * any model is created.  openblas_set_num_threads(1) stops using them but
 * does not end them; set OPENBLAS_NUM_THREADS=1 in the worker's
 * environment to keep them from being created at all.  In the OpenMP
 * variant the call sets the OpenMP team size instead; the advice is the
 * same.  The setting is process-wide: the last model loaded wins, and a
 * differing value is logged. */
void kinfer_ml_blas_threads(const struct kinfer_host *host, const char *backend,
                            long long threads)
{
    static const char *const kinds[] = {"sequential", "pthread", "openmp"};
    int parallel = openblas_get_parallel();
    int before = openblas_get_num_threads();

    if (before != (int)threads) {
        openblas_set_num_threads((int)threads);
        if (before != 1 && host->log != NULL)
            host->log(KINFER_LOG_DEBUG,
                      "%s: OpenBLAS threads per call "
                      "%d -> %lld",
                      backend, before, threads);
    }
    if (host->log != NULL)
        host->log(KINFER_LOG_INFO, "%s: %s (%s), %d thread(s) per BLAS call",
                  backend, openblas_get_config(),
                  parallel >= 0 && parallel <= 2 ? kinds[parallel] : "?",
                  openblas_get_num_threads());
}

void kinfer_ml_item_fail(struct kinfer_infer_item *item, const char *fmt, ...)
{
    va_list ap;

    item->failed = 1;
    va_start(ap, fmt);
    vsnprintf(item->error, sizeof item->error, fmt, ap);
    va_end(ap);
}

const struct kinfer_tensor *kinfer_ml_input(const struct kinfer_request *req,
                                            const char *name)
{
    for (size_t i = 0; i < req->n_inputs; i++)
        if (req->inputs[i].name != NULL &&
            strcmp(req->inputs[i].name, name) == 0)
            return &req->inputs[i];
    return NULL;
}

enum kinfer_err kinfer_ml_outputs(const struct kinfer_host *host,
                                  struct kinfer_infer_item *item, size_t n)
{
    item->outputs = host->alloc(n * sizeof *item->outputs);
    if (item->outputs == NULL)
        return KINFER_ERR_NOMEM;
    item->n_outputs = n;
    return KINFER_OK;
}

char *kinfer_ml_tensor_desc(const struct kinfer_host *host,
                            const struct kinfer_tensor *t, char *buf,
                            size_t size)
{
    char shape[96];

    snprintf(buf, size, "%s %s", host->dtype_name(t->dtype),
             kinfer_st_shape_str(t->shape, t->ndim, shape, sizeof shape));
    return buf;
}

int kinfer_ml_load_floats(float *dst, const void *src, enum kinfer_dtype dtype,
                          size_t n)
{
    if (dtype == KINFER_DTYPE_FP32) {
        memcpy(dst, src, n * sizeof *dst);
        return kinfer_ml_all_finite(dst, n);
    }
    for (size_t i = 0; i < n; i++) {
        double v = ((const double *)src)[i];

        /* Checked first: converting an out-of-range double is undefined. */
        if (!(fabs(v) <= FLT_MAX))
            return 0;
        dst[i] = (float)v;
    }
    return 1;
}

int kinfer_ml_all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}
