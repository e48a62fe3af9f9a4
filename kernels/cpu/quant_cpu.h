/* Internals of the fast quantized matmul (kernels/cpu, not a public header): the layout of the
 * quantised activations the kernels read, and the entry points shared by quant_act.c and
 * matmul_q.c. The q and d values are bit-identical to the reference activation quantisers of
 * kernels/quant.h (kern_quant_act_*); the per-block auxiliary data is what the AVX2 dot
 * products of qdot.h need in place of q8_1x's s and q8_kx's bsums. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/kern.h"

/* Activations of n tokens quantised for weight type `dtype` (block = the weight's block: 32
 * or 256 elements). Token t, block b:
 *   q   + t*cols + b*block  int8 [block]   quantised values (cols is a multiple of 32, so every
 *                                          32-element chunk is 32-byte aligned)
 *   d   [t*nb + b]          f32            scale (NaN for a block with a non-finite element)
 *   aux + (t*nb + b)*32     32 bytes:
 *        Q4_1: f32[8]  lane k = d * (sum of q[4k .. 4k+3])   (the m_w term, spread over the
 *                      8 lanes of the integer dot so it folds into the same accumulator)
 *        Q4_K: i32[8]  sum of q over sub-block j (32 elements)
 *        Q6_K: i16[16] sum of q over group k (16 elements)
 *        Q4_0, Q8_0: unused */
typedef struct kern_cpu__qact {
    kern_dtype dtype;
    int n, cols, nb;
    int8_t *q;
    float *d;
    uint8_t *aux;
} kern_cpu__qact;

/* Bytes of scratch for n tokens of cols (64-byte aligned base). */
size_t kern_cpu__qact_bytes(kern_dtype t, int n, int cols);
/* Lays out a (64-byte aligned, kern_cpu__qact_bytes) buffer. */
void kern_cpu__qact_init(kern_cpu__qact *a, kern_dtype t, int n, int cols, void *buf);
/* Quantises tokens [t0, t1) of x (row stride xs floats) into a. Each token's data depends on
 * that token's row only (any split over threads gives the same bytes). */
void kern_cpu__qact_fill(const kern_cpu__qact *a, const float *x, int xs, int t0, int t1);

/* Y[t][r] for rows [ra, rb) and tokens [t0, t1) of an n-token call (see matmul_q.c). */
void kern_cpu__qmm_rows(const kern_weight *w, const kern_cpu__qact *a, int ra, int rb, int t0,
                        int t1, float *y, int ys);
/* The quantized matmul behind kern_cpu__matmul (threads, scratch, fallbacks), on arguments
 * kern_check_matmul accepted; no failure (without scratch: token by token, then the
 * reference). */
void kern_cpu__matmul_q(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                        int ys);
