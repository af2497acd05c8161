/* kinfer-produce: send inference requests (JSON Lines or synthetic `scale`
 * requests) to the input topic, optionally wait for the workers' results,
 * check them, and print counts, throughput and latency percentiles; or,
 * with --replay-dlq, send dead letters back to a request topic.  This
 * file parses options and signals; run.c and replay.c do the Kafka work.
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
#include "replay.h"
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
     "TOPIC",
     "topic the requests are sent to (--replay-dlq: when not set, each "
     "dead letter goes to its kinfer-source-topic)",
     0},
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
    {"binary", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "--generate: send the input as raw bytes after the JSON (the binary "
     "tensor form) and ask for the result the same way",
     0},
    {"rate", NULL, KINFER_OPT_STRING, "0", 0, 0, "R",
     "open loop: requests per second; 0 = as fast as possible", 0},
    {"concurrency", NULL, KINFER_OPT_INT, NULL, 1, 1000000, "N",
     "closed loop: at most N requests sent and not yet answered; each "
     "result lets the next one go.  Implies --await; excludes --rate",
     0},
    {"await", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "wait for the results, check them, report latency", 0},
    {"timeout", NULL, KINFER_OPT_INT, "60", 1, 7 * 86400, "S",
     "with --await: seconds to wait for results after sending; "
     "--concurrency: for a free slot; --replay-dlq: for the next dead "
     "letter",
     0},
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
    {"replay-dlq", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "send the dead letters of --dlq-topic back as requests (same key, "
     "value and headers, minus kinfer-*); shed copies are skipped",
     0},
    {"dlq-topic", "KINFER_DLQ_TOPIC", KINFER_OPT_STRING, "kinfer.dlq", 0, 0,
     "TOPIC", "--replay-dlq: the dead-letter topic to read", 0},
    {"since", NULL, KINFER_OPT_STRING, NULL, 0, 0, "WHEN",
     "--replay-dlq: only dead letters from WHEN on: epoch ms, or a time "
     "back from now such as 90m, 2h, 1d (default: the beginning)",
     0},
    {"filter-error", NULL, KINFER_OPT_STRING, NULL, 0, 0, "TEXT",
     "--replay-dlq: only dead letters whose kinfer-error contains TEXT", 0},
    {"dry-run", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "--replay-dlq: print one line per dead letter, send nothing", 0},
};
#define NDEFS (sizeof defs / sizeof defs[0])

static const char intro[] =
    "Send inference requests to Kafka and, with --await, wait for their\n"
    "results: count errors, check synthetic results, measure latency.\n"
    "With --replay-dlq, send dead letters back to a request topic instead.\n"
    "Exit status: 0 when every request was delivered (and, with --await,\n"
    "answered and right; with --replay-dlq, every dead letter read was\n"
    "replayed or filtered out), 1 otherwise, 2 for bad options.";

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
    c->gen.binary = kinfer_opts_get_flag(o, "binary");
    make_runid(c->gen.runid, sizeof c->gen.runid);
    s = kinfer_opts_get(o, "rate");
    if (parse_double(s, &c->rate) != 0 || c->rate < 0) {
        kinfer_fmt(err, errsize, "--rate: expected a number >= 0, got '%s'", s);
        return -1;
    }
    c->await = kinfer_opts_get_flag(o, "await");
    c->concurrency = (uint64_t)kinfer_opts_get_int(o, "concurrency");
    if (c->concurrency > 0 && c->rate > 0) {
        kinfer_fmt(err, errsize,
                   "--concurrency (closed loop) and --rate (open loop) "
                   "exclude each other");
        return -1;
    }
    if (c->concurrency > 0)
        c->await = 1; /* a closed loop runs on the answers */
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

/* 1 when the user set name (flag, environment or config file). */
static int given(const struct kinfer_opts *o, const char *name)
{
    const char *src = kinfer_opts_source(o, name);
    return strcmp(src, "default") != 0 && strcmp(src, "unset") != 0;
}

/* Options of one mode given in the other: a usage error naming one. */
static int check_modes(const struct kinfer_opts *o, char *err, size_t errsize)
{
    static const char *const send_only[] = {
        "input", "generate",  "await",         "concurrency",
        "rate",  "key-field", "max-line-bytes"};
    static const char *const replay_only[] = {"since", "filter-error",
                                              "dry-run"};
    int replay = kinfer_opts_get_flag(o, "replay-dlq");
    const char *const *names = replay ? send_only : replay_only;
    size_t n = replay ? sizeof send_only / sizeof *send_only
                      : sizeof replay_only / sizeof *replay_only;
    for (size_t i = 0; i < n; i++) {
        if (!given(o, names[i]))
            continue;
        kinfer_fmt(err, errsize, "--%s %s --replay-dlq", names[i],
                   replay ? "does not apply with" : "needs");
        return -1;
    }
    return 0;
}

static int replay_from_opts(const struct kinfer_opts *o,
                            struct kprod_replay_config *c, char *err,
                            size_t errsize)
{
    memset(c, 0, sizeof *c);
    c->brokers = kinfer_opts_get(o, "brokers");
    c->dlq_topic = kinfer_opts_get(o, "dlq-topic");
    c->default_topic = kinfer_opts_get(o, "topic");
    /* Given by the user (flag, env or file): every replay goes there. */
    if (given(o, "topic"))
        c->topic = c->default_topic;
    c->since_ms = -1;
    const char *since = kinfer_opts_get(o, "since");
    if (since != NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (kprod_parse_since(since, now_ms, &c->since_ms) != 0) {
            kinfer_fmt(err, errsize,
                       "--since: expected epoch milliseconds or a number "
                       "with s, m, h or d, got '%s'",
                       since);
            return -1;
        }
    }
    c->filter = kinfer_opts_get(o, "filter-error");
    c->dry_run = kinfer_opts_get_flag(o, "dry-run");
    c->timeout_s = (int)kinfer_opts_get_int(o, "timeout");
    c->out = stdout;
    return 0;
}

static int replay_exit_status(const struct kprod_replay_report *rep)
{
    const struct kprod_replay_summary *s = &rep->summary;
    if (kprod_replay_lost(s) > 0 || !s->complete || s->interrupted ||
        rep->kafka_fatal)
        return EXIT_FAILED;
    return EXIT_SUCCESS;
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

static int run_replay(const struct kprod_replay_config *c, int json)
{
    char err[1024];
    struct kprod_replay_report rep;
    enum kinfer_err rc = kprod_replay(c, &rep, err, sizeof err);
    if (rc == KINFER_ERR_CONFIG)
        return usage_error(err);
    if (rc != KINFER_OK) {
        fprintf(stderr, "kinfer-produce: %s\n", err);
        return EXIT_FAILED;
    }
    kprod_replay_summary_print(&rep.summary, json, stdout);
    fflush(stdout);
    return replay_exit_status(&rep);
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
    struct kprod_replay_config rc_replay;
    int replay = kinfer_opts_get_flag(o, "replay-dlq");
    if (check_modes(o, err, sizeof err) != 0 ||
        config_from_opts(o, &c, err, sizeof err) != 0 ||
        header_from_opts(o, &c, &header, err, sizeof err) != 0 ||
        (replay && replay_from_opts(o, &rc_replay, err, sizeof err) != 0)) {
        free(header);
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

    if (replay) {
        rc_replay.header_name = c.header_name;
        rc_replay.header_value = c.header_value;
        rc_replay.kafka_props = props;
        rc_replay.n_kafka_props = nprops;
        rc_replay.stop = &interrupted;
        status = run_replay(&rc_replay, kinfer_opts_get_flag(o, "json"));
        free(props);
        free(header);
        kinfer_opts_free(o);
        return status;
    }

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
