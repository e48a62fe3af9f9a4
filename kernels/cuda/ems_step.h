/* One EMS compression step for all KV heads of a layer on the GPU, and its CPU reference
 * (the specification of the GPU step; methods.md 1.3-1.6 with the 1.14 defaults):
 *   score   s[j] = max(gw * s_glo[j] * mean(s_loc) / mean(s_glo), s_loc[j])  over candidates
 *           j < m = len - w; s_loc = sum of the w_loc local rows (ring), means in double;
 *   keep    top k = B - w candidates by s as class centres (ties: lower index), or head-wise
 *           budgets (params.headwise);
 *   assign  each dropped candidate t -> centre c* = argmax_c cosK(t,c) * cosV(t,c) (double, ties:
 *           earliest centre) if that value >= tau, else the zero class (discarded);
 *   merge   ONE batched scatter over all heads into a [H][k+1][.] accumulator, weights
 *           wt = max(s, 0) + 1e-30: V' = sum wt V / W;  K' = (sum wt |K| / W) * normalize(sum
 *           wt K/|K|);  s_glo, mass and the local rows of members are summed into their centre;
 *           a centre that received no member is left exactly as it was;
 *   compact cache = centres in original order (their positions kept) + the last w entries.
 * Heads with len <= B are left untouched. The GPU merge uses float atomics, so merged values
 * match the reference within rounding (kept entries and positions match exactly). */
#pragma once
#include <stdint.h>

#include "kernels/cuda/cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kern_cuda_ems_params {
    int B;        /* entries kept per head after the step (budget), >= 2 */
    int w;        /* recent window kept verbatim; <= 0 selects clamp(round(B/4), 1, B-1) */
    float tau;    /* merge threshold on cosK*cosV (default 0.8) */
    float gw;     /* weight of the global term (default 1) */
    int headwise; /* 1: head-wise budgets over the layer (1.14 item 5): each head first gets its
                     top F = max(1, round(floor*(B-w))) candidates, the other H*(B-w) - sum F
                     slots go to the largest s/sum(s) of any head (ties: lower head, then rank);
                     every head takes part and lengths come out ragged. 0 (default): B - w per
                     head, only heads longer than B are compressed. */
    float floor;  /* head-wise floor fraction (default 0.2) */
} kern_cuda_ems_params;

/* One (layer, KV head) cache in f32. Device pointers for the GPU step, host pointers for the
 * reference. Arrays have room for at least len entries; loc rows have loc_stride floats. */
typedef struct kern_cuda_ems_head {
    float *k, *v;   /* [len][hd] post-RoPE keys, values */
    int32_t *pos;   /* [len] original positions */
    float *s_glo;   /* [len] accumulated attention (global score) */
    float *mass;    /* [len] tokens represented by each entry; may be NULL */
    float *loc;     /* [w_loc][loc_stride] local rows (ring order irrelevant); NULL if w_loc 0 */
    int loc_stride; /* >= len */
    int len;        /* updated to B when the head was compressed */
} kern_cuda_ems_head;

/* Fills defaults: B given, w = clamp(round(B/4), 1, B-1), tau 0.8, gw 1, equal budgets. */
void kern_ems_params_default(int B, kern_cuda_ems_params *p);
/* Resolved window for p (applies the default when p->w <= 0). */
int kern_ems_window(const kern_cuda_ems_params *p);

/* GPU step over heads[0..n_heads) (host array of device pointers; len fields updated).
 * Synchronous (returns after the step finished). Scratch slots EMS and EMS2. */
em_status kern_cuda_ems_step(kern_cuda_ctx *c, kern_cuda_ems_head *heads, int n_heads, int hd,
                             int w_loc, const kern_cuda_ems_params *p);

/* CPU reference of the same step on host pointers. EM_ENOMEM on allocation failure. */
em_status kern_ems_step_ref(kern_cuda_ems_head *heads, int n_heads, int hd, int w_loc,
                            const kern_cuda_ems_params *p);

#ifdef __cplusplus
}
#endif
