/* Unit tests of lib/ordering.c: one item per key runs at a time, the
 * waiting ones come back in arrival order, other keys (and the same key
 * bytes on another partition) are not held, entries are freed, the table
 * grows, and many threads keep each key's order. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ordering.h"

static void test_fifo_per_key(void **state)
{
    (void)state;
    struct kinfer_order *o = kinfer_order_new(4);
    int items[4];
    struct kinfer_order_key *slot[4];
    assert_int_equal(kinfer_order_enter(o, 0, "a", 1, &items[0], &slot[0]), 1);
    assert_int_equal(kinfer_order_enter(o, 0, "a", 1, &items[1], &slot[1]), 0);
    assert_int_equal(kinfer_order_enter(o, 0, "a", 1, &items[2], &slot[2]), 0);
    /* Another key, and the same bytes on another partition, run at once. */
    assert_int_equal(kinfer_order_enter(o, 0, "b", 1, &items[3], &slot[3]), 1);
    struct kinfer_order_key *other;
    assert_int_equal(kinfer_order_enter(o, 1, "a", 1, &items[3], &other), 1);
    assert_int_equal(kinfer_order_keys(o), 3);
    assert_int_equal(kinfer_order_waiting(o), 2);
    assert_ptr_equal(slot[0], slot[1]);
    assert_ptr_equal(kinfer_order_leave(o, slot[0]), &items[1]);
    assert_ptr_equal(kinfer_order_leave(o, slot[0]), &items[2]);
    assert_null(kinfer_order_leave(o, slot[0]));
    assert_null(kinfer_order_leave(o, slot[3]));
    assert_null(kinfer_order_leave(o, other));
    assert_int_equal(kinfer_order_keys(o), 0);
    assert_int_equal(kinfer_order_waiting(o), 0);
    /* A key that was freed starts afresh. */
    assert_int_equal(kinfer_order_enter(o, 0, "a", 1, &items[0], &slot[0]), 1);
    /* The empty key (partition mode) is a key like any other. */
    assert_int_equal(kinfer_order_enter(o, 2, NULL, 0, &items[1], &slot[1]), 1);
    assert_int_equal(kinfer_order_enter(o, 2, NULL, 0, &items[2], &slot[2]), 0);
    kinfer_order_free(o); /* with entries and a waiting item left */
}

static void test_many_keys_grow(void **state)
{
    (void)state;
    struct kinfer_order *o = kinfer_order_new(1);
    enum { N = 5000 };
    static struct kinfer_order_key *slots[N];
    static int items[N];
    char key[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(
            kinfer_order_enter(o, 0, key, (size_t)n, &items[i], &slots[i]), 1);
    }
    assert_int_equal(kinfer_order_keys(o), N);
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        struct kinfer_order_key *s;
        assert_int_equal(
            kinfer_order_enter(o, 0, key, (size_t)n, &items[i], &s), 0);
        assert_ptr_equal(s, slots[i]);
    }
    for (int i = 0; i < N; i++) {
        assert_ptr_equal(kinfer_order_leave(o, slots[i]), &items[i]);
        assert_null(kinfer_order_leave(o, slots[i]));
    }
    assert_int_equal(kinfer_order_keys(o), 0);
    kinfer_order_free(o);
}

/* Threads: a producer enters items 0..N-1 of K keys; items that may run
 * go to a shared stack that worker threads pop, "run" (record the key's
 * sequence) and leave, pushing the next item.  Each key's sequence must
 * come out in order. */
enum { T_ITEMS = 20000, T_KEYS = 7, T_THREADS = 4 };

struct titem {
    int key, seq;
    struct kinfer_order_key *slot;
};

struct tstate {
    struct kinfer_order *o;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct titem *ready[T_ITEMS];
    size_t nready;
    size_t done;
    int last[T_KEYS];
    int violations;
};

static void push(struct tstate *s, struct titem *it)
{
    pthread_mutex_lock(&s->lock);
    s->ready[s->nready++] = it;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *tworker(void *arg)
{
    struct tstate *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (s->nready == 0 && s->done < T_ITEMS)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->nready == 0) {
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        /* LIFO: the most recent first, to shuffle the order. */
        struct titem *it = s->ready[--s->nready];
        if (it->seq != s->last[it->key] + 1)
            s->violations++;
        s->last[it->key] = it->seq;
        s->done++;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        struct titem *next = kinfer_order_leave(s->o, it->slot);
        if (next != NULL) {
            next->slot = it->slot;
            push(s, next);
        }
    }
}

static void test_threads_keep_order(void **state)
{
    (void)state;
    struct tstate *s = calloc(1, sizeof *s);
    struct titem *items = calloc(T_ITEMS, sizeof *items);
    assert_non_null(s);
    assert_non_null(items);
    s->o = kinfer_order_new(T_KEYS);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    for (int k = 0; k < T_KEYS; k++)
        s->last[k] = -1;
    pthread_t th[T_THREADS];
    for (int i = 0; i < T_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, tworker, s), 0);
    int seq[T_KEYS] = {0};
    for (int i = 0; i < T_ITEMS; i++) {
        struct titem *it = &items[i];
        it->key = (i * 31) % T_KEYS;
        it->seq = seq[it->key]++;
        char key = (char)('a' + it->key);
        if (kinfer_order_enter(s->o, 0, &key, 1, it, &it->slot))
            push(s, it);
    }
    for (int i = 0; i < T_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(s->done, T_ITEMS);
    assert_int_equal(s->violations, 0);
    assert_int_equal(kinfer_order_keys(s->o), 0);
    kinfer_order_free(s->o);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(items);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_per_key),
        cmocka_unit_test(test_many_keys_grow),
        cmocka_unit_test(test_threads_keep_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
