/* Residual add on the GPU: x[i] += y[i] (device pointers). */
#pragma once
#include "kernels/cuda/cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif
em_status kern_cuda_add(kern_cuda_ctx *c, float *x, const float *y, long long n);
#ifdef __cplusplus
}
#endif
