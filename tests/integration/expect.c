/* Expected-answer runs for the model integration tests: read the cases of
 * a generator's OUTDIR/expected/<model>.json (format: ops/models/
 * gen_dense.py), produce them, read every result back through Kafka and
 * compare each with its case (FP32 within a tolerance, everything else
 * exactly).  Single-threaded, like the harness it builds on.
 */
#include "expect.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

static void problem(struct exp_case *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct exp_case *c, const char *fmt, ...)
{
    if (c->problem[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->problem, sizeof c->problem, fmt, ap);
    va_end(ap);
}

char *exp_xstrdup(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

struct exp_case *exp_run_add(struct exp_run *r)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->cases = realloc(r->cases, r->cap * sizeof *r->cases);
        assert_non_null(r->cases);
    }
    struct exp_case *c = &r->cases[r->n++];
    memset(c, 0, sizeof *c);
    c->abs_tol = TOL_ABS;
    c->rel_tol = TOL_REL;
    return c;
}

void exp_run_clear(struct exp_run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct exp_case *c = &r->cases[i];
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
void exp_case_set_request(struct exp_case *c, const json_t *req)
{
    c->body = json_dumps(req, JSON_COMPACT);
    assert_non_null(c->body);
    c->len = strlen(c->body);
    const char *id = json_string_value(json_object_get(req, "id"));
    const char *model = json_string_value(json_object_get(req, "model_name"));
    assert_non_null(id);
    assert_non_null(model);
    c->id = exp_xstrdup(id);
    c->model = exp_xstrdup(model);
}

/* The version a model's config.json declares, as the worker spells it
 * (an integer in decimal; "1" when absent).  Caller frees. */
char *exp_config_version(const char *repo, const char *model)
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
    return exp_xstrdup(buf);
}

json_t *exp_load(const char *gen_dir, const char *name)
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
void exp_add(struct exp_run *r, const char *file, size_t i, const json_t *e,
             const char *version)
{
    struct exp_case *c = exp_run_add(r);
    const json_t *req = json_object_get(e, "request");
    const char *name = json_string_value(json_object_get(e, "name"));
    assert_true(json_is_object(req));
    exp_case_set_request(c, req);
    if (name != NULL)
        snprintf(c->label, sizeof c->label, "%s[%zu] %s", file, i, name);
    else
        snprintf(c->label, sizeof c->label, "%s[%zu] id %s", file, i, c->id);
    const json_t *outs = json_object_get(e, "outputs");
    const char *err = json_string_value(json_object_get(e, "error"));
    if (outs != NULL) {
        assert_true(json_is_array(outs));
        c->want_outputs = json_incref((json_t *)outs);
        c->want_version = exp_xstrdup(version);
    } else {
        assert_non_null(err);
        c->want_error = exp_xstrdup(err);
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
int exp_outputs_match(const json_t *got, const json_t *want, double abs_tol,
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
static void check_result(struct exp_case *c, const json_t *res, const char *raw)
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
    if (exp_outputs_match(outs, c->want_outputs, c->abs_tol, c->rel_tol, why,
                          sizeof why) != 0)
        problem(c, "%s", why);
    if (c->got_outputs == NULL && json_is_array(outs))
        c->got_outputs = json_incref((json_t *)outs);
}

/* Case index of a "<prefix>-<index>" key, or -1. */
static long case_of_key(const struct exp_run *r, const struct it_msg *m)
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

void exp_on_result(const struct it_msg *m, void *arg)
{
    struct exp_run *r = arg;
    long i = case_of_key(r, m);
    if (i < 0) {
        if (r->foreign++ == 0)
            snprintf(r->foreign_what, sizeof r->foreign_what,
                     "key %.40s value %.160s", m->key ? m->key : "(null)",
                     m->value ? m->value : "(null)");
        return;
    }
    struct exp_case *c = &r->cases[i];
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

int exp_all_answered(void *arg)
{
    struct exp_run *r = arg;
    return r->answered == r->n;
}

/* Labels of the first cases without a result, for failure messages. */
static void list_missing(const struct exp_run *r, char *buf, size_t size)
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
static const struct exp_case *first_problem(const struct exp_run *r,
                                            size_t *count)
{
    const struct exp_case *first = NULL;
    *count = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct exp_case *c = &r->cases[i];
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
void exp_produce_run(struct it_ctx *ctx, const char *topic,
                     const struct exp_run *r)
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
int exp_batch_counts(const char *log, const char *model, size_t *items,
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
void exp_finish_run(struct it_ctx *ctx, struct it_proc *w, struct it_reader *rd,
                    struct exp_run *r, const char *in, const char *group)
{
    char missing[1024];
    int rc = it_reader_wait(rd, exp_all_answered, r, RESULT_TIMEOUT_MS,
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
    const struct exp_case *p = first_problem(r, &bad);
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
void exp_make_topics(struct it_ctx *ctx, char *in, char *out, char *group,
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
