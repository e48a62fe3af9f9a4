/* Dispatcher: kern_ops vtable (host pointers) -> per-op CUDA functions (device pointers).
 * Only copies and switches; the math lives in the op files. */
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "kernels/cuda/attn.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/swiglu.h"
#include "kernels/quant.h"

typedef struct wcache_entry {
    const void *host;
    size_t bytes;
    void *dev;
} wcache_entry;

typedef struct cuda_backend {
    kern_ops ops; /* first member: ops->ctx points back here */
    kern_cuda_ctx *c;
    em_status status; /* EM_OK, or EM_EDEVICE for ever once an op hit a device error */
    wcache_entry *w;
    int n_w, cap_w;
} cuda_backend;

static em_status weight_dev(cuda_backend *b, const void *host, size_t bytes, const void **out)
{
    for (int i = 0; i < b->n_w; i++) { /* a model has a few hundred tensors: linear is fine */
        if (b->w[i].host == host && b->w[i].bytes == bytes) {
            *out = b->w[i].dev;
            return EM_OK;
        }
    }
    if (b->n_w == b->cap_w) {
        int nc = b->cap_w ? 2 * b->cap_w : 64;
        wcache_entry *nw = (wcache_entry *)realloc(b->w, sizeof *nw * nc);
        if (!nw)
            return EM_ENOMEM;
        b->w = nw;
        b->cap_w = nc;
    }
    void *d;
    KERN_CUDA_TRY(kern_cuda_alloc(bytes, &d));
    em_status st = kern_cuda_h2d(b->c, d, host, bytes);
    if (st != EM_OK) {
        kern_cuda_free(d);
        return st;
    }
    b->w[b->n_w++] = wcache_entry{host, bytes, d};
    *out = d;
    return EM_OK;
}

/* Per-call device buffers carved from scratch slot OPS (256-byte aligned). */
typedef struct carve {
    char *base;
    size_t off, cap; /* cap: the bytes the op asked the scratch for */
} carve;

static void *take(carve *cv, size_t bytes)
{
    void *p = cv->base + cv->off;
    cv->off += (bytes + 255) / 256 * 256;
    EM_ASSERT(cv->off <= cv->cap); /* each op sizes `need` as the sum of its takes */
    return p;
}

static size_t rnd(size_t b)
{
    return (b + 255) / 256 * 256;
}

static em_status h2d_rows(kern_cuda_ctx *c, void *dst, const float *src, int n, int width,
                          int stride)
{
    if (n == 0)
        return EM_OK;
    KERN_CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(float) * stride, src, sizeof(float) * stride,
                                      sizeof(float) * width, n, cudaMemcpyHostToDevice,
                                      (cudaStream_t)c->stream));
    return EM_OK;
}

static em_status d2h_rows(kern_cuda_ctx *c, float *dst, const void *src, int n, int width,
                          int stride)
{
    if (n == 0)
        return EM_OK;
    KERN_CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(float) * stride, src, sizeof(float) * stride,
                                      sizeof(float) * width, n, cudaMemcpyDeviceToHost,
                                      (cudaStream_t)c->stream));
    KERN_CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)c->stream));
    return EM_OK;
}

static em_status do_matmul(cuda_backend *b, const kern_weight *w, const float *x, int xs, int n,
                           float *y, int ys)
{
    KERN_CUDA_TRY(kern_check_matmul(w, x, xs, n, y, ys));
    if (n == 0 || w->rows == 0)
        return EM_OK;
    if (n == 1)
        xs = w->cols, ys = w->rows; /* unused by the contract: keep the 2-D copies legal */
    if (w->cols == 0) {             /* empty sums */
        for (int t = 0; t < n; t++)
            memset(y + (size_t)t * ys, 0, sizeof(float) * w->rows);
        return EM_OK;
    }
    size_t wb = (size_t)w->rows * kern_row_bytes(w->dtype, w->cols);
    kern_weight dw = *w;
    KERN_CUDA_TRY(weight_dev(b, w->data, wb, &dw.data));
    size_t need = rnd(sizeof(float) * (size_t)n * xs) + rnd(sizeof(float) * (size_t)n * ys);
    carve cv = {NULL, 0, need};
    KERN_CUDA_TRY(kern_cuda__scratch(b->c, KERN_CUDA_SCR_OPS, need, (void **)&cv.base));
    float *dx = (float *)take(&cv, sizeof(float) * (size_t)n * xs);
    float *dy = (float *)take(&cv, sizeof(float) * (size_t)n * ys);
    KERN_CUDA_TRY(h2d_rows(b->c, dx, x, n, w->cols, xs));
    KERN_CUDA_TRY(kern_cuda_matmul(b->c, &dw, dx, xs, n, dy, ys));
    return d2h_rows(b->c, y, dy, n, w->rows, ys);
}

static em_status do_rmsnorm(cuda_backend *b, const float *x, const float *g, int n, int dim,
                            float eps, float *y)
{
    KERN_CUDA_TRY(kern_check_rows(x, g, n, dim, y));
    if (n == 0 || dim == 0)
        return EM_OK;
    const void *dg;
    KERN_CUDA_TRY(weight_dev(b, g, sizeof(float) * dim, &dg));
    float *dx;
    KERN_CUDA_TRY(
        kern_cuda__scratch(b->c, KERN_CUDA_SCR_OPS, sizeof(float) * n * dim, (void **)&dx));
    KERN_CUDA_TRY(h2d_rows(b->c, dx, x, n, dim, dim));
    KERN_CUDA_TRY(kern_cuda_rmsnorm(b->c, dx, (const float *)dg, n, dim, eps, dx));
    return d2h_rows(b->c, y, dx, n, dim, dim);
}

static em_status do_rope(cuda_backend *b, float *x, int n_tok, int n_heads, int hd, int stride,
                         const int32_t *pos, float base, int rope_dim)
{
    KERN_CUDA_TRY(kern_check_rope(x, n_tok, n_heads, hd, stride, pos, rope_dim));
    if (n_tok == 0 || n_heads == 0 || rope_dim == 0)
        return EM_OK;
    if (n_tok == 1)
        stride = n_heads * hd; /* unused by the contract: keep the copies legal */
    size_t need = rnd(sizeof(float) * (size_t)n_tok * stride) + rnd(sizeof(int32_t) * n_tok);
    carve cv = {NULL, 0, need};
    KERN_CUDA_TRY(kern_cuda__scratch(b->c, KERN_CUDA_SCR_OPS, need, (void **)&cv.base));
    float *dx = (float *)take(&cv, sizeof(float) * (size_t)n_tok * stride);
    int32_t *dp = (int32_t *)take(&cv, sizeof(int32_t) * n_tok);
    KERN_CUDA_TRY(h2d_rows(b->c, dx, x, n_tok, n_heads * hd, stride));
    KERN_CUDA_CHECK(cudaMemcpyAsync(dp, pos, sizeof(int32_t) * n_tok, cudaMemcpyHostToDevice,
                                    (cudaStream_t)b->c->stream));
    KERN_CUDA_TRY(kern_cuda_rope(b->c, dx, n_tok, n_heads, hd, stride, dp, base, rope_dim));
    return d2h_rows(b->c, x, dx, n_tok, n_heads * hd, stride);
}

static em_status do_swiglu(cuda_backend *b, const float *gate, const float *up, int n, int dim,
                           float *out)
{
    KERN_CUDA_TRY(kern_check_rows(gate, up, n, dim, out));
    size_t cnt = (size_t)n * dim;
    if (cnt == 0)
        return EM_OK;
    float *d;
    KERN_CUDA_TRY(
        kern_cuda__scratch(b->c, KERN_CUDA_SCR_OPS, 2 * rnd(sizeof(float) * cnt), (void **)&d));
    float *du = d + rnd(sizeof(float) * cnt) / sizeof(float);
    KERN_CUDA_TRY(h2d_rows(b->c, d, gate, n, dim, dim));
    KERN_CUDA_TRY(h2d_rows(b->c, du, up, n, dim, dim));
    KERN_CUDA_TRY(kern_cuda_swiglu(b->c, d, du, n, dim, d));
    return d2h_rows(b->c, out, d, n, dim, dim);
}

static em_status do_attn(cuda_backend *b, const kern_attn_args *args)
{
    KERN_CUDA_TRY(kern_check_attn(args));
    if (args->n_q == 0)
        return EM_OK;
    kern_attn_args one = *args;
    if (one.n_q == 1)
        one.q_stride = one.o_stride = one.G * one.hd; /* unused: legal copies */
    const kern_attn_args *a = &one;
    kern_attn_stats *st = a->stats;
    int nr = st && st->row_ptrs ? st->n_rows : 0, len = a->len, hd = a->hd;
    size_t qn = (size_t)(a->n_q - 1) * a->q_stride + (size_t)a->G * hd;
    size_t on = (size_t)(a->n_q - 1) * a->o_stride + (size_t)a->G * hd;
    size_t need = rnd(4 * qn) + rnd(4 * on) + rnd(4 * (size_t)a->n_q) +
                  2 * rnd(4 * (size_t)len * hd) + 5 * rnd(4 * (size_t)len) +
                  rnd(4 * (size_t)nr * len);
    carve cv = {NULL, 0, need};
    kern_cuda_ctx *c = b->c;
    cudaStream_t s = (cudaStream_t)c->stream;
    KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_OPS, need, (void **)&cv.base));
    float *dq = (float *)take(&cv, 4 * qn), *dout = (float *)take(&cv, 4 * on);
    int32_t *dqp = (int32_t *)take(&cv, 4 * (size_t)a->n_q);
    float *dk = (float *)take(&cv, 4 * (size_t)len * hd),
          *dv = (float *)take(&cv, 4 * (size_t)len * hd);
    int32_t *dkp = (int32_t *)take(&cv, 4 * (size_t)len);
    float *dbias = (float *)take(&cv, 4 * (size_t)len);
    float *dsum = (float *)take(&cv, 4 * (size_t)len), *dsq = (float *)take(&cv, 4 * (size_t)len);
    int32_t *dcnt = (int32_t *)take(&cv, 4 * (size_t)len);
    float *drows = (float *)take(&cv, 4 * (size_t)nr * len);
    KERN_CUDA_CHECK(cudaMemcpyAsync(dq, a->q, 4 * qn, cudaMemcpyHostToDevice, s));
    KERN_CUDA_CHECK(cudaMemcpyAsync(dqp, a->q_pos, 4 * (size_t)a->n_q, cudaMemcpyHostToDevice, s));
    if (len > 0) {
        KERN_CUDA_CHECK(cudaMemcpyAsync(dk, a->k, 4 * (size_t)len * hd, cudaMemcpyHostToDevice, s));
        KERN_CUDA_CHECK(cudaMemcpyAsync(dv, a->v, 4 * (size_t)len * hd, cudaMemcpyHostToDevice, s));
        KERN_CUDA_CHECK(cudaMemcpyAsync(dkp, a->kpos, 4 * (size_t)len, cudaMemcpyHostToDevice, s));
        if (a->kbias) {
            KERN_CUDA_CHECK(
                cudaMemcpyAsync(dbias, a->kbias, 4 * (size_t)len, cudaMemcpyHostToDevice, s));
        }
    }
    kern_cuda_kv_head h;
    memset(&h, 0, sizeof h);
    h.k = dk, h.v = dv, h.kpos = dkp, h.len = len;
    h.kbias = a->kbias && len > 0 ? dbias : NULL;
    if (st && len > 0) {
        if (st->col_sum) {
            KERN_CUDA_CHECK(
                cudaMemcpyAsync(dsum, st->col_sum, 4 * (size_t)len, cudaMemcpyHostToDevice, s));
            h.col_sum = dsum;
        }
        if (st->col_sqsum) {
            KERN_CUDA_CHECK(
                cudaMemcpyAsync(dsq, st->col_sqsum, 4 * (size_t)len, cudaMemcpyHostToDevice, s));
            h.col_sqsum = dsq;
        }
        if (st->col_cnt) {
            KERN_CUDA_CHECK(
                cudaMemcpyAsync(dcnt, st->col_cnt, 4 * (size_t)len, cudaMemcpyHostToDevice, s));
            h.col_cnt = dcnt;
        }
        if (nr > 0)
            h.rows = drows, h.row_stride = len, h.row_ring = nr, h.row_slot0 = 0;
    }
    kern_cuda_attn_args ca;
    memset(&ca, 0, sizeof ca);
    ca.n_q = a->n_q, ca.n_head_kv = 1, ca.G = a->G, ca.hd = hd;
    ca.q = dq, ca.q_stride = a->q_stride, ca.q_pos = dqp, ca.out = dout, ca.o_stride = a->o_stride;
    ca.scale = a->scale, ca.fmt = KERN_KV_F32, ca.heads = &h, ca.n_rows = len > 0 ? nr : 0;
    ca.group_max = st ? st->group_max : 0;
    KERN_CUDA_TRY(kern_cuda_attn(c, &ca));
    KERN_CUDA_TRY(d2h_rows(c, a->out, dout, a->n_q, a->G * hd, a->o_stride));
    if (!st || len == 0)
        return EM_OK;
    if (h.col_sum)
        KERN_CUDA_TRY(kern_cuda_d2h(c, st->col_sum, dsum, 4 * (size_t)len));
    if (h.col_sqsum)
        KERN_CUDA_TRY(kern_cuda_d2h(c, st->col_sqsum, dsq, 4 * (size_t)len));
    if (h.col_cnt)
        KERN_CUDA_TRY(kern_cuda_d2h(c, st->col_cnt, dcnt, 4 * (size_t)len));
    for (int r = 0; r < nr; r++) {
        KERN_CUDA_TRY(kern_cuda_d2h(c, st->row_ptrs[r], drows + (size_t)r * len, 4 * (size_t)len));
    }
    return EM_OK;
}

/* ---- vtable entries: a device error is sticky, then dispatch ---- */

/* The status of one op; a device error is kept, and every later op returns it unrun (CUDA
 * errors poison the context). Other errors (EM_EINVAL, EM_ENOMEM, EM_EUNSUPPORTED) belong to
 * the call that hit them alone. */
static em_status keep(cuda_backend *b, em_status st)
{
    if (st == EM_EDEVICE && b->status == EM_OK)
        b->status = st;
    return st;
}

static em_status op_matmul(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                           int ys)
{
    cuda_backend *b = (cuda_backend *)ctx;
    if (b->status != EM_OK)
        return b->status;
    return keep(b, do_matmul(b, w, x, xs, n, y, ys));
}

static em_status op_rmsnorm(void *ctx, const float *x, const float *g, int n, int dim, float eps,
                            float *y)
{
    cuda_backend *b = (cuda_backend *)ctx;
    if (b->status != EM_OK)
        return b->status;
    return keep(b, do_rmsnorm(b, x, g, n, dim, eps, y));
}

static em_status op_rope(void *ctx, float *x, int n_tok, int n_heads, int hd, int stride,
                         const int32_t *pos, float base, int rope_dim)
{
    cuda_backend *b = (cuda_backend *)ctx;
    if (b->status != EM_OK)
        return b->status;
    return keep(b, do_rope(b, x, n_tok, n_heads, hd, stride, pos, base, rope_dim));
}

static em_status op_swiglu(void *ctx, const float *gate, const float *up, int n, int dim,
                           float *out)
{
    cuda_backend *b = (cuda_backend *)ctx;
    if (b->status != EM_OK)
        return b->status;
    return keep(b, do_swiglu(b, gate, up, n, dim, out));
}

static em_status op_attn(void *ctx, const kern_attn_args *a)
{
    cuda_backend *b = (cuda_backend *)ctx;
    if (b->status != EM_OK)
        return b->status;
    return keep(b, do_attn(b, a));
}

extern "C" kern_ops *kern_ops_cuda_create(int device)
{
    cuda_backend *b = (cuda_backend *)calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (kern_cuda_ctx_create(device, &b->c) != EM_OK) {
        free(b);
        return NULL;
    }
    b->ops.name = "cuda";
    b->ops.matmul = op_matmul;
    b->ops.rmsnorm = op_rmsnorm;
    b->ops.rope = op_rope;
    b->ops.swiglu = op_swiglu;
    b->ops.attn = op_attn;
    b->ops.ctx = b;
    return &b->ops;
}

extern "C" void kern_ops_cuda_free(kern_ops *ops)
{
    if (!ops)
        return;
    cuda_backend *b = (cuda_backend *)ops->ctx;
    for (int i = 0; i < b->n_w; i++)
        kern_cuda_free(b->w[i].dev);
    free(b->w);
    kern_cuda_ctx_destroy(b->c);
    free(b);
}

extern "C" em_status kern_ops_cuda_status(const kern_ops *ops)
{
    return ((const cuda_backend *)ops->ctx)->status;
}

extern "C" kern_cuda_ctx *kern_ops_cuda_ctx(const kern_ops *ops)
{
    return ((const cuda_backend *)ops->ctx)->c;
}
