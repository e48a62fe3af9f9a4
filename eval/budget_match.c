/* The matched-bytes budget search (eval/budget_match.h): a safeguarded secant on B. */
#include "eval/budget_match.h"

#include <math.h>

static int clamp(int b, int lo, int hi)
{
    return b < lo ? lo : b > hi ? hi : b;
}

/* Next budget from a secant estimate b inside the open bracket (lo, hi): an estimate past the
 * allowed range tries the range's end first; one outside a known bracket end bisects. */
static int next_budget(int b, int lo, int hi, int b_min, int b_max)
{
    if (b <= lo)
        return lo < b_min ? b_min : (lo + hi) / 2;
    if (b >= hi)
        return hi > b_max ? b_max : (lo + hi) / 2;
    return b;
}

em_status bm_search(int B0, int b_min, int b_max, double target, bm_eval_fn eval, bm_keep_fn keep,
                    void *ctx, bm_result *r)
{
    *r = (bm_result){0};
    if (b_min < 1 || b_max < b_min)
        return EM_EINVAL;
    int pb = clamp(B0, b_min, b_max);
    double py = 0;
    em_status st = eval(ctx, pb, &py);
    if (st != EM_OK)
        return st;
    *r = (bm_result){.B = pb, .bytes = py, .evals = 1};
    if (keep)
        keep(ctx);
    if (target <= 0)
        return EM_OK;
    double err = fabs(py / target - 1);
    /* lo / hi: budgets known below / above the target, or one past the range (never tried) */
    int lo = py < target ? pb : b_min - 1, hi = py > target ? pb : b_max + 1;
    int b = (int)lround(pb * target / (py > 0 ? py : 1));
    while (r->evals < BM_MAX_EVALS && err > BM_TOL && hi - lo > 1) {
        b = next_budget(b, lo, hi, b_min, b_max);
        double y = 0;
        if ((st = eval(ctx, b, &y)) != EM_OK)
            return st;
        r->evals++;
        if (fabs(y / target - 1) < err) {
            err = fabs(y / target - 1);
            r->B = b, r->bytes = y;
            if (keep)
                keep(ctx);
        }
        if (y < target)
            lo = b > lo ? b : lo;
        else
            hi = b < hi ? b : hi;
        double slope = b != pb ? (y - py) / (b - pb) : 0;
        int nb = slope > 0 ? (int)lround(b + (target - y) / slope)
                           : (int)lround(b * target / (y > 0 ? y : 1));
        pb = b, py = y, b = nb;
    }
    return EM_OK;
}
