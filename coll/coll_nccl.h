/* GPU collectives: an NCCL backend (one GPU per worker) and a host-staging adapter that runs
 * any host all-reduce (the gloo shim's coll_reduce_hook, coll.h) on device buffers.
 * NCCL group formation: one process (the coordinator, or rank 0) calls coll_nccl_unique_id
 * and hands the 128 opaque bytes, each worker's rank and the world size to the workers over
 * the control channel; every worker then calls coll_nccl_create. The process that created
 * the id hosts NCCL's bootstrap root thread and must stay up until all ranks have joined.
 * Plain C header; every CUDA/NCCL call inside goes through KERN_CUDA_CHECK (EM_EDEVICE). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { COLL_NCCL_ID_BYTES = 128 };

typedef struct coll_nccl coll_nccl;

/* New unique id (needs no GPU). EM_EDEVICE on NCCL failure. */
em_status coll_nccl_unique_id(uint8_t id[COLL_NCCL_ID_BYTES]);
/* Joins the group as `rank` of `world` on CUDA device `device`; blocks until all ranks have
 * joined. stream: cudaStream_t to order the collectives on (NULL = a new stream owned by the
 * communicator). EM_EINVAL on bad rank/world, EM_EDEVICE on CUDA/NCCL failure. */
em_status coll_nccl_create(const uint8_t id[COLL_NCCL_ID_BYTES], int rank, int world, int device,
                           void *stream, coll_nccl **out);
/* In-place sum of n floats of DEVICE memory over the group; returns when the result is in buf
 * (stream synchronized). All ranks must call it with the same n. */
em_status coll_nccl_allreduce_sum_f32(coll_nccl *c, float *dev_buf, size_t n);
int coll_nccl_rank(const coll_nccl *c);
int coll_nccl_world(const coll_nccl *c);
void coll_nccl_destroy(coll_nccl *c); /* NULL ok */

/* Host all-reduce callback: same signature and meaning as coll_reduce_hook (coll.h):
 * in-place sum of buf[0..n) over the group; EM_OK on success. */
typedef em_status (*coll_host_allreduce_fn)(void *user, float *buf, size_t n);

/* "gloo with host staging": copies dev_buf (n floats, DEVICE) to host_buf (n floats; pinned
 * memory makes it faster; NULL = a temporary malloc), calls fn(user, host, n), copies the sum
 * back. stream: cudaStream_t the producer of dev_buf used (NULL = default stream).
 * EM_EUNAVAILABLE when fn fails (dev_buf is then unchanged), EM_EDEVICE on CUDA failure,
 * EM_ENOMEM when the temporary buffer cannot be allocated (fn is not called then). */
em_status coll_staged_allreduce_sum_f32(float *dev_buf, size_t n, float *host_buf,
                                        coll_host_allreduce_fn fn, void *user, void *stream);

#ifdef __cplusplus
}
#endif
