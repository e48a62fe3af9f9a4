/* An in-process "worker group" for tensor-parallel tests: one thread per shard, and a sum
 * all-reduce built on a barrier that adds the ranks' buffers in rank order (every rank gets the
 * same bits). Init: tu_group g = {.world = n}; pthread_barrier_init(&g.bar, NULL, n). */
#pragma once
#include <pthread.h>
#include <stddef.h>

#include "common/status.h"

#define TU_GROUP_MAX 8

typedef struct tu_group {
    int world;
    pthread_barrier_t bar;
    float *bufs[TU_GROUP_MAX];
} tu_group;

/* Called by every rank of g with its own buf of n floats; EM_ENOMEM if the scratch sum cannot
 * be allocated (the rank still takes part in every barrier). */
em_status tu_group_allreduce(tu_group *g, int rank, float *buf, size_t n);
