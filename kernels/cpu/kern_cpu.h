/* Fast CPU backend: a persistent thread pool + AVX2/FMA kernels, same contract as the
 * reference (kernels/kern.h), bit-identical for any thread count. Also batch-invariant:
 * a row of matmul/rmsnorm/rope/swiglu output does not depend on how many rows the call has. */
#pragma once
#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a backend using n_threads threads (clamped to [1, 128]; the caller thread counts
 * as one). Ops below a few microseconds of work run on the caller alone. Returns NULL on
 * allocation or thread-creation failure. Not thread-safe: one caller at a time (but see
 * kern_cpu_parallel_for for calling ops from several pool threads). */
kern_ops *kern_ops_cpu_create(int n_threads);
/* The same with a given activation mode for quantized weights (kern_ops_cpu_create is
 * KERN_ACT_F32); NULL also for a value that is not a mode. */
kern_ops *kern_ops_cpu_create_mode(int n_threads, kern_act_mode m);
void kern_ops_cpu_free(kern_ops *ops); /* NULL ok */

/* Number of threads of a backend made by kern_ops_cpu_create (tids are in [0, n)). */
int kern_cpu_n_threads(const kern_ops *ops);

/* Runs fn(user, i, tid) for every i in [0, n) on the backend's pool (the caller is tid 0;
 * items are handed out dynamically, so fn must not depend on which tid runs which i except for
 * per-tid scratch). Returns when all are done. ops->attn and the other ops may be called from
 * fn: matmul/rmsnorm/rope/swiglu then run on that thread alone (no nested pool work), attn
 * always runs on the calling thread. Nested kern_cpu_parallel_for calls run inline. */
void kern_cpu_parallel_for(kern_ops *ops, int n, void (*fn)(void *user, int i, int tid),
                           void *user);

#ifdef __cplusplus
}
#endif
