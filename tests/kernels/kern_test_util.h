/* Helpers of the kernel tests: a fixed-seed RNG and the ggml test-backend-ops style
 * comparison (|a - b| <= atol + rtol * |ref|, NMSE, first 5 mismatches with indices). */
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct kt_rng {
    uint64_t s;
} kt_rng;

static inline uint64_t kt_next(kt_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static inline float kt_unif(kt_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(kt_next(r) >> 40) / (double)(1ull << 24));
}

static inline int kt_int(kt_rng *r, int n)
{
    return (int)(kt_next(r) % (uint64_t)n);
}

static inline void kt_fill(kt_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = kt_unif(r, lo, hi);
}

/* Compares got against ref over n floats; prints a line with NMSE and up to 5 mismatches.
 * Returns the number of mismatching elements. */
size_t kt_compare(const char *what, const float *ref, const float *got, size_t n, double atol,
                  double rtol);

/* Shared state of the kernel test binary: fast backends with 1, 2, 3 threads. */
#define KT_N_BACKENDS 3
extern const int kt_threads[KT_N_BACKENDS];
extern struct kern_ops *kt_cpu[KT_N_BACKENDS];
extern int kt_failures;
#define KT_SENTINEL 12345.0f

void *kt_xmalloc(size_t n);              /* exits on failure */
float *kt_alloc_fill(size_t n, float v); /* n floats set to v */
/* 1 (and a message) when fast results of backend t differ from those of backend 0. */
int kt_check_same(const char *what, int t, const void *a, const void *b, size_t bytes);
void kt_report(const char *name, int bad); /* prints ok/FAIL, counts failures */

/* Attention and parallel_for cases (kern_cpu_attn_cases.c); return the number of cases. */
int kt_attn_run_all(void);
