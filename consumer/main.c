/* kinfer-worker: joins a consumer group on the request topic and answers
 * every request on the result topic.  This file only parses options,
 * installs signal handlers and wires the library's modules together. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kinfer/http.h"
#include "kinfer/log.h"
#include "kinfer/model.h"
#include "kinfer/options.h"
#include "kinfer/plugin.h"
#include "kinfer/repo.h"
#include "kinfer/worker.h"

extern char **environ;

static struct kinfer_worker *volatile running;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    struct kinfer_worker *w = running;
    if (w != NULL)
        kinfer_worker_stop(w);
}

static const char intro[] =
    "Consume inference requests (Open Inference Protocol JSON) from a Kafka\n"
    "topic, run them on a pool of threads, and produce one result per\n"
    "request to the output topic.  Invalid requests also go, byte for "
    "byte,\nto the dead-letter topic, and so do requests a model failed "
    "transiently\non every retry.  Late requests are answered 'expired' "
    "without running.\nSIGTERM/SIGINT drain, commit and exit 0.  Metrics "
    "and health checks\nare served over HTTP (--http).\n";

/* Plugins first (their backends may be named by the repository), then the
 * repository, then the built-in "scale" model unless the repository
 * defines a model of that name. */
static enum kinfer_err load_models(struct kinfer_models *models,
                                   struct kinfer_plugins *plugins,
                                   const char *plugin_list, const char *repo,
                                   char *err, size_t errsize)
{
    enum kinfer_err rc;
    if (plugin_list != NULL) {
        char *list = strdup(plugin_list);
        if (list == NULL)
            return KINFER_ERR_NOMEM;
        char *save = NULL;
        rc = KINFER_OK;
        for (char *path = strtok_r(list, ":", &save);
             path != NULL && rc == KINFER_OK;
             path = strtok_r(NULL, ":", &save)) {
            const struct kinfer_backend *b = NULL;
            rc = kinfer_plugins_load(plugins, path, &b, err, errsize);
            if (rc == KINFER_OK)
                rc = kinfer_models_add_backend(models, b, err, errsize);
            if (rc == KINFER_OK)
                kinfer_log(KINFER_LOG_INFO, "loaded backend '%s' from %s",
                           b->name, path);
        }
        free(list);
        if (rc != KINFER_OK)
            return rc;
    }
    if (repo != NULL) {
        rc = kinfer_repo_load(models, repo, err, errsize);
        if (rc != KINFER_OK)
            return rc;
    }
    if (kinfer_models_find(models, "scale") == NULL) {
        rc = kinfer_models_load(models, "scale", "scale", NULL, NULL, NULL, err,
                                errsize);
        if (rc != KINFER_OK)
            return rc;
    }
    for (size_t i = 0; i < kinfer_models_count(models); i++) {
        const struct kinfer_model *m = kinfer_models_at(models, i);
        const struct kinfer_model_settings *s = kinfer_model_settings(m);
        char sig[512];
        kinfer_model_describe(m, sig, sizeof sig);
        kinfer_log(KINFER_LOG_INFO,
                   "model %s version %s: %s (max_batch_size %zu, "
                   "max_queue_delay_us %ld)",
                   kinfer_model_name(m), kinfer_model_version(m), sig,
                   s->max_batch_size, s->max_queue_delay_us);
    }
    return KINFER_OK;
}

/* The worker's options.  The "threads" default, the online CPU count, is
 * known only at run time: worker_options fills it into a copy. */
static const struct kinfer_optdef options[] = {
    {"brokers", "KINFER_BROKERS", KINFER_OPT_STRING, "127.0.0.1:9092", 0, 0,
     "LIST", "Kafka bootstrap servers", 0},
    {"group", "KINFER_GROUP", KINFER_OPT_STRING, "kinfer", 0, 0, "ID",
     "Consumer group id (all workers of one fleet share it)", 0},
    {"input-topic", "KINFER_INPUT_TOPIC", KINFER_OPT_STRING, "kinfer.requests",
     0, 0, "T", "Topic to read requests from", 0},
    {"output-topic", "KINFER_OUTPUT_TOPIC", KINFER_OPT_STRING, "kinfer.results",
     0, 0, "T", "Topic to write results to", 0},
    {"dlq-topic", "KINFER_DLQ_TOPIC", KINFER_OPT_STRING, "kinfer.dlq", 0, 0,
     "T",
     "Dead-letter topic for requests that cannot be decoded (and, with "
     "--retry-dlq 1, those out of retry attempts)",
     0},
    {"threads", "KINFER_THREADS", KINFER_OPT_INT, NULL /* CPU count */, 1, 1024,
     "N", "Inference threads (defaults to the online CPU count)", 0},
    {"max-in-flight", "KINFER_MAX_IN_FLIGHT", KINFER_OPT_INT, "20000", 1,
     1000000, "N",
     "Requests held at once; over it polling waits, and partitions pause "
     "if that lasts 0.5 s",
     0},
    {"max-in-flight-bytes", "KINFER_MAX_IN_FLIGHT_BYTES", KINFER_OPT_INT,
     "67108864", 1024, (long long)1 << 40, "BYTES",
     "Bytes of requests held at once (as --max-in-flight); librdkafka's "
     "prefetch adds up to 64 MiB",
     0},
    {"max-request-bytes", "KINFER_MAX_REQUEST_BYTES", KINFER_OPT_INT, "1000000",
     64, (long long)1 << 30, "BYTES",
     "Larger requests are rejected (error result + dead letter)", 0},
    {"max-key-bytes", "KINFER_MAX_KEY_BYTES", KINFER_OPT_INT, "16384", 1,
     (long long)1 << 30, "BYTES", "Requests with a longer key are rejected", 0},
    {"max-header-bytes", "KINFER_MAX_HEADER_BYTES", KINFER_OPT_INT, "65536", 1,
     (long long)1 << 30, "BYTES",
     "Requests with more header bytes (names + values) are rejected", 0},
    {"max-headers", "KINFER_MAX_HEADERS", KINFER_OPT_INT, "64", 1, 1000000, "N",
     "Requests with more headers are rejected", 0},
    {"model", "KINFER_MODEL", KINFER_OPT_STRING, "scale", 0, 0, "NAME",
     "Model for requests without model_name", 0},
    {"model-repo", "KINFER_MODEL_REPO", KINFER_OPT_STRING, NULL, 0, 0, "DIR",
     "Model repository: one subdirectory with a config.json per "
     "model",
     0},
    {"plugin", "KINFER_PLUGINS", KINFER_OPT_LIST, NULL, 0, 0, "PATH",
     "Backend plugin (.so) to load; repeatable (env: ':'-separated)", 0},
    {"drain-timeout", "KINFER_DRAIN_TIMEOUT", KINFER_OPT_INT, "10", 0, 3600,
     "SECONDS",
     "Shutdown budget: drain, flush, commit and leave the group within it "
     "(+1.5 s to free the handles); keep it below the orchestrator's grace "
     "period.  Work left at the deadline stays uncommitted (exit 0)",
     0},
    {"instance-id", "KINFER_INSTANCE_ID", KINFER_OPT_STRING, NULL, 0, 0, "ID",
     "Static group membership (group.instance.id), unique per worker: a "
     "restart within session.timeout.ms keeps its partitions without a "
     "rebalance, but a dead worker's partitions wait the whole "
     "session.timeout.ms.  With --exactly-once it also names the "
     "transactional.id",
     0},
    {"exactly-once", "KINFER_EXACTLY_ONCE", KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "Exactly-once results: each batch's results, error results, dead "
     "letters and consumed offsets in one Kafka transaction "
     "(transactional.id <group>.<instance-id>; needs --instance-id).  "
     "Readers of the output must use isolation.level=read_committed",
     0},
    {"txn-max-messages", "KINFER_TXN_MAX_MESSAGES", KINFER_OPT_INT, "5000", 1,
     1000000, "N",
     "With --exactly-once: a transaction closes after this many requests", 0},
    {"txn-interval-ms", "KINFER_TXN_INTERVAL_MS", KINFER_OPT_INT, "100", 1,
     60000, "MS",
     "With --exactly-once: ... or this long after its first request; results "
     "become visible when it commits",
     0},
    {"connect-timeout", "KINFER_CONNECT_TIMEOUT", KINFER_OPT_INT, "60", 0,
     86400, "SECONDS",
     "Exit 1 when no broker was reached this long after start (0: never)", 0},
    {"max-age", "KINFER_MAX_AGE", KINFER_OPT_INT, "0", 0, (long long)1 << 50,
     "MS",
     "Requests without a deadline of their own (header kinfer-deadline-ms, "
     "parameters.timeout_ms) older than this by their Kafka timestamp are "
     "answered 'expired' and not run (0: never)",
     0},
    {"ordering", "KINFER_ORDERING", KINFER_OPT_STRING, "none", 0, 0, "MODE",
     "none: any order; key: requests with the same key run and are "
     "answered in offset order (null keys unordered); partition: one "
     "request at a time per partition",
     0},
    {"retry-attempts", "KINFER_RETRY_ATTEMPTS", KINFER_OPT_INT, "3", 1, 100,
     "N",
     "Runs of a request whose model failure is marked transient, in all "
     "(1: no retries); then the error result",
     0},
    {"retry-backoff", "KINFER_RETRY_BACKOFF", KINFER_OPT_INT, "100", 1, 3600000,
     "MS",
     "Wait before the first retry, doubled for each further one, with "
     "jitter (half of it random)",
     0},
    {"retry-backoff-max", "KINFER_RETRY_BACKOFF_MAX", KINFER_OPT_INT, "5000", 1,
     3600000, "MS", "Longest wait between two attempts", 0},
    {"retry-dlq", "KINFER_RETRY_DLQ", KINFER_OPT_INT, "1", 0, 1, "0|1",
     "1: a request out of attempts also goes to the dead-letter topic, with "
     "header kinfer-attempts",
     0},
    {"dlq-guard", "KINFER_DLQ_GUARD", KINFER_OPT_INT, "0", 0, 100, "PERCENT",
     "Stop (exit 3) when more than PERCENT of a window's requests are "
     "dead-lettered, leaving the rest uncommitted (0: off)",
     0},
    {"dlq-guard-window", "KINFER_DLQ_GUARD_WINDOW", KINFER_OPT_INT, "1000", 10,
     100000000, "N", "Requests per window of --dlq-guard", 0},
    {"stats-interval", "KINFER_STATS_INTERVAL", KINFER_OPT_INT, "10", 0, 86400,
     "SECONDS", "Log counters this often (0: never)", 0},
    {"http", "KINFER_HTTP", KINFER_OPT_ADDR, "0.0.0.0:8080", 0, 0, "ADDR:PORT",
     "Serve /metrics, /v2/health/live, /v2/health/ready and "
     "/v2/models/NAME here; port 0 picks a free port, 'off' serves nothing",
     0},
    {"probe", NULL, KINFER_OPT_STRING, NULL, 0, 0, "URL",
     "Only GET URL (http://HOST:PORT/PATH) and exit 0 on a 2xx answer "
     "within 2 s, else 1 (a container health check)",
     0},
    {"log-level", "KINFER_LOG_LEVEL", KINFER_OPT_STRING, "info", 0, 0, "LEVEL",
     "error, warn, info or debug", 0},
    {"config", "KINFER_CONFIG", KINFER_OPT_STRING, NULL, 0, 0, "FILE",
     "Config file of 'option = value' lines (librdkafka properties "
     "too)",
     1},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

/* Copy the option table into defs[N_OPTIONS] with the "threads" default
 * set to the online CPU count, written into cpus (which defs borrows). */
static void worker_options(struct kinfer_optdef *defs, char *cpus,
                           size_t cpussize)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(cpus, cpussize, "%ld", ncpu > 0 ? ncpu : 1);
    memcpy(defs, options, sizeof options);
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(defs[i].name, "threads") == 0)
            defs[i].def = cpus;
}

/* Installed first so a signal during start-up still means "stop cleanly"
 * rather than the default abrupt exit. */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Resolve the options into *out and apply --log-level.  Returns -1 to go
 * on, or the exit status when the program ends here (--help, --version,
 * a bad option: then *out is freed). */
static int parse_options(const struct kinfer_optdef *defs, int argc,
                         char **argv, struct kinfer_opts **out)
{
    struct kinfer_opts *o = NULL;
    char err[512];
    if (kinfer_opts_parse(defs, N_OPTIONS, argc, argv, environ, &o, err,
                          sizeof err) != KINFER_OK) {
        fprintf(stderr, "kinfer-worker: %s\n", err);
        return 2;
    }
    int status = -1;
    if (kinfer_opts_help_requested(o)) {
        kinfer_opts_print_help(defs, N_OPTIONS, "kinfer-worker [OPTIONS]",
                               intro, stdout);
        status = 0;
    } else if (kinfer_opts_version_requested(o)) {
        printf("kinfer-worker %s\n", KINFER_VERSION);
        status = 0;
    } else {
        const char *name = kinfer_opts_get(o, "log-level");
        int level = kinfer_log_level_from_name(name);
        if (level < 0) {
            fprintf(stderr,
                    "kinfer-worker: --log-level: expected error, warn, info "
                    "or debug, got '%s'\n",
                    name);
            status = 2;
        } else {
            kinfer_log_set_level(level);
        }
    }
    if (status >= 0)
        kinfer_opts_free(o);
    else
        *out = o;
    return status;
}

/* The worker's settings from the options.  Everything stays borrowed from
 * o, except *props, which the caller frees with free().  Returns 0, -1
 * when memory runs out, or -2 after printing why a setting is bad. */
static int worker_config(const struct kinfer_opts *o,
                         struct kinfer_worker_config *cfg,
                         struct kinfer_kafka_prop **props)
{
    size_t nprops = kinfer_opts_kafka_count(o);
    *props = calloc(nprops ? nprops : 1, sizeof **props);
    if (*props == NULL)
        return -1;
    for (size_t i = 0; i < nprops; i++)
        kinfer_opts_kafka_at(o, i, &(*props)[i].name, &(*props)[i].value);

    *cfg = (struct kinfer_worker_config){
        .brokers = kinfer_opts_get(o, "brokers"),
        .group = kinfer_opts_get(o, "group"),
        .instance_id = kinfer_opts_get(o, "instance-id"),
        .input_topic = kinfer_opts_get(o, "input-topic"),
        .output_topic = kinfer_opts_get(o, "output-topic"),
        .dlq_topic = kinfer_opts_get(o, "dlq-topic"),
        .default_model = kinfer_opts_get(o, "model"),
        .threads = (size_t)kinfer_opts_get_int(o, "threads"),
        .max_in_flight = (size_t)kinfer_opts_get_int(o, "max-in-flight"),
        .max_in_flight_bytes =
            (size_t)kinfer_opts_get_int(o, "max-in-flight-bytes"),
        .drain_timeout_ms = (int)kinfer_opts_get_int(o, "drain-timeout") * 1000,
        .stats_interval_ms =
            (int)kinfer_opts_get_int(o, "stats-interval") * 1000,
        .connect_timeout_ms =
            (int)kinfer_opts_get_int(o, "connect-timeout") * 1000,
        .limits = {.max_request_bytes =
                       (size_t)kinfer_opts_get_int(o, "max-request-bytes")},
        .max_key_bytes = (size_t)kinfer_opts_get_int(o, "max-key-bytes"),
        .max_header_bytes = (size_t)kinfer_opts_get_int(o, "max-header-bytes"),
        .max_headers = (size_t)kinfer_opts_get_int(o, "max-headers"),
        .props = *props,
        .n_props = nprops,
        .max_age_ms = kinfer_opts_get_int(o, "max-age"),
        .retry_attempts = (unsigned)kinfer_opts_get_int(o, "retry-attempts"),
        .retry_backoff_ms = kinfer_opts_get_int(o, "retry-backoff"),
        .retry_backoff_max_ms = kinfer_opts_get_int(o, "retry-backoff-max"),
        .retry_dlq = (int)kinfer_opts_get_int(o, "retry-dlq"),
        .dlq_guard_percent = (unsigned)kinfer_opts_get_int(o, "dlq-guard"),
        .dlq_guard_window = (size_t)kinfer_opts_get_int(o, "dlq-guard-window"),
        .exactly_once = kinfer_opts_get_flag(o, "exactly-once"),
        .txn_max_messages = (size_t)kinfer_opts_get_int(o, "txn-max-messages"),
        .txn_interval_ms = (int)kinfer_opts_get_int(o, "txn-interval-ms"),
    };
    const char *ordering = kinfer_opts_get(o, "ordering");
    if (strcmp(ordering, "key") == 0)
        cfg->ordering = KINFER_ORDERING_KEY;
    else if (strcmp(ordering, "partition") == 0)
        cfg->ordering = KINFER_ORDERING_PARTITION;
    else if (strcmp(ordering, "none") != 0) {
        fprintf(stderr,
                "kinfer-worker: --ordering: expected none, key or "
                "partition, got '%s'\n",
                ordering);
        return -2;
    }
    return 0;
}

#define PROBE_TIMEOUT_MS 2000

/* --probe URL: the exit status. */
static int probe(const char *url)
{
    char why[512];
    int status = kinfer_http_probe(url, PROBE_TIMEOUT_MS, why, sizeof why);
    if (status >= 200 && status <= 299) {
        printf("%s\n", why);
        return 0;
    }
    fprintf(stderr, "kinfer-worker: --probe %s\n", why);
    return 1;
}

static int worker_live(void *arg, char *why, size_t size)
{
    return kinfer_worker_live(arg, why, size);
}

static int worker_ready(void *arg, char *why, size_t size)
{
    return kinfer_worker_ready(arg, why, size);
}

/* Start the HTTP server on --http unless it is off.  Returns 0, or -1
 * after saying why (a bind failure: the caller exits 2). */
static int http_start(const char *addr, struct kinfer_worker *w,
                      const struct kinfer_models *models,
                      struct kinfer_http **out)
{
    *out = NULL;
    if (strcmp(addr, "off") == 0)
        return 0;
    const struct kinfer_http_handlers h = {
        .metrics = kinfer_worker_metrics(w),
        .models = models,
        .live = worker_live,
        .ready = worker_ready,
        .arg = w,
    };
    char err[512];
    if (kinfer_http_start(addr, &h, out, err, sizeof err) != KINFER_OK) {
        fprintf(stderr, "kinfer-worker: %s\n", err);
        return -1;
    }
    kinfer_log(KINFER_LOG_INFO, "http: serving on %s",
               kinfer_http_address(*out));
    return 0;
}

/* Load the models, then run the worker until it is stopped.  Returns the
 * exit status: 0 after a clean stop, 2 for a bad setting, 3 when the DLQ
 * ratio guard stopped it, 1 otherwise. */
static int serve(const struct kinfer_worker_config *cfg,
                 const struct kinfer_opts *o)
{
    int status = 1;
    char err[512];
    struct kinfer_models *models = NULL;
    struct kinfer_plugins *plugins = NULL;
    struct kinfer_worker *w = NULL;
    struct kinfer_http *http = NULL;
    if (kinfer_models_new(&models) != KINFER_OK ||
        kinfer_plugins_new(&plugins) != KINFER_OK)
        goto out;
    if (load_models(models, plugins, kinfer_opts_get(o, "plugin"),
                    kinfer_opts_get(o, "model-repo"), err,
                    sizeof err) != KINFER_OK) {
        fprintf(stderr, "kinfer-worker: %s\n", err);
        status = 2;
        goto out;
    }
    if (kinfer_models_find(models, cfg->default_model) == NULL) {
        fprintf(stderr,
                "kinfer-worker: --model: no model '%s' (available: %s)\n",
                cfg->default_model, kinfer_models_names(models));
        status = 2;
        goto out;
    }
    if (kinfer_worker_new(cfg, models, &w, err, sizeof err) != KINFER_OK) {
        fprintf(stderr, "kinfer-worker: %s\n", err);
        status = 2;
        goto out;
    }
    /* Up until the run ends, so probes see the drain (ready: 503). */
    if (http_start(kinfer_opts_get(o, "http"), w, models, &http) != 0) {
        status = 2;
        goto out;
    }

    /* Signals go to this thread only: the library's threads block them.
     * Publish the worker first, then look at the flag, so a signal that
     * came during start-up is not missed. */
    running = w;
    if (stop_requested)
        kinfer_worker_stop(w);

    enum kinfer_err rc = kinfer_worker_run(w);
    /* 3: the DLQ ratio guard stopped it (docs/configuration.md). */
    status = rc == KINFER_OK ? 0 : rc == KINFER_ERR_INVALID ? 3 : 1;

out:
    running = NULL;
    kinfer_http_stop(http);
    if (kinfer_worker_free(w)) {
        /* librdkafka threads still run (a consumer that never joined its
         * group cannot be destroyed in 2.0.2): exit()'s handlers, OpenSSL's
         * clean-up among them, would run under them and could crash the
         * process after a clean stop.  End it here, output flushed. */
        kinfer_log(KINFER_LOG_INFO,
                   "exiting with Kafka threads still "
                   "running (status %d)",
                   status);
        fflush(NULL);
        _exit(status);
    }
    kinfer_models_free(models);
    kinfer_plugins_free(plugins);
    return status;
}

int main(int argc, char **argv)
{
    install_signals();

    char cpus[32];
    struct kinfer_optdef defs[N_OPTIONS];
    worker_options(defs, cpus, sizeof cpus);

    struct kinfer_opts *o = NULL;
    int status = parse_options(defs, argc, argv, &o);
    if (status >= 0)
        return status;

    if (kinfer_opts_get(o, "probe") != NULL) {
        status = probe(kinfer_opts_get(o, "probe"));
        kinfer_opts_free(o);
        return status;
    }

    struct kinfer_worker_config cfg;
    struct kinfer_kafka_prop *props = NULL;
    int rc = worker_config(o, &cfg, &props);
    status = rc == 0 ? serve(&cfg, o) : rc == -2 ? 2 : 1;
    free(props);
    kinfer_opts_free(o);
    return status;
}
