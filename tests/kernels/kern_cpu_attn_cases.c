/* Attention cases of the kernel test: fast attention (with every kern_attn_stats output)
 * against the reference over head sizes 4..128, GQA ratios 1/2/3/5/8, one token to 600,
 * cache lengths 0/1/5/7/8/33/1000/2049, ragged and shuffled key positions, queries that see
 * part or none of the cache, causal prefill shapes of the test models and of SmolLM2 (hd 64,
 * G 3); each case also checks that every query alone gives the bits it gets in the batch;
 * plus kern_cpu_parallel_for (each index exactly once, any thread count). */
#include <stdlib.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/kern.h"
#include "tests/kernels/kern_test_util.h"

typedef enum { KPOS_CONTIG, KPOS_RAGGED } kpos_mode;
typedef enum { QPOS_ALL, QPOS_CAUSAL, QPOS_RANDOM } qpos_mode;

typedef struct attn_case {
    int n_q, G, hd, len;
    kpos_mode kp;
    qpos_mode qp;
    int stats, group_max, n_rows, pad; /* pad: extra floats in q_stride / o_stride */
    float qscale;                      /* larger => peakier softmax */
    int bias;                          /* 1: kbias (proportional attention) in [0, 2) */
} attn_case;

static const attn_case attn_cases[] = {
    {1, 1, 8, 1, KPOS_CONTIG, QPOS_ALL, 1, 0, 1, 0, 1.0f, 0},
    {1, 2, 8, 7, KPOS_CONTIG, QPOS_ALL, 1, 0, 1, 0, 1.0f, 0},
    {1, 1, 8, 0, KPOS_CONTIG, QPOS_ALL, 1, 0, 1, 0, 1.0f, 0},
    {1, 8, 8, 33, KPOS_RAGGED, QPOS_RANDOM, 1, 1, 1, 3, 2.0f, 0},
    {4, 2, 8, 33, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 2, 0, 2.0f, 0},
    {1, 1, 128, 1000, KPOS_CONTIG, QPOS_ALL, 1, 0, 1, 0, 1.0f, 0},
    {3, 8, 128, 33, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 3, 5, 3.0f, 0},
    {2, 2, 128, 1000, KPOS_RAGGED, QPOS_RANDOM, 1, 1, 1, 0, 1.0f, 0},
    {5, 8, 8, 1000, KPOS_RAGGED, QPOS_RANDOM, 1, 1, 2, 0, 4.0f, 0},
    {5, 8, 8, 1000, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 0, 0, 4.0f, 0},
    {64, 2, 32, 64, KPOS_CONTIG, QPOS_CAUSAL, 1, 0, 3, 0, 2.0f, 0},
    {16, 1, 64, 40, KPOS_RAGGED, QPOS_CAUSAL, 1, 1, 16, 2, 2.0f, 0},
    {4, 2, 12, 17, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 1, 1, 2.0f, 0},
    {3, 1, 4, 9, KPOS_CONTIG, QPOS_CAUSAL, 0, 0, 0, 0, 1.0f, 0},
    {2, 8, 72, 7, KPOS_CONTIG, QPOS_ALL, 0, 0, 0, 0, 8.0f, 0},
    /* prefill shapes: stories260K (hd 8, G 2), hd 16, 110M (hd 64, G 1); tile tails, the
     * 4-tile score unroll and its remainder all occur across the causal queries */
    {130, 2, 8, 301, KPOS_CONTIG, QPOS_CAUSAL, 1, 0, 4, 0, 2.0f, 0},
    {40, 4, 16, 97, KPOS_RAGGED, QPOS_CAUSAL, 1, 1, 2, 1, 2.0f, 0},
    {33, 1, 64, 200, KPOS_CONTIG, QPOS_CAUSAL, 0, 0, 0, 0, 2.0f, 0},
    {6, 3, 5, 50, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 2, 2, 2.0f, 0},  /* generic hd <= 8, G 3 */
    {7, 2, 20, 45, KPOS_RAGGED, QPOS_RANDOM, 1, 1, 1, 0, 2.0f, 0}, /* row-major path, hd % 8 */
    {3, 2, 8, 64, KPOS_CONTIG, QPOS_ALL, 1, 0, 1, 0, 30.0f, 0},    /* very peaky softmax */
    /* with kbias: both transposed-V and row-major-V small paths, the row-major path */
    {1, 2, 8, 37, KPOS_RAGGED, QPOS_ALL, 1, 0, 1, 0, 2.0f, 1},
    {50, 2, 8, 90, KPOS_CONTIG, QPOS_CAUSAL, 1, 1, 2, 0, 2.0f, 1},
    {9, 1, 64, 70, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 1, 1, 2.0f, 1},
    /* register-blocked rows (hd % 8 == 0, hd > 16): blocks of whole queries with a remainder
     * block, rows of a block that see different numbers of tiles, queries that see nothing
     * inside a block, remainder micro-kernels (rows % 3, % 4), dimensions past the multiples
     * of 64 (96, 40, 32, 24); G = 1 also checks the one-row calls of the query-invariance
     * check (the per-row path) against the blocked batch bit for bit */
    {600, 3, 64, 700, KPOS_CONTIG, QPOS_CAUSAL, 1, 0, 16, 0, 2.0f, 0},
    {200, 3, 64, 333, KPOS_RAGGED, QPOS_RANDOM, 1, 1, 5, 3, 3.0f, 1},
    {100, 8, 128, 150, KPOS_RAGGED, QPOS_CAUSAL, 1, 0, 4, 0, 2.0f, 0},
    {37, 3, 96, 200, KPOS_CONTIG, QPOS_RANDOM, 1, 1, 3, 2, 2.0f, 1},
    {130, 1, 64, 129, KPOS_CONTIG, QPOS_CAUSAL, 1, 1, 7, 0, 2.0f, 0},
    {50, 1, 128, 77, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 2, 1, 2.0f, 1},
    {5, 1, 64, 81, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 2, 0, 2.0f, 0},
    {1, 3, 64, 300, KPOS_CONTIG, QPOS_ALL, 1, 1, 1, 0, 2.0f, 1},
    {1, 8, 128, 1000, KPOS_RAGGED, QPOS_ALL, 1, 0, 1, 1, 2.0f, 0},
    {2, 3, 64, 2049, KPOS_CONTIG, QPOS_CAUSAL, 1, 0, 2, 0, 2.0f, 0},
    {23, 8, 40, 64, KPOS_RAGGED, QPOS_RANDOM, 1, 1, 2, 0, 2.0f, 0},
    {9, 3, 32, 55, KPOS_CONTIG, QPOS_CAUSAL, 1, 0, 1, 4, 2.0f, 1},
    {70, 2, 24, 90, KPOS_RAGGED, QPOS_RANDOM, 1, 0, 3, 0, 2.0f, 0},
    {20, 3, 64, 5, KPOS_RAGGED, QPOS_RANDOM, 1, 1, 2, 0, 2.0f, 1},
    {17, 5, 64, 8, KPOS_CONTIG, QPOS_CAUSAL, 1, 0, 3, 0, 2.0f, 0},
    {11, 3, 64, 1, KPOS_CONTIG, QPOS_ALL, 1, 0, 1, 0, 2.0f, 0},
    {64, 3, 64, 256, KPOS_CONTIG, QPOS_ALL, 1, 1, 2, 0, 8.0f, 0}, /* peaky */
    {3, 3, 64, 40, KPOS_CONTIG, QPOS_ALL, 0, 0, 0, 0, 2.0f, 0},
    {20, 3, 64, 40000, KPOS_CONTIG, QPOS_CAUSAL, 1, 0, 2, 0, 2.0f, 0}, /* long: smaller blocks */
};

typedef struct attn_bufs {
    float *out, *col_sum, *col_sqsum, *rows;
    int32_t *col_cnt;
    float *row_ptr[16];
} attn_bufs;

static void bufs_init(attn_bufs *b, const attn_case *c, size_t n_out, const float *cs0,
                      const float *csq0, const int32_t *cnt0)
{
    size_t len = (size_t)(c->len > 0 ? c->len : 1);
    b->out = kt_alloc_fill(n_out, KT_SENTINEL);
    b->col_sum = kt_alloc_fill(len, 0);
    b->col_sqsum = kt_alloc_fill(len, 0);
    b->rows = kt_alloc_fill(len * 16, KT_SENTINEL);
    b->col_cnt = kt_xmalloc(len * sizeof(int32_t));
    memcpy(b->col_sum, cs0, len * sizeof(float));
    memcpy(b->col_sqsum, csq0, len * sizeof(float));
    memcpy(b->col_cnt, cnt0, len * sizeof(int32_t));
    for (int r = 0; r < 16; r++)
        b->row_ptr[r] = b->rows + (size_t)r * len;
}

static void bufs_free(attn_bufs *b)
{
    free(b->out);
    free(b->col_sum);
    free(b->col_sqsum);
    free(b->rows);
    free(b->col_cnt);
}

static em_status run_attn(const kern_ops *o, const kern_attn_args *tmpl, const attn_case *c,
                          attn_bufs *b)
{
    kern_attn_args a = *tmpl;
    kern_attn_stats st = {b->col_sum, b->col_sqsum, b->col_cnt, c->n_rows ? b->row_ptr : NULL,
                          c->n_rows,  c->group_max};
    a.out = b->out;
    a.stats = c->stats ? &st : NULL;
    return kern_attn(o, &a);
}

static int cmp_attn(const attn_bufs *ref, const attn_bufs *got, const attn_case *c, size_t n_out)
{
    size_t len = (size_t)(c->len > 0 ? c->len : 1);
    int bad = 0;
    /* Scores reassociate over hd (abs error ~hd * 6e-8 * |q||k|), the vector exp is ~2 ulp
     * and the weighted sum of V reassociates over len: probabilities and outputs agree to a
     * few 1e-6 relative; rtol 1e-4 / atol 1e-6 leaves margin, a wrong entry is off by >1e-2. */
    bad |= kt_compare("out", ref->out, got->out, n_out, 1e-6, 1e-4) != 0;
    bad |= kt_compare("col_sum", ref->col_sum, got->col_sum, len, 1e-6, 1e-4) != 0;
    bad |= kt_compare("col_sqsum", ref->col_sqsum, got->col_sqsum, len, 1e-6, 1e-4) != 0;
    bad |= kt_compare("rows", ref->rows, got->rows, len * 16, 1e-6, 1e-4) != 0;
    if (memcmp(ref->col_cnt, got->col_cnt, len * sizeof(int32_t)) != 0) {
        fprintf(stderr, "    MISMATCH col_cnt differs\n");
        bad = 1;
    }
    return bad;
}

static void test_attn(int ci, const attn_case *c)
{
    char name[160];
    snprintf(name, sizeof name,
             "attn n_q=%d G=%d hd=%d len=%d kpos=%s qpos=%s stats=%d max=%d rows=%d pad=%d%s",
             c->n_q, c->G, c->hd, c->len, c->kp == KPOS_RAGGED ? "ragged" : "contig",
             c->qp == QPOS_ALL      ? "all"
             : c->qp == QPOS_CAUSAL ? "causal"
                                    : "random",
             c->stats, c->group_max, c->n_rows, c->pad, c->bias ? " kbias" : "");
    kt_rng r = {5000u + (uint64_t)ci};
    int len = c->len, hd = c->hd, G = c->G, n_q = c->n_q;
    size_t lenz = (size_t)(len > 0 ? len : 1);
    int qs = G * hd + c->pad, os = G * hd + c->pad;
    float *q = kt_alloc_fill((size_t)n_q * qs, 0), *k = kt_alloc_fill(lenz * hd, 0);
    float *v = kt_alloc_fill(lenz * hd, 0), *kbias = kt_alloc_fill(lenz, 0);
    kt_fill(&r, q, (size_t)n_q * qs, -c->qscale, c->qscale);
    kt_fill(&r, k, lenz * hd, -1.0f, 1.0f);
    kt_fill(&r, v, lenz * hd, -1.0f, 1.0f);
    kt_fill(&r, kbias, lenz, 0.0f, 2.0f);
    int32_t *kpos = kt_xmalloc(lenz * sizeof(int32_t)), *qpos = kt_xmalloc(sizeof(int32_t) * n_q);
    int32_t p = 0, pmin = 0, pmax = 0;
    for (int j = 0; j < len; j++) { /* ragged: gaps of 1..5 (evicted entries) */
        p += c->kp == KPOS_RAGGED ? 1 + kt_int(&r, 5) : (j > 0);
        kpos[j] = p;
    }
    if (len > 0)
        pmin = kpos[0], pmax = kpos[len - 1];
    if (c->kp == KPOS_RAGGED) /* not sorted either: swap some pairs */
        for (int s = 0; s < len / 3; s++) {
            int a = kt_int(&r, len), b = kt_int(&r, len);
            int32_t t = kpos[a];
            kpos[a] = kpos[b];
            kpos[b] = t;
        }
    for (int i = 0; i < n_q; i++) {
        if (c->qp == QPOS_ALL)
            qpos[i] = pmax + 1;
        else if (c->qp == QPOS_CAUSAL)
            qpos[i] = pmax - (n_q - 1 - i) * (pmax - pmin + 1) / (n_q + 1);
        else
            qpos[i] = pmin - 1 + kt_int(&r, pmax - pmin + 3);
    }
    if (c->qp == QPOS_RANDOM && n_q > 1)
        qpos[0] = pmin - 1; /* this query sees nothing */
    size_t n_out = (size_t)n_q * os;
    float *cs0 = kt_alloc_fill(lenz, 0), *csq0 = kt_alloc_fill(lenz, 0);
    int32_t *cnt0 = kt_xmalloc(lenz * sizeof(int32_t));
    kt_fill(&r, cs0, lenz, 0.0f, 2.0f); /* statistics accumulate: start from non-zero */
    kt_fill(&r, csq0, lenz, 0.0f, 1.0f);
    for (size_t j = 0; j < lenz; j++)
        cnt0[j] = kt_int(&r, 10);
    kern_attn_args a = {.n_q = n_q,
                        .G = G,
                        .hd = hd,
                        .len = len,
                        .q = q,
                        .q_stride = qs,
                        .q_pos = qpos,
                        .k = k,
                        .v = v,
                        .kpos = kpos,
                        .kbias = c->bias ? kbias : NULL,
                        .o_stride = os,
                        .scale = 1.0f / sqrtf((float)hd)};
    attn_bufs ref, got[KT_N_BACKENDS];
    bufs_init(&ref, c, n_out, cs0, csq0, cnt0);
    int bad = run_attn(kern_ops_ref(), &a, c, &ref) != EM_OK;
    for (int t = 0; t < KT_N_BACKENDS; t++) {
        bufs_init(&got[t], c, n_out, cs0, csq0, cnt0);
        bad |= run_attn(kt_cpu[t], &a, c, &got[t]) != EM_OK;
        if (t > 0) {
            bad |= kt_check_same("out", t, got[t].out, got[0].out, n_out * sizeof(float));
            bad |= kt_check_same("col_sum", t, got[t].col_sum, got[0].col_sum, lenz * 4);
            bad |= kt_check_same("col_sqsum", t, got[t].col_sqsum, got[0].col_sqsum, lenz * 4);
            bad |= kt_check_same("rows", t, got[t].rows, got[0].rows, lenz * 16 * 4);
        }
    }
    /* query invariance: each query alone gives the bits it gets in the batch (the statistics
     * accumulate in query order either way) */
    if (n_q > 1) {
        attn_bufs one;
        bufs_init(&one, c, n_out, cs0, csq0, cnt0);
        for (int i = 0; i < n_q; i++) {
            kern_attn_args a1 = a;
            kern_attn_stats st1 = {one.col_sum, one.col_sqsum, one.col_cnt, NULL, 0, c->group_max};
            a1.n_q = 1;
            a1.q = q + (size_t)i * qs;
            a1.q_pos = qpos + i;
            a1.out = one.out + (size_t)i * os;
            a1.stats = c->stats ? &st1 : NULL;
            bad |= kern_attn(kt_cpu[1], &a1) != EM_OK;
        }
        int diff = memcmp(one.out, got[0].out, n_out * sizeof(float)) != 0;
        diff |= memcmp(one.col_sum, got[0].col_sum, lenz * 4) != 0;
        diff |= memcmp(one.col_sqsum, got[0].col_sqsum, lenz * 4) != 0;
        diff |= memcmp(one.col_cnt, got[0].col_cnt, lenz * 4) != 0;
        if (diff)
            fprintf(stderr, "    QUERY INVARIANCE: one query per call differs from the batch\n");
        bad |= diff;
        bufs_free(&one);
    }
    bad |= cmp_attn(&ref, &got[0], c, n_out);
    kt_report(name, bad);
    for (int t = 0; t < KT_N_BACKENDS; t++)
        bufs_free(&got[t]);
    bufs_free(&ref);
    free(cs0);
    free(csq0);
    free(cnt0);
    free(q);
    free(k);
    free(v);
    free(kbias);
    free(kpos);
    free(qpos);
}

/* ---------------- kern_cpu_parallel_for ---------------- */

typedef struct pf_user {
    int *hits, *tids;
    int n_threads;
    const kern_ops *ops;
    const kern_weight *w;
    const float *x;
    float *y;   /* [n][w->rows] */
    int failed; /* an op returned an error */
} pf_user;

static void pf_body(void *user, int i, int tid)
{
    pf_user *u = user;
    __atomic_fetch_add(&u->hits[i], 1, __ATOMIC_RELAXED);
    u->tids[i] = tid;
    /* a nested op: must run inline on this thread and give the same bits */
    if (kern_matmul(u->ops, u->w, u->x + (size_t)i * u->w->cols, u->w->cols, 1,
                    u->y + (size_t)i * u->w->rows, u->w->rows) != EM_OK)
        __atomic_store_n(&u->failed, 1, __ATOMIC_RELAXED);
}

static void count_body(void *user, int i, int tid)
{
    __atomic_fetch_add(&((int *)user)[i], 1, __ATOMIC_RELAXED);
}

static int test_parallel_for(void)
{
    enum { N = 37, ROWS = 256, COLS = 300 };
    kt_rng r = {6000u};
    float *wd = kt_alloc_fill((size_t)ROWS * COLS, 0), *x = kt_alloc_fill((size_t)N * COLS, 0);
    kt_fill(&r, wd, (size_t)ROWS * COLS, -1, 1);
    kt_fill(&r, x, (size_t)N * COLS, -1, 1);
    kern_weight w = {wd, KERN_F32, ROWS, COLS};
    float *y0 = kt_alloc_fill((size_t)N * ROWS, 0), *y = kt_alloc_fill((size_t)N * ROWS, 0);
    int cases = 0, bad0 = kern_matmul(kt_cpu[0], &w, x, COLS, N, y0, ROWS) != EM_OK;
    for (int t = 0; t < KT_N_BACKENDS; t++) {
        int hits[N] = {0}, tids[N];
        pf_user u = {hits, tids, kt_threads[t], kt_cpu[t], &w, x, y, 0};
        memset(y, 0, sizeof(float) * N * ROWS);
        kern_cpu_parallel_for(kt_cpu[t], N, pf_body, &u);
        int bad = bad0 || kern_cpu_n_threads(kt_cpu[t]) != kt_threads[t];
        for (int i = 0; i < N; i++) {
            if (hits[i] != 1 || tids[i] < 0 || tids[i] >= kt_threads[t]) {
                fprintf(stderr, "    item %d: hits=%d tid=%d\n", i, hits[i], tids[i]);
                bad = 1;
            }
        }
        bad |= u.failed;
        bad |= kt_check_same("nested matmul", t, y, y0, sizeof(float) * N * ROWS);
        kern_cpu_parallel_for(kt_cpu[t], 0, pf_body, &u); /* n = 0: no call */
        /* many small back-to-back jobs (late workers must skip closed jobs, never run an item
         * twice or lose one) */
        int counts[8];
        for (int rep = 0; rep < 3000 && !bad; rep++) {
            int n = 1 + rep % 8;
            memset(counts, 0, sizeof counts);
            kern_cpu_parallel_for(kt_cpu[t], n, count_body, counts);
            for (int i = 0; i < n; i++)
                if (counts[i] != 1) {
                    fprintf(stderr, "    rep %d: item %d of %d ran %d times\n", rep, i, n,
                            counts[i]);
                    bad = 1;
                }
        }
        char name[64];
        snprintf(name, sizeof name, "parallel_for n=%d threads=%d", N, kt_threads[t]);
        kt_report(name, bad);
        cases++;
    }
    free(wd);
    free(x);
    free(y0);
    free(y);
    return cases;
}

/* The engine's use: attention for several KV heads at once from pool threads (per-thread
 * scratch) must give the bits of a serial loop. */
typedef struct pa_user {
    const kern_ops *ops;
    kern_attn_args *args; /* [H] */
    int failed;           /* an op returned an error */
} pa_user;

static void pa_body(void *user, int i, int tid)
{
    pa_user *u = user;
    if (kern_attn(u->ops, &u->args[i]) != EM_OK)
        __atomic_store_n(&u->failed, 1, __ATOMIC_RELAXED);
}

static int test_parallel_attn(void)
{
    enum { H = 6, NQ = 3, G = 2, HD = 16, LEN = 77 };
    kt_rng r = {6100u};
    size_t nqh = (size_t)NQ * G * HD, nkv = (size_t)LEN * HD;
    float *q = kt_alloc_fill(H * nqh, 0), *k = kt_alloc_fill(H * nkv, 0),
          *v = kt_alloc_fill(H * nkv, 0);
    kt_fill(&r, q, H * nqh, -2, 2), kt_fill(&r, k, H * nkv, -1, 1), kt_fill(&r, v, H * nkv, -1, 1);
    int32_t kpos[LEN], qpos[NQ] = {40, 60, 90};
    for (int j = 0; j < LEN; j++)
        kpos[j] = j + kt_int(&r, 20);
    int bad = 0;
    for (int t = 0; t < KT_N_BACKENDS; t++) {
        float *out[2], *cs[2];
        kern_attn_stats st[2][H];
        kern_attn_args a[2][H];
        for (int m = 0; m < 2; m++) { /* m = 0: serial on the caller, 1: parallel_for */
            out[m] = kt_alloc_fill(H * nqh, 0);
            cs[m] = kt_alloc_fill(H * LEN, 0);
            for (int h = 0; h < H; h++) {
                st[m][h] = (kern_attn_stats){.col_sum = cs[m] + h * LEN};
                a[m][h] = (kern_attn_args){.n_q = NQ,
                                           .G = G,
                                           .hd = HD,
                                           .len = LEN,
                                           .q = q + h * nqh,
                                           .q_stride = G * HD,
                                           .q_pos = qpos,
                                           .k = k + h * nkv,
                                           .v = v + h * nkv,
                                           .kpos = kpos,
                                           .out = out[m] + h * nqh,
                                           .o_stride = G * HD,
                                           .scale = 0.25f,
                                           .stats = &st[m][h]};
            }
        }
        for (int h = 0; h < H; h++)
            bad |= kern_attn(kt_cpu[t], &a[0][h]) != EM_OK;
        pa_user u = {kt_cpu[t], a[1], 0};
        kern_cpu_parallel_for(kt_cpu[t], H, pa_body, &u);
        bad |= u.failed;
        bad |= kt_check_same("parallel attn out", t, out[1], out[0], H * nqh * sizeof(float));
        bad |= kt_check_same("parallel attn col_sum", t, cs[1], cs[0], H * LEN * sizeof(float));
        for (int m = 0; m < 2; m++)
            free(out[m]), free(cs[m]);
    }
    kt_report("parallel_for attention over 6 KV heads == serial (1/2/3 threads)", bad);
    free(q), free(k), free(v);
    return 1;
}

int kt_attn_run_all(void)
{
    int n = (int)(sizeof attn_cases / sizeof attn_cases[0]);
    for (int i = 0; i < n; i++)
        test_attn(i, &attn_cases[i]);
    return n + test_parallel_for() + test_parallel_attn();
}
