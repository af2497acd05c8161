/* Test support for the integration tests: a librdkafka producer/admin
 * handle, topic readers, offset queries and worker processes, all owned by
 * one it_ctx so a failed test can still kill what it started.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define IT_MAX_PROCS 32
#define IT_ERRSTR 512
/* How long calls that talk to the broker may block before we give up. */
#define IT_BROKER_TIMEOUT_MS 30000

struct it_proc {
    struct it_ctx *ctx;
    pid_t pid;
    char label[64];
    char log_path[1024];
    int running;   /* not yet reaped */
    int signalled; /* the test asked it to exit: exiting is expected */
    int status;    /* waitpid status once reaped */
};

struct it_ctx {
    char name[64];
    char *brokers;
    char *worker;
    char *produce;
    char *log_dir;
    unsigned counter;
    rd_kafka_t *producer;
    int delivery_failures; /* since the last flush */
    struct it_proc *procs[IT_MAX_PROCS];
    int nprocs;
};

struct it_reader {
    struct it_ctx *ctx;
    rd_kafka_t *rk;
    char *topic;
    it_msg_fn *on_msg;
    void *arg;
    struct it_msg **msgs; /* pointers, so borrowed messages never move */
    size_t n, cap;
    int nparts;
    int64_t *eof; /* per partition: end offset at the last EOF event */
};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fprintf(stderr, "it: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t len = strlen(s);
    char *p = xcalloc(len + 1, 1);
    memcpy(p, s, len);
    return p;
}

/* A NUL-terminated copy of len bytes, or NULL for NULL. */
static char *xmemdup(const void *src, size_t len)
{
    if (src == NULL)
        return NULL;
    char *p = xcalloc(len + 1, 1);
    memcpy(p, src, len);
    return p;
}

int64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int mkdir_p(const char *path)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* The first line of path, without its newline, or NULL. */
static char *read_first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char line[1024];
    char *res = NULL;
    if (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '\0')
            res = xstrdup(line);
    }
    fclose(f);
    return res;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct it_ctx *ctx = opaque;
    struct it_delivery *dr = m->_private;
    (void)rk;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (ctx->delivery_failures < 5)
            fprintf(stderr, "it: delivery to %s failed: %s\n",
                    rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        ctx->delivery_failures++;
    }
    if (dr != NULL) {
        dr->err = (int)m->err;
        dr->partition = m->partition;
        dr->offset = m->offset;
    }
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[IT_ERRSTR];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "it: %s=%s: %s\n", name, value, errstr);
        return -1;
    }
    return 0;
}

static rd_kafka_t *client_new(struct it_ctx *ctx, rd_kafka_type_t type,
                              const char *const *props)
{
    char errstr[IT_ERRSTR];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", ctx->brokers) != 0)
        goto fail;
    for (size_t i = 0; props != NULL && props[i] != NULL; i += 2) {
        if (conf_set(conf, props[i], props[i + 1]) != 0)
            goto fail;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fprintf(stderr, "it: rd_kafka_new: %s\n", errstr);
        goto fail;
    }
    return rk;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static int wait_for_broker(struct it_ctx *ctx)
{
    int64_t deadline = it_now_ms() + 60000;
    rd_kafka_resp_err_t err;
    do {
        const struct rd_kafka_metadata *md = NULL;
        err = rd_kafka_metadata(ctx->producer, 1, NULL, &md, 5000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int brokers = md->broker_cnt;
            rd_kafka_metadata_destroy(md);
            if (brokers > 0)
                return 0;
        }
    } while (it_now_ms() < deadline);
    fprintf(stderr, "it: broker %s did not answer metadata within 60 s: %s\n",
            ctx->brokers, rd_kafka_err2str(err));
    return -1;
}

struct it_ctx *it_ctx_new(const char *name, int argc, char **argv)
{
    struct it_ctx *ctx = xcalloc(1, sizeof *ctx);
    const char *bootstrap_file = NULL;
    snprintf(ctx->name, sizeof ctx->name, "%s", name);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--worker") == 0)
            ctx->worker = xstrdup(argv[i + 1]);
        else if (strcmp(argv[i], "--produce") == 0)
            ctx->produce = xstrdup(argv[i + 1]);
        else if (strcmp(argv[i], "--bootstrap-file") == 0)
            bootstrap_file = argv[i + 1];
        else if (strcmp(argv[i], "--log-dir") == 0)
            ctx->log_dir = xstrdup(argv[i + 1]);
        else {
            fprintf(stderr, "it: unknown argument %s\n", argv[i]);
            goto fail;
        }
    }
    if (ctx->worker == NULL || ctx->log_dir == NULL) {
        fprintf(stderr,
                "usage: %s --worker PATH [--produce PATH] "
                "--log-dir DIR [--bootstrap-file PATH]\n",
                argv[0]);
        goto fail;
    }
    const char *env = getenv("KINFER_TEST_BROKERS");
    if (env != NULL && env[0] != '\0') {
        ctx->brokers = xstrdup(env);
    } else if (bootstrap_file != NULL) {
        ctx->brokers = read_first_line(bootstrap_file);
        if (ctx->brokers == NULL) {
            fprintf(stderr,
                    "it: cannot read a broker address from %s (%s): is the "
                    "kafka_start fixture running? Or set "
                    "KINFER_TEST_BROKERS=host:port\n",
                    bootstrap_file, strerror(errno));
            goto fail;
        }
    } else {
        fprintf(stderr, "it: no --bootstrap-file and KINFER_TEST_BROKERS "
                        "is not set\n");
        goto fail;
    }
    if (mkdir_p(ctx->log_dir) != 0) {
        fprintf(stderr, "it: cannot create %s: %s\n", ctx->log_dir,
                strerror(errno));
        goto fail;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", ctx->brokers) != 0 ||
        conf_set(conf, "message.max.bytes", "4000000") != 0 ||
        conf_set(conf, "linger.ms", "5") != 0 ||
        conf_set(conf, "enable.idempotence", "true") != 0) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, ctx);
    char errstr[IT_ERRSTR];
    ctx->producer =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (ctx->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "it: producer: %s\n", errstr);
        goto fail;
    }
    if (wait_for_broker(ctx) != 0)
        goto fail;
    fprintf(stderr, "it: %s: broker %s, logs in %s\n", ctx->name, ctx->brokers,
            ctx->log_dir);
    return ctx;
fail:
    it_ctx_free(ctx);
    return NULL;
}

void it_ctx_kill_all(struct it_ctx *ctx)
{
    for (int i = 0; i < ctx->nprocs; i++) {
        struct it_proc *p = ctx->procs[i];
        if (p->running) {
            p->signalled = 1;
            kill(p->pid, SIGKILL);
            while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
                ;
            p->running = 0;
        }
    }
}

int it_teardown(void **state)
{
    it_ctx_kill_all(*state);
    return 0;
}

void it_ctx_free(struct it_ctx *ctx)
{
    if (ctx == NULL)
        return;
    it_ctx_kill_all(ctx);
    for (int i = 0; i < ctx->nprocs; i++)
        free(ctx->procs[i]);
    if (ctx->producer != NULL) {
        rd_kafka_flush(ctx->producer, 5000);
        rd_kafka_destroy(ctx->producer);
    }
    free(ctx->brokers);
    free(ctx->worker);
    free(ctx->produce);
    free(ctx->log_dir);
    free(ctx);
}

const char *it_ctx_brokers(const struct it_ctx *ctx)
{
    return ctx->brokers;
}
const char *it_ctx_worker_path(const struct it_ctx *ctx)
{
    return ctx->worker;
}
const char *it_ctx_produce_path(const struct it_ctx *ctx)
{
    return ctx->produce;
}

void it_report_failure(struct it_ctx *ctx, const char *file, int line,
                       const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    for (int i = 0; ctx != NULL && i < ctx->nprocs; i++)
        it_proc_log_tail(ctx->procs[i], 40);
    fflush(stderr);
}

void it_unique_name(struct it_ctx *ctx, const char *what, char *buf,
                    size_t size)
{
    snprintf(buf, size, "kinfer-it-%s-%s-%ld-%u", ctx->name, what,
             (long)getpid(), ctx->counter++);
}

/* Partition count and whether every partition has a leader, per a fresh
 * metadata request.  Returns the partition count (0 when the topic is not
 * known yet), or -1 on a request error. */
static int topic_metadata(rd_kafka_t *rk, const char *topic, int *all_led)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 5000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    int count = 0;
    *all_led = 0;
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (strcmp(t->topic, topic) != 0 || t->err != 0)
            continue;
        count = t->partition_cnt;
        *all_led = count > 0;
        for (int p = 0; p < t->partition_cnt; p++) {
            if (t->partitions[p].leader < 0 || t->partitions[p].err != 0)
                *all_led = 0;
        }
    }
    rd_kafka_metadata_destroy(md);
    return count;
}

int it_topic_partitions(struct it_ctx *ctx, const char *topic)
{
    int all_led;
    int n = topic_metadata(ctx->producer, topic, &all_led);
    if (n <= 0)
        fprintf(stderr, "it: topic %s: no metadata\n", topic);
    return n > 0 ? n : -1;
}

int it_topic_create(struct it_ctx *ctx, const char *topic, int partitions,
                    const char *const *configs)
{
    char errstr[IT_ERRSTR];
    int rc = -1;
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof errstr);
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    if (nt == NULL) {
        fprintf(stderr, "it: NewTopic %s: %s\n", topic, errstr);
        return -1;
    }
    for (size_t i = 0; configs != NULL && configs[i] != NULL; i += 2) {
        if (rd_kafka_NewTopic_set_config(nt, configs[i], configs[i + 1]) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "it: topic config %s rejected\n", configs[i]);
            goto out;
        }
    }
    opts = rd_kafka_AdminOptions_new(ctx->producer,
                                     RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (rd_kafka_AdminOptions_set_operation_timeout(
            opts, IT_BROKER_TIMEOUT_MS, errstr, sizeof errstr) != 0 ||
        rd_kafka_AdminOptions_set_request_timeout(opts, IT_BROKER_TIMEOUT_MS,
                                                  errstr, sizeof errstr) != 0) {
        fprintf(stderr, "it: admin options: %s\n", errstr);
        goto out;
    }
    q = rd_kafka_queue_new(ctx->producer);
    rd_kafka_CreateTopics(ctx->producer, &nt, 1, opts, q);
    ev = rd_kafka_queue_poll(q, IT_BROKER_TIMEOUT_MS + 5000);
    if (ev == NULL) {
        fprintf(stderr, "it: CreateTopics %s: no result\n", topic);
        goto out;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "it: CreateTopics %s: %s\n", topic,
                rd_kafka_event_error_string(ev));
        goto out;
    }
    const rd_kafka_CreateTopics_result_t *res =
        rd_kafka_event_CreateTopics_result(ev);
    size_t nres = 0;
    const rd_kafka_topic_result_t **tres =
        rd_kafka_CreateTopics_result_topics(res, &nres);
    for (size_t i = 0; i < nres; i++) {
        if (rd_kafka_topic_result_error(tres[i]) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "it: CreateTopics %s: %s\n",
                    rd_kafka_topic_result_name(tres[i]),
                    rd_kafka_topic_result_error_string(tres[i]));
            goto out;
        }
    }
    /* Creation returns before every partition has a leader; producing or
     * assigning before that fails with transient errors. */
    int64_t deadline = it_now_ms() + IT_BROKER_TIMEOUT_MS;
    int all_led = 0;
    while (it_now_ms() < deadline) {
        int n = topic_metadata(ctx->producer, topic, &all_led);
        if (n == partitions && all_led) {
            rc = 0;
            break;
        }
        nap_ms(50);
    }
    if (rc != 0)
        fprintf(stderr,
                "it: topic %s: partitions without leader after "
                "%d ms\n",
                topic, IT_BROKER_TIMEOUT_MS);
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int it_produce(struct it_ctx *ctx, const char *topic, int32_t partition,
               const void *key, size_t key_len, const void *value, size_t len,
               rd_kafka_headers_t *headers, struct it_delivery *dr)
{
    if (dr != NULL) {
        dr->err = -1;
        dr->partition = -1;
        dr->offset = -1;
    }
    int64_t deadline = it_now_ms() + IT_BROKER_TIMEOUT_MS;
    for (;;) {
        rd_kafka_resp_err_t err;
        /* RD_KAFKA_V_HEADERS takes the headers only on success; an empty
         * list stands in for "none" because the macro needs a pointer. */
        rd_kafka_headers_t *h =
            headers != NULL ? headers : rd_kafka_headers_new(0);
        err = rd_kafka_producev(
            ctx->producer, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(dr), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_poll(ctx->producer, 0);
            return 0;
        }
        if (headers == NULL)
            rd_kafka_headers_destroy(h);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || it_now_ms() > deadline) {
            fprintf(stderr, "it: produce to %s: %s\n", topic,
                    rd_kafka_err2str(err));
            return -1;
        }
        /* Serving delivery reports is what frees queue space. */
        rd_kafka_poll(ctx->producer, 100);
    }
}

int it_produce_flush(struct it_ctx *ctx, int timeout_ms)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(ctx->producer, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "it: flush: %s (%d still queued)\n",
                rd_kafka_err2str(err), rd_kafka_outq_len(ctx->producer));
        return -1;
    }
    int failures = ctx->delivery_failures;
    ctx->delivery_failures = 0;
    return failures;
}

struct it_reader *it_reader_new(struct it_ctx *ctx, const char *topic,
                                it_msg_fn *on_msg, void *arg)
{
    return it_reader_new_isolation(ctx, topic, on_msg, arg, "read_committed");
}

struct it_reader *it_reader_new_isolation(struct it_ctx *ctx, const char *topic,
                                          it_msg_fn *on_msg, void *arg,
                                          const char *isolation)
{
    char group[256];
    it_unique_name(ctx, "reader", group, sizeof group);
    const char *props[] = {"group.id",
                           group,
                           "enable.auto.commit",
                           "false",
                           "enable.auto.offset.store",
                           "false",
                           "fetch.wait.max.ms",
                           "50",
                           "max.partition.fetch.bytes",
                           "4000000",
                           "enable.partition.eof",
                           "true",
                           "isolation.level",
                           isolation,
                           NULL};
    struct it_reader *r = xcalloc(1, sizeof *r);
    r->ctx = ctx;
    r->topic = xstrdup(topic);
    r->on_msg = on_msg;
    r->arg = arg;
    r->rk = client_new(ctx, RD_KAFKA_CONSUMER, props);
    if (r->rk == NULL)
        goto fail;
    rd_kafka_poll_set_consumer(r->rk);
    int all_led;
    int n = topic_metadata(r->rk, topic, &all_led);
    if (n <= 0) {
        fprintf(stderr, "it: reader: topic %s has no partitions\n", topic);
        goto fail;
    }
    r->nparts = n;
    r->eof = xcalloc((size_t)n, sizeof *r->eof);
    for (int p = 0; p < n; p++)
        r->eof[p] = -1;
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(r->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "it: reader: assign %s: %s\n", topic,
                rd_kafka_err2str(err));
        goto fail;
    }
    return r;
fail:
    it_reader_free(r);
    return NULL;
}

void it_reader_free(struct it_reader *r)
{
    if (r == NULL)
        return;
    if (r->rk != NULL) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    for (size_t i = 0; i < r->n; i++) {
        struct it_msg *m = r->msgs[i];
        free(m->key);
        free(m->value);
        if (m->headers != NULL)
            rd_kafka_headers_destroy(m->headers);
        free(m);
    }
    free(r->msgs);
    free(r->eof);
    free(r->topic);
    free(r);
}

/* Poll once; returns 1 when a message was stored, 0 otherwise. */
static int reader_poll_one(struct it_reader *r, int timeout_ms)
{
    rd_kafka_message_t *km = rd_kafka_consumer_poll(r->rk, timeout_ms);
    if (km == NULL)
        return 0;
    if (km->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* EOF carries the end offset, control records included, which is
         * what it_reader_catch_up compares against. */
        if (km->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && km->partition >= 0 &&
            km->partition < r->nparts)
            r->eof[km->partition] = km->offset;
        else if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "it: reader %s: %s\n", r->topic,
                    rd_kafka_message_errstr(km));
        rd_kafka_message_destroy(km);
        return 0;
    }
    struct it_msg *m = xcalloc(1, sizeof *m);
    m->partition = km->partition;
    m->offset = km->offset;
    m->key = xmemdup(km->key, km->key_len);
    m->key_len = km->key != NULL ? km->key_len : 0;
    m->value = xmemdup(km->payload, km->len);
    m->len = km->payload != NULL ? km->len : 0;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_detach_headers(km, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        m->headers = h;
    rd_kafka_message_destroy(km);
    if (r->n == r->cap) {
        size_t cap = r->cap != 0 ? r->cap * 2 : 1024;
        struct it_msg **msgs = realloc(r->msgs, cap * sizeof *msgs);
        if (msgs == NULL) {
            fprintf(stderr, "it: out of memory\n");
            abort();
        }
        r->msgs = msgs;
        r->cap = cap;
    }
    r->msgs[r->n++] = m;
    if (r->on_msg != NULL)
        r->on_msg(m, r->arg);
    return 1;
}

/* The first process that exited although the test never signalled it. */
static struct it_proc *unexpected_exit(struct it_ctx *ctx)
{
    for (int i = 0; i < ctx->nprocs; i++) {
        struct it_proc *p = ctx->procs[i];
        if (!p->signalled && !it_proc_running(p))
            return p;
    }
    return NULL;
}

int it_reader_wait(struct it_reader *r, it_done_fn *done, void *done_arg,
                   int64_t timeout_ms, const char *what)
{
    int64_t start = it_now_ms();
    int64_t deadline = start + timeout_ms;
    int64_t next_check = 0;
    while (!done(done_arg)) {
        int64_t now = it_now_ms();
        if (now >= deadline) {
            fprintf(stderr,
                    "it: timed out after %.1f s waiting for %s on %s "
                    "(%zu messages read)\n",
                    (now - start) / 1000.0, what, r->topic, r->n);
            return -1;
        }
        if (now >= next_check) {
            struct it_proc *p = unexpected_exit(r->ctx);
            if (p != NULL) {
                char st[64];
                fprintf(stderr,
                        "it: %s (pid %ld) ended with %s while waiting for "
                        "%s\n",
                        p->label, (long)p->pid,
                        it_status_str(p->status, st, sizeof st), what);
                return -1;
            }
            next_check = now + 100;
        }
        reader_poll_one(r, 50);
    }
    return 0;
}

size_t it_reader_drain(struct it_reader *r, int timeout_ms)
{
    size_t before = r->n;
    int64_t deadline = it_now_ms() + timeout_ms;
    while (it_now_ms() < deadline)
        reader_poll_one(r, 50);
    return r->n - before;
}

int it_reader_catch_up(struct it_reader *r, int64_t timeout_ms)
{
    int64_t start = it_now_ms();
    int64_t *hi = xcalloc((size_t)r->nparts, sizeof *hi);
    int rc = -1;
    for (int p = 0; p < r->nparts; p++) {
        int64_t lo = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            r->rk, r->topic, p, &lo, &hi[p], IT_BROKER_TIMEOUT_MS);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "it: watermarks %s[%d]: %s\n", r->topic, p,
                    rd_kafka_err2str(err));
            goto out;
        }
    }
    for (;;) {
        int behind = -1;
        for (int p = 0; p < r->nparts && behind < 0; p++) {
            if (r->eof[p] < hi[p])
                behind = p;
        }
        if (behind < 0) {
            rc = 0;
            break;
        }
        if (it_now_ms() - start > timeout_ms) {
            fprintf(stderr,
                    "it: reader %s: partition %d still behind "
                    "its end offset %" PRId64 " after %" PRId64 " ms\n",
                    r->topic, behind, hi[behind], timeout_ms);
            break;
        }
        reader_poll_one(r, 50);
    }
out:
    free(hi);
    return rc;
}

size_t it_reader_count(const struct it_reader *r)
{
    return r->n;
}

const struct it_msg *it_reader_msg(const struct it_reader *r, size_t i)
{
    return i < r->n ? r->msgs[i] : NULL;
}

long it_header_str(const rd_kafka_headers_t *h, const char *name, char *buf,
                   size_t size)
{
    const void *val = NULL;
    size_t len = 0;
    if (h == NULL || rd_kafka_header_get_last(h, name, &val, &len) !=
                         RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    size_t n = len < size - 1 ? len : size - 1;
    if (val != NULL)
        memcpy(buf, val, n);
    buf[n] = '\0';
    return (long)len;
}

int it_offsets(struct it_ctx *ctx, const char *topic, const char *group, int n,
               int64_t *end, int64_t *committed)
{
    /* A consumer that never subscribes does not join the group, so asking
     * for the group's offsets does not disturb its members. */
    const char *props[] = {"group.id", group, "enable.auto.commit", "false",
                           NULL};
    int rc = -1;
    rd_kafka_t *rk = client_new(ctx, RD_KAFKA_CONSUMER, props);
    if (rk == NULL)
        return -1;
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            rk, topic, p, &lo, &hi, IT_BROKER_TIMEOUT_MS);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "it: watermarks %s[%d]: %s\n", topic, p,
                    rd_kafka_err2str(err));
            goto out;
        }
        end[p] = hi;
        rd_kafka_topic_partition_list_add(parts, topic, p);
    }
    rd_kafka_resp_err_t err =
        rd_kafka_committed(rk, parts, IT_BROKER_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "it: committed offsets of %s: %s\n", group,
                rd_kafka_err2str(err));
        goto out;
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (tp->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "it: committed %s[%d]: %s\n", topic,
                    (int)tp->partition, rd_kafka_err2str(tp->err));
            goto out;
        }
        committed[tp->partition] = tp->offset;
    }
    rc = 0;
out:
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return rc;
}

/* One DescribeConsumerGroups round trip: member count and state of group,
 * or -1 when the broker could not say. */
static int describe_group(struct it_ctx *ctx, const char *group,
                          rd_kafka_consumer_group_state_t *state)
{
    char errstr[IT_ERRSTR];
    int members = -1;
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(
        ctx->producer, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(ctx->producer);
    rd_kafka_event_t *ev = NULL;
    if (rd_kafka_AdminOptions_set_request_timeout(opts, 5000, errstr,
                                                  sizeof errstr) != 0)
        goto out;
    const char *groups[] = {group};
    rd_kafka_DescribeConsumerGroups(ctx->producer, groups, 1, opts, q);
    ev = rd_kafka_queue_poll(q, 10000);
    if (ev == NULL || rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto out;
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **desc =
        rd_kafka_DescribeConsumerGroups_result_groups(
            rd_kafka_event_DescribeConsumerGroups_result(ev), &n);
    if (n != 1 || rd_kafka_ConsumerGroupDescription_error(desc[0]) != NULL)
        goto out;
    *state = rd_kafka_ConsumerGroupDescription_state(desc[0]);
    members = (int)rd_kafka_ConsumerGroupDescription_member_count(desc[0]);
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    return members;
}

int it_group_wait_members(struct it_ctx *ctx, const char *group,
                          int min_members, int64_t timeout_ms,
                          const char **state)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    rd_kafka_consumer_group_state_t st = RD_KAFKA_CONSUMER_GROUP_STATE_UNKNOWN;
    int members = -1;
    while (it_now_ms() < deadline) {
        members = describe_group(ctx, group, &st);
        if (members >= min_members) {
            if (state != NULL)
                *state = rd_kafka_consumer_group_state_name(st);
            return members;
        }
        struct it_proc *p = unexpected_exit(ctx);
        if (p != NULL) {
            fprintf(stderr, "it: %s exited while waiting for group %s\n",
                    p->label, group);
            return -1;
        }
        nap_ms(2);
    }
    fprintf(stderr, "it: group %s has %d members after %lld ms, wanted %d\n",
            group, members, (long long)timeout_ms, min_members);
    return -1;
}

/* Start argv[0] with argv (NULL-terminated), output to the log file. */
static struct it_proc *proc_spawn(struct it_ctx *ctx, const char *label,
                                  char *const *argv)
{
    if (ctx->nprocs == IT_MAX_PROCS) {
        fprintf(stderr, "it: too many processes\n");
        return NULL;
    }
    struct it_proc *p = xcalloc(1, sizeof *p);
    p->ctx = ctx;
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->log_path, sizeof p->log_path, "%s/%s.%s.log", ctx->log_dir,
             ctx->name, label);

    /* Empty the log now, not only in the child: a reader of the log
     * (it_proc_http_port) must never see a previous run's lines. */
    int trunc = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (trunc >= 0)
        close(trunc);
    /* Everything the child needs is prepared before fork: after fork in a
     * process with librdkafka threads only async-signal-safe calls are
     * allowed until exec. */
    pid_t parent = getpid();
    fflush(NULL);

    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "it: fork: %s\n", strerror(errno));
        free(p);
        return NULL;
    }
    if (pid == 0) {
        /* A test killed by its ctest timeout must not leave workers. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (fd < 0 || nul < 0)
            _exit(126);
        dup2(nul, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        static const char msg[] = "it: execv failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    p->pid = pid;
    p->running = 1;
    ctx->procs[ctx->nprocs++] = p;
    fprintf(stderr, "it: started %s pid %ld, log %s\n", p->label, (long)pid,
            p->log_path);
    return p;
}

struct it_proc *it_worker_spawn(struct it_ctx *ctx, const char *label,
                                const char *const *args)
{
    size_t nargs = 0;
    int has_http = 0;
    while (args[nargs] != NULL) {
        if (strcmp(args[nargs], "--http") == 0 ||
            strncmp(args[nargs], "--http=", 7) == 0)
            has_http = 1;
        nargs++;
    }
    char **argv = xcalloc(nargs + 6, sizeof *argv);
    size_t k = 0;
    argv[k++] = ctx->worker;
    argv[k++] = "--brokers";
    argv[k++] = ctx->brokers;
    if (!has_http) {
        /* Several workers share this host: each gets a port of its own
         * (it_proc_http_port reads it back), never the default 8080. */
        argv[k++] = "--http";
        argv[k++] = "127.0.0.1:0";
    }
    for (size_t i = 0; i < nargs; i++)
        argv[k++] = (char *)args[i];
    struct it_proc *p = proc_spawn(ctx, label, argv);
    free(argv);
    return p;
}

struct it_proc *it_proc_spawn(struct it_ctx *ctx, const char *label,
                              const char *const *argv)
{
    return proc_spawn(ctx, label, (char *const *)argv);
}

int it_proc_http_port(struct it_proc *p, int64_t timeout_ms)
{
    static const char mark[] = "http: serving on ";
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        FILE *f = fopen(p->log_path, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            char *at = strstr(line, mark);
            char *colon = at != NULL ? strrchr(at, ':') : NULL;
            /* A line still being written ends without its newline: its
             * port may be cut short. */
            if (colon == NULL || strchr(colon, '\n') == NULL)
                continue;
            long port = strtol(colon + 1, NULL, 10);
            fclose(f);
            if (port <= 0 || port > 65535) {
                fprintf(stderr, "it: %s: bad line: %s", p->label, line);
                return -1;
            }
            return (int)port;
        }
        if (f != NULL)
            fclose(f);
        if (!it_proc_running(p)) {
            fprintf(stderr, "it: %s exited before serving HTTP\n", p->label);
            return -1;
        }
        if (it_now_ms() >= deadline) {
            fprintf(stderr, "it: %s: no '%s' line within %lld ms\n", p->label,
                    mark, (long long)timeout_ms);
            return -1;
        }
        nap_ms(20);
    }
}

/* Connect to 127.0.0.1:port before deadline; the socket or -1. */
static int http_connect(int port, int64_t deadline)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t len = sizeof soerr;
        int64_t left = deadline - it_now_ms();
        if (errno != EINPROGRESS ||
            poll(&pf, 1, left > 0 ? (int)left : 0) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 ||
            soerr != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

int it_http_get(int port, const char *path, int timeout_ms, char **body,
                size_t *len)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    *body = NULL;
    *len = 0;
    int fd = http_connect(port, deadline);
    if (fd < 0)
        return -1;
    char req[2048];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    size_t sent = 0;
    while (n > 0 && sent < (size_t)n && it_now_ms() < deadline) {
        ssize_t k = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (k > 0)
            sent += (size_t)k;
        else if (errno == EAGAIN || errno == EINTR)
            nap_ms(1);
        else
            break;
    }
    size_t cap = 65536, got = 0;
    char *buf = xcalloc(1, cap + 1);
    int closed = 0;
    while (sent == (size_t)n && !closed) {
        int64_t left = deadline - it_now_ms();
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) != 1)
            break;
        if (got == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (bigger == NULL)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t k = recv(fd, buf + got, cap - got, 0);
        if (k > 0)
            got += (size_t)k;
        else if (k == 0)
            closed = 1;
        else if (errno != EAGAIN && errno != EINTR)
            break;
    }
    close(fd);
    buf[got] = '\0';
    int status = -1;
    char *head_end = strstr(buf, "\r\n\r\n");
    if (!closed || head_end == NULL ||
        sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1) {
        free(buf);
        return -1;
    }
    size_t off = (size_t)(head_end + 4 - buf);
    memmove(buf, buf + off, got - off + 1);
    *body = buf;
    *len = got - off;
    return status;
}

pid_t it_proc_pid(const struct it_proc *p)
{
    return p->pid;
}
const char *it_proc_label(const struct it_proc *p)
{
    return p->label;
}

int it_proc_signal(struct it_proc *p, int sig)
{
    p->signalled = 1;
    if (!it_proc_running(p)) {
        fprintf(stderr, "it: %s already exited; cannot send signal %d\n",
                p->label, sig);
        return -1;
    }
    if (kill(p->pid, sig) != 0) {
        fprintf(stderr, "it: kill %s: %s\n", p->label, strerror(errno));
        return -1;
    }
    return 0;
}

int it_proc_running(struct it_proc *p)
{
    if (!p->running)
        return 0;
    pid_t r = waitpid(p->pid, &p->status, WNOHANG);
    if (r == p->pid)
        p->running = 0;
    return p->running;
}

int it_proc_wait(struct it_proc *p, int64_t timeout_ms, int *status,
                 int64_t *elapsed_ms)
{
    int64_t start = it_now_ms();
    while (it_proc_running(p) && it_now_ms() - start < timeout_ms)
        nap_ms(5);
    if (elapsed_ms != NULL)
        *elapsed_ms = it_now_ms() - start;
    if (it_proc_running(p))
        return -1;
    if (status != NULL)
        *status = p->status;
    return 0;
}

/* The hexadecimal signal mask on the "<field>:" line of a status file. */
static int status_mask(const char *text, const char *field,
                       unsigned long long *mask)
{
    const char *s = strstr(text, field);
    if (s == NULL)
        return -1;
    s += strlen(field);
    char *end = NULL;
    errno = 0;
    *mask = strtoull(s, &end, 16);
    return end == s || errno != 0 ? -1 : 0;
}

int it_proc_wait_signal_ready(struct it_proc *p, int sig, int64_t timeout_ms)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)p->pid);
    unsigned long long bit = 1ULL << (sig - 1);
    const char *base = strrchr(p->ctx->worker, '/');
    char comm[16];
    snprintf(comm, sizeof comm, "%s", base != NULL ? base + 1 : p->ctx->worker);
    int64_t deadline = it_now_ms() + timeout_ms;
    while (it_now_ms() < deadline) {
        if (!it_proc_running(p))
            return -1;
        char text[4096];
        int fd = open(path, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            text[n] = '\0';
            unsigned long long cgt = 0;
            /* Until exec the child is our copy: wait for the worker's own
             * image, whose name is its file name cut to 15 bytes. */
            const char *name = strstr(text, "Name:\t");
            int execd = name != NULL &&
                        strncmp(name + 6, comm, strlen(comm)) == 0 &&
                        name[6 + strlen(comm)] == '\n';
            /* Only a handler counts: a signal merely blocked for a moment
             * (the sanitizer runtime blocks all of them while it starts a
             * thread, before main) would meet the default action as soon
             * as it is unblocked. */
            if (execd && status_mask(text, "\nSigCgt:", &cgt) == 0 &&
                (cgt & bit) != 0)
                return 0;
        }
        nap_ms(2);
    }
    return -1;
}

const char *it_status_str(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "status 0x%x", (unsigned)status);
    return buf;
}

void it_proc_log_tail(const struct it_proc *p, int lines)
{
    FILE *f = fopen(p->log_path, "r");
    if (f == NULL) {
        fprintf(stderr, "---- %s: no log at %s\n", p->label, p->log_path);
        return;
    }
    char buf[16384];
    long size = 0;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Walk back over the last `lines` newlines. */
    size_t start = n;
    int seen = 0;
    while (start > 0) {
        if (buf[start - 1] == '\n' && start != n && ++seen == lines)
            break;
        start--;
    }
    fprintf(stderr, "---- last %d lines of %s (%s):\n%s", lines, p->label,
            p->log_path, buf + start);
    if (n > 0 && buf[n - 1] != '\n')
        fputc('\n', stderr);
    fprintf(stderr, "---- end of %s\n", p->label);
}

const char *it_proc_log_path(const struct it_proc *p)
{
    return p->log_path;
}

void it_require_committed_at_end(struct it_ctx *ctx, const char *topic,
                                 const char *group, int n)
{
    int64_t end[64], committed[64];
    IT_REQUIRE(ctx, n > 0 && n <= 64, "%d partitions: 1 to 64 supported", n);
    IT_REQUIRE(ctx, it_offsets(ctx, topic, group, n, end, committed) == 0,
               "offsets of %s", group);
    for (int p = 0; p < n; p++)
        IT_REQUIRE(ctx, committed[p] == end[p],
                   "partition %d: committed %lld, end offset %lld", p,
                   (long long)committed[p], (long long)end[p]);
}

int it_wait_committed_at_end(struct it_ctx *ctx, const char *topic,
                             const char *group, int n, int64_t timeout_ms)
{
    int64_t end[64], committed[64];
    int64_t deadline = it_now_ms() + timeout_ms;
    if (n <= 0 || n > 64)
        return -1;
    for (;;) {
        int behind = 0;
        if (it_offsets(ctx, topic, group, n, end, committed) != 0)
            behind = 1;
        for (int p = 0; !behind && p < n; p++)
            behind = committed[p] != end[p];
        if (!behind)
            return 0;
        if (it_now_ms() >= deadline)
            return -1;
        nap_ms(200); /* between look-ups of a condition with a deadline */
    }
}

int it_main(const char *name, int argc, char **argv, struct CMUnitTest *tests,
            size_t n)
{
    struct it_ctx *ctx = it_ctx_new(name, argc, argv);
    if (ctx == NULL)
        return 1;
    for (size_t i = 0; i < n; i++) {
        tests[i].initial_state = ctx;
        tests[i].teardown_func = it_teardown;
    }
    int failed = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    it_ctx_free(ctx);
    return failed;
}

void it_topics_make(struct it_ctx *ctx, struct it_topics *t, int in_parts,
                    int out_parts, const char *const *in_config,
                    const char *const *dlq_config)
{
    it_unique_name(ctx, "in", t->in, sizeof t->in);
    it_unique_name(ctx, "out", t->out, sizeof t->out);
    it_unique_name(ctx, "dlq", t->dlq, sizeof t->dlq);
    it_unique_name(ctx, "group", t->group, sizeof t->group);
    IT_REQUIRE(ctx, it_topic_create(ctx, t->in, in_parts, in_config) == 0,
               "create %s", t->in);
    IT_REQUIRE(ctx, it_topic_create(ctx, t->out, out_parts, NULL) == 0,
               "create %s", t->out);
    IT_REQUIRE(ctx, it_topic_create(ctx, t->dlq, 1, dlq_config) == 0,
               "create %s", t->dlq);
}

/* Added for it_eos and it_stop_faults (see harness.h). */
int it_proc_log_wait(struct it_proc *p, const char *text, int64_t timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        FILE *f = fopen(it_proc_log_path(p), "r");
        char line[2048];
        int found = 0;
        while (f != NULL && !found && fgets(line, sizeof line, f) != NULL)
            found = strstr(line, text) != NULL;
        if (f != NULL)
            fclose(f);
        if (found)
            return 1;
        if (it_now_ms() > deadline || !it_proc_running(p))
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, with a deadline */
    }
}

/* Run kinfer-produce --brokers B args... (NULL-terminated) with stdout
 * captured into *out (malloc'd, NUL-terminated) and stderr shared with
 * the test.  Returns its exit status, or -1 when it died by a signal or
 * did not exit within timeout_ms (then it is killed). */
int it_produce_capture(struct it_ctx *ctx, const char *const *args,
                       int64_t timeout_ms, char **out)
{
    char path[] = "/tmp/kinfer-it-tool-XXXXXX";
    int fd = mkstemp(path);
    *out = NULL;
    if (fd < 0)
        return -1;
    unlink(path);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = it_ctx_produce_path(ctx);
    argv[n++] = "--brokers";
    argv[n++] = it_ctx_brokers(ctx);
    for (size_t i = 0; args[i] != NULL && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0, rc = -1;
    if (pid > 0) {
        int64_t deadline = it_now_ms() + timeout_ms;
        pid_t w;
        /* Waiting on the child's exit, bounded by the deadline. */
        while ((w = waitpid(pid, &status, WNOHANG)) == 0 &&
               it_now_ms() < deadline) {
            struct timespec nap = {0, 10 * 1000000L};
            nanosleep(&nap, NULL);
        }
        if (w == 0) {
            fprintf(stderr,
                    "it: kinfer-produce still running after %" PRId64
                    " ms; killed\n",
                    timeout_ms);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        } else if (w == pid && WIFEXITED(status)) {
            rc = WEXITSTATUS(status);
        }
    }
    off_t size = lseek(fd, 0, SEEK_END);
    *out = calloc(1, size > 0 ? (size_t)size + 1 : 1);
    if (*out != NULL && size > 0)
        (void)!pread(fd, *out, (size_t)size, 0);
    close(fd);
    return rc;
}
