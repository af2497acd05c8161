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

#endif
