/* Integration test: deadlines.  A backlog of requests is produced before
 * the worker starts: some expired by their kinfer-deadline-ms header, by
 * parameters.timeout_ms from an old timestamp, or by --max-age; others
 * still in time (a future header deadline, a long timeout_ms that
 * overrides --max-age on an old message, fresh messages).  Every expired
 * one must get an "expired" error result and no scale result (it never
 * ran); every other one its scale result; a malformed deadline header is
 * an error result plus a dead letter.
 */
#include "harness.h"
#include "pipe_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define PER_KIND 150
#define OLD_MS 600000   /* an old message's age */
#define MAX_AGE "60000" /* the worker's --max-age */
#define FACTOR 3

enum kind {
    EXP_HEADER,  /* header deadline a minute ago */
    EXP_TIMEOUT, /* old message, timeout_ms 60 s */
    EXP_AGE,     /* old message, no deadline: --max-age */
    OK_HEADER,   /* header deadline in ten minutes */
    OK_TIMEOUT,  /* old message, timeout_ms one hour: beats --max-age */
    OK_FRESH,    /* fresh message, no deadline */
    N_KINDS
};
static const char *const kind_name[N_KINDS] = {"exp-header", "exp-timeout",
                                               "exp-age",    "ok-header",
                                               "ok-timeout", "ok-fresh"};
#define EXPIRES(k) ((k) <= EXP_AGE)

struct tally {
    unsigned ran[N_KINDS][PER_KIND];     /* scale results */
    unsigned expired[N_KINDS][PER_KIND]; /* "expired" error results */
    unsigned other[N_KINDS][PER_KIND];   /* any other answer */
    unsigned bad_results, bad_dead;      /* the malformed-header request */
    char first_other[256];
    size_t answered; /* requests with at least one answer */
};

static int parse_key(const struct it_msg *m, int *kind, int *i)
{
    if (m->key == NULL)
        return -1;
    for (int k = 0; k < N_KINDS; k++) {
        size_t n = strlen(kind_name[k]);
        if (m->key_len > n + 1 && strncmp(m->key, kind_name[k], n) == 0 &&
            m->key[n] == '-') {
            *kind = k;
            *i = atoi(m->key + n + 1);
            return *i >= 0 && *i < PER_KIND ? 0 : -1;
        }
    }
    return -1;
}

static void on_result(const struct it_msg *m, void *arg)
{
    struct tally *t = arg;
    if (m->key != NULL && strcmp(m->key, "bad-header") == 0) {
        t->bad_results++;
        return;
    }
    int k, i;
    if (parse_key(m, &k, &i) != 0)
        return;
    if (t->ran[k][i] + t->expired[k][i] + t->other[k][i] == 0)
        t->answered++;
    double v = 0;
    char err[512];
    int rc = pu_result_value(m, &v, err, sizeof err);
    if (rc == 1 && v == (double)(FACTOR * i))
        t->ran[k][i]++;
    else if (rc == 0 && strncmp(err, "expired:", 8) == 0)
        t->expired[k][i]++;
    else {
        t->other[k][i]++;
        if (t->first_other[0] == '\0')
            snprintf(t->first_other, sizeof t->first_other, "%s: %.200s",
                     m->key, m->value ? m->value : "(null)");
    }
}

static void on_dead(const struct it_msg *m, void *arg)
{
    struct tally *t = arg;
    if (m->key != NULL && strcmp(m->key, "bad-header") == 0)
        t->bad_dead++;
}

static int all_answered(void *arg)
{
    struct tally *t = arg;
    return t->answered == (size_t)N_KINDS * PER_KIND && t->bad_results > 0;
}

static int bad_dead(void *arg)
{
    return ((struct tally *)arg)->bad_dead > 0;
}

static void test_deadline_backlog(void **state)
{
    struct it_ctx *ctx = *state;
    struct it_topics t;
    it_topics_make(ctx, &t, 2, 2, NULL, NULL);
    rd_kafka_t *rk = pu_producer_new(ctx);
    IT_REQUIRE(ctx, rk != NULL, "producer");

    int64_t now = pu_epoch_ms();
    for (int i = 0; i < PER_KIND; i++) {
        for (int k = 0; k < N_KINDS; k++) {
            char key[64], id[64], req[512], num[32];
            snprintf(key, sizeof key, "%s-%d", kind_name[k], i);
            snprintf(id, sizeof id, "%s", key);
            const char *extra = NULL;
            int64_t ts = 0;
            rd_kafka_headers_t *h = rd_kafka_headers_new(2);
            rd_kafka_header_add(h, "trace-id", -1, key, -1);
            switch (k) {
            case EXP_HEADER:
            case OK_HEADER:
                snprintf(
                    num, sizeof num, "%lld",
                    (long long)(k == EXP_HEADER ? now - 60000 : now + OLD_MS));
                rd_kafka_header_add(h, "kinfer-deadline-ms", -1, num, -1);
                break;
            case EXP_TIMEOUT:
                ts = now - OLD_MS;
                extra = ",\"timeout_ms\":60000";
                break;
            case EXP_AGE:
                ts = now - OLD_MS;
                break;
            case OK_TIMEOUT:
                ts = now - OLD_MS;
                extra = ",\"timeout_ms\":3600000";
                break;
            default:
                break;
            }
            pu_scale_request(req, sizeof req, id, FACTOR, i, extra);
            IT_REQUIRE(ctx, pu_produce(rk, t.in, -1, key, req, ts, h) == 0,
                       "produce %s", key);
        }
    }
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "kinfer-deadline-ms", -1, "soon", -1);
    char req[512];
    pu_scale_request(req, sizeof req, "bad-header", FACTOR, 1, NULL);
    IT_REQUIRE(ctx, pu_produce(rk, t.in, -1, "bad-header", req, 0, h) == 0,
               "produce bad-header");
    IT_REQUIRE(ctx, pu_flush(rk, 60000) == 0, "deliver the backlog");
    rd_kafka_destroy(rk);

    struct tally *ty = calloc(1, sizeof *ty);
    IT_REQUIRE(ctx, ty != NULL, "out of memory");
    struct it_reader *rout = it_reader_new(ctx, t.out, on_result, ty);
    struct it_reader *rdlq = it_reader_new(ctx, t.dlq, on_dead, ty);
    IT_REQUIRE(ctx, rout != NULL && rdlq != NULL, "readers");

    const char *args[] = {"--group",
                          t.group,
                          "--input-topic",
                          t.in,
                          "--output-topic",
                          t.out,
                          "--dlq-topic",
                          t.dlq,
                          "--threads",
                          "2",
                          "--max-age",
                          MAX_AGE,
                          NULL};
    struct it_proc *w = it_worker_spawn(ctx, "worker", args);
    IT_REQUIRE(ctx, w != NULL, "spawn worker");
    IT_REQUIRE(ctx,
               it_reader_wait(rout, all_answered, ty, 120000,
                              "an answer for every request") == 0,
               "answered %zu of %d", ty->answered, N_KINDS * PER_KIND);
    IT_REQUIRE(ctx,
               it_reader_wait(rdlq, bad_dead, ty, 60000,
                              "the malformed header dead-lettered") == 0,
               "no dead letter for the malformed deadline header");
    /* Late duplicates (none expected) would land now. */
    (void)it_reader_drain(rout, 1000);

    for (int k = 0; k < N_KINDS; k++) {
        unsigned ran = 0, exp = 0, other = 0;
        for (int i = 0; i < PER_KIND; i++) {
            ran += ty->ran[k][i] > 0;
            exp += ty->expired[k][i] > 0;
            other += ty->other[k][i] > 0;
        }
        print_message("%-12s %3u ran, %3u expired, %u other\n", kind_name[k],
                      ran, exp, other);
        IT_REQUIRE(ctx, other == 0, "%s: unexpected answer %s", kind_name[k],
                   ty->first_other);
        if (EXPIRES(k))
            IT_REQUIRE(ctx, ran == 0 && exp == PER_KIND,
                       "%s: %u ran, %u expired; expected 0 and %d",
                       kind_name[k], ran, exp, PER_KIND);
        else
            IT_REQUIRE(ctx, ran == PER_KIND && exp == 0,
                       "%s: %u ran, %u expired; expected %d and 0",
                       kind_name[k], ran, exp, PER_KIND);
    }

    IT_REQUIRE(ctx, it_proc_signal(w, SIGTERM) == 0, "SIGTERM worker");
    int status = 0;
    IT_REQUIRE(ctx, it_proc_wait(w, 45000, &status, NULL) == 0,
               "worker did not stop");
    IT_REQUIRE(ctx, WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "worker exit status");
    it_require_committed_at_end(ctx, t.in, t.group, 2);
    it_reader_free(rout);
    it_reader_free(rdlq);
    free(ty);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_backlog),
    };
    return it_main("deadline", argc, argv, tests,
                   sizeof tests / sizeof tests[0]);
}
