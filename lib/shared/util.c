/* The helpers of shared/util.h: allocation under the out-of-memory policy
 * stated there, monotonic clocks, bounded formatting. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinfer/log.h"
#include "shared/util.h"

static void oom(size_t size)
{
    kinfer_log(KINFER_LOG_ERROR, "out of memory allocating %zu bytes", size);
    abort();
}

void *kinfer_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *kinfer_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *kinfer_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        oom(size);
    return q;
}

char *kinfer_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = kinfer_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int64_t kinfer_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t kinfer_now_us(void)
{
    return kinfer_now_ns() / 1000;
}

int64_t kinfer_now_ms(void)
{
    return kinfer_now_us() / 1000;
}

void kinfer_deadline(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    if (timeout_ms < 0)
        timeout_ms = 0;
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void kinfer_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    if (size == 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
}
