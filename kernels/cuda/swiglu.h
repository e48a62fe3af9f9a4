/* SwiGLU on the GPU (contract of kern_ops.swiglu in kernels/kern.h; device pointers). */
#pragma once
#include "kernels/cuda/cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif
/* out[i] = silu(gate[i]) * up[i] for n*dim elements (out may alias gate or up). */
em_status kern_cuda_swiglu(kern_cuda_ctx *c, const float *gate, const float *up, int n, int dim,
                           float *out);
#ifdef __cplusplus
}
#endif
