/* Fast rmsnorm, RoPE (frequencies cached per (base, rope_dim) in the backend context) and
 * SwiGLU. Row/token/element-wise ops: a split over rows or elements never changes the
 * arithmetic of one element, so results are thread-count independent. Small calls run on the
 * caller thread alone. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/simd.h"

#define ELEM_PAR_MIN (1 << 15) /* elements below which the caller does the op alone */

static void split(int n, int tid, int nt, int *a, int *b)
{
    *a = (int)((long)n * tid / nt);
    *b = (int)((long)n * (tid + 1) / nt);
}

/* ---- rmsnorm ---- */

typedef struct rms_job {
    const float *x, *g;
    float *y;
    int n, dim;
    float eps;
    int n_items;
} rms_job;

static void rms_rows(const rms_job *j, int ta, int tb)
{
    int dim = j->dim, d8 = dim & ~7;
    for (int t = ta; t < tb; t++) {
        const float *xr = j->x + (size_t)t * dim;
        float *yr = j->y + (size_t)t * dim;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < d8; i += 8) {
            __m256 v = _mm256_loadu_ps(xr + i);
            acc = _mm256_fmadd_ps(v, v, acc);
        }
        float ss = kern_cpu__hsum(acc);
        for (int i = d8; i < dim; i++)
            ss = fmaf(xr[i], xr[i], ss);
        float inv = 1.0f / sqrtf(ss / (float)dim + j->eps);
        __m256 vi = _mm256_set1_ps(inv);
        for (int i = 0; i < d8; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vi),
                                                   _mm256_loadu_ps(j->g + i)));
        for (int i = d8; i < dim; i++)
            yr[i] = xr[i] * inv * j->g[i];
    }
}

static void rms_item(void *user, int i, int tid)
{
    const rms_job *j = user;
    int a, b;
    split(j->n, i, j->n_items, &a, &b);
    rms_rows(j, a, b);
}

em_status kern_cpu__rmsnorm(void *ctx, const float *x, const float *g, int n, int dim, float eps,
                            float *y)
{
    kern_cpu__ctx *c = ctx;
    em_status st = kern_check_rows(x, g, n, dim, y);
    if (st != EM_OK || n == 0 || dim == 0)
        return st;
    rms_job j = {x, g, y, n, dim, eps, kern_cpu__n_items(c->n_threads, n)};
    if (c->n_threads == 1 || n < 2 || (long)n * dim < ELEM_PAR_MIN)
        rms_rows(&j, 0, n);
    else
        kern_cpu__pool_for(c->pool, j.n_items, rms_item, &j);
    return EM_OK;
}

/* ---- RoPE ---- */

#define ROPE_CHUNK 64 /* pairs whose cos/sin one stack table holds */

/* Frequency i: base^(-2i/rope_dim), the reference's expression. */
static float rope_freq_at(float base, int rope_dim, int i)
{
    return powf(base, -2.0f * (float)i / (float)rope_dim);
}

/* The cached table of rope_freq_at over i < rope_dim / 2 for (base, rope_dim), made on first
 * use; NULL when the cache is full or the table cannot be allocated (the caller then computes
 * each frequency where it needs it: the same values). */
static const float *rope_freq(kern_cpu__ctx *c, float base, int rope_dim)
{
    for (int s = 0; s < KERN_CPU__ROPE_SLOTS; s++) {
        kern_cpu__rope_slot *sl = &c->rope[s];
        if (!__atomic_load_n(&sl->ready, __ATOMIC_ACQUIRE))
            break;
        if (sl->base == base && sl->rope_dim == rope_dim)
            return sl->freq;
    }
    const float *res = NULL;
    pthread_mutex_lock(&c->rope_mu);
    for (int s = 0; s < KERN_CPU__ROPE_SLOTS; s++) {
        kern_cpu__rope_slot *sl = &c->rope[s];
        if (sl->ready) {
            if (sl->base == base && sl->rope_dim == rope_dim) {
                res = sl->freq;
                break;
            }
            continue;
        }
        float *f = malloc(sizeof(float) * (size_t)(rope_dim / 2 > 0 ? rope_dim / 2 : 1));
        if (!f)
            break;
        for (int i = 0; i < rope_dim / 2; i++)
            f[i] = rope_freq_at(base, rope_dim, i);
        sl->base = base;
        sl->rope_dim = rope_dim;
        sl->freq = f;
        __atomic_store_n(&sl->ready, 1, __ATOMIC_RELEASE);
        res = f;
        break;
    }
    pthread_mutex_unlock(&c->rope_mu);
    return res;
}

typedef struct rope_job {
    float *x;
    int n_tok, n_heads, hd, stride, rope_dim;
    const int32_t *pos;
    const float *freq; /* NULL: rope_freq_at on the fly */
    float base;
    int n_items;
} rope_job;

/* Pairs [p0, p1) (p1 - p0 <= ROPE_CHUNK, p0 a multiple of ROPE_CHUNK) of every head of token
 * t. Elements below n8 = (rope_dim & ~7) go through the vector code, the rest through the
 * scalar twin, whatever the chunking. */
static void rope_pairs(const rope_job *j, int t, int p0, int p1)
{
    float cc[2 * ROPE_CHUNK], ss[2 * ROPE_CHUNK];
    for (int i = p0; i < p1; i++) {
        float fr = j->freq ? j->freq[i] : rope_freq_at(j->base, j->rope_dim, i);
        float th = (float)j->pos[t] * fr, c = cosf(th), s = sinf(th);
        int o = 2 * (i - p0);
        cc[o] = cc[o + 1] = c;
        ss[o] = -s;
        ss[o + 1] = s;
    }
    int k0 = 2 * p0, k1 = 2 * p1, n8 = j->rope_dim & ~7, kv = k1 < n8 ? k1 : n8;
    for (int h = 0; h < j->n_heads; h++) {
        float *v = j->x + (size_t)t * j->stride + (size_t)h * j->hd;
        int k = k0;
        for (; k < kv; k += 8) {
            __m256 a = _mm256_loadu_ps(v + k);
            __m256 sw = _mm256_permute_ps(a, 0xB1); /* (b0 a0 b1 a1 ...) */
            __m256 r = _mm256_fmadd_ps(a, _mm256_loadu_ps(cc + k - k0),
                                       _mm256_mul_ps(sw, _mm256_loadu_ps(ss + k - k0)));
            _mm256_storeu_ps(v + k, r);
        }
        for (; k < k1; k += 2) {
            float a = v[k], b = v[k + 1];
            v[k] = fmaf(a, cc[k - k0], b * ss[k - k0]);
            v[k + 1] = fmaf(b, cc[k - k0 + 1], a * ss[k - k0 + 1]);
        }
    }
}

static void rope_tokens(const rope_job *j, int ta, int tb)
{
    int np = j->rope_dim / 2;
    for (int t = ta; t < tb; t++)
        for (int p0 = 0; p0 < np; p0 += ROPE_CHUNK)
            rope_pairs(j, t, p0, p0 + ROPE_CHUNK < np ? p0 + ROPE_CHUNK : np);
}

static void rope_item(void *user, int i, int tid)
{
    const rope_job *j = user;
    int a, b;
    split(j->n_tok, i, j->n_items, &a, &b);
    rope_tokens(j, a, b);
}

em_status kern_cpu__rope(void *ctx, float *x, int n_tok, int n_heads, int hd, int stride,
                         const int32_t *pos, float base, int rope_dim)
{
    kern_cpu__ctx *c = ctx;
    em_status st = kern_check_rope(x, n_tok, n_heads, hd, stride, pos, rope_dim);
    if (st != EM_OK || n_tok == 0 || n_heads == 0 || rope_dim == 0)
        return st;
    rope_job j = {x,       n_tok,
                  n_heads, hd,
                  stride,  rope_dim,
                  pos,     rope_freq(c, base, rope_dim),
                  base,    kern_cpu__n_items(c->n_threads, n_tok)};
    if (c->n_threads == 1 || n_tok < 2 || (long)n_tok * n_heads * rope_dim < ELEM_PAR_MIN)
        rope_tokens(&j, 0, n_tok);
    else
        kern_cpu__pool_for(c->pool, j.n_items, rope_item, &j);
    return EM_OK;
}

/* ---- SwiGLU ---- */

typedef struct swiglu_job {
    const float *gate, *up;
    float *out;
    size_t n;
    int n_items;
} swiglu_job;

static void swiglu_range(const swiglu_job *j, size_t a, size_t b)
{
    size_t i = a;
    __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= b; i += 8) {
        __m256 g = _mm256_loadu_ps(j->gate + i);
        __m256 e = kern_cpu__exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(j->out + i, _mm256_mul_ps(s, _mm256_loadu_ps(j->up + i)));
    }
    if (i < b) { /* tail through the same vector code, so every element sees one formula */
        __m256i m = kern_cpu__mask((int)(b - i));
        __m256 g = _mm256_maskload_ps(j->gate + i, m);
        __m256 e = kern_cpu__exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_maskstore_ps(j->out + i, m, _mm256_mul_ps(s, _mm256_maskload_ps(j->up + i, m)));
    }
}

static void swiglu_item(void *user, int i, int tid)
{
    const swiglu_job *j = user;
    size_t blocks = (j->n + 7) / 8, ni = (size_t)j->n_items;
    size_t a = blocks * (size_t)i / ni * 8, b = blocks * (size_t)(i + 1) / ni * 8;
    if (b > j->n)
        b = j->n;
    if (a < b)
        swiglu_range(j, a, b);
}

em_status kern_cpu__swiglu(void *ctx, const float *gate, const float *up, int n, int dim,
                           float *out)
{
    kern_cpu__ctx *c = ctx;
    em_status st = kern_check_rows(gate, up, n, dim, out);
    if (st != EM_OK)
        return st;
    swiglu_job j = {gate, up, out, (size_t)n * (size_t)dim, 0};
    j.n_items = kern_cpu__n_items(c->n_threads, 1 << 20);
    if (c->n_threads == 1 || j.n < 2 * ELEM_PAR_MIN)
        swiglu_range(&j, 0, j.n);
    else
        kern_cpu__pool_for(c->pool, j.n_items, swiglu_item, &j);
    return EM_OK;
}
