/* EMS nearest-centre search (methods.md 1.14.4): for each dropped candidate, the centre of
 * highest similarity sim = cos K (x cos V), ties to the lower slot, with the same result as the
 * scalar reference (double dot products rounded to f32) - in one screening pass.
 *
 * Screening: unit-normalised rows in f32 and a register-blocked product [4 rows x 16 centres]
 * give every cos K to within EPS of the reference value. Under the threshold split (the
 * default) a row whose |cos K| are all below tau - EPS_Q cannot reach tau (|cos V| <= 1) and
 * goes to the zero class; otherwise cos V is computed only for the centres whose |cos K| can
 * still reach tau (on SmolLM2 about 9 % of the pairs). When every row's best is wanted (merge
 * strategy, placeholder split) cos V is a second dense product. Then only the centres within
 * 2 EPS_Q of a row's screened maximum can be the reference's argmax or tie with it; a single
 * one clearly on one side of tau is taken as is, several (or a borderline one) are evaluated
 * with the reference arithmetic.
 *
 * Error bound (u = 2^-24, n = hd): the f32 sum of squares errs by <= n u, so 1/|x| by
 * <= (n/2 + 2) u, a factor common to the row; each component adds <= u; an f32 dot product
 * errs by <= gamma_n sum |x_i y_i| <= n u for unit rows (any summation order, fused or not);
 * the reference rounds its double cosine to f32 (<= u). So a screened cosine is within
 * (2n + 7) u of the reference's and a product of two within (4n + 18) u; EPS_Q = 8 (n + 8) u
 * leaves a factor of about two. Rows with tiny or huge entries (f32 sum of squares outside
 * [2^-100, 2^100]) are normalised in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/ems_plan.h"

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

enum { ROWS = 4, CBLK = 16 }; /* micro-tile: 4 dropped rows x 16 centres (8 accumulators) */

/* EPS_Q of the error bound above */
static double eps_q(int hd)
{
    return 8.0 * (hd + 8) * 0x1p-24;
}

/* Squared norm in the reference's order (one serial double sum): used by exact cosines. */
static double sq_exact(const float *a, int hd)
{
    double s = 0.0;
    for (int d = 0; d < hd; d++)
        s += (double)a[d] * a[d];
    return s;
}

/* dst[d] = src[d] * (1 / |src|) in f32 (zeros for a zero row). The norm is an f32 sum over 8
 * lanes (relative error <= (n/2 + 2) u on 1/|src|, a common factor of the row); rows whose
 * f32 sum of squares is not a normal finite number (tiny or huge entries) use double. */
static void unit_row(const float *restrict src, int hd, float *restrict dst)
{
    float acc[8] = {0};
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
        for (int t = 0; t < 8; t++)
            acc[t] += src[d + t] * src[d + t];
    }
    float sq = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; d < hd; d++)
        sq += src[d] * src[d];
    float inv;
    if (sq >= 0x1p-100f && sq <= 0x1p100f) {
        inv = 1.0f / sqrtf(sq);
    } else {
        double dq = 0.0;
        for (d = 0; d < hd; d++)
            dq += (double)src[d] * src[d];
        for (d = 0; d < hd; d++)
            dst[d] = dq > 0.0 ? (float)((double)src[d] / sqrt(dq)) : 0.0f;
        return;
    }
    for (d = 0; d < hd; d++)
        dst[d] = src[d] * inv;
}

static float dot_f(const float *restrict a, const float *restrict b, int hd)
{
    float acc[8] = {0};
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
        for (int t = 0; t < 8; t++)
            acc[t] += a[d + t] * b[d + t];
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; d < hd; d++)
        s += a[d] * b[d];
    return s;
}

/* max |a[i]| over i < kp (kp % 8 == 0). */
static float abs_max(const float *a, int kp)
{
    v8i m = {0}, mask = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff,
                         0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    for (int i = 0; i < kp; i += 8) {
        v8i x;
        memcpy(&x, a + i, sizeof x);
        x &= mask; /* |a| as an int: the order of non-negative floats */
        v8i gt = x > m;
        m = (x & gt) | (m & ~gt);
    }
    int r[8];
    memcpy(r, &m, sizeof r);
    int mx = r[0];
    for (int t = 1; t < 8; t++)
        mx = r[t] > mx ? r[t] : mx;
    float f;
    memcpy(&f, &mx, sizeof f);
    return f;
}

/* Reference cosine with precomputed squared norms (the arithmetic of ems_ref's ref_cos). */
static float cos_exact(const float *a, const float *b, int hd, double aa, double bb)
{
    double ab = 0.0;
    for (int d = 0; d < hd; d++)
        ab += (double)a[d] * b[d];
    return aa > 0.0 && bb > 0.0 ? (float)(ab / sqrt(aa * bb)) : 0.0f;
}

/* out[r][c] = u[r] . ct[:, c] for ROWS rows u[r] (hd each) and kp centres (ct is [hd][kp],
 * kp a multiple of CBLK, 32-byte aligned). */
static void screen_tile(const float *u, int hd, const float *ct, int kp, float *out)
{
    for (int c0 = 0; c0 < kp; c0 += CBLK) {
        v8f a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
        for (int d = 0; d < hd; d++) {
            const v8f *b = (const v8f *)(ct + (size_t)d * kp + c0);
            v8f b0 = b[0], b1 = b[1];
            float x0 = u[d], x1 = u[hd + d], x2 = u[2 * hd + d], x3 = u[3 * hd + d];
            a00 += b0 * x0, a01 += b1 * x0;
            a10 += b0 * x1, a11 += b1 * x1;
            a20 += b0 * x2, a21 += b1 * x2;
            a30 += b0 * x3, a31 += b1 * x3;
        }
        memcpy(out + c0, &a00, sizeof a00), memcpy(out + c0 + 8, &a01, sizeof a01);
        memcpy(out + kp + c0, &a10, sizeof a10), memcpy(out + kp + c0 + 8, &a11, sizeof a11);
        memcpy(out + 2 * kp + c0, &a20, sizeof a20);
        memcpy(out + 2 * kp + c0 + 8, &a21, sizeof a21);
        memcpy(out + 3 * kp + c0, &a30, sizeof a30);
        memcpy(out + 3 * kp + c0 + 8, &a31, sizeof a31);
    }
}

/* q[0..kp) *= v[0..kp) (when v), columns >= k set to -inf; returns max q (kp % 8 == 0). */
static float combine_max(float *q, const float *v, int k, int kp)
{
    for (int i = k; i < kp; i++)
        q[i] = -INFINITY;
    v8f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    v8f m = ninf;
    for (int i = 0; i < kp; i += 8) {
        v8f a, b;
        memcpy(&a, q + i, sizeof a);
        if (v) {
            memcpy(&b, v + i, sizeof b);
            a *= b;
            v8i pad = {i < k,     i + 1 < k, i + 2 < k, i + 3 < k,
                       i + 4 < k, i + 5 < k, i + 6 < k, i + 7 < k};
            a = (v8f)(((v8i)a & -pad) | ((v8i)ninf & (pad - 1)));
            memcpy(q + i, &a, sizeof a);
        }
        v8i gt = a > m;
        m = (v8f)(((v8i)a & gt) | ((v8i)m & ~gt));
    }
    float r[8];
    memcpy(r, &m, sizeof r);
    float mx = r[0];
    for (int t = 1; t < 8; t++)
        mx = r[t] > mx ? r[t] : mx;
    return mx;
}

typedef struct scratch {
    float *ckt, *cvt;  /* [hd][kp] unit centre keys and values, transposed */
    float *uk, *uv;    /* [ROWS][hd] unit keys and values of the rows of a tile */
    float *ck, *cv;    /* [ROWS][kp] screened cos K (then the similarity) and cos V */
    double *ckk, *cvv; /* [k] exact squared norms of the centres' K and V */
    float *cvr;        /* [k][hd] unit centre values, by row (sparse cos V) */
} scratch;

static void scratch_free(scratch *s)
{
    free(s->ckt), free(s->cvt), free(s->uk), free(s->uv), free(s->ck), free(s->cv);
    free(s->ckk), free(s->cvv), free(s->cvr);
}

static em_status scratch_alloc(scratch *s, int hd, int kp)
{
    memset(s, 0, sizeof *s);
    s->ckt = aligned_alloc(32, sizeof(float) * (size_t)hd * kp);
    s->cvt = aligned_alloc(32, sizeof(float) * (size_t)hd * kp);
    s->uk = calloc((size_t)ROWS * hd, sizeof(float));
    s->uv = calloc((size_t)ROWS * hd, sizeof(float));
    s->ck = malloc(sizeof(float) * (size_t)ROWS * kp);
    s->cv = malloc(sizeof(float) * (size_t)ROWS * kp);
    s->ckk = malloc(sizeof(double) * (size_t)kp);
    s->cvv = malloc(sizeof(double) * (size_t)kp);
    s->cvr = malloc(sizeof(float) * (size_t)kp * hd);
    if (!s->ckt || !s->cvt || !s->uk || !s->uv || !s->ck || !s->cv || !s->ckk || !s->cvv ||
        !s->cvr) {
        scratch_free(s);
        return EM_ENOMEM;
    }
    return EM_OK;
}

/* Transposed unit rows of the centres (zero columns beyond k) into t [hd][kp], exact squared
 * norms into sq[0..k). */
static void centres_t(const float *x, const int *cent, int k, int hd, int kp, float *row, float *t,
                      double *sq)
{
    for (int i = 0; i < kp; i++) {
        if (i < k) {
            unit_row(x + (size_t)cent[i] * hd, hd, row);
            sq[i] = sq_exact(x + (size_t)cent[i] * hd, hd);
        }
        for (int d = 0; d < hd; d++)
            t[(size_t)d * kp + i] = i < k ? row[d] : 0.0f;
    }
}

/* Row j from its screened similarities q[0..k) (-inf where skipped; maximum mx): the centres
 * within 2 EPS_Q of mx hold the exact argmax and every centre tied with it. A single such
 * centre clearly on one side of tau (|mx - tau| > EPS_Q) is the answer without exact
 * arithmetic unless exact similarities are wanted (exact_s); otherwise the candidates are
 * evaluated as the reference does. */
static void resolve_row(const ems_config *cfg, const ems_head *h, const int *cent, int k, int j,
                        int all, int exact_s, const float *q, float mx, const scratch *s,
                        float *best_s, int *best_c)
{
    int hd = h->hd, use_v = cfg->ems_sim == EMS_SIM_KV;
    double eq = eps_q(hd), lim = (double)mx - 2.0 * eq;
    best_s[j] = -INFINITY;
    best_c[j] = 0;
    if (!all && !((double)mx >= (double)cfg->ems_tau - eq))
        return; /* no centre reaches tau: the zero class whatever the exact maximum */
    int n_cand = 0, first = -1;
    for (int i = 0; i < k; i++) {
        if ((double)q[i] >= lim)
            n_cand++, first = first < 0 ? i : first;
    }
    int clear = (double)mx - eq >= (double)cfg->ems_tau || (double)mx + eq < (double)cfg->ems_tau;
    if (n_cand == 1 && !exact_s && clear) {
        best_s[j] = q[first]; /* within EPS_Q of the reference, on the same side of tau */
        best_c[j] = first + 1;
        return;
    }
    const float *kj = h->k + (size_t)j * hd, *vj = h->v + (size_t)j * hd;
    double kk = sq_exact(kj, hd), vv = use_v ? sq_exact(vj, hd) : 0.0;
    for (int i = first; i < k; i++) {
        if (!((double)q[i] >= lim))
            continue;
        int c = cent[i];
        float e = cos_exact(kj, h->k + (size_t)c * hd, hd, kk, s->ckk[i]);
        if (use_v)
            e *= cos_exact(vj, h->v + (size_t)c * hd, hd, vv, s->cvv[i]);
        if (e > best_s[j]) {
            best_s[j] = e;
            best_c[j] = i + 1;
        }
    }
}

/* Threshold split, one row: cos V only where |cos K| can still reach tau. q[0..k) gets the
 * screened similarity (-inf where skipped); returns its maximum. */
static float sparse_row(const float *ck, const float *uv, const scratch *s, int k, int hd,
                        double skip, float *q)
{
    float mx = -INFINITY;
    for (int i = 0; i < k; i++) {
        q[i] = -INFINITY;
        if (fabsf(ck[i]) >= skip) {
            q[i] = ck[i] * dot_f(uv, s->cvr + (size_t)i * hd, hd);
            mx = q[i] > mx ? q[i] : mx;
        }
    }
    return mx;
}

em_status ems__nearest_centres(const ems_config *cfg, const ems_head *h, const int *cent, int k,
                               const int *drop, int nd, int all, float *best_s, int *best_c)
{
    if (nd <= 0)
        return EM_OK;
    if (k <= 0) {
        for (int t = 0; t < nd; t++)
            best_s[drop[t]] = -INFINITY, best_c[drop[t]] = 0;
        return EM_OK;
    }
    int hd = h->hd, kp = (k + CBLK - 1) / CBLK * CBLK, use_v = cfg->ems_sim == EMS_SIM_KV;
    scratch s;
    if (scratch_alloc(&s, hd, kp) != EM_OK)
        return EM_ENOMEM;
    centres_t(h->k, cent, k, hd, kp, s.uk, s.ckt, s.ckk);
    if (use_v) {
        centres_t(h->v, cent, k, hd, kp, s.uv, s.cvt, s.cvv);
        for (int i = 0; i < k; i++)
            unit_row(h->v + (size_t)cent[i] * hd, hd, s.cvr + (size_t)i * hd);
    }
    int exact_s = cfg->ems_split == EMS_SPLIT_PLACEHOLDER; /* its split sums the similarities */
    double skip = (double)cfg->ems_tau - eps_q(hd);
    for (int t0 = 0; t0 < nd; t0 += ROWS) {
        int nr = nd - t0 < ROWS ? nd - t0 : ROWS;
        for (int r = 0; r < ROWS; r++) {
            int j = r < nr ? drop[t0 + r] : -1;
            if (j < 0) {
                memset(s.uk + r * hd, 0, sizeof(float) * (size_t)hd);
                memset(s.uv + r * hd, 0, sizeof(float) * (size_t)hd);
                continue;
            }
            unit_row(h->k + (size_t)j * hd, hd, s.uk + r * hd);
        }
        screen_tile(s.uk, hd, s.ckt, kp, s.ck);
        if (use_v && all) { /* every row needs its best: dense cos V */
            for (int r = 0; r < nr; r++)
                unit_row(h->v + (size_t)drop[t0 + r] * hd, hd, s.uv + r * hd);
            screen_tile(s.uv, hd, s.cvt, kp, s.cv);
        }
        for (int r = 0; r < nr; r++) {
            int j = drop[t0 + r];
            float *q = s.ck + (size_t)r * kp, mx;
            if (all || !use_v) {
                mx = combine_max(q, use_v ? s.cv + (size_t)r * kp : NULL, k, kp);
            } else if (!((double)abs_max(q, kp) >= skip)) {
                best_s[j] = -INFINITY, best_c[j] = 0; /* no |cos K| can reach tau */
                continue;
            } else {
                unit_row(h->v + (size_t)j * hd, hd, s.uv);
                mx = sparse_row(q, s.uv, &s, k, hd, skip, s.cv);
                q = s.cv;
            }
            resolve_row(cfg, h, cent, k, j, all, exact_s, q, mx, &s, best_s, best_c);
        }
    }
    scratch_free(&s);
    return EM_OK;
}
