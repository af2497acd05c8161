/* The Kafka layer (shared/kafka.h): handles built from kinfer's settings,
 * librdkafka's log and errors routed into kinfer's log, topic metadata and
 * producing with headers. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kinfer/log.h"
#include "shared/kafka.h"
#include "shared/util.h"

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug. */
    int ours = level <= 3   ? KINFER_LOG_ERROR
               : level == 4 ? KINFER_LOG_WARN
               : level <= 6 ? KINFER_LOG_INFO
                            : KINFER_LOG_DEBUG;
    kinfer_log(ours, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    const struct kinfer_kafka_events *ev = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        kinfer_log(KINFER_LOG_ERROR, "%s: fatal error %s: %s",
                   rd_kafka_name(rk), rd_kafka_err2name(orig), buf);
        if (ev != NULL && ev->fatal != NULL)
            atomic_store(ev->fatal, 1);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && ev != NULL &&
        ev->all_brokers_down != NULL)
        atomic_store(ev->all_brokers_down, 1);
    /* librdkafka retries every other error by itself.  A refused login or
     * TLS handshake does not heal that way, so it is an ERROR that names
     * the cause; the connect timeout (kinfer_kafka_watch) ends the program
     * if it persists.  librdkafka's reasons never quote the password. */
    const char *cause = err == RD_KAFKA_RESP_ERR__AUTHENTICATION
                            ? "authentication failed: "
                        : err == RD_KAFKA_RESP_ERR__SSL ? "TLS failed: "
                                                        : "";
    kinfer_log(cause[0] != '\0' ? KINFER_LOG_ERROR : KINFER_LOG_WARN,
               "%s: %s%s: %s", rd_kafka_name(rk), cause,
               rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---------------------------------------------------------- statistics */

/* The parsed JSON and the arrays pointing into it. */
struct stats_store {
    json_t *root;
    struct kinfer_kafka_broker_stats *brokers;
    struct kinfer_kafka_partition_stats *partitions;
};

static int64_t num_or(const json_t *obj, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static void parse_brokers(const json_t *brokers, struct stats_store *store,
                          struct kinfer_kafka_stats *st)
{
    size_t n = json_is_object(brokers) ? json_object_size(brokers) : 0;
    store->brokers = kinfer_xcalloc(n + 1, sizeof *store->brokers);
    const char *key;
    json_t *b;
    json_object_foreach((json_t *)brokers, key, b)
    {
        if (!json_is_object(b) || st->n_brokers == n)
            continue;
        struct kinfer_kafka_broker_stats *o = &store->brokers[st->n_brokers++];
        const json_t *state = json_object_get(b, "state");
        const json_t *rtt = json_object_get(b, "rtt");
        o->name = key;
        o->nodeid = (int32_t)num_or(b, "nodeid", -1);
        o->up = json_is_string(state) &&
                strcmp(json_string_value(state), "UP") == 0;
        o->rtt_avg_us = num_or(rtt, "avg", -1);
        o->rtt_cnt = num_or(rtt, "cnt", 0);
    }
    st->brokers = store->brokers;
}

static int64_t partition_lag(const json_t *p)
{
    int64_t lag = num_or(p, "consumer_lag_stored", -1);
    if (lag < 0)
        lag = num_or(p, "consumer_lag", -1);
    int64_t hi = num_or(p, "hi_offset", -1);
    int64_t app = num_or(p, "app_offset", -1);
    if (lag < 0 && hi >= 0 && app >= 0 && app <= hi)
        lag = hi - app;
    return lag;
}

static void parse_topics(const json_t *topics, struct stats_store *store,
                         struct kinfer_kafka_stats *st)
{
    size_t n = 0;
    const char *tname, *pname;
    json_t *t, *p;
    json_object_foreach((json_t *)topics, tname, t)
    {
        n += json_object_size(json_object_get(t, "partitions"));
    }
    store->partitions = kinfer_xcalloc(n + 1, sizeof *store->partitions);
    json_object_foreach((json_t *)topics, tname, t)
    {
        json_t *parts = json_object_get(t, "partitions");
        json_object_foreach(parts, pname, p)
        {
            int64_t id = num_or(p, "partition", -1);
            if (id < 0 || id > INT32_MAX || st->n_partitions == n)
                continue; /* -1 is librdkafka's "unassigned" queue */
            struct kinfer_kafka_partition_stats *o =
                &store->partitions[st->n_partitions++];
            o->topic = tname;
            o->partition = (int32_t)id;
            o->hi_offset = num_or(p, "hi_offset", -1);
            o->stored_offset = num_or(p, "stored_offset", -1);
            o->lag = partition_lag(p);
        }
    }
    st->partitions = store->partitions;
}

int kinfer_kafka_stats_parse(const char *json, size_t len,
                             struct kinfer_kafka_stats *st)
{
    memset(st, 0, sizeof *st);
    st->msg_cnt = -1;
    json_t *root = json_loadb(json, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    struct stats_store *store = kinfer_xcalloc(1, sizeof *store);
    store->root = root;
    st->msg_cnt = num_or(root, "msg_cnt", -1);
    parse_brokers(json_object_get(root, "brokers"), store, st);
    const json_t *topics = json_object_get(root, "topics");
    if (json_is_object(topics))
        parse_topics(topics, store, st);
    st->store = store;
    return 0;
}

void kinfer_kafka_stats_clear(struct kinfer_kafka_stats *st)
{
    struct stats_store *store = st->store;
    if (store != NULL) {
        json_decref(store->root);
        free(store->brokers);
        free(store->partitions);
        free(store);
    }
    memset(st, 0, sizeof *st);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    const struct kinfer_kafka_events *ev = opaque;
    struct kinfer_kafka_stats st;
    if (kinfer_kafka_stats_parse(json, len, &st) != 0)
        kinfer_log(KINFER_LOG_WARN, "%s: unreadable statistics JSON",
                   rd_kafka_name(rk));
    else
        ev->stats(ev->owner, rk, &st);
    kinfer_kafka_stats_clear(&st);
    return 0; /* librdkafka frees json */
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    const struct kinfer_kafka_events *ev = opaque;
    (void)rk;
    ev->delivered(ev->owner, m);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    const struct kinfer_kafka_events *ev = opaque;
    ev->rebalance(ev->owner, rk, err, parts);
}

/* Copy text into out with every occurrence of secret replaced by
 * KINFER_REDACTED: librdkafka's reasons may quote the rejected value. */
static void redact_into(char *out, size_t outsize, const char *text,
                        const char *secret)
{
    size_t k = strlen(secret), used = 0;
    out[0] = '\0';
    while (*text != '\0' && used + 1 < outsize) {
        const char *hit = k > 0 ? strstr(text, secret) : NULL;
        size_t plain = hit != NULL ? (size_t)(hit - text) : strlen(text);
        kinfer_fmt(out + used, outsize - used, "%.*s%s", (int)plain, text,
                   hit != NULL ? KINFER_REDACTED : "");
        used += strlen(out + used);
        text += plain + (hit != NULL ? k : 0);
    }
}

static int set_all(rd_kafka_conf_t *conf, const struct kinfer_kafka_prop *p,
                   size_t n, const char *origin, char *err, size_t errsize)
{
    for (size_t i = 0; i < n; i++) {
        char why[256];
        if (rd_kafka_conf_set(conf, p[i].name, p[i].value, why, sizeof why) ==
            RD_KAFKA_CONF_OK)
            continue;
        if (kinfer_kafka_prop_is_secret(p[i].name)) {
            /* A mistyped secret property is still a secret: name it only. */
            char safe[256];
            redact_into(safe, sizeof safe, why, p[i].value);
            kinfer_fmt(err, errsize, "%s%s=%s: %s", origin, p[i].name,
                       KINFER_REDACTED, safe);
        } else {
            kinfer_fmt(err, errsize, "%s%s=%s: %s", origin, p[i].name,
                       p[i].value, why);
        }
        return -1;
    }
    return 0;
}

/* A configuration with s's properties and callbacks, or NULL with err
 * naming the property librdkafka rejected. */
static rd_kafka_conf_t *make_conf(const struct kinfer_kafka_setup *s, char *err,
                                  size_t errsize)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct kinfer_kafka_prop base = {"bootstrap.servers", s->brokers};
    if (set_all(conf, &base, 1, "--brokers: ", err, errsize) != 0 ||
        set_all(conf, s->defaults, s->n_defaults, "", err, errsize) != 0 ||
        set_all(conf, s->user, s->n_user, "-X ", err, errsize) != 0 ||
        set_all(conf, s->fixed, s->n_fixed, "", err, errsize) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    const struct kinfer_kafka_events *ev = s->events;
    /* librdkafka's opaque is not const; the callbacks only read it. */
    rd_kafka_conf_set_opaque(conf, (void *)ev);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (ev != NULL && ev->delivered != NULL && s->role == KINFER_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    if (ev != NULL && ev->rebalance != NULL && s->role == KINFER_KAFKA_CONSUMER)
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    if (ev != NULL && ev->stats != NULL)
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
    return conf;
}

enum kinfer_err kinfer_kafka_new(const struct kinfer_kafka_setup *s,
                                 rd_kafka_t **out, char *err, size_t errsize)
{
    rd_kafka_conf_t *conf = make_conf(s, err, errsize);
    if (conf == NULL)
        return KINFER_ERR_CONFIG;
    int consumer = s->role == KINFER_KAFKA_CONSUMER;
    char why[512];
    rd_kafka_t *rk =
        rd_kafka_new(consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, conf,
                     why, sizeof why);
    if (rk == NULL) {
        /* rd_kafka_new leaves conf to us when it fails. */
        rd_kafka_conf_destroy(conf);
        kinfer_fmt(err, errsize, "creating the Kafka %s: %s",
                   consumer ? "consumer" : "producer", why);
        return KINFER_ERR_CONFIG;
    }
    if (consumer)
        rd_kafka_poll_set_consumer(rk);
    *out = rk;
    return KINFER_OK;
}

enum kinfer_err kinfer_kafka_topic_metadata(rd_kafka_t *rk, const char *topic,
                                            int timeout_ms,
                                            const struct rd_kafka_metadata **md,
                                            char *err, size_t errsize)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        kinfer_fmt(err, errsize, "topic '%s': %s", topic,
                   rd_kafka_err2str(rd_kafka_last_error()));
        return KINFER_ERR_KAFKA;
    }
    const struct rd_kafka_metadata *got = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &got, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kinfer_fmt(err, errsize, "metadata for topic '%s': %s", topic,
                   rd_kafka_err2str(e));
        return KINFER_ERR_KAFKA;
    }
    if (got->topic_cnt != 1 || got->topics[0].err != 0) {
        kinfer_fmt(err, errsize, "topic '%s': %s", topic,
                   got->topic_cnt == 1 ? rd_kafka_err2str(got->topics[0].err)
                                       : "no metadata");
        rd_kafka_metadata_destroy(got);
        return KINFER_ERR_NOT_FOUND;
    }
    *md = got;
    return KINFER_OK;
}

enum kinfer_err kinfer_kafka_warm(rd_kafka_t *rk, const char *topic,
                                  int timeout_ms, char *err, size_t errsize)
{
    const struct rd_kafka_metadata *md = NULL;
    enum kinfer_err rc =
        kinfer_kafka_topic_metadata(rk, topic, timeout_ms, &md, err, errsize);
    if (rc == KINFER_OK)
        rd_kafka_metadata_destroy(md);
    return rc;
}

rd_kafka_resp_err_t kinfer_kafka_produce(rd_kafka_t *rk,
                                         const struct kinfer_kafka_msg *m)
{
    /* librdkafka documents RD_KAFKA_V_HEADERS for a list, not for NULL:
     * pass it only when there is one. */
    if (m->headers == NULL)
        return rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(m->value, m->len), RD_KAFKA_V_MSGFLAGS(m->flags),
            RD_KAFKA_V_OPAQUE(m->opaque), RD_KAFKA_V_END);
    return rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->value, m->len), RD_KAFKA_V_MSGFLAGS(m->flags),
        RD_KAFKA_V_HEADERS(m->headers), RD_KAFKA_V_OPAQUE(m->opaque),
        RD_KAFKA_V_END);
}

/* How often and how long kinfer_kafka_watch_check asks for metadata. */
#define WATCH_PROBE_EVERY_MS 1000
#define WATCH_PROBE_WAIT_MS 500

void kinfer_kafka_watch_start(struct kinfer_kafka_watch *wd, int timeout_ms)
{
    int64_t now = kinfer_now_ms();
    *wd = (struct kinfer_kafka_watch){
        .timeout_ms = timeout_ms,
        .start_ms = now,
        .next_probe_ms = now,
    };
}

int kinfer_kafka_watch_check(struct kinfer_kafka_watch *wd, rd_kafka_t *rk,
                             int reached)
{
    if (wd->connected || wd->timeout_ms <= 0)
        return 0;
    int64_t now = kinfer_now_ms();
    if (!reached && now >= wd->next_probe_ms) {
        /* No topic named, none listed: any broker's answer will do. */
        const struct rd_kafka_metadata *md = NULL;
        reached = rd_kafka_metadata(rk, 0, NULL, &md, WATCH_PROBE_WAIT_MS) ==
                  RD_KAFKA_RESP_ERR_NO_ERROR;
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        now = kinfer_now_ms();
        wd->next_probe_ms = now + WATCH_PROBE_EVERY_MS;
    }
    if (reached) {
        wd->connected = 1;
        kinfer_log(KINFER_LOG_INFO, "%s: connected to the Kafka cluster",
                   rd_kafka_name(rk));
        return 0;
    }
    if (now - wd->start_ms < wd->timeout_ms)
        return 0;
    kinfer_log(KINFER_LOG_ERROR,
               "%s: no successful connection to the Kafka cluster in %d s "
               "(see the errors above: brokers, credentials, TLS); giving up",
               rd_kafka_name(rk), wd->timeout_ms / 1000);
    return -1;
}
