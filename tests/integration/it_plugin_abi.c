/* Integration test: kinfer-worker refuses to start, with exit status 2 and
 * a message on stderr that names the culprit, when a --plugin is not a
 * usable backend (wrong ABI, no entry symbol, entry returns NULL, no such
 * file) or a --model-repo has a broken config.json.  Start-up fails before
 * any Kafka traffic, so the worker gets a broker address nobody listens on.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kinfer/backend.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* A refusal reads a few files and loads a few libraries; even under
 * AddressSanitizer it takes well under a second.  Beyond this the worker
 * has most likely gone on to run. */
#define EXIT_TIMEOUT_MS 15000
#define NOBODY_LISTENS "127.0.0.1:1"

/* Set by main from the command line. */
static const char *worker;
static const char *log_dir;
static const char *scratch; /* a directory for the broken repos */
static const char *bad_abi, *bad_null, *no_entry, *fasttext;

/* How one start of the worker ended. */
struct outcome {
    int status;    /* waitpid status */
    int timed_out; /* still running at the deadline: killed */
    long elapsed_ms;
    char out[8192]; /* what it wrote to stdout (truncated) */
    char err[8192]; /* ... and to stderr */
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void read_text(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Run the worker with "--brokers NOBODY_LISTENS" and args (NULL
 * terminated) until it exits or EXIT_TIMEOUT_MS pass.  Its stdout and
 * stderr go to <log_dir>/plugin_abi.<label>.{out,err} and into o. */
static void run_worker(const char *label, const char *const *args,
                       struct outcome *o)
{
    char out_path[1024], err_path[1024];
    snprintf(out_path, sizeof out_path, "%s/plugin_abi.%s.out", log_dir, label);
    snprintf(err_path, sizeof err_path, "%s/plugin_abi.%s.err", log_dir, label);
    memset(o, 0, sizeof *o);

    size_t nargs = 0;
    while (args[nargs] != NULL)
        nargs++;
    char **argv = calloc(nargs + 4, sizeof *argv);
    assert_non_null(argv);
    argv[0] = (char *)worker;
    argv[1] = "--brokers";
    argv[2] = NOBODY_LISTENS;
    for (size_t i = 0; i < nargs; i++)
        argv[3 + i] = (char *)args[i];

    /* Opened before fork: the child only dup2s and execs. */
    int ofd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int efd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (ofd < 0 || efd < 0 || nul < 0) {
        fprintf(stderr, "it: cannot open %s or %s: %s\n", out_path, err_path,
                strerror(errno));
        fail();
    }
    pid_t parent = getpid();
    fflush(NULL);
    long start = now_ms();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(nul, 0);
        dup2(ofd, 1);
        dup2(efd, 2);
        execv(argv[0], argv);
        static const char msg[] = "it: execv of the worker failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    close(ofd);
    close(efd);
    close(nul);
    free(argv);

    /* Poll for the exit against a deadline. */
    for (;;) {
        pid_t r = waitpid(pid, &o->status, WNOHANG);
        if (r == pid)
            break;
        assert_true(r == 0 || errno == EINTR);
        if (now_ms() - start > EXIT_TIMEOUT_MS) {
            o->timed_out = 1;
            kill(pid, SIGKILL);
            while (waitpid(pid, &o->status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        nap_ms(5);
    }
    o->elapsed_ms = now_ms() - start;
    read_text(out_path, o->out, sizeof o->out);
    read_text(err_path, o->err, sizeof o->err);
}

static const char *status_str(const struct outcome *o, char *buf, size_t size)
{
    if (o->timed_out)
        snprintf(buf, size, "still running after %d ms (killed)",
                 EXIT_TIMEOUT_MS);
    else if (WIFEXITED(o->status))
        snprintf(buf, size, "exit %d", WEXITSTATUS(o->status));
    else if (WIFSIGNALED(o->status))
        snprintf(buf, size, "signal %d", WTERMSIG(o->status));
    else
        snprintf(buf, size, "status 0x%x", (unsigned)o->status);
    return buf;
}

/* The worker must have exited 2 and its stderr must contain every one of
 * the NULL-terminated needles.  Prints what it saw when not. */
static void expect_refusal(const char *what, const struct outcome *o,
                           const char *const *needles)
{
    char st[96];
    int ok =
        !o->timed_out && WIFEXITED(o->status) && WEXITSTATUS(o->status) == 2;
    const char *lacking = NULL;
    for (size_t i = 0; needles[i] != NULL && lacking == NULL; i++) {
        if (strstr(o->err, needles[i]) == NULL)
            lacking = needles[i];
    }
    if (ok && lacking == NULL) {
        printf("RESULT it_plugin_abi %s: exit 2 after %ld ms: %s", what,
               o->elapsed_ms, o->err);
        return;
    }
    fprintf(stderr, "FAIL %s: %s (wanted exit 2)", what,
            status_str(o, st, sizeof st));
    if (lacking != NULL)
        fprintf(stderr, "; stderr lacks \"%s\"", lacking);
    fprintf(stderr, "\n---- stderr:\n%s---- stdout:\n%s----\n", o->err, o->out);
    fail();
}

/* ---------------------------------------------------------- plugins */

static void test_bad_abi(void **state)
{
    (void)state;
    struct outcome o;
    const char *args[] = {"--plugin", bad_abi, NULL};
    run_worker("bad_abi", args, &o);
    char kinfer_abi[64];
    snprintf(kinfer_abi, sizeof kinfer_abi, "kinfer speaks %u",
             KINFER_BACKEND_ABI_VERSION);
    const char *needles[] = {bad_abi, "backend ABI 999", kinfer_abi, NULL};
    expect_refusal("plugin of another ABI", &o, needles);
}

static void test_no_entry(void **state)
{
    (void)state;
    struct outcome o;
    const char *args[] = {"--plugin", no_entry, NULL};
    run_worker("no_entry", args, &o);
    const char *needles[] = {no_entry, KINFER_BACKEND_ENTRY_SYMBOL, NULL};
    expect_refusal("plugin without the entry symbol", &o, needles);
}

static void test_entry_null(void **state)
{
    (void)state;
    struct outcome o;
    const char *args[] = {"--plugin", bad_null, NULL};
    run_worker("null_entry", args, &o);
    const char *needles[] = {bad_null, "returned NULL", NULL};
    expect_refusal("plugin whose entry returns NULL", &o, needles);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct outcome o;
    char path[1024];
    snprintf(path, sizeof path, "%s/no-such-plugin.so", scratch);
    const char *args[] = {"--plugin", path, NULL};
    run_worker("missing", args, &o);
    const char *needles[] = {path, NULL};
    expect_refusal("plugin file that does not exist", &o, needles);
}

/* A good plugin first: the bad one after it still stops start-up (and the
 * good one is unloaded cleanly, which the sanitizers check). */
static void test_good_then_bad(void **state)
{
    (void)state;
    struct outcome o;
    const char *args[] = {"--plugin", fasttext, "--plugin", bad_abi, NULL};
    run_worker("good_then_bad", args, &o);
    const char *needles[] = {bad_abi, "backend ABI 999", NULL};
    expect_refusal("good plugin, then one of another ABI", &o, needles);
}

/* ------------------------------------------------------ broken repos */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "it: %s: %s\n", path, strerror(errno));
        fail();
    }
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "it: mkdir %s: %s\n", path, strerror(errno));
        fail();
    }
}

/* scratch/<repo>/<model>/config.json with text (NULL: no config.json),
 * and a valid "aaa" scale model beside it so one good model does not make
 * a broken one pass.  Writes the repo path to repo. */
static void make_repo(const char *name, const char *model, const char *text,
                      char *repo, size_t size)
{
    char path[1200];
    snprintf(repo, size, "%s/%s", scratch, name);
    make_dir(repo);
    snprintf(path, sizeof path, "%s/aaa", repo);
    make_dir(path);
    snprintf(path, sizeof path, "%s/aaa/config.json", repo);
    write_file(path, "{\"backend\": \"scale\"}\n");
    snprintf(path, sizeof path, "%s/%s", repo, model);
    make_dir(path);
    if (text != NULL) {
        snprintf(path, sizeof path, "%s/%s/config.json", repo, model);
        write_file(path, text);
    }
}

static void test_repo_invalid_json(void **state)
{
    (void)state;
    char repo[1024], file[1200];
    make_repo("repo-json", "broken",
              "{\"backend\": \"scale\",\n \"max_batch_size\": 4,,\n}\n", repo,
              sizeof repo);
    snprintf(file, sizeof file, "%s/broken/config.json", repo);
    struct outcome o;
    const char *args[] = {"--model-repo", repo, NULL};
    run_worker("repo_json", args, &o);
    const char *needles[] = {file, "invalid JSON", "line 2", NULL};
    expect_refusal("config.json that is not JSON", &o, needles);
}

static void test_repo_bad_field(void **state)
{
    (void)state;
    char repo[1024], file[1200];
    make_repo("repo-field", "zero_batch",
              "{\"backend\": \"scale\", \"max_batch_size\": 0}\n", repo,
              sizeof repo);
    snprintf(file, sizeof file, "%s/zero_batch/config.json", repo);
    struct outcome o;
    const char *args[] = {"--model-repo", repo, NULL};
    run_worker("repo_field", args, &o);
    const char *needles[] = {file, "max_batch_size", NULL};
    expect_refusal("config.json with max_batch_size 0", &o, needles);
}

static void test_repo_missing_config(void **state)
{
    (void)state;
    char repo[1024], file[1200];
    make_repo("repo-missing", "empty", NULL, repo, sizeof repo);
    snprintf(file, sizeof file, "%s/empty/config.json", repo);
    struct outcome o;
    const char *args[] = {"--model-repo", repo, NULL};
    run_worker("repo_missing", args, &o);
    const char *needles[] = {file, NULL};
    expect_refusal("model directory without config.json", &o, needles);
}

/* The repo names a plugin's backend, but no --plugin provides it. */
static void test_repo_backend_not_loaded(void **state)
{
    (void)state;
    char repo[1024];
    make_repo("repo-backend", "nlp",
              "{\"backend\": \"fasttext\", \"model\": \"model.bin\"}\n", repo,
              sizeof repo);
    struct outcome o;
    const char *args[] = {"--model-repo", repo, NULL};
    run_worker("repo_backend", args, &o);
    const char *needles[] = {"nlp", "fasttext", NULL};
    expect_refusal("model of a backend no plugin provides", &o, needles);
}

/* Options of our own; every one is required.  log_dir holds the workers'
 * output; scratch (created) the broken repositories. */
int main(int argc, char **argv)
{
    struct {
        const char *flag;
        const char **dst;
    } opts[] = {
        {"--worker", &worker},     {"--log-dir", &log_dir},
        {"--scratch", &scratch},   {"--bad-abi", &bad_abi},
        {"--bad-null", &bad_null}, {"--no-entry", &no_entry},
        {"--fasttext", &fasttext},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    for (int i = 1; i + 1 < argc; i += 2) {
        size_t k = 0;
        while (k < nopts && strcmp(argv[i], opts[k].flag) != 0)
            k++;
        if (k == nopts) {
            fprintf(stderr, "it: unknown argument %s\n", argv[i]);
            return 1;
        }
        *opts[k].dst = argv[i + 1];
    }
    for (size_t k = 0; k < nopts; k++) {
        if (*opts[k].dst == NULL) {
            fprintf(stderr, "it: %s PATH is required\n", opts[k].flag);
            return 1;
        }
    }
    if ((mkdir(log_dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(scratch, 0755) != 0 && errno != EEXIST)) {
        fprintf(stderr, "it: cannot create %s or %s: %s\n", log_dir, scratch,
                strerror(errno));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_abi),
        cmocka_unit_test(test_no_entry),
        cmocka_unit_test(test_entry_null),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_good_then_bad),
        cmocka_unit_test(test_repo_invalid_json),
        cmocka_unit_test(test_repo_bad_field),
        cmocka_unit_test(test_repo_missing_config),
        cmocka_unit_test(test_repo_backend_not_loaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
