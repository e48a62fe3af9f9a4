/* CUDA-vs-CPU reference test of every GPU op (ggml test-backend-ops style, tables in
 * cases_*.c). Without a CUDA device it runs the device-free checks, prints
 * "skipped: no CUDA device" and passes. With one it runs every case and fails on any mismatch.
 * Usage: cuda_ops_test [--perf] [device]   (--perf: kernel timings instead of checks) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kernels/cuda/cuda_ctx.h"
#include "tests/cuda/cases.h"
#include "tests/cuda/harness.h"

int main(int argc, char **argv)
{
    int dev = 0, perf = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--perf") == 0) {
            perf = 1;
        } else {
            dev = atoi(argv[i]);
        }
    }
    cases_no_device();
    if (kern_cuda_device_count() == 0) {
        printf("%d device-free checks, %d failed\n", th_cases, th_failed);
        printf("skipped: no CUDA device\n");
        return th_failed ? 1 : 0;
    }
    char name[256] = "?";
    kern_cuda_ctx *c = NULL;
    if (kern_cuda_ctx_create(dev, &c) != EM_OK) {
        printf("FAIL: cannot create a context on device %d\n", dev);
        return 1;
    }
    (void)kern_cuda_device_name(dev, name, sizeof name);
    printf("device %d: %s\n", dev, name);
    if (perf) {
        cases_perf(c);
        kern_cuda_ctx_destroy(c);
        return 0;
    }
    cases_dense(c);
    cases_attn(c);
    cases_ems(c);
    cases_ops();
    kern_cuda_ctx_destroy(c);
    printf("%d cases, %d failed\n", th_cases, th_failed);
    return th_failed ? 1 : 0;
}
