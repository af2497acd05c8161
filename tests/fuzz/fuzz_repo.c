/* Fuzz target: the model-repository reader (lib/repo.c) and, through it,
 * the config parsers of the built-in backends.  Each input becomes the
 * config.json of the one model of a scratch repository whose directory
 * also holds two small weights files (tests/fuzz/fixtures: an "mlp" and a
 * "topk" model), so a config can get as far as loading a real model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "kinfer/log.h"
#include "kinfer/model.h"
#include "kinfer/repo.h"

#ifndef KINFER_FUZZ_FIXTURES
#error "KINFER_FUZZ_FIXTURES must name tests/fuzz/fixtures"
#endif

static const char *const fixtures[] = {"model.safetensors",
                                       "embeddings.safetensors"};

/* Copy the fixture weights into the scratch model directory, once. */
static void setup(void)
{
    static int done;
    if (done)
        return;
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char src[1024], dst[256];
        snprintf(src, sizeof src, "%s/%s", KINFER_FUZZ_FIXTURES, fixtures[i]);
        FILE *f = fopen(src, "rb");
        FUZZ_CHECK(f != NULL, "cannot open fixture %s", src);
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        FUZZ_CHECK(n > 0 && feof(f) && !ferror(f), "cannot read %s", src);
        fclose(f);
        snprintf(dst, sizeof dst, "models/m/%s", fixtures[i]);
        free(fuzz_write_file(dst, buf, n));
    }
    done = 1;
}

/* 1 when a string (key or value) anywhere in v holds a '/': backends take
 * file names from the config, and the fuzzer must not open files outside
 * the scratch repository (a FIFO there would hang it). */
static int names_a_path(const json_t *v)
{
    const char *key;
    json_t *item;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return memchr(json_string_value(v), '/', json_string_length(v)) != NULL;
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(v); i++)
            if (names_a_path(json_array_get(v, i)))
                return 1;
        return 0;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, key, item)
        {
            if (strchr(key, '/') != NULL || names_a_path(item))
                return 1;
        }
        return 0;
    default:
        return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kinfer_log_set_level(-1);
    setup();
    /* The repository reads config.json as a C string, as the check
     * below does. */
    char *text = fuzz_cstr(data, size);
    json_t *root = json_loads(text, JSON_DECODE_ANY, NULL);
    int skip = root != NULL && names_a_path(root);
    json_decref(root);
    free(text);
    if (skip)
        return 0;

    char *config = fuzz_write_file("models/m/config.json", data, size);
    free(config);
    size_t len = strlen(fuzz_tmpdir()) + sizeof "/models";
    char *dir = malloc(len);
    FUZZ_CHECK(dir != NULL, "out of memory");
    snprintf(dir, len, "%s/models", fuzz_tmpdir());

    struct kinfer_models *ms = NULL;
    FUZZ_CHECK(kinfer_models_new(&ms) == KINFER_OK, "kinfer_models_new");
    char err[1024];
    err[0] = '\0';
    enum kinfer_err rc = kinfer_repo_load(ms, dir, err, sizeof err);
    if (rc == KINFER_OK) {
        FUZZ_CHECK(kinfer_models_count(ms) == 1, "%zu models loaded",
                   kinfer_models_count(ms));
        const struct kinfer_model *m = kinfer_models_find(ms, "m");
        FUZZ_CHECK(m != NULL, "model 'm' not found");
        const struct kinfer_model_settings *s = kinfer_model_settings(m);
        FUZZ_CHECK(s->max_batch_size >= 1 && s->max_batch_size <= 4096 &&
                       s->preferred_batch_size >= 1 &&
                       s->preferred_batch_size <= s->max_batch_size,
                   "batch settings out of range");
        const char *version = kinfer_model_version(m);
        FUZZ_CHECK(version != NULL && version[0] != '\0', "no version");
        char desc[256];
        kinfer_model_describe(m, desc, sizeof desc);
    } else {
        size_t elen = strnlen(err, sizeof err);
        FUZZ_CHECK(elen > 0 && elen < sizeof err, "bad error message");
    }
    kinfer_models_free(ms);
    free(dir);
    return 0;
}
