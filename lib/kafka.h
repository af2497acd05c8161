/* librdkafka helpers shared by the worker and the tools: configuration
 * from kinfer's settings plus user properties, and logging into kinfer's
 * log.  Private to lib/. */
#ifndef KINFER_KAFKA_H
#define KINFER_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "kinfer/worker.h"

/* A new configuration with bootstrap.servers = brokers, then defaults[],
 * then user[] applied in order (later wins), and kinfer's log callback.
 * NULL on a bad property, with err naming it ("-X linger.ms=abc: ..."). */
rd_kafka_conf_t *kinfer_kafka_conf(const char *brokers,
                                   const struct kinfer_kafka_prop *defaults,
                                   size_t n_defaults,
                                   const struct kinfer_kafka_prop *user,
                                   size_t n_user, char *err, size_t errsize);

/* Ask rk for topic's metadata (up to timeout_ms) so its partitions are
 * known before the first message: librdkafka 2.0.2 otherwise holds the
 * first message to each partition of a new producer for up to a second.
 * Returns 0, or -1 with the reason in err. */
int kinfer_kafka_warm(rd_kafka_t *rk, const char *topic, int timeout_ms,
                      char *err, size_t errsize);

#endif
