/* EMS compression step on the GPU (contract and formulas in ems_step.h). Kernels, each over
 * all heads of the layer at once (blockIdx.y or blockIdx.x = head):
 *   score  -> select (radix top-k + scan, one block per head) -> assign (warp per dropped
 *   candidate) -> scatter (warp per candidate, atomics into [H][k+1][.], slot 0 = zero class is
 *   never written: discarding it is free) -> finalize (warp per output entry) -> copy back. */
#include "kernels/cuda/ems_step.h"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/check.cuh"

#define SEL_THREADS 1024
#define WARPS 8

/* Per-run geometry and scratch pointers, passed by value to every kernel. */
struct ems_geo {
    int H, hd, w_loc, B, w, k, max_len;
    float tau, gw;
    const kern_cuda_ems_head *heads; /* device copy */
    float *score;                    /* [H][max_len] */
    double *norm;                    /* [H][max_len][2] |K| |V| */
    int *cls;                        /* [H][max_len]  slot (>0 kept centre or merged), 0 zero class */
    int *centre;                     /* [H][k] candidate index of each centre, in index order */
    float *acc;                      /* [H][k][acc_stride] K V W N G M COUNT L */
    int acc_stride;
    float *out; /* [H][B][out_stride]: K V pos(as float bits) G M L */
    int out_stride;
};

static __device__ __forceinline__ bool active(const ems_geo &g, int h)
{
    return g.heads[h].len > g.B;
}

/* grid H, block 256: s_loc, double means, score; also zeroes this head's accumulator. */
static __global__ void ems_score_kernel(ems_geo g)
{
    typedef cub::BlockReduce<double, 256> reduce_t;
    __shared__ typename reduce_t::TempStorage tmp;
    __shared__ float s_a;
    int h = blockIdx.x;
    if (!active(g, h)) return;
    kern_cuda_ems_head hh = g.heads[h];
    int m = hh.len - g.w;
    float *s = g.score + (size_t)h * g.max_len;
    double sg = 0.0, sl = 0.0;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        float l = 0.0f;
        for (int r = 0; r < g.w_loc; r++) l += hh.loc[(size_t)r * hh.loc_stride + j];
        s[j] = l;
        sl += (double)l;
        sg += (double)hh.s_glo[j];
    }
    double tsl = reduce_t(tmp).Sum(sl);
    __syncthreads();
    double tsg = reduce_t(tmp).Sum(sg);
    if (threadIdx.x == 0) s_a = tsg > 0.0 ? (float)((double)g.gw * (tsl / m) / (tsg / m)) : 0.0f;
    __syncthreads();
    float a = s_a;
    for (int j = threadIdx.x; j < m; j += blockDim.x) s[j] = fmaxf(__fmul_rn(hh.s_glo[j], a), s[j]);
    float *acc = g.acc + (size_t)h * g.k * g.acc_stride;
    for (int i = threadIdx.x; i < g.k * g.acc_stride; i += blockDim.x) acc[i] = 0.0f;
}

/* grid (ceil(max_len/WARPS), H): warp per candidate j: |K_j|, |V_j| in double. */
static __global__ void ems_norm_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int j = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (!active(g, h) || j >= g.heads[h].len - g.w) return;
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

static __device__ __forceinline__ unsigned ordered_key(float f)
{
    unsigned u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* grid H, block SEL_THREADS: the k-th largest key by a 4-round 8-bit radix select, then one
 * pass in index order keeps keys above it plus the earliest ties; slots = order of index. */
static __global__ void __launch_bounds__(SEL_THREADS) ems_select_kernel(ems_geo g)
{
    typedef cub::BlockScan<int, SEL_THREADS> scan_t;
    __shared__ typename scan_t::TempStorage tmp;
    __shared__ int hist[256], s_sel, s_rem, s_eq_off, s_keep_off;
    int h = blockIdx.x, tid = threadIdx.x;
    if (!active(g, h)) return;
    int m = g.heads[h].len - g.w;
    const float *s = g.score + (size_t)h * g.max_len;
    unsigned prefix = 0, mask = 0;
    if (tid == 0) s_rem = g.k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += blockDim.x) hist[b] = 0;
        __syncthreads();
        for (int j = tid; j < m; j += blockDim.x) {
            unsigned u = ordered_key(s[j]);
            if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255], 1);
        }
        __syncthreads();
        if (tid == 0) {
            int cum = 0, sel = 0;
            for (int b = 255; b >= 0; b--) {
                if (cum + hist[b] >= s_rem) {
                    sel = b;
                    break;
                }
                cum += hist[b];
            }
            s_rem -= cum;
            s_sel = sel;
        }
        __syncthreads();
        prefix |= (unsigned)s_sel << shift;
        mask |= 255u << shift;
    }
    unsigned T = prefix;
    int need_eq = s_rem;
    if (tid == 0) {
        s_eq_off = 0;
        s_keep_off = 0;
    }
    __syncthreads();
    int *cls = g.cls + (size_t)h * g.max_len, *centre = g.centre + (size_t)h * g.k;
    for (int base = 0; base < m; base += blockDim.x) {
        int j = base + tid;
        unsigned u = j < m ? ordered_key(s[j]) : 0;
        int eq = j < m && u == T, gt = j < m && u > T, eq_rank, eq_tot, keep_rank, keep_tot;
        scan_t(tmp).ExclusiveSum(eq, eq_rank, eq_tot);
        __syncthreads();
        int keep = gt || (eq && s_eq_off + eq_rank < need_eq);
        scan_t(tmp).ExclusiveSum(keep, keep_rank, keep_tot);
        if (j < m) {
            int slot = s_keep_off + keep_rank + 1;
            cls[j] = keep ? slot : -1;
            if (keep) centre[slot - 1] = j;
        }
        __syncthreads();
        if (tid == 0) {
            s_eq_off += eq_tot;
            s_keep_off += keep_tot;
        }
        __syncthreads();
    }
}

/* grid (ceil(max_len/WARPS), H): warp per dropped candidate t: best centre by cosK*cosV. */
static __global__ void ems_assign_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int t = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (!active(g, h) || t >= g.heads[h].len - g.w) return;
    int *cls = g.cls + (size_t)h * g.max_len;
    if (cls[t] != -1) return;
    const kern_cuda_ems_head hh = g.heads[h];
    const double *nrm = g.norm + (size_t)h * g.max_len * 2;
    const int *centre = g.centre + (size_t)h * g.k;
    float kt[8], vt[8]; /* hd <= 256 */
#pragma unroll
    for (int r = 0; r < 8; r++) {
        int d = lane + 32 * r;
        kt[r] = d < g.hd ? hh.k[(size_t)t * g.hd + d] : 0.0f;
        vt[r] = d < g.hd ? hh.v[(size_t)t * g.hd + d] : 0.0f;
    }
    double best = -INFINITY;
    int bi = -1;
    for (int i = 0; i < g.k; i++) {
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
    if (lane == 0) cls[t] = best >= (double)g.tau ? bi + 1 : 0;
}

/* grid (ceil(max_len/WARPS), H): the single batched scatter of every member into its slot. */
static __global__ void ems_scatter_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int t = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (!active(g, h) || t >= g.heads[h].len - g.w) return;
    int slot = g.cls[(size_t)h * g.max_len + t];
    if (slot <= 0) return; /* zero class: evicted */
    const kern_cuda_ems_head hh = g.heads[h];
    float wt = fmaxf(g.score[(size_t)h * g.max_len + t], 0.0f) + 1e-30f;
    float nk = (float)g.norm[((size_t)h * g.max_len + t) * 2];
    float *a = g.acc + ((size_t)h * g.k + slot - 1) * g.acc_stride;
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

/* grid (ceil(B/WARPS), H): warp per output entry o (centre o < k, else window entry). */
static __global__ void ems_finalize_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int o = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (!active(g, h) || o >= g.B) return;
    const kern_cuda_ems_head hh = g.heads[h];
    int hd = g.hd, n = hh.len;
    int src = o < g.k ? g.centre[(size_t)h * g.k + o] : n - g.w + (o - g.k);
    float *out = g.out + ((size_t)h * g.B + o) * g.out_stride;
    const float *a = g.acc + ((size_t)h * g.k + (o < g.k ? o : 0)) * g.acc_stride;
    float W = o < g.k ? a[2 * hd] : 0.0f, dn = 0.0f;
    if (o < g.k) {
        for (int d = lane; d < hd; d += 32) dn += a[d] * a[d];
        for (int off = 16; off > 0; off >>= 1) dn += __shfl_xor_sync(0xffffffffu, dn, off);
        dn = sqrtf(dn);
    }
    bool grouped = o < g.k && a[2 * hd + 4] > 1.5f; /* a centre without members stays as is */
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

/* grid (ceil(B/WARPS), H): out -> cache entry o (after every finalize read finished). */
static __global__ void ems_copyback_kernel(ems_geo g)
{
    int h = blockIdx.y, lane = threadIdx.x & 31;
    int o = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (!active(g, h) || o >= g.B) return;
    const kern_cuda_ems_head hh = g.heads[h];
    int hd = g.hd;
    const float *in = g.out + ((size_t)h * g.B + o) * g.out_stride;
    for (int d = lane; d < hd; d += 32) {
        hh.k[(size_t)o * hd + d] = in[d];
        hh.v[(size_t)o * hd + d] = in[hd + d];
    }
    if (lane == 0) {
        hh.pos[o] = __float_as_int(in[2 * hd]);
        hh.s_glo[o] = in[2 * hd + 1];
        if (hh.mass) hh.mass[o] = in[2 * hd + 2];
    }
    for (int r = lane; r < g.w_loc; r += 32) hh.loc[(size_t)r * hh.loc_stride + o] = in[2 * hd + 3 + r];
}

static em_status setup(kern_cuda_ctx *c, const kern_cuda_ems_head *heads, int n_heads, int hd,
                       int w_loc, const kern_cuda_ems_params *p, ems_geo *g)
{
    g->H = n_heads;
    g->hd = hd;
    g->w_loc = w_loc;
    g->B = p->B;
    g->w = kern_ems_window(p);
    g->k = p->B - g->w;
    g->tau = p->tau;
    g->gw = p->gw;
    g->max_len = 1;
    for (int h = 0; h < n_heads; h++) {
        if (heads[h].len < 0 || (w_loc > 0 && heads[h].loc_stride < heads[h].len)) return EM_EINVAL;
        g->max_len = heads[h].len > g->max_len ? heads[h].len : g->max_len;
    }
    g->acc_stride = 2 * hd + 5 + w_loc;
    g->out_stride = 2 * hd + 3 + w_loc;
    size_t H = (size_t)n_heads, L = (size_t)g->max_len;
    size_t b_heads = (sizeof(kern_cuda_ems_head) * H + 255) / 256 * 256;
    size_t b_score = (sizeof(float) * H * L + 255) / 256 * 256;
    size_t b_norm = sizeof(double) * H * L * 2;
    size_t b_cls = (sizeof(int) * H * L + 255) / 256 * 256;
    size_t b_centre = (sizeof(int) * H * g->k + 255) / 256 * 256;
    size_t b_acc = (sizeof(float) * H * g->k * g->acc_stride + 255) / 256 * 256;
    size_t b_out = sizeof(float) * H * g->B * g->out_stride;
    char *b1, *b2;
    KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_EMS,
                                     b_heads + b_score + b_cls + b_centre + b_norm, (void **)&b1));
    KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_EMS2, b_acc + b_out, (void **)&b2));
    g->heads = (const kern_cuda_ems_head *)b1;
    g->score = (float *)(b1 + b_heads);
    g->cls = (int *)(b1 + b_heads + b_score);
    g->centre = (int *)(b1 + b_heads + b_score + b_cls);
    g->norm = (double *)(b1 + b_heads + b_score + b_cls + b_centre);
    g->acc = (float *)b2;
    g->out = (float *)(b2 + b_acc);
    KERN_CUDA_CHECK(cudaMemcpyAsync((void *)g->heads, heads, sizeof(kern_cuda_ems_head) * H,
                                    cudaMemcpyHostToDevice, (cudaStream_t)c->stream));
    return EM_OK;
}

extern "C" em_status kern_cuda_ems_step(kern_cuda_ctx *c, kern_cuda_ems_head *heads, int n_heads,
                                        int hd, int w_loc, const kern_cuda_ems_params *p)
{
    if (p->B < 2 || hd <= 0 || hd > 256 || w_loc < 0 || n_heads < 0) return EM_EINVAL;
    if (p->headwise) return EM_EUNSUPPORTED; /* TODO(cuda): head-wise budgets on the GPU */
    int any = 0;
    for (int h = 0; h < n_heads; h++) any |= heads[h].len > p->B;
    if (!any) return EM_OK;
    ems_geo g;
    KERN_CUDA_TRY(setup(c, heads, n_heads, hd, w_loc, p, &g));
    cudaStream_t s = (cudaStream_t)c->stream;
    dim3 gl(kern_cuda__blocks(g.max_len, WARPS), n_heads), gb(kern_cuda__blocks(g.B, WARPS), n_heads);
    ems_score_kernel<<<n_heads, 256, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_norm_kernel<<<gl, WARPS * 32, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_select_kernel<<<n_heads, SEL_THREADS, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_assign_kernel<<<gl, WARPS * 32, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_scatter_kernel<<<gl, WARPS * 32, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_finalize_kernel<<<gb, WARPS * 32, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    ems_copyback_kernel<<<gb, WARPS * 32, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    KERN_CUDA_CHECK(cudaStreamSynchronize(s));
    for (int h = 0; h < n_heads; h++) {
        if (heads[h].len > p->B) heads[h].len = p->B;
    }
    return EM_OK;
}
