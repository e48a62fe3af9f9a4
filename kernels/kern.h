/* Compute ops of the engine behind one small backend interface (ggml style).
 *
 * Every op exists as a scalar reference in kernels/ref (the specification: single-threaded,
 * unoptimised, shape-commented) and as a fast CPU version in kernels/cpu (threads + AVX2),
 * tested against the reference (tests/kernels). CUDA twins live in kernels/cuda.
 *
 * Conventions: row-major; a weight matrix W of shape (rows=out, cols=in) is stored as in GGUF
 * (ne0 = in is the fastest dimension). All activations are f32.
 *
 * Determinism contract (tensor parallelism relies on it): every output element is computed by
 * exactly one thread with a fixed summation order that does not depend on the thread count,
 * so results are bit-identical for any --threads value.
 *
 * Errors: every op returns em_status. EM_EINVAL for arguments a caller could get wrong (an
 * unknown dtype, columns that are not whole blocks, negative counts, strides shorter than a
 * row: the kern_check_* functions below, which every backend runs first), EM_ENOMEM when a
 * backend has no memory left for its scratch (where no slower path without it exists),
 * EM_EDEVICE when an accelerator failed (then every later op of that backend fails too),
 * EM_EUNSUPPORTED for valid arguments a backend does not implement. On an error the outputs
 * hold unspecified values. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Weight element types; the numbers are ggml's type ids (GGUF tensor types), so a tensor's
 * type maps 1:1. Block formats and their bit layouts: kernels/quant.h. */
typedef enum {
    KERN_F32 = 0,
    KERN_F16 = 1,
    KERN_Q4_0 = 2,
    KERN_Q4_1 = 3,
    KERN_Q8_0 = 8,
    KERN_Q4_K = 12,
    KERN_Q6_K = 14
} kern_dtype;

/* A weight matrix (borrowed; typically points into the mmapped model or a shard copy). */
typedef struct kern_weight {
    const void *data; /* (rows, cols) in dtype; a row is kern_row_bytes(dtype, cols) bytes */
    kern_dtype dtype;
    int rows; /* out features */
    int cols; /* in features */
} kern_weight;

/* Attention statistics that compression policies need, filled in the attention pass itself.
 * All pointers are optional (NULL = not wanted). Per query i and cache entry j, let
 * p[i][j] = reduce_g a_g[i][j] where a_g is the softmax probability of query head g of the
 * KV head's group and reduce is the mean (group_max = 0) or the max (group_max = 1).
 * Entries a query cannot see (pos[j] > q_pos[i]) have p = 0 and are not counted. */
typedef struct kern_attn_stats {
    float *col_sum;   /* [len] += sum_i p[i][j]                  (H2O / global score) */
    float *col_sqsum; /* [len] += sum_i p[i][j]^2                (RoCo std)           */
    int32_t *col_cnt; /* [len] += number of queries i that see j (RoCo mean)          */
    float **row_ptrs; /* [n_rows] rows of len floats: row r receives p of query n_q - n_rows + r
                         of this call (entries it cannot see get 0) */
    int n_rows;
    int group_max; /* 0: mean over the query group, 1: max */
} kern_attn_stats;

/* One KV head's attention for a group of G query heads.
 *   q      [n_q][q_stride] : query i, head g at q + i*q_stride + g*hd (post-RoPE)
 *   q_pos  [n_q]           : position of query i (causal mask: entry j visible iff pos[j] <=
 * q_pos[i]) k, v   [len][hd]       : cache entries (post-RoPE keys), kpos [len] their positions out
 * [n_q][o_stride] : out + i*o_stride + g*hd receives the attention output scale = 1/sqrt(hd). A
 * query that sees no entry gets a zero output. */
typedef struct kern_attn_args {
    int n_q, G, hd, len;
    const float *q;
    int q_stride;
    const int32_t *q_pos;
    const float *k, *v;
    const int32_t *kpos;
    const float *kbias; /* [len] optional additive logit bias per entry, added after scaling
                           (log of a merged entry's mass: "proportional attention"); NULL = 0 */
    float *out;
    int o_stride;
    float scale;
    kern_attn_stats *stats; /* may be NULL */
} kern_attn_args;

typedef struct kern_ops {
    const char *name;
    /* Y[n][W.rows] = X[n][W.cols] . W^T  (x_stride, y_stride in floats) */
    em_status (*matmul)(void *ctx, const kern_weight *w, const float *x, int x_stride, int n,
                        float *y, int y_stride);
    /* y[i] = x[i] / sqrt(mean(x^2) + eps) * g, for n rows of dim floats (y may alias x) */
    em_status (*rmsnorm)(void *ctx, const float *x, const float *g, int n, int dim, float eps,
                         float *y);
    /* Interleaved-pair RoPE (GGUF llama): for each token t, head h, pair i < rope_dim/2:
     * theta = pos[t] * base^(-2i/rope_dim); rotate (x[2i], x[2i+1]). In place.
     * x + t*stride + h*hd is head h of token t. */
    em_status (*rope)(void *ctx, float *x, int n_tok, int n_heads, int hd, int stride,
                      const int32_t *pos, float base, int rope_dim);
    /* out[i] = silu(gate[i]) * up[i], n rows of dim (strides equal dim) */
    em_status (*swiglu)(void *ctx, const float *gate, const float *up, int n, int dim, float *out);
    /* see kern_attn_args */
    em_status (*attn)(void *ctx, const kern_attn_args *a);
    /* Optional (NULL: the caller runs the items itself): runs fn(user, i, tid) for every i in
     * [0, n) on the backend's workers, tid in [0, n_threads); the ops above may be called from
     * fn (they then run on that thread alone). Used for attention over sequences x KV heads. */
    void (*parallel_for)(void *ctx, int n, void (*fn)(void *user, int i, int tid), void *user);
    void *ctx;
} kern_ops;

/* Runs fn over [0, n) through o->parallel_for, or inline on the caller (tid 0) without one. */
static inline void kern_parallel_for(const kern_ops *o, int n,
                                     void (*fn)(void *user, int i, int tid), void *user)
{
    if (o->parallel_for) {
        o->parallel_for(o->ctx, n, fn, user);
        return;
    }
    for (int i = 0; i < n; i++)
        fn(user, i, 0);
}

/* How a matmul with a quantized weight (kernels/quant.h) treats its activations; a property
 * of the backend object. f32/f16 weights are unaffected by it. */
typedef enum {
    KERN_ACT_F32 = 0, /* f32 activations times weights dequantised in registers (default): the
                         result is an f32 matmul over the kern_dequant_row values */
    KERN_ACT_Q8 = 1   /* activations quantised to int8 blocks, integer block dots (llama.cpp) */
} kern_act_mode;

/* "f32" / "q8" -> *out; 0 for anything else (the caller reports the bad value). */
static inline int kern_act_mode_parse(const char *s, kern_act_mode *out)
{
    if (s && s[0] == 'f' && s[1] == '3' && s[2] == '2' && !s[3]) {
        *out = KERN_ACT_F32;
        return 1;
    }
    if (s && s[0] == 'q' && s[1] == '8' && !s[2]) {
        *out = KERN_ACT_Q8;
        return 1;
    }
    return 0;
}

/* The scalar reference backend (static, thread-safe, never NULL), KERN_ACT_F32. */
const kern_ops *kern_ops_ref(void);
/* The same in a given mode (static, thread-safe); NULL for a value that is not a mode. */
const kern_ops *kern_ops_ref_mode(kern_act_mode m);

/* Row `row` of an embedding table (rows=vocab, cols=dim) into out[dim] as f32, for every
 * dtype (quantized rows dequantised by kern_dequant_row, kernels/quant.h). */
void kern_embed_row(const kern_weight *table, int row, float *out);

/* IEEE half <-> float (round to nearest even). */
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);

/* Argument checks of the op contracts above, run first by every backend: EM_OK, or EM_EINVAL
 * for an unknown dtype, columns that are not whole blocks of it, a negative count, a missing
 * pointer where there is work, a stride shorter than its row (checked only when there are
 * several rows: one row's stride is unused), RoPE's rope_dim odd or above hd, or more
 * attention statistic rows than queries. Shared so that every backend rejects exactly the same
 * calls. */
em_status kern_check_matmul(const kern_weight *w, const float *x, int x_stride, int n,
                            const float *y, int y_stride);
em_status kern_check_rows(const float *a, const float *b, int n, int dim, const float *out);
em_status kern_check_rope(const float *x, int n_tok, int n_heads, int hd, int stride,
                          const int32_t *pos, int rope_dim);
em_status kern_check_attn(const kern_attn_args *a);

/* Convenience wrappers: the same calls without spelling out the ctx. Their status must be
 * looked at. */
#define KERN_MUST_CHECK __attribute__((warn_unused_result))

static inline KERN_MUST_CHECK em_status kern_matmul(const kern_ops *o, const kern_weight *w,
                                                    const float *x, int xs, int n, float *y, int ys)
{
    return o->matmul(o->ctx, w, x, xs, n, y, ys);
}

static inline KERN_MUST_CHECK em_status kern_rmsnorm(const kern_ops *o, const float *x,
                                                     const float *g, int n, int dim, float eps,
                                                     float *y)
{
    return o->rmsnorm(o->ctx, x, g, n, dim, eps, y);
}

static inline KERN_MUST_CHECK em_status kern_rope(const kern_ops *o, float *x, int n_tok,
                                                  int n_heads, int hd, int stride,
                                                  const int32_t *pos, float base, int rope_dim)
{
    return o->rope(o->ctx, x, n_tok, n_heads, hd, stride, pos, base, rope_dim);
}

static inline KERN_MUST_CHECK em_status kern_swiglu(const kern_ops *o, const float *gate,
                                                    const float *up, int n, int dim, float *out)
{
    return o->swiglu(o->ctx, gate, up, n, dim, out);
}

static inline KERN_MUST_CHECK em_status kern_attn(const kern_ops *o, const kern_attn_args *a)
{
    return o->attn(o->ctx, a);
}

#ifdef __cplusplus
}
#endif
