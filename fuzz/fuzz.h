/* What the fuzz targets share. Each target is one file defining the two libFuzzer entry
 * points; fuzz/build.sh links it with libFuzzer (clang, ASan + UBSan) for fuzzing, and
 * replay.c drives the same entry points over a corpus as a plain Bazel test (gcc, and the
 * asan_ubsan pass of scripts/test.sh), so every committed input - seeds and the crashes found -
 * is a regression test. */
#pragma once
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* path when non-NULL; else prints "SKIPPED: <what> not found" and exits 0 (the replay test
 * counts as skipped; fuzz/run.sh checks the models first). */
const char *fuzz_model_or_skip(const char *path, const char *what);

/* A property the target checks does not hold: prints it and aborts (libFuzzer reports a crash
 * and saves the input). */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* With $FUZZ_VERBOSE set, prints one line on stderr (what became of an input: checking that
 * the seeds reach what they are meant to). */
void fuzz_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* 1 when s[0..n) is strict UTF-8 (tok_utf8_scan: no overlong forms, surrogates, truncation). */
int fuzz_utf8_valid(const uint8_t *s, size_t n);
