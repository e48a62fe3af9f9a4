/* Shared harness of the kernel tests: comparison with NMSE and mismatch listing, the fast
 * backends under test, small allocation helpers. */
#include "tests/kernels/kern_test_util.h"

#include <stdlib.h>

#include "kernels/kern.h"

const int kt_threads[KT_N_BACKENDS] = {1, 2, 3};
kern_ops *kt_cpu[KT_N_BACKENDS];
int kt_failures;

void *kt_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

float *kt_alloc_fill(size_t n, float v)
{
    float *p = kt_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = v;
    return p;
}

int kt_check_same(const char *what, int t, const void *a, const void *b, size_t bytes)
{
    if (memcmp(a, b, bytes) == 0)
        return 0;
    fprintf(stderr, "    DETERMINISM %s: %d threads differ from 1 thread\n", what, kt_threads[t]);
    return 1;
}

void kt_report(const char *name, int bad)
{
    printf("%s %s\n", bad ? "FAIL" : "ok  ", name);
    fflush(stdout);
    if (bad)
        kt_failures++;
}

/* Compares got against ref over n floats; prints a line with NMSE and up to 5 mismatches.
 * Returns the number of mismatching elements. */
size_t kt_compare(const char *what, const float *ref, const float *got, size_t n, double atol,
                  double rtol)
{
    double se = 0.0, sr = 0.0, max_err = 0.0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double a = ref[i], b = got[i], d = fabs(a - b);
        int ok = d <= atol + rtol * fabs(a) || (isnan(a) && isnan(b)) || a == b;
        if (isfinite(d)) {
            se += d * d;
            if (d > max_err)
                max_err = d;
        }
        sr += a * a;
        if (!ok) {
            if (bad < 5)
                fprintf(stderr, "    MISMATCH %s [%zu]: ref=%.9g got=%.9g |diff|=%.3g\n", what, i,
                        a, b, d);
            bad++;
        }
    }
    double nmse = sr > 0 ? se / sr : se;
    printf("    %-10s n=%-7zu nmse=%.3e max_abs_err=%.3e %s\n", what, n, nmse, max_err,
           bad ? "FAIL" : "ok");
    if (bad)
        fprintf(stderr, "    %s: %zu of %zu mismatches\n", what, bad, n);
    return bad;
}
