/* Model repository loader: one subdirectory per model, each with a
 * config.json, or with one subdirectory per version that has it.  Reads and
 * checks every config first (so one typo loads nothing), then hands each model
 * to its backend through the registry. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kinfer/log.h"
#include "kinfer/repo.h"
#include "shared/util.h"

#define MAX_BATCH 4096
#define MAX_DELAY_US 1000000
#define MAX_VERSION_BYTES 64

/* One model of the repository, between the two passes. */
struct repo_model {
    char *name; /* directory name = model name */
    char *dir;  /* repo dir + "/" + name */
    char *config_path;
    char *config; /* config.json text */
    char *backend;
    char *version;
    char *version_dir; /* models/<name>/<version>/: the <version>; or NULL */
    struct kinfer_model_settings settings;
};

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = kinfer_xmalloc(la + lb + 2);
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

static int name_cmp(const void *a, const void *b)
{
    const struct repo_model *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0 || x->version_dir == NULL || y->version_dir == NULL)
        return c;
    /* Versions in numeric order when both are numbers, else by text. */
    size_t lx = strspn(x->version_dir, "0123456789");
    size_t ly = strspn(y->version_dir, "0123456789");
    if (x->version_dir[lx] == '\0' && y->version_dir[ly] == '\0' && lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x->version_dir, y->version_dir);
}

static void models_clear(struct repo_model *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].dir);
        free(v[i].config_path);
        free(v[i].config);
        free(v[i].backend);
        free(v[i].version);
        free(v[i].version_dir);
    }
    free(v);
}

/* The subdirectories of dir (not starting with '.'), sorted, in *out. */
static enum kinfer_err list_subdirs(const char *dir, char ***out, size_t *n,
                                    char *err, size_t errsize)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        kinfer_fmt(err, errsize, "%s: %s", dir, strerror(errno));
        return KINFER_ERR_IO;
    }
    char **v = NULL;
    size_t count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char *sub = path_join(dir, de->d_name);
        struct stat st;
        int is_dir = stat(sub, &st) == 0 && S_ISDIR(st.st_mode);
        free(sub);
        if (!is_dir)
            continue;
        v = kinfer_xrealloc(v, (count + 1) * sizeof *v);
        v[count++] = kinfer_xstrdup(de->d_name);
    }
    closedir(d);
    *out = v;
    *n = count;
    return KINFER_OK;
}

/* A model directory without config.json of its own holds versions:
 * models/<name>/<version>/config.json, one model per version (the layout
 * of docs/models.md).  Replace each such entry of v by its versions. */
static enum kinfer_err expand_versions(struct repo_model **vp, size_t *np,
                                       char *err, size_t errsize)
{
    struct repo_model *v = *vp;
    size_t n = *np;
    for (size_t i = 0; i < n; i++) {
        if (v[i].version_dir != NULL || access(v[i].config_path, F_OK) == 0 ||
            errno != ENOENT)
            continue;
        char **subs = NULL;
        size_t n_subs = 0;
        enum kinfer_err rc =
            list_subdirs(v[i].dir, &subs, &n_subs, err, errsize);
        if (rc != KINFER_OK)
            return rc;
        if (n_subs == 0) {
            kinfer_fmt(err, errsize,
                       "%s: missing (and no version directories beside it)",
                       v[i].config_path);
            free(subs);
            return KINFER_ERR_CONFIG;
        }
        struct repo_model model = v[i];
        v = kinfer_xrealloc(v, (n + n_subs - 1) * sizeof *v);
        memmove(&v[i + n_subs], &v[i + 1], (n - i - 1) * sizeof *v);
        for (size_t k = 0; k < n_subs; k++) {
            struct repo_model *m = &v[i + k];
            memset(m, 0, sizeof *m);
            m->name = kinfer_xstrdup(model.name);
            m->dir = path_join(model.dir, subs[k]);
            m->config_path = path_join(m->dir, "config.json");
            m->version_dir = subs[k];
        }
        free(subs);
        free(model.name);
        free(model.dir);
        free(model.config_path);
        n += n_subs - 1;
        i += n_subs - 1;
        *vp = v; /* the caller frees what is there on an error */
        *np = n;
    }
    return KINFER_OK;
}

/* The model directories of dir, sorted by name, in *out (n in *n). */
static enum kinfer_err list_models(const char *dir, struct repo_model **out,
                                   size_t *n, char *err, size_t errsize)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        kinfer_fmt(err, errsize, "%s: %s", dir, strerror(errno));
        return KINFER_ERR_IO;
    }
    struct repo_model *v = NULL;
    size_t count = 0;
    enum kinfer_err rc = KINFER_OK;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                kinfer_fmt(err, errsize, "%s: %s", dir, strerror(errno));
                rc = KINFER_ERR_IO;
            }
            break;
        }
        if (de->d_name[0] == '.')
            continue;
        char *sub = path_join(dir, de->d_name);
        struct stat st;
        if (stat(sub, &st) != 0) {
            kinfer_fmt(err, errsize, "%s: %s", sub, strerror(errno));
            free(sub);
            rc = KINFER_ERR_IO;
            break;
        }
        if (!S_ISDIR(st.st_mode)) {
            kinfer_log(KINFER_LOG_WARN, "%s: not a directory, ignored", sub);
            free(sub);
            continue;
        }
        v = kinfer_xrealloc(v, (count + 1) * sizeof *v);
        memset(&v[count], 0, sizeof v[count]);
        v[count].name = kinfer_xstrdup(de->d_name);
        v[count].dir = sub;
        v[count].config_path = path_join(sub, "config.json");
        count++;
    }
    closedir(d);
    if (rc != KINFER_OK) {
        models_clear(v, count);
        return rc;
    }
    if (count == 0) {
        kinfer_fmt(err, errsize, "%s: no model directories", dir);
        return KINFER_ERR_CONFIG;
    }
    qsort(v, count, sizeof *v, name_cmp);
    *out = v;
    *n = count;
    return KINFER_OK;
}

/* Read the regular file path, at most KINFER_REPO_MAX_CONFIG_BYTES, into a
 * NUL-terminated malloc'd *text. */
static enum kinfer_err read_config(const char *path, char **text, char *err,
                                   size_t errsize)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            kinfer_fmt(err, errsize, "%s: missing", path);
            return KINFER_ERR_CONFIG;
        }
        kinfer_fmt(err, errsize, "%s: %s", path, strerror(e));
        return KINFER_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        kinfer_fmt(err, errsize, "%s: not a regular file", path);
        close(fd);
        return KINFER_ERR_CONFIG;
    }
    /* One byte more than the cap tells "too large" apart from "exactly at
     * the cap"; the file may change size under us, so the loop, not
     * st_size, decides. */
    size_t cap = KINFER_REPO_MAX_CONFIG_BYTES + 1;
    char *buf = kinfer_xmalloc(cap + 1);
    size_t len = 0;
    enum kinfer_err rc = KINFER_OK;
    while (len < cap) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            kinfer_fmt(err, errsize, "%s: %s", path, strerror(errno));
            rc = KINFER_ERR_IO;
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (rc == KINFER_OK && len > KINFER_REPO_MAX_CONFIG_BYTES) {
        kinfer_fmt(err, errsize, "%s: larger than %zu bytes", path,
                   KINFER_REPO_MAX_CONFIG_BYTES);
        rc = KINFER_ERR_CONFIG;
    }
    /* The text is handed on as a C string (json_loads, backends): a NUL
     * inside would silently cut it short. */
    if (rc == KINFER_OK && memchr(buf, '\0', len) != NULL) {
        kinfer_fmt(err, errsize, "%s: NUL byte in the file", path);
        rc = KINFER_ERR_CONFIG;
    }
    if (rc != KINFER_OK) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *text = buf;
    return KINFER_OK;
}

/* An optional integer field in lo..hi; dflt when absent.  hint follows the
 * range in the message (e.g. " (max_batch_size)"). */
static int get_int(const json_t *obj, const char *key, long lo, long hi,
                   long dflt, const char *hint, long *out, const char *path,
                   char *err, size_t errsize)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    json_int_t x = json_is_integer(v) ? json_integer_value(v) : 0;
    if (!json_is_integer(v) || x < lo || x > hi) {
        kinfer_fmt(err, errsize,
                   "%s: %s: expected an integer from %ld to %ld%s", path, key,
                   lo, hi, hint);
        return -1;
    }
    *out = (long)x;
    return 0;
}

/* "version": a string, or an integer we spell in decimal; NULL -> "1". */
static int get_version(const json_t *obj, char **out, const char *path,
                       char *err, size_t errsize)
{
    const json_t *v = json_object_get(obj, "version");
    if (v == NULL) {
        *out = kinfer_xstrdup("1");
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        char buf[32];
        kinfer_fmt(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
                   json_integer_value(v));
        *out = kinfer_xstrdup(buf);
        return 0;
    }
    if (json_is_string(v)) {
        size_t len = json_string_length(v);
        const char *s = json_string_value(v);
        if (len > 0 && len <= MAX_VERSION_BYTES && strlen(s) == len) {
            *out = kinfer_xstrdup(s);
            return 0;
        }
    }
    kinfer_fmt(err, errsize,
               "%s: version: expected a string of 1 to %d bytes or a "
               "non-negative integer",
               path, MAX_VERSION_BYTES);
    return -1;
}

/* Parse m->config and fill m->backend, m->version and m->settings. */
static enum kinfer_err check_config(struct repo_model *m, char *err,
                                    size_t errsize)
{
    const char *path = m->config_path;
    json_error_t jerr;
    json_t *root = json_loads(m->config, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        kinfer_fmt(err, errsize, "%s: invalid JSON at line %d column %d: %s",
                   path, jerr.line, jerr.column, jerr.text);
        return KINFER_ERR_CONFIG;
    }
    enum kinfer_err rc = KINFER_ERR_CONFIG;
    if (!json_is_object(root)) {
        kinfer_fmt(err, errsize, "%s: expected a JSON object", path);
        goto out;
    }

    const json_t *b = json_object_get(root, "backend");
    if (b == NULL) {
        kinfer_fmt(err, errsize, "%s: backend: missing", path);
        goto out;
    }
    if (!json_is_string(b) || json_string_length(b) == 0 ||
        strlen(json_string_value(b)) != json_string_length(b)) {
        kinfer_fmt(err, errsize, "%s: backend: expected a backend name", path);
        goto out;
    }
    m->backend = kinfer_xstrdup(json_string_value(b));

    if (get_version(root, &m->version, path, err, errsize) != 0)
        goto out;
    if (m->version_dir != NULL) {
        /* The directory names the version; a "version" field may repeat
         * it but not contradict it. */
        if (json_object_get(root, "version") != NULL &&
            strcmp(m->version, m->version_dir) != 0) {
            kinfer_fmt(err, errsize,
                       "%s: version: \"%s\" contradicts its directory \"%s\"",
                       path, m->version, m->version_dir);
            goto out;
        }
        if (strlen(m->version_dir) > MAX_VERSION_BYTES) {
            kinfer_fmt(err, errsize,
                       "%s: version directory name longer than %d bytes",
                       m->dir, MAX_VERSION_BYTES);
            goto out;
        }
        free(m->version);
        m->version = kinfer_xstrdup(m->version_dir);
    }

    long max_batch, delay, preferred;
    if (get_int(root, "max_batch_size", 1, MAX_BATCH, 1, "", &max_batch, path,
                err, errsize) != 0 ||
        get_int(root, "max_queue_delay_us", 0, MAX_DELAY_US, 0, "", &delay,
                path, err, errsize) != 0 ||
        get_int(root, "preferred_batch_size", 1, max_batch, max_batch,
                " (max_batch_size)", &preferred, path, err, errsize) != 0)
        goto out;

    m->settings.version = m->version;
    m->settings.max_batch_size = (size_t)max_batch;
    m->settings.max_queue_delay_us = delay;
    m->settings.preferred_batch_size = (size_t)preferred;
    rc = KINFER_OK;
out:
    json_decref(root);
    return rc;
}

enum kinfer_err kinfer_repo_load(struct kinfer_models *ms, const char *dir,
                                 char *err, size_t errsize)
{
    /* "models/" and "models" name the same repo; keep messages tidy. */
    char *root = kinfer_xstrdup(dir);
    for (size_t len = strlen(root); len > 1 && root[len - 1] == '/';)
        root[--len] = '\0';

    struct repo_model *v = NULL;
    size_t n = 0;
    enum kinfer_err rc = list_models(root, &v, &n, err, errsize);
    if (rc == KINFER_OK)
        rc = expand_versions(&v, &n, err, errsize);
    if (rc == KINFER_OK)
        qsort(v, n, sizeof *v, name_cmp);
    for (size_t i = 0; rc == KINFER_OK && i < n; i++) {
        rc = read_config(v[i].config_path, &v[i].config, err, errsize);
        if (rc == KINFER_OK)
            rc = check_config(&v[i], err, errsize);
    }
    for (size_t i = 0; rc == KINFER_OK && i < n; i++) {
        char why[1024];
        why[0] = '\0';
        rc = kinfer_models_load(ms, v[i].name, v[i].backend, &v[i].settings,
                                v[i].dir, v[i].config, why, sizeof why);
        if (rc != KINFER_OK)
            kinfer_fmt(err, errsize, "%s: %s", v[i].dir,
                       why[0] ? why : kinfer_strerror(rc));
        else
            kinfer_log(KINFER_LOG_INFO,
                       "model '%s' version %s loaded from %s (backend %s)",
                       v[i].name, v[i].version, v[i].dir, v[i].backend);
    }
    models_clear(v, n);
    free(root);
    return rc;
}
