/* Op arguments a caller could get wrong are EM_EINVAL from every CPU-side backend (reference in
 * both activation modes, fast CPU with 1 and 3 threads), and nothing is written; degenerate but
 * valid calls (nothing to do) are EM_OK. Table-driven: one row per call, with the status every
 * backend must return. The CUDA backend runs the same kern_check_* (tests/cuda:cases_ops). */
#include <stdio.h>
#include <string.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/kern.h"
#include "tests/testutil/testutil.h"

enum { ROWS = 40, COLS = 64, N = 3, HD = 8, HEADS = 8, SENT = 0x7f };

typedef struct bufs {
    float w[ROWS * COLS], x[N * COLS], g[COLS], y[N * ROWS * 2];
    int32_t pos[8]; /* query and key positions */
} bufs;

typedef struct call {
    const char *what;
    em_status want;
    em_status (*run)(const kern_ops *o, bufs *b);
} call;

#define MM(name, dtype, rows, cols, xs, n, ys)                   \
    static em_status name(const kern_ops *o, bufs *b)            \
    {                                                            \
        kern_weight w = {b->w, (kern_dtype)(dtype), rows, cols}; \
        return kern_matmul(o, &w, b->x, xs, n, b->y, ys);        \
    }
MM(mm_dtype, 7, ROWS, COLS, COLS, N, ROWS) /* 7 is no ggml type we know */
MM(mm_dtype_neg, -1, ROWS, COLS, COLS, N, ROWS)
MM(mm_part_block, KERN_Q8_0, ROWS, 48, COLS, N, ROWS) /* 48 columns: 1.5 blocks of 32 */
MM(mm_part_kblock, KERN_Q4_K, 4, 64, COLS, 1, ROWS)   /* K-quants: blocks of 256 */
MM(mm_neg_n, KERN_F32, ROWS, COLS, COLS, -1, ROWS)
MM(mm_neg_rows, KERN_F32, -2, COLS, COLS, N, ROWS)
MM(mm_short_xs, KERN_F32, ROWS, COLS, COLS - 1, N, ROWS)
MM(mm_short_ys, KERN_F32, ROWS, COLS, COLS, N, ROWS - 1)
MM(mm_zero_n, KERN_F32, ROWS, COLS, COLS, 0, ROWS)       /* nothing to do */
MM(mm_zero_cols_q, KERN_Q4_0, ROWS, 0, 0, N, ROWS)       /* empty sums: zeros */
MM(mm_one_tok_any_stride, KERN_F32, ROWS, COLS, 0, 1, 0) /* strides unused for one token */

static em_status mm_null_y(const kern_ops *o, bufs *b)
{
    kern_weight w = {b->w, KERN_F32, ROWS, COLS};
    return kern_matmul(o, &w, b->x, COLS, N, NULL, ROWS);
}

static em_status mm_null_w(const kern_ops *o, bufs *b)
{
    return kern_matmul(o, NULL, b->x, COLS, N, b->y, ROWS);
}

static em_status rms_neg_n(const kern_ops *o, bufs *b)
{
    return kern_rmsnorm(o, b->x, b->g, -1, COLS, 1e-5f, b->y);
}

static em_status rms_null_g(const kern_ops *o, bufs *b)
{
    return kern_rmsnorm(o, b->x, NULL, N, COLS, 1e-5f, b->y);
}

static em_status rms_zero(const kern_ops *o, bufs *b)
{
    return kern_rmsnorm(o, b->x, b->g, 0, COLS, 1e-5f, b->y);
}

#define ROPE(name, n_tok, heads, hd, stride, rope_dim)                               \
    static em_status name(const kern_ops *o, bufs *b)                                \
    {                                                                                \
        return kern_rope(o, b->y, n_tok, heads, hd, stride, b->pos, 1e4f, rope_dim); \
    }
ROPE(rope_odd, N, HEADS, HD, HEADS *HD, 7)
ROPE(rope_wide, N, HEADS, HD, HEADS *HD, 10) /* rope_dim > hd */
ROPE(rope_neg_dim, N, HEADS, HD, HEADS *HD, -2)
ROPE(rope_neg_tok, -1, HEADS, HD, HEADS *HD, 8)
ROPE(rope_short_stride, N, HEADS, HD, HEADS *HD - 1, 8) /* tokens overlap */
ROPE(rope_none, N, HEADS, HD, HEADS *HD, 0)             /* rope_dim 0: no rotation */

static em_status rope_null_pos(const kern_ops *o, bufs *b)
{
    return kern_rope(o, b->y, N, HEADS, HD, HEADS * HD, NULL, 1e4f, 8);
}

static em_status swiglu_neg(const kern_ops *o, bufs *b)
{
    return kern_swiglu(o, b->x, b->x, N, -5, b->y);
}

static em_status swiglu_null(const kern_ops *o, bufs *b)
{
    return kern_swiglu(o, b->x, NULL, N, COLS, b->y);
}

/* A valid attention call (2 queries, G 2, hd 8, 5 entries) with one field changed. */
static em_status attn_with(const kern_ops *o, bufs *b, int field)
{
    float *rows[4];
    kern_attn_stats st = {.row_ptrs = rows, .n_rows = 2};
    for (int r = 0; r < 4; r++)
        rows[r] = b->g + 8 * r;
    kern_attn_args a = {.n_q = 2,
                        .G = 2,
                        .hd = HD,
                        .len = 5,
                        .q = b->x,
                        .q_stride = 2 * HD,
                        .q_pos = b->pos,
                        .k = b->w,
                        .v = b->w + 64,
                        .kpos = b->pos,
                        .out = b->y,
                        .o_stride = 2 * HD,
                        .scale = 0.3f,
                        .stats = &st};
    switch (field) {
    case 0:
        a.G = 0;
        break;
    case 1:
        a.hd = -8;
        break;
    case 2:
        a.len = -1;
        break;
    case 3:
        a.q_stride = 2 * HD - 1;
        break;
    case 4:
        a.o_stride = HD;
        break;
    case 5:
        a.k = NULL;
        break;
    case 6:
        st.n_rows = 3;
        break; /* more statistic rows than queries */
    case 7:
        a.out = NULL;
        break;
    case 8:
        a.n_q = -1;
        break;
    case 9:
        a.n_q = 0;
        a.q = NULL;
        break; /* no query: nothing to do */
    case 10:
        a.len = 0;
        a.k = a.v = NULL;
        a.kpos = NULL;
        break; /* empty cache: zero output */
    }
    return kern_attn(o, &a);
}

#define ATTN(name, field)                             \
    static em_status name(const kern_ops *o, bufs *b) \
    {                                                 \
        return attn_with(o, b, field);                \
    }
ATTN(attn_g0, 0)
ATTN(attn_hd, 1)
ATTN(attn_len, 2)
ATTN(attn_qs, 3)
ATTN(attn_os, 4)
ATTN(attn_k, 5)
ATTN(attn_rows, 6)
ATTN(attn_out, 7)
ATTN(attn_nq, 8)
ATTN(attn_none, 9)
ATTN(attn_empty, 10)

static const call k_calls[] = {
    {"matmul: unknown dtype 7", EM_EINVAL, mm_dtype},
    {"matmul: dtype -1", EM_EINVAL, mm_dtype_neg},
    {"matmul: q8_0 with 48 columns", EM_EINVAL, mm_part_block},
    {"matmul: q4_K with 64 columns", EM_EINVAL, mm_part_kblock},
    {"matmul: n = -1", EM_EINVAL, mm_neg_n},
    {"matmul: rows = -2", EM_EINVAL, mm_neg_rows},
    {"matmul: x stride < cols", EM_EINVAL, mm_short_xs},
    {"matmul: y stride < rows", EM_EINVAL, mm_short_ys},
    {"matmul: y NULL", EM_EINVAL, mm_null_y},
    {"matmul: weight NULL", EM_EINVAL, mm_null_w},
    {"rmsnorm: n = -1", EM_EINVAL, rms_neg_n},
    {"rmsnorm: gain NULL", EM_EINVAL, rms_null_g},
    {"rope: odd rope_dim", EM_EINVAL, rope_odd},
    {"rope: rope_dim > hd", EM_EINVAL, rope_wide},
    {"rope: rope_dim < 0", EM_EINVAL, rope_neg_dim},
    {"rope: n_tok < 0", EM_EINVAL, rope_neg_tok},
    {"rope: stride < heads * hd", EM_EINVAL, rope_short_stride},
    {"rope: pos NULL", EM_EINVAL, rope_null_pos},
    {"swiglu: dim < 0", EM_EINVAL, swiglu_neg},
    {"swiglu: up NULL", EM_EINVAL, swiglu_null},
    {"attn: G = 0", EM_EINVAL, attn_g0},
    {"attn: hd < 0", EM_EINVAL, attn_hd},
    {"attn: len < 0", EM_EINVAL, attn_len},
    {"attn: q stride < G * hd", EM_EINVAL, attn_qs},
    {"attn: out stride < G * hd", EM_EINVAL, attn_os},
    {"attn: k NULL", EM_EINVAL, attn_k},
    {"attn: n_rows > n_q", EM_EINVAL, attn_rows},
    {"attn: out NULL", EM_EINVAL, attn_out},
    {"attn: n_q < 0", EM_EINVAL, attn_nq},
    /* valid calls with nothing (or little) to do */
    {"matmul: n = 0", EM_OK, mm_zero_n},
    {"matmul: q4_0 with 0 columns", EM_OK, mm_zero_cols_q},
    {"matmul: one token, strides 0", EM_OK, mm_one_tok_any_stride},
    {"rmsnorm: n = 0", EM_OK, rms_zero},
    {"rope: rope_dim = 0", EM_OK, rope_none},
    {"attn: n_q = 0", EM_OK, attn_none},
    {"attn: empty cache", EM_OK, attn_empty},
};

int main(void)
{
    kern_ops *cpu1 = kern_ops_cpu_create(1), *cpu3 = kern_ops_cpu_create(3);
    REQUIRE(cpu1 && cpu3, "kern_ops_cpu_create");
    const kern_ops *backends[] = {kern_ops_ref(), kern_ops_ref_mode(KERN_ACT_Q8), cpu1, cpu3};
    static bufs b, y_before;
    for (int i = 0; i < ROWS * COLS; i++)
        b.w[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < N * COLS; i++)
        b.x[i] = (float)(i % 5) * 0.2f - 0.4f;
    for (int i = 0; i < COLS; i++)
        b.g[i] = 1.0f;
    for (int i = 0; i < 8; i++)
        b.pos[i] = i;
    int n = 0;
    for (size_t bi = 0; bi < sizeof backends / sizeof backends[0]; bi++) {
        for (size_t c = 0; c < sizeof k_calls / sizeof k_calls[0]; c++, n++) {
            memset(b.y, SENT, sizeof b.y);
            memcpy(&y_before, &b, sizeof b);
            em_status st = k_calls[c].run(backends[bi], &b);
            CHECK(st == k_calls[c].want, "%s on %s: %s, want %s", k_calls[c].what,
                  backends[bi]->name, em_status_str(st), em_status_str(k_calls[c].want));
            /* a rejected call writes nothing (also not the statistic rows in b.g) */
            if (k_calls[c].want != EM_OK)
                CHECK(memcmp(&y_before, &b, sizeof b) == 0, "%s on %s: wrote its outputs",
                      k_calls[c].what, backends[bi]->name);
            for (int i = 0; k_calls[c].run == mm_zero_cols_q && i < N * ROWS; i++)
                CHECK(b.y[i] == 0.0f, "%s on %s: y[%d] = %g", k_calls[c].what, backends[bi]->name,
                      i, b.y[i]);
        }
    }
    printf("%d calls over %zu backends\n", n, sizeof backends / sizeof backends[0]);
    kern_ops_cpu_free(cpu1);
    kern_ops_cpu_free(cpu3);
    TEST_END();
}
