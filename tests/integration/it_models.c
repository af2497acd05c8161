/* Integration test: one kinfer-worker serving the generated model
 * repository (mlp, mlp_acts, recsys, recsys_ties and the fastText "nlp"
 * plugin model) answers every case of ops/models' expected files through
 * Kafka as NumPy / the fastText CLI did; then batched and unbatched copies
 * of "mlp" answer a burst of the same requests alike.
 */
#include "harness.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_PARTITIONS 2
#define N_BURST 200 /* requests per model in the batching burst */
#define RESULT_TIMEOUT_MS 120000
#define STOP_TIMEOUT_MS 45000

/* Tolerances of tests/backends: FP32 within 1e-5 + 1e-4 * |want|; the
 * fastText CLI prints 6 significant digits, so its probabilities match
 * within 1e-5 absolute.  Integers and strings must be equal. */
#define TOL_ABS 1e-5
#define TOL_REL 1e-4

static const char *const files[] = {"mlp", "mlp_acts", "recsys", "recsys_ties",
                                    "nlp"};
#define N_FILES (sizeof files / sizeof files[0])

/* Set by main from the command line. */
static const char *gen_dir;   /* the generators' OUTDIR */
static const char *ft_plugin; /* kinfer_fasttext.so */

/* One request sent and what its result must be. */
struct tcase {
    char label[160]; /* "<file>: <case name>" for messages */
    char *body;      /* request JSON, as produced */
    size_t len;
    char *id;             /* the request's id */
    char *model;          /* its model_name */
    char *want_version;   /* model_version of a success result */
    json_t *want_outputs; /* NULL: an error case */
    char *want_error;     /* substring of the error message */
    double abs_tol, rel_tol;
    unsigned results;    /* results read for this case */
    json_t *got_outputs; /* outputs of the first result, or NULL */
    char problem[640];   /* first thing found wrong, or "" */
};

/* The cases of one worker run, keyed "<prefix>-<index>". */
struct run {
    char prefix[8];
    struct tcase *cases;
    size_t n, cap;
    size_t answered;   /* cases with at least one result */
    size_t duplicates; /* results beyond the first per case */
    size_t foreign;    /* messages with a key that is not ours */
    char foreign_what[256];
};

static void problem(struct tcase *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct tcase *c, const char *fmt, ...)
{
    if (c->problem[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->problem, sizeof c->problem, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

static struct tcase *run_add(struct run *r)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->cases = realloc(r->cases, r->cap * sizeof *r->cases);
        assert_non_null(r->cases);
    }
    struct tcase *c = &r->cases[r->n++];
    memset(c, 0, sizeof *c);
    c->abs_tol = TOL_ABS;
    c->rel_tol = TOL_REL;
    return c;
}

static void run_clear(struct run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct tcase *c = &r->cases[i];
        free(c->body);
        free(c->id);
        free(c->model);
        free(c->want_version);
        free(c->want_error);
        json_decref(c->want_outputs);
        json_decref(c->got_outputs);
    }
    free(r->cases);
    memset(r, 0, sizeof *r);
}

/* Fill the request side of c from req (serialised as given). */
static void case_set_request(struct tcase *c, const json_t *req)
{
    c->body = json_dumps(req, JSON_COMPACT);
    assert_non_null(c->body);
    c->len = strlen(c->body);
    const char *id = json_string_value(json_object_get(req, "id"));
    const char *model = json_string_value(json_object_get(req, "model_name"));
    assert_non_null(id);
    assert_non_null(model);
    c->id = xstrdup(id);
    c->model = xstrdup(model);
}

/* The version a model's config.json declares, as the worker spells it
 * (an integer in decimal; "1" when absent).  Caller frees. */
static char *config_version(const char *repo, const char *model)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/config.json", repo, model);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    if (cfg == NULL) {
        fprintf(stderr, "it: %s: %s\n", path, jerr.text);
        fail();
    }
    const json_t *v = json_object_get(cfg, "version");
    char buf[64];
    if (v == NULL)
        snprintf(buf, sizeof buf, "1");
    else if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
    else
        snprintf(buf, sizeof buf, "%s", json_string_value(v));
    json_decref(cfg);
    return xstrdup(buf);
}

/* gen_dir/expected/<name>.json: a non-empty array of cases. */
static json_t *load_expected(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/expected/%s.json", gen_dir, name);
    json_error_t jerr;
    json_t *cases = json_load_file(path, 0, &jerr);
    if (!json_is_array(cases) || json_array_size(cases) == 0) {
        fprintf(stderr,
                "it: %s: not a non-empty JSON array (%s); did the "
                "models fixture run?\n",
                path, jerr.text);
        fail();
    }
    return cases;
}

/* Add one case of an expected file to r. */
static void add_expected(struct run *r, const char *file, size_t i,
                         const json_t *e, const char *version)
{
    struct tcase *c = run_add(r);
    const json_t *req = json_object_get(e, "request");
    const char *name = json_string_value(json_object_get(e, "name"));
    assert_true(json_is_object(req));
    case_set_request(c, req);
    if (name != NULL)
        snprintf(c->label, sizeof c->label, "%s[%zu] %s", file, i, name);
    else
        snprintf(c->label, sizeof c->label, "%s[%zu] id %s", file, i, c->id);
    const json_t *outs = json_object_get(e, "outputs");
    const char *err = json_string_value(json_object_get(e, "error"));
    if (outs != NULL) {
        assert_true(json_is_array(outs));
        c->want_outputs = json_incref((json_t *)outs);
        c->want_version = xstrdup(version);
    } else {
        assert_non_null(err);
        c->want_error = xstrdup(err);
    }
    if (strcmp(file, "nlp") == 0) {
        c->abs_tol = TOL_ABS;
        c->rel_tol = 0;
    }
}

/* -------------------------------------------------------- comparing */

static const json_t *find_tensor(const json_t *outs, const char *name,
                                 size_t *count)
{
    const json_t *found = NULL;
    size_t i;
    json_t *t;
    *count = 0;
    json_array_foreach(outs, i, t)
    {
        const char *n = json_string_value(json_object_get(t, "name"));
        if (n != NULL && strcmp(n, name) == 0) {
            found = t;
            (*count)++;
        }
    }
    return found;
}

/* Element k of got against want for datatype dt; 0 when they match. */
static int element_match(const char *dt, const json_t *g, const json_t *w,
                         double abs_tol, double rel_tol)
{
    if (strcmp(dt, "FP32") == 0 || strcmp(dt, "FP64") == 0) {
        if (!json_is_number(g) || !json_is_number(w))
            return -1;
        double gv = json_number_value(g), wv = json_number_value(w);
        return fabs(gv - wv) <= abs_tol + rel_tol * fabs(wv) ? 0 : -1;
    }
    if (strcmp(dt, "BYTES") == 0) {
        if (!json_is_string(g) || !json_is_string(w))
            return -1;
        size_t len = json_string_length(w);
        return json_string_length(g) == len &&
                       memcmp(json_string_value(g), json_string_value(w),
                              len) == 0
                   ? 0
                   : -1;
    }
    if (strcmp(dt, "BOOL") == 0)
        return json_is_boolean(g) && json_equal(g, w) ? 0 : -1;
    /* INT8 .. UINT64: exact. */
    return json_is_integer(g) && json_is_integer(w) &&
                   json_integer_value(g) == json_integer_value(w)
               ? 0
               : -1;
}

/* Compare an outputs array with the wanted one: the same tensor names
 * (each once), datatypes, shapes and data within the tolerance.  Returns
 * 0, or -1 with the first difference in why. */
static int outputs_match(const json_t *got, const json_t *want, double abs_tol,
                         double rel_tol, char *why, size_t size)
{
    if (!json_is_array(got)) {
        snprintf(why, size, "\"outputs\" is not an array");
        return -1;
    }
    if (json_array_size(got) != json_array_size(want)) {
        snprintf(why, size, "%zu outputs, expected %zu", json_array_size(got),
                 json_array_size(want));
        return -1;
    }
    size_t i;
    json_t *w;
    json_array_foreach(want, i, w)
    {
        const char *name = json_string_value(json_object_get(w, "name"));
        const char *wdt = json_string_value(json_object_get(w, "datatype"));
        size_t count;
        const json_t *g = find_tensor(got, name, &count);
        if (count != 1) {
            snprintf(why, size, "output \"%s\" appears %zu times", name, count);
            return -1;
        }
        const char *gdt = json_string_value(json_object_get(g, "datatype"));
        if (gdt == NULL || strcmp(gdt, wdt) != 0) {
            snprintf(why, size, "output \"%s\": datatype %s, expected %s", name,
                     gdt ? gdt : "(none)", wdt);
            return -1;
        }
        const json_t *gs = json_object_get(g, "shape");
        const json_t *ws = json_object_get(w, "shape");
        if (!json_equal(gs, ws)) {
            char *a = json_dumps(gs, JSON_COMPACT | JSON_ENCODE_ANY);
            char *b = json_dumps(ws, JSON_COMPACT);
            snprintf(why, size, "output \"%s\": shape %s, expected %s", name,
                     a ? a : "(none)", b ? b : "?");
            free(a);
            free(b);
            return -1;
        }
        const json_t *gd = json_object_get(g, "data");
        const json_t *wd = json_object_get(w, "data");
        if (!json_is_array(gd) || json_array_size(gd) != json_array_size(wd)) {
            snprintf(why, size,
                     "output \"%s\": %zu data values, expected "
                     "%zu",
                     name, json_array_size(gd), json_array_size(wd));
            return -1;
        }
        for (size_t k = 0; k < json_array_size(wd); k++) {
            const json_t *ge = json_array_get(gd, k);
            const json_t *we = json_array_get(wd, k);
            if (element_match(wdt, ge, we, abs_tol, rel_tol) == 0)
                continue;
            char *a = json_dumps(ge, JSON_ENCODE_ANY);
            char *b = json_dumps(we, JSON_ENCODE_ANY);
            snprintf(why, size,
                     "output \"%s\" (%s) element %zu: got %s, "
                     "expected %s",
                     name, wdt, k, a ? a : "?", b ? b : "?");
            free(a);
            free(b);
            return -1;
        }
    }
    return 0;
}

/* Check one result against its case. */
static void check_result(struct tcase *c, const json_t *res, const char *raw)
{
    if (!json_is_object(res)) {
        problem(c, "result is not a JSON object: %.200s", raw);
        return;
    }
    const char *id = json_string_value(json_object_get(res, "id"));
    if (id == NULL || strcmp(id, c->id) != 0)
        problem(c, "result id is %s, expected %s", id ? id : "(none)", c->id);
    const char *err = json_string_value(json_object_get(res, "error"));
    const json_t *outs = json_object_get(res, "outputs");
    if (c->want_outputs == NULL) {
        if (err == NULL)
            problem(c, "expected an error containing '%s', got %.300s",
                    c->want_error, raw);
        else if (strstr(err, c->want_error) == NULL)
            problem(c, "error '%s' does not contain '%s'", err, c->want_error);
        if (outs != NULL)
            problem(c, "error result carries outputs: %.200s", raw);
        return;
    }
    if (err != NULL) {
        problem(c, "unexpected error result: %s", err);
        return;
    }
    const char *model = json_string_value(json_object_get(res, "model_name"));
    const char *version =
        json_string_value(json_object_get(res, "model_version"));
    if (model == NULL || strcmp(model, c->model) != 0)
        problem(c, "model_name is %s, expected %s", model ? model : "(none)",
                c->model);
    if (version == NULL || strcmp(version, c->want_version) != 0)
        problem(c, "model_version is %s, expected %s (from config.json)",
                version ? version : "(none)", c->want_version);
    char why[400];
    if (outputs_match(outs, c->want_outputs, c->abs_tol, c->rel_tol, why,
                      sizeof why) != 0)
        problem(c, "%s", why);
    if (c->got_outputs == NULL && json_is_array(outs))
        c->got_outputs = json_incref((json_t *)outs);
}

/* Case index of a "<prefix>-<index>" key, or -1. */
static long case_of_key(const struct run *r, const struct it_msg *m)
{
    size_t plen = strlen(r->prefix);
    if (m->key == NULL || m->key_len <= plen + 1 ||
        memcmp(m->key, r->prefix, plen) != 0 || m->key[plen] != '-')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long i = strtoul(m->key + plen + 1, &end, 10);
    if (errno != 0 || end != m->key + m->key_len || i >= r->n)
        return -1;
    return (long)i;
}

static void on_result(const struct it_msg *m, void *arg)
{
    struct run *r = arg;
    long i = case_of_key(r, m);
    if (i < 0) {
        if (r->foreign++ == 0)
            snprintf(r->foreign_what, sizeof r->foreign_what,
                     "key %.40s value %.160s", m->key ? m->key : "(null)",
                     m->value ? m->value : "(null)");
        return;
    }
    struct tcase *c = &r->cases[i];
    if (c->results++ == 0)
        r->answered++;
    else
        r->duplicates++;
    json_error_t jerr;
    json_t *res =
        m->value != NULL ? json_loadb(m->value, m->len, 0, &jerr) : NULL;
    check_result(c, res, m->value != NULL ? m->value : "(null)");
    json_decref(res);
}

static int all_answered(void *arg)
{
    struct run *r = arg;
    return r->answered == r->n;
}

/* Labels of the first cases without a result, for failure messages. */
static void list_missing(const struct run *r, char *buf, size_t size)
{
    size_t used = 0, listed = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n && listed < 12; i++) {
        if (r->cases[i].results != 0)
            continue;
        int w = snprintf(buf + used, size - used, "%s'%s'", listed ? ", " : "",
                         r->cases[i].label);
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
        listed++;
    }
}

/* The first case with a problem, or NULL; prints the first few. */
static const struct tcase *first_problem(const struct run *r, size_t *count)
{
    const struct tcase *first = NULL;
    *count = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct tcase *c = &r->cases[i];
        if (c->problem[0] == '\0')
            continue;
        if (first == NULL)
            first = c;
        if ((*count)++ < 10)
            fprintf(stderr, "it: wrong: %s (model %s, id %s): %s\n", c->label,
                    c->model, c->id, c->problem);
    }
    return first;
}

/* Produce every case of r on topic, key "<prefix>-<index>". */
static void produce_run(struct it_ctx *ctx, const char *topic,
                        const struct run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        char key[64];
        int klen = snprintf(key, sizeof key, "%s-%zu", r->prefix, i);
        IT_REQUIRE(ctx,
                   it_produce(ctx, topic, RD_KAFKA_PARTITION_UA, key,
                              (size_t)klen, r->cases[i].body, r->cases[i].len,
                              NULL, NULL) == 0,
                   "produce %s", r->cases[i].label);
    }
    IT_REQUIRE(ctx, it_produce_flush(ctx, 60000) == 0,
               "deliver %zu requests to %s", r->n, topic);
}

/* Count the worker log's "model <name>: N requests in B batches" lines
 * (written at shutdown) and return how many there were; the last one's
 * numbers go to *items and *batches. */
static int batch_counts(const char *log, const char *model, size_t *items,
                        size_t *batches)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return -1;
    char needle[128], line[2048];
    snprintf(needle, sizeof needle, "model %s: ", model);
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *at = strstr(line, needle);
        if (at == NULL)
            continue;
        unsigned long long i = 0, b = 0;
        if (sscanf(at + strlen(needle), "%llu requests in %llu batches", &i,
                   &b) == 2) {
            *items = (size_t)i;
            *batches = (size_t)b;
            found++;
        }
    }
    fclose(f);
    return found;
}

/* Wait for every result, stop the worker with SIGTERM (exit 0), read the
 * rest and check that the group committed everything. */
static void finish_run(struct it_ctx *ctx, struct it_proc *w,
                       struct it_reader *rd, struct run *r, const char *in,
                       const char *group)
{
    char missing[1024];
    int rc = it_reader_wait(rd, all_answered, r, RESULT_TIMEOUT_MS,
                            "a result for every request");
    list_missing(r, missing, sizeof missing);
    IT_REQUIRE(ctx, rc == 0, "%zu of %zu requests unanswered: %s",
               r->n - r->answered, r->n, missing);

    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(w, STOP_TIMEOUT_MS, &status, NULL) == 0,
               "worker did not exit within %d ms of SIGTERM", STOP_TIMEOUT_MS);
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker ended with %s after SIGTERM",
               it_status_str(status, st, sizeof st));
    IT_REQUIRE(ctx, it_reader_catch_up(rd, 60000) == 0, "read results");

    size_t bad;
    const struct tcase *p = first_problem(r, &bad);
    IT_REQUIRE(ctx, p == NULL,
               "%zu wrong results; first: %s (model %s, "
               "id %s): %s",
               bad, p ? p->label : "", p ? p->model : "", p ? p->id : "",
               p ? p->problem : "");
    IT_REQUIRE(ctx, r->foreign == 0,
               "%zu unexpected messages on the output topic; first: %s",
               r->foreign, r->foreign_what);

    int64_t end[N_PARTITIONS], committed[N_PARTITIONS];
    IT_REQUIRE(ctx,
               it_offsets(ctx, in, group, N_PARTITIONS, end, committed) == 0,
               "offsets of %s", group);
    for (int q = 0; q < N_PARTITIONS; q++)
        IT_REQUIRE(ctx, committed[q] == end[q],
                   "partition %d: committed %lld, end offset %lld", q,
                   (long long)committed[q], (long long)end[q]);
}

/* Fresh input and output topics and a group name. */
static void make_topics(struct it_ctx *ctx, char *in, char *out, char *group,
                        size_t size)
{
    it_unique_name(ctx, "in", in, size);
    it_unique_name(ctx, "out", out, size);
    it_unique_name(ctx, "group", group, size);
    IT_REQUIRE(ctx, it_topic_create(ctx, in, N_PARTITIONS, NULL) == 0,
               "create %s", in);
    IT_REQUIRE(ctx, it_topic_create(ctx, out, N_PARTITIONS, NULL) == 0,
               "create %s", out);
}

/* ------------------------------------------------- every expected case */

static void test_expected_cases(void **state)
{
    struct it_ctx *ctx = *state;
    char repo[1024];
    snprintf(repo, sizeof repo, "%s/models", gen_dir);

    struct run r = {.prefix = "m"};
    size_t per_file[N_FILES];
    for (size_t f = 0; f < N_FILES; f++) {
        json_t *cases = load_expected(files[f]);
        char *version = config_version(repo, files[f]);
        size_t i;
        json_t *e;
        json_array_foreach(cases, i, e)
            add_expected(&r, files[f], i, e, version);
        per_file[f] = json_array_size(cases);
        free(version);
        json_decref(cases);
    }
    /* A model nobody serves: an error result that names it. */
    struct tcase *c = run_add(&r);
    json_t *req = json_pack("{s:s, s:s, s:[{s:s, s:s, s:[i], s:[f,f]}]}", "id",
                            "unknown-model-1", "model_name", "no_such_model",
                            "inputs", "name", "x", "datatype", "FP32", "shape",
                            2, "data", 1.0, 2.0);
    assert_non_null(req);
    case_set_request(c, req);
    json_decref(req);
    snprintf(c->label, sizeof c->label, "unknown model");
    c->want_error = xstrdup("no_such_model");

    char in[256], out[256], group[256];
    make_topics(ctx, in, out, group, sizeof in);
    produce_run(ctx, in, &r);
    struct it_reader *rd = it_reader_new(ctx, out, on_result, &r);
    IT_REQUIRE(ctx, rd != NULL, "reader of %s", out);

    const char *args[] = {
        "--group",   group, "--input-topic", in,   "--output-topic", out,
        "--threads", "2",   "--model-repo",  repo, "--plugin",       ft_plugin,
        NULL};
    int64_t start = it_now_ms();
    struct it_proc *w = it_worker_spawn(ctx, "repo", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    finish_run(ctx, w, rd, &r, in, group);

    size_t errors = 0;
    for (size_t i = 0; i < r.n; i++)
        errors += r.cases[i].want_outputs == NULL;
    printf("RESULT it_models cases=%zu (mlp=%zu mlp_acts=%zu recsys=%zu "
           "recsys_ties=%zu nlp=%zu unknown=1) error_cases=%zu "
           "duplicates=%zu seconds=%.1f\n",
           r.n, per_file[0], per_file[1], per_file[2], per_file[3], per_file[4],
           errors, r.duplicates, (it_now_ms() - start) / 1000.0);
    it_reader_free(rd);
    run_clear(&r);
}

/* ------------------------------------------- batched against unbatched */

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "it: copy %s -> %s: %s\n", from, to, strerror(errno));
        fail();
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(ferror(in), 0);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* repo/<name>: a copy of the generated mlp with config fields replaced by
 * those of patch (NULL: unchanged). */
static void copy_mlp(const char *repo, const char *name, json_t *patch)
{
    char src[1024], dst[1024], from[1100], to[1100];
    snprintf(src, sizeof src, "%s/models/mlp", gen_dir);
    snprintf(dst, sizeof dst, "%s/%s", repo, name);
    assert_true(mkdir(dst, 0755) == 0 || errno == EEXIST);
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    snprintf(to, sizeof to, "%s/model.safetensors", dst);
    copy_file(from, to);

    snprintf(from, sizeof from, "%s/config.json", src);
    snprintf(to, sizeof to, "%s/config.json", dst);
    json_error_t jerr;
    json_t *cfg = json_load_file(from, 0, &jerr);
    assert_non_null(cfg);
    if (patch != NULL)
        assert_int_equal(json_object_update(cfg, patch), 0);
    assert_int_equal(json_dump_file(cfg, to, JSON_INDENT(1)), 0);
    json_decref(cfg);
}

static void test_batching(void **state)
{
    struct it_ctx *ctx = *state;
    char repo[1024];
    snprintf(repo, sizeof repo, "%s/batching-repo-%ld", gen_dir,
             (long)getpid());
    assert_true(mkdir(repo, 0755) == 0 || errno == EEXIST);
    /* "mlp" keeps the generator's batching (max_batch_size 8, 1 ms);
     * "mlp_b1" is the same weights without batching, and a version of
     * its own so the result shows which copy answered. */
    copy_mlp(repo, "mlp", NULL);
    json_t *patch = json_pack("{s:i, s:i, s:i}", "max_batch_size", 1,
                              "max_queue_delay_us", 0, "version", 7);
    copy_mlp(repo, "mlp_b1", patch);
    json_decref(patch);
    char *v_batched = config_version(repo, "mlp");
    char *v_single = config_version(repo, "mlp_b1");

    /* Cases 0 .. N_BURST-1 go to "mlp", N_BURST .. 2*N_BURST-1 the same
     * requests to "mlp_b1", all queued before the worker starts so its
     * threads find a backlog and the batcher fills batches. */
    json_t *cases = load_expected("mlp");
    size_t ncases = json_array_size(cases);
    struct run r = {.prefix = "b"};
    for (int copy = 0; copy < 2; copy++) {
        for (size_t n = 0; n < N_BURST; n++) {
            const json_t *e = json_array_get(cases, n % ncases);
            json_t *req = json_deep_copy(json_object_get(e, "request"));
            char id[64];
            snprintf(id, sizeof id, "%s-%zu", copy ? "u" : "b", n);
            json_object_set_new(req, "id", json_string(id));
            json_object_set_new(req, "model_name",
                                json_string(copy ? "mlp_b1" : "mlp"));
            json_t *one = json_pack("{s:O, s:O*, s:O*, s:O*}", "request", req,
                                    "name", json_object_get(e, "name"),
                                    "outputs", json_object_get(e, "outputs"),
                                    "error", json_object_get(e, "error"));
            assert_non_null(one);
            add_expected(&r, "mlp", n % ncases, one,
                         copy ? v_single : v_batched);
            json_decref(one);
            json_decref(req);
        }
    }
    json_decref(cases);

    char in[256], out[256], group[256];
    make_topics(ctx, in, out, group, sizeof in);
    produce_run(ctx, in, &r);
    struct it_reader *rd = it_reader_new(ctx, out, on_result, &r);
    IT_REQUIRE(ctx, rd != NULL, "reader of %s", out);

    const char *args[] = {"--group",
                          group,
                          "--input-topic",
                          in,
                          "--output-topic",
                          out,
                          "--threads",
                          "2",
                          "--model-repo",
                          repo,
                          NULL};
    int64_t start = it_now_ms();
    struct it_proc *w = it_worker_spawn(ctx, "batching", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    finish_run(ctx, w, rd, &r, in, group);
    double seconds = (it_now_ms() - start) / 1000.0;

    /* Each batched answer against its unbatched twin. */
    size_t compared = 0, identical = 0;
    for (size_t n = 0; n < N_BURST; n++) {
        const struct tcase *b = &r.cases[n];
        const struct tcase *u = &r.cases[N_BURST + n];
        if (b->want_outputs == NULL)
            continue;
        IT_REQUIRE(ctx, b->got_outputs != NULL && u->got_outputs != NULL,
                   "no outputs kept for %s / %s", b->id, u->id);
        char why[400];
        IT_REQUIRE(ctx,
                   outputs_match(b->got_outputs, u->got_outputs, TOL_ABS,
                                 TOL_REL, why, sizeof why) == 0,
                   "batched %s and unbatched %s differ: %s", b->id, u->id, why);
        compared++;
        identical += json_equal(b->got_outputs, u->got_outputs);
    }
    printf("RESULT it_models_batching requests=%zu (mlp batched=%d, "
           "mlp_b1 unbatched=%d) pairs_compared=%zu bit_identical=%zu "
           "duplicates=%zu seconds=%.1f\n",
           r.n, N_BURST, N_BURST, compared, identical, r.duplicates, seconds);
    /* The worker logs each batching model's counts when it stops: the
     * burst must have formed real batches, and mlp_b1 none at all. */
    size_t items = 0, batches = 0;
    int lines = batch_counts(it_proc_log_path(w), "mlp", &items, &batches);
    IT_REQUIRE(ctx, lines == 1 && items == N_BURST && batches < items,
               "expected one 'model mlp: %d requests in B batches' line "
               "with B < %d; got %d line(s), %zu requests, %zu batches",
               N_BURST, N_BURST, lines, items, batches);
    size_t dummy_i, dummy_b;
    IT_REQUIRE(
        ctx,
        batch_counts(it_proc_log_path(w), "mlp_b1", &dummy_i, &dummy_b) == 0,
        "mlp_b1 (max_batch_size 1) must not go through a batcher");
    printf("RESULT it_models_batch_counts mlp_requests=%zu mlp_batches=%zu "
           "mean_batch=%.2f\n",
           items, batches, (double)items / (double)batches);
    it_reader_free(rd);
    run_clear(&r);
    free(v_batched);
    free(v_single);
}

/* The harness's part of the command line, for a context per test. */
static int h_argc;
static char **h_argv;

/* A context of its own per test, named by the prestate: the harness
 * treats any worker that exited unasked as a failure, so one test's
 * crashed worker must not fail the next; distinct names keep their topics
 * and logs apart. */
static int setup_ctx(void **state)
{
    *state = it_ctx_new(*state, h_argc, h_argv);
    return *state != NULL ? 0 : -1;
}

static int teardown_ctx(void **state)
{
    it_ctx_free(*state);
    return 0;
}

/* Take our own options out of argv and hand the rest to the harness:
 *   --gen DIR         the generators' OUTDIR (models/, expected/)
 *   --fasttext PATH   the kinfer_fasttext plugin */
int main(int argc, char **argv)
{
    h_argv = calloc((size_t)argc + 1, sizeof *h_argv);
    if (h_argv == NULL)
        return 1;
    h_argv[h_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gen") == 0 && i + 1 < argc)
            gen_dir = argv[++i];
        else if (strcmp(argv[i], "--fasttext") == 0 && i + 1 < argc)
            ft_plugin = argv[++i];
        else
            h_argv[h_argc++] = argv[i];
    }
    if (gen_dir == NULL || ft_plugin == NULL) {
        fprintf(stderr,
                "usage: %s --gen DIR --fasttext PATH "
                "<harness options>\n",
                argv[0]);
        free(h_argv);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_expected_cases, setup_ctx,
                                                 teardown_ctx, "models"),
        cmocka_unit_test_prestate_setup_teardown(
            test_batching, setup_ctx, teardown_ctx, "models-batching"),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(h_argv);
    return failed;
}
