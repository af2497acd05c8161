/* kinfer-bench-passthrough: the reference the end-to-end benchmark
 * (tests/bench/e2e.sh) compares kinfer-worker with.  A raw librdkafka
 * consume -> produce loop: no JSON, no model, no threads of its own, but the
 * worker's Kafka contract: key, value and headers forwarded, and
 * at-least-once offsets (auto store off; offset + 1 stored only after the
 * result's delivery report; auto commit).  Its throughput is the limit the
 * broker and librdkafka allow on this machine.
 *
 * Single-threaded: the main thread polls the consumer, produces, and serves
 * the producer's delivery reports, so no state needs a lock. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#define BATCH 1024          /* messages taken from the consumer queue at once */
#define POLL_MS 100         /* consumer wait when idle; bounds signal latency */
#define BUSY_POLL_MS 1      /* consumer wait while delivery reports are due */
#define FLUSH_MS 30000      /* shutdown: wait this long for delivery reports */
#define MAX_PARTITION 65535 /* the opaque encoding below holds 16 bits */

_Static_assert(sizeof(uintptr_t) >= 8, "opaque packs partition and offset");

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* Everything the loop and the delivery report callback share; one thread
 * only (see the file comment). */
struct pass {
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    const char *in_topic;
    int64_t *next;      /* per input partition: offset to store, -1 none */
    unsigned char *bad; /* per partition: a delivery failed, store no more */
    int32_t n_part;     /* length of next and bad */
    int dirty;          /* next moved since the last store */
    uint64_t consumed, delivered, failed;
};

static void die(const char *what, const char *why)
{
    fprintf(stderr, "kinfer-bench-passthrough: %s: %s\n", what, why);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL)
        die("realloc", "out of memory");
    return q;
}

/* Grow the per-partition arrays so that index p exists. */
static void ensure_partition(struct pass *s, int32_t p)
{
    if (p < s->n_part)
        return;
    int32_t n = p + 1;
    s->next = xrealloc(s->next, (size_t)n * sizeof *s->next);
    s->bad = xrealloc(s->bad, (size_t)n);
    for (int32_t i = s->n_part; i < n; i++) {
        s->next[i] = -1;
        s->bad[i] = 0;
    }
    s->n_part = n;
}

/* Producer's delivery reports, served by rd_kafka_poll/flush on the main
 * thread.  Within one input partition results are produced in offset order
 * and the idempotent producer delivers them in order, so "offset + 1 of the
 * latest delivered" is the at-least-once watermark. */
static void delivered_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                         void *opaque)
{
    (void)rk;
    struct pass *s = opaque;
    uintptr_t packed = (uintptr_t)m->_private;
    int32_t p = (int32_t)(packed >> 48);
    int64_t off = (int64_t)(packed & ((UINT64_C(1) << 48) - 1));
    ensure_partition(s, p);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Never store past a lost result: it is read again next time. */
        if (s->failed++ < 10)
            fprintf(stderr,
                    "kinfer-bench-passthrough: delivery of [%" PRId32
                    "] %" PRId64 " failed: %s\n",
                    p, off, rd_kafka_err2str(m->err));
        s->bad[p] = 1;
        return;
    }
    s->delivered++;
    if (!s->bad[p] && off + 1 > s->next[p]) {
        s->next[p] = off + 1;
        s->dirty = 1;
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "kinfer-bench-passthrough: %s: %s\n", rd_kafka_name(rk),
            reason);
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        stopping = 1;
}

/* Hand every watermark that moved to the consumer; auto commit sends it.
 * A store for a partition no longer assigned fails harmlessly. */
static void store_offsets(struct pass *s)
{
    if (!s->dirty)
        return;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(s->n_part);
    for (int32_t p = 0; p < s->n_part; p++)
        if (s->next[p] >= 0)
            rd_kafka_topic_partition_list_add(l, s->in_topic, p)->offset =
                s->next[p];
    rd_kafka_offsets_store(s->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    s->dirty = 0;
}

/* Produce the result of m (key, value and headers as they came); waits
 * for queue room by serving delivery reports.  Returns 0, or -1 when
 * stopping or on a hard error. */
static int forward(struct pass *s, const char *out_topic, rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_detach_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = NULL;
    if (m->partition > MAX_PARTITION)
        die("input", "partition number above 65535");
    uintptr_t packed = ((uintptr_t)m->partition << 48) | (uintptr_t)m->offset;
    for (;;) {
        rd_kafka_resp_err_t e;
        if (hdrs != NULL)
            e = rd_kafka_producev(s->producer, RD_KAFKA_V_TOPIC(out_topic),
                                  RD_KAFKA_V_KEY(m->key, m->key_len),
                                  RD_KAFKA_V_VALUE(m->payload, m->len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_HEADERS(hdrs),
                                  RD_KAFKA_V_OPAQUE((void *)packed),
                                  RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(s->producer, RD_KAFKA_V_TOPIC(out_topic),
                                  RD_KAFKA_V_KEY(m->key, m->key_len),
                                  RD_KAFKA_V_VALUE(m->payload, m->len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE((void *)packed),
                                  RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "kinfer-bench-passthrough: produce: %s\n",
                    rd_kafka_err2str(e));
            if (hdrs != NULL)
                rd_kafka_headers_destroy(hdrs);
            return -1;
        }
        if (stopping) {
            if (hdrs != NULL)
                rd_kafka_headers_destroy(hdrs);
            return -1;
        }
        rd_kafka_poll(s->producer, 10);
        store_offsets(s);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: kinfer-bench-passthrough --brokers LIST --input-topic T "
               "--output-topic T\n"
               "         --group ID [-X name=value]...\n\n"
               "Copy every message of the input topic to the output topic "
               "(key, value,\n"
               "headers) with kinfer-worker's at-least-once offset rule, until "
               "SIGINT or\n"
               "SIGTERM; then flush, commit and print counters on stderr.  "
               "-X sets a\n"
               "librdkafka property on both the consumer and the producer "
               "(after the\n"
               "worker's defaults, which it mirrors).\n");
}

/* The worker's own defaults (lib/worker.c), so the two contenders differ
 * in kinfer's work only. */
static const char *const consumer_defaults[][2] = {
    {"partition.assignment.strategy", "cooperative-sticky"},
    {"enable.auto.commit", "true"},
    {"enable.auto.offset.store", "false"},
    {"auto.offset.reset", "earliest"},
    {"client.id", "kinfer-bench-passthrough"},
};
static const char *const producer_defaults[][2] = {
    {"enable.idempotence", "true"},
    {"linger.ms", "5"},
    {"client.id", "kinfer-bench-passthrough"},
};

static void conf_set(rd_kafka_conf_t *c, const char *name, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(c, name, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        die(name, err);
}

/* A handle with defaults, then the user's -X properties (n_user pairs of
 * "name=value" strings, split in place). */
static rd_kafka_t *make_handle(rd_kafka_type_t type, const char *brokers,
                               const char *const (*defs)[2], size_t n_defs,
                               char **user, size_t n_user, struct pass *s)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char err[512];
    conf_set(c, "bootstrap.servers", brokers);
    for (size_t i = 0; i < n_defs; i++)
        conf_set(c, defs[i][0], defs[i][1]);
    for (size_t i = 0; i < n_user; i++) {
        char *eq = strchr(user[i], '=');
        if (eq == NULL || eq == user[i])
            die("-X", "expected name=value");
        *eq = '\0';
        conf_set(c, user[i], eq + 1);
        *eq = '=';
    }
    rd_kafka_conf_set_opaque(c, s);
    rd_kafka_conf_set_error_cb(c, error_cb);
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(c, delivered_cb);
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
    if (rk == NULL)
        die("rd_kafka_new", err);
    return rk;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"input-topic", required_argument, NULL, 'i'},
        {"output-topic", required_argument, NULL, 'o'},
        {"group", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL, *in = NULL, *out = NULL, *group = NULL;
    char **user = xrealloc(NULL, (size_t)argc * sizeof *user);
    size_t n_user = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "X:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            brokers = optarg;
            break;
        case 'i':
            in = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'X':
            user[n_user++] = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (brokers == NULL || in == NULL || out == NULL || group == NULL ||
        optind != argc) {
        usage(stderr);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct pass s = {.in_topic = in};
    s.producer =
        make_handle(RD_KAFKA_PRODUCER, brokers, producer_defaults,
                    sizeof producer_defaults / sizeof producer_defaults[0],
                    user, n_user, &s);
    /* group.id is not a -X default: the driver gives every run its own. */
    char gprop[512];
    if ((size_t)snprintf(gprop, sizeof gprop, "group.id=%s", group) >=
        sizeof gprop)
        die("--group", "too long");
    user[n_user++] = gprop;
    s.consumer =
        make_handle(RD_KAFKA_CONSUMER, brokers, consumer_defaults,
                    sizeof consumer_defaults / sizeof consumer_defaults[0],
                    user, n_user, &s);
    rd_kafka_poll_set_consumer(s.consumer);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(s.consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("subscribe", rd_kafka_err2str(e));

    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(s.consumer);
    rd_kafka_message_t *batch[BATCH];
    int status = 0, halted = 0;
    while (!stopping) {
        /* Block for one message (short while results await delivery
         * reports), then take whatever else is ready without waiting:
         * rd_kafka_consume_batch_queue with a timeout would hold a partial
         * batch back until the timeout. */
        int poll_ms =
            rd_kafka_outq_len(s.producer) > 0 ? BUSY_POLL_MS : POLL_MS;
        ssize_t n = 0;
        batch[0] = rd_kafka_consumer_poll(s.consumer, poll_ms);
        if (batch[0] != NULL) {
            ssize_t more =
                rd_kafka_consume_batch_queue(q, 0, batch + 1, BATCH - 1);
            if (more < 0)
                die("consume", rd_kafka_err2str(rd_kafka_last_error()));
            n = 1 + more;
        }
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = batch[i];
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                s.consumed++;
                /* After one message is not forwarded, none of the later
                 * ones may be: a later delivery would store an offset past
                 * the missing result. */
                if (!halted && forward(&s, out, m) != 0) {
                    halted = 1;
                    if (!stopping)
                        status = 1;
                }
            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                fprintf(stderr, "kinfer-bench-passthrough: consume: %s\n",
                        rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
        }
        if (halted)
            break;
        rd_kafka_poll(s.producer, 0);
        store_offsets(&s);
    }
    rd_kafka_queue_destroy(q);

    /* Deliver what is in flight, store and commit its offsets, leave the
     * group: the same drain the worker does on SIGTERM. */
    if (rd_kafka_flush(s.producer, FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kinfer-bench-passthrough: flush timed out\n");
        status = 1;
    }
    store_offsets(&s);
    e = rd_kafka_commit(s.consumer, NULL, 0);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        fprintf(stderr, "kinfer-bench-passthrough: commit: %s\n",
                rd_kafka_err2str(e));
    rd_kafka_consumer_close(s.consumer);
    rd_kafka_destroy(s.consumer);
    rd_kafka_destroy(s.producer);
    fprintf(stderr,
            "kinfer-bench-passthrough: consumed %" PRIu64 " delivered %" PRIu64
            " failed %" PRIu64 "\n",
            s.consumed, s.delivered, s.failed);
    free(s.next);
    free(s.bad);
    free(user);
    if (s.failed > 0)
        status = 1;
    return status;
}
