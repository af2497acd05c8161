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

/* 1 when a property named name may hold a secret, so its value must never
 * appear in a log line or an error message (name it, show "[redacted]"):
 * the name contains "password", "secret", "key" or "token", or starts with
 * "sasl.", ignoring case.  0 otherwise, and for NULL.  name is borrowed.
 * Any thread. */
int kinfer_kafka_prop_is_secret(const char *name);

/* Shown in place of a secret value. */
#define KINFER_REDACTED "[redacted]"

#endif
