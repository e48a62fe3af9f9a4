/* The CUDA backend behind the kern_ops vtable of kernels/kern.h. The vtable takes HOST
 * pointers (the engine's contract), so each call copies its inputs to the device, runs the
 * kernels of kernels/cuda and copies results back; weights (and RMSNorm gains) are uploaded
 * once and cached by host address, so they must stay unchanged while the backend lives (true
 * for the mmapped model). This is the path for golden checks of the engine on a GPU; a
 * device-resident engine calls the per-op functions (matmul.h, attn.h, ...) directly.
 * Errors: every op returns its status (kernels/kern.h). A device error (EM_EDEVICE, logged
 * where it happened) is sticky: that op and every later one return EM_EDEVICE without running,
 * since a CUDA error poisons the context (a failed cudaMalloc counts as one). Argument errors
 * (EM_EINVAL), host memory (EM_ENOMEM) or an unsupported case (EM_EUNSUPPORTED, e.g. a Q4_K
 * weight) fail that call alone. */
#pragma once
#include "common/status.h"
#include "kernels/cuda/cuda_ctx.h"
#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the backend on `device`; NULL (with a logged reason) when no usable device. */
kern_ops *kern_ops_cuda_create(int device);
void kern_ops_cuda_free(kern_ops *ops); /* NULL ok; frees device copies of weights */
/* EM_OK, or EM_EDEVICE once any op hit a device error (then every op returns it). */
em_status kern_ops_cuda_status(const kern_ops *ops);
/* The device context (stream, cuBLAS) of a backend created by kern_ops_cuda_create. */
kern_cuda_ctx *kern_ops_cuda_ctx(const kern_ops *ops);

#ifdef __cplusplus
}
#endif
