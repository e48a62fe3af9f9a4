/* GPU context shared by every CUDA op: device, stream, cuBLAS handle and a few growable
 * device scratch buffers, plus the only device-memory helpers of the project (style rule:
 * device memory is allocated inside kernels/ only). Plain C header (extern "C").
 * All op functions in kernels/cuda take device pointers and enqueue on ctx->stream; they
 * return EM_EDEVICE (after logging) on any CUDA error and EM_EINVAL/EM_EUNSUPPORTED on bad
 * arguments. A context is used by one thread at a time. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { KERN_CUDA_N_SCRATCH = 8 };

typedef struct kern_cuda_ctx {
    int device;
    int n_sm;     /* streaming multiprocessors (grid sizing) */
    void *stream; /* cudaStream_t */
    void *cublas; /* cublasHandle_t bound to stream */
    void *scratch[KERN_CUDA_N_SCRATCH];
    size_t scratch_bytes[KERN_CUDA_N_SCRATCH];
} kern_cuda_ctx;

/* Number of usable CUDA devices; 0 when there is no driver or no device (never logs). */
int kern_cuda_device_count(void);
/* Device name into buf (e.g. "NVIDIA H100 80GB HBM3"). */
em_status kern_cuda_device_name(int device, char *buf, size_t n);

/* Creates a context on `device` (stream + cuBLAS handle). EM_EDEVICE when unavailable. */
em_status kern_cuda_ctx_create(int device, kern_cuda_ctx **out);
void kern_cuda_ctx_destroy(kern_cuda_ctx *c); /* NULL ok */
em_status kern_cuda_sync(kern_cuda_ctx *c);

/* Device scratch slot `slot` with at least `bytes` (contents undefined after growth).
 * Slots are private to the op that documents them; see kern_cuda_scratch_slot below. */
em_status kern_cuda__scratch(kern_cuda_ctx *c, int slot, size_t bytes, void **out);
enum {
    KERN_CUDA_SCR_ATTN = 0,
    KERN_CUDA_SCR_ATTN2 = 1,
    KERN_CUDA_SCR_EMS = 2,
    KERN_CUDA_SCR_EMS2 = 3,
    KERN_CUDA_SCR_MM = 4,
    KERN_CUDA_SCR_OPS = 5,
    KERN_CUDA_SCR_EMS3 = 6,
    KERN_CUDA_SCR_QACT = 7 /* quantised activations */
};

/* Device memory helpers (synchronous with respect to ctx->stream when c != NULL). */
em_status kern_cuda_alloc(size_t bytes, void **out); /* zero-filled */
void kern_cuda_free(void *p);                        /* NULL ok */
em_status kern_cuda_h2d(kern_cuda_ctx *c, void *dst, const void *src, size_t bytes);
em_status kern_cuda_d2h(kern_cuda_ctx *c, void *dst, const void *src, size_t bytes);
em_status kern_cuda_d2d(kern_cuda_ctx *c, void *dst, const void *src, size_t bytes);
em_status kern_cuda_memset0(kern_cuda_ctx *c, void *dst, size_t bytes);

/* Asynchronous strided copy / zero fill on ctx->stream (device memory; pitches and width in
 * bytes), e.g. appending one K row to every head of a [head][cap][hd] cache in one call. */
em_status kern_cuda_copy2d_async(kern_cuda_ctx *c, void *dst, size_t dpitch, const void *src,
                                 size_t spitch, size_t width, size_t height);
em_status kern_cuda_memset2d_async(kern_cuda_ctx *c, void *dst, size_t pitch, size_t width,
                                   size_t height);

/* Event timing for benchmarks: elapsed milliseconds of fn(user) enqueued on ctx->stream. */
em_status kern_cuda_time_ms(kern_cuda_ctx *c, em_status (*fn)(void *user), void *user, float *ms);

#ifdef __cplusplus
}
#endif
