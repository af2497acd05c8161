/* kinfer-produce --replay-dlq: read the dead letters a worker wrote and
 * send each one back to a request topic as the request it was (same key,
 * value and headers, without the kinfer-* headers), after whatever made
 * it fail was fixed.  A Kafka module like run.c (see lib/shared/kafka.h);
 * the decisions are dlq.c's.  docs/protocol.md, "Replaying dead letters",
 * is the user's description.
 *
 * Threads: kprod_replay is called once from main and runs on that thread
 * alone; it serves both handles itself.
 */
#ifndef KPROD_REPLAY_H
#define KPROD_REPLAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dlq.h"
#include "kinfer/error.h"
#include "kinfer/kafka_prop.h"

struct kprod_replay_config {
    const char *brokers;
    const char *dlq_topic;     /* read from here */
    const char *topic;         /* send everything here; NULL: to each dead
                                  letter's kinfer-source-topic */
    const char *default_topic; /* topic NULL and no source header */
    int64_t since_ms;          /* epoch ms to start from; -1: the beginning */
    const char *filter;        /* --filter-error text, or NULL */
    int dry_run;               /* print, create no producer, send nothing */
    const char *header_name;   /* NULL: no extra header */
    const char *header_value;
    int timeout_s; /* give up after this long without a message or an
                      end-of-partition while partitions remain */
    FILE *out;     /* dry-run lines go here (borrowed) */
    /* librdkafka properties (-X) applied to both handles after ours.
     * Borrowed. */
    const struct kinfer_kafka_prop *kafka_props;
    size_t n_kafka_props;
    volatile sig_atomic_t *stop; /* set by the SIGINT handler */
};

struct kprod_replay_report {
    struct kprod_replay_summary summary;
    int kafka_fatal; /* the producer failed fatally */
};

/* Replay the dead letters of c->dlq_topic from c->since_ms (or the start)
 * up to the end offsets each partition had when the run began, so the run
 * ends even while the worker adds dead letters (a replayed request that
 * fails again included).  No offset is ever committed: the consumer only
 * assigns partitions, under a group name of its own.
 *
 * Setup failures return an error with a message in err and nothing was
 * sent (KINFER_ERR_CONFIG for a rejected librdkafka property;
 * KINFER_ERR_KAFKA / _NOT_FOUND when Kafka or the DLQ topic cannot be
 * reached).  Otherwise KINFER_OK with *rep filled; what went wrong during
 * the run (skips, delivery failures, an end not reached) is in its counts.
 */
enum kinfer_err kprod_replay(const struct kprod_replay_config *c,
                             struct kprod_replay_report *rep, char *err,
                             size_t errsize)
    __attribute__((warn_unused_result));

#endif
