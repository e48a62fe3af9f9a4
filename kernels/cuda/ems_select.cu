/* Centre selection of the EMS step (see ems_step.h): equal budgets = per-head radix top-k;
 * head-wise budgets = per-head stable segmented sort of the scores, each head's top F, then the
 * global top R of s/sum(s) over all heads by one device radix sort of 64-bit keys
 * (p, lower head first, better rank first); finally one block per head numbers the kept
 * candidates in index order (slots). */
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ems_step_impl.cuh"

static __device__ __forceinline__ unsigned ordered_key(float f)
{
    unsigned u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* grid H, block EMS_SEL_THREADS: flag the kh[h] best candidates (ties: lower index) by a
 * 4-round 8-bit radix select of the k-th largest key and one scan over the ties. */
static __global__ void __launch_bounds__(EMS_SEL_THREADS) ems_topk_kernel(ems_geo g)
{
    typedef cub::BlockScan<int, EMS_SEL_THREADS> scan_t;
    __shared__ typename scan_t::TempStorage tmp;
    __shared__ int hist[256], s_sel, s_rem, s_eq_off;
    int h = blockIdx.x, tid = threadIdx.x, k = g.kh[h];
    if (!g.part[h] || k <= 0)
        return;
    int m = ems_m(g, h);
    const float *s = g.score + (size_t)h * g.max_len;
    unsigned prefix = 0, mask = 0;
    if (tid == 0)
        s_rem = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += blockDim.x)
            hist[b] = 0;
        __syncthreads();
        for (int j = tid; j < m; j += blockDim.x) {
            unsigned u = ordered_key(s[j]);
            if ((u & mask) == prefix)
                atomicAdd(&hist[(u >> shift) & 255], 1);
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
    int need_eq = s_rem;
    if (tid == 0)
        s_eq_off = 0;
    __syncthreads();
    int *flag = g.flag + (size_t)h * g.max_len;
    for (int base = 0; base < m; base += blockDim.x) {
        int j = base + tid, eq_rank, eq_tot;
        unsigned u = j < m ? ordered_key(s[j]) : 0;
        int eq = j < m && u == prefix;
        scan_t(tmp).ExclusiveSum(eq, eq_rank, eq_tot);
        if (j < m)
            flag[j] = u > prefix || (eq && s_eq_off + eq_rank < need_eq);
        __syncthreads();
        if (tid == 0)
            s_eq_off += eq_tot;
        __syncthreads();
    }
}

/* grid H, block EMS_SEL_THREADS: slots in index order from the flags; others undecided (-1). */
static __global__ void __launch_bounds__(EMS_SEL_THREADS) ems_slots_kernel(ems_geo g)
{
    typedef cub::BlockScan<int, EMS_SEL_THREADS> scan_t;
    __shared__ typename scan_t::TempStorage tmp;
    __shared__ int s_off;
    int h = blockIdx.x, tid = threadIdx.x;
    if (!g.part[h])
        return;
    int m = ems_m(g, h);
    const int *flag = g.flag + (size_t)h * g.max_len;
    int *cls = g.cls + (size_t)h * g.max_len, *centre = g.centre + (size_t)h * g.max_len;
    if (tid == 0)
        s_off = 0;
    __syncthreads();
    for (int base = 0; base < m; base += blockDim.x) {
        int j = base + tid, keep = j < m ? flag[j] : 0, rank, tot;
        scan_t(tmp).ExclusiveSum(keep, rank, tot);
        if (j < m) {
            int slot = s_off + rank + 1;
            cls[j] = keep ? slot : -1;
            if (keep)
                centre[slot - 1] = j;
        }
        __syncthreads();
        if (tid == 0)
            s_off += tot;
        __syncthreads();
    }
}

static __global__ void iota_kernel(int *v, int H, int max_len)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)H * max_len)
        v[i] = (int)(i % max_len);
}

/* grid (ceil(max_len/256), H): key of every ranked candidate r in [F_h, m_h). */
static __global__ void items_kernel(ems_geo g, const float *sorted_s, const int *fh,
                                    const int *item_off, unsigned long long *items)
{
    int h = blockIdx.y, r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < fh[h] || r >= ems_m(g, h))
        return;
    double sum = g.ssum[h];
    float p = sum > 0.0 ? (float)((double)sorted_s[(size_t)h * g.max_len + r] / sum) : 0.0f;
    unsigned long long key = (unsigned long long)ordered_key(p) << 32 |
                             (unsigned long long)(4095 - h) << 20 |
                             (unsigned long long)(0xFFFFF - r);
    items[item_off[h] + r - fh[h]] = key;
}

static __global__ void count_kernel(const unsigned long long *sorted, int R, int *kh)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < R)
        atomicAdd(&kh[4095 - (int)((sorted[i] >> 20) & 0xFFF)], 1);
}

/* grid (ceil(max_len/256), H): flag the kh[h] best-ranked candidates of head h. */
static __global__ void mark_kernel(ems_geo g, const int *sorted_j)
{
    int h = blockIdx.y, r = blockIdx.x * blockDim.x + threadIdx.x;
    if (!g.part[h] || r >= g.kh[h])
        return;
    g.flag[(size_t)h * g.max_len + sorted_j[(size_t)h * g.max_len + r]] = 1;
}

static size_t al(size_t b)
{
    return (b + 255) / 256 * 256;
}

/* Head-wise budgets: kh on device and host. */
static em_status headwise(kern_cuda_ctx *c, const ems_geo &g, ems_host *hs, float floor_frac)
{
    cudaStream_t s = (cudaStream_t)c->stream;
    int H = g.H, L = g.max_len, F = (int)lrintf(floor_frac * (float)hs->kg);
    F = F < 1 ? 1 : F;
    int *fh = (int *)calloc((size_t)4 * H + 1, sizeof(int));
    if (!fh)
        return EM_ENOMEM;
    int *item_off = fh + H, *begin = fh + 2 * H, *end = fh + 3 * H;
    long long R = (long long)H * hs->kg, N = 0;
    for (int h = 0; h < H; h++) {
        fh[h] = F < hs->m[h] ? F : hs->m[h];
        R -= fh[h];
        item_off[h] = (int)N;
        N += hs->m[h] - fh[h];
        begin[h] = h * L, end[h] = h * L + hs->m[h];
    }
    size_t n_all = (size_t)H * L, t1 = 0, t2 = 0;
    KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        NULL, t1, (const float *)NULL, (float *)NULL, (const int *)NULL, (int *)NULL, (int)n_all, H,
        (const int *)NULL, (const int *)NULL, 0, 32, s));
    KERN_CUDA_CHECK(cub::DeviceRadixSort::SortKeysDescending(
        NULL, t2, (const unsigned long long *)NULL, (unsigned long long *)NULL, (int)(N ? N : 1), 0,
        64, s));
    size_t tb = t1 > t2 ? t1 : t2;
    size_t need = al(4 * n_all) * 3 + al(16 * (size_t)H) + 2 * al(8 * (size_t)(N ? N : 1)) + al(tb);
    char *b;
    em_status st = kern_cuda__scratch(c, KERN_CUDA_SCR_EMS3, need, (void **)&b);
    if (st != EM_OK) {
        free(fh);
        return st;
    }
    float *ss = (float *)b;
    int *vin = (int *)(b + al(4 * n_all)), *vout = (int *)(b + 2 * al(4 * n_all));
    int *dfh = (int *)(b + 3 * al(4 * n_all)), *doff = dfh + H, *dbeg = dfh + 2 * H,
        *dend = dfh + 3 * H;
    unsigned long long *it = (unsigned long long *)(b + 3 * al(4 * n_all) + al(16 * (size_t)H));
    unsigned long long *its = it + al(8 * (size_t)(N ? N : 1)) / 8;
    void *tmp = (char *)its + al(8 * (size_t)(N ? N : 1));
    KERN_CUDA_CHECK(cudaMemcpyAsync(dfh, fh, 16 * (size_t)H, cudaMemcpyHostToDevice, s));
    iota_kernel<<<kern_cuda__blocks((long long)n_all, 256), 256, 0, s>>>(vin, H, L);
    KERN_CUDA_CHECK_LAUNCH();
    KERN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        tmp, t1, g.score, ss, vin, vout, (int)n_all, H, dbeg, dend, 0, 32, s));
    for (int h = 0; h < H; h++)
        hs->kh[h] = fh[h];
    if (R > 0 && N > 0 && R >= N) {
        for (int h = 0; h < H; h++)
            hs->kh[h] = hs->m[h]; /* every candidate fits */
        KERN_CUDA_CHECK(cudaMemcpyAsync(g.kh, hs->kh, 4 * (size_t)H, cudaMemcpyHostToDevice, s));
    } else if (R > 0 && N > 0) {
        dim3 gr(kern_cuda__blocks(L, 256), H);
        items_kernel<<<gr, 256, 0, s>>>(g, ss, dfh, doff, it);
        KERN_CUDA_CHECK_LAUNCH();
        KERN_CUDA_CHECK(
            cub::DeviceRadixSort::SortKeysDescending(tmp, t2, it, its, (int)N, 0, 64, s));
        KERN_CUDA_CHECK(cudaMemcpyAsync(g.kh, dfh, 4 * (size_t)H, cudaMemcpyDeviceToDevice, s));
        count_kernel<<<kern_cuda__blocks(R, 256), 256, 0, s>>>(its, (int)R, g.kh);
        KERN_CUDA_CHECK_LAUNCH();
        KERN_CUDA_CHECK(cudaMemcpyAsync(hs->kh, g.kh, 4 * (size_t)H, cudaMemcpyDeviceToHost, s));
    } else {
        KERN_CUDA_CHECK(cudaMemcpyAsync(g.kh, hs->kh, 4 * (size_t)H, cudaMemcpyHostToDevice, s));
    }
    KERN_CUDA_CHECK(cudaStreamSynchronize(s)); /* hs->kh and fh no longer in flight */
    free(fh);
    mark_kernel<<<dim3(kern_cuda__blocks(L, 256), H), 256, 0, s>>>(g, vout);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}

em_status kern_cuda__ems_select(kern_cuda_ctx *c, const ems_geo &g, ems_host *hs,
                                const kern_cuda_ems_params *p)
{
    cudaStream_t s = (cudaStream_t)c->stream;
    KERN_CUDA_CHECK(cudaMemsetAsync(g.flag, 0, sizeof(int) * (size_t)g.H * g.max_len, s));
    if (p->headwise) {
        KERN_CUDA_TRY(headwise(c, g, hs, p->floor));
    } else {
        ems_topk_kernel<<<g.H, EMS_SEL_THREADS, 0, s>>>(g);
        KERN_CUDA_CHECK_LAUNCH();
    }
    ems_slots_kernel<<<g.H, EMS_SEL_THREADS, 0, s>>>(g);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
