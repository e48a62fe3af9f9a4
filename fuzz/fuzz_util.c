/* Shared helpers of the fuzz targets (see fuzz.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "model/tok_utf8.h"

const char *fuzz_model_or_skip(const char *path, const char *what)
{
    if (path == NULL) {
        printf("SKIPPED: %s not found\n", what);
        fflush(stdout);
        exit(0);
    }
    return path;
}

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz property failed: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

void fuzz_note(const char *fmt, ...)
{
    static int verbose = -1;
    if (verbose < 0) {
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    }
    if (!verbose) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

int fuzz_utf8_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int k;
        if (tok_utf8_scan(s + i, n - i, &k) != TOK_UTF8_CHAR) {
            return 0;
        }
        i += (size_t)k;
    }
    return 1;
}
