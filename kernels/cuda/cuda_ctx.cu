/* Context, scratch buffers and device-memory helpers for the CUDA ops (see cuda_ctx.h). */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ctx.h"

extern "C" int kern_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the non-sticky "no driver" error */
        return 0;
    }
    return n;
}

extern "C" em_status kern_cuda_device_name(int device, char *buf, size_t n)
{
    cudaDeviceProp p;
    KERN_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    strncpy(buf, p.name, n);
    if (n)
        buf[n - 1] = 0;
    return EM_OK;
}

static em_status ctx_init(kern_cuda_ctx *c, int device)
{
    KERN_CUDA_CHECK(cudaSetDevice(device));
    KERN_CUDA_CHECK(cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, device));
    cudaStream_t s;
    KERN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    c->stream = s;
    cublasHandle_t h;
    KERN_CUDA_CHECK(cublasCreate(&h));
    c->cublas = h;
    KERN_CUDA_CHECK(cublasSetStream(h, s));
    return EM_OK;
}

extern "C" em_status kern_cuda_ctx_create(int device, kern_cuda_ctx **out)
{
    *out = NULL;
    int n = kern_cuda_device_count();
    if (device < 0 || device >= n) {
        EM_LOG_ERROR("CUDA device %d not available (%d devices)", device, n);
        return EM_EDEVICE;
    }
    kern_cuda_ctx *c = (kern_cuda_ctx *)calloc(1, sizeof *c);
    if (!c)
        return EM_ENOMEM;
    c->device = device;
    em_status st = ctx_init(c, device);
    if (st != EM_OK) {
        kern_cuda_ctx_destroy(c);
        return st;
    }
    *out = c;
    return EM_OK;
}

extern "C" void kern_cuda_ctx_destroy(kern_cuda_ctx *c)
{
    if (!c)
        return;
    for (int i = 0; i < KERN_CUDA_N_SCRATCH; i++)
        cudaFree(c->scratch[i]);
    if (c->cublas)
        cublasDestroy((cublasHandle_t)c->cublas);
    if (c->stream)
        cudaStreamDestroy((cudaStream_t)c->stream);
    free(c);
}

extern "C" em_status kern_cuda_sync(kern_cuda_ctx *c)
{
    KERN_CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)c->stream));
    return EM_OK;
}

extern "C" em_status kern_cuda__scratch(kern_cuda_ctx *c, int slot, size_t bytes, void **out)
{
    if (bytes == 0)
        bytes = 256;
    if (c->scratch_bytes[slot] < bytes) {
        /* The old buffer may still be read by queued work: wait before freeing. */
        KERN_CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)c->stream));
        KERN_CUDA_CHECK(cudaFree(c->scratch[slot]));
        c->scratch[slot] = NULL;
        c->scratch_bytes[slot] = 0;
        size_t nb = bytes + bytes / 2;
        KERN_CUDA_CHECK(cudaMalloc(&c->scratch[slot], nb));
        c->scratch_bytes[slot] = nb;
    }
    *out = c->scratch[slot];
    return EM_OK;
}

extern "C" em_status kern_cuda_alloc(size_t bytes, void **out)
{
    *out = NULL;
    void *p = NULL;
    KERN_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
    KERN_CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 1));
    *out = p;
    return EM_OK;
}

extern "C" void kern_cuda_free(void *p)
{
    if (p)
        cudaFree(p);
}

static em_status copy(kern_cuda_ctx *c, void *dst, const void *src, size_t bytes, cudaMemcpyKind k)
{
    if (bytes == 0)
        return EM_OK;
    if (c) {
        cudaStream_t s = (cudaStream_t)c->stream;
        KERN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, s));
        KERN_CUDA_CHECK(cudaStreamSynchronize(s));
    } else {
        KERN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, k));
    }
    return EM_OK;
}

extern "C" em_status kern_cuda_h2d(kern_cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    return copy(c, dst, src, bytes, cudaMemcpyHostToDevice);
}

extern "C" em_status kern_cuda_d2h(kern_cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    return copy(c, dst, src, bytes, cudaMemcpyDeviceToHost);
}

extern "C" em_status kern_cuda_d2d(kern_cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    return copy(c, dst, src, bytes, cudaMemcpyDeviceToDevice);
}

extern "C" em_status kern_cuda_memset0(kern_cuda_ctx *c, void *dst, size_t bytes)
{
    if (bytes == 0)
        return EM_OK;
    KERN_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, c ? (cudaStream_t)c->stream : 0));
    if (!c)
        KERN_CUDA_CHECK(cudaDeviceSynchronize());
    return EM_OK;
}

extern "C" em_status kern_cuda_copy2d_async(kern_cuda_ctx *c, void *dst, size_t dpitch,
                                            const void *src, size_t spitch, size_t width,
                                            size_t height)
{
    if (width == 0 || height == 0)
        return EM_OK;
    KERN_CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height,
                                      cudaMemcpyDeviceToDevice, (cudaStream_t)c->stream));
    return EM_OK;
}

extern "C" em_status kern_cuda_memset2d_async(kern_cuda_ctx *c, void *dst, size_t pitch,
                                              size_t width, size_t height)
{
    if (width == 0 || height == 0)
        return EM_OK;
    KERN_CUDA_CHECK(cudaMemset2DAsync(dst, pitch, 0, width, height, (cudaStream_t)c->stream));
    return EM_OK;
}

extern "C" em_status kern_cuda_time_ms(kern_cuda_ctx *c, em_status (*fn)(void *user), void *user,
                                       float *ms)
{
    cudaStream_t s = (cudaStream_t)c->stream;
    cudaEvent_t a, b;
    KERN_CUDA_CHECK(cudaEventCreate(&a));
    KERN_CUDA_CHECK(cudaEventCreate(&b));
    KERN_CUDA_CHECK(cudaEventRecord(a, s));
    em_status st = fn(user);
    KERN_CUDA_CHECK(cudaEventRecord(b, s));
    KERN_CUDA_CHECK(cudaEventSynchronize(b));
    KERN_CUDA_CHECK(cudaEventElapsedTime(ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return st;
}
