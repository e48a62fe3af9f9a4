/* The scalar reference ops (see kernels/kern.h for the contract of each). */
#pragma once
#include "kernels/kern.h"

/* ctx: NULL or kern_ops_ref_mode(m)->ctx; it picks the activation mode of a quantized weight
 * (NULL: KERN_ACT_F32). The other ops ignore ctx. Every op first runs its kern_check_*
 * (EM_EINVAL); only attn allocates. */
em_status kern_ref_matmul(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                          int ys);
em_status kern_ref_rmsnorm(void *ctx, const float *x, const float *g, int n, int dim, float eps,
                           float *y);
em_status kern_ref_rope(void *ctx, float *x, int n_tok, int n_heads, int hd, int stride,
                        const int32_t *pos, float base, int rope_dim);
em_status kern_ref_swiglu(void *ctx, const float *gate, const float *up, int n, int dim,
                          float *out);
/* EM_ENOMEM when its two rows of len floats cannot be allocated. */
em_status kern_ref_attn(void *ctx, const kern_attn_args *a);
