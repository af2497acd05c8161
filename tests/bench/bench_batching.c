/* kinfer-bench-batching: throughput and latency of an "mlp" model served one
 * request per call versus with dynamic batching, under the same open-loop
 * load, in process (no Kafka) but through the worker's own inference stage
 * (lib/stage.c: pool, batcher, codec, kinfer_model_infer).
 *
 * The model (dense layers, FP32, deterministic weights) is written by this
 * program as a safetensors file in a temporary directory and removed at
 * exit, so the bench needs nothing but the build.  For each mode the
 * offered rate doubles from --start-rate until the mode saturates (achieved
 * below 95% of offered, or p99 over the budget), then bisects --refine
 * times between the last good and the first bad rate (a failed rate is
 * offered --retries more times first); the two modes take turns step by
 * step, so load from other processes falls on both alike.
 * Latency is completion time minus *scheduled* arrival time, so time spent
 * queued behind a slow request counts (no coordinated omission).
 *
 * With --model-repo the two modes serve models of a repository instead
 * (any backend, plugins loaded with --plugin): --single-model without
 * batching, --batched-model with it, both sent the requests of
 * --requests (one JSON request per line, without model_name).
 * tests/bench/backends.sh runs it so for each plugin backend. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kinfer/log.h"
#include "kinfer/model.h"
#include "kinfer/options.h"
#include "kinfer/host.h"
#include "kinfer/plugin.h"
#include "kinfer/repo.h"
#include "kinfer/request.h"
#include "kinfer/stage.h"

#define MAX_LAYERS 16
#define N_PAYLOADS 64 /* distinct requests, reused round robin */
#define OK_FRACTION 0.95
#define NS_PER_S 1000000000LL

/* ------------------------------------------------------------- helpers */

static void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "kinfer-bench-batching: out of memory\n");
        abort();
    }
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "kinfer-bench-batching: out of memory\n");
        abort();
    }
    return p;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* CPU time of the whole process: every thread, this one included. */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
    struct timespec ts = {(time_t)(t / NS_PER_S), (long)(t % NS_PER_S)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* A growable text buffer for JSON written with printf formats. */
struct sbuf {
    char *p;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void
sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = s->cap - s->len;
        int n = vsnprintf(s->p ? s->p + s->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            fprintf(stderr, "kinfer-bench-batching: bad format\n");
            abort();
        }
        if ((size_t)n < room) {
            s->len += (size_t)n;
            return;
        }
        s->cap = (s->cap + (size_t)n + 1) * 2;
        char *np = realloc(s->p, s->cap);
        if (np == NULL) {
            fprintf(stderr, "kinfer-bench-batching: out of memory\n");
            abort();
        }
        s->p = np;
    }
}

/* xorshift64*: the same weights and inputs on every run and machine. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Uniform in [-1, 1). */
static float rng_unit(uint64_t *s)
{
    return (float)((double)(rng_next(s) >> 11) / 4503599627370496.0 - 1.0);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* --------------------------------------------------------------- model */

struct model_spec {
    int sizes[MAX_LAYERS + 1]; /* features: input, then each layer's out */
    int n_layers;
};

/* "256,1024,1024,64" -> sizes.  Returns 0 on success. */
static int parse_layers(const char *text, struct model_spec *spec)
{
    const char *p = text;
    int n = 0;
    while (*p != '\0') {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 1 || v > 65536 || n > MAX_LAYERS ||
            (*end != ',' && *end != '\0'))
            return -1;
        spec->sizes[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
    }
    if (n < 2)
        return -1;
    spec->n_layers = n - 1;
    return 0;
}

static int write_all(FILE *f, const void *p, size_t len)
{
    return fwrite(p, 1, len, f) == len ? 0 : -1;
}

/* Little-endian FP32 bytes of v[0..n), whatever the host order. */
static int write_floats(FILE *f, const float *v, size_t n)
{
    unsigned char buf[4096];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        for (int k = 0; k < 4; k++)
            buf[used++] = (unsigned char)(u >> (8 * k));
        if (used == sizeof buf) {
            if (write_all(f, buf, used) != 0)
                return -1;
            used = 0;
        }
    }
    return write_all(f, buf, used);
}

/* Write dir/model.safetensors: layer i holds fc<i>.weight [out, in]
 * (uniform, scaled by sqrt(3/in) so activations keep their size through
 * the layers) and fc<i>.bias [out].  Returns 0 on success. */
static int write_model(const char *dir, const struct model_spec *spec)
{
    struct sbuf hdr = {0};
    size_t offset = 0;
    sbuf_printf(&hdr, "{\"__metadata__\":{\"format\":\"pt\",\"generator\":"
                      "\"kinfer-bench-batching\"}");
    for (int i = 0; i < spec->n_layers; i++) {
        size_t in = (size_t)spec->sizes[i], out = (size_t)spec->sizes[i + 1];
        sbuf_printf(&hdr,
                    ",\"fc%d.weight\":{\"dtype\":\"F32\",\"shape\":[%zu,%zu],"
                    "\"data_offsets\":[%zu,%zu]}",
                    i + 1, out, in, offset, offset + out * in * 4);
        offset += out * in * 4;
        sbuf_printf(&hdr,
                    ",\"fc%d.bias\":{\"dtype\":\"F32\",\"shape\":[%zu],"
                    "\"data_offsets\":[%zu,%zu]}",
                    i + 1, out, offset, offset + out * 4);
        offset += out * 4;
    }
    sbuf_printf(&hdr, "}");
    while ((8 + hdr.len) % 8 != 0)
        sbuf_printf(&hdr, " ");

    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    int rc = f == NULL ? -1 : 0;
    unsigned char len8[8];
    for (int k = 0; k < 8; k++)
        len8[k] = (unsigned char)((uint64_t)hdr.len >> (8 * k));
    if (rc == 0)
        rc = write_all(f, len8, 8);
    if (rc == 0)
        rc = write_all(f, hdr.p, hdr.len);
    uint64_t seed = 0x6b696e666572ULL; /* "kinfer" */
    for (int i = 0; rc == 0 && i < spec->n_layers; i++) {
        size_t in = (size_t)spec->sizes[i], out = (size_t)spec->sizes[i + 1];
        float *w = xmalloc(out * in * sizeof *w);
        float *b = xmalloc(out * sizeof *b);
        float scale = sqrtf(3.0f / (float)in);
        for (size_t k = 0; k < out * in; k++)
            w[k] = rng_unit(&seed) * scale;
        for (size_t k = 0; k < out; k++)
            b[k] = rng_unit(&seed) * 0.1f;
        rc = write_floats(f, w, out * in);
        if (rc == 0)
            rc = write_floats(f, b, out);
        free(w);
        free(b);
    }
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "kinfer-bench-batching: writing %s: %s\n", path,
                strerror(errno));
    free(hdr.p);
    return rc;
}

/* The mlp backend's config.json for the model write_model wrote: relu on
 * every hidden layer, softmax at the end.  Caller frees. */
static char *model_config(const struct model_spec *spec)
{
    struct sbuf s = {0};
    sbuf_printf(&s, "{\"backend\":\"mlp\",\"weights\":\"model.safetensors\","
                    "\"input\":\"x\",\"output\":\"y\",\"softmax\":true,"
                    "\"blas_threads\":1,\"layers\":[");
    for (int i = 0; i < spec->n_layers; i++)
        sbuf_printf(&s,
                    "%s{\"weight\":\"fc%d.weight\",\"bias\":\"fc%d.bias\","
                    "\"activation\":\"%s\"}",
                    i ? "," : "", i + 1, i + 1,
                    i + 1 < spec->n_layers ? "relu" : "none");
    sbuf_printf(&s, "]}");
    return s.p;
}

/* ----------------------------------------------------------- pipeline */

struct step;

/* One request of a step. */
struct job {
    struct step *step;
    size_t index;     /* into step->lat */
    size_t payload;   /* which of the mode's requests */
    int64_t sched_ns; /* when it was due to arrive */
};

/* One offered rate: jobs[0..n), each recording its latency. */
struct step {
    struct job *jobs;
    int64_t *lat; /* ns, by job index */
    size_t n;
    size_t done;     /* under mode->mu */
    int64_t last_ns; /* latest completion; under mode->mu */
};

/* One way of serving the model: its own registry (the model with or
 * without batching) and an inference stage, the worker's very code. */
struct mode {
    const char *label;
    const char *tag; /* short label for progress lines */
    const struct kinfer_models *models;
    const struct kinfer_model *model;
    struct kinfer_stage *stage;
    int codec;                  /* decode and encode JSON per request */
    char *payloads[N_PAYLOADS]; /* request JSON */
    size_t payload_len[N_PAYLOADS];
    struct kinfer_request prebuilt[N_PAYLOADS]; /* when !codec */

    pthread_mutex_t mu; /* step completion */
    pthread_cond_t cv;
    atomic_llong encode_ns; /* summed over a step (reset between steps) */
    atomic_size_t errors;
};

static void complete(struct mode *m, struct job *j)
{
    int64_t t = now_ns();
    struct step *s = j->step;
    s->lat[j->index] = t - j->sched_ns;
    /* Nothing of the step is touched after done reaches n: the generator
     * frees it then. */
    pthread_mutex_lock(&m->mu);
    if (t > s->last_ns)
        s->last_ns = t;
    if (++s->done == s->n)
        pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void fail_job(struct mode *m, struct job *j, const char *why)
{
    if (atomic_fetch_add(&m->errors, 1) == 0)
        fprintf(stderr, "kinfer-bench-batching: request failed: %s\n", why);
    complete(m, j);
}

static void on_rejected(void *job, const struct kinfer_request *req,
                        const char *why, void *arg)
{
    (void)req;
    fail_job(arg, job, why);
}

/* What the worker's answered callback does, less the producing: encode
 * the result as it would be sent, then call the request done. */
static void on_answered(void *job, const struct kinfer_request *req,
                        const struct kinfer_model *model,
                        const struct kinfer_infer_item *item, void *arg)
{
    struct mode *m = arg;
    if (item->failed) {
        fail_job(m, job, item->error);
        return;
    }
    if (m->codec) {
        int64_t t = now_ns();
        char *buf = NULL;
        size_t len = 0;
        if (kinfer_result_encode(req->id, kinfer_model_name(model),
                                 kinfer_model_version(model), item->outputs,
                                 item->n_outputs, &buf, &len) != KINFER_OK)
            atomic_fetch_add(&m->errors, 1);
        free(buf);
        atomic_fetch_add(&m->encode_ns, now_ns() - t);
    }
    complete(m, job);
}

/* ------------------------------------------------------------- load */

struct result {
    double offered, achieved; /* requests/s */
    double p50_ms, p99_ms, max_ms;
    double batch;                          /* mean requests per infer call */
    double decode_us, encode_us, infer_us; /* per request */
    double cpus; /* process CPU seconds per wall second */
    size_t n, errors;
    int ok;
    int retried; /* failed, and the same rate was offered again */
};

struct bench {
    size_t threads, max_in_flight;
    long step_ms, warmup_ms;
    double budget_ms;
};

/* Offer rate requests/s for duration_ms, open loop: request i is due at
 * t0 + i/rate whether or not earlier ones have finished. */
static struct result run_step(const struct bench *b, struct mode *m,
                              double rate, long duration_ms)
{
    struct step s = {0};
    s.n = (size_t)ceil(rate * (double)duration_ms / 1000.0);
    if (s.n < 1)
        s.n = 1;
    s.jobs = xcalloc(s.n, sizeof *s.jobs);
    s.lat = xcalloc(s.n, sizeof *s.lat);
    atomic_store(&m->encode_ns, 0);
    atomic_store(&m->errors, 0);
    struct kinfer_stage_stats st0, st1;
    kinfer_stage_get_stats(m->stage, &st0);

    int64_t cpu0 = cpu_ns();
    double period = (double)NS_PER_S / rate;
    int64_t t0 = now_ns() + 1000000; /* 1 ms to get going */
    for (size_t i = 0; i < s.n; i++) {
        struct job *j = &s.jobs[i];
        j->step = &s;
        j->index = i;
        j->payload = i % N_PAYLOADS;
        j->sched_ns = t0 + (int64_t)llround((double)i * period);
        if (now_ns() < j->sched_ns)
            sleep_until_ns(j->sched_ns);
        /* A full queue blocks here, as it holds back the worker's poll
         * thread; the lateness still counts in the latency. */
        enum kinfer_err rc =
            m->codec ? kinfer_stage_submit(m->stage, j, m->payloads[j->payload],
                                           m->payload_len[j->payload])
                     : kinfer_stage_submit_decoded(m->stage, j,
                                                   &m->prebuilt[j->payload]);
        if (rc != KINFER_OK) {
            fprintf(stderr, "kinfer-bench-batching: stage closed\n");
            abort();
        }
    }
    pthread_mutex_lock(&m->mu);
    while (s.done < s.n)
        pthread_cond_wait(&m->cv, &m->mu);
    pthread_mutex_unlock(&m->mu);
    int64_t cpu1 = cpu_ns();

    struct result r = {0};
    r.n = s.n;
    r.offered = rate;
    /* Request i occupies [t0 + i*period, t0 + (i+1)*period) of the offered
     * load, so a system without latency achieves exactly the rate. */
    int64_t span = s.last_ns - t0 + (int64_t)llround(period);
    r.achieved = span > 0 ? (double)s.n * NS_PER_S / (double)span : 0.0;
    qsort(s.lat, s.n, sizeof *s.lat, cmp_i64);
    /* Nearest rank: the smallest value with at least p% at or below. */
    size_t i50 = (size_t)ceil(0.50 * (double)s.n) - 1;
    size_t i99 = (size_t)ceil(0.99 * (double)s.n) - 1;
    r.p50_ms = (double)s.lat[i50] / 1e6;
    r.p99_ms = (double)s.lat[i99] / 1e6;
    r.max_ms = (double)s.lat[s.n - 1] / 1e6;
    kinfer_stage_get_stats(m->stage, &st1);
    unsigned long long runs = st1.runs - st0.runs;
    r.batch =
        runs ? (double)(st1.run_items - st0.run_items) / (double)runs : 0.0;
    r.decode_us = (double)(st1.decode_ns - st0.decode_ns) / 1e3 / (double)s.n;
    r.encode_us = (double)atomic_load(&m->encode_ns) / 1e3 / (double)s.n;
    r.cpus = span > 0 ? (double)(cpu1 - cpu0) / (double)span : 0.0;
    r.infer_us = (double)(st1.run_ns - st0.run_ns) / 1e3 / (double)s.n;
    r.errors = atomic_load(&m->errors);
    r.ok = r.errors == 0 && r.achieved >= OK_FRACTION * rate &&
           r.p99_ms <= b->budget_ms;
    free(s.jobs);
    free(s.lat);
    return r;
}

static void print_header(FILE *f)
{
    fprintf(f, "%8s %8s %7s %7s %7s %5s %5s %5s %6s %4s\n", "offered",
            "achieved", "p50 ms", "p99 ms", "max ms", "batch", "dec", "enc",
            "infer", "cpus");
}

static void print_row(FILE *f, const struct result *r)
{
    fprintf(f,
            "%8.0f %8.0f %7.2f %7.2f %7.2f %5.1f %5.0f %5.0f %6.0f %4.2f  "
            "%s\n",
            r->offered, r->achieved, r->p50_ms, r->p99_ms, r->max_ms, r->batch,
            r->decode_us, r->encode_us, r->infer_us, r->cpus,
            r->errors    ? "ERRORS"
            : r->ok      ? "ok"
            : r->retried ? "failed (retried)"
                         : "saturated");
    fflush(f);
}

#define MAX_ROWS 256 /* beyond it the last row is overwritten */

/* One mode's search for its highest sustained rate: doubling until a rate
 * fails, then refine bisection steps between the last good and the first
 * bad rate.  A failed rate is offered again up to retries times before it
 * counts as failed: on a shared machine one burst from another process can
 * blow a p99 that the mode meets otherwise.  Every attempt is shown. */
struct sweep {
    struct mode *m;
    double next;   /* rate to offer next; 0 when finished */
    double lo, hi; /* highest good, lowest bad rate so far (0: none) */
    int refine_left;
    int retries, tries_left;
    double best; /* highest achieved throughput of a good step */
    struct result rows[MAX_ROWS];
    size_t n_rows;
};

static void sweep_update(struct sweep *sw, const struct result *r,
                         double max_rate)
{
    struct result *row =
        &sw->rows[sw->n_rows < MAX_ROWS ? sw->n_rows++ : MAX_ROWS - 1];
    *row = *r;
    if (!r->ok && !r->errors && sw->tries_left > 0) {
        sw->tries_left--;
        row->retried = 1;
        return; /* next stays */
    }
    sw->tries_left = sw->retries;
    if (r->ok) {
        sw->lo = r->offered;
        if (r->achieved > sw->best)
            sw->best = r->achieved;
    } else {
        sw->hi = r->offered;
    }
    if (sw->hi == 0.0)
        sw->next = r->offered * 2 <= max_rate ? r->offered * 2 : 0.0;
    else if (sw->refine_left-- > 0)
        sw->next = sw->lo > 0.0 ? (sw->lo + sw->hi) / 2 : sw->hi / 2;
    else
        sw->next = 0.0;
}

/* Run the sweeps of every mode in turn, one step each per round, so that
 * load from other processes on a shared machine falls on all modes alike
 * rather than on whichever happened to run at that minute. */
static void sweep_all(const struct bench *b, struct sweep *sw, size_t n,
                      double max_rate)
{
    for (size_t i = 0; i < n; i++) /* fault in weights, warm caches */
        (void)run_step(b, sw[i].m, sw[i].next, b->warmup_ms);
    fprintf(stderr, "progress (rows as they finish; tables follow):\n");
    for (;;) {
        int busy = 0;
        for (size_t i = 0; i < n; i++) {
            if (sw[i].next <= 0.0)
                continue;
            busy = 1;
            struct result r = run_step(b, sw[i].m, sw[i].next, b->step_ms);
            fprintf(stderr, "%-8s ", sw[i].m->tag);
            sweep_update(&sw[i], &r, max_rate);
            print_row(stderr, &sw[i].rows[sw[i].n_rows - 1]);
        }
        if (!busy)
            break;
    }
    for (size_t i = 0; i < n; i++) {
        printf("\n== %s ==\n", sw[i].m->label);
        print_header(stdout);
        for (size_t k = 0; k < sw[i].n_rows; k++)
            print_row(stdout, &sw[i].rows[k]);
    }
}

/* ------------------------------------------------------------- setup */

static char *request_json(const char *model, size_t k, int n_in, uint64_t *seed)
{
    struct sbuf s = {0};
    sbuf_printf(&s,
                "{\"id\":\"bench-%zu\",\"model_name\":\"%s\",\"inputs\":"
                "[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,%d],"
                "\"data\":[",
                k, model, n_in);
    for (int i = 0; i < n_in; i++)
        sbuf_printf(&s, "%s%.9g", i ? "," : "", (double)rng_unit(seed));
    sbuf_printf(&s, "]}]}");
    return s.p;
}

/* lines[0..n_lines) are the requests to send (round robin), or NULL for
 * generated FP32 rows of n_in features. */
static int mode_init(struct mode *m, const char *label, const char *tag,
                     const struct kinfer_models *ms, const char *name,
                     int codec, int n_in, char *const *lines, size_t n_lines,
                     size_t threads, size_t max_in_flight)
{
    memset(m, 0, sizeof *m);
    m->label = label;
    m->tag = tag;
    m->models = ms;
    m->model = kinfer_models_find(ms, name);
    m->codec = codec;
    atomic_init(&m->encode_ns, 0);
    atomic_init(&m->errors, 0);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    uint64_t seed = 0x7265717565737473ULL; /* the same inputs per mode */
    for (size_t k = 0; k < N_PAYLOADS; k++) {
        if (lines != NULL) {
            m->payloads[k] = strdup(lines[k % n_lines]);
            if (m->payloads[k] == NULL)
                abort();
        } else {
            m->payloads[k] = request_json(name, k, n_in, &seed);
        }
        m->payload_len[k] = strlen(m->payloads[k]);
        char err[256];
        if (kinfer_request_decode(m->payloads[k], m->payload_len[k], NULL,
                                  &m->prebuilt[k], err,
                                  sizeof err) != KINFER_OK) {
            fprintf(stderr, "kinfer-bench-batching: bench request: %s\n", err);
            return -1;
        }
    }
    const struct kinfer_stage_config cfg = {
        .threads = threads,
        .capacity = max_in_flight + 64, /* as the worker sizes it */
        .default_model = name,
    };
    const struct kinfer_stage_ops ops = {
        .rejected = on_rejected,
        .unknown_model = on_rejected,
        .answered = on_answered,
        .arg = m,
    };
    if (kinfer_stage_new(&cfg, ms, &ops, &m->stage) != KINFER_OK) {
        fprintf(stderr, "kinfer-bench-batching: cannot start %zu threads\n",
                threads);
        return -1;
    }
    return 0;
}

static void mode_clear(struct mode *m)
{
    kinfer_stage_free(m->stage);
    for (size_t k = 0; k < N_PAYLOADS; k++) {
        free(m->payloads[k]);
        kinfer_request_clear(&m->prebuilt[k]);
    }
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
}

/* The non-empty lines of path (at most N_PAYLOADS), each a request.
 * Returns how many, 0 on error (printed). */
static size_t read_requests(const char *path, char **lines)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "kinfer-bench-batching: %s: %s\n", path,
                strerror(errno));
        return 0;
    }
    size_t n = 0, cap = 0;
    char *line = NULL;
    ssize_t len;
    while (n < N_PAYLOADS && (len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len > 0)
            lines[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (n == 0)
        fprintf(stderr, "kinfer-bench-batching: %s: no requests\n", path);
    return n;
}

/* Load the plugins of the ':'-separated list and the repository into ms;
 * 0 on success (errors printed). */
static int load_repo(struct kinfer_models *ms, struct kinfer_plugins *ps,
                     const char *plugin_list, const char *repo)
{
    char err[1024];
    char *list = plugin_list ? strdup(plugin_list) : NULL;
    char *save = NULL;
    enum kinfer_err rc = KINFER_OK;
    for (char *path = list ? strtok_r(list, ":", &save) : NULL;
         path != NULL && rc == KINFER_OK; path = strtok_r(NULL, ":", &save)) {
        const struct kinfer_backend *be = NULL;
        rc = kinfer_plugins_load(ps, path, &be, err, sizeof err);
        if (rc == KINFER_OK)
            rc = kinfer_models_add_backend(ms, be, err, sizeof err);
    }
    free(list);
    if (rc == KINFER_OK)
        rc = kinfer_repo_load(ms, repo, err, sizeof err);
    if (rc != KINFER_OK)
        fprintf(stderr, "kinfer-bench-batching: %s\n", err);
    return rc == KINFER_OK ? 0 : -1;
}

static void print_facts(int argc, char **argv)
{
    printf("command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\nnproc: %ld online (%ld configured)",
           sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF));
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            line[strcspn(line, "\n")] = '\0';
            printf(", cpu:%s", c != NULL ? c + 1 : line);
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    printf("\n");
    f = fopen("/proc/loadavg", "r");
    if (f != NULL && fgets(line, sizeof line, f) != NULL)
        printf("load average at start: %s", line);
    if (f != NULL)
        fclose(f);
    const char *obt = getenv("OPENBLAS_NUM_THREADS");
    printf("OPENBLAS_NUM_THREADS=%s (the model sets 1 thread per BLAS call "
           "either way)\n",
           obt != NULL ? obt : "(unset)");
#ifdef __OPTIMIZE__
    printf("build: optimised, %s\n", __VERSION__);
#else
    printf("build: NOT optimised (use -DCMAKE_BUILD_TYPE=Release), %s\n",
           __VERSION__);
#endif
}

static const struct kinfer_optdef opt_defs[] = {
    {"threads", NULL, KINFER_OPT_INT, "2", 1, 256, "N",
     "inference pool threads", 0},
    {"layers", NULL, KINFER_OPT_STRING, "256,1024,1024,64", 0, 0, "LIST",
     "features in, then out of each dense layer (relu; softmax at the end)", 0},
    {"max-batch-size", NULL, KINFER_OPT_INT, "32", 2, 4096, "N",
     "batched mode: max_batch_size", 0},
    {"preferred-batch-size", NULL, KINFER_OPT_INT, "0", 0, 4096, "N",
     "batched mode: preferred_batch_size (0: max)", 0},
    {"max-queue-delay-us", NULL, KINFER_OPT_INT, "2000", 0, 10000000, "US",
     "batched mode: max_queue_delay_us", 0},
    {"p99-budget-ms", NULL, KINFER_OPT_INT, "50", 1, 600000, "MS",
     "p99 latency a rate must meet to count as sustained", 0},
    {"start-rate", NULL, KINFER_OPT_INT, "500", 1, 10000000, "R",
     "first offered rate, requests/s (then doubled)", 0},
    {"max-rate", NULL, KINFER_OPT_INT, "1000000", 1, 100000000, "R",
     "stop doubling past this rate", 0},
    {"refine", NULL, KINFER_OPT_INT, "3", 0, 20, "N",
     "bisection steps after the doubling sweep", 0},
    {"retries", NULL, KINFER_OPT_INT, "1", 0, 10, "N",
     "offer a failed rate again up to N times before it counts as failed", 0},
    {"step-ms", NULL, KINFER_OPT_INT, "2000", 50, 600000, "MS",
     "how long each rate is offered", 0},
    {"warmup-ms", NULL, KINFER_OPT_INT, "300", 0, 600000, "MS",
     "unreported warm-up at the start rate before each mode", 0},
    {"max-in-flight", NULL, KINFER_OPT_INT, "1024", 1, 1000000, "N",
     "pool queue holds N + 64 jobs, as with the worker's --max-in-flight", 0},
    {"prebuilt", NULL, KINFER_OPT_FLAG, "false", 0, 0, NULL,
     "skip JSON decode/encode (requests built once): model cost only", 0},
    {"mode", NULL, KINFER_OPT_STRING, "both", 0, 0, "M",
     "both, single (batch size 1) or batched", 0},
    {"model-repo", NULL, KINFER_OPT_STRING, NULL, 0, 0, "DIR",
     "serve this repository's models instead of the generated mlp", 0},
    {"single-model", NULL, KINFER_OPT_STRING, NULL, 0, 0, "NAME",
     "with --model-repo: the model without batching", 0},
    {"batched-model", NULL, KINFER_OPT_STRING, NULL, 0, 0, "NAME",
     "with --model-repo: the model with dynamic batching", 0},
    {"requests", NULL, KINFER_OPT_STRING, NULL, 0, 0, "FILE",
     "with --model-repo: JSON requests, one per line, no model_name", 0},
    {"plugin", NULL, KINFER_OPT_LIST, NULL, 0, 0, "PATH",
     "with --model-repo: backend plugin to load; repeatable", 0},
};

#define N_OPTS (sizeof opt_defs / sizeof opt_defs[0])

int main(int argc, char **argv)
{
    char err[1024];
    struct kinfer_opts *o = NULL;
    if (kinfer_opts_parse(opt_defs, N_OPTS, argc, argv, NULL, &o, err,
                          sizeof err) != KINFER_OK) {
        fprintf(stderr, "kinfer-bench-batching: %s\n", err);
        return 2;
    }
    if (kinfer_opts_version_requested(o)) {
        printf("kinfer-bench-batching %s\n", KINFER_VERSION);
        kinfer_opts_free(o);
        return 0;
    }
    if (kinfer_opts_help_requested(o)) {
        kinfer_opts_print_help(
            opt_defs, N_OPTS, "kinfer-bench-batching [OPTIONS]",
            "Throughput and p50/p99 latency of an mlp model at batch size 1\n"
            "versus dynamic batching, under the same open-loop load, through\n"
            "kinfer's inference stage (no Kafka).  Columns:\n"
            "offered and achieved requests/s; latency from scheduled arrival\n"
            "to encoded result (p50, p99, max); batch: mean requests per\n"
            "infer call; dec, enc, infer: microseconds per request spent\n"
            "decoding the JSON request, encoding the result, and in\n"
            "kinfer_model_infer (wall time of a call / its requests); cpus:\n"
            "process CPU seconds per second (of nproc).  -X is not used.",
            stdout);
        kinfer_opts_free(o);
        return 0;
    }
    struct bench b = {
        .threads = (size_t)kinfer_opts_get_int(o, "threads"),
        .max_in_flight = (size_t)kinfer_opts_get_int(o, "max-in-flight"),
        .step_ms = (long)kinfer_opts_get_int(o, "step-ms"),
        .warmup_ms = (long)kinfer_opts_get_int(o, "warmup-ms"),
        .budget_ms = (double)kinfer_opts_get_int(o, "p99-budget-ms"),
    };
    const char *mode_name = kinfer_opts_get(o, "mode");
    int run_single = strcmp(mode_name, "batched") != 0;
    int run_batched = strcmp(mode_name, "single") != 0;
    struct model_spec spec = {0};
    if (kinfer_opts_kafka_count(o) > 0 ||
        parse_layers(kinfer_opts_get(o, "layers"), &spec) != 0 ||
        (strcmp(mode_name, "both") != 0 && strcmp(mode_name, "single") != 0 &&
         strcmp(mode_name, "batched") != 0)) {
        fprintf(stderr, "kinfer-bench-batching: bad --layers (e.g. "
                        "256,1024,64), --mode (both, single, batched) or a "
                        "-X property (none are used)\n");
        kinfer_opts_free(o);
        return 2;
    }

    const char *repo = kinfer_opts_get(o, "model-repo");
    const char *single_name = "bench_single", *batched_name = "bench_batched";
    if (repo != NULL) {
        single_name = kinfer_opts_get(o, "single-model");
        batched_name = kinfer_opts_get(o, "batched-model");
        if (single_name == NULL || batched_name == NULL ||
            kinfer_opts_get(o, "requests") == NULL) {
            fprintf(stderr, "kinfer-bench-batching: --model-repo needs "
                            "--single-model, --batched-model and "
                            "--requests\n");
            kinfer_opts_free(o);
            return 2;
        }
    }

    print_facts(argc, argv);
    size_t n_weights = 0;
    for (int i = 0; i < spec.n_layers; i++)
        n_weights += (size_t)spec.sizes[i + 1] * (size_t)(spec.sizes[i] + 1);
    if (repo == NULL) {
        printf("model: mlp");
        for (int i = 0; i <= spec.n_layers; i++)
            printf("%s%d", i ? " -> " : " ", spec.sizes[i]);
        printf(" (relu, softmax), %.1f MB FP32, %.2f MFLOP per request\n",
               (double)n_weights * 4 / 1e6, (double)n_weights * 2 / 1e6);
    }
    printf("load: open loop, constant inter-arrival, %ld ms per rate, "
           "%zu pool threads, %s, %s\n",
           b.step_ms, b.threads,
           repo ? "requests of --requests" : "one row per request",
           kinfer_opts_get_flag(o, "prebuilt")
               ? "requests prebuilt (no JSON)"
               : "JSON decoded and results encoded per request");
    printf("sustained: achieved >= %.0f%% of offered and p99 <= %.0f ms\n",
           OK_FRACTION * 100, b.budget_ms);
    fflush(stdout);

    char dir[] = "/tmp/kinfer-bench-XXXXXX";
    char *config = model_config(&spec);
    struct kinfer_models *ms = NULL;
    struct kinfer_plugins *ps = NULL;
    char *lines[N_PAYLOADS] = {0};
    size_t n_lines = 0;
    struct mode single, batched;
    int have_single = 0, have_batched = 0, rc = 1;
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "kinfer-bench-batching: mkdtemp: %s\n",
                strerror(errno));
        free(config);
        kinfer_opts_free(o);
        return 1;
    }
    if (kinfer_models_new(&ms) != KINFER_OK ||
        kinfer_plugins_new(&ps) != KINFER_OK)
        goto out;
    if (repo != NULL) {
        n_lines = read_requests(kinfer_opts_get(o, "requests"), lines);
        if (n_lines == 0 ||
            load_repo(ms, ps, kinfer_opts_get(o, "plugin"), repo) != 0)
            goto out;
        const struct kinfer_model *m1 = kinfer_models_find(ms, single_name);
        const struct kinfer_model *mb = kinfer_models_find(ms, batched_name);
        if (m1 == NULL || mb == NULL ||
            kinfer_model_settings(m1)->max_batch_size > 1 ||
            kinfer_model_settings(mb)->max_batch_size < 2) {
            fprintf(stderr,
                    "kinfer-bench-batching: %s must be a model of %s "
                    "without batching, %s one with max_batch_size > 1\n",
                    single_name, repo, batched_name);
            goto out;
        }
        char sig[1024];
        kinfer_model_describe(mb, sig, sizeof sig);
        printf("models: %s (batch size 1) and %s, of %s: %s\n", single_name,
               batched_name, repo, sig);
        printf("requests: %zu distinct, first: %.200s\n", n_lines, lines[0]);
        fflush(stdout);
    } else if (write_model(dir, &spec) != 0) {
        goto out;
    }
    struct kinfer_model_settings s1 = {.max_batch_size = 1};
    struct kinfer_model_settings sb = {
        .max_batch_size = (size_t)kinfer_opts_get_int(o, "max-batch-size"),
        .preferred_batch_size =
            (size_t)kinfer_opts_get_int(o, "preferred-batch-size"),
        .max_queue_delay_us =
            (long)kinfer_opts_get_int(o, "max-queue-delay-us"),
    };
    if (repo != NULL)
        sb = *kinfer_model_settings(kinfer_models_find(ms, batched_name));
    /* The backend logs its OpenBLAS build and threads per call. */
    if (repo == NULL &&
        (kinfer_models_load(ms, "bench_single", "mlp", &s1, dir, config, err,
                            sizeof err) != KINFER_OK ||
         kinfer_models_load(ms, "bench_batched", "mlp", &sb, dir, config, err,
                            sizeof err) != KINFER_OK)) {
        fprintf(stderr, "kinfer-bench-batching: %s\n", err);
        goto out;
    }
    kinfer_log_set_level(KINFER_LOG_WARN);

    int codec = !kinfer_opts_get_flag(o, "prebuilt");
    char label[160];
    snprintf(label, sizeof label,
             "dynamic batching: max_batch_size %zu, preferred %zu, "
             "max_queue_delay_us %ld",
             sb.max_batch_size,
             sb.preferred_batch_size ? sb.preferred_batch_size
                                     : sb.max_batch_size,
             sb.max_queue_delay_us);
    /* mode_init leaves a mode that mode_clear can undo, even on error. */
    have_single = 1;
    if (mode_init(&single, "batch size 1 (one request per call)", "single", ms,
                  single_name, codec, spec.sizes[0], repo ? lines : NULL,
                  n_lines, b.threads, b.max_in_flight) != 0)
        goto out;
    have_batched = 1;
    if (mode_init(&batched, label, "batched", ms, batched_name, codec,
                  spec.sizes[0], repo ? lines : NULL, n_lines, b.threads,
                  b.max_in_flight) != 0)
        goto out;

    double start = (double)kinfer_opts_get_int(o, "start-rate");
    double max_rate = (double)kinfer_opts_get_int(o, "max-rate");
    int refine = (int)kinfer_opts_get_int(o, "refine");
    int retries = (int)kinfer_opts_get_int(o, "retries");
    int64_t t_begin = now_ns();
    struct sweep sw[2];
    size_t n_sw = 0;
    struct sweep *sw1 = NULL, *swb = NULL;
    memset(sw, 0, sizeof sw);
    if (run_single) {
        sw1 = &sw[n_sw++];
        sw1->m = &single;
    }
    if (run_batched) {
        swb = &sw[n_sw++];
        swb->m = &batched;
    }
    for (size_t i = 0; i < n_sw; i++) {
        sw[i].next = start;
        sw[i].refine_left = refine;
        sw[i].retries = retries;
        sw[i].tries_left = retries;
    }
    sweep_all(&b, sw, n_sw, max_rate);
    double best1 = sw1 != NULL ? sw1->best : 0.0;
    double bestb = swb != NULL ? swb->best : 0.0;

    printf("\nsummary (p99 budget %.0f ms, %.0f s of load):\n", b.budget_ms,
           (double)(now_ns() - t_begin) / 1e9);
    if (run_single)
        printf("  batch size 1:     max sustained %8.0f req/s\n", best1);
    if (run_batched)
        printf("  dynamic batching: max sustained %8.0f req/s\n", bestb);
    if (run_single && run_batched) {
        /* The 3x target is the generated mlp's (docs/testing.md). */
        if (best1 > 0.0 && repo != NULL)
            printf("  ratio: %.2fx\n", bestb / best1);
        else if (best1 > 0.0)
            printf("  ratio: %.2fx (target >= 3x): %s\n", bestb / best1,
                   bestb >= 3.0 * best1 ? "MET" : "NOT MET");
        else
            printf("  ratio: undefined (batch size 1 sustained no rate)\n");
    }
    FILE *f = fopen("/proc/loadavg", "r");
    char line[256];
    if (f != NULL && fgets(line, sizeof line, f) != NULL)
        printf("load average at end: %s", line);
    if (f != NULL)
        fclose(f);
    rc = 0;

out:
    if (have_batched)
        mode_clear(&batched);
    if (have_single)
        mode_clear(&single);
    kinfer_models_free(ms);
    kinfer_plugins_free(ps); /* after the models its code built */
    for (size_t i = 0; i < n_lines; i++)
        free(lines[i]);
    char path[sizeof dir + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    free(config);
    kinfer_opts_free(o);
    return rc;
}
