/* Rotary embedding on the GPU (contract of kern_ops.rope in kernels/kern.h; device pointers). */
#pragma once
#include "kernels/cuda/cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif
/* In place on x: head h of token t at x + t*stride + h*hd; pos [n_tok] device. */
em_status kern_cuda_rope(kern_cuda_ctx *c, float *x, int n_tok, int n_heads, int hd, int stride,
                         const int32_t *pos, float base, int rope_dim);
#ifdef __cplusplus
}
#endif
