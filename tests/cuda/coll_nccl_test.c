/* NCCL backend and host-staging adapter. Device-free part: a unique id can be made without a
 * GPU and bad ranks are rejected before any CUDA call. With devices: an all-reduce over
 * min(devices, 2) ranks (one thread and one GPU per rank; NCCL forbids two ranks on one GPU),
 * and the staging adapter with a host callback standing in for gloo (a group of 3 identical
 * ranks: sum = 3x), plus a failing callback that must leave the device buffer unchanged.
 * Without a device: prints "skipped: no CUDA device" and passes. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll/coll_nccl.h"
#include "kernels/cuda/cuda_ctx.h"
#include "tests/cuda/harness.h"

enum { N = 1000003 }; /* odd size: no alignment luck */

typedef struct rank_arg {
    const uint8_t *id;
    int rank, world, bad;
} rank_arg;

static void *rank_main(void *p)
{
    rank_arg *a = p;
    coll_nccl *c = NULL;
    if (coll_nccl_create(a->id, a->rank, a->world, a->rank, NULL, &c) != EM_OK) {
        a->bad = 1;
        return NULL;
    }
    float *h = malloc(sizeof(float) * N), *ref = malloc(sizeof(float) * N), *d = NULL;
    for (int i = 0; i < N; i++) {
        h[i] = (float)(a->rank + 1) + 0.5f * (float)(i % 7);
        ref[i] = 0.0f;
        for (int r = 0; r < a->world; r++)
            ref[i] += (float)(r + 1) + 0.5f * (float)(i % 7);
    }
    if (kern_cuda_alloc(sizeof(float) * N, (void **)&d) != EM_OK ||
        kern_cuda_h2d(NULL, d, h, sizeof(float) * N) != EM_OK ||
        coll_nccl_allreduce_sum_f32(c, d, N) != EM_OK ||
        kern_cuda_d2h(NULL, h, d, sizeof(float) * N) != EM_OK) {
        a->bad = 1;
    } else {
        a->bad = th_check("allreduce", h, ref, N, 0.0f, 0.0f) != 0; /* small exact sums */
    }
    kern_cuda_free(d);
    coll_nccl_destroy(c);
    free(h), free(ref);
    return NULL;
}

static em_status times3(void *user, float *buf, size_t n)
{
    (void)user;
    for (size_t i = 0; i < n; i++)
        buf[i] *= 3.0f;
    return EM_OK;
}

static em_status failing(void *user, float *buf, size_t n)
{
    (void)user;
    for (size_t i = 0; i < n; i++)
        buf[i] = -1.0f; /* garbage that must not reach the device */
    return EM_EUNAVAILABLE;
}

static int staged_case(void)
{
    float *h = malloc(sizeof(float) * N), *ref = malloc(sizeof(float) * N), *d = NULL;
    float *pinned_like = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        h[i] = (float)(i % 11) - 5.0f, ref[i] = 3.0f * h[i];
    int bad = kern_cuda_alloc(sizeof(float) * N, (void **)&d) != EM_OK;
    bad += kern_cuda_h2d(NULL, d, h, sizeof(float) * N) != EM_OK;
    bad += coll_staged_allreduce_sum_f32(d, N, NULL, times3, NULL, NULL) != EM_OK;
    bad += coll_staged_allreduce_sum_f32(d, N, pinned_like, failing, NULL, NULL) != EM_EUNAVAILABLE;
    bad += kern_cuda_d2h(NULL, h, d, sizeof(float) * N) != EM_OK;
    bad += th_check("staged", h, ref, N, 0.0f, 0.0f);
    kern_cuda_free(d);
    free(h), free(ref), free(pinned_like);
    return bad;
}

int main(void)
{
    uint8_t id[COLL_NCCL_ID_BYTES] = {0};
    coll_nccl *c = NULL;
    int bad = coll_nccl_create(id, 2, 2, 0, NULL, &c) != EM_EINVAL || c != NULL;
    bad += coll_nccl_create(id, 0, 0, 0, NULL, &c) != EM_EINVAL;
    th_report("coll_nccl_create rejects bad rank/world before touching CUDA", bad);
    th_report("coll_nccl_unique_id without a GPU", coll_nccl_unique_id(id) != EM_OK);
    int ndev = kern_cuda_device_count();
    if (ndev == 0) {
        printf("skipped: no CUDA device\n");
        return th_failed ? 1 : 0;
    }
    int world = ndev >= 2 ? 2 : 1;
    rank_arg ra[2];
    pthread_t th[2];
    for (int r = 0; r < world; r++) {
        ra[r] = (rank_arg){id, r, world, 0};
        pthread_create(&th[r], NULL, rank_main, &ra[r]);
    }
    bad = 0;
    for (int r = 0; r < world; r++)
        pthread_join(th[r], NULL), bad += ra[r].bad;
    char name[64];
    snprintf(name, sizeof name, "nccl allreduce sum, world %d, %d floats", world, N);
    th_report(name, bad);
    th_report("staged all-reduce (host callback) + failing callback leaves buffer", staged_case());
    printf("%d cases, %d failed\n", th_cases, th_failed);
    return th_failed ? 1 : 0;
}
