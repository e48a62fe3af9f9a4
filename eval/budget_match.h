/* The matched-bytes budget search of //eval:longctx (--match-bytes): the budget of a method
 * whose KV bytes come closest to a target (EMS's bytes at the group's budget), found by
 * evaluating the method at a few budgets through a callback. Shared by the end-of-prompt tasks
 * (passkey, needle, QA: eval/longctx_run.c) and kl-long (eval/longctx_kllong.c). */
#pragma once
#include "common/status.h"

#define BM_MAX_EVALS 8    /* evaluations of one search, the first (at the start budget) included */
#define BM_TOL       0.02 /* stop once |bytes / target - 1| <= BM_TOL */

/* Runs the method at budget B (b_min <= B <= b_max) and gives its mean KV bytes. The callee keeps
 * the result of the latest call until the next one (it may be kept with keep). */
typedef em_status (*bm_eval_fn)(void *ctx, int B, double *bytes);
/* Called right after an evaluation that is the closest to the target so far (the first one
 * included): the callee keeps that evaluation's result as the search's answer. May be NULL. */
typedef void (*bm_keep_fn)(void *ctx);

typedef struct bm_result {
    int B;        /* the budget of the closest evaluation */
    double bytes; /* its bytes */
    int evals;    /* evaluations made (<= BM_MAX_EVALS) */
} bm_result;

/* Evaluates B0 (clamped to [b_min, b_max]); with target > 0, then searches: secant steps on the
 * budget, kept inside the bracket of budgets known to hold fewer / more bytes than target
 * (a step that leaves it bisects it; a step past b_min or b_max first tries that end: if even it
 * misses, no budget in range does), until within BM_TOL, the bracket has no untried budget or
 * BM_MAX_EVALS evaluations. target <= 0: B0 alone. The closest evaluation wins (keep). EM_EINVAL
 * when b_min < 1 or b_max < b_min; an evaluation's error ends the search and is returned. */
em_status bm_search(int B0, int b_min, int b_max, double target, bm_eval_fn eval, bm_keep_fn keep,
                    void *ctx, bm_result *r);
