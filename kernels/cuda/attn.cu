/* Attention kernels (see attn.h): split-K online softmax + combine, then the optional
 * statistics pass from the saved row LSE. Templated on the KV format and on R = hd/32 rounded
 * up (lane holds channels lane + 32r). */
#include <math.h>

#include "kernels/cuda/attn.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/kv_load.cuh"

#define ATTN_WARPS  8
#define STATS_WARPS 8

/* Partial results: per (query, query head, split) m, l, acc[hd] (see attn_combine_kernel). */
template <int FMT, int R>
static __global__ void __launch_bounds__(ATTN_WARPS * 32)
    attn_split_kernel(kern_cuda_attn_args a, const kern_cuda_kv_head *heads, int chunk, int n_split,
                      float *part)
{
    __shared__ float s_m[ATTN_WARPS], s_l[ATTN_WARPS], s_acc[ATTN_WARPS][R * 32];
    int split = blockIdx.x, qh = blockIdx.y, i = blockIdx.z, hd = a.hd;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    kern_cuda_kv_head h = heads[qh / a.G];
    int j0 = split * chunk, j1 = min(h.len, j0 + chunk);
    int qpos = a.q_pos[i];
    float q[R], acc[R], kr[R], vr[R];
    const float *qp = a.q + (size_t)i * a.q_stride + (size_t)qh * hd;
#pragma unroll
    for (int r = 0; r < R; r++) {
        int d = lane + 32 * r;
        q[r] = d < hd ? qp[d] : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = j0 + warp; j < j1; j += ATTN_WARPS) {
        if (h.kpos[j] > qpos)
            continue;
        kv_load_row<FMT, R>(h.k, h.k_sm, j, hd, lane, kr);
        kv_load_row<FMT, R>(h.v, h.v_sm, j, hd, lane, vr); /* issued before the dot: overlap */
        float s = warp_dot<R>(q, kr) * a.scale + (h.kbias ? h.kbias[j] : 0.0f);
        float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
        l = l * corr + p;
#pragma unroll
        for (int r = 0; r < R; r++)
            acc[r] = acc[r] * corr + p * vr[r];
        m = mn;
    }
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        s_acc[warp][lane + 32 * r] = acc[r];
    __syncthreads();
    float *dst = part + (((size_t)i * gridDim.y + qh) * n_split + split) * (2 + hd);
    float mm = -INFINITY;
    for (int w = 0; w < ATTN_WARPS; w++)
        mm = fmaxf(mm, s_m[w]);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < ATTN_WARPS; w++) {
            if (s_m[w] != -INFINITY)
                o += s_acc[w][d] * expf(s_m[w] - mm);
        }
        dst[2 + d] = o;
    }
    if (threadIdx.x == 0) {
        float ll = 0.0f;
        for (int w = 0; w < ATTN_WARPS; w++) {
            if (s_m[w] != -INFINITY)
                ll += s_l[w] * expf(s_m[w] - mm);
        }
        dst[0] = mm;
        dst[1] = ll;
    }
}

/* grid (n_head_q, n_q): merges the splits, writes out and the row LSE. */
static __global__ void attn_combine_kernel(kern_cuda_attn_args a, int n_split, const float *part,
                                           float *lse)
{
    int qh = blockIdx.x, i = blockIdx.y, hd = a.hd, hq = gridDim.x;
    const float *p = part + ((size_t)i * hq + qh) * n_split * (2 + hd);
    float mm = -INFINITY;
    for (int s = 0; s < n_split; s++)
        mm = fmaxf(mm, p[s * (2 + hd)]);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        float ms = p[s * (2 + hd)];
        if (ms != -INFINITY)
            L += p[s * (2 + hd) + 1] * expf(ms - mm);
    }
    float *o = a.out + (size_t)i * a.o_stride + (size_t)qh * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int s = 0; s < n_split; s++) {
            float ms = p[s * (2 + hd)];
            if (ms != -INFINITY)
                v += p[s * (2 + hd) + 2 + d] * expf(ms - mm);
        }
        o[d] = L > 0.0f ? v / L : 0.0f;
    }
    if (threadIdx.x == 0)
        lse[(size_t)i * hq + qh] = L > 0.0f ? mm + logf(L) : -INFINITY;
}

/* grid (ceil(max_len / STATS_WARPS), n_head_kv): warp = cache entry j of head h. */
template <int FMT, int R>
static __global__ void __launch_bounds__(STATS_WARPS * 32)
    attn_stats_kernel(kern_cuda_attn_args a, const kern_cuda_kv_head *heads, const float *lse)
{
    int h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hd = a.hd;
    int j = blockIdx.x * STATS_WARPS + warp, hq = a.n_head_kv * a.G;
    kern_cuda_kv_head hh = heads[h];
    if (j >= hh.len)
        return;
    if (!hh.col_sum && !hh.col_sqsum && !hh.col_cnt && !hh.rows)
        return;
    float kr[R], q[R];
    kv_load_row<FMT, R>(hh.k, hh.k_sm, j, hd, lane, kr);
    int kp = hh.kpos[j];
    float csum = 0.0f, csq = 0.0f;
    int cnt = 0;
    for (int i = 0; i < a.n_q; i++) {
        bool vis = kp <= a.q_pos[i];
        float pr = 0.0f;
        if (vis) {
            for (int g = 0; g < a.G; g++) {
                int qhh = h * a.G + g;
                const float *qp = a.q + (size_t)i * a.q_stride + (size_t)qhh * hd;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    int d = lane + 32 * r;
                    q[r] = d < hd ? qp[d] : 0.0f;
                }
                float s = warp_dot<R>(q, kr) * a.scale + (hh.kbias ? hh.kbias[j] : 0.0f);
                float ls = lse[(size_t)i * hq + qhh];
                float p = ls == -INFINITY ? 0.0f : expf(s - ls);
                if (a.group_max) {
                    pr = fmaxf(pr, p);
                } else {
                    pr += p / (float)a.G;
                }
            }
            csum += pr;
            csq += pr * pr;
            cnt++;
        }
        int r = i - (a.n_q - a.n_rows);
        if (hh.rows && r >= 0 && lane == 0) {
            hh.rows[(size_t)((hh.row_slot0 + r) % hh.row_ring) * hh.row_stride + j] = pr;
        }
    }
    if (lane == 0) {
        if (hh.col_sum)
            hh.col_sum[j] += csum;
        if (hh.col_sqsum)
            hh.col_sqsum[j] += csq;
        if (hh.col_cnt)
            hh.col_cnt[j] += cnt;
    }
}

template <int FMT, int R>
static em_status launch(kern_cuda_ctx *c, const kern_cuda_attn_args *a, const kern_cuda_kv_head *dh,
                        int max_len, bool stats)
{
    cudaStream_t s = (cudaStream_t)c->stream;
    int hq = a->n_head_kv * a->G;
    /* Enough splits for ~8 blocks per SM, but no split shorter than 64 entries. */
    long long base = (long long)hq * a->n_q;
    int n_split = (int)((8LL * (c->n_sm > 0 ? c->n_sm : 1) + base - 1) / base);
    int max_split = (max_len + 63) / 64;
    if (n_split > max_split)
        n_split = max_split;
    if (n_split < 1)
        n_split = 1;
    int chunk = (max_len + n_split - 1) / n_split;
    if (chunk < 1)
        chunk = 1;
    size_t part_n = (size_t)base * n_split * (2 + a->hd);
    void *buf;
    KERN_CUDA_TRY(
        kern_cuda__scratch(c, KERN_CUDA_SCR_ATTN, sizeof(float) * (part_n + (size_t)base), &buf));
    float *part = (float *)buf, *lse = a->lse ? a->lse : part + part_n;
    dim3 g1(n_split, hq, a->n_q);
    attn_split_kernel<FMT, R><<<g1, ATTN_WARPS * 32, 0, s>>>(*a, dh, chunk, n_split, part);
    KERN_CUDA_CHECK_LAUNCH();
    attn_combine_kernel<<<dim3(hq, a->n_q), 128, 0, s>>>(*a, n_split, part, lse);
    KERN_CUDA_CHECK_LAUNCH();
    if (stats && max_len > 0) {
        dim3 g2(kern_cuda__blocks(max_len, STATS_WARPS), a->n_head_kv);
        attn_stats_kernel<FMT, R><<<g2, STATS_WARPS * 32, 0, s>>>(*a, dh, lse);
        KERN_CUDA_CHECK_LAUNCH();
    }
    return EM_OK;
}

template <int FMT>
static em_status launch_r(kern_cuda_ctx *c, const kern_cuda_attn_args *a,
                          const kern_cuda_kv_head *dh, int max_len, bool stats)
{
    if (a->hd <= 32)
        return launch<FMT, 1>(c, a, dh, max_len, stats);
    if (a->hd <= 64)
        return launch<FMT, 2>(c, a, dh, max_len, stats);
    if (a->hd <= 128)
        return launch<FMT, 4>(c, a, dh, max_len, stats);
    return launch<FMT, 8>(c, a, dh, max_len, stats);
}

extern "C" em_status kern_cuda_attn(kern_cuda_ctx *c, const kern_cuda_attn_args *a)
{
    em_status st = kern_kv_check(a->fmt, a->hd);
    if (st != EM_OK)
        return st;
    if (a->n_q < 0 || a->n_head_kv <= 0 || a->G <= 0 || a->n_rows < 0 || a->n_rows > a->n_q) {
        return EM_EINVAL;
    }
    if (a->n_q > 65535 || (long long)a->n_head_kv * a->G > 65535) {
        return EM_EUNSUPPORTED; /* grid y/z limits: callers chunk prefill below this */
    }
    if (a->n_q == 0)
        return EM_OK;
    int max_len = 0;
    bool stats = false;
    for (int h = 0; h < a->n_head_kv; h++) {
        const kern_cuda_kv_head *hh = &a->heads[h];
        if (hh->len < 0 || (hh->rows && (hh->row_ring < a->n_rows || hh->row_stride < hh->len))) {
            return EM_EINVAL;
        }
        max_len = hh->len > max_len ? hh->len : max_len;
        stats = stats || hh->col_sum || hh->col_sqsum || hh->col_cnt || hh->rows;
    }
    void *dh;
    size_t hb = sizeof(kern_cuda_kv_head) * (size_t)a->n_head_kv;
    KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_ATTN2, hb, &dh));
    KERN_CUDA_CHECK(
        cudaMemcpyAsync(dh, a->heads, hb, cudaMemcpyHostToDevice, (cudaStream_t)c->stream));
    const kern_cuda_kv_head *d = (const kern_cuda_kv_head *)dh;
    if (a->fmt == KERN_KV_F32)
        return launch_r<KERN_KV_F32>(c, a, d, max_len, stats);
    if (a->fmt == KERN_KV_Q8)
        return launch_r<KERN_KV_Q8>(c, a, d, max_len, stats);
    return launch_r<KERN_KV_Q4>(c, a, d, max_len, stats);
}
