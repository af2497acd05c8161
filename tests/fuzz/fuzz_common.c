/* Helpers shared by the fuzz targets: exact-size copies of the input, a
 * scratch directory for the readers whose API takes a path, and the
 * invariant checks several targets make. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Everything fuzz_write_file created, removed in reverse order at exit.
 * The set is small and fixed (each target rewrites the same few files). */
#define SCRATCH_MAX 64

static struct {
    char *dir;
    char *made[SCRATCH_MAX];
    int is_dir[SCRATCH_MAX];
    size_t n;
} scratch;

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        fuzz_fail("out of memory for %zu bytes", n);
    return p;
}

char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *p = xmalloc(size ? size : 1);
    if (size > 0)
        memcpy(p, data, size);
    return p;
}

char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *p = xmalloc(size + 1);
    if (size > 0)
        memcpy(p, data, size);
    p[size] = '\0';
    return p;
}

static void scratch_cleanup(void)
{
    while (scratch.n > 0) {
        scratch.n--;
        if (scratch.is_dir[scratch.n])
            rmdir(scratch.made[scratch.n]);
        else
            unlink(scratch.made[scratch.n]);
        free(scratch.made[scratch.n]);
    }
    if (scratch.dir != NULL)
        rmdir(scratch.dir);
    free(scratch.dir);
    scratch.dir = NULL;
}

static void scratch_note(const char *path, int is_dir)
{
    for (size_t i = 0; i < scratch.n; i++)
        if (strcmp(scratch.made[i], path) == 0)
            return;
    if (scratch.n == SCRATCH_MAX)
        fuzz_fail("more than %d scratch paths", SCRATCH_MAX);
    scratch.made[scratch.n] = strdup(path);
    if (scratch.made[scratch.n] == NULL)
        fuzz_fail("out of memory");
    scratch.is_dir[scratch.n] = is_dir;
    scratch.n++;
}

const char *fuzz_tmpdir(void)
{
    if (scratch.dir != NULL)
        return scratch.dir;
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    size_t len = strlen(base) + sizeof "/kinfer-fuzz-XXXXXX";
    scratch.dir = xmalloc(len);
    snprintf(scratch.dir, len, "%s/kinfer-fuzz-XXXXXX", base);
    if (mkdtemp(scratch.dir) == NULL)
        fuzz_fail("mkdtemp %s: %s", scratch.dir, strerror(errno));
    atexit(scratch_cleanup);
    return scratch.dir;
}

char *fuzz_write_file(const char *rel, const uint8_t *data, size_t size)
{
    const char *dir = fuzz_tmpdir();
    size_t len = strlen(dir) + 1 + strlen(rel) + 1;
    char *path = xmalloc(len);
    snprintf(path, len, "%s/%s", dir, rel);

    /* Make each directory of rel in turn. */
    for (char *slash = path + strlen(dir) + 1; (slash = strchr(slash, '/'));
         slash++) {
        *slash = '\0';
        if (mkdir(path, 0700) == 0)
            scratch_note(path, 1);
        else if (errno != EEXIST)
            fuzz_fail("mkdir %s: %s", path, strerror(errno));
        *slash = '/';
    }

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fuzz_fail("open %s: %s", path, strerror(errno));
    scratch_note(path, 0);
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fuzz_fail("write %s: %s", path, strerror(errno));
        done += (size_t)w;
    }
    if (close(fd) != 0)
        fuzz_fail("close %s: %s", path, strerror(errno));
    return path;
}

int fuzz_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t len;
        unsigned cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

unsigned fuzz_touch(const void *p, size_t n)
{
    const volatile unsigned char *b = p;
    unsigned h = 0;
    for (size_t i = 0; i < n; i++)
        h = h * 31 + b[i];
    return h;
}
