/* Shared by kinfer's fuzz targets (tests/fuzz): each target defines
 * LLVMFuzzerTestOneInput, which libFuzzer drives when built with
 * KINFER_FUZZ and replay.c drives over the committed corpus otherwise.
 * A broken invariant calls fuzz_fail, which aborts so both drivers stop.
 *
 * Threads: one.  libFuzzer and replay.c call a target from the main thread
 * only, and the helpers keep per-process state (the scratch directory).
 */
#ifndef KINFER_FUZZ_H
#define KINFER_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* The entry point libFuzzer defines the contract of: data[0..size) is
 * borrowed for the call; returns 0 (anything else is reserved). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Report a broken invariant with the target's words and abort(), so the
 * input is saved by libFuzzer and the replay test fails. */
void fuzz_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* FUZZ_CHECK(cond, fmt, ...): fuzz_fail with the condition's text when
 * cond is false. */
#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond))                                                           \
            fuzz_fail(__VA_ARGS__);                                            \
    } while (0)

/* A malloc'd copy of data[0..size) of exactly size bytes (one byte when
 * size is 0, never read then), so ASan sees any read past the end: the
 * buffer libFuzzer passes is exact too, but replay.c's may not be.  The
 * caller frees it; aborts when out of memory. */
char *fuzz_copy(const uint8_t *data, size_t size);

/* As fuzz_copy, with a NUL after the size bytes: for APIs that take C
 * strings. */
char *fuzz_cstr(const uint8_t *data, size_t size);

/* The process's scratch directory (made on first use under $TMPDIR or
 * /tmp, removed with what fuzz_write_file put in it at exit).  Borrowed,
 * valid until exit. */
const char *fuzz_tmpdir(void);

/* Write data[0..size) to the scratch-relative path rel (its directories
 * are made as needed) and return the absolute path, malloc'd (the caller
 * frees it).  Aborts on any I/O error: a broken scratch directory is a
 * broken harness, not a finding. */
char *fuzz_write_file(const char *rel, const uint8_t *data, size_t size);

/* 1 when s[0..n) is well-formed UTF-8 (no overlong form, surrogate or
 * code point past U+10FFFF), else 0.  Checks error messages, which the
 * codec promises are valid UTF-8 for the JSON error result. */
int fuzz_utf8_valid(const char *s, size_t n);

/* Read every byte of p[0..n) so that ASan and the MMU check the range;
 * returns a value that depends on the bytes, to keep the reads alive. */
unsigned fuzz_touch(const void *p, size_t n);

#endif
