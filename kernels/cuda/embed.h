/* Embedding lookup on the GPU (kern_embed_row of kernels/kern.h, batched; device pointers). */
#pragma once
#include "kernels/cuda/cuda_ctx.h"
#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif
/* out[t][0..cols) = table row ids[t] as f32, for n tokens; table->data is a DEVICE pointer
 * (f32, f16, or Q8_0 / Q4_0 / Q4_1 with cols a multiple of 32, else EM_EINVAL; K-quants
 * EM_EUNSUPPORTED), ids [n] device. Ids outside [0, rows) give a zero row (the caller validates
 * ids from requests before this; the kernel only avoids reading out of bounds). */
em_status kern_cuda_embed(kern_cuda_ctx *c, const kern_weight *table, const int32_t *ids, int n,
                          float *out, int out_stride);
#ifdef __cplusplus
}
#endif
