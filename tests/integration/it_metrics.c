/* Integration test: the worker's HTTP endpoints under load, scraped by a
 * real Prometheus server (Debian's prometheus package).  kinfer-produce
 * sends a known number of requests; Prometheus' HTTP API (PromQL) must
 * then show that count, a positive rate and a finite, positive histogram
 * quantile; promtool check metrics must pass on a scrape; the health and
 * model metadata endpoints answer as docs/metrics.md says, and ready turns
 * 503 once SIGTERM starts the drain.
 *
 * Needs /usr/bin/prometheus and /usr/bin/promtool (or PROMETHEUS and
 * PROMTOOL in the environment); skipped with a message without them.
 */
#define _XOPEN_SOURCE 700
#include "harness.h"
#include "requests.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_PARTITIONS 4
#define N_REQUESTS 6000
#define RATE "1500"
#define HTTP_TIMEOUT_MS 5000
#define READY_TIMEOUT_MS 60000
#define PROM_TIMEOUT_MS 90000

static const char *tool(const char *env, const char *dflt)
{
    const char *v = getenv(env);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

/* A loopback TCP port that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* GET path until it answers want (or the deadline); the last status. */
static int wait_status(int port, const char *path, int want, int64_t timeout_ms,
                       char **body)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        size_t len;
        char *b = NULL;
        int st = it_http_get(port, path, HTTP_TIMEOUT_MS, &b, &len);
        if (st == want || it_now_ms() >= deadline) {
            if (body != NULL)
                *body = b;
            else
                free(b);
            return st;
        }
        free(b);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static struct it_proc *spawn_worker(struct it_ctx *ctx,
                                    const struct it_topics *t,
                                    const char *label, const char *out_topic,
                                    int *port)
{
    const char *args[] = {"--group",
                          t->group,
                          "--input-topic",
                          t->in,
                          "--output-topic",
                          out_topic,
                          "--dlq-topic",
                          t->dlq,
                          "--threads",
                          "2",
                          "--drain-timeout",
                          "8",
                          NULL};
    struct it_proc *p = it_worker_spawn(ctx, label, args);
    IT_REQUIRE(ctx, p != NULL, "spawn %s", label);
    *port = it_proc_http_port(p, 30000);
    IT_REQUIRE(ctx, *port > 0, "%s serves no HTTP port", label);
    return p;
}

/* The number in a scrape's line "name value" (a series without labels);
 * NAN when absent. */
static double scrape_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = text; l != NULL && *l; l = strchr(l, '\n')) {
        if (*l == '\n')
            l++;
        if (strncmp(l, name, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    }
    return NAN;
}

/* ------------------------------------------------------------ Prometheus */

struct prom {
    struct it_proc *proc;
    int port;
    char dir[256]; /* config and storage, removed at the end */
};

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void prom_start(struct it_ctx *ctx, struct prom *pr, int target_port)
{
    snprintf(pr->dir, sizeof pr->dir, "/tmp/kinfer-it-prom-XXXXXX");
    IT_REQUIRE(ctx, mkdtemp(pr->dir) != NULL, "mkdtemp");
    char cfg[320], data[300], listen[64], cfgarg[340], dataarg[320];
    snprintf(cfg, sizeof cfg, "%s/prometheus.yml", pr->dir);
    snprintf(data, sizeof data, "%s/data", pr->dir);
    FILE *f = fopen(cfg, "w");
    IT_REQUIRE(ctx, f != NULL, "writing %s", cfg);
    fprintf(f,
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: kinfer\n"
            "    static_configs:\n"
            "      - targets: ['127.0.0.1:%d']\n",
            target_port);
    fclose(f);
    pr->port = free_port();
    IT_REQUIRE(ctx, pr->port > 0, "no free port for Prometheus");
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d",
             pr->port);
    snprintf(cfgarg, sizeof cfgarg, "--config.file=%s", cfg);
    snprintf(dataarg, sizeof dataarg, "--storage.tsdb.path=%s", data);
    const char *argv[] = {tool("PROMETHEUS", "/usr/bin/prometheus"),
                          cfgarg,
                          dataarg,
                          listen,
                          "--log.level=warn",
                          NULL};
    pr->proc = it_proc_spawn(ctx, "prometheus", argv);
    IT_REQUIRE(ctx, pr->proc != NULL, "starting Prometheus");
    int st = wait_status(pr->port, "/-/ready", 200, PROM_TIMEOUT_MS, NULL);
    IT_REQUIRE(ctx, st == 200, "Prometheus not ready on port %d: %d", pr->port,
               st);
}

/* Stop Prometheus and remove its directory; safe to call twice. */
static void prom_stop(struct prom *pr)
{
    if (pr->proc != NULL && it_proc_running(pr->proc)) {
        it_proc_signal(pr->proc, SIGTERM);
        if (it_proc_wait(pr->proc, 20000, NULL, NULL) != 0) {
            it_proc_signal(pr->proc, SIGKILL);
            it_proc_wait(pr->proc, 5000, NULL, NULL);
        }
    }
    pr->proc = NULL;
    if (pr->dir[0] != '\0')
        nftw(pr->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    pr->dir[0] = '\0';
}

static void url_encode(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (; *s && k + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-') {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
}

/* The value of an instant PromQL query that returns one sample; NAN when
 * it returns none (or an error: printed). */
static double prom_query(struct prom *pr, const char *q)
{
    char enc[1024], path[1200];
    url_encode(q, enc, sizeof enc);
    snprintf(path, sizeof path, "/api/v1/query?query=%s", enc);
    char *body = NULL;
    size_t len = 0;
    int st = it_http_get(pr->port, path, HTTP_TIMEOUT_MS, &body, &len);
    double v = NAN;
    json_t *j = st == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *res = json_object_get(json_object_get(j, "data"), "result");
    if (st != 200 || j == NULL)
        fprintf(stderr, "it: query %s: status %d: %s\n", q, st,
                body ? body : "");
    if (json_array_size(res) == 1) {
        json_t *val =
            json_array_get(json_object_get(json_array_get(res, 0), "value"), 1);
        if (json_is_string(val)) /* "NaN", "+Inf" and numbers */
            v = strtod(json_string_value(val), NULL);
    }
    json_decref(j);
    free(body);
    return v;
}

/* Query until pred(value) holds or the deadline; the last value. */
static double prom_wait(struct prom *pr, const char *q,
                        int (*pred)(double, double), double arg,
                        int64_t timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    double v;
    for (;;) {
        v = prom_query(pr, q);
        if (pred(v, arg) || it_now_ms() >= deadline)
            return v;
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int equals(double v, double want)
{
    return v == want;
}

static int finite_positive(double v, double unused)
{
    (void)unused;
    return isfinite(v) && v > 0;
}

/* ------------------------------------------------------------- checks */

static void check_models(struct it_ctx *ctx, int port)
{
    char *body = NULL;
    size_t len = 0;
    int st =
        it_http_get(port, "/v2/models/scale", HTTP_TIMEOUT_MS, &body, &len);
    IT_REQUIRE(ctx, st == 200, "/v2/models/scale: %d %s", st, body);
    json_t *j = json_loadb(body, len, 0, NULL);
    IT_REQUIRE(ctx, j != NULL, "/v2/models/scale: not JSON: %s", body);
    json_t *versions = json_object_get(j, "versions");
    IT_REQUIRE(
        ctx,
        json_is_string(json_object_get(j, "name")) &&
            strcmp(json_string_value(json_object_get(j, "name")), "scale") == 0,
        "metadata name: %s", body);
    IT_REQUIRE(
        ctx,
        json_array_size(versions) == 1 &&
            strcmp(json_string_value(json_array_get(versions, 0)), "1") == 0,
        "metadata versions: %s", body);
    IT_REQUIRE(ctx, json_is_string(json_object_get(j, "platform")),
               "metadata platform: %s", body);
    IT_REQUIRE(ctx,
               json_is_array(json_object_get(j, "inputs")) &&
                   json_is_array(json_object_get(j, "outputs")),
               "metadata inputs/outputs: %s", body);
    json_decref(j);
    free(body);
    st = it_http_get(port, "/v2/models/scale/ready", HTTP_TIMEOUT_MS, &body,
                     &len);
    free(body);
    IT_REQUIRE(ctx, st == 200, "/v2/models/scale/ready: %d", st);
    st = it_http_get(port, "/v2/models/no-such-model", HTTP_TIMEOUT_MS, &body,
                     &len);
    free(body);
    IT_REQUIRE(ctx, st == 404, "/v2/models/no-such-model: %d", st);
    st = it_http_get(port, "/v2/models/no-such-model/ready", HTTP_TIMEOUT_MS,
                     &body, &len);
    free(body);
    IT_REQUIRE(ctx, st == 404, "/v2/models/no-such-model/ready: %d", st);
}

/* promtool check metrics on one scrape: exit 0, nothing to say. */
static void check_promtool(struct it_ctx *ctx, int port)
{
    char *body = NULL;
    size_t len = 0;
    int st = it_http_get(port, "/metrics", HTTP_TIMEOUT_MS, &body, &len);
    IT_REQUIRE(ctx, st == 200 && len > 0, "/metrics: %d", st);
    char in[] = "/tmp/kinfer-it-scrape-XXXXXX";
    int fd = mkstemp(in);
    IT_REQUIRE(ctx, fd >= 0, "mkstemp");
    IT_REQUIRE(ctx, write(fd, body, len) == (ssize_t)len, "writing %s", in);
    close(fd);
    free(body);
    char cmd[600], out[4096];
    snprintf(cmd, sizeof cmd, "'%s' check metrics < %s 2>&1",
             tool("PROMTOOL", "/usr/bin/promtool"), in);
    FILE *p = popen(cmd, "r");
    IT_REQUIRE(ctx, p != NULL, "running %s", cmd);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    unlink(in);
    IT_REQUIRE(ctx, rc == 0 && n == 0,
               "promtool check metrics: status %d, said: %s", rc, out);
}

static void stop_worker(struct it_ctx *ctx, struct it_proc *w)
{
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait_signal_ready(w, SIGTERM, 10000) == 0,
               "no SIGTERM handler");
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM");
    IT_REQUIRE(ctx, it_proc_wait(w, 20000, &status, NULL) == 0,
               "worker did not exit after SIGTERM");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker ended with %s", it_status_str(status, st, sizeof st));
}

/* ------------------------------------------------------------- tests */

static void test_prometheus_scrape(void **state)
{
    struct it_ctx *ctx = *state;
    const char *prom = tool("PROMETHEUS", "/usr/bin/prometheus");
    if (access(prom, X_OK) != 0 ||
        access(tool("PROMTOOL", "/usr/bin/promtool"), X_OK) != 0) {
        fprintf(stderr,
                "it: SKIP: no %s or promtool (Debian package "
                "prometheus)\n",
                prom);
        skip();
    }
    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, 1, NULL, NULL);
    int port = 0;
    struct it_proc *w = spawn_worker(ctx, &t, "worker", t.out, &port);

    char *body = NULL;
    int st = wait_status(port, "/v2/health/live", 200, 10000, NULL);
    IT_REQUIRE(ctx, st == 200, "/v2/health/live: %d", st);
    st = wait_status(port, "/v2/health/ready", 200, READY_TIMEOUT_MS, &body);
    IT_REQUIRE(ctx, st == 200, "/v2/health/ready after the join: %d %s", st,
               body);
    free(body);
    check_models(ctx, port);

    struct prom pr = {0};
    prom_start(ctx, &pr, port);
    IT_REQUIRE(ctx, prom_wait(&pr, "up{job=\"kinfer\"}", equals, 1, 30000) == 1,
               "Prometheus does not see the worker up");

    char n[32];
    snprintf(n, sizeof n, "%d", N_REQUESTS);
    const char *pargs[] = {it_ctx_produce_path(ctx),
                           "--brokers",
                           it_ctx_brokers(ctx),
                           "--topic",
                           t.in,
                           "--output-topic",
                           t.out,
                           "--generate",
                           n,
                           "--rate",
                           RATE,
                           "--await",
                           "--quiet",
                           NULL};
    struct it_proc *prod = it_proc_spawn(ctx, "produce", pargs);
    IT_REQUIRE(ctx, prod != NULL, "starting kinfer-produce");
    int status = 0;
    char stxt[64];
    it_proc_signal(prod, 0); /* its exit is expected */
    IT_REQUIRE(ctx, it_proc_wait(prod, 180000, &status, NULL) == 0,
               "kinfer-produce did not finish");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "kinfer-produce ended with %s",
               it_status_str(status, stxt, sizeof stxt));

    double consumed = prom_wait(&pr, "sum(kinfer_requests_consumed_total)",
                                equals, N_REQUESTS, PROM_TIMEOUT_MS);
    IT_REQUIRE(ctx, consumed == N_REQUESTS,
               "Prometheus: kinfer_requests_consumed_total %g, sent %d",
               consumed, N_REQUESTS);
    double ok = prom_wait(
        &pr, "sum(kinfer_results_total{model=\"scale\",outcome=\"success\"})",
        equals, N_REQUESTS, 30000);
    IT_REQUIRE(ctx, ok == N_REQUESTS, "Prometheus: %g successful results", ok);
    double rate =
        prom_query(&pr, "sum(rate(kinfer_requests_consumed_total[1m]))");
    IT_REQUIRE(ctx, isfinite(rate) && rate > 0, "Prometheus: rate %g", rate);
    double p90 =
        prom_wait(&pr,
                  "histogram_quantile(0.9, sum by (le) "
                  "(rate(kinfer_request_duration_seconds_bucket[1m])))",
                  finite_positive, 0, 30000);
    IT_REQUIRE(ctx, isfinite(p90) && p90 > 0 && p90 <= 10,
               "Prometheus: p90 request duration %g s", p90);
    double exec = prom_query(&pr, "sum(kinfer_execution_count_total)");
    double inf = prom_query(&pr, "sum(kinfer_inference_count_total)");
    IT_REQUIRE(ctx, inf == N_REQUESTS && exec >= 1 && exec <= inf,
               "Prometheus: %g inferences in %g executions", inf, exec);
    /* From librdkafka's statistics (every 5 s): a lag series for each
     * partition the worker holds, a backlog, a broker round trip. */
    char q[512];
    snprintf(q, sizeof q, "count(kinfer_consumer_lag_messages{topic=\"%s\"})",
             t.in);
    double lags = prom_wait(&pr, q, equals, N_PARTITIONS, 30000);
    IT_REQUIRE(ctx, lags == N_PARTITIONS, "Prometheus: %g lag series", lags);
    double backlog = prom_query(&pr, "kinfer_backlog_seconds_max");
    IT_REQUIRE(ctx, isfinite(backlog) && backlog >= 0 && backlog <= 3600,
               "Prometheus: backlog %g s", backlog);
    double rtt = prom_wait(&pr, "max(kinfer_broker_rtt_seconds)",
                           finite_positive, 0, 30000);
    IT_REQUIRE(ctx, isfinite(rtt) && rtt > 0, "Prometheus: broker rtt %g", rtt);
    fprintf(stderr,
            "it: Prometheus saw %g requests, rate %.1f/s over 1m, p90 %.4f s, "
            "backlog max %g s, broker rtt %.4f s\n",
            consumed, rate, p90, backlog, rtt);
    check_promtool(ctx, port);
    prom_stop(&pr);
    stop_worker(ctx, w);
}

/* Results that cannot be delivered (their topic does not exist) keep
 * requests in flight, so the drain after SIGTERM lasts long enough to
 * watch ready answer 503 while live stays 200. */
static void test_not_ready_while_draining(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 1, 1, NULL, NULL);
    char missing[256];
    it_unique_name(ctx, "missing", missing, sizeof missing);
    int port = 0;
    struct it_proc *w = spawn_worker(ctx, &t, "drainer", missing, &port);
    char *body = NULL;
    int st =
        wait_status(port, "/v2/health/ready", 200, READY_TIMEOUT_MS, &body);
    IT_REQUIRE(ctx, st == 200, "/v2/health/ready: %d %s", st, body);
    free(body);
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, 5, NULL) == 0,
               "producing requests");
    /* Wait until the worker holds them. */
    int64_t deadline = it_now_ms() + 30000;
    double in_flight = 0;
    while (it_now_ms() < deadline) {
        size_t len;
        st = it_http_get(port, "/metrics", HTTP_TIMEOUT_MS, &body, &len);
        in_flight =
            st == 200 ? scrape_value(body, "kinfer_in_flight_requests") : NAN;
        free(body);
        if (in_flight >= 5)
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    IT_REQUIRE(ctx, in_flight >= 5, "in flight: %g", in_flight);

    IT_REQUIRE(ctx, it_proc_wait_signal_ready(w, SIGTERM, 10000) == 0,
               "no SIGTERM handler");
    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM");
    st = wait_status(port, "/v2/health/ready", 503, 5000, &body);
    IT_REQUIRE(ctx, st == 503 && body != NULL && strstr(body, "draining"),
               "ready while draining: %d %s", st, body);
    free(body);
    size_t len;
    st = it_http_get(port, "/v2/health/live", HTTP_TIMEOUT_MS, &body, &len);
    free(body);
    IT_REQUIRE(ctx, st == 200, "live while draining: %d", st);
    st = it_http_get(port, "/metrics", HTTP_TIMEOUT_MS, &body, &len);
    double draining = st == 200 ? scrape_value(body, "kinfer_draining") : NAN;
    double ready = st == 200 ? scrape_value(body, "kinfer_ready") : NAN;
    free(body);
    IT_REQUIRE(ctx, draining == 1 && ready == 0,
               "draining %g, ready %g while draining", draining, ready);
    int status = 0;
    char stxt[64];
    IT_REQUIRE(ctx, it_proc_wait(w, 20000, &status, NULL) == 0,
               "drainer did not exit");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "drainer ended with %s",
               it_status_str(status, stxt, sizeof stxt));
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prometheus_scrape),
        cmocka_unit_test(test_not_ready_while_draining),
    };
    return it_main("metrics", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
