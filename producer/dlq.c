/* Dead-letter decisions and the replay summary for kinfer-produce
 * --replay-dlq.  The header names are the ones lib/worker_delivery.c
 * writes (docs/protocol.md, "Dead letters"). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "shared/util.h"

/* Kafka's own rule for topic names: 1 to 249 of [A-Za-z0-9._-]. */
static int topic_name_ok(const struct kprod_bytes *t)
{
    if (t->len == 0 || t->len > 249)
        return 0;
    for (size_t i = 0; i < t->len; i++) {
        unsigned char ch = (unsigned char)t->p[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
            return 0;
    }
    return 1;
}

static int bytes_equal(const struct kprod_bytes *b, const char *s)
{
    return b->p != NULL && b->len == strlen(s) && memcmp(b->p, s, b->len) == 0;
}

static int bytes_contain(const struct kprod_bytes *b, const char *needle)
{
    size_t n = strlen(needle);
    if (b->p == NULL || n > b->len)
        return 0;
    if (n == 0)
        return 1;
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->p + i, needle, n) == 0)
            return 1;
    return 0;
}

enum kprod_dlq_verdict kprod_dlq_classify(const struct kprod_dlq_headers *h,
                                          size_t value_len, const char *filter,
                                          const char *topic,
                                          const char *default_topic,
                                          struct kprod_dlq_plan *plan)
{
    if (filter != NULL && !bytes_contain(&h->error, filter))
        return KPROD_DLQ_FILTERED;
    if (h->error.p == NULL)
        return KPROD_DLQ_NOT_DEAD_LETTER;
    if (h->shed.p != NULL)
        return KPROD_DLQ_SHED;
    if (h->source_topic.p != NULL && !topic_name_ok(&h->source_topic))
        return KPROD_DLQ_MALFORMED;
    int tombstone = bytes_equal(&h->tombstone, "true");
    if (tombstone && value_len != 0)
        return KPROD_DLQ_MALFORMED;
    plan->null_value = tombstone;
    if (topic != NULL) {
        plan->topic = topic;
        plan->topic_len = strlen(topic);
    } else if (h->source_topic.p != NULL) {
        plan->topic = h->source_topic.p;
        plan->topic_len = h->source_topic.len;
    } else {
        plan->topic = default_topic;
        plan->topic_len = strlen(default_topic);
    }
    return KPROD_DLQ_REPLAY;
}

const char *kprod_dlq_verdict_name(enum kprod_dlq_verdict v)
{
    switch (v) {
    case KPROD_DLQ_REPLAY:
        return "replay";
    case KPROD_DLQ_FILTERED:
        return "filtered";
    case KPROD_DLQ_SHED:
        return "shed";
    case KPROD_DLQ_NOT_DEAD_LETTER:
        return "not a dead letter";
    case KPROD_DLQ_MALFORMED:
        return "malformed";
    }
    return "?";
}

int kprod_dlq_header_kept(const char *name)
{
    return strncmp(name, "kinfer-", 7) != 0;
}

/* Append text to buf at *pos if all of it fits before the room reserved
 * for the tail; returns 0 when it did. */
static int put(char *buf, size_t room, size_t *pos, const char *text)
{
    size_t n = strlen(text);
    if (*pos + n > room)
        return -1;
    memcpy(buf + *pos, text, n);
    *pos += n;
    return 0;
}

char *kprod_escape(const void *bytes, size_t len, size_t max, char *buf,
                   size_t size)
{
    if (size == 0)
        return buf;
    if (bytes == NULL) {
        kinfer_fmt(buf, size, "null");
        return buf;
    }
    /* Keep room for the closing quote, "..." and the NUL. */
    if (size < 6) {
        buf[0] = '\0';
        return buf;
    }
    size_t room = size - 5, pos = 0;
    const unsigned char *p = bytes;
    size_t i;
    buf[pos++] = '"';
    for (i = 0; i < len && i < max; i++) {
        char one[8];
        if (p[i] == '"' || p[i] == '\\')
            kinfer_fmt(one, sizeof one, "\\%c", p[i]);
        else if (p[i] >= 0x20 && p[i] < 0x7f)
            kinfer_fmt(one, sizeof one, "%c", p[i]);
        else
            kinfer_fmt(one, sizeof one, "\\x%02x", p[i]);
        if (put(buf, room, &pos, one) != 0)
            break;
    }
    buf[pos++] = '"';
    if (i < len) {
        memcpy(buf + pos, "...", 3);
        pos += 3;
    }
    buf[pos] = '\0';
    return buf;
}

int kprod_parse_since(const char *text, int64_t now_ms, int64_t *out_ms)
{
    if (text == NULL || !isdigit((unsigned char)text[0]))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    int64_t unit;
    if (*end == '\0') {
        *out_ms = (int64_t)v;
        return 0;
    }
    switch (*end) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = 86400 * 1000;
        break;
    default:
        return -1;
    }
    if (end[1] != '\0' || v > now_ms / unit)
        return -1;
    *out_ms = now_ms - (int64_t)v * unit;
    return 0;
}

uint64_t kprod_replay_lost(const struct kprod_replay_summary *s)
{
    return s->failed + s->skipped[KPROD_DLQ_SHED] +
           s->skipped[KPROD_DLQ_NOT_DEAD_LETTER] +
           s->skipped[KPROD_DLQ_MALFORMED];
}

static void print_text(const struct kprod_replay_summary *s, FILE *f)
{
    fprintf(f,
            "dead letters read %" PRIu64 "  %s %" PRIu64
            "  delivery failures %" PRIu64 "\n",
            s->read, s->dry_run ? "would replay" : "replayed", s->replayed,
            s->failed);
    fprintf(f,
            "skipped  filtered %" PRIu64 "  shed %" PRIu64
            "  not a dead letter %" PRIu64 "  malformed %" PRIu64 "\n",
            s->skipped[KPROD_DLQ_FILTERED], s->skipped[KPROD_DLQ_SHED],
            s->skipped[KPROD_DLQ_NOT_DEAD_LETTER],
            s->skipped[KPROD_DLQ_MALFORMED]);
    fprintf(f, "%.2f s\n", s->seconds);
    if (s->dry_run)
        fprintf(f, "dry run: nothing was sent\n");
    if (!s->complete)
        fprintf(f, "incomplete: the DLQ was not read to its end\n");
    if (s->interrupted)
        fprintf(f, "interrupted\n");
}

static void print_json(const struct kprod_replay_summary *s, FILE *f)
{
    fprintf(f,
            "{\"dry_run\":%s,\"read\":%" PRIu64 ",\"replayed\":%" PRIu64
            ",\"delivery_failures\":%" PRIu64
            ",\"skipped\":{\"filtered\":%" PRIu64 ",\"shed\":%" PRIu64
            ",\"not_dead_letter\":%" PRIu64 ",\"malformed\":%" PRIu64
            "},\"complete\":%s,\"seconds\":%.6f"
            ",\"interrupted\":%s}\n",
            s->dry_run ? "true" : "false", s->read, s->replayed, s->failed,
            s->skipped[KPROD_DLQ_FILTERED], s->skipped[KPROD_DLQ_SHED],
            s->skipped[KPROD_DLQ_NOT_DEAD_LETTER],
            s->skipped[KPROD_DLQ_MALFORMED], s->complete ? "true" : "false",
            s->seconds, s->interrupted ? "true" : "false");
}

void kprod_replay_summary_print(const struct kprod_replay_summary *s, int json,
                                FILE *f)
{
    if (json)
        print_json(s, f);
    else
        print_text(s, f);
}
