/* The safetensors reader (see safetensors.h): maps a weights file, checks
 * every claim its JSON header makes against the bytes that follow, and
 * indexes the tensors by name for the backends.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader does not swap bytes"
#endif

/* One tensor and what it owns.  The public part comes first so a pointer
 * to it is what kinfer_st_find hands out. */
struct st_item {
    struct kinfer_st_tensor t;
    char *name;     /* owned */
    int64_t *shape; /* owned, [t.ndim] (NULL when ndim == 0) */
    uint64_t begin; /* data_offsets, relative to the data area */
    uint64_t end;
    void *copy; /* owned aligned copy, or NULL when t.data maps */
};

struct kinfer_st {
    char *path;
    void *map;
    size_t map_len;
    struct st_item *items; /* [n], sorted by name */
    size_t n;
    char **meta; /* [2 * n_meta]: key, value, key, value ... */
    size_t n_meta;
};

/* Zero-size tensors point here: a valid, aligned address that is never
 * read, so callers may pass it to memcpy with length 0. */
static const uint64_t st_empty[1];

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    [KINFER_ST_BOOL] = {"BOOL", 1},       [KINFER_ST_U8] = {"U8", 1},
    [KINFER_ST_I8] = {"I8", 1},           [KINFER_ST_F8_E5M2] = {"F8_E5M2", 1},
    [KINFER_ST_F8_E4M3] = {"F8_E4M3", 1}, [KINFER_ST_F8_E8M0] = {"F8_E8M0", 1},
    [KINFER_ST_I16] = {"I16", 2},         [KINFER_ST_U16] = {"U16", 2},
    [KINFER_ST_F16] = {"F16", 2},         [KINFER_ST_BF16] = {"BF16", 2},
    [KINFER_ST_I32] = {"I32", 4},         [KINFER_ST_U32] = {"U32", 4},
    [KINFER_ST_F32] = {"F32", 4},         [KINFER_ST_C64] = {"C64", 8},
    [KINFER_ST_F64] = {"F64", 8},         [KINFER_ST_I64] = {"I64", 8},
    [KINFER_ST_U64] = {"U64", 8},
};

#define ST_NDTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

const char *kinfer_st_dtype_name(enum kinfer_st_dtype dtype)
{
    if ((size_t)dtype >= ST_NDTYPES)
        return "INVALID";
    return st_dtypes[dtype].name;
}

size_t kinfer_st_dtype_size(enum kinfer_st_dtype dtype)
{
    if ((size_t)dtype >= ST_NDTYPES)
        return 0;
    return st_dtypes[dtype].size;
}

static int st_dtype_from_name(const char *name, enum kinfer_st_dtype *out)
{
    for (size_t i = 0; i < ST_NDTYPES; i++) {
        if (strcmp(st_dtypes[i].name, name) == 0) {
            *out = (enum kinfer_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

char *kinfer_st_shape_str(const int64_t *shape, int ndim, char *buf,
                          size_t size)
{
    size_t used = 0;
    int n;

    if (size == 0)
        return buf;
    buf[0] = '\0';
    n = snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n >= 0 && (size_t)n < size - used; i++) {
        used += (size_t)n;
        n = snprintf(buf + used, size - used, "%s%lld", i ? "," : "",
                     (long long)shape[i]);
    }
    if (n >= 0 && (size_t)n < size - used) {
        used += (size_t)n;
        snprintf(buf + used, size - used, "]");
    }
    return buf;
}

static void st_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void st_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;

    if (errsize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

static void st_free_items(struct st_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].name);
        free(items[i].shape);
        free(items[i].copy);
    }
    free(items);
}

void kinfer_st_close(struct kinfer_st *st)
{
    if (st == NULL)
        return;
    if (st->map != NULL)
        munmap(st->map, st->map_len);
    st_free_items(st->items, st->n);
    for (size_t i = 0; i < 2 * st->n_meta; i++)
        free(st->meta[i]);
    free(st->meta);
    free(st->path);
    free(st);
}

static int st_item_by_name(const void *a, const void *b)
{
    const struct st_item *x = a;
    const struct st_item *y = b;

    return strcmp(x->name, y->name);
}

static int st_item_by_offset(const void *a, const void *b)
{
    const struct st_item *x = *(const struct st_item *const *)a;
    const struct st_item *y = *(const struct st_item *const *)b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    /* By name last, so the message about two tensors is reproducible. */
    return strcmp(x->name, y->name);
}

/* A non-negative JSON integer as uint64_t, or 0 (and *ok = 0). */
static uint64_t st_uint(const json_t *v, int *ok)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        *ok = 0;
        return 0;
    }
    *ok = 1;
    return (uint64_t)json_integer_value(v);
}

static enum kinfer_err st_parse_metadata(struct kinfer_st *st,
                                         const json_t *meta, char *err,
                                         size_t errsize)
{
    const char *key;
    json_t *val;
    size_t i = 0;

    if (!json_is_object(meta)) {
        st_err(err, errsize,
               "%s: \"__metadata__\" must be an object of "
               "strings",
               st->path);
        return KINFER_ERR_INVALID;
    }
    st->meta = calloc(2 * json_object_size(meta) + 1, sizeof *st->meta);
    if (st->meta == NULL)
        return KINFER_ERR_NOMEM;
    json_object_foreach((json_t *)meta, key, val)
    {
        if (!json_is_string(val)) {
            st_err(err, errsize,
                   "%s: \"__metadata__\" entry \"%s\" must "
                   "be a string",
                   st->path, key);
            return KINFER_ERR_INVALID;
        }
        st->meta[2 * i] = strdup(key);
        st->meta[2 * i + 1] = strdup(json_string_value(val));
        st->n_meta = ++i;
        if (st->meta[2 * i - 2] == NULL || st->meta[2 * i - 1] == NULL)
            return KINFER_ERR_NOMEM;
    }
    return KINFER_OK;
}

/* it->t.dtype from the entry's "dtype" (jdtype). */
static enum kinfer_err st_parse_dtype(const struct kinfer_st *st,
                                      struct st_item *it, const json_t *jdtype,
                                      char *err, size_t errsize)
{
    if (!json_is_string(jdtype)) {
        st_err(err, errsize,
               "%s: tensor \"%s\": \"dtype\" must be a "
               "string",
               st->path, it->name);
        return KINFER_ERR_INVALID;
    }
    if (!st_dtype_from_name(json_string_value(jdtype), &it->t.dtype)) {
        st_err(err, errsize, "%s: tensor \"%s\": unknown dtype \"%s\"",
               st->path, it->name, json_string_value(jdtype));
        return KINFER_ERR_INVALID;
    }
    return KINFER_OK;
}

/* it's shape, element count and byte size from the entry's "shape"
 * (jshape), for the dtype already read. */
static enum kinfer_err st_parse_shape(const struct kinfer_st *st,
                                      struct st_item *it, const json_t *jshape,
                                      char *err, size_t errsize)
{
    size_t esize = kinfer_st_dtype_size(it->t.dtype), count = 1;
    char shp[128];
    int ok;

    if (!json_is_array(jshape)) {
        st_err(err, errsize,
               "%s: tensor \"%s\": \"shape\" must be an "
               "array of non-negative integers",
               st->path, it->name);
        return KINFER_ERR_INVALID;
    }
    it->t.ndim = (int)json_array_size(jshape);
    if (it->t.ndim > 0) {
        it->shape = calloc((size_t)it->t.ndim, sizeof *it->shape);
        if (it->shape == NULL)
            return KINFER_ERR_NOMEM;
    }
    for (int d = 0; d < it->t.ndim; d++) {
        uint64_t dim = st_uint(json_array_get(jshape, (size_t)d), &ok);

        if (!ok || dim > INT64_MAX) {
            st_err(err, errsize,
                   "%s: tensor \"%s\": \"shape\" must be an "
                   "array of non-negative integers",
                   st->path, it->name);
            return KINFER_ERR_INVALID;
        }
        it->shape[d] = (int64_t)dim;
    }
    /* A zero dimension makes an empty tensor, valid however large the
     * other dimensions are; otherwise multiply with overflow checks. */
    for (int d = 0; d < it->t.ndim; d++)
        if (it->shape[d] == 0)
            count = 0;
    for (int d = 0; d < it->t.ndim && count != 0; d++) {
        uint64_t dim = (uint64_t)it->shape[d];

        if (dim > SIZE_MAX / count) {
            st_err(err, errsize,
                   "%s: tensor \"%s\": shape %s overflows "
                   "the element count",
                   st->path, it->name,
                   kinfer_st_shape_str(it->shape, it->t.ndim, shp, sizeof shp));
            return KINFER_ERR_INVALID;
        }
        count *= (size_t)dim;
    }
    if (count > SIZE_MAX / esize) {
        st_err(err, errsize,
               "%s: tensor \"%s\": shape %s of %s overflows "
               "the byte count",
               st->path, it->name,
               kinfer_st_shape_str(it->shape, it->t.ndim, shp, sizeof shp),
               kinfer_st_dtype_name(it->t.dtype));
        return KINFER_ERR_INVALID;
    }
    it->t.shape = it->shape;
    it->t.count = count;
    it->t.nbytes = count * esize;
    return KINFER_OK;
}

/* it->begin and it->end from the entry's "data_offsets" (joff): inside the
 * data area of data_len bytes and exactly the tensor's size. */
static enum kinfer_err st_parse_offsets(const struct kinfer_st *st,
                                        struct st_item *it, const json_t *joff,
                                        uint64_t data_len, char *err,
                                        size_t errsize)
{
    char shp[128];
    int ok;

    if (!json_is_array(joff) || json_array_size(joff) != 2) {
        st_err(err, errsize,
               "%s: tensor \"%s\": \"data_offsets\" must be "
               "[begin, end]",
               st->path, it->name);
        return KINFER_ERR_INVALID;
    }
    it->begin = st_uint(json_array_get(joff, 0), &ok);
    if (ok)
        it->end = st_uint(json_array_get(joff, 1), &ok);
    if (!ok) {
        st_err(err, errsize,
               "%s: tensor \"%s\": \"data_offsets\" must be "
               "two non-negative integers",
               st->path, it->name);
        return KINFER_ERR_INVALID;
    }
    if (it->end < it->begin) {
        st_err(err, errsize,
               "%s: tensor \"%s\": data_offsets [%llu, %llu] "
               "end before begin",
               st->path, it->name, (unsigned long long)it->begin,
               (unsigned long long)it->end);
        return KINFER_ERR_INVALID;
    }
    if (it->end > data_len) {
        st_err(err, errsize,
               "%s: tensor \"%s\": data_offsets [%llu, %llu] "
               "run past the end of the %llu-byte data area",
               st->path, it->name, (unsigned long long)it->begin,
               (unsigned long long)it->end, (unsigned long long)data_len);
        return KINFER_ERR_INVALID;
    }
    if (it->end - it->begin != it->t.nbytes) {
        st_err(err, errsize,
               "%s: tensor \"%s\": data_offsets [%llu, %llu] "
               "hold %llu bytes but shape %s of %s needs %zu",
               st->path, it->name, (unsigned long long)it->begin,
               (unsigned long long)it->end,
               (unsigned long long)(it->end - it->begin),
               kinfer_st_shape_str(it->shape, it->t.ndim, shp, sizeof shp),
               kinfer_st_dtype_name(it->t.dtype), it->t.nbytes);
        return KINFER_ERR_INVALID;
    }
    return KINFER_OK;
}

/* Fill it from the header entry desc of the tensor called name, checking
 * everything that can be checked without looking at the other tensors.
 * data_len is the size of the data area. */
static enum kinfer_err st_parse_tensor(const struct kinfer_st *st,
                                       struct st_item *it, const char *name,
                                       const json_t *desc, uint64_t data_len,
                                       char *err, size_t errsize)
{
    enum kinfer_err rc;

    it->name = strdup(name);
    if (it->name == NULL)
        return KINFER_ERR_NOMEM;
    it->t.name = it->name;
    if (!json_is_object(desc)) {
        st_err(err, errsize,
               "%s: tensor \"%s\": entry must be an object "
               "with dtype, shape and data_offsets",
               st->path, name);
        return KINFER_ERR_INVALID;
    }
    rc = st_parse_dtype(st, it, json_object_get(desc, "dtype"), err, errsize);
    if (rc == KINFER_OK)
        rc = st_parse_shape(st, it, json_object_get(desc, "shape"), err,
                            errsize);
    if (rc == KINFER_OK)
        rc = st_parse_offsets(st, it, json_object_get(desc, "data_offsets"),
                              data_len, err, errsize);
    return rc;
}

/* The tensors must tile [0, data_len) exactly, as the reference reader
 * demands: no overlap (two tensors aliasing bytes), no hole and nothing
 * trailing (bytes no tensor describes). */
static enum kinfer_err st_check_layout(struct kinfer_st *st, uint64_t data_len,
                                       char *err, size_t errsize)
{
    struct st_item **order;
    uint64_t pos = 0;
    const char *prev = NULL;
    enum kinfer_err rc = KINFER_OK;

    if (st->n == 0) {
        if (data_len != 0) {
            st_err(err, errsize,
                   "%s: %llu bytes of data but no tensor "
                   "describes them",
                   st->path, (unsigned long long)data_len);
            return KINFER_ERR_INVALID;
        }
        return KINFER_OK;
    }
    order = malloc(st->n * sizeof *order);
    if (order == NULL)
        return KINFER_ERR_NOMEM;
    for (size_t i = 0; i < st->n; i++)
        order[i] = &st->items[i];
    qsort(order, st->n, sizeof *order, st_item_by_offset);
    for (size_t i = 0; i < st->n; i++) {
        const struct st_item *it = order[i];

        if (it->begin < pos) {
            st_err(err, errsize,
                   "%s: tensor \"%s\": data_offsets [%llu, "
                   "%llu] overlap tensor \"%s\"",
                   st->path, it->name, (unsigned long long)it->begin,
                   (unsigned long long)it->end, prev);
            rc = KINFER_ERR_INVALID;
            goto out;
        }
        if (it->begin > pos) {
            st_err(err, errsize,
                   "%s: data bytes [%llu, %llu) belong to no "
                   "tensor (a hole before tensor \"%s\")",
                   st->path, (unsigned long long)pos,
                   (unsigned long long)it->begin, it->name);
            rc = KINFER_ERR_INVALID;
            goto out;
        }
        pos = it->end;
        prev = it->name;
    }
    if (pos != data_len) {
        st_err(err, errsize,
               "%s: data bytes [%llu, %llu) belong to no "
               "tensor (trailing bytes after the last tensor)",
               st->path, (unsigned long long)pos, (unsigned long long)data_len);
        rc = KINFER_ERR_INVALID;
    }
out:
    free(order);
    return rc;
}

/* Point each tensor at its bytes, copying the ones a writer left at an
 * offset misaligned for their element type (the format does not promise
 * alignment; the reference writer pads, others may not).  Copying once at
 * open is cheaper than failing, and cheaper than unaligned loads later. */
static enum kinfer_err st_place_data(struct kinfer_st *st,
                                     const unsigned char *area)
{
    for (size_t i = 0; i < st->n; i++) {
        struct st_item *it = &st->items[i];
        const unsigned char *p = area + it->begin;
        size_t esize = kinfer_st_dtype_size(it->t.dtype);

        if (it->t.nbytes == 0) {
            it->t.data = st_empty;
            continue;
        }
        if ((uintptr_t)p % esize == 0) {
            it->t.data = p;
            continue;
        }
        it->copy = malloc(it->t.nbytes);
        if (it->copy == NULL)
            return KINFER_ERR_NOMEM;
        memcpy(it->copy, p, it->t.nbytes);
        it->t.data = it->copy;
    }
    return KINFER_OK;
}

/* The header length (the file's first 8 bytes, little-endian) into
 * *hlen, checked against the cap and the file's size. */
static enum kinfer_err st_header_len(const struct kinfer_st *st, uint64_t *hlen,
                                     char *err, size_t errsize)
{
    const unsigned char *buf = st->map;
    uint64_t n = 0;

    for (int i = 7; i >= 0; i--)
        n = (n << 8) | buf[i];
    if (n > KINFER_ST_MAX_HEADER) {
        st_err(err, errsize,
               "%s: header length %llu is over the %llu-byte "
               "limit",
               st->path, (unsigned long long)n,
               (unsigned long long)KINFER_ST_MAX_HEADER);
        return KINFER_ERR_TOO_LARGE;
    }
    if (n > st->map_len - 8) {
        st_err(err, errsize,
               "%s: header length %llu runs past the end of "
               "the %zu-byte file",
               st->path, (unsigned long long)n, st->map_len);
        return KINFER_ERR_INVALID;
    }
    if (n == 0 || buf[8] != '{') {
        st_err(err, errsize,
               "%s: header is not a JSON object (it must "
               "start with '{')",
               st->path);
        return KINFER_ERR_INVALID;
    }
    *hlen = n;
    return KINFER_OK;
}

/* Parse and validate the mapped file. */
static enum kinfer_err st_parse(struct kinfer_st *st, char *err, size_t errsize)
{
    const unsigned char *buf = st->map;
    uint64_t hlen = 0, data_len;
    json_t *root = NULL;
    json_error_t jerr;
    const char *key;
    json_t *val;
    size_t cap;
    enum kinfer_err rc;

    rc = st_header_len(st, &hlen, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    data_len = st->map_len - 8 - hlen;
    root = json_loadb((const char *)buf + 8, (size_t)hlen,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        st_err(err, errsize,
               "%s: header is not valid JSON: %s (at byte "
               "%d)",
               st->path, jerr.text, jerr.position);
        return KINFER_ERR_INVALID;
    }
    if (!json_is_object(root)) {
        st_err(err, errsize, "%s: header is not a JSON object", st->path);
        rc = KINFER_ERR_INVALID;
        goto out;
    }

    cap = json_object_size(root);
    st->items = calloc(cap ? cap : 1, sizeof *st->items);
    if (st->items == NULL) {
        rc = KINFER_ERR_NOMEM;
        goto out;
    }
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            rc = st_parse_metadata(st, val, err, errsize);
        } else {
            /* Count the item first so close frees what it owns. */
            rc = st_parse_tensor(st, &st->items[st->n++], key, val, data_len,
                                 err, errsize);
        }
        if (rc != KINFER_OK)
            goto out;
    }
    rc = st_check_layout(st, data_len, err, errsize);
    if (rc == KINFER_OK)
        rc = st_place_data(st, buf + 8 + hlen);
    if (rc == KINFER_OK)
        qsort(st->items, st->n, sizeof *st->items, st_item_by_name);
out:
    if (rc == KINFER_ERR_NOMEM)
        st_err(err, errsize, "%s: out of memory", st->path);
    json_decref(root);
    return rc;
}

enum kinfer_err kinfer_st_open(const char *path, struct kinfer_st **out,
                               char *err, size_t errsize)
{
    struct kinfer_st *st;
    struct stat sb;
    enum kinfer_err rc;
    int fd;

    st = calloc(1, sizeof *st);
    if (st == NULL || (st->path = strdup(path)) == NULL) {
        free(st);
        st_err(err, errsize, "%s: out of memory", path);
        return KINFER_ERR_NOMEM;
    }
    /* O_NONBLOCK: a FIFO named as weights must not hang start-up; fstat
     * below refuses anything but a regular file. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        st_err(err, errsize, "%s: cannot open: %s", path, strerror(errno));
        rc = KINFER_ERR_IO;
        goto fail;
    }
    if (fstat(fd, &sb) != 0) {
        st_err(err, errsize, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        rc = KINFER_ERR_IO;
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st_err(err, errsize, "%s: not a regular file", path);
        close(fd);
        rc = KINFER_ERR_IO;
        goto fail;
    }
    if (sb.st_size < 8) {
        st_err(err, errsize,
               "%s: file is %lld bytes, shorter than the "
               "8-byte header length",
               path, (long long)sb.st_size);
        close(fd);
        rc = KINFER_ERR_INVALID;
        goto fail;
    }
    if ((uintmax_t)sb.st_size > SIZE_MAX) {
        st_err(err, errsize, "%s: file too large to map", path);
        close(fd);
        rc = KINFER_ERR_TOO_LARGE;
        goto fail;
    }
    /* MAP_PRIVATE + PROT_READ: the pages are shared with the page cache
     * and with every thread, and nothing we do can write to the file. */
    st->map_len = (size_t)sb.st_size;
    st->map = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        st_err(err, errsize, "%s: cannot map: %s", path, strerror(errno));
        rc = KINFER_ERR_IO;
        goto fail;
    }
    rc = st_parse(st, err, errsize);
    if (rc != KINFER_OK)
        goto fail;
    *out = st;
    return KINFER_OK;
fail:
    kinfer_st_close(st);
    return rc;
}

const struct kinfer_st_tensor *kinfer_st_find(const struct kinfer_st *st,
                                              const char *name)
{
    struct st_item key;
    const struct st_item *it;

    if (st == NULL || name == NULL)
        return NULL;
    memset(&key, 0, sizeof key);
    key.name = (char *)name;
    it = bsearch(&key, st->items, st->n, sizeof *st->items, st_item_by_name);
    return it ? &it->t : NULL;
}

size_t kinfer_st_count(const struct kinfer_st *st)
{
    return st ? st->n : 0;
}

const struct kinfer_st_tensor *kinfer_st_at(const struct kinfer_st *st,
                                            size_t i)
{
    if (st == NULL || i >= st->n)
        return NULL;
    return &st->items[i].t;
}

const char *kinfer_st_metadata(const struct kinfer_st *st, const char *key)
{
    if (st == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0)
            return st->meta[2 * i + 1];
    return NULL;
}

const char *kinfer_st_path(const struct kinfer_st *st)
{
    return st ? st->path : NULL;
}
