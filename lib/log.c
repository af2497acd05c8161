/* Line-oriented logging to stderr, shared by every thread. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kinfer/log.h"

static atomic_int log_level = KINFER_LOG_INFO;

void kinfer_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

int kinfer_log_level_from_name(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void kinfer_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kinfer_vlog(level, fmt, ap);
    va_end(ap);
}

void kinfer_vlog(int level, const char *fmt, va_list ap)
{
    static const char *const tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (level > atomic_load(&log_level))
        return;
    if (level < 0)
        level = 0;
    if (level > 3)
        level = 3;

    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    int k = snprintf(line + n, sizeof line - n, ".%03ldZ %-5s ",
                     ts.tv_nsec / 1000000L, tags[level]);
    if (k > 0)
        n += (size_t)k;

    k = vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (k > 0)
        n += (size_t)k;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    /* One write per line so lines from different threads never mix. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
