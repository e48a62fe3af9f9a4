/* Shared pieces of the table-driven CUDA-vs-CPU tests (ggml test-backend-ops style): fixed-seed
 * random data, device copies, and the comparison |got - ref| <= atol + rtol*|ref| that prints
 * the first 5 mismatches with indices, stops counting detail after 10, skips non-finite
 * reference values and reports the NMSE. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_ctx.h"

typedef struct th_rng {
    uint64_t s;
} th_rng;

float th_uniform(th_rng *r, float lo, float hi);
void th_fill(th_rng *r, float *x, size_t n, float lo, float hi);

/* Device copy of host data (NULL on failure, after logging). */
void *th_dev(kern_cuda_ctx *c, const void *host, size_t bytes);
void *th_dev_zero(size_t bytes);
/* Device -> new host buffer (malloc'd). */
void *th_host(kern_cuda_ctx *c, const void *dev, size_t bytes);

/* 0 when all elements match; otherwise the number of mismatches (and prints them). */
int th_check(const char *what, const float *got, const float *ref, size_t n, float atol,
             float rtol);
int th_check_i32(const char *what, const int32_t *got, const int32_t *ref, size_t n);

/* Counters of the whole run. */
extern int th_cases, th_failed;
/* Records one case: prints "ok"/"FAIL" with its name. */
void th_report(const char *name, int bad);
