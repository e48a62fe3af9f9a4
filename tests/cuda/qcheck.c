/* Quantized-matmul helpers of the CUDA tests (see qcheck.h). */
#include "tests/cuda/qcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/quant.h"
#include "kernels/ref/quant_blocks.h"

uint8_t *qc_weights(kern_dtype t, int rows, int cols, float lo, th_rng *r)
{
    size_t rb = kern_row_bytes(t, cols);
    uint8_t *w = malloc(rb * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int k = 0; k < rows; k++) {
        th_fill(r, row, (size_t)cols, -lo, lo);
        kern_quant_row(t, row, w + (size_t)k * rb, cols);
    }
    free(row);
    return w;
}

int qc_check(const char *what, kern_dtype t, const uint8_t *w, int rows, int cols, const float *x,
             int xs, int n, const float *got, const float *ref, int ys)
{
    if (!got) {
        printf("    %s: missing data (device error)\n", what);
        return 1;
    }
    size_t rb = kern_row_bytes(t, cols);
    float *wv = malloc(sizeof(float) * (size_t)cols);
    double *xv = malloc(sizeof(double) * (size_t)cols * n);
    for (int tk = 0; tk < n; tk++) {
        for (int b = 0; b < cols / 32; b++) {
            kern_q8_0x a;
            kern_quant_act_q8_0x(x + (size_t)tk * xs + 32 * b, &a, 32);
            for (int i = 0; i < 32; i++)
                xv[(size_t)tk * cols + 32 * b + i] = fabs((double)a.d * a.q[i]);
        }
    }
    int bad = 0;
    for (int k = 0; k < rows; k++) {
        const uint8_t *row = w + (size_t)k * rb;
        kern_dequant_row(t, row, wv, cols);
        for (int tk = 0; tk < n; tk++) {
            double m = 0;
            for (int i = 0; i < cols; i++) {
                double off =
                    t == KERN_Q4_1 ? fabs(qb_f16(row + (size_t)(i / 32) * 20 + QB_Q4_1_M)) : 0.0;
                m += (fabs(wv[i]) + off) * xv[(size_t)tk * cols + i];
            }
            double g = got[(size_t)tk * ys + k], e = ref[(size_t)tk * ys + k];
            if (!(fabs(g - e) <= 1e-5 * m + 1e-30)) {
                if (bad < 3)
                    printf("    %s t=%d r=%d: got %.9g ref %.9g (M %.3g)\n", what, tk, k, g, e, m);
                bad++;
            }
        }
    }
    free(wv), free(xv);
    return bad;
}
