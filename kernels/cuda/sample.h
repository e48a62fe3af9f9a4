/* Softmax and sampling helpers on the GPU (logits stay on the device; only ids come back). */
#pragma once
#include "kernels/cuda/cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif
/* probs[t][i] = softmax(logits[t] / temp)[i], n rows of dim; temp > 0. probs may alias. */
em_status kern_cuda_softmax(kern_cuda_ctx *c, const float *logits, int n, int dim, float temp,
                            float *probs);
/* ids[t] = argmax_i logits[t][i] (lowest index on ties; NaN never wins), n rows; ids device. */
em_status kern_cuda_argmax(kern_cuda_ctx *c, const float *logits, int n, int dim, int32_t *ids);
/* Inverse-CDF sampling from probability rows: ids[t] = smallest i with cumsum(probs[t])[i] > u[t]
 * (u [n] device, uniform in [0,1)); falls back to the last index with nonzero probability. */
em_status kern_cuda_sample(kern_cuda_ctx *c, const float *probs, int n, int dim, const float *u,
                           int32_t *ids);
#ifdef __cplusplus
}
#endif
