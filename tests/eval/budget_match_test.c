/* eval/budget_match.h (longctx --match-bytes' budget search) on synthetic bytes(B) curves,
 * table-driven: where the target is reachable inside [b_min, b_max] the search ends within
 * BM_TOL of it; every evaluation stays inside the range; at most BM_MAX_EVALS evaluations; the
 * kept result is the closest evaluation; a target below (above) every budget's bytes ends at
 * b_min (b_max) after few tries; target <= 0 evaluates the start budget once; a bad range and
 * an evaluation's error are returned. */
#include <math.h>
#include <stdio.h>

#include "eval/budget_match.h"
#include "tests/testutil/testutil.h"

enum { LINEAR, AFFINE, POWER07, CONVEX, STEPS16, DOUBLING, DECREASING, JAGGED, FLAT };

static double curve(int kind, int B)
{
    switch (kind) {
    case LINEAR: /* TOVA / RoCo: bytes in proportion to B, 6 % under EMS's at the same B */
        return 0.94 * 46080.0 * B;
    case AFFINE: /* a fixed part (sinks, the window) plus per-entry bytes */
        return 2.0e6 + 40000.0 * B;
    case POWER07:
        return 1.0e5 * pow(B, 0.7);
    case CONVEX:
        return 300.0 * pow(B, 1.5);
    case STEPS16: /* a layer schedule that moves in steps of 16 entries */
        return 46080.0 * (B / 16 * 16 + 16);
    case DOUBLING: /* 2 % unreachable: bytes double every 32 budgets */
        return 1.0e5 * pow(2.0, B / 32);
    case DECREASING: /* SimLayerKV-like: fewer entries, more lazy layers missed */
        return 9.0e6 - 2000.0 * B;
    case JAGGED: /* +-30 % around linear: the search bounces and the try cap ends it */
        return 1000.0 * B * (1 + 0.3 * ((B * 37) % 7 - 3) / 3.0);
    default: /* FLAT: no budget moves the bytes */
        return 5.0e6;
    }
}

typedef struct probe {
    int kind, b_min, b_max, evals, bad_range, fail_at;
    double target, last, kept;
    double tried[BM_MAX_EVALS + 4]; /* bytes of every evaluation */
} probe;

static em_status eval(void *ctx, int B, double *bytes)
{
    probe *p = ctx;
    if (p->evals < BM_MAX_EVALS + 4)
        p->tried[p->evals] = curve(p->kind, B);
    p->evals++;
    p->bad_range |= B < p->b_min || B > p->b_max;
    if (p->evals == p->fail_at)
        return EM_EIO;
    *bytes = p->last = curve(p->kind, B);
    return EM_OK;
}

static void keep(void *ctx)
{
    probe *p = ctx;
    p->kept = p->last;
}

static void test_curves(void)
{
    /* reach: 1 = must end within BM_TOL; 0 = unreachable, end_B (when > 0) is where it must end
     * and max_evals how many tries that may take */
    static const struct {
        const char *name;
        int kind, B0, b_min, b_max;
        double target;
        int reach, end_B, max_evals;
    } k[] = {
        {"linear, 6 % short", LINEAR, 128, 8, 4096, 46080.0 * 128, 1, 0, BM_MAX_EVALS},
        {"linear, 6 % short, B 256", LINEAR, 256, 8, 7168, 46080.0 * 256, 1, 0, BM_MAX_EVALS},
        {"affine from far below", AFFINE, 16, 8, 4096, 2.0e6 + 40000.0 * 300, 1, 0, BM_MAX_EVALS},
        {"affine from far above", AFFINE, 3000, 8, 4096, 2.0e6 + 40000.0 * 50, 1, 0, BM_MAX_EVALS},
        {"concave power", POWER07, 128, 8, 4096, 1.0e5 * pow(777, 0.7), 1, 0, BM_MAX_EVALS},
        {"convex power", CONVEX, 128, 8, 4096, 300.0 * pow(1000, 1.5), 1, 0, BM_MAX_EVALS},
        {"steps of 16", STEPS16, 100, 8, 4096, 46080.0 * 256, 1, 0, BM_MAX_EVALS},
        {"already there", LINEAR, 128, 8, 4096, 0.94 * 46080.0 * 128 * 1.01, 1, 128, 1},
        {"below every budget (SimLayerKV)", AFFINE, 128, 8, 4096, 1.0e5, 0, 8, 3},
        {"above every budget", LINEAR, 128, 8, 512, 1.0e9, 0, 512, 3},
        {"doubling: 2 % unreachable", DOUBLING, 64, 8, 4096, 1.0e5 * 5.5, 0, 0, BM_MAX_EVALS},
        {"decreasing, unreachable", DECREASING, 128, 8, 4096, 1.0e5, 0, 0, BM_MAX_EVALS},
        {"jagged: the cap ends it", JAGGED, 128, 8, 4096, 3.0e5, 0, 0, BM_MAX_EVALS},
        {"flat", FLAT, 128, 8, 4096, 1.0e6, 0, 0, BM_MAX_EVALS},
        {"start clamped to b_max", LINEAR, 9000, 8, 4096, 0.94 * 46080.0 * 4096, 1, 4096, 1},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        probe p = {.kind = k[i].kind, .b_min = k[i].b_min, .b_max = k[i].b_max};
        bm_result r;
        em_status st = bm_search(k[i].B0, k[i].b_min, k[i].b_max, k[i].target, eval, keep, &p, &r);
        double err = fabs(r.bytes / k[i].target - 1);
        CHECK(st == EM_OK, "%s: %s", k[i].name, em_status_str(st));
        CHECK(!p.bad_range, "%s: a budget outside [%d, %d] was tried", k[i].name, k[i].b_min,
              k[i].b_max);
        CHECK(p.evals == r.evals && r.evals >= 1 && r.evals <= k[i].max_evals,
              "%s: %d evaluations (reported %d, at most %d)", k[i].name, p.evals, r.evals,
              k[i].max_evals);
        CHECK(r.B >= k[i].b_min && r.B <= k[i].b_max && r.bytes == curve(k[i].kind, r.B),
              "%s: result B=%d bytes %g", k[i].name, r.B, r.bytes);
        CHECK(p.kept == r.bytes, "%s: kept %g, result %g", k[i].name, p.kept, r.bytes);
        for (int t = 0; t < p.evals && t < BM_MAX_EVALS + 4; t++)
            CHECK(err <= fabs(p.tried[t] / k[i].target - 1),
                  "%s: try %d was closer than the result", k[i].name, t);
        if (k[i].reach)
            CHECK(err <= BM_TOL, "%s: ended %.1f %% off at B=%d", k[i].name, 100 * err, r.B);
        if (k[i].end_B)
            CHECK(r.B == k[i].end_B, "%s: ended at B=%d, want %d", k[i].name, r.B, k[i].end_B);
    }
}

static void test_edges(void)
{
    probe p = {.kind = LINEAR, .b_min = 8, .b_max = 4096};
    bm_result r;
    CHECK(bm_search(128, 8, 4096, 0, eval, keep, &p, &r) == EM_OK && p.evals == 1 && r.B == 128 &&
              r.evals == 1,
          "target 0: one evaluation at B0 (%d, B=%d)", p.evals, r.B);
    p = (probe){.kind = LINEAR, .b_min = 8, .b_max = 4096};
    CHECK(bm_search(3, 8, 4096, -1, eval, NULL, &p, &r) == EM_OK && r.B == 8,
          "B0 below b_min is clamped (B=%d), keep may be NULL", r.B);
    p = (probe){.kind = LINEAR};
    CHECK(bm_search(128, 0, 4096, 1e6, eval, keep, &p, &r) == EM_EINVAL && !p.evals, "b_min 0");
    CHECK(bm_search(128, 64, 32, 1e6, eval, keep, &p, &r) == EM_EINVAL && !p.evals,
          "b_max < b_min");
    p = (probe){.kind = LINEAR, .b_min = 8, .b_max = 4096, .fail_at = 2};
    CHECK(bm_search(128, 8, 4096, 46080.0 * 300, eval, keep, &p, &r) == EM_EIO && p.evals == 2,
          "the second evaluation's error ends the search (%d evaluations)", p.evals);
    p = (probe){.kind = LINEAR, .b_min = 8, .b_max = 4096, .fail_at = 1};
    CHECK(bm_search(128, 8, 4096, 46080.0 * 300, eval, keep, &p, &r) == EM_EIO && p.evals == 1,
          "the first evaluation's error is returned");
}

int main(void)
{
    test_curves();
    test_edges();
    TEST_END();
}
