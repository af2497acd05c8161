/* Replays fuzz inputs without libFuzzer: every file named on the command
 * line, and every file of every directory named (in name order), goes
 * through LLVMFuzzerTestOneInput once.  Linked with each target, so the
 * committed corpus runs as an ordinary ctest test in the gcc trees, with
 * ASan and UBSan in the sanitizer tree. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Read the whole file at path into an exact-size buffer (*size bytes);
 * the caller frees it.  Exits on error: a corpus file that cannot be read
 * fails the test. */
static uint8_t *read_input(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *b = realloc(buf, cap);
            if (b == NULL) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                exit(2);
            }
            buf = b;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: %s: read error\n", path);
        exit(2);
    }
    /* The copy the target gets ends where the input ends. */
    uint8_t *exact = (uint8_t *)fuzz_copy(buf, len);
    free(buf);
    *size = len;
    return exact;
}

static void run_file(const char *path)
{
    size_t size;
    uint8_t *data = read_input(path, &size);
    /* Named first, so the culprit is the last line before a crash. */
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
}

static int skip_dot(const struct dirent *de)
{
    return de->d_name[0] != '.';
}

/* Runs path (a file, or a directory's files); returns how many inputs. */
static size_t run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        run_file(path);
        return 1;
    }
    struct dirent **names;
    int n = scandir(path, &names, skip_dot, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    size_t count = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(path) + 1 + strlen(names[i]->d_name) + 1;
        char *file = malloc(len);
        if (file == NULL) {
            fprintf(stderr, "replay: out of memory\n");
            exit(2);
        }
        snprintf(file, len, "%s/%s", path, names[i]->d_name);
        count += run_path(file);
        free(file);
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    size_t total = 0;
    for (int i = 1; i < argc; i++)
        total += run_path(argv[i]);
    /* An empty corpus would pass while checking nothing. */
    if (total == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    printf("replay: %zu inputs, no failure\n", total);
    return 0;
}
