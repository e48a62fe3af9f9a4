/* In-process all-reduce of the tensor-parallel tests (see inproc_group.h). */
#include "tests/testutil/inproc_group.h"

#include <stdlib.h>
#include <string.h>

em_status tu_group_allreduce(tu_group *g, int rank, float *buf, size_t n)
{
    g->bufs[rank] = buf;
    pthread_barrier_wait(&g->bar);
    /* every rank computes the same sum in rank order into a private copy, then writes it */
    float *tmp = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; tmp && i < n; i++) {
        float s = g->bufs[0][i];
        for (int k = 1; k < g->world; k++)
            s += g->bufs[k][i];
        tmp[i] = s;
    }
    pthread_barrier_wait(&g->bar);
    if (tmp)
        memcpy(buf, tmp, sizeof(float) * n);
    free(tmp);
    pthread_barrier_wait(&g->bar);
    return tmp ? EM_OK : EM_ENOMEM;
}
