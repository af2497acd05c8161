/* Per-partition offset tracker: the poll thread adds each dispatched offset,
 * the delivery-report thread completes it, and the contiguous answered
 * prefix becomes the watermark the poll thread stores.
 *
 * Layout: partitions sit in an array sorted by id (a consumer owns tens to
 * hundreds, so a binary search beats hashing and keeps collect ordered).
 * Each holds a ring of (offset, state) entries in add order; since offsets
 * are added increasing, the ring is sorted and complete binary-searches it.
 * Answered entries leave from the front only, so the ring holds everything
 * from the oldest unanswered offset up to the newest added one.  A released
 * entry (ended without an answer) is no longer in flight but stays, so the
 * watermark stops below it until the partition is assigned afresh.
 *
 * Locking: one mutex, t->lock, guards every field below except where noted;
 * it is a leaf lock (the collect callback runs under it and must not call
 * back in).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/tracker.h"
#include "shared/util.h"

/* Smallest ring; also the floor below which it never shrinks. */
#define RING_MIN 16

/* An entry's state: in flight, answered, or released (ended without an
 * answer: no longer running, but the watermark must never pass it). */
enum entry_state { ENTRY_IN_FLIGHT, ENTRY_DONE, ENTRY_RELEASED };

struct entry {
    int64_t offset;
    unsigned char state; /* enum entry_state */
};

struct part {
    int32_t id;
    uint64_t gen;       /* from kinfer_tracker_assign */
    struct entry *ring; /* [cap] slots, cap a power of two */
    size_t cap;
    size_t head;        /* slot of the oldest entry */
    size_t len;         /* entries held, in flight or ended */
    size_t in_flight;   /* entries held and still in flight */
    int64_t last_added; /* -1 before the first add */
    int64_t watermark;  /* one past the last popped entry */
    bool moved;         /* watermark changed since the last collect */
};

struct kinfer_tracker {
    pthread_mutex_t lock;
    /* Broadcast when some in-flight count drops and waiters > 0. */
    pthread_cond_t drained; /* with lock */
    size_t waiters;         /* threads in wait_drained */
    uint64_t next_gen;      /* last generation handed out */
    struct part *parts;     /* [nparts] sorted by id */
    size_t nparts;
    size_t parts_cap;
};

enum kinfer_err kinfer_tracker_new(struct kinfer_tracker **out)
{
    if (out == NULL)
        return KINFER_ERR_INVALID;
    struct kinfer_tracker *t = kinfer_xcalloc(1, sizeof(*t));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* kinfer_deadline computes CLOCK_MONOTONIC deadlines. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->drained, &ca);
    pthread_condattr_destroy(&ca);
    *out = t;
    return KINFER_OK;
}

void kinfer_tracker_free(struct kinfer_tracker *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nparts; i++)
        free(t->parts[i].ring);
    free(t->parts);
    pthread_cond_destroy(&t->drained);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Index of partition id, or of where it would be inserted (*found false). */
static size_t part_search(const struct kinfer_tracker *t, int32_t id,
                          bool *found)
{
    size_t lo = 0, hi = t->nparts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->parts[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < t->nparts && t->parts[lo].id == id;
    return lo;
}

static struct part *part_find(struct kinfer_tracker *t, int32_t id)
{
    bool found;
    size_t i = part_search(t, id, &found);
    return found ? &t->parts[i] : NULL;
}

static struct entry *ring_at(struct part *pt, size_t i)
{
    return &pt->ring[(pt->head + i) & (pt->cap - 1)];
}

/* Move the entries into a fresh ring of new_cap slots, oldest at slot 0. */
static void ring_resize(struct part *pt, size_t new_cap)
{
    struct entry *r = kinfer_xmalloc(new_cap * sizeof(*r));
    for (size_t i = 0; i < pt->len; i++)
        r[i] = *ring_at(pt, i);
    free(pt->ring);
    pt->ring = r;
    pt->cap = new_cap;
    pt->head = 0;
}

/* Wake wait_drained callers; skipped when nobody waits, since complete
 * runs once per message on the delivery-report thread. */
static void wake_waiters(struct kinfer_tracker *t)
{
    if (t->waiters > 0)
        pthread_cond_broadcast(&t->drained);
}

/* Forget every offset of pt and start afresh with generation gen. */
static void part_reset(struct part *pt, uint64_t gen)
{
    free(pt->ring);
    pt->ring = kinfer_xmalloc(RING_MIN * sizeof(*pt->ring));
    pt->cap = RING_MIN;
    pt->head = 0;
    pt->len = 0;
    pt->in_flight = 0;
    pt->gen = gen;
    pt->last_added = -1;
    pt->watermark = -1;
    pt->moved = false;
}

uint64_t kinfer_tracker_assign(struct kinfer_tracker *t, int32_t partition)
{
    pthread_mutex_lock(&t->lock);
    uint64_t gen = ++t->next_gen;
    bool found;
    size_t i = part_search(t, partition, &found);
    if (found) {
        if (t->parts[i].in_flight > 0)
            wake_waiters(t);
    } else {
        if (t->nparts == t->parts_cap) {
            t->parts_cap = t->parts_cap ? 2 * t->parts_cap : 8;
            t->parts =
                kinfer_xrealloc(t->parts, t->parts_cap * sizeof(*t->parts));
        }
        memmove(&t->parts[i + 1], &t->parts[i],
                (t->nparts - i) * sizeof(*t->parts));
        t->nparts++;
        memset(&t->parts[i], 0, sizeof(t->parts[i]));
        t->parts[i].id = partition;
    }
    part_reset(&t->parts[i], gen);
    pthread_mutex_unlock(&t->lock);
    return gen;
}

enum kinfer_err kinfer_tracker_add(struct kinfer_tracker *t, int32_t partition,
                                   int64_t offset, uint64_t *gen)
{
    enum kinfer_err err = KINFER_OK;

    pthread_mutex_lock(&t->lock);
    struct part *pt = part_find(t, partition);
    if (pt == NULL) {
        err = KINFER_ERR_NOT_FOUND;
        goto out;
    }
    /* last_added starts at -1, which also rejects negative offsets. */
    if (offset <= pt->last_added) {
        err = KINFER_ERR_INVALID;
        goto out;
    }
    /* The ring only grows when full, so its size stays bounded by the
     * most entries ever held at once; otherwise slots are reused. */
    if (pt->len == pt->cap)
        ring_resize(pt, 2 * pt->cap);
    struct entry *e = ring_at(pt, pt->len);
    e->offset = offset;
    e->state = ENTRY_IN_FLIGHT;
    pt->len++;
    pt->in_flight++;
    pt->last_added = offset;
    if (gen != NULL)
        *gen = pt->gen;
out:
    pthread_mutex_unlock(&t->lock);
    return err;
}

/* Position of offset among pt's entries, or pt->len when absent. */
static size_t ring_search(struct part *pt, int64_t offset)
{
    size_t lo = 0, hi = pt->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(pt, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < pt->len && ring_at(pt, lo)->offset == offset)
        return lo;
    return pt->len;
}

/* End the in-flight entry for offset with state (answered or released);
 * only answered entries at the front move the watermark. */
static enum kinfer_err entry_end(struct kinfer_tracker *t, int32_t partition,
                                 uint64_t gen, int64_t offset,
                                 enum entry_state state)
{
    enum kinfer_err err = KINFER_ERR_NOT_FOUND;

    pthread_mutex_lock(&t->lock);
    struct part *pt = part_find(t, partition);
    if (pt == NULL || pt->gen != gen)
        goto out;
    size_t i = ring_search(pt, offset);
    if (i == pt->len || ring_at(pt, i)->state != ENTRY_IN_FLIGHT)
        goto out;

    ring_at(pt, i)->state = (unsigned char)state;
    pt->in_flight--;
    while (pt->len > 0 && ring_at(pt, 0)->state == ENTRY_DONE) {
        pt->watermark = ring_at(pt, 0)->offset + 1;
        pt->moved = true;
        pt->head = (pt->head + 1) & (pt->cap - 1);
        pt->len--;
    }
    /* Give memory back after a burst; the quarter-full threshold leaves
     * room to grow again without resizing on every add. */
    if (pt->cap > RING_MIN && pt->len <= pt->cap / 4)
        ring_resize(pt, pt->cap / 2);
    wake_waiters(t);
    err = KINFER_OK;
out:
    pthread_mutex_unlock(&t->lock);
    return err;
}

enum kinfer_err kinfer_tracker_complete(struct kinfer_tracker *t,
                                        int32_t partition, uint64_t gen,
                                        int64_t offset)
{
    return entry_end(t, partition, gen, offset, ENTRY_DONE);
}

enum kinfer_err kinfer_tracker_release(struct kinfer_tracker *t,
                                       int32_t partition, uint64_t gen,
                                       int64_t offset)
{
    return entry_end(t, partition, gen, offset, ENTRY_RELEASED);
}

size_t kinfer_tracker_revoke(struct kinfer_tracker *t, int32_t partition)
{
    size_t n = 0;

    pthread_mutex_lock(&t->lock);
    bool found;
    size_t i = part_search(t, partition, &found);
    if (found) {
        n = t->parts[i].in_flight;
        free(t->parts[i].ring);
        memmove(&t->parts[i], &t->parts[i + 1],
                (t->nparts - i - 1) * sizeof(*t->parts));
        t->nparts--;
        /* A revoked partition counts as drained for wait_drained. */
        if (n > 0)
            wake_waiters(t);
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t kinfer_tracker_collect(struct kinfer_tracker *t,
                              void (*cb)(int32_t partition, int64_t next_offset,
                                         void *arg),
                              void *arg)
{
    size_t calls = 0;

    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nparts; i++) {
        struct part *pt = &t->parts[i];
        if (!pt->moved)
            continue;
        pt->moved = false;
        cb(pt->id, pt->watermark, arg);
        calls++;
    }
    pthread_mutex_unlock(&t->lock);
    return calls;
}

size_t kinfer_tracker_in_flight(struct kinfer_tracker *t, int32_t partition)
{
    size_t n = 0;

    pthread_mutex_lock(&t->lock);
    if (partition < 0) {
        for (size_t i = 0; i < t->nparts; i++)
            n += t->parts[i].in_flight;
    } else {
        struct part *pt = part_find(t, partition);
        if (pt != NULL)
            n = pt->in_flight;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t kinfer_tracker_held(struct kinfer_tracker *t)
{
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nparts; i++)
        n += t->parts[i].len;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* True when none of parts[0..n) (every partition when n == 0) has an
 * offset in flight; untracked partitions count as drained. */
static bool drained_locked(struct kinfer_tracker *t, const int32_t *parts,
                           size_t n)
{
    if (n == 0) {
        for (size_t i = 0; i < t->nparts; i++)
            if (t->parts[i].in_flight > 0)
                return false;
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        struct part *pt = part_find(t, parts[i]);
        if (pt != NULL && pt->in_flight > 0)
            return false;
    }
    return true;
}

enum kinfer_err kinfer_tracker_wait_drained(struct kinfer_tracker *t,
                                            const int32_t *parts, size_t n,
                                            int timeout_ms)
{
    struct timespec deadline;
    kinfer_deadline(&deadline, timeout_ms);
    enum kinfer_err err = KINFER_OK;

    pthread_mutex_lock(&t->lock);
    t->waiters++;
    while (!drained_locked(t, parts, n)) {
        int rc = pthread_cond_timedwait(&t->drained, &t->lock, &deadline);
        if (rc == ETIMEDOUT) {
            if (!drained_locked(t, parts, n))
                err = KINFER_ERR_TIMEOUT;
            break;
        }
    }
    t->waiters--;
    pthread_mutex_unlock(&t->lock);
    return err;
}
