/* GPU decode benchmark: tokens/s of single-sequence greedy decode vs context length for a
 * random-weight llama-shaped model (default 4 layers of dim 4096, 32 heads of 128, ffn 11008,
 * vocab 32000, f16 weights), device-resident, for four KV caches: full f32, EMS at budget B
 * (compressed back to B whenever a head reaches B + 16, compression time included), int8 and
 * int4 (dequantizing attention). One layer's weights are shared by every layer: each layer
 * still streams 400 MB of weights (far above L2), so timing matches distinct weights while the
 * memory stays small. The context is filled with random K/V (decode speed is what is measured;
 * no prefill). Writes DIR/gpu_decode.csv, DIR/gpu_decode.gp (gnuplot) and DIR/gpu_decode_plot.py.
 * Usage: gpu_decode_bench [--out DIR] [--layers N] [--steps N] [--budget B] [--max-ctx N]
 *                         [--dim D --heads H --kv-heads K --hd D --ffn F --vocab V] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "kernels/cuda/add.h"
#include "kernels/cuda/attn.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/embed.h"
#include "kernels/cuda/ems_step.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sample.h"
#include "kernels/cuda/swiglu.h"

enum { MODE_FULL, MODE_EMS, MODE_Q8, MODE_Q4, N_MODES };
static const char *MODE_NAME[N_MODES] = {"full", "ems", "int8", "int4"};

struct cfg {
    int layers = 4, dim = 4096, heads = 32, kv_heads = 32, hd = 128, ffn = 11008, vocab = 32000;
    int steps = 32, warmup = 3, budget = 256, w_loc = 16, max_ctx = 32768;
    const char *out = "bench_out";
};

struct model_dev {
    kern_weight wq, wk, wv, wo, w1, w2, w3, emb, outw;
    float *g; /* RMSNorm gains [dim], all ones */
    /* activations */
    float *x, *xb, *q, *k, *v, *att, *y, *h1, *h3, *logits;
    int32_t *tok, *pos; /* tok [1]; pos [cap] = 0..cap-1 */
    /* caches, per layer: f32 [kv][cap][hd]; codes; stats */
    float **kc, **vc, **ksm, **vsm, **sglo, **loc;
    uint8_t **kq, **vq;
    int32_t *kpos; /* [layer][kv][cap] */
    int cap;
};

static __global__ void fill_kernel(float *x, long long n, unsigned seed, float amp)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    x[i] = amp * ((float)(h & 0xffffff) / 8388608.0f - 1.0f);
}

static __global__ void fill_half_kernel(__half *x, long long n, unsigned seed, float amp)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    x[i] = __float2half(amp * ((float)(h & 0xffffff) / 8388608.0f - 1.0f));
}

static __global__ void iota_kernel(int32_t *x, long long n, int mod)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = (int32_t)(i % mod);
}

static unsigned g_seed = 1;

static em_status falloc(float **p, long long n, float amp)
{
    KERN_CUDA_CHECK(cudaMalloc((void **)p, sizeof(float) * (n ? n : 1)));
    if (n)
        fill_kernel<<<kern_cuda__blocks(n, 256), 256>>>(*p, n, g_seed++ * 7919u, amp);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}

static em_status walloc(kern_weight *w, int rows, int cols)
{
    long long n = (long long)rows * cols;
    void *p;
    KERN_CUDA_CHECK(cudaMalloc(&p, sizeof(__half) * n));
    fill_half_kernel<<<kern_cuda__blocks(n, 256), 256>>>((__half *)p, n, g_seed++ * 7919u,
                                                         1.0f / sqrtf((float)cols));
    KERN_CUDA_CHECK_LAUNCH();
    *w = kern_weight{p, KERN_F16, rows, cols};
    return EM_OK;
}

static em_status setup(const cfg &c, model_dev &m)
{
    int qd = c.heads * c.hd, kd = c.kv_heads * c.hd;
    m.cap = c.max_ctx + c.steps + c.warmup + 32;
    KERN_CUDA_TRY(walloc(&m.wq, qd, c.dim));
    KERN_CUDA_TRY(walloc(&m.wk, kd, c.dim));
    KERN_CUDA_TRY(walloc(&m.wv, kd, c.dim));
    KERN_CUDA_TRY(walloc(&m.wo, c.dim, qd));
    KERN_CUDA_TRY(walloc(&m.w1, c.ffn, c.dim));
    KERN_CUDA_TRY(walloc(&m.w3, c.ffn, c.dim));
    KERN_CUDA_TRY(walloc(&m.w2, c.dim, c.ffn));
    KERN_CUDA_TRY(walloc(&m.emb, c.vocab, c.dim));
    KERN_CUDA_TRY(walloc(&m.outw, c.vocab, c.dim));
    KERN_CUDA_TRY(falloc(&m.g, c.dim, 0.0f));
    float one = 1.0f;
    for (int i = 0; i < c.dim; i++)
        KERN_CUDA_CHECK(cudaMemcpy(m.g + i, &one, 4, cudaMemcpyHostToDevice));
    float **acts[] = {&m.x, &m.xb, &m.q, &m.k, &m.v, &m.att, &m.y, &m.h1, &m.h3, &m.logits};
    long long sizes[] = {c.dim, c.dim, qd, kd, kd, qd, c.dim, c.ffn, c.ffn, c.vocab};
    for (int i = 0; i < 10; i++)
        KERN_CUDA_TRY(falloc(acts[i], sizes[i], 1.0f));
    KERN_CUDA_CHECK(cudaMalloc((void **)&m.tok, sizeof(int32_t)));
    KERN_CUDA_CHECK(cudaMemset(m.tok, 0, sizeof(int32_t)));
    KERN_CUDA_CHECK(cudaMalloc((void **)&m.pos, sizeof(int32_t) * m.cap));
    iota_kernel<<<kern_cuda__blocks(m.cap, 256), 256>>>(m.pos, m.cap, m.cap);
    long long per = (long long)kd * m.cap, ng = kern_kv_n_groups(c.hd);
    KERN_CUDA_CHECK(cudaMalloc((void **)&m.kpos, sizeof(int32_t) * per / c.hd * c.layers));
    iota_kernel<<<kern_cuda__blocks(per / c.hd * c.layers, 256), 256>>>(
        m.kpos, per / c.hd * c.layers, m.cap);
    float ***fl[] = {&m.kc, &m.vc, &m.ksm, &m.vsm, &m.sglo, &m.loc};
    for (int i = 0; i < 6; i++)
        *fl[i] = (float **)calloc(c.layers, sizeof(float *));
    m.kq = (uint8_t **)calloc(c.layers, sizeof(uint8_t *));
    m.vq = (uint8_t **)calloc(c.layers, sizeof(uint8_t *));
    for (int l = 0; l < c.layers; l++) {
        KERN_CUDA_TRY(falloc(&m.kc[l], per, 1.0f));
        KERN_CUDA_TRY(falloc(&m.vc[l], per, 1.0f));
        KERN_CUDA_TRY(falloc(&m.ksm[l], 2 * ng * per / c.hd, 0.0f));
        KERN_CUDA_TRY(falloc(&m.vsm[l], 2 * ng * per / c.hd, 0.0f));
        KERN_CUDA_TRY(falloc(&m.sglo[l], per / c.hd, 0.5f));
        KERN_CUDA_TRY(falloc(&m.loc[l], (long long)c.w_loc * per / c.hd, 0.01f));
        KERN_CUDA_CHECK(cudaMalloc((void **)&m.kq[l], per));
        KERN_CUDA_CHECK(cudaMalloc((void **)&m.vq[l], per));
    }
    KERN_CUDA_CHECK(cudaDeviceSynchronize());
    return EM_OK;
}

/* Codes of the whole cache from the f32 cache (before each quantized run). */
static em_status quantize_all(kern_cuda_ctx *ctx, const cfg &c, model_dev &m, kern_kv_fmt f)
{
    int rows = c.kv_heads * m.cap;
    for (int l = 0; l < c.layers; l++) {
        KERN_CUDA_TRY(kern_cuda_kv_quantize(ctx, f, m.kc[l], rows, c.hd, c.hd, m.kq[l], m.ksm[l]));
        KERN_CUDA_TRY(kern_cuda_kv_quantize(ctx, f, m.vc[l], rows, c.hd, c.hd, m.vq[l], m.vsm[l]));
    }
    return kern_cuda_sync(ctx);
}

static void ems_heads(const cfg &c, model_dev &m, int l, int len, kern_cuda_ems_head *eh)
{
    for (int h = 0; h < c.kv_heads; h++) {
        size_t o = (size_t)h * m.cap;
        eh[h] = kern_cuda_ems_head{m.kc[l] + o * c.hd,
                                   m.vc[l] + o * c.hd,
                                   m.kpos + ((size_t)l * c.kv_heads + h) * m.cap,
                                   m.sglo[l] + o,
                                   NULL,
                                   m.loc[l] + o * c.w_loc,
                                   m.cap,
                                   len};
    }
}

/* EMS step on every layer (all heads at length len); zeroes the statistics past B. */
static em_status ems_compress(kern_cuda_ctx *ctx, const cfg &c, model_dev &m, int len)
{
    kern_cuda_ems_params p;
    kern_ems_params_default(c.budget, &p);
    kern_cuda_ems_head *eh = (kern_cuda_ems_head *)calloc(c.kv_heads, sizeof *eh);
    em_status st = EM_OK;
    for (int l = 0; l < c.layers && st == EM_OK; l++) {
        ems_heads(c, m, l, len, eh);
        st = kern_cuda_ems_step(ctx, eh, c.kv_heads, c.hd, c.w_loc, &p);
        size_t tail = sizeof(float) * (m.cap - c.budget);
        if (st == EM_OK) {
            st = kern_cuda_memset2d_async(ctx, m.sglo[l] + c.budget, 4 * (size_t)m.cap, tail,
                                          c.kv_heads);
        }
        if (st == EM_OK) {
            st = kern_cuda_memset2d_async(ctx, m.loc[l] + c.budget, 4 * (size_t)m.cap, tail,
                                          (size_t)c.kv_heads * c.w_loc);
        }
    }
    free(eh);
    return st;
}

/* One decode token at cache length len (the new token goes to index len) and sequence position
 * pos (>= len: EMS caches are shorter than the sequence). */
static em_status decode_step(kern_cuda_ctx *ctx, const cfg &c, model_dev &m, int mode, int len,
                             int pos, int step)
{
    int qd = c.heads * c.hd, kd = c.kv_heads * c.hd, G = c.heads / c.kv_heads;
    kern_kv_fmt fmt = mode == MODE_Q8 ? KERN_KV_Q8 : mode == MODE_Q4 ? KERN_KV_Q4 : KERN_KV_F32;
    size_t rb = kern_kv_row_bytes(fmt, c.hd), ng = kern_kv_n_groups(c.hd);
    kern_cuda_kv_head heads[256];
    KERN_CUDA_TRY(kern_cuda_embed(ctx, &m.emb, m.tok, 1, m.x, c.dim));
    for (int l = 0; l < c.layers; l++) {
        KERN_CUDA_TRY(kern_cuda_rmsnorm(ctx, m.x, m.g, 1, c.dim, 1e-5f, m.xb));
        KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.wq, m.xb, c.dim, 1, m.q, qd));
        KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.wk, m.xb, c.dim, 1, m.k, kd));
        KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.wv, m.xb, c.dim, 1, m.v, kd));
        KERN_CUDA_TRY(kern_cuda_rope(ctx, m.q, 1, c.heads, c.hd, qd, m.pos + pos, 10000.0f, c.hd));
        KERN_CUDA_TRY(
            kern_cuda_rope(ctx, m.k, 1, c.kv_heads, c.hd, kd, m.pos + pos, 10000.0f, c.hd));
        size_t pitch = sizeof(float) * (size_t)m.cap * c.hd, row = sizeof(float) * c.hd;
        if (fmt == KERN_KV_F32) {
            KERN_CUDA_TRY(kern_cuda_copy2d_async(ctx, m.kc[l] + (size_t)len * c.hd, pitch, m.k, row,
                                                 row, c.kv_heads));
            KERN_CUDA_TRY(kern_cuda_copy2d_async(ctx, m.vc[l] + (size_t)len * c.hd, pitch, m.v, row,
                                                 row, c.kv_heads));
        } else {
            KERN_CUDA_TRY(kern_cuda_kv_quantize_strided(ctx, fmt, m.k, c.kv_heads, c.hd, c.hd,
                                                        m.kq[l] + len * rb,
                                                        m.ksm[l] + (size_t)len * ng * 2, m.cap));
            KERN_CUDA_TRY(kern_cuda_kv_quantize_strided(ctx, fmt, m.v, c.kv_heads, c.hd, c.hd,
                                                        m.vq[l] + len * rb,
                                                        m.vsm[l] + (size_t)len * ng * 2, m.cap));
        }
        for (int h = 0; h < c.kv_heads; h++) {
            size_t o = (size_t)h * m.cap;
            kern_cuda_kv_head &hh = heads[h];
            memset(&hh, 0, sizeof hh);
            hh.k = fmt == KERN_KV_F32 ? (const void *)(m.kc[l] + o * c.hd)
                                      : (const void *)(m.kq[l] + o * rb);
            hh.v = fmt == KERN_KV_F32 ? (const void *)(m.vc[l] + o * c.hd)
                                      : (const void *)(m.vq[l] + o * rb);
            hh.k_sm = m.ksm[l] + o * ng * 2, hh.v_sm = m.vsm[l] + o * ng * 2;
            hh.kpos = m.kpos + ((size_t)l * c.kv_heads + h) * m.cap, hh.len = len + 1;
            if (mode == MODE_EMS) {
                hh.col_sum = m.sglo[l] + o, hh.rows = m.loc[l] + o * c.w_loc;
                hh.row_stride = m.cap, hh.row_ring = c.w_loc, hh.row_slot0 = step % c.w_loc;
            }
        }
        kern_cuda_attn_args a = {1,
                                 c.kv_heads,
                                 G,
                                 c.hd,
                                 m.q,
                                 qd,
                                 m.pos + pos,
                                 m.att,
                                 qd,
                                 1.0f / sqrtf((float)c.hd),
                                 fmt,
                                 heads,
                                 mode == MODE_EMS ? 1 : 0,
                                 0,
                                 NULL};
        KERN_CUDA_TRY(kern_cuda_attn(ctx, &a));
        KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.wo, m.att, qd, 1, m.y, c.dim));
        KERN_CUDA_TRY(kern_cuda_add(ctx, m.x, m.y, c.dim));
        KERN_CUDA_TRY(kern_cuda_rmsnorm(ctx, m.x, m.g, 1, c.dim, 1e-5f, m.xb));
        KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.w1, m.xb, c.dim, 1, m.h1, c.ffn));
        KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.w3, m.xb, c.dim, 1, m.h3, c.ffn));
        KERN_CUDA_TRY(kern_cuda_swiglu(ctx, m.h1, m.h3, 1, c.ffn, m.h1));
        KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.w2, m.h1, c.ffn, 1, m.y, c.dim));
        KERN_CUDA_TRY(kern_cuda_add(ctx, m.x, m.y, c.dim));
    }
    KERN_CUDA_TRY(kern_cuda_rmsnorm(ctx, m.x, m.g, 1, c.dim, 1e-5f, m.xb));
    KERN_CUDA_TRY(kern_cuda_matmul(ctx, &m.outw, m.xb, c.dim, 1, m.logits, c.vocab));
    return kern_cuda_argmax(ctx, m.logits, 1, c.vocab, m.tok);
}

struct run_arg {
    kern_cuda_ctx *ctx;
    const cfg *c;
    model_dev *m;
    int mode, len, n, step0, pos; /* pos: sequence position of the next token */
};

/* n decode steps from length len; EMS compresses back to B when heads reach B + 16. */
static em_status run_steps(void *p)
{
    run_arg *r = (run_arg *)p;
    for (int s = 0; s < r->n; s++) {
        if (r->mode == MODE_EMS && r->len >= r->c->budget + 16) {
            KERN_CUDA_TRY(ems_compress(r->ctx, *r->c, *r->m, r->len));
            r->len = r->c->budget;
        }
        KERN_CUDA_TRY(decode_step(r->ctx, *r->c, *r->m, r->mode, r->len, r->pos, r->step0 + s));
        r->len++, r->pos++;
    }
    return EM_OK;
}

static em_status bench_one(kern_cuda_ctx *ctx, const cfg &c, model_dev &m, int mode, int ctx_len,
                           double *tok_s, double *compress_ms, double *kv_mb)
{
    run_arg r = {ctx, &c, &m, mode, ctx_len, c.warmup, 0, ctx_len};
    float ms = 0.0f;
    *compress_ms = 0.0;
    if (mode == MODE_EMS) { /* the one-off compression of the filled context (prefill side) */
        run_arg cr = r;
        auto fn = [](void *p) -> em_status {
            run_arg *a = (run_arg *)p;
            return ems_compress(a->ctx, *a->c, *a->m, a->len);
        };
        KERN_CUDA_TRY(kern_cuda_time_ms(ctx, fn, &cr, &ms));
        *compress_ms = ms;
        r.len = c.budget;
    }
    KERN_CUDA_TRY(run_steps(&r)); /* warm-up */
    r.n = c.steps, r.step0 = c.warmup;
    KERN_CUDA_TRY(kern_cuda_time_ms(ctx, run_steps, &r, &ms));
    *tok_s = c.steps / (ms / 1000.0);
    int len = mode == MODE_EMS ? c.budget : ctx_len;
    double row = mode == MODE_Q8   ? c.hd + 8.0 * kern_kv_n_groups(c.hd)
                 : mode == MODE_Q4 ? c.hd / 2.0 + 8.0 * kern_kv_n_groups(c.hd)
                                   : 4.0 * c.hd;
    *kv_mb = 2.0 * row * len * c.kv_heads * c.layers / 1048576.0;
    return EM_OK;
}

/* The flags into c; EM_EINVAL for an unknown flag, a missing value or an unusable shape. */
static em_status parse(int argc, char **argv, cfg &c)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *ip = !strcmp(a, "--layers")     ? &c.layers
                  : !strcmp(a, "--steps")    ? &c.steps
                  : !strcmp(a, "--budget")   ? &c.budget
                  : !strcmp(a, "--max-ctx")  ? &c.max_ctx
                  : !strcmp(a, "--dim")      ? &c.dim
                  : !strcmp(a, "--heads")    ? &c.heads
                  : !strcmp(a, "--kv-heads") ? &c.kv_heads
                  : !strcmp(a, "--hd")       ? &c.hd
                  : !strcmp(a, "--ffn")      ? &c.ffn
                  : !strcmp(a, "--vocab")    ? &c.vocab
                                             : NULL;
        if (!v)
            return EM_EINVAL;
        if (!strcmp(a, "--out")) {
            c.out = v;
        } else if (ip) {
            *ip = atoi(v);
        } else {
            return EM_EINVAL;
        }
        i++;
    }
    if (c.layers < 1 || c.steps < 1 || c.budget < 32 || c.kv_heads < 1 || c.heads % c.kv_heads ||
        c.heads * c.hd < 1 || c.kv_heads > 256 || kern_kv_check(KERN_KV_Q4, c.hd) != EM_OK ||
        c.max_ctx < 1024) {
        return EM_EINVAL;
    }
    return EM_OK;
}

static void write_plots(const cfg &c, const char *gpu)
{
    char path[512];
    snprintf(path, sizeof path, "%s/gpu_decode.gp", c.out);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(
            f,
            "set terminal pngcairo size 900,600 noenhanced\nset output '%s/gpu_decode.png'\n"
            "set datafile separator ','\nset logscale x 2\nset xlabel 'context length (tokens)'\n"
            "set ylabel 'decode tokens/s (batch 1)'\nset key top right\nset grid\n"
            "set title '%s: %d layers, dim %d, %d heads x %d, f16 weights, EMS B=%d'\n"
            "plot for [m in 'full ems int8 int4'] '%s/gpu_decode.csv' using "
            "(strcol(2) eq m ? $3 : NaN):5 with linespoints title m\n",
            c.out, gpu, c.layers, c.dim, c.heads, c.hd, c.budget, c.out);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/gpu_decode_plot.py", c.out);
    f = fopen(path, "w");
    if (f) {
        fprintf(f,
                "import csv, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                "rows = list(csv.DictReader(open('%s/gpu_decode.csv')))\n"
                "for m in ['full', 'ems', 'int8', 'int4']:\n"
                "    r = [x for x in rows if x['mode'] == m]\n"
                "    plt.plot([int(x['ctx']) for x in r], [float(x['tok_per_s']) for x in r], "
                "'o-', label=m)\n"
                "plt.xscale('log', base=2); plt.xlabel('context length (tokens)'); "
                "plt.ylabel('decode tokens/s (batch 1)')\n"
                "plt.title('%s: %d layers, dim %d, %d heads x %d, EMS B=%d'); plt.grid(True); "
                "plt.legend()\n"
                "plt.savefig('%s/gpu_decode.png', dpi=100)\n",
                c.out, gpu, c.layers, c.dim, c.heads, c.hd, c.budget, c.out);
        fclose(f);
    }
}

extern "C" int gpu_decode_bench_main(int argc, char **argv)
{
    cfg c;
    if (parse(argc, argv, c) != EM_OK) {
        fprintf(stderr, "usage: gpu_decode_bench [--out DIR] [--layers N] [--steps N] [--budget B] "
                        "[--max-ctx N>=1024] [--dim D] [--heads H] [--kv-heads K] [--hd D] [--ffn "
                        "F] [--vocab V]\n");
        return 2;
    }
    if (kern_cuda_device_count() == 0) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    kern_cuda_ctx *ctx = NULL;
    char gpu[256] = "?";
    model_dev m;
    memset(&m, 0, sizeof m);
    if (kern_cuda_ctx_create(0, &ctx) != EM_OK ||
        kern_cuda_device_name(0, gpu, sizeof gpu) != EM_OK || setup(c, m) != EM_OK) {
        fprintf(stderr, "gpu_decode_bench: device setup failed\n");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/gpu_decode.csv", c.out);
    FILE *csv = fopen(path, "w");
    if (!csv) {
        fprintf(stderr, "gpu_decode_bench: cannot write %s\n", path);
        return 1;
    }
    fprintf(csv, "gpu,mode,ctx,layers,tok_per_s,ms_per_tok,kv_mb,compress_ms\n");
    printf("%s | %d layers dim %d heads %d/%d x %d ffn %d vocab %d | budget %d\n", gpu, c.layers,
           c.dim, c.heads, c.kv_heads, c.hd, c.ffn, c.vocab, c.budget);
    printf("%-5s %7s %10s %10s %10s %12s\n", "mode", "ctx", "tok/s", "ms/tok", "KV MB",
           "compress ms");
    for (int mode = 0; mode < N_MODES; mode++) {
        if ((mode == MODE_Q8 || mode == MODE_Q4) &&
            quantize_all(ctx, c, m, mode == MODE_Q8 ? KERN_KV_Q8 : KERN_KV_Q4) != EM_OK) {
            return 1;
        }
        for (int L = 1024; L <= c.max_ctx; L *= 2) {
            double ts, cm, mb;
            if (bench_one(ctx, c, m, mode, L, &ts, &cm, &mb) != EM_OK) {
                fprintf(stderr, "gpu_decode_bench: %s at %d failed\n", MODE_NAME[mode], L);
                return 1;
            }
            printf("%-5s %7d %10.1f %10.3f %10.1f %12.3f\n", MODE_NAME[mode], L, ts, 1000.0 / ts,
                   mb, cm);
            fprintf(csv, "\"%s\",%s,%d,%d,%.2f,%.4f,%.2f,%.3f\n", gpu, MODE_NAME[mode], L, c.layers,
                    ts, 1000.0 / ts, mb, cm);
            fflush(stdout);
        }
    }
    fclose(csv);
    write_plots(c, gpu);
    kern_cuda_ctx_destroy(ctx);
    return 0;
}
