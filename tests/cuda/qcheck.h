/* Quantized-matmul helpers of the CUDA tests: random quantized weights and the comparison with
 * the reference kern_ref_matmul. Both sides add the same exact integer block products in f32 in
 * different orders, so |got - ref| <= 1e-5 * M with M = sum_i (|w_i| + |m_i|) * |x_i| over the
 * dequantised weights w, block offsets m (Q4_1) and quantised activations x of that output. */
#pragma once
#include <stdint.h>

#include "kernels/kern.h"
#include "tests/cuda/harness.h"

/* rows x cols weights of type t from uniform floats in [-lo, lo] (malloc'd). */
uint8_t *qc_weights(kern_dtype t, int rows, int cols, float lo, th_rng *r);
/* Number of outputs of y (n x rows, stride ys) outside the bound vs ref; prints the first 3. */
int qc_check(const char *what, kern_dtype t, const uint8_t *w, int rows, int cols, const float *x,
             int xs, int n, const float *got, const float *ref, int ys);
