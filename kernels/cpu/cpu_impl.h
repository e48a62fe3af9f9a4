/* Internals of the fast CPU backend shared by its files (not a public header): the backend
 * context, the persistent thread pool and the per-op entry points installed in kern_ops.
 * Names with a double underscore are internal to kernels/cpu. */
#pragma once
#include <pthread.h>
#include <stdint.h>

#include "kernels/kern.h"

typedef struct kern_cpu__pool kern_cpu__pool;

/* n_threads in [1, 128] (the caller counts as thread 0). NULL on failure. */
kern_cpu__pool *kern_cpu__pool_create(int n_threads);
void kern_cpu__pool_free(kern_cpu__pool *p);
int kern_cpu__pool_threads(const kern_cpu__pool *p);
/* Runs fn(user, i, tid) for every i in [0, n), items handed out dynamically; the caller
 * takes part and returns when all items are done. Workers that arrive after the last item
 * was handed out skip the job. Nested calls (from inside an item) or a 1-thread pool run all
 * items on the calling thread. Kernels split their work into items that do not change the
 * arithmetic of any output element, so results do not depend on who runs what. */
void kern_cpu__pool_for(kern_cpu__pool *p, int n, void (*fn)(void *user, int i, int tid),
                        void *user);
/* Number of items to split a job into: a few per thread for load balance. */
static inline int kern_cpu__n_items(int n_threads, int max_items)
{
    int k = 4 * n_threads;
    return k < max_items ? k : max_items;
}

/* Per-thread scratch buffers (64-byte aligned, grown on demand, freed at thread exit), one
 * per slot so that an op may use its own while calling another. NULL on allocation failure.
 * The contents do not survive a call with a larger n. */
enum {
    KERN_CPU__SCRATCH_ATTN = 0,
    KERN_CPU__SCRATCH_MATMUL = 1,      /* f16 weight tile converted to f32 */
    KERN_CPU__SCRATCH_MATMUL_TAIL = 2, /* zero-padded column tails of a weight tile */
    KERN_CPU__SCRATCH_QACT = 3,        /* quantised activations of a quantized matmul */
    KERN_CPU__SCRATCH_QF = 4,          /* dequantised weight tile (KERN_ACT_F32 prefill) */
    KERN_CPU__SCRATCH_SLOTS = 5
};
float *kern_cpu__scratch(int slot, size_t n_floats);

#define KERN_CPU__ROPE_SLOTS 8
typedef struct kern_cpu__rope_slot {
    float base;
    int rope_dim;
    float *freq; /* [rope_dim / 2] */
    int ready;   /* atomic: 1 once freq is published */
} kern_cpu__rope_slot;

typedef struct kern_cpu__ctx {
    kern_ops ops; /* first member: kern_ops * <-> ctx */
    kern_cpu__pool *pool;
    int n_threads;
    kern_act_mode act; /* how matmul treats the activations of a quantized weight */
    pthread_mutex_t rope_mu;
    kern_cpu__rope_slot rope[KERN_CPU__ROPE_SLOTS];
} kern_cpu__ctx;

/* The kern_ops entry points: kern_check_* first, then the fast paths. */
em_status kern_cpu__matmul(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                           int ys);
/* Quantized weight, KERN_ACT_F32 (matmul_qf.c), on arguments kern_check_matmul accepted; no
 * failure (a scratch shortage falls back to the GEMV path, same bits). */
void kern_cpu__matmul_qf(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                         int ys);
/* Rows [0, nr) of an f32 weight view w (row stride cols) for n tokens, on the calling thread,
 * with the per-element arithmetic of kern_cpu__matmul's f32 path (matmul.c): matmul_qf.c runs
 * its dequantised weight tiles through it. */
void kern_cpu__matmul_f32_rows(const float *w, int cols, int nr, const float *x, int xs, int n,
                               float *y, int ys);
em_status kern_cpu__rmsnorm(void *ctx, const float *x, const float *g, int n, int dim, float eps,
                            float *y);
em_status kern_cpu__rope(void *ctx, float *x, int n_tok, int n_heads, int hd, int stride,
                         const int32_t *pos, float base, int rope_dim);
em_status kern_cpu__swiglu(void *ctx, const float *gate, const float *up, int n, int dim,
                           float *out);
/* EM_ENOMEM only when neither its scratch nor the reference's two rows can be allocated. */
em_status kern_cpu__attn(void *ctx, const kern_attn_args *a);
void kern_cpu__parallel_for(void *ctx, int n, void (*fn)(void *user, int i, int tid), void *user);
