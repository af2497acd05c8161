/* Reading JSON Lines input for kinfer-produce with a hard cap on the line
 * length, so a file without newlines cannot make the tool swallow memory.
 * Lines are returned byte for byte (NUL bytes included) without their
 * terminating '\n'.  Reads with read(2), so a slow pipe yields each line
 * as soon as it is complete.
 */
#ifndef KPROD_LINES_H
#define KPROD_LINES_H

#include <stddef.h>
#include <stdint.h>

struct kprod_lines;

enum kprod_line_status {
    KPROD_LINE_OK,       /* *line, *len and *lineno describe a line */
    KPROD_LINE_EOF,      /* no more input */
    KPROD_LINE_TOO_LONG, /* line *lineno exceeded the cap; it was skipped
                            up to its newline and *len is how many bytes
                            it had (counted, never stored) */
    KPROD_LINE_IO_ERROR  /* read(2) failed; errno is set.  EINTR (a
                            signal arrived while waiting for input) loses
                            nothing: calling again resumes */
};

/* A reader of fd (borrowed: the caller closes it) holding lines of at most
 * max_len bytes, newline excluded.  Allocates max_len + 1 bytes up front;
 * aborts on out of memory. */
struct kprod_lines *kprod_lines_new(int fd, size_t max_len);

/* NULL is a no-op. */
void kprod_lines_free(struct kprod_lines *r);

/* The next line.  On KPROD_LINE_OK *line points into r's buffer and stays
 * valid until the next call.  A last line without '\n' is still a line; an
 * empty line is returned as one of length 0.  Lines are numbered from 1. */
enum kprod_line_status kprod_lines_next(struct kprod_lines *r,
                                        const char **line, size_t *len,
                                        uint64_t *lineno);

#endif
