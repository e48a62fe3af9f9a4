/* Matrix products on the GPU for f32 and f16 weights (contract of kern_ops.matmul in
 * kernels/kern.h, with device pointers): Y[n][W.rows] = X[n][W.cols] . W^T. */
#pragma once
#include "kernels/cuda/cuda_ctx.h"
#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif
/* w->data, x, y are DEVICE pointers; x_stride/y_stride in floats (>= cols / rows).
 * n <= KERN_CUDA_GEMV_MAX_N uses a warp-per-row GEMV kernel (decode); larger n uses cuBLAS
 * SGEMM (f16 weights are first widened to f32 in scratch slot KERN_CUDA_SCR_MM, which is
 * exact and keeps prefill logits within the golden tolerance). */
#define KERN_CUDA_GEMV_MAX_N 8
em_status kern_cuda_matmul(kern_cuda_ctx *c, const kern_weight *w, const float *x, int x_stride,
                           int n, float *y, int y_stride);
#ifdef __cplusplus
}
#endif
