/* KERN_CUDA_CHECK: the one check macro for every CUDA runtime, cuBLAS and NCCL call in the
 * GPU path. On failure it logs the failing statement with file:line and the library's error
 * string, then returns EM_EDEVICE from the enclosing function (which must return em_status).
 * CUDA errors are sticky: a caller that sees EM_EDEVICE should treat the device as lost.
 * Supporting another library = one more kern_cuda__ok / kern_cuda__str overload pair. */
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" { /* common/ headers have no extern "C" guards of their own */
#include "common/log.h"
#include "common/status.h"
}

static inline bool kern_cuda__ok(cudaError_t e)
{
    return e == cudaSuccess;
}
static inline const char *kern_cuda__str(cudaError_t e)
{
    return cudaGetErrorString(e);
}
static inline bool kern_cuda__ok(cublasStatus_t e)
{
    return e == CUBLAS_STATUS_SUCCESS;
}
static inline const char *kern_cuda__str(cublasStatus_t e)
{
    return cublasGetStatusString(e);
}

#define KERN_CUDA_CHECK(expr)                                                                 \
    do {                                                                                      \
        auto kern_cuda_e_ = (expr);                                                           \
        if (!kern_cuda__ok(kern_cuda_e_)) {                                                   \
            em_log(EM_LOG_ERROR, __func__, "%s:%d: %s failed: %s", __FILE__, __LINE__, #expr, \
                   kern_cuda__str(kern_cuda_e_));                                             \
            return EM_EDEVICE;                                                                \
        }                                                                                     \
    } while (0)

/* After a kernel launch: launch-configuration errors surface through cudaGetLastError. */
#define KERN_CUDA_CHECK_LAUNCH() KERN_CUDA_CHECK(cudaGetLastError())

/* Propagate an em_status from a nested call without logging again. */
#define KERN_CUDA_TRY(expr)               \
    do {                                  \
        em_status kern_cuda_st_ = (expr); \
        if (kern_cuda_st_ != EM_OK)       \
            return kern_cuda_st_;         \
    } while (0)

static inline unsigned kern_cuda__blocks(long long n, int per_block)
{
    return (unsigned)((n + per_block - 1) / per_block);
}
