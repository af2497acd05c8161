/* Micro-benchmark of the request codec (lib/codec_*.c): decode and encode
 * time per request for the sizes tests/bench/e2e.sh sends (the tiny
 * `scale` request, 256 floats, a 768-float result), the cost of one
 * number as text, and what the binary tensor form saves on a 224x224x3
 * UINT8 image request and a 768-float result.
 * Usage: kinfer-bench-codec [--seconds S]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

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

/* ------------------------------------------------------------------ */
/* JSON against the binary tensor form                                */

#define IMG_BYTES ((size_t)224 * 224 * 3)

struct bin_dec {
    const char *text;
    size_t len, json_len;
};

static void run_decode_bin(void *arg)
{
    struct bin_dec *c = arg;
    struct kinfer_request req;
    char err[256];
    if (kinfer_request_decode_binary(c->text, c->len, c->json_len, NULL, &req,
                                     err, sizeof err) != KINFER_OK) {
        fprintf(stderr, "bench-codec: decode failed: %s\n", err);
        exit(1);
    }
    if (req.inputs[0].count != IMG_BYTES)
        abort();
    kinfer_request_clear(&req);
}

/* The image request as JSON (json_len == len) or in the binary form. */
static char *make_image_request(const unsigned char *img, int binary,
                                size_t *len, size_t *json_len)
{
    size_t cap = 512 + IMG_BYTES * 4;
    char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    size_t pos = (size_t)snprintf(
        buf, cap,
        "{\"id\":\"bench-img\",\"model_name\":\"scale\",\"inputs\":[{"
        "\"name\":\"img\",\"datatype\":\"UINT8\",\"shape\":[1,224,224,3],");
    if (binary) {
        pos += (size_t)snprintf(buf + pos, cap - pos,
                                "\"parameters\":{\"binary_data_size\":%zu}}]}",
                                IMG_BYTES);
        *json_len = pos;
        memcpy(buf + pos, img, IMG_BYTES);
        pos += IMG_BYTES;
    } else {
        pos += (size_t)snprintf(buf + pos, cap - pos, "\"data\":[");
        for (size_t i = 0; i < IMG_BYTES; i++)
            pos += (size_t)snprintf(buf + pos, cap - pos, "%s%u", i ? "," : "",
                                    img[i]);
        pos += (size_t)snprintf(buf + pos, cap - pos, "]}]}");
        *json_len = pos;
    }
    *len = pos;
    return buf;
}

struct bin_enc {
    const struct kinfer_request *req;
    const struct kinfer_tensor *t;
    size_t len, json_len;
};

static void run_encode_for(void *arg)
{
    struct bin_enc *c = arg;
    char *out;
    if (kinfer_result_encode_for(c->req, "scale", "1", c->t, 1, &out, &c->len,
                                 &c->json_len) != KINFER_OK) {
        fprintf(stderr, "bench-codec: encode failed\n");
        exit(1);
    }
    free(out);
}

/* What a client does with the result: the 768 floats back out of it
 * (Jansson for the JSON form, a copy for the binary one). */
struct client_dec {
    char *text;
    size_t len, json_len;
    float v[768];
};

static void run_client_decode(void *arg)
{
    struct client_dec *c = arg;
    json_error_t je;
    json_t *root = json_loadb(c->text, c->json_len, 0, &je);
    json_t *out = json_array_get(json_object_get(root, "outputs"), 0);
    json_t *data = json_object_get(out, "data");
    if (data != NULL) {
        for (size_t i = 0; i < 768; i++)
            c->v[i] = (float)json_number_value(json_array_get(data, i));
    } else {
        if (c->len - c->json_len != sizeof c->v)
            abort();
        memcpy(c->v, c->text + c->json_len, sizeof c->v);
    }
    json_decref(root);
}

static void bench_binary(void)
{
    unsigned char *img = malloc(IMG_BYTES);
    if (img == NULL)
        abort();
    for (size_t i = 0; i < IMG_BYTES; i++)
        img[i] = (unsigned char)(next_rand() >> 56);
    printf("\nbinary tensor form against JSON (kinfer's side of the wire):\n");
    printf("%-34s %10s %10s %12s\n", "", "bytes", "json-hdr", "us");
    double us[2][2];
    size_t bytes[2][2];
    for (int binary = 0; binary < 2; binary++) {
        struct bin_dec d;
        char *text = make_image_request(img, binary, &d.len, &d.json_len);
        d.text = text;
        double t = time_per_call(run_decode_bin, &d);
        printf("%-34s %10zu %10zu %12.1f\n",
               binary ? "image request, binary: decode"
                      : "image request, JSON: decode",
               d.len, d.json_len, t * 1e6);
        us[0][binary] = t * 1e6;
        bytes[0][binary] = d.len;
        free(text);
    }
    struct kinfer_tensor t;
    int64_t shape[2] = {1, 768};
    if (kinfer_tensor_init(&t, "embedding", KINFER_DTYPE_FP32, 2, shape) !=
        KINFER_OK)
        abort();
    for (size_t j = 0; j < 768; j++)
        ((float *)t.data)[j] = (float)model_value();
    struct kinfer_param all = {
        .name = "binary_data_output", .kind = KINFER_PARAM_BOOL, .boolean = 1};
    struct kinfer_request plain = {.id = "bench-00000001"};
    struct kinfer_request bin = {
        .id = "bench-00000001", .params = &all, .n_params = 1};
    static struct client_dec cd;
    for (int binary = 0; binary < 2; binary++) {
        struct bin_enc e = {.req = binary ? &bin : &plain, .t = &t};
        double te = time_per_call(run_encode_for, &e);
        if (kinfer_result_encode_for(e.req, "scale", "1", &t, 1, &cd.text,
                                     &cd.len, &cd.json_len) != KINFER_OK)
            abort();
        double tc = time_per_call(run_client_decode, &cd);
        for (size_t j = 0; j < 768; j++) /* the client got them back */
            if (cd.v[j] != ((float *)t.data)[j])
                abort();
        free(cd.text);
        printf("%-34s %10zu %10zu %12.1f\n",
               binary ? "768-float result, binary: encode"
                      : "768-float result, JSON: encode",
               e.len, e.json_len, te * 1e6);
        printf("%-34s %10s %10s %12.1f\n",
               binary ? "  client reads it back (memcpy)"
                      : "  client reads it back (Jansson)",
               "", "", tc * 1e6);
        us[1][binary] = te * 1e6;
        bytes[1][binary] = e.len;
    }
    kinfer_tensor_clear(&t);
    free(img);
    printf("saved: image request %.1fx fewer bytes, decode %.0fx faster; "
           "result %.1fx fewer bytes, encode %.0fx faster\n",
           (double)bytes[0][0] / (double)bytes[0][1], us[0][0] / us[0][1],
           (double)bytes[1][0] / (double)bytes[1][1], us[1][0] / us[1][1]);
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
    bench_binary();
    return 0;
}
