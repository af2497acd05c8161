/* Logging to stderr: one line per call, "2026-11-27T01:02:03.456Z LEVEL
 * message".  Thread-safe (one write(2) per line).  The threshold comes from
 * kinfer_log_set_level (default INFO). */
#ifndef KINFER_LOG_H
#define KINFER_LOG_H

#include <stdarg.h>

enum kinfer_log_level {
    KINFER_LOG_ERROR = 0,
    KINFER_LOG_WARN = 1,
    KINFER_LOG_INFO = 2,
    KINFER_LOG_DEBUG = 3
};

void kinfer_log_set_level(int level);

/* The level named "error", "warn", "info" or "debug"; -1 for anything
 * else. */
int kinfer_log_level_from_name(const char *name);

void kinfer_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* As kinfer_log, with a va_list. */
void kinfer_vlog(int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define KINFER_ERROR(...) kinfer_log(KINFER_LOG_ERROR, __VA_ARGS__)
#define KINFER_WARN(...) kinfer_log(KINFER_LOG_WARN, __VA_ARGS__)
#define KINFER_INFO(...) kinfer_log(KINFER_LOG_INFO, __VA_ARGS__)
#define KINFER_DEBUG(...) kinfer_log(KINFER_LOG_DEBUG, __VA_ARGS__)

#endif
