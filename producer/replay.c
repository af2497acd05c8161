/* The Kafka side of kinfer-produce --replay-dlq.  One thread: it polls the
 * consumer reading the DLQ (assigned partitions, bounded by the end
 * offsets taken at the start), decides about each message with dlq.c,
 * produces the ones to replay and serves the producer's delivery reports
 * between polls.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/log.h"
#include "replay.h"
#include "shared/kafka.h"
#include "shared/util.h"

/* Log this many skipped dead letters and delivery failures, then only
 * count them. */
#define LOG_LIMIT 10
/* Metadata, watermark and offsets-for-times requests wait this long. */
#define SETUP_TIMEOUT_MS 10000
/* After SIGINT, wait this long for queued replays before purging them. */
#define INTERRUPT_FLUSH_US (5 * 1000000LL)

struct replay {
    const struct kprod_replay_config *c;
    struct kinfer_kafka_events events; /* of both handles */
    rd_kafka_t *consumer;
    rd_kafka_t *producer; /* NULL in a dry run */
    atomic_int fatal;
    int32_t n_parts; /* partitions of the DLQ, ids 0 .. n_parts-1 */
    int64_t *end;    /* per partition: end offset at the start */
    int *done;       /* per partition: read up to end */
    int32_t remaining;
    uint64_t queued;     /* handed to the producer */
    uint64_t dr_failed;  /* delivery reports with an error */
    uint64_t not_queued; /* could not be handed over (SIGINT while full) */
    unsigned logged;
    struct kprod_replay_summary sum;
};

static int stopping(const struct replay *r)
{
    return *r->c->stop || atomic_load(&r->fatal);
}

static int key_len_for_log(size_t len)
{
    return len > 80 ? 80 : (int)len;
}

static void delivery_cb(void *owner, const rd_kafka_message_t *m)
{
    struct replay *r = owner;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    r->dr_failed++;
    if (++r->logged <= LOG_LIMIT)
        KINFER_ERROR("replay of key '%.*s' to %s failed: %s",
                     key_len_for_log(m->key_len),
                     m->key ? (const char *)m->key : "",
                     rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

/* --- setup -------------------------------------------------------------- */

static enum kinfer_err make_consumer(struct replay *r, char *err,
                                     size_t errsize)
{
    char group[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* librdkafka's consumer poll needs a group.id; the group is never
     * joined (assign only) and nothing is committed to it. */
    kinfer_fmt(group, sizeof group, "kinfer-produce-replay-%lld-%ld",
               (long long)ts.tv_sec, ts.tv_nsec);
    const struct kinfer_kafka_prop ours[] = {
        /* An exactly-once worker's aborted dead letters are not replayed. */
        {"isolation.level", "read_committed"},
        {"enable.partition.eof", "true"},
    };
    /* Fixed: no -X can make a replay commit offsets for some group. */
    const struct kinfer_kafka_prop fixed[] = {
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
    };
    const struct kinfer_kafka_setup s = {
        .role = KINFER_KAFKA_CONSUMER,
        .brokers = r->c->brokers,
        .defaults = ours,
        .n_defaults = sizeof ours / sizeof *ours,
        .user = r->c->kafka_props,
        .n_user = r->c->n_kafka_props,
        .fixed = fixed,
        .n_fixed = sizeof fixed / sizeof *fixed,
        .events = &r->events,
    };
    return kinfer_kafka_new(&s, &r->consumer, err, errsize);
}

static enum kinfer_err make_producer(struct replay *r, char *err,
                                     size_t errsize)
{
    /* Idempotence keeps each partition's replays in DLQ order and free of
     * duplicates from the producer's own retries. */
    static const struct kinfer_kafka_prop ours[] = {
        {"enable.idempotence", "true"},
    };
    const struct kinfer_kafka_setup s = {
        .role = KINFER_KAFKA_PRODUCER,
        .brokers = r->c->brokers,
        .defaults = ours,
        .n_defaults = 1,
        .user = r->c->kafka_props,
        .n_user = r->c->n_kafka_props,
        .events = &r->events,
    };
    return kinfer_kafka_new(&s, &r->producer, err, errsize);
}

/* Partition p is read to its end: stop fetching it. */
static void finish(struct replay *r, int32_t p)
{
    if (r->done[p])
        return;
    r->done[p] = 1;
    r->remaining--;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, r->c->dlq_topic, p);
    rd_kafka_pause_partitions(r->consumer, l); /* only saves fetches */
    rd_kafka_topic_partition_list_destroy(l);
}

/* Learn the DLQ's partitions and end offsets, find where to start (the
 * beginning or --since) and assign what is left to read. */
static enum kinfer_err plan_partitions(struct replay *r, char *err,
                                       size_t errsize)
{
    const char *topic = r->c->dlq_topic;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *times = NULL, *assign = NULL;
    enum kinfer_err rc = kinfer_kafka_topic_metadata(
        r->consumer, topic, SETUP_TIMEOUT_MS, &md, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    int32_t n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    if (n <= 0) {
        kinfer_fmt(err, errsize, "--dlq-topic %s: no partitions", topic);
        return KINFER_ERR_NOT_FOUND;
    }
    r->n_parts = n;
    r->end = kinfer_xcalloc((size_t)n, sizeof *r->end);
    r->done = kinfer_xcalloc((size_t)n, sizeof *r->done);
    times = rd_kafka_topic_partition_list_new(n);
    for (int32_t p = 0; p < n; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            r->consumer, topic, p, &lo, &hi, SETUP_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kinfer_fmt(err, errsize, "end offset of %s [%" PRId32 "]: %s",
                       topic, p, rd_kafka_err2str(e));
            rc = KINFER_ERR_KAFKA;
            goto out;
        }
        r->end[p] = hi;
        rd_kafka_topic_partition_list_add(times, topic, p)->offset =
            r->c->since_ms >= 0 ? r->c->since_ms : lo;
    }
    if (r->c->since_ms >= 0) {
        /* Each partition's first offset with a timestamp >= since, or -1
         * (RD_KAFKA_OFFSET_END) when there is none. */
        rd_kafka_resp_err_t e =
            rd_kafka_offsets_for_times(r->consumer, times, SETUP_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kinfer_fmt(err, errsize, "--since: offsets of %s: %s", topic,
                       rd_kafka_err2str(e));
            rc = KINFER_ERR_KAFKA;
            goto out;
        }
    }
    assign = rd_kafka_topic_partition_list_new(n);
    r->remaining = n;
    for (int i = 0; i < times->cnt; i++) {
        const rd_kafka_topic_partition_t *t = &times->elems[i];
        int32_t p = t->partition;
        if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kinfer_fmt(err, errsize, "--since: offset of %s [%" PRId32 "]: %s",
                       topic, p, rd_kafka_err2str(t->err));
            rc = KINFER_ERR_KAFKA;
            goto out;
        }
        if (t->offset < 0 || t->offset >= r->end[p]) {
            r->done[p] = 1;
            r->remaining--;
            continue;
        }
        rd_kafka_topic_partition_list_add(assign, topic, p)->offset = t->offset;
    }
    if (assign->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_assign(r->consumer, assign);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kinfer_fmt(err, errsize, "assigning %s: %s", topic,
                       rd_kafka_err2str(e));
            rc = KINFER_ERR_KAFKA;
        }
    }
out:
    rd_kafka_topic_partition_list_destroy(times);
    if (assign != NULL)
        rd_kafka_topic_partition_list_destroy(assign);
    return rc;
}

/* --- one dead letter ---------------------------------------------------- */

static struct kprod_bytes header_last(const rd_kafka_headers_t *h,
                                      const char *name)
{
    struct kprod_bytes b = {NULL, 0};
    const void *val;
    size_t size;
    if (h != NULL &&
        rd_kafka_header_get_last(h, name, &val, &size) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        val != NULL) {
        b.p = val;
        b.len = size;
    }
    return b;
}

static void dlq_headers(const rd_kafka_headers_t *h,
                        struct kprod_dlq_headers *d)
{
    d->error = header_last(h, "kinfer-error");
    d->source_topic = header_last(h, "kinfer-source-topic");
    d->source_partition = header_last(h, "kinfer-source-partition");
    d->source_offset = header_last(h, "kinfer-source-offset");
    d->tombstone = header_last(h, "kinfer-tombstone");
    d->shed = header_last(h, "kinfer-shed");
}

static const char *escaped(const struct kprod_bytes *b, char *buf, size_t size)
{
    return kprod_escape(b->p, b->len, 64, buf, size);
}

/* A topic name or number as is when it is one ([A-Za-z0-9._-], short),
 * else escaped. */
static const char *plain(const struct kprod_bytes *b, char *buf, size_t size)
{
    size_t i;
    for (i = 0; b->p != NULL && i < b->len && b->len < size && b->len <= 249;
         i++) {
        char ch = b->p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            break;
    }
    if (b->p == NULL || b->len == 0 || i < b->len)
        return escaped(b, buf, size);
    memcpy(buf, b->p, b->len);
    buf[b->len] = '\0';
    return buf;
}

/* The dry run's line for m: where it would go, or why it is skipped. */
static void print_line(struct replay *r, const rd_kafka_message_t *m,
                       const rd_kafka_headers_t *hdrs,
                       const struct kprod_dlq_headers *d,
                       enum kprod_dlq_verdict v,
                       const struct kprod_dlq_plan *plan)
{
    FILE *f = r->c->out;
    char key[400], a[300], b[100], c[100];
    fprintf(f, "dlq %" PRId32 "@%" PRId64 " ", m->partition, m->offset);
    if (v == KPROD_DLQ_REPLAY)
        fprintf(f, "replay -> %.*s", (int)plan->topic_len, plan->topic);
    else
        fprintf(f, "skip %s", kprod_dlq_verdict_name(v));
    fprintf(f, "  key %s",
            kprod_escape(m->key, m->key_len, 80, key, sizeof key));
    if (v == KPROD_DLQ_REPLAY && plan->null_value)
        fprintf(f, "  value null (tombstone)");
    else
        fprintf(f, "  value %zu bytes", m->len);
    fprintf(f, "  headers ");
    const char *name;
    const void *val;
    size_t size, kept = 0;
    for (size_t i = 0;
         hdrs != NULL && rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
                             RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        if (kprod_dlq_header_kept(name))
            fprintf(f, "%s%s", kept++ ? "," : "", name);
    }
    if (r->c->header_name != NULL && v == KPROD_DLQ_REPLAY)
        fprintf(f, "%s%s", kept++ ? "," : "", r->c->header_name);
    if (kept == 0)
        fprintf(f, "none");
    if (d->shed.p != NULL)
        fprintf(f, "  kinfer-shed %s", escaped(&d->shed, a, sizeof a));
    if (d->source_topic.p != NULL)
        fprintf(f, "  from %s %s@%s", plain(&d->source_topic, a, sizeof a),
                plain(&d->source_partition, b, sizeof b),
                plain(&d->source_offset, c, sizeof c));
    if (d->error.p != NULL)
        fprintf(f, "  error %s", escaped(&d->error, a, sizeof a));
    fputc('\n', f);
}

/* The replayed message's headers: m's without the kinfer-* ones, in
 * order (null values stay null), then --header.  NULL when none. */
static rd_kafka_headers_t *replay_headers(struct replay *r,
                                          const rd_kafka_headers_t *hdrs)
{
    rd_kafka_headers_t *out = rd_kafka_headers_new(8);
    const char *name;
    const void *val;
    size_t size, n = 0;
    for (size_t i = 0;
         hdrs != NULL && rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
                             RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        if (!kprod_dlq_header_kept(name))
            continue;
        rd_kafka_header_add(out, name, -1, val,
                            val != NULL ? (ssize_t)size : 0);
        n++;
    }
    if (r->c->header_name != NULL) {
        rd_kafka_header_add(out, r->c->header_name, -1, r->c->header_value, -1);
        n++;
    }
    if (n == 0) {
        rd_kafka_headers_destroy(out);
        return NULL;
    }
    return out;
}

static void send_replay(struct replay *r, const rd_kafka_message_t *m,
                        const rd_kafka_headers_t *hdrs,
                        const struct kprod_dlq_plan *plan)
{
    /* plan->topic is a checked topic name of at most 249 bytes when it
     * comes from the header, or --topic (NUL-terminated). */
    char topic[256];
    kinfer_fmt(topic, sizeof topic, "%.*s", (int)plan->topic_len, plan->topic);
    /* A tombstone goes back as a null value; an empty value stays empty
     * (a non-NULL pointer with length 0, borrowed: nothing to copy). */
    void *value = NULL;
    int flags = 0;
    if (!plan->null_value && m->payload != NULL) {
        value = m->len > 0 ? m->payload : (void *)"";
        flags = m->len > 0 ? RD_KAFKA_MSG_F_COPY : 0;
    }
    struct kinfer_kafka_msg msg = {
        .topic = topic,
        .key = m->key,
        .key_len = m->key_len,
        .value = value,
        .len = plan->null_value ? 0 : m->len,
        .flags = flags,
        .headers = replay_headers(r, hdrs),
    };
    rd_kafka_resp_err_t e;
    for (;;) {
        e = kinfer_kafka_produce(r->producer, &msg);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || stopping(r))
            break;
        rd_kafka_poll(r->producer, 50);
    }
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        r->queued++;
        return;
    }
    if (msg.headers != NULL)
        rd_kafka_headers_destroy(msg.headers);
    r->not_queued++;
    if (++r->logged <= LOG_LIMIT)
        KINFER_ERROR("cannot replay %s [%" PRId32 "] offset %" PRId64
                     " to %s: %s",
                     r->c->dlq_topic, m->partition, m->offset, topic,
                     rd_kafka_err2str(e));
}

static void handle(struct replay *r, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = NULL;
    struct kprod_dlq_headers d;
    dlq_headers(hdrs, &d);
    struct kprod_dlq_plan plan;
    enum kprod_dlq_verdict v = kprod_dlq_classify(
        &d, m->len, r->c->filter, r->c->topic, r->c->default_topic, &plan);
    r->sum.read++;
    if (r->c->dry_run)
        print_line(r, m, hdrs, &d, v, &plan);
    if (v != KPROD_DLQ_REPLAY) {
        r->sum.skipped[v]++;
        if (!r->c->dry_run && v != KPROD_DLQ_FILTERED &&
            ++r->logged <= LOG_LIMIT)
            KINFER_WARN("%s [%" PRId32 "] offset %" PRId64 ": not replayed: %s",
                        r->c->dlq_topic, m->partition, m->offset,
                        kprod_dlq_verdict_name(v));
        return;
    }
    if (r->c->dry_run)
        r->sum.replayed++;
    else
        send_replay(r, m, hdrs, &plan);
}

/* --- the run ------------------------------------------------------------ */

static void report_lagging(struct replay *r)
{
    for (int32_t p = 0; p < r->n_parts; p++) {
        if (r->done[p])
            continue;
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, r->c->dlq_topic, p);
        int64_t at = -1;
        if (rd_kafka_position(r->consumer, l) == RD_KAFKA_RESP_ERR_NO_ERROR)
            at = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        KINFER_ERROR("%s [%" PRId32 "]: nothing read for %d s; stopped at "
                     "offset %" PRId64 " of %" PRId64,
                     r->c->dlq_topic, p, r->c->timeout_s, at, r->end[p]);
    }
}

static void read_all(struct replay *r)
{
    int64_t idle_us = (int64_t)r->c->timeout_s * 1000000;
    int64_t last = kinfer_now_us();
    while (r->remaining > 0 && !stopping(r)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->consumer, 100);
        if (r->producer != NULL)
            rd_kafka_poll(r->producer, 0);
        int64_t now = kinfer_now_us();
        if (m == NULL) {
            if (now - last > idle_us) {
                report_lagging(r);
                return;
            }
            continue;
        }
        int32_t p = m->partition;
        int known = m->rkt != NULL && p >= 0 && p < r->n_parts &&
                    strcmp(rd_kafka_topic_name(m->rkt), r->c->dlq_topic) == 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            last = now;
            if (known && m->offset >= r->end[p])
                finish(r, p);
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            KINFER_WARN("reading %s: %s", r->c->dlq_topic,
                        rd_kafka_message_errstr(m));
        } else if (known && !r->done[p]) {
            last = now;
            /* Past the end taken at the start: a dead letter written
             * since (perhaps by one of our own replays).  Not ours. */
            if (m->offset < r->end[p])
                handle(r, m);
            if (m->offset + 1 >= r->end[p])
                finish(r, p);
        }
        rd_kafka_message_destroy(m);
    }
}

/* Wait until every replay is delivered or failed; after SIGINT wait a
 * bounded time, then purge (purged ones count as failed). */
static void flush_all(struct replay *r)
{
    int64_t purge_at = -1;
    int purged = 0;
    while (rd_kafka_outq_len(r->producer) > 0) {
        int64_t now = kinfer_now_us();
        if (stopping(r) && purge_at < 0)
            purge_at = now + INTERRUPT_FLUSH_US;
        if (purge_at >= 0 && now >= purge_at) {
            if (purged)
                break;
            rd_kafka_purge(r->producer,
                           RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = 1;
            purge_at = now + INTERRUPT_FLUSH_US;
        }
        rd_kafka_flush(r->producer, 100);
    }
}

enum kinfer_err kprod_replay(const struct kprod_replay_config *c,
                             struct kprod_replay_report *rep, char *err,
                             size_t errsize)
{
    struct replay r;
    memset(&r, 0, sizeof r);
    r.c = c;
    atomic_init(&r.fatal, 0);
    r.events = (struct kinfer_kafka_events){
        .owner = &r,
        .fatal = &r.fatal,
        .delivered = delivery_cb,
    };
    r.sum.dry_run = c->dry_run;

    enum kinfer_err rc = make_consumer(&r, err, errsize);
    if (rc == KINFER_OK && !c->dry_run)
        rc = make_producer(&r, err, errsize);
    if (rc == KINFER_OK)
        rc = plan_partitions(&r, err, errsize);
    if (rc != KINFER_OK)
        goto out;

    int64_t start = kinfer_now_us();
    read_all(&r);
    uint64_t unsent = 0;
    if (r.producer != NULL) {
        flush_all(&r);
        unsent = (uint64_t)rd_kafka_outq_len(r.producer);
    }
    memset(rep, 0, sizeof *rep);
    rep->summary = r.sum;
    struct kprod_replay_summary *s = &rep->summary;
    if (!c->dry_run) {
        uint64_t bad = r.dr_failed + unsent;
        s->failed = bad + r.not_queued;
        s->replayed = r.queued > bad ? r.queued - bad : 0;
    }
    s->complete = r.remaining == 0;
    s->interrupted = *c->stop != 0;
    s->seconds = (double)(kinfer_now_us() - start) / 1e6;
    rep->kafka_fatal = atomic_load(&r.fatal);
out:
    if (r.consumer != NULL) {
        rd_kafka_consumer_close(r.consumer);
        rd_kafka_destroy(r.consumer);
    }
    if (r.producer != NULL)
        rd_kafka_destroy(r.producer);
    free(r.end);
    free(r.done);
    return rc;
}
