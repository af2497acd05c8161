/* Unit tests of lib/delay.c: items come due in due order (ties in add
 * order), never early, on the queue's thread; an earlier add wakes a
 * sleeping thread; stop hands the waiting items to drop and refuses adds. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "delay.h"
#include "shared/thread.h"
#include "shared/util.h"

#define LONG_WAIT_MS 10000

struct rec {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int order[16];
    int64_t late[16]; /* now - due when it came */
    int n;
};

struct item {
    int id;
    int64_t due;
    struct rec *rec;
};

static void due_cb(void *p, void *arg)
{
    struct item *it = p;
    struct rec *r = arg;
    pthread_mutex_lock(&r->lock);
    r->late[r->n] = kinfer_now_ms() - it->due;
    r->order[r->n++] = it->id;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void wait_for(struct rec *r, int n)
{
    int64_t end = kinfer_now_ms() + LONG_WAIT_MS;
    pthread_mutex_lock(&r->lock);
    while (r->n < n && kinfer_now_ms() < end) {
        struct timespec ts;
        kinfer_deadline(&ts, 50);
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
}

static void test_due_order(void **state)
{
    (void)state;
    struct rec r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    kinfer_cond_init_monotonic(&r.cond);
    struct kinfer_delay *d = NULL;
    assert_int_equal(kinfer_delay_new(due_cb, &r, &d), KINFER_OK);
    int64_t now = kinfer_now_ms();
    /* Added late first, then earlier ones: each must wake the thread. */
    struct item items[5] = {
        {0, now + 300, &r}, {1, now + 200, &r}, {2, now + 100, &r},
        {3, now + 100, &r}, {4, now, &r},
    };
    for (int i = 0; i < 5; i++)
        assert_int_equal(kinfer_delay_add(d, items[i].due, &items[i]),
                         KINFER_OK);
    wait_for(&r, 5);
    assert_int_equal(r.n, 5);
    int want[5] = {4, 2, 3, 1, 0};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r.order[i], want[i]);
        assert_true(r.late[i] >= 0); /* never early */
    }
    assert_int_equal(kinfer_delay_pending(d), 0);
    kinfer_delay_free(d);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
}

static int dropped;
static void drop_cb(void *p, void *arg)
{
    (void)p;
    (void)arg;
    dropped++;
}

static void test_stop_drops(void **state)
{
    (void)state;
    struct rec r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    kinfer_cond_init_monotonic(&r.cond);
    struct kinfer_delay *d = NULL;
    assert_int_equal(kinfer_delay_new(due_cb, &r, &d), KINFER_OK);
    struct item items[3] = {{0, 0, &r}, {1, 0, &r}, {2, 0, &r}};
    int64_t far = kinfer_now_ms() + 3600 * 1000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kinfer_delay_add(d, far, &items[i]), KINFER_OK);
    assert_int_equal(kinfer_delay_pending(d), 3);
    dropped = 0;
    assert_int_equal(kinfer_delay_stop(d, drop_cb, NULL), 3);
    assert_int_equal(dropped, 3);
    assert_int_equal(r.n, 0);
    assert_int_equal(kinfer_delay_add(d, far, &items[0]), KINFER_ERR_CLOSED);
    assert_int_equal(kinfer_delay_stop(d, drop_cb, NULL), 0);
    kinfer_delay_free(d);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_due_order),
        cmocka_unit_test(test_stop_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
