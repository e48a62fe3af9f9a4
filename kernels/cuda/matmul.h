/* Matrix products on the GPU (contract of kern_ops.matmul in kernels/kern.h, with device
 * pointers): Y[n][W.rows] = X[n][W.cols] . W^T for f32, f16 and Q8_0 / Q4_0 / Q4_1 weights. */
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
/* Q8_0 / Q4_0 / Q4_1 weights (cols a multiple of 32, else EM_EINVAL) go to
 * kern_cuda__matmul_q (matmul_q.cu): activations quantised on the device into scratch slot
 * KERN_CUDA_SCR_QACT, weights read in their block format. Q4_K / Q6_K: EM_EUNSUPPORTED. */
em_status kern_cuda_matmul(kern_cuda_ctx *c, const kern_weight *w, const float *x, int x_stride,
                           int n, float *y, int y_stride);
em_status kern_cuda__matmul_q(kern_cuda_ctx *c, const kern_weight *w, const float *x, int x_stride,
                              int n, float *y, int y_stride);
#ifdef __cplusplus
}
#endif
