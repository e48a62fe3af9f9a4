/* Test data of the quantized-matmul tests: weight matrices of every quantized type (quantised
 * floats, or random bytes with finite scales) and activation rows spanning five decades. */
#pragma once
#include <stdint.h>

#include "kernels/kern.h"
#include "tests/kernels/kern_test_util.h"

/* Stores v as an f16 at p (unaligned). */
void kt_put_f16(uint8_t *p, float v);

/* rows x cols weights of type t: quantised uniform floats in [-1, 1] (raw = 0), or random bytes
 * with finite scales (raw = 1). kt_xmalloc'ed; the caller frees. */
uint8_t *kt_make_qweights(kern_dtype t, int rows, int cols, int raw, kt_rng *r);

/* n rows of cols activations at stride xs: token t uniform in [-1, 1] times 10^(t % 5 - 2),
 * elements 32..63 of odd tokens zero (one all-zero block), padding KT_SENTINEL. */
float *kt_make_x(int n, int cols, int xs, kt_rng *r);
