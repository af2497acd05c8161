/* Tensors: datatype names and sizes, and the owned storage behind struct
 * kinfer_tensor.  The codec fills tensors from requests, models read and
 * write them; every size here may come from a request, so every product is
 * checked for overflow and allocation failure is reported, not fatal.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/host.h"
#include "kinfer/tensor.h"

static const struct {
    enum kinfer_dtype dtype;
    const char *name;
    size_t size;
} dtypes[] = {
    {KINFER_DTYPE_BOOL, "BOOL", 1},
    {KINFER_DTYPE_INT32, "INT32", 4},
    {KINFER_DTYPE_INT64, "INT64", 8},
    {KINFER_DTYPE_FP32, "FP32", 4},
    {KINFER_DTYPE_FP64, "FP64", 8},
    {KINFER_DTYPE_BYTES, "BYTES", sizeof(struct kinfer_bytes)},
};

#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *kinfer_dtype_name(enum kinfer_dtype dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == dtype)
            return dtypes[i].name;
    return "INVALID";
}

enum kinfer_dtype kinfer_dtype_from_name(const char *name)
{
    if (name == NULL)
        return KINFER_DTYPE_INVALID;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return dtypes[i].dtype;
    return KINFER_DTYPE_INVALID;
}

size_t kinfer_dtype_size(enum kinfer_dtype dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == dtype)
            return dtypes[i].size;
    return 0;
}

enum kinfer_err kinfer_tensor_init(struct kinfer_tensor *t, const char *name,
                                   enum kinfer_dtype dtype, int ndim,
                                   const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    size_t elemsize = kinfer_dtype_size(dtype);
    if (name == NULL || elemsize == 0 || ndim < 0 || ndim > KINFER_MAX_DIMS ||
        (ndim > 0 && shape == NULL))
        return KINFER_ERR_INVALID;

    /* A zero dimension makes the product 0 however large the others are,
     * so only a product of non-zero dimensions can overflow. */
    size_t count = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return KINFER_ERR_INVALID;
        if ((uint64_t)shape[i] > SIZE_MAX)
            overflow = 1;
        else if (shape[i] == 0)
            count = 0;
        else if (count > SIZE_MAX / (size_t)shape[i])
            overflow = 1;
        else
            count *= (size_t)shape[i];
    }
    if (count != 0 && (overflow || count > SIZE_MAX / elemsize))
        return KINFER_ERR_INVALID;

    size_t namelen = strlen(name);
    char *namecopy = malloc(namelen + 1);
    /* An empty tensor still gets a buffer, so data is never NULL and
     * memcpy(dst, t->data, 0) stays defined for callers. */
    void *data = calloc(count ? count : 1, elemsize);
    if (namecopy == NULL || data == NULL) {
        free(namecopy);
        free(data);
        return KINFER_ERR_NOMEM;
    }
    memcpy(namecopy, name, namelen + 1);

    t->name = namecopy;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->count = count;
    t->data = data;
    return KINFER_OK;
}

enum kinfer_err kinfer_tensor_set_bytes(struct kinfer_tensor *t, size_t i,
                                        const char *src, size_t len)
{
    if (t == NULL || t->dtype != KINFER_DTYPE_BYTES || t->data == NULL ||
        i >= t->count || (src == NULL && len > 0) || len == SIZE_MAX)
        return KINFER_ERR_INVALID;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return KINFER_ERR_NOMEM;
    if (len > 0)
        memcpy(copy, src, len);
    copy[len] = '\0';

    struct kinfer_bytes *elem = (struct kinfer_bytes *)t->data + i;
    free(elem->data);
    elem->data = copy;
    elem->len = len;
    return KINFER_OK;
}

void kinfer_tensor_clear(struct kinfer_tensor *t)
{
    if (t == NULL)
        return;
    if (t->dtype == KINFER_DTYPE_BYTES && t->data != NULL) {
        struct kinfer_bytes *elems = t->data;
        for (size_t i = 0; i < t->count; i++)
            free(elems[i].data);
    }
    free(t->data);
    free(t->name);
    memset(t, 0, sizeof *t);
}
