/* kinfer-produce: send inference requests (JSON Lines or synthetic `scale`
 * requests) to the input topic, optionally wait for the workers' results,
 * check them, and print counts, throughput and latency percentiles.  This
 * file parses options and signals; run.c does the Kafka work.
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kinfer/log.h"
#include "kinfer/options.h"
#include "run.h"
#include "shared/util.h"

extern char **environ;

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* 1 MiB of request (the worker's default cap) plus room for requests just
 * over it, so the worker's "too large" path can be tested too. */
#define DEFAULT_MAX_LINE "1114112"

static const struct kinfer_optdef defs[] = {
    {"brokers", "KINFER_BROKERS", KINFER_OPT_STRING, "127.0.0.1:9092", 0, 0,
     "LIST", "Kafka bootstrap brokers, host:port,...", 0},
    {"topic", "KINFER_INPUT_TOPIC", KINFER_OPT_STRING, "kinfer.requests", 0, 0,
     "TOPIC", "topic the requests are sent to", 0},
    {"output-topic", "KINFER_OUTPUT_TOPIC", KINFER_OPT_STRING, "kinfer.results",
     0, 0, "TOPIC", "topic the results arrive on", 0},
    {"input", NULL, KINFER_OPT_STRING, NULL, 0, 0, "FILE",
     "JSON Lines requests, one per line; - is stdin (the default without "
     "--generate); sent byte for byte",
     0},
    {"key-field", NULL, KINFER_OPT_STRING, "id", 0, 0, "NAME",
     "request field used as the Kafka key; \"line-<n>\" when absent", 0},
    {"generate", NULL, KINFER_OPT_INT, NULL, 1, 1000000000000LL, "N",
     "send N synthetic requests to the scale model instead of --input", 0},
    {"dim", NULL, KINFER_OPT_INT, "8", 1, 1 << 20, "D",
     "elements per synthetic input", 0},
    {"factor", NULL, KINFER_OPT_STRING, "2", 0, 0, "F",
     "scale factor of the synthetic requests", 0},
    {"dtype", NULL, KINFER_OPT_STRING, "FP32", 0, 0, "TYPE",
     "datatype of the synthetic input: FP32 or FP64", 0},
    {"rate", NULL, KINFER_OPT_STRING, "0", 0, 0, "R",
     "requests per second; 0 = as fast as possible", 0},
    {"await", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "wait for the results, check them, report latency", 0},
    {"timeout", NULL, KINFER_OPT_INT, "60", 1, 7 * 86400, "S",
     "with --await: seconds to wait for results after sending", 0},
    {"header", NULL, KINFER_OPT_STRING, NULL, 0, 0, "NAME=VALUE",
     "add this Kafka header to every request", 0},
    {"max-line-bytes", NULL, KINFER_OPT_INT, DEFAULT_MAX_LINE, 1, 64LL << 20,
     "N", "longest accepted input line", 0},
    {"config", "KINFER_CONFIG", KINFER_OPT_STRING, NULL, 0, 0, "FILE",
     "config file of \"key = value\" lines", 1},
    {"quiet", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "no progress lines on stderr", 0},
    {"json", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "print the summary as one JSON object", 0},
};
#define NDEFS (sizeof defs / sizeof defs[0])

static const char intro[] =
    "Send inference requests to Kafka and, with --await, wait for their\n"
    "results: count errors, check synthetic results, measure latency.\n"
    "Exit status: 0 when every request was delivered (and, with --await,\n"
    "answered and right), 1 otherwise, 2 for bad options.";

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* No SA_RESTART: a read() of stdin must return so the send loop sees the
 * flag.  SA_RESETHAND: a second Ctrl-C ends the process at once. */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "kinfer-produce: %s\nTry 'kinfer-produce --help'.\n", msg);
    return EXIT_USAGE;
}

/* A finite number from the whole of text. */
static int parse_double(const char *text, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Different per run and per process, so two concurrent runs never share
 * keys. */
static void make_runid(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    z ^= (uint64_t)getpid() << 40;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    kinfer_fmt(buf, size, "%08" PRIx32, (uint32_t)(z >> 32));
}

/* Fill c from o; on a bad value write a message naming the option. */
static int config_from_opts(const struct kinfer_opts *o, struct kprod_config *c,
                            char *err, size_t errsize)
{
    const char *s;
    memset(c, 0, sizeof *c);
    c->brokers = kinfer_opts_get(o, "brokers");
    c->topic = kinfer_opts_get(o, "topic");
    c->output_topic = kinfer_opts_get(o, "output-topic");
    c->key_field = kinfer_opts_get(o, "key-field");
    c->generate = (uint64_t)kinfer_opts_get_int(o, "generate");
    c->input = kinfer_opts_get(o, "input");
    if (c->generate > 0 && c->input != NULL) {
        kinfer_fmt(err, errsize, "--input and --generate exclude each other");
        return -1;
    }
    if (c->input == NULL)
        c->input = "-";
    c->gen.dim = (size_t)kinfer_opts_get_int(o, "dim");
    s = kinfer_opts_get(o, "factor");
    if (parse_double(s, &c->gen.factor) != 0) {
        kinfer_fmt(err, errsize,
                   "--factor: expected a finite number, got "
                   "'%s'",
                   s);
        return -1;
    }
    s = kinfer_opts_get(o, "dtype");
    if (strcasecmp(s, "FP32") != 0 && strcasecmp(s, "FP64") != 0) {
        kinfer_fmt(err, errsize, "--dtype: expected FP32 or FP64, got '%s'", s);
        return -1;
    }
    c->gen.fp64 = strcasecmp(s, "FP64") == 0;
    make_runid(c->gen.runid, sizeof c->gen.runid);
    s = kinfer_opts_get(o, "rate");
    if (parse_double(s, &c->rate) != 0 || c->rate < 0) {
        kinfer_fmt(err, errsize, "--rate: expected a number >= 0, got '%s'", s);
        return -1;
    }
    c->await = kinfer_opts_get_flag(o, "await");
    c->timeout_s = (int)kinfer_opts_get_int(o, "timeout");
    c->max_line = (size_t)kinfer_opts_get_int(o, "max-line-bytes");
    c->quiet = kinfer_opts_get_flag(o, "quiet");
    return 0;
}

/* Split --header NAME=VALUE into buf (kept for the run). */
static int header_from_opts(const struct kinfer_opts *o, struct kprod_config *c,
                            char **buf, char *err, size_t errsize)
{
    const char *h = kinfer_opts_get(o, "header");
    *buf = NULL;
    if (h == NULL)
        return 0;
    const char *eq = strchr(h, '=');
    if (eq == NULL || eq == h) {
        kinfer_fmt(err, errsize, "--header: expected NAME=VALUE, got '%s'", h);
        return -1;
    }
    *buf = kinfer_xstrdup(h);
    (*buf)[eq - h] = '\0';
    c->header_name = *buf;
    c->header_value = *buf + (eq - h) + 1;
    return 0;
}

static int exit_status(const struct kprod_report *rep)
{
    const struct kprod_summary *s = &rep->summary;
    if (s->failed > 0 || s->interrupted || rep->input_failed ||
        rep->kafka_fatal)
        return EXIT_FAILED;
    if (s->awaited && (s->missing > 0 || s->wrong > 0))
        return EXIT_FAILED;
    return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    char err[1024];
    struct kinfer_opts *o = NULL;
    struct kprod_config c;
    char *header = NULL;
    struct kinfer_kafka_prop *props = NULL;
    int status;

    if (kinfer_opts_parse(defs, NDEFS, argc, argv, environ, &o, err,
                          sizeof err) != KINFER_OK)
        return usage_error(err);
    if (kinfer_opts_help_requested(o)) {
        kinfer_opts_print_help(defs, NDEFS, "kinfer-produce [OPTIONS]", intro,
                               stdout);
        kinfer_opts_free(o);
        return EXIT_SUCCESS;
    }
    if (kinfer_opts_version_requested(o)) {
        printf("kinfer-produce %s\n", KINFER_VERSION);
        kinfer_opts_free(o);
        return EXIT_SUCCESS;
    }
    if (config_from_opts(o, &c, err, sizeof err) != 0 ||
        header_from_opts(o, &c, &header, err, sizeof err) != 0) {
        kinfer_opts_free(o);
        return usage_error(err);
    }

    size_t nprops = kinfer_opts_kafka_count(o);
    props = kinfer_xcalloc(nprops, sizeof *props);
    for (size_t i = 0; i < nprops; i++)
        kinfer_opts_kafka_at(o, i, &props[i].name, &props[i].value);
    c.kafka_props = props;
    c.n_kafka_props = nprops;
    c.stop = &interrupted;
    install_signals();

    struct kprod_report rep;
    enum kinfer_err rc = kprod_run(&c, &rep, err, sizeof err);
    if (rc == KINFER_ERR_CONFIG) {
        status = usage_error(err);
    } else if (rc != KINFER_OK) {
        fprintf(stderr, "kinfer-produce: %s\n", err);
        status = EXIT_FAILED;
    } else {
        kprod_summary_print(&rep.summary, kinfer_opts_get_flag(o, "json"),
                            stdout);
        fflush(stdout);
        status = exit_status(&rep);
        kprod_latencies_clear(&rep.lat);
    }
    free(props);
    free(header);
    kinfer_opts_free(o);
    return status;
}
