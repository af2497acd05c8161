/* The model registry: backends by name, loaded models by name, and the
 * host services table handed to every backend.  Built once on the main
 * thread, read-only afterwards (so lookups need no lock). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/builtin.h"
#include "kinfer/host.h"
#include "kinfer/log.h"
#include "kinfer/model.h"
#include "shared/util.h"

#define MAX_BACKENDS 32

struct kinfer_model {
    char *name;
    size_t index;
    const struct kinfer_backend *backend;
    void *handle;
    struct kinfer_model_settings settings; /* version owned */
};

struct kinfer_models {
    const struct kinfer_backend *backends[MAX_BACKENDS];
    size_t n_backends;
    struct kinfer_model **models;
    size_t n_models;
    char *names; /* "a, b, c" for error messages */
};

static void *host_alloc(size_t size)
{
    return calloc(1, size ? size : 1);
}

static void host_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void host_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kinfer_vlog(level, fmt, ap);
    va_end(ap);
}

static const struct kinfer_host host = {
    .abi_version = KINFER_BACKEND_ABI_VERSION,
    .alloc = host_alloc,
    .tensor_init = kinfer_tensor_init,
    .tensor_set_bytes = kinfer_tensor_set_bytes,
    .log = host_log,
    .dtype_name = kinfer_dtype_name,
    .dtype_size = kinfer_dtype_size,
    .dtype_from_name = kinfer_dtype_from_name,
    .half_to_float = kinfer_half_to_float,
    .float_to_half = kinfer_float_to_half,
    .tensor_convert = kinfer_tensor_convert,
    .tensor_free = kinfer_tensor_clear,
};

const struct kinfer_host *kinfer_host_get(void)
{
    return &host;
}

enum kinfer_err kinfer_models_new(struct kinfer_models **out)
{
    struct kinfer_models *ms = kinfer_xcalloc(1, sizeof *ms);
    ms->names = kinfer_xstrdup("");
    const struct kinfer_backend *builtins[] = {
        kinfer_backend_scale(),
        kinfer_backend_mlp(),
        kinfer_backend_topk(),
    };
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        char err[256];
        enum kinfer_err rc =
            kinfer_models_add_backend(ms, builtins[i], err, sizeof err);
        if (rc != KINFER_OK) {
            kinfer_log(KINFER_LOG_ERROR, "%s", err);
            kinfer_models_free(ms);
            return rc;
        }
    }
    *out = ms;
    return KINFER_OK;
}

void kinfer_models_free(struct kinfer_models *ms)
{
    if (ms == NULL)
        return;
    for (size_t i = 0; i < ms->n_models; i++) {
        struct kinfer_model *m = ms->models[i];
        m->backend->destroy(m->handle);
        free(m->name);
        free((char *)m->settings.version);
        free(m);
    }
    free(ms->models);
    free(ms->names);
    free(ms);
}

static const struct kinfer_backend *find_backend(const struct kinfer_models *ms,
                                                 const char *name)
{
    for (size_t i = 0; i < ms->n_backends; i++)
        if (strcmp(ms->backends[i]->name, name) == 0)
            return ms->backends[i];
    return NULL;
}

enum kinfer_err kinfer_models_add_backend(struct kinfer_models *ms,
                                          const struct kinfer_backend *b,
                                          char *err, size_t errsize)
{
    if (b->abi_version != KINFER_BACKEND_ABI_VERSION) {
        kinfer_fmt(err, errsize,
                   "backend '%s' was built for backend ABI %u, kinfer "
                   "speaks %u",
                   b->name ? b->name : "?", b->abi_version,
                   KINFER_BACKEND_ABI_VERSION);
        return KINFER_ERR_ABI;
    }
    if (b->name == NULL || b->create == NULL || b->infer == NULL ||
        b->destroy == NULL) {
        kinfer_fmt(err, errsize, "backend '%s' lacks a name or a function",
                   b->name ? b->name : "?");
        return KINFER_ERR_INVALID;
    }
    if (find_backend(ms, b->name) != NULL) {
        kinfer_fmt(err, errsize, "backend '%s' is registered twice", b->name);
        return KINFER_ERR_INVALID;
    }
    if (ms->n_backends == MAX_BACKENDS) {
        kinfer_fmt(err, errsize, "more than %d backends", MAX_BACKENDS);
        return KINFER_ERR_INVALID;
    }
    ms->backends[ms->n_backends++] = b;
    return KINFER_OK;
}

static void backend_names(const struct kinfer_models *ms, char *buf,
                          size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ms->n_backends && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                         ms->backends[i]->name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Whether models[i] is not the first version of its name. */
static int later_version(const struct kinfer_models *ms, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(ms->models[k]->name, ms->models[i]->name) == 0)
            return 1;
    return 0;
}

static void update_names(struct kinfer_models *ms)
{
    size_t len = 1;
    for (size_t i = 0; i < ms->n_models; i++)
        len += strlen(ms->models[i]->name) + 2;
    char *s = kinfer_xmalloc(len);
    size_t used = 0;
    for (size_t i = 0; i < ms->n_models; i++) {
        if (later_version(ms, i))
            continue;
        size_t n = strlen(ms->models[i]->name);
        if (i) {
            memcpy(s + used, ", ", 2);
            used += 2;
        }
        memcpy(s + used, ms->models[i]->name, n);
        used += n;
    }
    s[used] = '\0';
    free(ms->names);
    ms->names = s;
}

enum kinfer_err kinfer_models_load(struct kinfer_models *ms, const char *name,
                                   const char *backend,
                                   const struct kinfer_model_settings *s,
                                   const char *dir, const char *config_json,
                                   char *err, size_t errsize)
{
    const char *version = s && s->version ? s->version : "1";
    for (size_t i = 0; i < ms->n_models; i++)
        if (strcmp(ms->models[i]->name, name) == 0 &&
            strcmp(ms->models[i]->settings.version, version) == 0) {
            kinfer_fmt(err, errsize, "model '%s' version %s is defined twice",
                       name, version);
            return KINFER_ERR_INVALID;
        }
    const struct kinfer_backend *b = find_backend(ms, backend);
    if (b == NULL) {
        char known[512];
        backend_names(ms, known, sizeof known);
        kinfer_fmt(err, errsize,
                   "model '%s': backend '%s' is not registered (known: %s)",
                   name, backend, known);
        return KINFER_ERR_NOT_FOUND;
    }
    char why[512] = "";
    void *handle = NULL;
    enum kinfer_err rc =
        b->create(&host, dir, config_json, &handle, why, sizeof why);
    if (rc != KINFER_OK) {
        kinfer_fmt(err, errsize, "model '%s' (backend %s): %s", name, backend,
                   why[0] ? why : kinfer_strerror(rc));
        return rc == KINFER_ERR_NOMEM ? rc : KINFER_ERR_MODEL;
    }
    struct kinfer_model *m = kinfer_xcalloc(1, sizeof *m);
    m->name = kinfer_xstrdup(name);
    m->backend = b;
    m->handle = handle;
    if (s != NULL)
        m->settings = *s;
    m->settings.version = kinfer_xstrdup(s && s->version ? s->version : "1");
    if (m->settings.max_batch_size == 0)
        m->settings.max_batch_size = 1;
    if (m->settings.preferred_batch_size == 0 ||
        m->settings.preferred_batch_size > m->settings.max_batch_size)
        m->settings.preferred_batch_size = m->settings.max_batch_size;
    ms->models =
        kinfer_xrealloc(ms->models, (ms->n_models + 1) * sizeof *ms->models);
    m->index = ms->n_models;
    ms->models[ms->n_models++] = m;
    update_names(ms);
    return KINFER_OK;
}

/* Whether version a is newer than b: by number when both are decimal
 * numbers, else by text. */
static int newer(const char *a, const char *b)
{
    size_t la = strspn(a, "0123456789"), lb = strspn(b, "0123456789");
    if (a[la] == '\0' && b[lb] == '\0' && la > 0 && lb > 0) {
        while (la > 1 && *a == '0') /* leading zeros do not count */
            a++, la--;
        while (lb > 1 && *b == '0')
            b++, lb--;
        if (la != lb)
            return la > lb;
    }
    return strcmp(a, b) > 0;
}

const struct kinfer_model *kinfer_models_find(const struct kinfer_models *ms,
                                              const char *name)
{
    const struct kinfer_model *best = NULL;
    for (size_t i = 0; i < ms->n_models; i++)
        if (strcmp(ms->models[i]->name, name) == 0 &&
            (best == NULL ||
             newer(ms->models[i]->settings.version, best->settings.version)))
            best = ms->models[i];
    return best;
}

const struct kinfer_model *
kinfer_models_find_version(const struct kinfer_models *ms, const char *name,
                           const char *version, char *why, size_t whysize)
{
    const struct kinfer_model *m = kinfer_models_find(ms, name);
    if (m == NULL) {
        kinfer_fmt(why, whysize,
                   "model_name: unknown model '%s' (this worker serves: %s)",
                   name, ms->names);
        return NULL;
    }
    if (version == NULL)
        return m;
    char served[512];
    size_t used = 0;
    served[0] = '\0';
    for (size_t i = 0; i < ms->n_models; i++) {
        const struct kinfer_model *v = ms->models[i];
        if (strcmp(v->name, name) != 0)
            continue;
        if (strcmp(v->settings.version, version) == 0)
            return v;
        if (used < sizeof served) {
            int k = snprintf(served + used, sizeof served - used, "%s%s",
                             used ? ", " : "", v->settings.version);
            used += k > 0 ? (size_t)k : 0;
        }
    }
    kinfer_fmt(why, whysize,
               "model_version: model '%s' has no version '%s' (it serves: "
               "%s)",
               name, version, served);
    return NULL;
}

size_t kinfer_models_count(const struct kinfer_models *ms)
{
    return ms->n_models;
}

const struct kinfer_model *kinfer_models_at(const struct kinfer_models *ms,
                                            size_t i)
{
    return i < ms->n_models ? ms->models[i] : NULL;
}

size_t kinfer_model_index(const struct kinfer_model *m)
{
    return m->index;
}

const char *kinfer_models_names(const struct kinfer_models *ms)
{
    return ms->names;
}

const char *kinfer_model_name(const struct kinfer_model *m)
{
    return m->name;
}

const char *kinfer_model_version(const struct kinfer_model *m)
{
    return m->settings.version;
}

const struct kinfer_model_settings *
kinfer_model_settings(const struct kinfer_model *m)
{
    return &m->settings;
}

/* Appends "name DTYPE [d0,d1]" entries separated by ", " to buf. */
static size_t describe_tensors(char *buf, size_t size, size_t used,
                               const struct kinfer_tensor_desc *t, size_t n)
{
    for (size_t i = 0; i < n && used < size; i++) {
        int k = snprintf(buf + used, size - used, "%s%s %s [", i ? ", " : "",
                         t[i].name, kinfer_dtype_name(t[i].dtype));
        used += k > 0 ? (size_t)k : 0;
        if (t[i].ndim < 0 && used < size) {
            k = snprintf(buf + used, size - used, "...");
            used += k > 0 ? (size_t)k : 0;
        }
        for (int d = 0; d < t[i].ndim && used < size; d++) {
            k = snprintf(buf + used, size - used, "%s%lld", d ? "," : "",
                         (long long)t[i].shape[d]);
            used += k > 0 ? (size_t)k : 0;
        }
        if (used < size) {
            k = snprintf(buf + used, size - used, "]");
            used += k > 0 ? (size_t)k : 0;
        }
    }
    return used;
}

void kinfer_model_describe(const struct kinfer_model *m, char *buf, size_t size)
{
    struct kinfer_model_io io = {0};
    if (size == 0)
        return;
    buf[0] = '\0';
    if (m->backend->describe == NULL ||
        m->backend->describe(m->handle, &io) != KINFER_OK) {
        kinfer_fmt(buf, size, "any inputs");
        return;
    }
    size_t used = describe_tensors(buf, size, 0, io.inputs, io.n_inputs);
    if (used < size) {
        int k = snprintf(buf + used, size - used, " -> ");
        used += k > 0 ? (size_t)k : 0;
    }
    describe_tensors(buf, size, used, io.outputs, io.n_outputs);
}

void kinfer_infer_item_clear(struct kinfer_infer_item *item)
{
    for (size_t i = 0; item->outputs != NULL && i < item->n_outputs; i++)
        kinfer_tensor_clear(&item->outputs[i]);
    free(item->outputs);
    item->outputs = NULL;
    item->n_outputs = 0;
    item->failed = 0;
    item->error[0] = '\0';
}

/* Keep only the outputs the item's request asked for, in the order it
 * asked; an unknown name fails the item with a message naming the
 * model's outputs. */
static void filter_outputs(const struct kinfer_model *m,
                           struct kinfer_infer_item *it)
{
    const struct kinfer_request *req = it->request;
    if (it->failed || req == NULL || req->n_outputs == 0)
        return;
    for (size_t i = 0; i < req->n_outputs; i++) {
        size_t k = 0;
        while (k < it->n_outputs &&
               strcmp(it->outputs[k].name, req->outputs[i].name) != 0)
            k++;
        if (k < it->n_outputs)
            continue;
        char names[200];
        size_t used = 0;
        names[0] = '\0';
        for (k = 0; k < it->n_outputs && used < sizeof names; k++) {
            int w = snprintf(names + used, sizeof names - used, "%s%s",
                             k ? ", " : "", it->outputs[k].name);
            used += w > 0 ? (size_t)w : 0;
        }
        char error[KINFER_ITEM_ERROR_SIZE];
        kinfer_fmt(error, sizeof error,
                   "outputs[%zu].name: model '%s' has no output '%s' (its "
                   "outputs: %s)",
                   i, m->name, req->outputs[i].name, names);
        kinfer_infer_item_clear(it);
        it->failed = 1;
        memcpy(it->error, error, sizeof error);
        return;
    }
    struct kinfer_tensor *kept = kinfer_xcalloc(req->n_outputs, sizeof *kept);
    for (size_t i = 0; i < req->n_outputs; i++)
        for (size_t k = 0; k < it->n_outputs; k++)
            if (it->outputs[k].name != NULL &&
                strcmp(it->outputs[k].name, req->outputs[i].name) == 0) {
                kept[i] = it->outputs[k];
                memset(&it->outputs[k], 0, sizeof it->outputs[k]);
                break;
            }
    kinfer_infer_item_clear(it);
    it->outputs = kept;
    it->n_outputs = req->n_outputs;
}

void kinfer_model_infer(const struct kinfer_model *m,
                        struct kinfer_infer_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kinfer_infer_item_clear(&items[i]);
    enum kinfer_err rc = m->backend->infer(m->handle, items, n);
    for (size_t i = 0; i < n; i++) {
        struct kinfer_infer_item *it = &items[i];
        if (rc != KINFER_OK) {
            kinfer_infer_item_clear(it);
            it->failed =
                rc == KINFER_ERR_UNAVAILABLE ? KINFER_ITEM_TRANSIENT : 1;
            kinfer_fmt(it->error, sizeof it->error, "model '%s' failed: %s",
                       m->name, kinfer_strerror(rc));
        } else if (!it->failed && it->outputs == NULL) {
            it->failed = 1;
            kinfer_fmt(it->error, sizeof it->error,
                       "model '%s' returned no outputs", m->name);
        }
        filter_outputs(m, it);
        if (it->failed && it->error[0] == '\0')
            kinfer_fmt(it->error, sizeof it->error,
                       "model '%s' failed on this request", m->name);
        it->error[sizeof it->error - 1] = '\0';
    }
}
