/* The Open Inference Protocol conformance suite.  Usage: test_oip DATA_DIR
 * (tests/data/oip).  Every case DATA_DIR/cases/<case>/ runs through the
 * codec, the stage and the model repository DATA_DIR/models (built-in
 * backends only) the way the worker runs a Kafka message, and its answer is
 * compared with what the case expects.  The files of a case:
 *
 *   request        the message value; in the binary form, its JSON header
 *   request-binary optional: the bytes after the header, in hex (spaces and
 *                  newlines ignored); the header's length is then the size
 *                  of request, as the kinfer-inference-header-length header
 *                  would say
 *   result         the exact answer (for a binary answer, its JSON header), or
 *   error          text the answer's "error" must contain (the answer must
 *                  be an error result without outputs)
 *   result-binary  optional: the bytes expected after the answer's JSON
 *                  header, in hex
 *
 * A trailing newline of request, result and error is not part of them.
 * Adding a case needs no code; the README of DATA_DIR lists the rules each
 * case covers.
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "kinfer/host.h"
#include "kinfer/model.h"
#include "kinfer/repo.h"
#include "kinfer/stage.h"

#define DEFAULT_MODEL "scale"

static const char *data_dir;

/* One case's message and, once answered, its answer. */
struct job {
    char *value;
    size_t len, json_len; /* json_len < len: binary form */
    char *answer;
    size_t answer_len, answer_json_len;
    int answers;
};

/* Read dir/name whole into a NUL-terminated buffer; NULL when missing. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void chomp(char *s, size_t *len)
{
    while (*len > 0 && s[*len - 1] == '\n')
        s[--*len] = '\0';
}

/* Hex text (whitespace ignored) into bytes; the count in *n. */
static unsigned char *unhex(const char *text, size_t *n)
{
    size_t len = strlen(text);
    unsigned char *out = malloc(len / 2 + 1);
    assert_non_null(out);
    *n = 0;
    int half = -1;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0) {
            if (c != ' ' && c != '\n' && c != '\t')
                fail_msg("not hex: '%c'", c);
            continue;
        }
        if (half < 0) {
            half = v;
        } else {
            out[(*n)++] = (unsigned char)(half << 4 | v);
            half = -1;
        }
    }
    if (half >= 0)
        fail_msg("odd number of hex digits");
    return out;
}

static void set_answer(struct job *j, char *buf, size_t len, size_t json_len)
{
    j->answers++;
    free(j->answer);
    j->answer = buf;
    j->answer_len = len;
    j->answer_json_len = json_len;
}

static void answer_error(struct job *j, const char *model, const char *id,
                         const char *why)
{
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(kinfer_error_encode(id, model, why, &buf, &len),
                     KINFER_OK);
    set_answer(j, buf, len, len);
}

/* The worker's callbacks (worker_delivery.c), minus Kafka. */
static void on_rejected(void *job, const struct kinfer_request *req,
                        const char *why, void *arg)
{
    (void)arg;
    /* Not decoded: only a model_name read from it is named. */
    answer_error(job, req->model_name, req->id, why);
}

static void on_unknown(void *job, const struct kinfer_request *req,
                       const char *why, void *arg)
{
    (void)arg;
    answer_error(job, req->model_name ? req->model_name : DEFAULT_MODEL,
                 req->id, why);
}

static void on_answered(void *job, const struct kinfer_request *req,
                        const struct kinfer_model *m,
                        const struct kinfer_infer_item *item, void *arg)
{
    (void)arg;
    const char *model = req->model_name ? req->model_name : DEFAULT_MODEL;
    if (item->failed) {
        answer_error(job, model, req->id, item->error);
        return;
    }
    char *buf = NULL;
    size_t len = 0, json_len = 0;
    if (kinfer_result_encode_for(
            req, kinfer_model_name(m), kinfer_model_version(m), item->outputs,
            item->n_outputs, &buf, &len, &json_len) != KINFER_OK) {
        answer_error(job, model, req->id,
                     "the model's outputs cannot be encoded as JSON");
        return;
    }
    set_answer(job, buf, len, json_len);
}

static int on_json_length(void *job, size_t *json_len, char *why,
                          size_t whysize, void *arg)
{
    struct job *j = job;
    (void)arg;
    (void)why;
    (void)whysize;
    if (j->json_len == j->len)
        return 0;
    *json_len = j->json_len;
    return 1;
}

/* Hex of buf[0..n), for messages. */
static void hex(char *out, size_t size, const unsigned char *buf, size_t n)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && at + 4 < size; i++)
        at += (size_t)snprintf(out + at, size - at, "%s%02x", i ? " " : "",
                               buf[i]);
}

/* Run one case; 0 when it passed, else the reason is printed. */
static int run_case(struct kinfer_stage_config *cfg,
                    const struct kinfer_models *ms, const char *name)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/cases/%s", data_dir, name);
    size_t req_len = 0, bin_len = 0, tmp = 0;
    char *request = slurp(dir, "request", &req_len);
    if (request == NULL) {
        printf("case %s: no request file\n", name);
        return 1;
    }
    chomp(request, &req_len);
    struct job j = {0};
    char *bin_hex = slurp(dir, "request-binary", &tmp);
    unsigned char *bin = bin_hex ? unhex(bin_hex, &bin_len) : NULL;
    j.len = req_len + bin_len;
    j.json_len = req_len;
    j.value = malloc(j.len + 1);
    assert_non_null(j.value);
    memcpy(j.value, request, req_len);
    if (bin_len > 0)
        memcpy(j.value + req_len, bin, bin_len);

    static const struct kinfer_stage_ops ops = {
        .rejected = on_rejected,
        .unknown_model = on_unknown,
        .answered = on_answered,
        .json_length = on_json_length,
    };
    struct kinfer_stage *st = NULL;
    assert_int_equal(kinfer_stage_new(cfg, ms, &ops, &st), KINFER_OK);
    assert_int_equal(kinfer_stage_submit(st, &j, j.value, j.len), KINFER_OK);
    kinfer_stage_free(st); /* drains: the answer is in */

    int bad = 0;
    if (j.answers != 1) {
        printf("case %s: %d answers\n", name, j.answers);
        bad = 1;
        goto out;
    }
    size_t want_len = 0, err_len = 0, rb_len = 0;
    char *want = slurp(dir, "result", &want_len);
    char *error = slurp(dir, "error", &err_len);
    char *rb_hex = slurp(dir, "result-binary", &tmp);
    size_t json_len = j.answer_json_len;
    if ((want == NULL) == (error == NULL)) {
        printf("case %s: needs exactly one of result and error\n", name);
        bad = 1;
    } else if (want != NULL) {
        chomp(want, &want_len);
        if (json_len != want_len || memcmp(j.answer, want, want_len) != 0) {
            printf("case %s:\n  want %s\n  got  %.*s\n", name, want,
                   (int)json_len, j.answer);
            bad = 1;
        }
    } else {
        chomp(error, &err_len);
        json_error_t je;
        json_t *root = json_loadb(j.answer, json_len, 0, &je);
        json_t *e = root ? json_object_get(root, "error") : NULL;
        if (e == NULL || !json_is_string(e) ||
            json_object_get(root, "outputs") != NULL ||
            strstr(json_string_value(e), error) == NULL) {
            printf("case %s:\n  want an error containing: %s\n  got  %.*s\n",
                   name, error, (int)json_len, j.answer);
            bad = 1;
        }
        json_decref(root);
    }
    unsigned char *rb = rb_hex ? unhex(rb_hex, &rb_len) : NULL;
    size_t got_bin = j.answer_len - json_len;
    if (!bad && (got_bin != rb_len ||
                 (rb_len > 0 && memcmp(j.answer + json_len, rb, rb_len)))) {
        char w[512], g[512];
        hex(w, sizeof w, rb, rb_len);
        hex(g, sizeof g, (const unsigned char *)j.answer + json_len, got_bin);
        printf("case %s: binary part\n  want %s\n  got  %s\n", name, w, g);
        bad = 1;
    }
    free(want);
    free(error);
    free(rb_hex);
    free(rb);
out:
    free(request);
    free(bin_hex);
    free(bin);
    free(j.value);
    free(j.answer);
    return bad;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_cases(void **state)
{
    (void)state;
    struct kinfer_models *ms = NULL;
    char err[1024];
    char path[1024];
    assert_int_equal(kinfer_models_new(&ms), KINFER_OK);
    snprintf(path, sizeof path, "%s/models", data_dir);
    if (kinfer_repo_load(ms, path, err, sizeof err) != KINFER_OK)
        fail_msg("loading %s: %s", path, err);
    struct kinfer_stage_config cfg = {
        .threads = 1, .capacity = 4, .default_model = DEFAULT_MODEL};

    snprintf(path, sizeof path, "%s/cases", data_dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        names = realloc(names, (n + 1) * sizeof *names);
        assert_non_null(names);
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        failed += (size_t)run_case(&cfg, ms, names[i]);
        free(names[i]);
    }
    free(names);
    kinfer_models_free(ms);
    printf("%zu cases, %zu failed\n", n, failed);
    assert_true(n >= 30);
    assert_int_equal(failed, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR (tests/data/oip)\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
