/* Tests for lib/options.c: precedence of flag > env > file > default, the
 * command-line and config-file syntax, the exact error messages that name
 * each source, -X/librdkafka property order and the --help text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/options.h"

static const struct kinfer_optdef defs[] = {
    {"brokers", "KINFER_BROKERS", KINFER_OPT_STRING, "localhost:9092", 0, 0,
     "LIST", "Kafka bootstrap servers", 0},
    {"threads", "KINFER_THREADS", KINFER_OPT_INT, "2", 1, 1024, "N",
     "Inference threads", 0},
    {"topic", "KINFER_TOPIC", KINFER_OPT_STRING, NULL, 0, 0, "NAME",
     "Input topic", 0},
    {"partition", "KINFER_PARTITION", KINFER_OPT_INT, NULL, -1, 1000, "N",
     "Only this partition", 0},
    {"max-batch", NULL, KINFER_OPT_INT, "8", 1, 64, "N", "Largest batch", 0},
    {"verbose", "KINFER_VERBOSE", KINFER_OPT_FLAG, "false", 0, 0, NULL,
     "Log more", 0},
    {"dry-run", NULL, KINFER_OPT_FLAG, NULL, 0, 0, NULL,
     "Consume but do not produce", 0},
    {"config", "KINFER_CONFIG", KINFER_OPT_STRING, NULL, 0, 0, "FILE",
     "Config file", 1},
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

#define ARGS(...) ((char *const[]){"kinfer", __VA_ARGS__, NULL})
#define NOARGS ((char *const[]){"kinfer", NULL})
#define ENV(...) ((char *const[]){__VA_ARGS__, NULL})

#define ERRSIZE 512

static int count_args(char *const *argv)
{
    int n = 0;
    while (argv[n] != NULL)
        n++;
    return n;
}

static struct kinfer_opts *parse_ok(char *const *argv, char *const *envp)
{
    struct kinfer_opts *o = NULL;
    char err[ERRSIZE] = "untouched";
    enum kinfer_err rc = kinfer_opts_parse(defs, NDEFS, count_args(argv), argv,
                                           envp, &o, err, sizeof(err));
    if (rc != KINFER_OK)
        fail_msg("unexpected error %d: %s", (int)rc, err);
    assert_non_null(o);
    assert_string_equal(err, "");
    return o;
}

static void parse_fails(char *const *argv, char *const *envp, const char *want)
{
    struct kinfer_opts *o = NULL;
    char err[ERRSIZE] = "";
    enum kinfer_err rc = kinfer_opts_parse(defs, NDEFS, count_args(argv), argv,
                                           envp, &o, err, sizeof(err));
    assert_int_equal(rc, KINFER_ERR_CONFIG);
    assert_null(o);
    assert_string_equal(err, want);
}

/* A config file written for one test and removed by its teardown. */
struct conf {
    char path[64];
    char arg[96]; /* "--config=<path>" */
    char env[96]; /* "KINFER_CONFIG=<path>" */
};

static int conf_setup(void **state)
{
    struct conf *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    *state = c;
    return 0;
}

static int conf_teardown(void **state)
{
    struct conf *c = *state;
    if (c->path[0] != '\0')
        unlink(c->path);
    free(c);
    return 0;
}

static struct conf *conf_write(void **state, const char *text)
{
    struct conf *c = *state;
    snprintf(c->path, sizeof(c->path), "/tmp/kinfer-opts-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        assert_true(n > 0);
        done += (size_t)n;
    }
    assert_int_equal(close(fd), 0);
    snprintf(c->arg, sizeof(c->arg), "--config=%s", c->path);
    snprintf(c->env, sizeof(c->env), "KINFER_CONFIG=%s", c->path);
    return c;
}

/* "<path>:<rest>" for a message about the test's config file. */
static const char *at(const struct conf *c, const char *rest)
{
    static char buf[ERRSIZE];
    snprintf(buf, sizeof(buf), "%s:%s", c->path, rest);
    return buf;
}

static void test_free_null(void **state)
{
    (void)state;
    kinfer_opts_free(NULL);
}

static void test_defaults_only(void **state)
{
    (void)state;
    struct kinfer_opts *o = parse_ok(NOARGS, NULL);
    assert_string_equal(kinfer_opts_get(o, "brokers"), "localhost:9092");
    assert_string_equal(kinfer_opts_source(o, "brokers"), "default");
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 2);
    assert_string_equal(kinfer_opts_get(o, "threads"), "2");
    assert_null(kinfer_opts_get(o, "topic"));
    assert_string_equal(kinfer_opts_source(o, "topic"), "unset");
    assert_null(kinfer_opts_get(o, "partition"));
    assert_int_equal(kinfer_opts_get_int(o, "partition"), 0);
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 0);
    assert_string_equal(kinfer_opts_get(o, "verbose"), "false");
    assert_int_equal(kinfer_opts_get_flag(o, "dry-run"), 0);
    assert_null(kinfer_opts_get(o, "dry-run"));
    assert_int_equal(kinfer_opts_kafka_count(o), 0);
    assert_false(kinfer_opts_help_requested(o));
    assert_false(kinfer_opts_version_requested(o));
    kinfer_opts_free(o);
}

static void test_env_beats_default(void **state)
{
    (void)state;
    /* Near-miss names must not match; the first duplicate wins, as with
     * getenv. */
    struct kinfer_opts *o =
        parse_ok(NOARGS, ENV("KINFER_THREADSX=9", "KINFER_THREAD=7", "OTHER=1",
                             "KINFER_THREADS=8", "KINFER_VERBOSE=yes",
                             "KINFER_TOPIC=first", "KINFER_TOPIC=second"));
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 8);
    assert_string_equal(kinfer_opts_source(o, "threads"), "env");
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 1);
    assert_string_equal(kinfer_opts_get(o, "verbose"), "true");
    assert_string_equal(kinfer_opts_get(o, "topic"), "first");
    assert_string_equal(kinfer_opts_source(o, "brokers"), "default");
    kinfer_opts_free(o);
}

static void test_file_beats_default(void **state)
{
    struct conf *c = conf_write(state, "threads = 16\nverbose = 1\n");
    struct kinfer_opts *o = parse_ok(ARGS(c->arg), NULL);
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 16);
    assert_string_equal(kinfer_opts_source(o, "threads"), "file");
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 1);
    assert_string_equal(kinfer_opts_source(o, "verbose"), "file");
    assert_string_equal(kinfer_opts_get(o, "brokers"), "localhost:9092");
    assert_string_equal(kinfer_opts_source(o, "brokers"), "default");
    assert_string_equal(kinfer_opts_get(o, "config"), c->path);
    assert_string_equal(kinfer_opts_source(o, "config"), "flag");
    kinfer_opts_free(o);
}

static void test_env_beats_file(void **state)
{
    struct conf *c = conf_write(state, "threads = 16\nbrokers = filehost\n");
    struct kinfer_opts *o = parse_ok(ARGS(c->arg), ENV("KINFER_THREADS=8"));
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 8);
    assert_string_equal(kinfer_opts_source(o, "threads"), "env");
    assert_string_equal(kinfer_opts_get(o, "brokers"), "filehost");
    assert_string_equal(kinfer_opts_source(o, "brokers"), "file");
    kinfer_opts_free(o);
}

static void test_flag_beats_env_and_file(void **state)
{
    struct conf *c = conf_write(state, "threads = 16\ntopic = filetopic\n"
                                       "verbose = false\n");
    struct kinfer_opts *o = parse_ok(
        ARGS(c->arg, "--threads", "4", "--topic", "flagtopic", "--verbose"),
        ENV("KINFER_THREADS=8", "KINFER_TOPIC=envtopic", "KINFER_VERBOSE=no"));
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 4);
    assert_string_equal(kinfer_opts_source(o, "threads"), "flag");
    assert_string_equal(kinfer_opts_get(o, "topic"), "flagtopic");
    assert_string_equal(kinfer_opts_source(o, "topic"), "flag");
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 1);
    assert_string_equal(kinfer_opts_source(o, "verbose"), "flag");
    kinfer_opts_free(o);
}

static void test_flag_beats_file(void **state)
{
    struct conf *c = conf_write(state, "threads = 16\n");
    struct kinfer_opts *o = parse_ok(ARGS("--threads=3", c->arg), NULL);
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 3);
    assert_string_equal(kinfer_opts_source(o, "threads"), "flag");
    kinfer_opts_free(o);
}

static void test_config_path_from_env(void **state)
{
    struct conf *c = conf_write(state, "topic = requests\n");
    struct kinfer_opts *o = parse_ok(NOARGS, ENV(c->env));
    assert_string_equal(kinfer_opts_get(o, "topic"), "requests");
    assert_string_equal(kinfer_opts_source(o, "topic"), "file");
    assert_string_equal(kinfer_opts_source(o, "config"), "env");
    kinfer_opts_free(o);
}

static void test_config_flag_beats_config_env(void **state)
{
    /* Only the file named by the flag is read. */
    struct conf *c = conf_write(state, "topic = requests\n");
    struct kinfer_opts *o = parse_ok(ARGS("--config", c->path),
                                     ENV("KINFER_CONFIG=/nonexistent/x.conf"));
    assert_string_equal(kinfer_opts_get(o, "topic"), "requests");
    kinfer_opts_free(o);
}

static void test_long_forms(void **state)
{
    (void)state;
    struct kinfer_opts *o =
        parse_ok(ARGS("--threads=5", "--brokers", "a:1,b:2", "--max-batch", "1",
                      "--max-batch=64", "--partition", "-1", "--topic=x=y"),
                 NULL);
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 5);
    assert_string_equal(kinfer_opts_get(o, "brokers"), "a:1,b:2");
    assert_int_equal(kinfer_opts_get_int(o, "max-batch"), 64);
    assert_int_equal(kinfer_opts_get_int(o, "partition"), -1);
    assert_string_equal(kinfer_opts_get(o, "topic"), "x=y");
    kinfer_opts_free(o);

    o = parse_ok(ARGS("--"), NULL);
    kinfer_opts_free(o);
}

static void test_flags(void **state)
{
    struct kinfer_opts *o = parse_ok(ARGS("--verbose", "--dry-run=1"), NULL);
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 1);
    assert_int_equal(kinfer_opts_get_flag(o, "dry-run"), 1);
    assert_string_equal(kinfer_opts_get(o, "dry-run"), "true");
    kinfer_opts_free(o);

    o = parse_ok(ARGS("--verbose", "--verbose=no"), ENV("KINFER_VERBOSE=1"));
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 0);
    assert_string_equal(kinfer_opts_source(o, "verbose"), "flag");
    kinfer_opts_free(o);

    o = parse_ok(ARGS("--verbose=false"), NULL);
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 0);
    kinfer_opts_free(o);

    o = parse_ok(NOARGS, ENV("KINFER_VERBOSE=TRUE"));
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 1);
    kinfer_opts_free(o);

    parse_fails(ARGS("--verbose=maybe"), NULL,
                "--verbose: expected true/false, 1/0 or yes/no, got 'maybe'");
    parse_fails(NOARGS, ENV("KINFER_VERBOSE=2"),
                "KINFER_VERBOSE: expected true/false, 1/0 or yes/no, "
                "got '2'");
    /* A flag takes no separate value, so the word after it is a stray. */
    parse_fails(ARGS("--verbose", "true"), NULL, "unexpected argument 'true'");

    struct conf *c = conf_write(state, "verbose = yes\n");
    o = parse_ok(ARGS(c->arg), NULL);
    assert_int_equal(kinfer_opts_get_flag(o, "verbose"), 1);
    kinfer_opts_free(o);
}

static void test_kafka_order(void **state)
{
    struct conf *c = conf_write(state, "linger.ms = 5\n"
                                       "  security.protocol\t=  plaintext \n");
    struct kinfer_opts *o = parse_ok(
        ARGS("-X", "acks=all", c->arg, "-Xlinger.ms=10", "-X", "client.id=a=b"),
        NULL);
    static const char *const want[][2] = {
        {"linger.ms", "5"},   {"security.protocol", "plaintext"},
        {"acks", "all"},      {"linger.ms", "10"},
        {"client.id", "a=b"},
    };
    size_t n = sizeof(want) / sizeof(want[0]);
    assert_int_equal(kinfer_opts_kafka_count(o), n);
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        const char *value = NULL;
        kinfer_opts_kafka_at(o, i, &name, &value);
        assert_string_equal(name, want[i][0]);
        assert_string_equal(value, want[i][1]);
    }
    kinfer_opts_free(o);
}

static void test_x_errors(void **state)
{
    (void)state;
    parse_fails(ARGS("-X", "foo"), NULL, "-X: expected name=value, got 'foo'");
    parse_fails(ARGS("-Xfoo"), NULL, "-X: expected name=value, got 'foo'");
    parse_fails(ARGS("-X", "=v"), NULL, "-X: expected name=value, got '=v'");
    parse_fails(ARGS("-X", "acks="), NULL,
                "-X: expected name=value, got 'acks='");
    parse_fails(ARGS("-X"), NULL, "-X: missing value");
}

/* A malformed -X whose text names a secret property is not echoed: it may
 * be "name:value" or "name value" typed by mistake. */
static void test_x_secret_not_echoed(void **state)
{
    (void)state;
    static const char *const args[] = {"sasl.password:hunter2",
                                       "ssl.key.password hunter2",
                                       "SASL.USERNAME", "my.Token:hunter2"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        parse_fails(ARGS("-X", (char *)args[i]), NULL,
                    "-X: expected name=value, got '[redacted]'");
    }
    /* A property without a secret-like name is still quoted. */
    parse_fails(ARGS("-X", "linger.ms:5"), NULL,
                "-X: expected name=value, got 'linger.ms:5'");
}

static void test_argv_errors(void **state)
{
    (void)state;
    parse_fails(ARGS("--thread", "4"), NULL,
                "unknown option '--thread' (see --help)");
    parse_fails(ARGS("--thread=4"), NULL,
                "unknown option '--thread' (see --help)");
    parse_fails(ARGS("-x"), NULL, "unknown option '-x' (see --help)");
    parse_fails(ARGS("--brokers"), NULL, "--brokers: missing value");
    parse_fails(ARGS("--brokers", "--threads", "3"), NULL,
                "--brokers: missing value");
    parse_fails(ARGS("extra"), NULL, "unexpected argument 'extra'");
    parse_fails(ARGS("--threads", "3", "-"), NULL, "unexpected argument '-'");
    parse_fails(ARGS("--", "foo"), NULL, "unexpected argument 'foo'");
    parse_fails(ARGS("--help=1"), NULL, "--help: takes no value");
    parse_fails(ARGS("--brokers="), NULL,
                "--brokers: expected a non-empty value");
    parse_fails(NOARGS, ENV("KINFER_TOPIC="),
                "KINFER_TOPIC: expected a non-empty value");
}

static void test_help_version(void **state)
{
    (void)state;
    struct kinfer_opts *o = parse_ok(ARGS("-h"), NULL);
    assert_true(kinfer_opts_help_requested(o));
    assert_false(kinfer_opts_version_requested(o));
    kinfer_opts_free(o);

    o = parse_ok(ARGS("--version"), NULL);
    assert_false(kinfer_opts_help_requested(o));
    assert_true(kinfer_opts_version_requested(o));
    kinfer_opts_free(o);

    o = parse_ok(ARGS("-V", "--help"), NULL);
    assert_true(kinfer_opts_help_requested(o));
    assert_true(kinfer_opts_version_requested(o));
    kinfer_opts_free(o);

    /* A broken environment or missing config file must not hide help. */
    o = parse_ok(ARGS("--config=/nonexistent/kinfer.conf", "--help"),
                 ENV("KINFER_THREADS=lots"));
    assert_true(kinfer_opts_help_requested(o));
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 2);
    kinfer_opts_free(o);

    /* ... but a bad command line is still reported. */
    parse_fails(ARGS("--help", "--thread"), NULL,
                "unknown option '--thread' (see --help)");
}

static void test_int_errors_from_flag(void **state)
{
    (void)state;
    static char *const bad[] = {
        "abc",  "0",   "1025", "99999999999999999999", " 5", "5 ", "5x", "",
        "0x10", "1.5", "-3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[ERRSIZE];
        snprintf(want, sizeof(want),
                 "--threads: expected an integer from 1 to 1024, got '%s'",
                 bad[i]);
        parse_fails(ARGS("--threads", bad[i]), NULL, want);
    }
    parse_fails(ARGS("--partition=-2"), NULL,
                "--partition: expected an integer from -1 to 1000, "
                "got '-2'");

    struct kinfer_opts *o =
        parse_ok(ARGS("--threads", "1024", "--max-batch", "1"), NULL);
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 1024);
    assert_int_equal(kinfer_opts_get_int(o, "max-batch"), 1);
    kinfer_opts_free(o);
}

static void test_int_error_from_env(void **state)
{
    (void)state;
    parse_fails(NOARGS, ENV("KINFER_THREADS=0"),
                "KINFER_THREADS: expected an integer from 1 to 1024, "
                "got '0'");
}

static void test_int_error_from_file(void **state)
{
    struct conf *c = conf_write(state, "# comment\n\nthreads = 2000\n");
    parse_fails(ARGS(c->arg), NULL,
                at(c, "3: threads: expected an integer from 1 to 1024, "
                      "got '2000'"));
}

static void test_overridden_bad_value_reported(void **state)
{
    /* Every source is checked, not only the one that wins. */
    parse_fails(ARGS("--threads", "4"), ENV("KINFER_THREADS=abc"),
                "KINFER_THREADS: expected an integer from 1 to 1024, "
                "got 'abc'");
    struct conf *c = conf_write(state, "max-batch = 100\n");
    parse_fails(ARGS(c->arg, "--max-batch", "4"), NULL,
                at(c, "1: max-batch: expected an integer from 1 to 64, "
                      "got '100'"));
}

static void test_config_syntax(void **state)
{
    struct conf *c = conf_write(state, "# comment\n"
                                       "\n"
                                       "   \n"
                                       "  # indented comment\n"
                                       "  topic   =  requests  \n"
                                       "\tthreads=\t12\r\n"
                                       "brokers = h:1 # not a comment\n"
                                       "max-batch = 5\n"
                                       "max-batch = 6\n"
                                       "partition = 3");
    struct kinfer_opts *o = parse_ok(ARGS(c->arg), NULL);
    assert_string_equal(kinfer_opts_get(o, "topic"), "requests");
    assert_int_equal(kinfer_opts_get_int(o, "threads"), 12);
    assert_string_equal(kinfer_opts_get(o, "brokers"), "h:1 # not a comment");
    assert_int_equal(kinfer_opts_get_int(o, "max-batch"), 6);
    assert_int_equal(kinfer_opts_get_int(o, "partition"), 3);
    assert_int_equal(kinfer_opts_kafka_count(o), 0);
    kinfer_opts_free(o);
}

static void test_config_unknown_key(void **state)
{
    struct conf *c = conf_write(state, "topic = a\nthread = 3\n");
    parse_fails(ARGS(c->arg), NULL, at(c, "2: unknown key 'thread'"));
}

static void test_config_help_key(void **state)
{
    struct conf *c = conf_write(state, "help = 1\n");
    parse_fails(ARGS(c->arg), NULL, at(c, "1: unknown key 'help'"));
}

static void test_config_config_key(void **state)
{
    struct conf *c = conf_write(state, "config = /etc/other.conf\n");
    parse_fails(ARGS(c->arg), NULL,
                at(c, "1: config: not allowed in a config file"));
}

static void test_config_empty_value(void **state)
{
    struct conf *c = conf_write(state, "topic =\n");
    parse_fails(ARGS(c->arg), NULL, at(c, "1: topic: empty value"));
}

static void test_config_empty_kafka_value(void **state)
{
    struct conf *c = conf_write(state, "\nlinger.ms =   \n");
    parse_fails(ARGS(c->arg), NULL, at(c, "2: linger.ms: empty value"));
}

static void test_config_no_equals(void **state)
{
    struct conf *c = conf_write(state, "topic requests\n");
    parse_fails(ARGS(c->arg), NULL,
                at(c, "1: expected 'key = value' (line not shown: it may "
                      "hold a secret)"));
}

static void test_config_no_key(void **state)
{
    struct conf *c = conf_write(state, "  = x\n");
    parse_fails(ARGS(c->arg), NULL,
                at(c, "1: expected 'key = value' (line not shown: it may "
                      "hold a secret)"));
}

/* A bad line in a config file -- where secrets belong -- never shows its
 * text: the error names the file and line only. */
static void test_config_secret_line_not_quoted(void **state)
{
    struct conf *c = conf_write(state, "threads = 2\n"
                                       "sasl.password: hunter2\n");
    struct kinfer_opts *o = NULL;
    char err[ERRSIZE] = "";
    char *const *argv = ARGS(c->arg);
    assert_int_equal(kinfer_opts_parse(defs, NDEFS, count_args(argv), argv,
                                       NULL, &o, err, sizeof(err)),
                     KINFER_ERR_CONFIG);
    assert_null(strstr(err, "hunter2"));
    assert_string_equal(err, at(c, "2: expected 'key = value' (line not "
                                   "shown: it may hold a secret)"));
}

static void test_config_missing_file(void **state)
{
    (void)state;
    char want[ERRSIZE];
    snprintf(want, sizeof(want), "/nonexistent/kinfer.conf: %s",
             strerror(ENOENT));
    parse_fails(ARGS("--config=/nonexistent/kinfer.conf"), NULL, want);
    parse_fails(NOARGS, ENV("KINFER_CONFIG=/nonexistent/kinfer.conf"), want);
}

static void test_config_directory(void **state)
{
    (void)state;
    char want[ERRSIZE];
    snprintf(want, sizeof(want), "/: %s", strerror(EISDIR));
    parse_fails(ARGS("--config", "/"), NULL, want);
}

static void test_config_long_lines(void **state)
{
    /* "topic = " plus 4088 characters is exactly the 4096 allowed. */
    enum { MAXLINE = 4096, PREFIX = 8 };
    char *text = malloc(2 * MAXLINE + 16);
    assert_non_null(text);
    memcpy(text, "topic = ", PREFIX);
    memset(text + PREFIX, 'a', MAXLINE - PREFIX);
    text[MAXLINE] = '\n';
    text[MAXLINE + 1] = '\0';
    struct conf *c = conf_write(state, text);
    struct kinfer_opts *o = parse_ok(ARGS(c->arg), NULL);
    assert_int_equal(strlen(kinfer_opts_get(o, "topic")), MAXLINE - PREFIX);
    kinfer_opts_free(o);
    unlink(c->path);

    /* The same at end of file without a newline. */
    text[MAXLINE] = '\0';
    c = conf_write(state, text);
    o = parse_ok(ARGS(c->arg), NULL);
    assert_int_equal(strlen(kinfer_opts_get(o, "topic")), MAXLINE - PREFIX);
    kinfer_opts_free(o);
    unlink(c->path);

    /* One more is too long, on line 2. */
    memmove(text + 1, text, MAXLINE);
    text[0] = '\n';
    text[MAXLINE + 1] = 'a';
    text[MAXLINE + 2] = '\n';
    text[MAXLINE + 3] = '\0';
    c = conf_write(state, text);
    free(text);
    parse_fails(ARGS(c->arg), NULL,
                at(c, "2: line longer than 4096 characters"));
}

static void test_bad_default(void **state)
{
    (void)state;
    static const struct kinfer_optdef bad[] = {
        {"threads", NULL, KINFER_OPT_INT, "0", 1, 4, "N", "Threads", 0},
    };
    struct kinfer_opts *o = NULL;
    char err[ERRSIZE];
    assert_int_equal(
        kinfer_opts_parse(bad, 1, 1, NOARGS, NULL, &o, err, sizeof(err)),
        KINFER_ERR_CONFIG);
    assert_null(o);
    assert_string_equal(err, "default of --threads: expected an integer "
                             "from 1 to 4, got '0'");
}

static void test_small_error_buffer(void **state)
{
    (void)state;
    struct kinfer_opts *o = NULL;
    char err[8];
    char *const *argv = ARGS("--thread");
    assert_int_equal(
        kinfer_opts_parse(defs, NDEFS, 2, argv, NULL, &o, err, sizeof(err)),
        KINFER_ERR_CONFIG);
    assert_string_equal(err, "unknown");
    assert_int_equal(kinfer_opts_parse(defs, NDEFS, 2, argv, NULL, &o, NULL, 0),
                     KINFER_ERR_CONFIG);
    assert_null(o);
}

/* --------------------------------------------- KINFER_OPT_ADDR (--http) */

static const struct kinfer_optdef addr_defs[] = {
    {"http", "KINFER_HTTP", KINFER_OPT_ADDR, "0.0.0.0:8080", 0, 0, "ADDR:PORT",
     "Serve HTTP here", 0},
    {"config", "KINFER_CONFIG", KINFER_OPT_STRING, NULL, 0, 0, "FILE",
     "Config file", 1},
};
#define N_ADDR_DEFS (sizeof(addr_defs) / sizeof(addr_defs[0]))

/* The resolved --http, or the parse error, as text into out. */
static enum kinfer_err addr_parse(char *const *argv, char *const *envp,
                                  char *out, size_t size, const char **source)
{
    struct kinfer_opts *o = NULL;
    enum kinfer_err rc = kinfer_opts_parse(
        addr_defs, N_ADDR_DEFS, count_args(argv), argv, envp, &o, out, size);
    if (rc == KINFER_OK) {
        snprintf(out, size, "%s", kinfer_opts_get(o, "http"));
        *source = kinfer_opts_source(o, "http");
        kinfer_opts_free(o);
    }
    return rc;
}

static void test_addr_sources(void **state)
{
    const char *src = NULL;
    char out[ERRSIZE];
    assert_int_equal(addr_parse(NOARGS, NULL, out, sizeof out, &src),
                     KINFER_OK);
    assert_string_equal(out, "0.0.0.0:8080");
    assert_string_equal(src, "default");
    assert_int_equal(addr_parse(NOARGS, ENV("KINFER_HTTP=127.0.0.1:0"), out,
                                sizeof out, &src),
                     KINFER_OK);
    assert_string_equal(out, "127.0.0.1:0");
    assert_string_equal(src, "env");
    assert_int_equal(addr_parse(ARGS("--http", "off"),
                                ENV("KINFER_HTTP=127.0.0.1:0"), out, sizeof out,
                                &src),
                     KINFER_OK);
    assert_string_equal(out, "off");
    assert_string_equal(src, "flag");
    assert_int_equal(
        addr_parse(ARGS("--http=[::1]:9100"), NULL, out, sizeof out, &src),
        KINFER_OK);
    assert_string_equal(out, "[::1]:9100");
    struct conf *c = conf_write(state, "http = localhost:65535\n");
    assert_int_equal(addr_parse(ARGS(c->arg), NULL, out, sizeof out, &src),
                     KINFER_OK);
    assert_string_equal(out, "localhost:65535");
    assert_string_equal(src, "file");
}

static void test_addr_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "8080",   ":8080",   "host:", "host:65536",  "host:-1", "host:8x",
        "::1:80", "[::1]80", "[]:80", "host:123456", "on",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *src = NULL;
        char out[ERRSIZE], want[ERRSIZE];
        char *argv[] = {"kinfer", "--http", (char *)bad[i], NULL};
        assert_int_equal(addr_parse(argv, NULL, out, sizeof out, &src),
                         KINFER_ERR_CONFIG);
        snprintf(want, sizeof want,
                 "--http: expected HOST:PORT (port 0 to 65535, [ADDR] for "
                 "IPv6) or off, got '%s'",
                 bad[i]);
        assert_string_equal(out, want);
    }
    const char *src = NULL;
    char out[ERRSIZE];
    assert_int_equal(
        addr_parse(NOARGS, ENV("KINFER_HTTP=nope"), out, sizeof out, &src),
        KINFER_ERR_CONFIG);
    assert_string_equal(out, "KINFER_HTTP: expected HOST:PORT (port 0 to "
                             "65535, [ADDR] for IPv6) or off, got 'nope'");
}

static void test_addr_split(void **state)
{
    (void)state;
    char host[16];
    int port = -1;
    assert_int_equal(kinfer_addr_split("off", host, sizeof host, &port), 1);
    assert_int_equal(
        kinfer_addr_split("0.0.0.0:8080", host, sizeof host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 8080);
    assert_int_equal(kinfer_addr_split("[::]:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "::");
    assert_int_equal(port, 0);
    assert_int_equal(
        kinfer_addr_split("worker-1.svc:65535", host, sizeof host, &port), 0);
    assert_string_equal(host, "worker-1.svc");
    assert_int_equal(port, 65535);
    /* A host that does not fit is refused, not cut. */
    assert_int_equal(
        kinfer_addr_split("a-very-long-host-name:80", host, sizeof host, &port),
        -1);
}

static void test_help_output(void **state)
{
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    kinfer_opts_print_help(defs, NDEFS, "kinfer-consumer [OPTIONS]",
                           "Consume inference requests from Kafka.", f);
    assert_int_equal(fclose(f), 0);
    assert_non_null(text);

    assert_memory_equal(text, "Usage: kinfer-consumer [OPTIONS]\n", 33);
    assert_non_null(strstr(text, "\nConsume inference requests from "
                                 "Kafka.\n"));
    assert_non_null(strstr(text, "\n  --threads N             Inference "
                                 "threads (env KINFER_THREADS, default: "
                                 "2)\n"));
    assert_non_null(strstr(text, "\n  --brokers LIST          Kafka "
                                 "bootstrap servers (env KINFER_BROKERS, "
                                 "default: localhost:9092)\n"));
    assert_non_null(strstr(text, "\n  --topic NAME            Input topic "
                                 "(env KINFER_TOPIC)\n"));
    assert_non_null(strstr(text, "\n  --max-batch N           Largest batch "
                                 "(default: 8)\n"));
    assert_non_null(strstr(text, "\n  --dry-run               Consume but do "
                                 "not produce\n"));
    assert_non_null(strstr(text, "\n  --verbose               Log more "
                                 "(env KINFER_VERBOSE, default: false)\n"));
    assert_non_null(strstr(text, "\n  -X name=value           "));
    assert_non_null(strstr(text, "\n  -h, --help              "));
    assert_non_null(strstr(text, "\n  -V, --version           "));
    for (size_t i = 0; i < NDEFS; i++) {
        char want[128];
        snprintf(want, sizeof(want), "\n  --%s ", defs[i].name);
        assert_non_null(strstr(text, want));
        assert_non_null(strstr(text, defs[i].help));
        if (defs[i].env != NULL)
            assert_non_null(strstr(text, defs[i].env));
    }

    /* Every option row starts its help text in the same column. */
    int rows = 0;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (strncmp(line, "  -", 3) == 0) {
            assert_true(nl - line > 26);
            assert_int_equal(line[25], ' ');
            assert_true(line[26] != ' ');
            rows++;
        }
        line = nl + 1;
    }
    assert_int_equal(rows, (int)NDEFS + 3);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_defaults_only),
        cmocka_unit_test(test_env_beats_default),
        cmocka_unit_test_setup_teardown(test_file_beats_default, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_env_beats_file, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_flag_beats_env_and_file,
                                        conf_setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_flag_beats_file, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_path_from_env, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_flag_beats_config_env,
                                        conf_setup, conf_teardown),
        cmocka_unit_test(test_long_forms),
        cmocka_unit_test_setup_teardown(test_flags, conf_setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_kafka_order, conf_setup,
                                        conf_teardown),
        cmocka_unit_test(test_x_errors),
        cmocka_unit_test(test_x_secret_not_echoed),
        cmocka_unit_test(test_argv_errors),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test(test_int_errors_from_flag),
        cmocka_unit_test(test_int_error_from_env),
        cmocka_unit_test_setup_teardown(test_int_error_from_file, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_overridden_bad_value_reported,
                                        conf_setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_syntax, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_unknown_key, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_help_key, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_config_key, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_empty_value, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_empty_kafka_value,
                                        conf_setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_no_equals, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_no_key, conf_setup,
                                        conf_teardown),
        cmocka_unit_test_setup_teardown(test_config_secret_line_not_quoted,
                                        conf_setup, conf_teardown),
        cmocka_unit_test(test_config_missing_file),
        cmocka_unit_test(test_config_directory),
        cmocka_unit_test_setup_teardown(test_config_long_lines, conf_setup,
                                        conf_teardown),
        cmocka_unit_test(test_bad_default),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_help_output),
        cmocka_unit_test_setup_teardown(test_addr_sources, conf_setup,
                                        conf_teardown),
        cmocka_unit_test(test_addr_errors),
        cmocka_unit_test(test_addr_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
