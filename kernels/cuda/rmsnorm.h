/* RMSNorm on the GPU (contract of kern_ops.rmsnorm in kernels/kern.h; device pointers). */
#pragma once
#include "kernels/cuda/cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif
/* y[t][i] = x[t][i] / sqrt(mean_i(x[t]^2) + eps) * g[i];  x, y [n][dim], g [dim]; y may alias x. */
em_status kern_cuda_rmsnorm(kern_cuda_ctx *c, const float *x, const float *g, int n, int dim,
                            float eps, float *y);
#ifdef __cplusplus
}
#endif
