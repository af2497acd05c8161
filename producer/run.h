/* One kinfer-produce run against Kafka: send the requests (read or
 * generated), optionally collect and check their results, and report the
 * counts.  The only producer/ code that includes librdkafka: a Kafka
 * module (see lib/shared/kafka.h), though this header shows none of it.
 *
 * Threads: kprod_run is called once from main.  With --await it starts one
 * result thread that alone polls the consumer handle.
 */
#ifndef KPROD_RUN_H
#define KPROD_RUN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"
#include "kinfer/kafka_prop.h"
#include "message.h"
#include "stats.h"

struct kprod_config {
    const char *brokers;
    const char *topic;        /* requests go here */
    const char *output_topic; /* results come from here (--await) */
    const char *input;        /* path, or "-" for stdin; ignored when
                                 generate > 0 */
    const char *key_field;
    uint64_t generate;    /* synthetic requests to send; 0 = input */
    struct kprod_gen gen; /* gen.runid is set even without generate */
    double rate;          /* requests per second; 0 = unpaced */
    uint64_t concurrency; /* closed loop: at most this many requests sent
                             and not yet answered; 0 = open loop.  Needs
                             await (main sets it) and rate == 0 */
    int await;
    int timeout_s;           /* --await: wait this long after sending;
                                closed loop: longest wait for a free slot */
    const char *header_name; /* NULL: no extra header */
    const char *header_value;
    size_t max_line; /* longest accepted input line, bytes */
    int quiet;       /* no progress lines */
    /* librdkafka properties (-X), applied in order to both handles after
     * kinfer-produce's own.  Borrowed. */
    const struct kinfer_kafka_prop *kafka_props;
    size_t n_kafka_props;
    volatile sig_atomic_t *stop; /* set by the SIGINT handler */
};

struct kprod_report {
    struct kprod_summary summary; /* summary.lat_us points into lat */
    struct kprod_latencies lat;
    int input_failed; /* an over-long line or a read error
                         ended the input early */
    int kafka_fatal;  /* the producer failed fatally */
};

/* Run c.  Setup failures return an error with a message in err
 * (KINFER_ERR_CONFIG for a rejected librdkafka property, which is a usage
 * error; KINFER_ERR_IO for an input file that cannot be opened;
 * KINFER_ERR_KAFKA / _NOT_FOUND when Kafka or the output topic cannot be
 * reached), and nothing was sent.  Otherwise returns KINFER_OK and fills
 * *rep, whose lat the caller frees with kprod_latencies_clear; failures
 * during the run (delivery, wrong results, SIGINT) are in rep's counts. */
enum kinfer_err kprod_run(const struct kprod_config *c,
                          struct kprod_report *rep, char *err, size_t errsize)
    __attribute__((warn_unused_result));

#endif
