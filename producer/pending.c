/* Hash table of the keys kinfer-produce sent and waits on: open addressing
 * with linear probing, kept at most half full.  Keys are never removed
 * during a run (a late duplicate must still be recognised as one). */
#include <stdlib.h>
#include <string.h>

#include "pending.h"
#include "shared/util.h"

struct entry {
    char *key; /* owned copy; NULL marks an empty slot */
    size_t keylen;
    uint64_t hash;
    int64_t send_us;
    int64_t gen_index;
    uint64_t expected; /* sends not failed */
    uint64_t answered; /* answers counted, at most expected */
};

struct kprod_pending {
    struct entry *slots;
    size_t cap; /* power of two */
    size_t used;
    uint64_t outstanding;
};

/* FNV-1a: keys are short and come from our own requests, not from an
 * adversary, so a simple hash is enough. */
static uint64_t hash_key(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

struct kprod_pending *kprod_pending_new(void)
{
    struct kprod_pending *t = kinfer_xcalloc(1, sizeof *t);
    t->cap = 1024;
    t->slots = kinfer_xcalloc(t->cap, sizeof *t->slots);
    return t;
}

void kprod_pending_free(struct kprod_pending *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].key);
    free(t->slots);
    free(t);
}

/* The slot holding key, or the empty slot where it would go. */
static struct entry *find(const struct kprod_pending *t, const void *key,
                          size_t keylen, uint64_t h)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        struct entry *e = &t->slots[i];
        if (e->key == NULL)
            return e;
        if (e->hash == h && e->keylen == keylen &&
            memcmp(e->key, key, keylen) == 0)
            return e;
    }
}

static void grow(struct kprod_pending *t)
{
    struct entry *old = t->slots;
    size_t oldcap = t->cap;
    t->cap *= 2;
    t->slots = kinfer_xcalloc(t->cap, sizeof *t->slots);
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].key == NULL)
            continue;
        *find(t, old[i].key, old[i].keylen, old[i].hash) = old[i];
    }
    free(old);
}

static uint64_t owed(const struct entry *e)
{
    return e->expected > e->answered ? e->expected - e->answered : 0;
}

/* Apply a change to e's counts while keeping t->outstanding the sum of
 * owed() over all entries. */
static void set_counts(struct kprod_pending *t, struct entry *e,
                       uint64_t expected, uint64_t answered)
{
    t->outstanding -= owed(e);
    e->expected = expected;
    e->answered = answered;
    t->outstanding += owed(e);
}

void kprod_pending_add(struct kprod_pending *t, const void *key, size_t keylen,
                       int64_t send_us, int64_t gen_index)
{
    if ((t->used + 1) * 2 > t->cap)
        grow(t);
    uint64_t h = hash_key(key, keylen);
    struct entry *e = find(t, key, keylen, h);
    if (e->key == NULL) {
        /* +1 so an empty key still gets a non-NULL owned pointer. */
        e->key = kinfer_xmalloc(keylen + 1);
        memcpy(e->key, key, keylen);
        e->key[keylen] = '\0';
        e->keylen = keylen;
        e->hash = h;
        e->send_us = send_us;
        e->gen_index = gen_index;
        e->expected = 0;
        e->answered = 0;
        t->used++;
    }
    set_counts(t, e, e->expected + 1, e->answered);
}

void kprod_pending_fail(struct kprod_pending *t, const void *key, size_t keylen)
{
    struct entry *e = find(t, key, keylen, hash_key(key, keylen));
    if (e->key == NULL || e->expected == 0)
        return;
    set_counts(t, e, e->expected - 1, e->answered);
}

enum kprod_match kprod_pending_answer(struct kprod_pending *t, const void *key,
                                      size_t keylen, int64_t *send_us,
                                      int64_t *gen_index)
{
    struct entry *e = find(t, key, keylen, hash_key(key, keylen));
    if (e->key == NULL)
        return KPROD_MATCH_NONE;
    if (e->answered >= e->expected)
        return KPROD_MATCH_DUPLICATE;
    set_counts(t, e, e->expected, e->answered + 1);
    if (send_us != NULL)
        *send_us = e->send_us;
    if (gen_index != NULL)
        *gen_index = e->gen_index;
    return KPROD_MATCH_FIRST;
}

uint64_t kprod_pending_outstanding(const struct kprod_pending *t)
{
    return t->outstanding;
}

size_t kprod_pending_size(const struct kprod_pending *t)
{
    return t->used;
}
