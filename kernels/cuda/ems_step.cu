/* EMS compression step on the GPU (contract and formulas in ems_step.h). Kernels over all heads
 * of the layer at once (blockIdx.y or blockIdx.x = head):
 *   score -> norms -> select (ems_select.cu) -> assign (warp per dropped candidate) ->
 *   scatter (warp per candidate, float atomics into one [rows][.] accumulator for all heads;
 *   the zero class has no row: discarding it is free) -> finalize (warp per output entry) ->
 *   copy back. Per-head centre counts kh may differ (head-wise budgets): rows are offset. */
#include <cub/block/block_reduce.cuh>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ems_step.h"
#include "kernels/cuda/ems_step_impl.cuh"

/* grid H, block 256: s_loc, double means, score, and the score sum of the head. */
static __global__ void ems_score_kernel(ems_geo g)
{
    typedef cub::BlockReduce<double, 256> reduce_t;
    __shared__ typename reduce_t::TempStorage tmp;
    __shared__ float s_a;
    int h = blockIdx.x;
    if (!g.part[h])
        return;
    kern_cuda_ems_head hh = g.heads[h];
    int m = ems_m(g, h);
    if (m <= 0)
        return;
    float *s = g.score + (size_t)h * g.max_len;
    double sg = 0.0, sl = 0.0;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        float l = 0.0f;
        for (int r = 0; r < g.w_loc; r++)
            l += hh.loc[(size_t)r * hh.loc_stride + j];
        s[j] = l;
        sl += (double)l;
        sg += (double)hh.s_glo[j];
    }
    double tsl = reduce_t(tmp).Sum(sl);
    __syncthreads();
    double tsg = reduce_t(tmp).Sum(sg);
    if (threadIdx.x == 0)
        s_a = tsg > 0.0 ? (float)((double)g.gw * (tsl / m) / (tsg / m)) : 0.0f;
    __syncthreads();
    float a = s_a;
    double ss = 0.0;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        s[j] = fmaxf(__fmul_rn(hh.s_glo[j], a), s[j]);
        ss += (double)s[j];
    }
    __syncthreads();
    double tss = reduce_t(tmp).Sum(ss);
    if (threadIdx.x == 0)
        g.ssum[h] = tss;
}

/* grid (ceil(max_len/EMS_WARPS), H): warp per candidate j: |K_j|, |V_j| in double. */
static __global__ void ems_norm_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int j = blockIdx.x * EMS_WARPS + (threadIdx.x >> 5);
    if (!g.part[h] || j >= ems_m(g, h))
        return;
    const float *kr = g.heads[h].k + (size_t)j * g.hd, *vr = g.heads[h].v + (size_t)j * g.hd;
    double sk = 0.0, sv = 0.0;
    for (int d = lane; d < g.hd; d += 32) {
        sk += (double)kr[d] * (double)kr[d];
        sv += (double)vr[d] * (double)vr[d];
    }
    for (int o = 16; o > 0; o >>= 1) {
        sk += __shfl_xor_sync(0xffffffffu, sk, o);
        sv += __shfl_xor_sync(0xffffffffu, sv, o);
    }
    if (lane == 0) {
        double *n = g.norm + ((size_t)h * g.max_len + j) * 2;
        n[0] = sqrt(sk);
        n[1] = sqrt(sv);
    }
}

/* grid (ceil(max_len/EMS_WARPS), H): warp per dropped candidate t: best centre by cosK*cosV
 * (double, ties: earliest centre), zero class below tau. */
static __global__ void ems_assign_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int t = blockIdx.x * EMS_WARPS + (threadIdx.x >> 5);
    if (!g.part[h] || t >= ems_m(g, h))
        return;
    int *cls = g.cls + (size_t)h * g.max_len;
    if (cls[t] != -1)
        return;
    const kern_cuda_ems_head hh = g.heads[h];
    const double *nrm = g.norm + (size_t)h * g.max_len * 2;
    const int *centre = g.centre + (size_t)h * g.max_len;
    int k = g.kh[h];
    float kt[8], vt[8]; /* hd <= 256 */
#pragma unroll
    for (int r = 0; r < 8; r++) {
        int d = lane + 32 * r;
        kt[r] = d < g.hd ? hh.k[(size_t)t * g.hd + d] : 0.0f;
        vt[r] = d < g.hd ? hh.v[(size_t)t * g.hd + d] : 0.0f;
    }
    double best = -INFINITY;
    int bi = -1;
    for (int i = 0; i < k; i++) {
        int c = centre[i];
        double dk = 0.0, dv = 0.0;
#pragma unroll
        for (int r = 0; r < 8; r++) {
            int d = lane + 32 * r;
            if (d < g.hd) {
                dk += (double)kt[r] * (double)hh.k[(size_t)c * g.hd + d];
                dv += (double)vt[r] * (double)hh.v[(size_t)c * g.hd + d];
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            dk += __shfl_xor_sync(0xffffffffu, dk, o);
            dv += __shfl_xor_sync(0xffffffffu, dv, o);
        }
        double den_k = nrm[2 * t] * nrm[2 * c], den_v = nrm[2 * t + 1] * nrm[2 * c + 1];
        double sim = (den_k > 0.0 && den_v > 0.0) ? dk / den_k * (dv / den_v) : 0.0;
        if (sim > best) {
            best = sim;
            bi = i;
        }
    }
    if (lane == 0)
        cls[t] = bi >= 0 && best >= (double)g.tau ? bi + 1 : 0;
}

/* grid (ceil(max_len/EMS_WARPS), H): the single batched scatter of every member into its row. */
static __global__ void ems_scatter_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int t = blockIdx.x * EMS_WARPS + (threadIdx.x >> 5);
    if (!g.part[h] || t >= ems_m(g, h))
        return;
    int slot = g.cls[(size_t)h * g.max_len + t];
    if (slot <= 0)
        return; /* zero class: evicted */
    const kern_cuda_ems_head hh = g.heads[h];
    float wt = fmaxf(g.score[(size_t)h * g.max_len + t], 0.0f) + 1e-30f;
    float nk = (float)g.norm[((size_t)h * g.max_len + t) * 2];
    float *a = g.acc + ((size_t)g.acc_off[h] + slot - 1) * g.acc_stride;
    int hd = g.hd;
    for (int d = lane; d < hd; d += 32) {
        float kd = hh.k[(size_t)t * hd + d];
        atomicAdd(&a[d], wt * (nk > 0.0f ? kd / nk : 0.0f));
        atomicAdd(&a[hd + d], wt * hh.v[(size_t)t * hd + d]);
    }
    if (lane == 0) {
        atomicAdd(&a[2 * hd], wt);
        atomicAdd(&a[2 * hd + 1], wt * nk);
        atomicAdd(&a[2 * hd + 2], hh.s_glo[t]);
        atomicAdd(&a[2 * hd + 3], hh.mass ? hh.mass[t] : 1.0f);
        atomicAdd(&a[2 * hd + 4], 1.0f);
    }
    for (int r = lane; r < g.w_loc; r += 32) {
        atomicAdd(&a[2 * hd + 5 + r], hh.loc[(size_t)r * hh.loc_stride + t]);
    }
}

/* grid (ceil(max new length/EMS_WARPS), H): warp per output entry o (centre o < kh, else window).
 */
static __global__ void ems_finalize_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int o = blockIdx.x * EMS_WARPS + (threadIdx.x >> 5);
    if (!g.part[h])
        return;
    int k = g.kh[h], wh = ems_wh(g, h);
    if (o >= k + wh)
        return;
    const kern_cuda_ems_head hh = g.heads[h];
    int hd = g.hd, n = hh.len;
    int src = o < k ? g.centre[(size_t)h * g.max_len + o] : n - wh + (o - k);
    float *out = g.out + ((size_t)g.out_off[h] + o) * g.out_stride;
    const float *a = g.acc + ((size_t)g.acc_off[h] + (o < k ? o : 0)) * g.acc_stride;
    bool grouped = o < k && a[2 * hd + 4] > 1.5f; /* a centre without members stays as is */
    float W = grouped ? a[2 * hd] : 0.0f, dn = 0.0f;
    if (grouped) {
        for (int d = lane; d < hd; d += 32)
            dn += a[d] * a[d];
        for (int off = 16; off > 0; off >>= 1)
            dn += __shfl_xor_sync(0xffffffffu, dn, off);
        dn = sqrtf(dn);
    }
    bool merged = grouped && W > 0.0f && dn > 0.0f;
    float kn = merged ? a[2 * hd + 1] / W : 0.0f;
    for (int d = lane; d < hd; d += 32) {
        out[d] = merged ? kn * (a[d] / dn) : hh.k[(size_t)src * hd + d];
        out[hd + d] = merged ? a[hd + d] / W : hh.v[(size_t)src * hd + d];
    }
    if (lane == 0) {
        out[2 * hd] = __int_as_float(hh.pos[src]);
        out[2 * hd + 1] = grouped ? a[2 * hd + 2] : hh.s_glo[src];
        out[2 * hd + 2] = grouped ? a[2 * hd + 3] : (hh.mass ? hh.mass[src] : 1.0f);
    }
    for (int r = lane; r < g.w_loc; r += 32) {
        out[2 * hd + 3 + r] = grouped ? a[2 * hd + 5 + r] : hh.loc[(size_t)r * hh.loc_stride + src];
    }
}

/* Same grid: out -> cache entry o (after every finalize read finished). */
static __global__ void ems_copyback_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int o = blockIdx.x * EMS_WARPS + (threadIdx.x >> 5);
    if (!g.part[h] || o >= g.kh[h] + ems_wh(g, h))
        return;
    const kern_cuda_ems_head hh = g.heads[h];
    int hd = g.hd;
    const float *in = g.out + ((size_t)g.out_off[h] + o) * g.out_stride;
    for (int d = lane; d < hd; d += 32) {
        hh.k[(size_t)o * hd + d] = in[d];
        hh.v[(size_t)o * hd + d] = in[hd + d];
    }
    if (lane == 0) {
        hh.pos[o] = __float_as_int(in[2 * hd]);
        hh.s_glo[o] = in[2 * hd + 1];
        if (hh.mass)
            hh.mass[o] = in[2 * hd + 2];
    }
    for (int r = lane; r < g.w_loc; r += 32)
        hh.loc[(size_t)r * hh.loc_stride + o] = in[2 * hd + 3 + r];
}

static size_t al(size_t b)
{
    return (b + 255) / 256 * 256;
}

/* Scratch slot EMS: head table, per-head ints, scores, flags, classes, centres, norms. */
static em_status setup(kern_cuda_ctx *c, const kern_cuda_ems_head *heads, const ems_host *hs,
                       ems_geo *g)
{
    size_t H = (size_t)g->H, L = (size_t)g->max_len;
    size_t b_heads = al(sizeof(kern_cuda_ems_head) * H), b_int = al(sizeof(int) * H);
    size_t b_hl = al(sizeof(int) * H * L), b_norm = sizeof(double) * H * L * 2;
    size_t need = b_heads + 4 * b_int + al(sizeof(double) * H) + 4 * b_hl + b_norm;
    char *b;
    KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_EMS, need, (void **)&b));
    g->heads = (const kern_cuda_ems_head *)b;
    b += b_heads;
    int *part = (int *)b;
    g->part = part, g->kh = (int *)(b + b_int);
    g->acc_off = (const int *)(b + 2 * b_int), g->out_off = (const int *)(b + 3 * b_int);
    b += 4 * b_int;
    g->ssum = (double *)b;
    b += al(sizeof(double) * H);
    g->score = (float *)b, g->flag = (int *)(b + b_hl), g->cls = (int *)(b + 2 * b_hl);
    g->centre = (int *)(b + 3 * b_hl);
    g->norm = (double *)(b + 4 * b_hl);
    cudaStream_t s = (cudaStream_t)c->stream;
    KERN_CUDA_CHECK(cudaMemcpyAsync((void *)g->heads, heads, sizeof(kern_cuda_ems_head) * H,
                                    cudaMemcpyHostToDevice, s));
    KERN_CUDA_CHECK(cudaMemcpyAsync(part, hs->part, sizeof(int) * H, cudaMemcpyHostToDevice, s));
    KERN_CUDA_CHECK(cudaMemcpyAsync(g->kh, hs->kh, sizeof(int) * H, cudaMemcpyHostToDevice, s));
    return EM_OK;
}

/* Row offsets from kh (host), accumulator/output scratch (slot EMS2), zeroed accumulators. */
static em_status rows(kern_cuda_ctx *c, const ems_host *hs, ems_geo *g, int *off, int *max_new)
{
    int acc_rows = 0, out_rows = 0;
    *max_new = 0;
    for (int h = 0; h < g->H; h++) {
        off[h] = acc_rows, off[g->H + h] = out_rows;
        if (!hs->part[h])
            continue;
        acc_rows += hs->kh[h];
        out_rows += hs->kh[h] + hs->wh[h];
        if (hs->kh[h] + hs->wh[h] > *max_new)
            *max_new = hs->kh[h] + hs->wh[h];
    }
    size_t ba = al(sizeof(float) * (size_t)(acc_rows ? acc_rows : 1) * g->acc_stride);
    size_t bo = sizeof(float) * (size_t)(out_rows ? out_rows : 1) * g->out_stride;
    char *b;
    KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_EMS2, ba + bo, (void **)&b));
    g->acc = (float *)b, g->out = (float *)(b + ba);
    cudaStream_t s = (cudaStream_t)c->stream;
    KERN_CUDA_CHECK(cudaMemsetAsync(g->acc, 0, ba, s));
    KERN_CUDA_CHECK(
        cudaMemcpyAsync((void *)g->acc_off, off, sizeof(int) * g->H, cudaMemcpyHostToDevice, s));
    KERN_CUDA_CHECK(cudaMemcpyAsync((void *)g->out_off, off + g->H, sizeof(int) * g->H,
                                    cudaMemcpyHostToDevice, s));
    return EM_OK;
}

static em_status run(kern_cuda_ctx *c, kern_cuda_ems_head *heads, ems_host *hs, ems_geo *g,
                     const kern_cuda_ems_params *p, int *off)
{
    cudaStream_t s = (cudaStream_t)c->stream;
    KERN_CUDA_TRY(setup(c, heads, hs, g));
    dim3 gl(kern_cuda__blocks(g->max_len, EMS_WARPS), g->H);
    ems_score_kernel<<<g->H, 256, 0, s>>>(*g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_norm_kernel<<<gl, EMS_WARPS * 32, 0, s>>>(*g);
    KERN_CUDA_CHECK_LAUNCH();
    KERN_CUDA_TRY(kern_cuda__ems_select(c, *g, hs, p));
    int max_new;
    KERN_CUDA_TRY(rows(c, hs, g, off, &max_new));
    ems_assign_kernel<<<gl, EMS_WARPS * 32, 0, s>>>(*g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_scatter_kernel<<<gl, EMS_WARPS * 32, 0, s>>>(*g);
    KERN_CUDA_CHECK_LAUNCH();
    if (max_new > 0) {
        dim3 gb(kern_cuda__blocks(max_new, EMS_WARPS), g->H);
        ems_finalize_kernel<<<gb, EMS_WARPS * 32, 0, s>>>(*g);
        KERN_CUDA_CHECK_LAUNCH();
        ems_copyback_kernel<<<gb, EMS_WARPS * 32, 0, s>>>(*g);
        KERN_CUDA_CHECK_LAUNCH();
    }
    KERN_CUDA_CHECK(cudaStreamSynchronize(s));
    for (int h = 0; h < g->H; h++) {
        if (hs->part[h])
            heads[h].len = hs->kh[h] + hs->wh[h];
    }
    return EM_OK;
}

extern "C" em_status kern_cuda_ems_step(kern_cuda_ctx *c, kern_cuda_ems_head *heads, int n_heads,
                                        int hd, int w_loc, const kern_cuda_ems_params *p)
{
    if (p->B < 2 || hd <= 0 || hd > 256 || w_loc < 0 || n_heads < 0)
        return EM_EINVAL;
    if (p->headwise && n_heads > 4096)
        return EM_EUNSUPPORTED; /* 12-bit head field in keys */
    ems_geo g;
    memset(&g, 0, sizeof g);
    g.H = n_heads, g.hd = hd, g.w_loc = w_loc, g.w = kern_ems_window(p), g.tau = p->tau;
    g.gw = p->gw, g.max_len = 1;
    g.acc_stride = 2 * hd + 5 + w_loc, g.out_stride = 2 * hd + 3 + w_loc;
    int *buf = (int *)calloc((size_t)6 * n_heads + 1, sizeof(int));
    if (!buf)
        return EM_ENOMEM;
    ems_host hs = {buf, buf + n_heads, buf + 2 * n_heads, buf + 3 * n_heads, p->B - g.w};
    int any = 0;
    em_status st = EM_OK;
    for (int h = 0; h < n_heads; h++) {
        int len = heads[h].len;
        if (len < 0 || (w_loc > 0 && heads[h].loc_stride < len) ||
            (p->headwise && len > (1 << 20))) {
            st = len > (1 << 20) ? EM_EUNSUPPORTED : EM_EINVAL;
        }
        hs.wh[h] = g.w < len ? g.w : len;
        hs.m[h] = len - hs.wh[h];
        hs.part[h] = p->headwise ? len > 0 : len > p->B;
        hs.kh[h] = hs.part[h] && !p->headwise ? hs.kg : 0;
        any |= hs.part[h];
        g.max_len = len > g.max_len ? len : g.max_len;
    }
    if (st == EM_OK && any)
        st = run(c, heads, &hs, &g, p, buf + 4 * n_heads);
    free(buf);
    return st;
}
