/* Tests of the IEEE half conversions kern_f16_to_f32 / kern_f32_to_f16 (kernels/ref) against
 * the F16C hardware instructions (exact, round-to-nearest-even) plus round trips: every one of
 * the 65536 halves, a table of edge cases and a fixed-seed sweep of random floats. */
#include <immintrin.h>

#include "kernels/kern.h"
#include "tests/kernels/kern_test_util.h"

static int is_nan16(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

static int check_f32_to_f16(float f, int *shown)
{
    uint16_t got = kern_f32_to_f16(f);
    uint16_t want = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    /* NaN payloads may differ (the reference returns a canonical quiet NaN); sign must not */
    int ok = got == want || (is_nan16(got) && is_nan16(want) && (got & 0x8000) == (want & 0x8000));
    if (!ok && (*shown)++ < 5)
        fprintf(stderr, "    f32_to_f16(%.9g = 0x%08x): got 0x%04x want 0x%04x\n", f,
                ((union {
                    float f;
                    uint32_t u;
                }){.f = f})
                    .u,
                got, want);
    return !ok;
}

int main(void)
{
    int bad_all = 0, shown = 0, bad = 0;
    /* 1. all halves: to f32 exact (= hardware), and back unchanged (NaN stays NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kern_f16_to_f32((uint16_t)h), hw = _cvtsh_ss((uint16_t)h);
        uint16_t back = kern_f32_to_f16(f);
        int ok = memcmp(&f, &hw, 4) == 0 || (isnan(f) && isnan(hw));
        ok &= back == h || (is_nan16((uint16_t)h) && is_nan16(back));
        if (!ok) {
            if (shown++ < 5)
                fprintf(stderr, "    half 0x%04x: f32 %.9g (hw %.9g) back 0x%04x\n", h, f, hw,
                        back);
            bad++;
        }
    }
    printf("%s f16 -> f32 -> f16 over all 65536 halves (%d bad)\n", bad ? "FAIL" : "ok  ", bad);
    bad_all |= bad;
    /* 2. edge cases of the rounding: ties, overflow, subnormals, underflow */
    static const float edges[] = {0.0f,
                                  -0.0f,
                                  1.0f,
                                  -1.0f,
                                  65504.0f,
                                  65519.99f,
                                  65520.0f,
                                  -65520.0f,
                                  1e6f,
                                  INFINITY,
                                  -INFINITY,
                                  NAN,
                                  -NAN,
                                  6.103515625e-05f /* min normal */,
                                  6.09755516e-05f,
                                  5.96046448e-08f /* min subnormal */,
                                  2.98023224e-08f,
                                  2.98023259e-08f,
                                  2.98023188e-08f,
                                  8.94069672e-08f,
                                  1.0f + 1.0f / 2048.0f,
                                  1.0f + 3.0f / 2048.0f,
                                  1.0f + 1.0f / 4096.0f,
                                  3.14159265f,
                                  1e-10f,
                                  -1e-10f,
                                  2049.0f,
                                  2051.0f,
                                  1.17549435e-38f,
                                  1.4e-45f};
    bad = 0;
    shown = 0;
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        bad += check_f32_to_f16(edges[i], &shown);
    printf("%s f32 -> f16 edge cases (%d bad)\n", bad ? "FAIL" : "ok  ", bad);
    bad_all |= bad;
    /* 3. random float bit patterns (all exponents) and random values in the half range */
    kt_rng r = {7000u};
    bad = 0;
    shown = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)kt_next(&r);
        float f;
        memcpy(&f, &u, 4);
        bad += check_f32_to_f16(f, &shown);
        bad += check_f32_to_f16(kt_unif(&r, -70000.0f, 70000.0f), &shown);
        bad += check_f32_to_f16(kt_unif(&r, -1e-4f, 1e-4f), &shown);
    }
    printf("%s f32 -> f16 random sweep of 600000 floats (%d bad)\n", bad ? "FAIL" : "ok  ", bad);
    bad_all |= bad;
    return bad_all ? 1 : 0;
}
