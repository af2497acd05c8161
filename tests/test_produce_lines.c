/* Unit tests for kinfer-produce's capped line reader (producer/lines.c):
 * an over-long line is reported with its length and skipped up to its
 * newline, and the lines after it are read as usual -- what the docs
 * promise for --max-line-bytes. */
#include "lines.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* A file descriptor reading text (an unlinked temporary file). */
static int fd_of(const char *text, size_t len)
{
    char path[] = "/tmp/kinfer-test-lines-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static void expect_line(struct kprod_lines *r, const char *want,
                        uint64_t want_no)
{
    const char *line;
    size_t len;
    uint64_t no;
    assert_int_equal(kprod_lines_next(r, &line, &len, &no), KPROD_LINE_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(line, want, len);
    assert_int_equal(no, want_no);
}

static void expect_too_long(struct kprod_lines *r, size_t want_len,
                            uint64_t want_no)
{
    const char *line;
    size_t len;
    uint64_t no;
    assert_int_equal(kprod_lines_next(r, &line, &len, &no),
                     KPROD_LINE_TOO_LONG);
    assert_int_equal(len, want_len);
    assert_int_equal(no, want_no);
}

static void test_over_long_lines_are_skipped(void **state)
{
    (void)state;
    /* Cap 10: a 10-byte line fits; lines of 11, 100 and 50 (the last,
     * without a newline) do not; the reader goes on after each. */
    char text[512];
    size_t n = 0;
    n += (size_t)sprintf(text + n, "first\n");
    memset(text + n, 'a', 11);
    n += 11;
    text[n++] = '\n';
    n += (size_t)sprintf(text + n, "0123456789\n");
    memset(text + n, 'b', 100);
    n += 100;
    text[n++] = '\n';
    n += (size_t)sprintf(text + n, "\nlast\n");
    memset(text + n, 'c', 50);
    n += 50;

    int fd = fd_of(text, n);
    struct kprod_lines *r = kprod_lines_new(fd, 10);
    expect_line(r, "first", 1);
    expect_too_long(r, 11, 2);
    expect_line(r, "0123456789", 3);
    expect_too_long(r, 100, 4);
    expect_line(r, "", 5);
    expect_line(r, "last", 6);
    expect_too_long(r, 50, 7);
    const char *line;
    size_t len;
    uint64_t no;
    assert_int_equal(kprod_lines_next(r, &line, &len, &no), KPROD_LINE_EOF);
    kprod_lines_free(r);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_over_long_lines_are_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
