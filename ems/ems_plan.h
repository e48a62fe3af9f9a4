/* EMS planning (internal): for each due head of a layer, the Global-Local score, the number
 * of class centres (uniform, or head-wise across the layer through the reduce hook), the
 * centres and each candidate's class (0 = zero class). ems_merge.c applies a plan. */
#pragma once
#include "ems/policy_impl.h"

typedef struct ems__plan {
    int h;           /* local head index */
    int len;         /* head length when planned */
    int k;           /* number of centres (slots 1..k) */
    int *cls;        /* [len] -1 kept verbatim (sink/window), 0 zero class, s: slot s */
    int *cent;       /* [k] entry index of the centre of slot s at cent[s-1], ascending */
    char *is_centre; /* [len] */
    double *wt;      /* [len] merge weight of each candidate */
    int *keep;       /* [len] scratch */
    int *upd;        /* [k + 1] scratch */
} ems__plan;

/* Plans layer l: *n_due plans (only heads that must be compressed now). Caller frees with
 * ems__plans_free. Calls the reduce hook (head-wise budgets) identically on every worker. */
em_status ems__ems_plan_layer(ems__ctx *x, int l, ems__plan **plans, int *n_due);
void ems__plans_free(ems__plan *p, int n);

/* EMS score over candidates [lo, hi) of h into s[lo..hi) (other entries untouched);
 * EM_ENOMEM (s untouched) when its local-score row cannot be allocated. */
em_status ems__ems_score(const ems_config *cfg, const ems_head *h, int lo, int hi, float *s);
/* Nearest centre of each dropped candidate drop[0..nd) of h among cent[0..k) (entry indices):
 * best_c[j] = slot (1-based, ties: lower slot) exactly as the reference's arithmetic (ems/ref:
 * double cosines rounded to f32, cos K x cos V) decides, indexed by entry j. best_s[j] is the
 * reference similarity bit for bit under the placeholder split (which sums them), otherwise a
 * value within 8 (hd + 8) 2^-24 of it on the same side of cfg->ems_tau. With all = 0 only
 * similarities >= tau matter: a candidate none of whose centres reaches tau may get
 * best_s = -inf, best_c = 0 instead. One screening pass (ems_assign.c); EM_ENOMEM when its
 * scratch cannot be allocated. */
em_status ems__nearest_centres(const ems_config *cfg, const ems_head *h, const int *cent, int k,
                               const int *drop, int nd, int all, float *best_s, int *best_c);
/* Assignment similarity of entries a, b of h. */
float ems__ems_sim(const ems_config *cfg, const ems_head *h, int a, int b);
