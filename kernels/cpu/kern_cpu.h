/* Fast CPU backend: a persistent thread pool + AVX2/FMA kernels, same contract as the
 * reference (kernels/kern.h), bit-identical for any thread count. */
#pragma once
#include "kernels/kern.h"

/* Creates a backend using n_threads threads (>= 1; the caller thread counts as one).
 * Returns NULL on allocation failure. Not thread-safe: one caller at a time. */
kern_ops *kern_ops_cpu_create(int n_threads);
void kern_ops_cpu_free(kern_ops *ops); /* NULL ok */
