/* Small helpers shared by lib/ and the programs (see shared/README.md):
 * allocation, monotonic clocks, bounded formatting.  Any thread.
 *
 * Out-of-memory policy -- the one place it is stated: kinfer_xmalloc and
 * friends are for bookkeeping whose size does not come from input; on
 * failure they log one line and abort the process.  Allocations whose size
 * comes from input (a request, a model file) use plain malloc and report
 * KINFER_ERR_NOMEM instead. */
#ifndef KINFER_SHARED_UTIL_H
#define KINFER_SHARED_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Never NULL (see the policy above).  A size of 0 allocates one byte.
 * Caller frees with free(). */
void *kinfer_xmalloc(size_t size);
void *kinfer_xcalloc(size_t n, size_t size);
void *kinfer_xrealloc(void *p, size_t size);
char *kinfer_xstrdup(const char *s);

/* Monotonic clock in milliseconds / microseconds / nanoseconds. */
int64_t kinfer_now_ms(void);
int64_t kinfer_now_us(void);
int64_t kinfer_now_ns(void);

/* struct timespec deadline timeout_ms from now on CLOCK_MONOTONIC, for
 * pthread_cond_timedwait on a condvar set to that clock (see
 * kinfer_cond_init_monotonic in shared/thread.h). */
struct timespec;
void kinfer_deadline(struct timespec *ts, int timeout_ms);

/* snprintf that always terminates and never fails loudly. */
void kinfer_fmt(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
