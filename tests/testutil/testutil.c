/* Shared pieces of the C unit tests (see testutil.h). */
#include "tests/testutil/testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"

#define TU_MAX_PRINTED 30 /* failures printed in full; the rest are only counted */

int tu_failures;

void tu_check_failed(const char *file, int line, const char *cond, const char *fmt, ...)
{
    if (tu_failures++ >= TU_MAX_PRINTED) {
        return;
    }
    fprintf(stderr, "FAIL %s:%d: CHECK(%s): ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (tu_failures == TU_MAX_PRINTED) {
        fprintf(stderr, "(further failures are counted, not printed)\n");
    }
}

int tu_finish(const char *what)
{
    if (tu_failures) {
        fprintf(stderr, "%s: %d failed checks\n", what, tu_failures);
        return 1;
    }
    printf("%s: all passed\n", what);
    return 0;
}

void tu_abandon(const char *what)
{
    fprintf(stderr, "%s: stopped after a failed REQUIRE\n", what);
    tu_finish(what);
    exit(1);
}

const char *tu_tmpdir(void)
{
    const char *t = getenv("TEST_TMPDIR");
    return t && t[0] ? t : "/tmp";
}

char *tu_tmp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tu_tmpdir(), name);
    return buf;
}

const char *tu_model_path(int required)
{
    const char *p = model_find_test_small();
    if (p) {
        return p;
    }
    if (required) {
        fprintf(stderr, "FAIL: test model stories260K.gguf not found (set EMSERVE_TEST_MODEL)\n");
        exit(1);
    }
    fprintf(stderr, "SKIPPED: test model stories260K.gguf not found (set EMSERVE_TEST_MODEL)\n");
    printf("SKIPPED: test model not found\n");
    exit(0);
}
