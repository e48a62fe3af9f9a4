/* Attention on the GPU for prefill and decode over per-(layer, KV head) caches with
 * independent lengths and per-entry positions, f32 or int8/int4 (dequantized on the fly), and
 * the statistics compression policies need. Contract = kern_ops.attn (kernels/kern.h) for all
 * KV heads of a layer at once.
 *
 * Two kernels: (1) split-K online-softmax attention (flash-decoding style) that saves each
 * query row's log-sum-exp; (2) only when statistics are wanted, a second pass over key blocks:
 * one warp per cache entry recomputes q.k and p = exp(s - lse) for every query of the call,
 * reduces over the GQA group (mean or max) and accumulates column sums (global score), squared
 * sums, counts and the last n_rows probability rows (local score) without atomics. */
#pragma once
#include <stdint.h>

#include "kernels/cuda/cuda_ctx.h"
#include "kernels/cuda/kvquant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One KV head's cache (all DEVICE pointers). */
typedef struct kern_cuda_kv_head {
    const void *k, *v;        /* f32 [len][hd], or codes (kvquant.h) */
    const float *k_sm, *v_sm; /* quantized only: [len][hd/QG][2] (scale, min) */
    const int32_t *kpos;      /* [len] original positions */
    const float *kbias;       /* [len] optional logit bias (log merged mass); NULL = none */
    int len;
    /* statistics targets, each optional (NULL): += over the queries of this call */
    float *col_sum;   /* [len] sum_i p[i][j]   */
    float *col_sqsum; /* [len] sum_i p[i][j]^2 */
    int32_t *col_cnt; /* [len] queries that see j */
    /* row r (0..n_rows) of the call's last n_rows queries is written to
     * rows + ((row_slot0 + r) % row_ring) * row_stride (ring of local-score rows); optional */
    float *rows;
    int row_stride, row_ring, row_slot0;
} kern_cuda_kv_head;

typedef struct kern_cuda_attn_args {
    int n_q, n_head_kv, G, hd; /* G = query heads per KV head; query head qh = h*G + g */
    const float *q;            /* [n_q][q_stride]: head qh of query i at q + i*q_stride + qh*hd */
    int q_stride;
    const int32_t *q_pos; /* [n_q]: entry j visible to query i iff kpos[j] <= q_pos[i] */
    float *out;           /* [n_q][o_stride], same head layout as q */
    int o_stride;
    float scale;
    kern_kv_fmt fmt;
    const kern_cuda_kv_head *heads; /* HOST array [n_head_kv] (the op uploads it) */
    int n_rows;                     /* probability rows wanted (last n_rows queries), <= n_q */
    int group_max;                  /* GQA reduction of statistics: 0 mean, 1 max */
    float *lse;                     /* optional DEVICE [n_q][n_head_kv*G]: log sum_j exp(s_ij) */
} kern_cuda_attn_args;

/* Enqueues the attention (and statistics) on c->stream. Scratch slots ATTN and ATTN2.
 * A query that sees no entry gets a zero output and lse = -inf. EM_EUNSUPPORTED for hd > 256. */
em_status kern_cuda_attn(kern_cuda_ctx *c, const kern_cuda_attn_args *a);

#ifdef __cplusplus
}
#endif
