/* Test data of the quantized-matmul tests (kern_quant_gen.h). */
#include "tests/kernels/kern_quant_gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "kernels/ref/kern_ref.h"
#include "kernels/ref/quant_blocks.h"

void kt_put_f16(uint8_t *p, float v)
{
    uint16_t h = kern_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* Random bytes for one row, then finite scales (and minimums) in every block. */
static void raw_row(kern_dtype t, uint8_t *wr, size_t rb, kt_rng *r)
{
    size_t bb = kern_dtype_block_bytes(t);
    for (size_t i = 0; i < rb; i++)
        wr[i] = (uint8_t)kt_next(r);
    for (uint8_t *b = wr; b < wr + rb; b += bb) {
        if (t == KERN_Q6_K) {
            kt_put_f16(b + QB_Q6_K_D, kt_unif(r, -0.01f, 0.01f));
        } else {
            kt_put_f16(b, kt_unif(r, -0.05f, 0.05f));
            if (t == KERN_Q4_1 || t == KERN_Q4_K)
                kt_put_f16(b + 2, kt_unif(r, -0.05f, 0.05f));
        }
    }
}

uint8_t *kt_make_qweights(kern_dtype t, int rows, int cols, int raw, kt_rng *r)
{
    size_t rb = kern_row_bytes(t, cols);
    uint8_t *w = kt_xmalloc(rb * (size_t)rows);
    float *row = kt_alloc_fill((size_t)cols, 0);
    for (int k = 0; k < rows; k++) {
        uint8_t *wr = w + (size_t)k * rb;
        if (raw) {
            raw_row(t, wr, rb, r);
            continue;
        }
        kt_fill(r, row, (size_t)cols, -1.0f, 1.0f);
        kern_quant_row(t, row, wr, cols);
    }
    free(row);
    return w;
}

float *kt_make_x(int n, int cols, int xs, kt_rng *r)
{
    float *x = kt_alloc_fill((size_t)n * (size_t)xs, KT_SENTINEL);
    for (int t = 0; t < n; t++) {
        float s = powf(10.0f, (float)(t % 5 - 2));
        for (int c = 0; c < cols; c++)
            x[(size_t)t * xs + c] = s * kt_unif(r, -1.0f, 1.0f);
        if (t & 1 && cols >= 64)
            for (int c = 32; c < 64; c++)
                x[(size_t)t * xs + c] = 0.0f;
    }
    return x;
}
