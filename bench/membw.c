/* //bench:membw — sustained read bandwidth of this machine (GB/s) with 1..N threads: each
 * thread sums its share of a 1 GiB buffer (AVX2 loads, 4 accumulators), best of 5 passes.
 * The decode bound of a model is (bytes read per token) / (this bandwidth). */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"

typedef struct part {
    const float *p;
    size_t n;
    float sum;
} part;

static void *sum_part(void *arg)
{
    part *t = arg;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= t->n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(t->p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(t->p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(t->p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(t->p + i + 24));
    }
    float l[8];
    _mm256_storeu_ps(l, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    t->sum = l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
    return NULL;
}

int main(int argc, char **argv)
{
    int max_threads = argc > 1 ? atoi(argv[1]) : 2;
    if (max_threads < 1 || max_threads > 64) {
        fprintf(stderr, "usage: membw [max_threads (1-64)]\n");
        return 2;
    }
    size_t bytes = (size_t)1 << 30, n = bytes / sizeof(float);
    float *buf = aligned_alloc(64, bytes);
    if (!buf) {
        fprintf(stderr, "membw: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 7);
    printf("threads,read_GBps\n");
    for (int th = 1; th <= max_threads; th++) {
        double best = 0;
        for (int rep = 0; rep < 5; rep++) {
            pthread_t tid[64];
            part parts[64];
            size_t per = n / (size_t)th / 32 * 32;
            double t0 = em_now_s();
            for (int k = 0; k < th; k++) {
                parts[k] = (part){buf + (size_t)k * per, per, 0};
                pthread_create(&tid[k], NULL, sum_part, &parts[k]);
            }
            float s = 0;
            for (int k = 0; k < th; k++) {
                pthread_join(tid[k], NULL);
                s += parts[k].sum;
            }
            double gbps = (double)per * th * sizeof(float) / (em_now_s() - t0) / 1e9;
            if (gbps > best && s >= 0)
                best = gbps;
        }
        printf("%d,%.2f\n", th, best);
    }
    free(buf);
    return 0;
}
