/* NCCL communicator wrapper and the host-staging adapter (see coll_nccl.h). */
#include <stdlib.h>
#include <string.h>

#include <nccl.h>

#include "coll/coll_nccl.h"
#include "kernels/cuda/check.cuh"

/* NCCL results through the same KERN_CUDA_CHECK as CUDA and cuBLAS. */
static inline bool kern_cuda__ok(ncclResult_t e)
{
    return e == ncclSuccess;
}
static inline const char *kern_cuda__str(ncclResult_t e)
{
    return ncclGetErrorString(e);
}

struct coll_nccl {
    ncclComm_t comm;
    cudaStream_t stream;
    int own_stream, rank, world, device;
};

extern "C" em_status coll_nccl_unique_id(uint8_t id[COLL_NCCL_ID_BYTES])
{
    static_assert(sizeof(ncclUniqueId) == COLL_NCCL_ID_BYTES, "NCCL id size changed");
    ncclUniqueId u;
    KERN_CUDA_CHECK(ncclGetUniqueId(&u));
    memcpy(id, u.internal, COLL_NCCL_ID_BYTES);
    return EM_OK;
}

static em_status init(coll_nccl *c, const uint8_t *id, void *stream)
{
    KERN_CUDA_CHECK(cudaSetDevice(c->device));
    if (stream) {
        c->stream = (cudaStream_t)stream;
    } else {
        KERN_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        c->own_stream = 1;
    }
    ncclUniqueId u;
    memcpy(u.internal, id, COLL_NCCL_ID_BYTES);
    KERN_CUDA_CHECK(ncclCommInitRank(&c->comm, c->world, u, c->rank));
    return EM_OK;
}

extern "C" em_status coll_nccl_create(const uint8_t id[COLL_NCCL_ID_BYTES], int rank, int world,
                                      int device, void *stream, coll_nccl **out)
{
    *out = NULL;
    if (world < 1 || rank < 0 || rank >= world || device < 0) {
        EM_LOG_ERROR("bad group: rank %d of %d on device %d", rank, world, device);
        return EM_EINVAL;
    }
    coll_nccl *c = (coll_nccl *)calloc(1, sizeof *c);
    if (!c)
        return EM_ENOMEM;
    c->rank = rank, c->world = world, c->device = device;
    em_status st = init(c, id, stream);
    if (st != EM_OK) {
        coll_nccl_destroy(c);
        return st;
    }
    *out = c;
    return EM_OK;
}

extern "C" em_status coll_nccl_allreduce_sum_f32(coll_nccl *c, float *dev_buf, size_t n)
{
    if (n == 0)
        return EM_OK;
    KERN_CUDA_CHECK(ncclAllReduce(dev_buf, dev_buf, n, ncclFloat32, ncclSum, c->comm, c->stream));
    KERN_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return EM_OK;
}

extern "C" int coll_nccl_rank(const coll_nccl *c)
{
    return c->rank;
}
extern "C" int coll_nccl_world(const coll_nccl *c)
{
    return c->world;
}

extern "C" void coll_nccl_destroy(coll_nccl *c)
{
    if (!c)
        return;
    if (c->comm)
        ncclCommDestroy(c->comm);
    if (c->own_stream && c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

static em_status staged(float *dev_buf, size_t n, float *h, coll_host_allreduce_fn fn, void *user,
                        cudaStream_t s)
{
    KERN_CUDA_CHECK(cudaMemcpyAsync(h, dev_buf, sizeof(float) * n, cudaMemcpyDeviceToHost, s));
    KERN_CUDA_CHECK(cudaStreamSynchronize(s));
    if (fn(user, h, n) != EM_OK) {
        EM_LOG_ERROR("host all-reduce of %zu floats failed", n);
        return EM_EUNAVAILABLE;
    }
    KERN_CUDA_CHECK(cudaMemcpyAsync(dev_buf, h, sizeof(float) * n, cudaMemcpyHostToDevice, s));
    KERN_CUDA_CHECK(cudaStreamSynchronize(s));
    return EM_OK;
}

extern "C" em_status coll_staged_allreduce_sum_f32(float *dev_buf, size_t n, float *host_buf,
                                                   coll_host_allreduce_fn fn, void *user,
                                                   void *stream)
{
    if (n == 0)
        return EM_OK;
    float *h = host_buf ? host_buf : (float *)malloc(sizeof(float) * n);
    if (!h)
        return EM_ENOMEM;
    em_status st = staged(dev_buf, n, h, fn, user, (cudaStream_t)stream);
    if (!host_buf)
        free(h);
    return st;
}
