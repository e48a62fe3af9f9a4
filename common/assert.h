/* Always-on asserts for OUR bugs (never for input from requests, files or the network). */
#pragma once
#include <stdio.h>
#include <stdlib.h>

#define EM_ABORT(...)                                          \
    do {                                                       \
        fprintf(stderr, "%s:%d: fatal: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                          \
        fputc('\n', stderr);                                   \
        abort();                                               \
    } while (0)
#define EM_ASSERT(cond)                              \
    do {                                             \
        if (!(cond))                                 \
            EM_ABORT("assertion failed: %s", #cond); \
    } while (0)
