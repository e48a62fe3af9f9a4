/* Shared pieces of the C unit tests: the CHECK macro (count failures, print the first ones with
 * file, line and condition), the end-of-test summary, Bazel's scratch directory, and finding the
 * stories260K test model (skip or fail loudly where it is absent). */
#pragma once
#include <stddef.h>

/* Failed checks so far in this process. */
extern int tu_failures;

void tu_check_failed(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* CHECK(cond, fmt, ...): on a false cond counts a failure and prints the message. */
#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (!(cond)) {                                               \
            tu_check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__); \
        }                                                            \
    } while (0)

/* REQUIRE(cond, fmt, ...): a CHECK whose failure ends the test at once (exit status 1), for
 * what the rest of the test cannot do without (a started service, a loaded model, a thread). */
#define REQUIRE(cond, ...)                                           \
    do {                                                             \
        if (!(cond)) {                                               \
            tu_check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__); \
            tu_abandon(__FILE__);                                    \
        }                                                            \
    } while (0)

/* Ends the test after a failed REQUIRE: runs the atexit handlers (e.g. stopping started
 * services), prints the summary and exits with status 1. */
void tu_abandon(const char *what) __attribute__((noreturn));

/* Prints "<what>: all passed" or "<what>: N failed checks"; returns main's exit code. */
int tu_finish(const char *what);
#define TEST_END() return tu_finish(__FILE__)

/* $TEST_TMPDIR (set by Bazel), else /tmp. */
const char *tu_tmpdir(void);
/* Writes "<tmpdir>/<name>" into buf and returns buf. */
char *tu_tmp_path(char *buf, size_t len, const char *name);

/* The test model's path (model_find_test_small). Where it is absent: prints why and exits,
 * with status 1 when required, else 0 after a loud line "SKIPPED: <reason>" on stdout, which
 * scripts/test.sh counts as a skipped test. */
const char *tu_model_path(int required);
