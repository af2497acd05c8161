/* Fuzz target: the safetensors reader (lib/backends/safetensors.c).  Its
 * API takes a path, so each input is written to one scratch file and
 * opened.  An open file must describe itself consistently: names found
 * by lookup, counts matching shapes, byte sizes matching dtypes, and every
 * tensor's bytes readable.  The file is mapped, so ASan checks the index
 * and aligned copies but only the MMU checks reads of the mapping. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kinfer/log.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kinfer_log_set_level(-1);
    char *path = fuzz_write_file("input.safetensors", data, size);
    struct kinfer_st *st = NULL;
    char err[512];
    err[0] = '\0';
    enum kinfer_err rc = kinfer_st_open(path, &st, err, sizeof err);
    if (rc != KINFER_OK) {
        FUZZ_CHECK(rc == KINFER_ERR_INVALID || rc == KINFER_ERR_TOO_LARGE,
                   "open returned %s: %s", kinfer_strerror(rc), err);
        FUZZ_CHECK(st == NULL, "failed open wrote its handle");
        size_t len = strnlen(err, sizeof err);
        FUZZ_CHECK(len > 0 && len < sizeof err, "bad error message");
        free(path);
        return 0;
    }
    FUZZ_CHECK(strcmp(kinfer_st_path(st), path) == 0, "path differs");

    size_t n = kinfer_st_count(st);
    const char *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct kinfer_st_tensor *t = kinfer_st_at(st, i);
        FUZZ_CHECK(t != NULL && t->name != NULL, "tensor %zu missing", i);
        FUZZ_CHECK(prev == NULL || strcmp(prev, t->name) < 0,
                   "tensors not in strict name order at %zu", i);
        prev = t->name;
        FUZZ_CHECK(kinfer_st_find(st, t->name) == t, "'%s' not found", t->name);
        FUZZ_CHECK(t->ndim >= 0, "'%s': ndim %d", t->name, t->ndim);
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "'%s': negative dim", t->name);
            count *= (size_t)t->shape[d];
        }
        FUZZ_CHECK(count == t->count, "'%s': count %zu, shape says %zu",
                   t->name, t->count, count);
        size_t esize = kinfer_st_dtype_size(t->dtype);
        FUZZ_CHECK(esize > 0 && t->nbytes == count * esize,
                   "'%s': %zu bytes for %zu x %zu", t->name, t->nbytes, count,
                   esize);
        FUZZ_CHECK(t->nbytes <= size, "'%s': %zu bytes from a %zu-byte file",
                   t->name, t->nbytes, size);
        FUZZ_CHECK(t->nbytes == 0 || (uintptr_t)t->data % esize == 0,
                   "'%s': data not aligned to %zu", t->name, esize);
        FUZZ_CHECK(kinfer_st_dtype_name(t->dtype) != NULL, "no dtype name");
        fuzz_touch(t->data, t->nbytes);
        char shape[16];
        kinfer_st_shape_str(t->shape, t->ndim, shape, sizeof shape);
        FUZZ_CHECK(strnlen(shape, sizeof shape) < sizeof shape,
                   "shape text not terminated");
    }
    /* Metadata has no iterator: look up each tensor name (and a usual
     * key), which walks the whole list. */
    for (size_t i = 0; i < n; i++) {
        const char *v = kinfer_st_metadata(st, kinfer_st_at(st, i)->name);
        if (v != NULL)
            fuzz_touch(v, strlen(v));
    }
    const char *format = kinfer_st_metadata(st, "format");
    if (format != NULL)
        fuzz_touch(format, strlen(format));
    kinfer_st_close(st);
    free(path);
    return 0;
}
