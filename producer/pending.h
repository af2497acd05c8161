/* The requests of one kinfer-produce run that wait for results, by Kafka
 * key: when each was sent, how many answers it expects and how many came.
 * Only this run's keys are ever stored, so memory follows the run's size,
 * never the output topic's.
 *
 * Not thread-safe: the caller serialises every call (kinfer-produce holds
 * one mutex around it, shared by the send loop and the result thread).
 */
#ifndef KPROD_PENDING_H
#define KPROD_PENDING_H

#include <stddef.h>
#include <stdint.h>

struct kprod_pending;

/* A new empty table.  Aborts on out of memory (bookkeeping). */
struct kprod_pending *kprod_pending_new(void);

/* NULL is a no-op. */
void kprod_pending_free(struct kprod_pending *t);

/* Record a request with key[0..keylen) (any bytes) sent at send_us
 * (monotonic microseconds); gen_index is the synthetic request's index, or
 * -1 for a request read from input.  Sending a key again makes it expect
 * one more answer; its latency is still measured from the first send and
 * its first gen_index is kept. */
void kprod_pending_add(struct kprod_pending *t, const void *key, size_t keylen,
                       int64_t send_us, int64_t gen_index);

/* The request with key failed delivery: it expects one answer fewer.
 * Unknown keys are ignored. */
void kprod_pending_fail(struct kprod_pending *t, const void *key,
                        size_t keylen);

enum kprod_match {
    KPROD_MATCH_NONE,     /* not a key of this run: ignore the result */
    KPROD_MATCH_FIRST,    /* an expected answer: count it, measure it */
    KPROD_MATCH_DUPLICATE /* the key already had all its answers */
};

/* A result with key[0..keylen) arrived.  On KPROD_MATCH_FIRST *send_us
 * and *gen_index (either may be NULL) receive what kprod_pending_add
 * recorded. */
enum kprod_match kprod_pending_answer(struct kprod_pending *t, const void *key,
                                      size_t keylen, int64_t *send_us,
                                      int64_t *gen_index);

/* Answers still expected: the sum over keys of sends not failed minus
 * answers counted, each key counting at least 0. */
uint64_t kprod_pending_outstanding(const struct kprod_pending *t);

/* Distinct keys stored. */
size_t kprod_pending_size(const struct kprod_pending *t);

#endif
