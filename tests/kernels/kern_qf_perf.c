/* Microbenchmark (not a test) of the quantized matmul in its two activation modes on the
 * SmolLM2-135M shapes: KERN_ACT_F32 (matmul_qf.c) vs KERN_ACT_Q8 (matmul_q.c), interleaved so
 * that both see the same machine load; best of several runs (thread CPU time at 1 thread, wall
 * time otherwise), GB/s of weight bytes read.
 *   bazel run -c opt //tests/kernels:kern_qf_perf -- [threads] [n]   (default 1 thread, n = 1) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/kern.h"
#include "kernels/quant.h"
#include "tests/kernels/kern_test_util.h"

static clockid_t g_clock = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best seconds per call of reps calls. */
static double best_time(const kern_ops *o, const kern_weight *w, const float *x, int n, float *y,
                        int reps)
{
    double best = 1e9;
    for (int k = 0; k < 5; k++) {
        double t0 = now();
        for (int i = 0; i < reps; i++) {
            em_status st = kern_matmul(o, w, x, w->cols, n, y, w->rows);
            if (st != EM_OK) { /* a failing op measures nothing */
                fprintf(stderr, "kern_qf_perf: matmul failed: %s\n", em_status_str(st));
                exit(1);
            }
        }
        double t = (now() - t0) / reps;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1, n = argc > 2 ? atoi(argv[2]) : 1;
    static const struct {
        kern_dtype t;
        int rows, cols;
    } sh[] = {
        {KERN_Q4_1, 576, 576},   {KERN_Q4_1, 1536, 576}, {KERN_Q4_1, 576, 1536},
        {KERN_Q8_0, 49152, 576}, {KERN_Q8_0, 1536, 576}, {KERN_Q4_1, 49152, 576},
        {KERN_Q4_0, 1536, 576},  {KERN_Q4_K, 1536, 512}, {KERN_Q6_K, 1536, 512},
    };
    if (threads == 1)
        g_clock = CLOCK_THREAD_CPUTIME_ID; /* the shared machine's load aside */
    kern_ops *f32 = kern_ops_cpu_create_mode(threads, KERN_ACT_F32);
    kern_ops *q8 = kern_ops_cpu_create_mode(threads, KERN_ACT_Q8);
    if (!f32 || !q8)
        return 1;
    printf("threads %d, n %d\n%-6s %-12s %10s %10s %8s %8s\n", threads, n, "type", "shape",
           "f32 us", "q8 us", "f32 GB/s", "q8 GB/s");
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        kt_rng r = {7 + i};
        size_t rb = kern_row_bytes(sh[i].t, sh[i].cols), bytes = rb * (size_t)sh[i].rows;
        uint8_t *wd = kt_xmalloc(bytes);
        float *row = kt_alloc_fill((size_t)sh[i].cols, 0);
        for (int k = 0; k < sh[i].rows; k++) {
            kt_fill(&r, row, (size_t)sh[i].cols, -1, 1);
            kern_quant_row(sh[i].t, row, wd + (size_t)k * rb, sh[i].cols);
        }
        float *x = kt_alloc_fill((size_t)n * sh[i].cols, 0),
              *y = kt_alloc_fill((size_t)n * sh[i].rows, 0);
        kt_fill(&r, x, (size_t)n * sh[i].cols, -1, 1);
        kern_weight w = {wd, sh[i].t, sh[i].rows, sh[i].cols};
        int reps = (int)(2e8 / ((double)bytes * n + 1)) + 1;
        double tf = 1e9, tq = 1e9;
        for (int k = 0; k < 3; k++) { /* interleaved */
            double a = best_time(f32, &w, x, n, y, reps), b = best_time(q8, &w, x, n, y, reps);
            tf = a < tf ? a : tf, tq = b < tq ? b : tq;
        }
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%d", sh[i].rows, sh[i].cols);
        printf("%-6s %-12s %10.1f %10.1f %8.2f %8.2f\n", kern_dtype_name(sh[i].t), shape, tf * 1e6,
               tq * 1e6, bytes / tf * 1e-9, bytes / tq * 1e-9);
        free(wd), free(row), free(x), free(y);
    }
    kern_ops_cpu_free(f32), kern_ops_cpu_free(q8);
    return 0;
}
