/* Per-key FIFO gate (ordering.h): a chained hash table of the keys that
 * have an item running, each with the FIFO of its waiting items.  The
 * table doubles when it holds twice as many keys as buckets, so lookups
 * stay short whatever the number of keys.
 *
 * Locking: one mutex, o->lock, guards everything; a leaf.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ordering.h"
#include "shared/util.h"

struct node {
    void *item;
    struct node *next;
};

struct kinfer_order_key {
    struct kinfer_order_key *chain; /* next in the bucket */
    uint64_t hash;
    int32_t partition;
    size_t len;
    struct node *head, *tail; /* waiting items, oldest first */
    unsigned char key[];      /* len bytes */
};

struct kinfer_order {
    pthread_mutex_t lock;
    struct kinfer_order_key **buckets; /* [nbuckets], a power of two */
    size_t nbuckets;
    size_t nkeys;
    size_t waiting;
};

static uint64_t hash_key(int32_t partition, const void *key, size_t len)
{
    /* FNV-1a over the partition and the key bytes. */
    uint64_t h = 1469598103934665603ULL;
    uint32_t p = (uint32_t)partition;
    for (int i = 0; i < 4; i++) {
        h ^= (p >> (8 * i)) & 0xff;
        h *= 1099511628211ULL;
    }
    const unsigned char *b = key;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

struct kinfer_order *kinfer_order_new(size_t expected)
{
    struct kinfer_order *o = kinfer_xcalloc(1, sizeof *o);
    size_t n = 64;
    while (n < expected && n < ((size_t)1 << 20))
        n *= 2;
    o->buckets = kinfer_xcalloc(n, sizeof *o->buckets);
    o->nbuckets = n;
    pthread_mutex_init(&o->lock, NULL);
    return o;
}

void kinfer_order_free(struct kinfer_order *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->nbuckets; i++) {
        struct kinfer_order_key *k = o->buckets[i];
        while (k != NULL) {
            struct kinfer_order_key *next = k->chain;
            for (struct node *n = k->head; n != NULL;) {
                struct node *nn = n->next;
                free(n);
                n = nn;
            }
            free(k);
            k = next;
        }
    }
    free(o->buckets);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

static void grow(struct kinfer_order *o)
{
    size_t n = o->nbuckets * 2;
    struct kinfer_order_key **b = kinfer_xcalloc(n, sizeof *b);
    for (size_t i = 0; i < o->nbuckets; i++) {
        struct kinfer_order_key *k = o->buckets[i];
        while (k != NULL) {
            struct kinfer_order_key *next = k->chain;
            size_t at = (size_t)k->hash & (n - 1);
            k->chain = b[at];
            b[at] = k;
            k = next;
        }
    }
    free(o->buckets);
    o->buckets = b;
    o->nbuckets = n;
}

int kinfer_order_enter(struct kinfer_order *o, int32_t partition,
                       const void *key, size_t len, void *item,
                       struct kinfer_order_key **slot)
{
    uint64_t h = hash_key(partition, key, len);
    pthread_mutex_lock(&o->lock);
    struct kinfer_order_key **at = &o->buckets[(size_t)h & (o->nbuckets - 1)];
    struct kinfer_order_key *k = *at;
    while (k != NULL &&
           !(k->hash == h && k->partition == partition && k->len == len &&
             (len == 0 || memcmp(k->key, key, len) == 0)))
        k = k->chain;
    int run_now = k == NULL;
    if (run_now) {
        k = kinfer_xcalloc(1, sizeof *k + len);
        k->hash = h;
        k->partition = partition;
        k->len = len;
        if (len > 0)
            memcpy(k->key, key, len);
        k->chain = *at;
        *at = k;
        if (++o->nkeys > 2 * o->nbuckets)
            grow(o);
    } else {
        struct node *n = kinfer_xmalloc(sizeof *n);
        n->item = item;
        n->next = NULL;
        if (k->tail != NULL)
            k->tail->next = n;
        else
            k->head = n;
        k->tail = n;
        o->waiting++;
    }
    *slot = k;
    pthread_mutex_unlock(&o->lock);
    return run_now;
}

void *kinfer_order_leave(struct kinfer_order *o, struct kinfer_order_key *k)
{
    void *item = NULL;
    pthread_mutex_lock(&o->lock);
    if (k->head != NULL) {
        struct node *n = k->head;
        k->head = n->next;
        if (k->head == NULL)
            k->tail = NULL;
        item = n->item;
        free(n);
        o->waiting--;
    } else {
        struct kinfer_order_key **at =
            &o->buckets[(size_t)k->hash & (o->nbuckets - 1)];
        while (*at != k)
            at = &(*at)->chain;
        *at = k->chain;
        o->nkeys--;
        free(k);
    }
    pthread_mutex_unlock(&o->lock);
    return item;
}

size_t kinfer_order_keys(struct kinfer_order *o)
{
    pthread_mutex_lock(&o->lock);
    size_t n = o->nkeys;
    pthread_mutex_unlock(&o->lock);
    return n;
}

size_t kinfer_order_waiting(struct kinfer_order *o)
{
    pthread_mutex_lock(&o->lock);
    size_t n = o->waiting;
    pthread_mutex_unlock(&o->lock);
    return n;
}
