/* Integration test: a worker through a SASL_SSL (SCRAM-SHA-512) listener
 * of its own broker ("ops/kafka.sh start --sasl-ssl"), with the secrets in
 * a config file named by KINFER_CONFIG, answers requests; with a wrong
 * password it says "authentication failed", exits non-zero within its
 * --connect-timeout, and neither password ever appears in its output;
 * likewise "TLS failed" when it does not trust the broker's certificate;
 * a mistyped secret property is named but its value is not shown.
 * Topics are made and requests sent over the broker's PLAINTEXT listener.
 */
#include "harness.h"
#include "requests.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define N_REQUESTS 200
#define N_PARTITIONS 2
/* The wrong-password worker's bound, and the slack allowed on top of it
 * for start-up and the bounded shutdown after giving up. */
#define CONNECT_TIMEOUT_S 6
#define EXIT_SLACK_MS 20000

/* The SASL broker's directory (--sasl-dir): sasl-ssl.bootstrap,
 * sasl/client.properties and sasl/password are read from it. */
static const char *sasl_dir;

/* Read the first line of sasl_dir/rel into buf, without its newline;
 * fails the test when the file is missing or empty. */
static void read_line(struct it_ctx *ctx, const char *rel, char *buf,
                      size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", sasl_dir, rel);
    FILE *f = fopen(path, "r");
    IT_REQUIRE(ctx, f != NULL,
               "open %s (was the broker started with "
               "--sasl-ssl?)",
               path);
    int ok = fgets(buf, (int)size, f) != NULL;
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    IT_REQUIRE(ctx, ok && buf[0] != '\0', "%s is empty", path);
}

/* Whether file path contains needle; the whole log is read. */
static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static struct it_proc *spawn(struct it_ctx *ctx, const struct it_topics *t,
                             const char *label, const char *brokers,
                             const char *connect_timeout)
{
    /* --brokers again: the harness passes the PLAINTEXT address first, and
     * the last repeat of a flag wins. */
    const char *args[] = {"--brokers",
                          brokers,
                          "--group",
                          t->group,
                          "--input-topic",
                          t->in,
                          "--output-topic",
                          t->out,
                          "--dlq-topic",
                          t->dlq,
                          "--threads",
                          "2",
                          "--drain-timeout",
                          "5",
                          "--connect-timeout",
                          connect_timeout,
                          NULL};
    struct it_proc *p = it_worker_spawn(ctx, label, args);
    IT_REQUIRE(ctx, p != NULL, "spawn %s", label);
    return p;
}

static void require_exit(struct it_ctx *ctx, struct it_proc *p, int want_zero,
                         int64_t timeout_ms, int64_t *ms)
{
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(p, timeout_ms, &status, ms) == 0,
               "%s did not exit within %lld ms", it_proc_label(p),
               (long long)timeout_ms);
    int zero = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    IT_REQUIRE(ctx, WIFEXITED(status) && zero == want_zero,
               "%s ended with %s, expected %s", it_proc_label(p),
               it_status_str(status, st, sizeof st),
               want_zero ? "exit 0" : "a non-zero exit");
}

/* The right credentials from a config file in KINFER_CONFIG: every request
 * answered through TLS + SCRAM, offsets committed, clean stop. */
static void test_sasl_ssl_answers(void **state)
{
    struct it_ctx *ctx = *state;
    char brokers[256], password[256], conf[1024];
    read_line(ctx, "sasl-ssl.bootstrap", brokers, sizeof brokers);
    read_line(ctx, "sasl/password", password, sizeof password);
    snprintf(conf, sizeof conf, "%s/sasl/client.properties", sasl_dir);

    struct it_topics t;
    it_topics_make(ctx, &t, N_PARTITIONS, 1, NULL, NULL);
    struct it_answers *ans = it_answers_new(N_REQUESTS);
    struct it_reader *r = it_reader_new(ctx, t.out, it_answers_on_msg, ans);
    IT_REQUIRE(ctx, r != NULL, "reader on %s", t.out);

    IT_REQUIRE(ctx, setenv("KINFER_CONFIG", conf, 1) == 0, "setenv");
    struct it_proc *p = spawn(ctx, &t, "good", brokers, "60");
    IT_REQUIRE(ctx, unsetenv("KINFER_CONFIG") == 0, "unsetenv");

    int64_t t0 = it_now_ms();
    IT_REQUIRE(ctx, it_req_produce_range(ctx, t.in, 0, N_REQUESTS, NULL) == 0,
               "produce %d requests", N_REQUESTS);
    IT_REQUIRE(ctx,
               it_reader_wait(r, it_answers_all, ans, 120000,
                              "every request answered over SASL_SSL") == 0,
               "answered %zu of %d", ans->unique, N_REQUESTS);
    int64_t answered_ms = it_now_ms() - t0;
    IT_REQUIRE(ctx, ans->wrong == 0, "wrong result: %s", ans->first_wrong[0]);

    IT_REQUIRE(ctx, it_proc_signal(p, SIGTERM) == 0, "SIGTERM");
    int64_t stop_ms = 0;
    require_exit(ctx, p, 1, 30000, &stop_ms);
    it_require_committed_at_end(ctx, t.in, t.group, N_PARTITIONS);
    const char *log = it_proc_log_path(p);
    IT_REQUIRE(ctx, file_contains(log, "connected to the Kafka cluster"),
               "no 'connected' line in %s", log);
    IT_REQUIRE(ctx, !file_contains(log, password), "the password appears in %s",
               log);
    printf("RESULT it_sasl_good requests=%d answered_ms=%lld "
           "stop_ms=%lld\n",
           N_REQUESTS, (long long)answered_ms, (long long)stop_ms);
    it_reader_free(r);
    it_answers_free(ans);
}

/* Start a worker with the right settings except key, whose line becomes
 * "key = value", from a copy of the client settings named by
 * KINFER_CONFIG; require an ERROR containing want, then exit 1 (non-zero)
 * no earlier than the connect timeout and within it plus some slack, and
 * neither value nor the right password in the output.  Returns the time
 * to exit. */
static int64_t bad_setting_fails(struct it_ctx *ctx, const char *label,
                                 const char *key, const char *value,
                                 const char *want)
{
    char brokers[256], password[256], good[1024], bad[256], path[1300];
    read_line(ctx, "sasl-ssl.bootstrap", brokers, sizeof brokers);
    read_line(ctx, "sasl/password", password, sizeof password);
    snprintf(good, sizeof good, "%s/sasl/client.properties", sasl_dir);
    it_unique_name(ctx, label, bad, sizeof bad);
    snprintf(path, sizeof path, "%s/%s.properties", sasl_dir, bad);
    FILE *in = fopen(good, "r");
    FILE *out = fopen(path, "w");
    IT_REQUIRE(ctx, in != NULL && out != NULL, "copy %s to %s", good, path);
    char line[1024];
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, in) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            fprintf(out, "%s = %s\n", key, value);
        else
            fputs(line, out);
    }
    fclose(in);
    IT_REQUIRE(ctx, fclose(out) == 0, "write %s", path);

    struct it_topics t;
    it_topics_make(ctx, &t, 1, 1, NULL, NULL);
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", CONNECT_TIMEOUT_S);
    IT_REQUIRE(ctx, setenv("KINFER_CONFIG", path, 1) == 0, "setenv");
    struct it_proc *p = spawn(ctx, &t, label, brokers, timeout);
    IT_REQUIRE(ctx, unsetenv("KINFER_CONFIG") == 0, "unsetenv");
    int64_t ms = 0;
    require_exit(ctx, p, 0 /* non-zero wanted */,
                 CONNECT_TIMEOUT_S * 1000 + EXIT_SLACK_MS, &ms);
    unlink(path);

    const char *log = it_proc_log_path(p);
    IT_REQUIRE(ctx, file_contains(log, want), "no '%s' in %s", want, log);
    IT_REQUIRE(ctx, file_contains(log, "ERROR"), "no ERROR line in %s", log);
    IT_REQUIRE(ctx, file_contains(log, "no successful connection"),
               "no 'no successful connection' line in %s", log);
    IT_REQUIRE(ctx, !file_contains(log, value), "'%s' appears in %s", value,
               log);
    IT_REQUIRE(ctx, !file_contains(log, password),
               "the right password appears in %s", log);
    IT_REQUIRE(ctx, ms >= CONNECT_TIMEOUT_S * 1000,
               "exited after %lld ms, before the %d s connect timeout",
               (long long)ms, CONNECT_TIMEOUT_S);
    return ms;
}

/* A wrong password: "authentication failed", then the bounded exit. */
static void test_wrong_password_fails_visibly(void **state)
{
    struct it_ctx *ctx = *state;
    char wrong[64];
    snprintf(wrong, sizeof wrong, "wrong-%ld-Xy7", (long)getpid());
    int64_t ms = bad_setting_fails(ctx, "badpw", "sasl.password", wrong,
                                   "authentication failed");
    printf("RESULT it_sasl_wrong_password connect_timeout_s=%d "
           "exit_after_ms=%lld\n",
           CONNECT_TIMEOUT_S, (long long)ms);
}

/* A CA that did not sign the broker's certificate: "TLS failed", then the
 * bounded exit. */
static void test_untrusted_broker_fails_visibly(void **state)
{
    struct it_ctx *ctx = *state;
    char ca[1024];
    snprintf(ca, sizeof ca, "%s/tls/other-ca.pem", sasl_dir);
    int64_t ms =
        bad_setting_fails(ctx, "badca", "ssl.ca.location", ca, "TLS failed");
    printf("RESULT it_sasl_untrusted_ca connect_timeout_s=%d "
           "exit_after_ms=%lld\n",
           CONNECT_TIMEOUT_S, (long long)ms);
}

/* A mistyped secret property on the command line stops start-up (exit 2)
 * with a message that names it but does not show its value. */
static void test_mistyped_secret_not_echoed(void **state)
{
    struct it_ctx *ctx = *state;
    const char *secret = "sasl.passwrd=Hunter2-it-sasl";
    const char *args[] = {"-X", secret, NULL};
    struct it_proc *p = it_worker_spawn(ctx, "typo", args);
    IT_REQUIRE(ctx, p != NULL, "spawn typo");
    int status = 0;
    char st[64];
    IT_REQUIRE(ctx, it_proc_wait(p, 30000, &status, NULL) == 0,
               "typo did not exit");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 2,
               "typo ended with %s, expected exit 2",
               it_status_str(status, st, sizeof st));
    const char *log = it_proc_log_path(p);
    IT_REQUIRE(ctx, file_contains(log, "-X sasl.passwrd=[redacted]"),
               "no redacted property named in %s", log);
    IT_REQUIRE(ctx, !file_contains(log, "Hunter2"), "the value appears in %s",
               log);
}

/* Whether the installed librdkafka can speak SASL/SCRAM over TLS. */
static int rdkafka_has_sasl_ssl(void)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char features[512];
    size_t size = sizeof features;
    int ok = rd_kafka_conf_get(c, "builtin.features", features, &size) ==
                 RD_KAFKA_CONF_OK &&
             strstr(features, "ssl") != NULL &&
             strstr(features, "sasl_scram") != NULL;
    rd_kafka_conf_destroy(c);
    return ok;
}

int main(int argc, char **argv)
{
    /* Our own argument, --sasl-dir DIR, is taken out before the harness
     * sees the rest. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n = 0;
    if (rest == NULL)
        return 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--sasl-dir") == 0 && i + 1 < argc)
            sasl_dir = argv[++i];
        else
            rest[n++] = argv[i];
    }
    if (sasl_dir == NULL) {
        fprintf(stderr, "it_sasl: --sasl-dir DIR is required\n");
        free(rest);
        return 2;
    }
    if (!rdkafka_has_sasl_ssl()) {
        printf("SKIP it_sasl: librdkafka %s lacks ssl or sasl_scram\n",
               rd_kafka_version_str());
        free(rest);
        return 0;
    }
    /* This test has a broker of its own; a shared one named in the
     * environment has no SASL_SSL listener. */
    unsetenv("KINFER_TEST_BROKERS");
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sasl_ssl_answers),
        cmocka_unit_test(test_wrong_password_fails_visibly),
        cmocka_unit_test(test_untrusted_broker_fails_visibly),
        cmocka_unit_test(test_mistyped_secret_not_echoed),
    };
    int rc = it_main("sasl", n, rest, tests, sizeof tests / sizeof tests[0]);
    free(rest);
    return rc;
}
