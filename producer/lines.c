/* Capped line reader for kinfer-produce's --input: one buffer of the
 * maximum line length, refilled by read(2); an over-long line is counted
 * and skipped rather than stored. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lines.h"
#include "shared/util.h"

struct kprod_lines {
    int fd;
    char *buf;
    size_t size;     /* max_len + 1: a full line plus its '\n' */
    size_t start;    /* first unread byte */
    size_t end;      /* one past the last byte read */
    uint64_t lineno; /* lines returned so far */
    int eof;
};

struct kprod_lines *kprod_lines_new(int fd, size_t max_len)
{
    struct kprod_lines *r = kinfer_xcalloc(1, sizeof *r);
    r->fd = fd;
    r->size = max_len + 1;
    r->buf = kinfer_xmalloc(r->size);
    return r;
}

void kprod_lines_free(struct kprod_lines *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    free(r);
}

/* Drop the rest of an over-long line.  already bytes of it were in the
 * buffer.  Returns its total length; leaves the bytes after its '\n' in
 * the buffer.  Retries EINTR: stopping half-way would lose our place. */
static enum kprod_line_status skip_line(struct kprod_lines *r, size_t already,
                                        size_t *len)
{
    size_t count = already;
    r->start = r->end = 0;
    while (!r->eof) {
        ssize_t n = read(r->fd, r->buf, r->size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return KPROD_LINE_IO_ERROR;
        if (n == 0) {
            r->eof = 1;
            break;
        }
        char *nl = memchr(r->buf, '\n', (size_t)n);
        if (nl != NULL) {
            count += (size_t)(nl - r->buf);
            r->start = (size_t)(nl - r->buf) + 1;
            r->end = (size_t)n;
            break;
        }
        count += (size_t)n;
    }
    *len = count;
    return KPROD_LINE_TOO_LONG;
}

enum kprod_line_status kprod_lines_next(struct kprod_lines *r,
                                        const char **line, size_t *len,
                                        uint64_t *lineno)
{
    for (;;) {
        size_t avail = r->end - r->start;
        char *nl = memchr(r->buf + r->start, '\n', avail);
        if (nl != NULL || (r->eof && avail > 0)) {
            size_t n = nl != NULL ? (size_t)(nl - (r->buf + r->start)) : avail;
            *line = r->buf + r->start;
            *len = n;
            r->start += n + (nl != NULL);
            *lineno = ++r->lineno;
            return KPROD_LINE_OK;
        }
        if (r->eof)
            return KPROD_LINE_EOF;
        if (avail == r->size) {
            *lineno = ++r->lineno;
            return skip_line(r, avail, len);
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, avail);
            r->start = 0;
            r->end = avail;
        }
        ssize_t got = read(r->fd, r->buf + r->end, r->size - r->end);
        if (got < 0)
            return KPROD_LINE_IO_ERROR;
        if (got == 0)
            r->eof = 1;
        r->end += (size_t)got;
    }
}
