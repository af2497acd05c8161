/* Micro-benchmark of the request codec (lib/codec_*.c): decode and encode
 * time per request for the sizes tests/bench/e2e.sh sends (the tiny
 * `scale` request, 256 floats, a 768-float result) and the cost of one
 * number as text.  Usage: kinfer-bench-codec [--seconds S]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "kinfer/host.h"
#include "kinfer/request.h"
#include "kinfer/tensor.h"

/* Each figure is the best of this many timed rounds: the least disturbed
 * (caches, frequency) by the other programs sharing the machine. */
#define ROUNDS 5

static double budget = 0.2; /* seconds per round */

/* This thread's CPU time, not the wall clock: the machine is shared, and
 * time spent descheduled is not the codec's. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A model-like value: mostly in (-4, 4), no short decimal form. */
static double model_value(void)
{
    return ((double)(next_rand() >> 11) / 9007199254740992.0 - 0.5) * 8.0;
}

/* What kinfer-produce --generate sends: an id, a factor and dim values
 * written with %.17g.  Caller frees. */
static char *make_request(size_t dim, size_t *len)
{
    size_t cap = 256 + dim * 32;
    char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    int n = snprintf(buf, cap,
                     "{\"id\":\"bench-00000001\",\"model_name\":\"scale\","
                     "\"parameters\":{\"factor\":2},\"inputs\":[{\"name\":"
                     "\"x\",\"datatype\":\"FP32\",\"shape\":[%zu],\"data\":[",
                     dim);
    size_t pos = (size_t)n;
    for (size_t j = 0; j < dim; j++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%.17g", j ? "," : "",
                                model_value());
    pos += (size_t)snprintf(buf + pos, cap - pos, "]}]}");
    *len = pos;
    return buf;
}

/* Seconds per call of fn(arg), the best of ROUNDS rounds. */
static double time_per_call(void (*fn)(void *), void *arg)
{
    double best = INFINITY;
    for (int r = 0; r < ROUNDS; r++) {
        size_t calls = 0;
        double t0 = now(), t;
        do {
            for (int i = 0; i < 16; i++)
                fn(arg);
            calls += 16;
            t = now();
        } while (t - t0 < budget);
        best = fmin(best, (t - t0) / (double)calls);
    }
    return best;
}

struct dec_case {
    const char *text;
    size_t len;
    struct kinfer_limits lim;
};

static void run_decode(void *arg)
{
    struct dec_case *c = arg;
    struct kinfer_request req;
    char err[256];
    if (kinfer_request_decode(c->text, c->len, &c->lim, &req, err,
                              sizeof err) != KINFER_OK) {
        fprintf(stderr, "bench-codec: decode failed: %s\n", err);
        exit(1);
    }
    kinfer_request_clear(&req);
}

static void run_encode(void *arg)
{
    const struct kinfer_tensor *t = arg;
    char *out;
    size_t len;
    if (kinfer_result_encode("bench-00000001", "scale", "1", t, 1, &out,
                             &len) != KINFER_OK) {
        fprintf(stderr, "bench-codec: encode failed\n");
        exit(1);
    }
    free(out);
}

/* 1024 values of one type as text, for the per-number cost. */
struct fmt_case {
    double v[1024];
    int is_float;
};

static void run_fmt(void *arg)
{
    struct fmt_case *c = arg;
    char buf[40];
    for (size_t i = 0; i < 1024; i++) {
        kinfer_codec_fmt_real(buf, sizeof buf, c->v[i], c->is_float);
        /* Keep the call from being optimised away. */
        __asm__ volatile("" : : "r"(buf) : "memory");
    }
}

static void bench_size(const char *label, size_t dim)
{
    struct dec_case d = {.lim = {0}};
    char *text = make_request(dim, &d.len);
    d.text = text;
    double dec = time_per_call(run_decode, &d);

    struct kinfer_tensor t;
    int64_t shape[1] = {(int64_t)dim};
    if (kinfer_tensor_init(&t, "y", KINFER_DTYPE_FP32, 1, shape) != KINFER_OK)
        abort();
    for (size_t j = 0; j < dim; j++)
        ((float *)t.data)[j] = (float)model_value();
    double enc = time_per_call(run_encode, &t);
    kinfer_tensor_clear(&t);
    free(text);
    printf("%-6s %6zu %9zu %11.3f %11.3f %14.1f\n", label, dim, d.len,
           dec * 1e6, enc * 1e6, enc * 1e9 / (double)dim);
}

static void bench_fmt(const char *label, int is_float, int random_bits)
{
    static struct fmt_case c;
    c.is_float = is_float;
    for (size_t i = 0; i < 1024; i++) {
        double v = model_value();
        if (random_bits) {
            uint64_t bits = next_rand();
            if (is_float) {
                uint32_t b32 = (uint32_t)(bits >> 32);
                float f;
                memcpy(&f, &b32, sizeof f);
                v = f;
            } else {
                memcpy(&v, &bits, sizeof v);
            }
            if (!isfinite(v))
                v = 1.5;
        }
        c.v[i] = is_float ? (float)v : v;
    }
    double per = time_per_call(run_fmt, &c) / 1024;
    printf("  %-34s %8.1f ns\n", label, per * 1e9);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            budget = strtod(argv[++i], NULL);
        } else {
            printf("usage: %s [--seconds S]\n"
                   "Decode and encode time per request for the sizes of "
                   "tests/bench/e2e.sh,\nand the cost of one number as "
                   "text; each figure is the best of %d rounds\nof S "
                   "seconds of CPU time (default 0.2).\n",
                   argv[0], ROUNDS);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (!(budget > 0))
        budget = 0.2;
    printf("size    floats  req-bytes   decode-us   encode-us  "
           "encode-ns/float\n");
    bench_size("tiny", 8);
    bench_size("256", 256);
    bench_size("768", 768);
    printf("number as text (kinfer_codec_fmt_real), per value:\n");
    bench_fmt("FP32 model-like values", 1, 0);
    bench_fmt("FP64 model-like values", 0, 0);
    bench_fmt("FP32 random bit patterns", 1, 1);
    bench_fmt("FP64 random bit patterns", 0, 1);
    return 0;
}
