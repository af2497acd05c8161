/* What kinfer-produce --replay-dlq decides about one dead letter, and how
 * it reports: whether a message of the DLQ can be sent back to a request
 * topic as the original request (docs/protocol.md, "Dead letters" and
 * "Replaying dead letters"), which of its headers go with it, the dry-run
 * line and the end-of-run summary.  Pure logic without Kafka: replay.c
 * reads the messages, tests/test_produce_dlq.c checks this exactly.
 */
#ifndef KPROD_DLQ_H
#define KPROD_DLQ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A header value: p == NULL when the header is absent (or its value is
 * null); otherwise len bytes, not NUL-terminated.  Borrowed. */
struct kprod_bytes {
    const char *p;
    size_t len;
};

/* The worker's dead-letter headers of one message (the last header of
 * each name: the worker appends its own after the request's copies). */
struct kprod_dlq_headers {
    struct kprod_bytes error;            /* kinfer-error */
    struct kprod_bytes source_topic;     /* kinfer-source-topic */
    struct kprod_bytes source_partition; /* kinfer-source-partition */
    struct kprod_bytes source_offset;    /* kinfer-source-offset */
    struct kprod_bytes tombstone;        /* kinfer-tombstone */
    struct kprod_bytes shed;             /* kinfer-shed */
};

enum kprod_dlq_verdict {
    KPROD_DLQ_REPLAY,          /* send it back */
    KPROD_DLQ_FILTERED,        /* kinfer-error lacks --filter-error's text */
    KPROD_DLQ_SHED,            /* kinfer-shed: the copy lost its headers,
                                  value or key, so it is not the request */
    KPROD_DLQ_NOT_DEAD_LETTER, /* no kinfer-error: not the worker's */
    KPROD_DLQ_MALFORMED,       /* kinfer-source-topic is not a topic name,
                                  or kinfer-tombstone with a value */
};
#define KPROD_DLQ_VERDICTS 5

/* Where and how a dead letter to replay goes. */
struct kprod_dlq_plan {
    const char *topic; /* the topic, borrowed from the caller's arguments
                          or from h->source_topic */
    size_t topic_len;  /* not NUL-terminated when from the header */
    int null_value;    /* kinfer-tombstone: true: the request was a
                          tombstone, replay it as a null value */
};

/* Decide about a dead letter with headers h and a value of value_len
 * bytes.  In this order: with filter (NULL: none) a message whose
 * kinfer-error does not contain filter is FILTERED; without kinfer-error
 * NOT_DEAD_LETTER; with kinfer-shed SHED; a source topic that is not a
 * Kafka topic name, or kinfer-tombstone (value "true") on a non-empty
 * value, MALFORMED.  On KPROD_DLQ_REPLAY *plan says where it goes: topic
 * when not NULL (--topic given), else the source topic header, else
 * default_topic. */
enum kprod_dlq_verdict kprod_dlq_classify(const struct kprod_dlq_headers *h,
                                          size_t value_len, const char *filter,
                                          const char *topic,
                                          const char *default_topic,
                                          struct kprod_dlq_plan *plan);

/* Short name of v for logs and the dry run: "replay", "filtered", "shed",
 * "not a dead letter", "malformed". */
const char *kprod_dlq_verdict_name(enum kprod_dlq_verdict v);

/* 1 when a header called name is replayed: every header except the
 * kinfer-* ones (the worker's error and provenance headers, and any
 * kinfer-* header of the original request). */
int kprod_dlq_header_kept(const char *name);

/* Write bytes[0..len) to buf[0..size) (NUL-terminated, never more than
 * size - 1 characters) as printable text between double quotes: printable
 * ASCII as is, '"' and '\\' escaped with a backslash, other bytes as
 * \xNN; at most max input bytes, then "..." after the closing quote.
 * NULL bytes print as null.  Returns buf. */
char *kprod_escape(const void *bytes, size_t len, size_t max, char *buf,
                   size_t size);

/* Parse --since: epoch milliseconds ("1718000000000"), or a duration back
 * from now_ms with a unit s, m, h or d ("90m").  Returns 0 and writes
 * *out_ms, or -1 when text is neither. */
int kprod_parse_since(const char *text, int64_t now_ms, int64_t *out_ms);

/* The counts of a replay run. */
struct kprod_replay_summary {
    int dry_run;       /* nothing was sent; replayed counts what would be */
    uint64_t read;     /* DLQ messages read */
    uint64_t replayed; /* sent and delivered (dry run: would be sent) */
    uint64_t failed;   /* sent but delivery failed */
    uint64_t skipped[KPROD_DLQ_VERDICTS]; /* by verdict; [REPLAY] unused */
    int complete;    /* every partition was read to its end offset of the
                        start */
    double seconds;  /* from the start of reading to the last delivery */
    int interrupted; /* SIGINT cut the run short */
};

/* Dead letters that could not be replayed: skipped for any reason but
 * the filter, or failed delivery. */
uint64_t kprod_replay_lost(const struct kprod_replay_summary *s);

/* Write the summary to f: readable lines, or with json != 0 one JSON
 * object on one line. */
void kprod_replay_summary_print(const struct kprod_replay_summary *s, int json,
                                FILE *f);

#endif
