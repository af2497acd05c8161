/* Fuzz target: option resolution (lib/options.c), mostly its config-file
 * parser.  An input is the config file; or, when it holds a line "%%",
 * the lines before it are extra command-line arguments (a line
 * "env:NAME=value" is an environment entry instead) and the rest is the
 * file.  The option table is a small copy of the worker's, one of each
 * type.  Results must respect the table, and a file holding a NUL byte or
 * a line over the length cap must be refused, never half read. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kinfer/log.h"
#include "kinfer/options.h"

#define LINE_CAP 4096 /* options.c's OPTS_LINE_MAX */
#define MAX_WORDS 16

static const struct kinfer_optdef defs[] = {
    {"brokers", "KINFER_BROKERS", KINFER_OPT_STRING, "127.0.0.1:9092", 0, 0,
     "LIST", "Kafka bootstrap servers", 0},
    {"threads", "KINFER_THREADS", KINFER_OPT_INT, "4", 1, 1024, "N",
     "Inference threads", 0},
    {"max-in-flight-bytes", "KINFER_MAX_IN_FLIGHT_BYTES", KINFER_OPT_INT,
     "67108864", 1024, (long long)1 << 40, "BYTES", "Bytes held at once", 0},
    {"drain-timeout", NULL, KINFER_OPT_INT, "30", 0, 3600, "SECONDS",
     "Shutdown bound", 0},
    {"verbose", "KINFER_VERBOSE", KINFER_OPT_FLAG, "false", 0, 0, NULL,
     "More logging", 0},
    {"plugin", "KINFER_PLUGINS", KINFER_OPT_LIST, NULL, 0, 0, "PATH",
     "Backend plugin", 0},
    {"model-repo", "KINFER_MODEL_REPO", KINFER_OPT_STRING, NULL, 0, 0, "DIR",
     "Model repository", 0},
    {"config", "KINFER_CONFIG", KINFER_OPT_STRING, NULL, 0, 0, "FILE",
     "Config file", 1},
};
#define NDEFS (sizeof defs / sizeof defs[0])

/* Split head[0..len) into lines: argv words and "env:" entries, each a
 * malloc'd C string.  Returns -1 (input skipped) when a word holds a '/',
 * which could point the parser at a file outside the scratch directory. */
static int split_head(const uint8_t *head, size_t len, char **argv, int *argc,
                      char **envp, int *envc)
{
    size_t start = 0;
    while (start < len) {
        const uint8_t *nl = memchr(head + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - head) : len;
        const char *w = (const char *)head + start;
        size_t wlen = end - start;
        start = end + 1;
        if (memchr(w, '/', wlen) != NULL)
            return -1;
        int is_env = wlen >= 4 && memcmp(w, "env:", 4) == 0;
        if (is_env ? *envc == MAX_WORDS : *argc == MAX_WORDS + 3)
            continue;
        char *s = fuzz_cstr((const uint8_t *)w + (is_env ? 4 : 0),
                            wlen - (is_env ? 4 : 0));
        if (is_env)
            envp[(*envc)++] = s;
        else
            argv[(*argc)++] = s;
    }
    return 0;
}

/* 1 when the file text is one a correct parser must refuse. */
static int must_refuse(const uint8_t *file, size_t len)
{
    if (memchr(file, '\0', len) != NULL)
        return 1;
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        if (file[i] == '\n')
            line = 0;
        else if (++line > LINE_CAP)
            return 1;
    }
    return 0;
}

static void check_result(const struct kinfer_opts *o)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const char *text = kinfer_opts_get(o, defs[i].name);
        const char *src = kinfer_opts_source(o, defs[i].name);
        FUZZ_CHECK(src != NULL, "--%s: no source", defs[i].name);
        FUZZ_CHECK((text == NULL) == (strcmp(src, "unset") == 0),
                   "--%s: value and source '%s' disagree", defs[i].name, src);
        if (text == NULL)
            continue;
        FUZZ_CHECK(text[0] != '\0', "--%s: empty value", defs[i].name);
        if (defs[i].type == KINFER_OPT_INT) {
            long long v = kinfer_opts_get_int(o, defs[i].name);
            FUZZ_CHECK(v >= defs[i].min && v <= defs[i].max,
                       "--%s: %lld out of range", defs[i].name, v);
            FUZZ_CHECK(strtoll(text, NULL, 10) == v, "--%s: '%s' read as %lld",
                       defs[i].name, text, v);
        } else if (defs[i].type == KINFER_OPT_FLAG) {
            int v = kinfer_opts_get_flag(o, defs[i].name);
            FUZZ_CHECK(strcmp(text, v ? "true" : "false") == 0,
                       "--%s: '%s' read as %d", defs[i].name, text, v);
        }
    }
    for (size_t i = 0; i < kinfer_opts_kafka_count(o); i++) {
        const char *name, *value;
        kinfer_opts_kafka_at(o, i, &name, &value);
        FUZZ_CHECK(name[0] != '\0' && value[0] != '\0',
                   "empty kafka property %zu", i);
    }
}

static void free_words(char **words, int from, int to)
{
    for (int i = from; i < to; i++)
        free(words[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char prog[] = "fuzz_options", flag[] = "--config";
    kinfer_log_set_level(-1);
    size_t file_start = 0;
    char *argv[MAX_WORDS + 4] = {prog, flag, NULL};
    char *envp[MAX_WORDS + 1] = {0};
    int argc = 3, envc = 0;

    /* "%%" on a line of its own ends the head. */
    for (size_t i = 0; i + 2 <= size; i++) {
        if ((i == 0 || data[i - 1] == '\n') && data[i] == '%' &&
            data[i + 1] == '%' && (i + 2 == size || data[i + 2] == '\n')) {
            int rc =
                split_head(data, i > 0 ? i - 1 : 0, argv, &argc, envp, &envc);
            if (rc != 0) {
                free_words(argv, 3, argc);
                free_words(envp, 0, envc);
                return 0;
            }
            file_start = i + 3 <= size ? i + 3 : size;
            break;
        }
    }
    const uint8_t *file = data + file_start;
    size_t file_len = size - file_start;

    char *path = fuzz_write_file("options.conf", file, file_len);
    argv[2] = path;
    struct kinfer_opts *o = NULL;
    char err[512];
    enum kinfer_err rc =
        kinfer_opts_parse(defs, NDEFS, argc, argv, envp, &o, err, sizeof err);
    if (rc == KINFER_OK) {
        /* Only when our file was the one read (a later --config wins). */
        const char *read = kinfer_opts_get(o, "config");
        int ours = !kinfer_opts_help_requested(o) &&
                   !kinfer_opts_version_requested(o) && read != NULL &&
                   strcmp(read, path) == 0;
        FUZZ_CHECK(!ours || !must_refuse(file, file_len),
                   "a file with a NUL byte or an over-long line was accepted");
        check_result(o);
        kinfer_opts_free(o);
    } else {
        FUZZ_CHECK(rc == KINFER_ERR_CONFIG, "parse returned %s",
                   kinfer_strerror(rc));
        size_t elen = strnlen(err, sizeof err);
        FUZZ_CHECK(elen > 0 && elen < sizeof err, "bad error message");
    }
    free(path);
    free_words(argv, 3, argc);
    free_words(envp, 0, envc);
    return 0;
}
