/* The Kafka layer: what kinfer's programs do with librdkafka that is not
 * specific to one of them -- creating consumer and producer handles from
 * kinfer's settings and the user's -X properties, routing librdkafka's log
 * and error callbacks into kinfer's log (never showing a secret property's
 * value), learning a topic's partitions, producing one message with
 * headers, and bounding the time to the first successful connection.
 *
 * A Kafka module: its whole job is Kafka, so librdkafka types appear here
 * by design.  In the library and the programs, the only other code that
 * may include this header (or librdkafka) is another Kafka module: the
 * worker (lib/worker*.c) and kinfer-produce's producer/run.c.
 *
 * Any thread may call these functions, within each handle's own rules
 * (only the poll thread touches a consumer). */
#ifndef KINFER_SHARED_KAFKA_H
#define KINFER_SHARED_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"
#include "kinfer/kafka_prop.h"

enum kinfer_kafka_role {
    KINFER_KAFKA_CONSUMER, /* served by rd_kafka_consumer_poll */
    KINFER_KAFKA_PRODUCER, /* served by rd_kafka_poll / rd_kafka_flush */
    /* A transactional producer (the worker's --exactly-once) is a
     * producer with transactional.id among its fixed properties; the
     * worker runs rd_kafka_init_transactions itself (lib/worker_txn.c). */
};

/* What librdkafka's statistics (statistics.interval.ms, JSON) say, cut
 * down to what kinfer reports; see docs/metrics.md.  Times in
 * microseconds as librdkafka gives them; -1 where a number is absent. */
struct kinfer_kafka_broker_stats {
    const char *name;            /* "host:port/id"; borrowed for the callback */
    int32_t nodeid;              /* -1 for a bootstrap entry */
    int up;                      /* state "UP": connected */
    int64_t rtt_avg_us, rtt_cnt; /* request round trips in the window */
};

struct kinfer_kafka_partition_stats {
    const char *topic; /* borrowed for the callback */
    int32_t partition;
    int64_t hi_offset;     /* the partition's end offset */
    int64_t stored_offset; /* next offset to commit (consumer) */
    /* Messages not yet answered: hi_offset minus the stored offset
     * (librdkafka's consumer_lag_stored) when one is stored, else minus
     * the committed offset (consumer_lag), else minus the offset last
     * handed to the application; -1 when none is known. */
    int64_t lag;
};

struct kinfer_kafka_stats {
    int64_t msg_cnt; /* messages in the producer's local queue */
    size_t n_brokers;
    const struct kinfer_kafka_broker_stats *brokers;
    size_t n_partitions; /* every topic's real partitions (not -1) */
    const struct kinfer_kafka_partition_stats *partitions;
    void *store; /* what the arrays point into; kinfer_kafka_stats_clear */
};

/* Parse librdkafka's statistics JSON json[0..len) into *st, whose arrays
 * point into storage freed by kinfer_kafka_stats_clear.  Returns 0, or -1
 * when the text is not the JSON object librdkafka writes (*st then empty
 * and still to be cleared).  Any thread. */
int kinfer_kafka_stats_parse(const char *json, size_t len,
                             struct kinfer_kafka_stats *st)
    __attribute__((warn_unused_result));
void kinfer_kafka_stats_clear(struct kinfer_kafka_stats *st);

/* What a handle reports to its owner.  The handle borrows this struct: it
 * must stay valid, unchanged, until the handle is destroyed.  Callbacks run
 * on whichever thread serves the handle at the time. */
struct kinfer_kafka_events {
    void *owner; /* passed to the callbacks below */
    /* Set to 1 (never back to 0) when librdkafka reports a fatal error,
     * after one log line; NULL: only logged.  Other errors are transient
     * (a broker down, ...): librdkafka retries and they are logged as
     * warnings. */
    atomic_int *fatal;
    /* Producers: every delivery report, success or not; m and its payload
     * are borrowed for the call, m->_private is the message's opaque.  NULL:
     * no delivery reports. */
    void (*delivered)(void *owner, const rd_kafka_message_t *m);
    /* Consumers: the rebalance callback (see rd_kafka_conf_set_rebalance_cb
     * for its duties).  NULL: librdkafka assigns and revokes by itself. */
    void (*rebalance)(void *owner, rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts);
    /* Every statistics report of the handle (statistics.interval.ms),
     * parsed; st is borrowed for the call.  NULL: statistics are not
     * asked for by kinfer (a -X statistics.interval.ms still sets the
     * interval, but nothing reads them). */
    void (*stats)(void *owner, rd_kafka_t *rk,
                  const struct kinfer_kafka_stats *st);
    /* Set to 1 when librdkafka reports every broker down
     * (RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN); the owner clears it when it
     * learns otherwise.  NULL: only logged. */
    atomic_int *all_brokers_down;
};

/* How to build one handle.  Properties are applied in this order, a later
 * one winning over an earlier one of the same name:
 *   bootstrap.servers = brokers, then defaults[] (kinfer's choices), then
 *   user[] (-X: the user wins over kinfer's defaults), then fixed[] (what
 *   kinfer's own options decide, such as group.id from --group).
 * Every string is borrowed for the call. */
struct kinfer_kafka_setup {
    enum kinfer_kafka_role role;
    const char *brokers;
    const struct kinfer_kafka_prop *defaults;
    size_t n_defaults;
    const struct kinfer_kafka_prop *user;
    size_t n_user;
    const struct kinfer_kafka_prop *fixed;
    size_t n_fixed;
    const struct kinfer_kafka_events *events; /* borrowed; see above */
};

/* Create a handle for s.  librdkafka's log lines go to kinfer's log and
 * its errors to s->events as described there.  A consumer's main queue is
 * redirected to its consumer queue, so rd_kafka_consumer_poll serves both.
 * On KINFER_OK *out is the handle; the caller destroys it (rd_kafka_destroy
 * or _destroy_flags).  KINFER_ERR_CONFIG with err naming the cause when a
 * property is rejected ("-X linger.ms=abc: ...") or the handle cannot be
 * created; *out untouched. */
enum kinfer_err kinfer_kafka_new(const struct kinfer_kafka_setup *s,
                                 rd_kafka_t **out, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Ask rk for topic's metadata, waiting up to timeout_ms.  On KINFER_OK *md
 * describes exactly that topic (md->topics[0], known to the cluster); the
 * caller frees it with rd_kafka_metadata_destroy.  Otherwise *md is
 * untouched and err says why: KINFER_ERR_KAFKA when the request failed,
 * KINFER_ERR_NOT_FOUND when the cluster does not know the topic. */
enum kinfer_err kinfer_kafka_topic_metadata(rd_kafka_t *rk, const char *topic,
                                            int timeout_ms,
                                            const struct rd_kafka_metadata **md,
                                            char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Learn topic's partitions now (up to timeout_ms), before the first
 * message: librdkafka 2.0.2 otherwise holds the first message to each
 * partition of a new producer for up to a second.  Returns as
 * kinfer_kafka_topic_metadata does. */
enum kinfer_err kinfer_kafka_warm(rd_kafka_t *rk, const char *topic,
                                  int timeout_ms, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* One message to produce.  flags says what happens to value:
 * RD_KAFKA_MSG_F_COPY, librdkafka copies it; RD_KAFKA_MSG_F_FREE, it moves
 * to librdkafka on success (malloc'd); 0, it stays borrowed until the
 * message is delivered. */
struct kinfer_kafka_msg {
    const char *topic; /* borrowed for the call */
    const void *key;   /* copied by librdkafka; NULL: no key */
    size_t key_len;
    void *value; /* NULL: no value */
    size_t len;
    int flags;
    rd_kafka_headers_t *headers; /* NULL, or moves to librdkafka on success */
    void *opaque;                /* the delivery report's m->_private */
};

/* Enqueue m on producer rk: one attempt, no waiting.  Returns the
 * librdkafka error; on any error the caller still owns m->value (even with
 * F_FREE) and m->headers.  RD_KAFKA_RESP_ERR__QUEUE_FULL means the local
 * queue is full: serve or wait for delivery reports, then try again (each
 * program has its own way to wait). */
rd_kafka_resp_err_t kinfer_kafka_produce(rd_kafka_t *rk,
                                         const struct kinfer_kafka_msg *m);

/* Bounds the time a handle may go without ever reaching the cluster, so
 * that a wrong password, certificate or address ends the program (an
 * orchestrator restarts it and alerts) instead of retrying silently
 * forever.  Owned by whoever serves the handle; no locking. */
struct kinfer_kafka_watch {
    int timeout_ms;        /* 0 or less: never give up */
    int64_t start_ms;      /* kinfer_now_ms() at _start */
    int64_t next_probe_ms; /* next metadata request */
    int connected;         /* a broker answered once: the watch is over */
};

/* Start watching now; timeout_ms <= 0 disables the bound. */
void kinfer_kafka_watch_start(struct kinfer_kafka_watch *wd, int timeout_ms);

/* Call often from the thread that serves rk (the poll thread for a
 * consumer).  reached: the caller saw a success of its own (a group
 * assignment).  Until the first success it asks for metadata at most once
 * a second, waiting up to 500 ms.  Returns 0 while connected or within the
 * bound; -1, after an ERROR line, once timeout_ms passed without any
 * success (and on every later call until one comes). */
int kinfer_kafka_watch_check(struct kinfer_kafka_watch *wd, rd_kafka_t *rk,
                             int reached) __attribute__((warn_unused_result));

#endif
