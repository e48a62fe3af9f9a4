/* Minimal check macros for the ems tests: count failures, print the first ones with context. */
#pragma once
#include <stdio.h>

static int g_fail = 0;
#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            if (g_fail < 30) {                                                           \
                fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                                            \
                fprintf(stderr, "\n");                                                   \
            }                                                                            \
            g_fail++;                                                                    \
        }                                                                                \
    } while (0)
#define TEST_END()                                          \
    do {                                                    \
        if (g_fail)                                         \
            fprintf(stderr, "FAILED: %d checks\n", g_fail); \
        else                                                \
            printf("PASS\n");                               \
        return g_fail ? 1 : 0;                              \
    } while (0)
