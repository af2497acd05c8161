/* One librdkafka property as "name=value" text, the form of -X flags and
 * config-file lines.  Lists of them configure the worker (worker.h) and
 * every handle the Kafka layer creates.  No librdkafka types: programs
 * include this without depending on librdkafka's headers. */
#ifndef KINFER_KAFKA_PROP_H
#define KINFER_KAFKA_PROP_H

/* Both strings are borrowed: whoever builds a list keeps them alive for as
 * long as the list is in use. */
struct kinfer_kafka_prop {
    const char *name;
    const char *value;
};

#endif
