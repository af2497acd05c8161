/* Helpers shared by the pipeline-semantics integration tests (it_deadline,
 * it_ordering, it_retry): a producer that sets timestamps and headers,
 * and the scale requests they send.  Test thread only.
 */
#ifndef KINFER_IT_PIPE_UTIL_H
#define KINFER_IT_PIPE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "harness.h"

/* Milliseconds since the epoch (Kafka timestamps, deadlines). */
int64_t pu_epoch_ms(void);

/* A plain idempotent producer on ctx's broker; NULL after printing why. */
rd_kafka_t *pu_producer_new(struct it_ctx *ctx);

/* Queue value under key on topic (partition by key unless partition >= 0)
 * with timestamp ts (0: now) and headers (may be NULL; they move to the
 * producer).  Retries while the queue is full.  0 or -1. */
int pu_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
               const char *key, const char *value, int64_t ts,
               rd_kafka_headers_t *headers);

/* Flush; 0 when everything was delivered, -1 otherwise. */
int pu_flush(rd_kafka_t *rk, int timeout_ms);

/* A request for the scale model: id, factor, one FP64 input x = [value],
 * and extra (may be NULL or "") appended to its parameters object
 * (e.g. ",\"timeout_ms\":5").  Into buf. */
void pu_scale_request(char *buf, size_t size, const char *id, int factor,
                      double value, const char *extra);

/* The first element of output "x" of a result, into *v: 1 when the result
 * has outputs, 0 when it is an error result (its message into err), -1
 * when it is neither. */
int pu_result_value(const struct it_msg *m, double *v, char *err,
                    size_t errsize);

#endif
