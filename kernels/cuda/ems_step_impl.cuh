/* Internals shared by ems_step.cu (orchestration, scoring, assignment, merge, compaction) and
 * ems_select.cu (centre selection: equal or head-wise budgets). Not a public header. */
#pragma once
#include <stdint.h>

#include "kernels/cuda/cuda_ctx.h"
#include "kernels/cuda/ems_step.h"

#define EMS_WARPS       8
#define EMS_SEL_THREADS 1024

/* Geometry and device scratch of one step, passed by value to every kernel. Per head h:
 * wh = min(w, len) window, m = len - wh candidates, kh centres, new length kh + wh. */
struct ems_geo {
    int H, hd, w_loc, w, max_len;
    float tau, gw;
    const kern_cuda_ems_head *heads; /* device copy */
    const int *part;                 /* [H] 1 = head takes part in this step */
    int *kh;                         /* [H] centres kept per head */
    const int *acc_off, *out_off;    /* [H] first accumulator / output row of head h */
    double *ssum;                    /* [H] sum of candidate scores (head-wise budgets) */
    float *score;                    /* [H][max_len] */
    double *norm;                    /* [H][max_len][2] |K| |V| in double */
    int *flag;                       /* [H][max_len] 1 = candidate kept as a centre */
    int *cls;                        /* [H][max_len] slot (1..kh) or 0 zero class; -1 = undecided */
    int *centre;                     /* [H][max_len] candidate index of slot i+1, index order */
    float *acc;                      /* [rows][acc_stride]: K V W N G M COUNT L */
    int acc_stride;
    float *out; /* [rows][out_stride]: K V pos(bits) G M L */
    int out_stride;
};

/* Host-side view of the same step. */
struct ems_host {
    int *wh, *m, *part, *kh; /* [H] */
    int kg;                  /* B - w */
};

static __device__ __forceinline__ int ems_wh(const ems_geo &g, int h)
{
    int len = g.heads[h].len;
    return g.w < len ? g.w : len;
}

static __device__ __forceinline__ int ems_m(const ems_geo &g, int h)
{
    return g.heads[h].len - ems_wh(g, h);
}

/* Fills g.flag/g.cls/g.centre (and g.kh, hs->kh for head-wise budgets) after the scores exist.
 * Scratch slot EMS3. Enqueued on c->stream; returns after kh is known on the host. */
em_status kern_cuda__ems_select(kern_cuda_ctx *c, const ems_geo &g, ems_host *hs,
                                const kern_cuda_ems_params *p);
