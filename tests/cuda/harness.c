/* Comparison, random data and device-copy helpers of the CUDA tests (see harness.h). */
#include "tests/cuda/harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int th_cases, th_failed;

static uint64_t next(th_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

float th_uniform(th_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)((next(r) >> 40) * (1.0 / 16777216.0));
}

void th_fill(th_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = th_uniform(r, lo, hi);
}

int th_check(const char *what, const float *got, const float *ref, size_t n, float atol, float rtol)
{
    if (!got || !ref) {
        printf("    %s: missing data (device error)\n", what);
        return 1;
    }
    int bad = 0;
    double se = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(ref[i]))
            continue;
        double d = (double)got[i] - (double)ref[i];
        se += d * d;
        sr += (double)ref[i] * ref[i];
        if (!(fabs(d) <= atol + rtol * fabsf(ref[i]))) {
            if (bad < 5) {
                printf("    %s[%zu]: got %.9g ref %.9g (|d| %.3g > %.3g)\n", what, i, got[i],
                       ref[i], fabs(d), atol + rtol * fabsf(ref[i]));
            }
            if (++bad >= 10)
                break;
        }
    }
    if (bad)
        printf("    %s: %d+ mismatches, nmse %.3g\n", what, bad, sr > 0 ? se / sr : se);
    return bad;
}

int th_check_i32(const char *what, const int32_t *got, const int32_t *ref, size_t n)
{
    if (!got || !ref) {
        printf("    %s: missing data (device error)\n", what);
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < n && bad < 10; i++) {
        if (got[i] != ref[i]) {
            if (bad < 5)
                printf("    %s[%zu]: got %d ref %d\n", what, i, got[i], ref[i]);
            bad++;
        }
    }
    return bad;
}

void th_report(const char *name, int bad)
{
    th_cases++;
    if (bad)
        th_failed++;
    printf("%s %s\n", bad ? "FAIL" : "ok  ", name);
}
