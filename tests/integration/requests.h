/* Deterministic inference requests for the "scale" model and the checker
 * of their results.  Request i has id "r-<i>", Kafka key "key-<i>", a
 * header trace-id "trace-<i>", and a datatype, shape, data and factor
 * derived from i, so a result can be verified from its id alone.
 */
#ifndef KINFER_IT_REQUESTS_H
#define KINFER_IT_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* Queue request i on topic (partition RD_KAFKA_PARTITION_UA: by key).
 * dr may be NULL (see it_produce).  Returns 0, or -1 after printing why. */
int it_req_produce(struct it_ctx *ctx, const char *topic, size_t i,
                   int32_t partition, struct it_delivery *dr);

/* Queue requests first .. first+count-1 and wait for their delivery.
 * dr, when not NULL, has count entries.  Returns 0, or -1. */
int it_req_produce_range(struct it_ctx *ctx, const char *topic, size_t first,
                         size_t count, struct it_delivery *dr);

/* The JSON text of request i, malloc'd (caller frees); *len its length. */
char *it_req_json(size_t i, size_t *len);

/* Tally of results for requests 0 .. n-1 read from the output topic. */
struct it_answers {
    size_t n;
    unsigned *count;  /* results seen per request */
    size_t unique;    /* requests with at least one result */
    size_t results;   /* result messages for our ids */
    size_t wrong;     /* results that failed a check */
    size_t foreign;   /* messages whose key is not one of ours */
    size_t target;    /* it_answers_reached: wait for this many unique */
    int64_t first_ms; /* it_now_ms() when the first result was read */
    int64_t last_ms;  /* ... and when the latest new request was */
    char first_wrong[3][512]; /* why the first few failed */
};

/* Allocate the tally for n requests.  Free with it_answers_free. */
struct it_answers *it_answers_new(size_t n);
void it_answers_free(struct it_answers *a);

/* it_msg_fn: check one output message (id, key, trace-id header, model,
 * outputs = factor * inputs with the same name, datatype and shape) and
 * count it.  Messages keyed other than "key-<i>" count as foreign. */
void it_answers_on_msg(const struct it_msg *m, void *arg);

/* it_done_fn: every request has a result. */
int it_answers_all(void *arg);

/* it_done_fn: at least a->target requests have a result. */
int it_answers_reached(void *arg);

/* Results beyond the first per request. */
size_t it_answers_duplicates(const struct it_answers *a);

/* Write the first ids without a result ("r-17 r-942 ...", at most max) to
 * buf. */
void it_answers_missing(const struct it_answers *a, size_t max, char *buf,
                        size_t size);

#endif
