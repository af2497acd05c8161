/* The delayed queue (delay.h): a binary min-heap of (due, sequence, item)
 * under one mutex; the thread sleeps on a monotonic condition variable
 * until the earliest item is due or an add brings an earlier one.
 *
 * Locking: d->lock guards every field; a leaf, released around due().
 */
#include <pthread.h>
#include <stdlib.h>

#include "delay.h"
#include "shared/thread.h"
#include "shared/util.h"

struct slot {
    int64_t due;
    uint64_t seq;
    void *item;
};

struct kinfer_delay {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* with lock: an add or stop */
    struct slot *heap;
    size_t n, cap;
    uint64_t next_seq;
    int stopping, stopped;
    pthread_t thread;
    kinfer_delay_fn *due;
    void *arg;
};

static int before(const struct slot *a, const struct slot *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void swap(struct slot *a, struct slot *b)
{
    struct slot t = *a;
    *a = *b;
    *b = t;
}

static void heap_push(struct kinfer_delay *d, struct slot s)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->heap = kinfer_xrealloc(d->heap, d->cap * sizeof *d->heap);
    }
    size_t i = d->n++;
    d->heap[i] = s;
    while (i > 0 && before(&d->heap[i], &d->heap[(i - 1) / 2])) {
        swap(&d->heap[i], &d->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}

static struct slot heap_pop(struct kinfer_delay *d)
{
    struct slot top = d->heap[0];
    d->heap[0] = d->heap[--d->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < d->n && before(&d->heap[l], &d->heap[m]))
            m = l;
        if (r < d->n && before(&d->heap[r], &d->heap[m]))
            m = r;
        if (m == i)
            break;
        swap(&d->heap[i], &d->heap[m]);
        i = m;
    }
    return top;
}

static void *delay_main(void *arg)
{
    struct kinfer_delay *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        if (d->n == 0) {
            pthread_cond_wait(&d->cond, &d->lock);
            continue;
        }
        int64_t wait = d->heap[0].due - kinfer_now_ms();
        if (wait > 0) {
            struct timespec ts;
            kinfer_deadline(&ts, wait > 60000 ? 60000 : (int)wait);
            (void)pthread_cond_timedwait(&d->cond, &d->lock, &ts);
            continue;
        }
        struct slot s = heap_pop(d);
        pthread_mutex_unlock(&d->lock);
        d->due(s.item, d->arg);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

enum kinfer_err kinfer_delay_new(kinfer_delay_fn *due, void *arg,
                                 struct kinfer_delay **out)
{
    struct kinfer_delay *d = kinfer_xcalloc(1, sizeof *d);
    d->due = due;
    d->arg = arg;
    pthread_mutex_init(&d->lock, NULL);
    kinfer_cond_init_monotonic(&d->cond);
    if (kinfer_thread_start(&d->thread, delay_main, d) != 0) {
        pthread_cond_destroy(&d->cond);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return KINFER_ERR_NOMEM;
    }
    *out = d;
    return KINFER_OK;
}

enum kinfer_err kinfer_delay_add(struct kinfer_delay *d, int64_t due_ms,
                                 void *item)
{
    pthread_mutex_lock(&d->lock);
    if (d->stopping) {
        pthread_mutex_unlock(&d->lock);
        return KINFER_ERR_CLOSED;
    }
    heap_push(d,
              (struct slot){.due = due_ms, .seq = d->next_seq++, .item = item});
    /* Only a new earliest item shortens the thread's sleep. */
    if (d->heap[0].item == item)
        pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return KINFER_OK;
}

size_t kinfer_delay_pending(struct kinfer_delay *d)
{
    pthread_mutex_lock(&d->lock);
    size_t n = d->n;
    pthread_mutex_unlock(&d->lock);
    return n;
}

size_t kinfer_delay_stop(struct kinfer_delay *d, kinfer_delay_fn *drop,
                         void *arg)
{
    pthread_mutex_lock(&d->lock);
    int was = d->stopping;
    d->stopping = 1;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (was)
        return 0;
    pthread_join(d->thread, NULL);
    d->stopped = 1;
    /* No other thread adds now: stopping refuses them. */
    size_t n = 0;
    while (d->n > 0) {
        struct slot s = heap_pop(d);
        if (drop != NULL)
            drop(s.item, arg);
        n++;
    }
    return n;
}

void kinfer_delay_free(struct kinfer_delay *d)
{
    if (d == NULL)
        return;
    (void)kinfer_delay_stop(d, NULL, NULL);
    free(d->heap);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}
