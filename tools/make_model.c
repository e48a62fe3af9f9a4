/* make_model: writes a llama-architecture GGUF v3 with random weights (fixed seed) and a
 * synthetic SentencePiece vocabulary, with the same metadata keys and tensor names/order as a
 * llama.cpp conversion. Used for benchmarks and tests at shapes we have no trained model for:
 *   make_model --out m.gguf --preset stories110M --type f16
 *   make_model --out m.gguf --dim 288 --layers 6 --heads 6 --kv-heads 6 --ffn 768 --vocab 32000
 *   make_model --out m.gguf --dim 576 ... --type q4_1 --embd-type q8_0   (SmolLM2-like types)
 * Matrices of a block type are quantised with kern_quant_row (kernels/quant.h); norms stay f32. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "kernels/quant.h"
#include "model/gguf_write.h"

typedef struct {
    long dim, layers, heads, kv_heads, ffn, vocab, ctx;
    uint32_t type; /* matrices (ggml type id = kern_dtype) */
    uint64_t seed;
    float eps, rope_base;
    int32_t embd_type; /* token_embd / output; -1: same as type */
} spec;

static const struct {
    const char *name;
    spec s;
} k_presets[] = {
    {"stories15M", {288, 6, 6, 6, 768, 32000, 2048, KERN_F32, 1, 1e-5f, 10000.f, -1}},
    {"stories110M", {768, 12, 12, 12, 2048, 32000, 2048, KERN_F32, 1, 1e-5f, 10000.f, -1}},
    {"long32k", {512, 8, 8, 8, 1376, 32000, 32768, KERN_F32, 1, 1e-5f, 10000.f, -1}},
};

/* --type / --embd-type values. */
static const kern_dtype k_types[] = {KERN_F32, KERN_F16, KERN_Q8_0, KERN_Q4_0, KERN_Q4_1};

/* ---------------------------------------------------------------- random weights */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s)
{
    return ((splitmix(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

typedef struct {
    const spec *sp;
    int n_layer;
} fill_ctx;

static int is_embd(const char *name)
{
    return !strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight");
}

static kern_dtype tensor_type(const spec *sp, const char *name)
{
    if (strstr(name, "norm"))
        return KERN_F32;
    return (kern_dtype)(is_embd(name) && sp->embd_type >= 0 ? (uint32_t)sp->embd_type : sp->type);
}

/* Tensor idx gets its own stream seeded from (seed, idx): contents do not depend on other
 * tensors' sizes or types. Norm weights are 1; matrices N(0, 0.02), output projections of each
 * block scaled by 1/sqrt(2 * layers) (GPT-2) so the residual stream stays O(1) in deep models.
 * Values are drawn 32 at a time; a block type quantises each 32 (one block) with
 * kern_quant_row, so a q4_1 file holds exactly the f32 file's weights, quantised. */
static em_status fill_tensor(void *user, int idx, const char *name, void *dst, size_t nbytes)
{
    fill_ctx *c = user;
    const spec *sp = c->sp;
    int is_norm = strstr(name, "norm") != NULL;
    kern_dtype type = tensor_type(sp, name);
    size_t bb = kern_dtype_block_bytes(type),
           n = nbytes / bb * (size_t)kern_dtype_block_elems(type);
    double std = 0.02;
    if (strstr(name, "attn_output") || strstr(name, "ffn_down"))
        std /= sqrt(2.0 * (double)c->n_layer);
    uint64_t s = sp->seed * 0x100000001b3ull + (uint64_t)idx * 0x9e3779b97f4a7c15ull + 1;
    float blk[32];
    for (size_t i = 0; i < n; i += 32) {
        size_t m = n - i < 32 ? n - i : 32;
        for (size_t k = 0; k < m; k += 2) { /* Box-Muller, two normals per draw */
            double r = sqrt(-2.0 * log(uniform01(&s))), a = 2.0 * M_PI * uniform01(&s);
            blk[k] = is_norm ? 1.0f : (float)(std * r * cos(a));
            if (k + 1 < m)
                blk[k + 1] = is_norm ? 1.0f : (float)(std * r * sin(a));
        }
        if (type == KERN_F32) {
            memcpy((float *)dst + i, blk, m * 4);
        } else if (type == KERN_F16) {
            for (size_t k = 0; k < m; k++)
                ((uint16_t *)dst)[i + k] = kern_f32_to_f16(blk[k]);
        } else { /* blocks of 32 (n is a multiple of 32, checked in main) */
            kern_quant_row(type, blk, (uint8_t *)dst + i / 32 * bb, 32);
        }
    }
    return EM_OK;
}

/* ---------------------------------------------------------------- synthetic vocabulary */

/* <unk>, <s>, </s>, <0x00>..<0xFF>, then every string over the alphabet below by increasing
 * length ("▁" = U+2581 is the SentencePiece space), scores decreasing with the index. */
static const char *const k_alpha[] = {"\xe2\x96\x81",
                                      "e",
                                      "t",
                                      "a",
                                      "o",
                                      "i",
                                      "n",
                                      "s",
                                      "h",
                                      "r",
                                      "d",
                                      "l",
                                      "u",
                                      "c",
                                      "m",
                                      "w",
                                      "f",
                                      "g",
                                      "y",
                                      "p",
                                      "b",
                                      "v",
                                      "k",
                                      "j",
                                      "x",
                                      "q",
                                      "z",
                                      ".",
                                      ",",
                                      "'",
                                      "\"",
                                      "!",
                                      "?",
                                      "-",
                                      ":",
                                      ";",
                                      "(",
                                      ")",
                                      "A",
                                      "B",
                                      "C",
                                      "D",
                                      "E",
                                      "F",
                                      "G",
                                      "H",
                                      "I",
                                      "J",
                                      "K",
                                      "L",
                                      "M",
                                      "N",
                                      "O",
                                      "P",
                                      "Q",
                                      "R",
                                      "S",
                                      "T",
                                      "U",
                                      "V",
                                      "W",
                                      "X",
                                      "Y",
                                      "Z",
                                      "0",
                                      "1",
                                      "2",
                                      "3",
                                      "4",
                                      "5",
                                      "6",
                                      "7",
                                      "8",
                                      "9"};
enum { N_ALPHA = sizeof k_alpha / sizeof k_alpha[0] };

static em_status add_vocab(gguf_writer *w, long n)
{
    char **tok = calloc((size_t)n, sizeof *tok);
    float *score = malloc((size_t)n * sizeof *score);
    int32_t *type = malloc((size_t)n * sizeof *type);
    em_status st = EM_ENOMEM;
    if (!tok || !score || !type)
        goto out;
    long i = 0;
    static const char *const special[] = {"<unk>", "<s>", "</s>"};
    for (; i < 3; i++) {
        tok[i] = strdup(special[i]);
        type[i] = i == 0 ? 2 : 3;
        score[i] = 0;
    }
    for (int b = 0; b < 256; b++, i++) {
        tok[i] = malloc(8);
        if (tok[i])
            snprintf(tok[i], 8, "<0x%02X>", b);
        type[i] = 6;
        score[i] = 0;
    }
    int digits[8] = {0};
    for (int len = 1; i < n && len <= 8;) {
        char buf[64];
        size_t o = 0;
        for (int k = 0; k < len; k++) {
            size_t l = strlen(k_alpha[digits[k]]);
            memcpy(buf + o, k_alpha[digits[k]], l);
            o += l;
        }
        buf[o] = 0;
        tok[i] = strdup(buf);
        type[i] = 1;
        score[i] = -(float)(i - 259);
        i++;
        int k = len - 1; /* odometer over the alphabet; carry out grows the length */
        while (k >= 0 && ++digits[k] == N_ALPHA)
            digits[k--] = 0;
        if (k < 0)
            len++;
    }
    for (long j = 0; j < n; j++)
        if (!tok[j])
            goto out;
    if ((st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok,
                                      (uint64_t)n)) ||
        (st = gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", score, (uint64_t)n)) ||
        (st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", type, (uint64_t)n)))
        goto out;
    st = EM_OK;
out:
    if (tok)
        for (long j = 0; j < n; j++)
            free(tok[j]);
    free(tok);
    free(score);
    free(type);
    return st;
}

/* ---------------------------------------------------------------- model file */

static em_status add_mat(gguf_writer *w, const char *name, long ne0, long ne1, uint32_t type)
{
    uint64_t ne[2] = {(uint64_t)ne0, (uint64_t)ne1};
    return gguf_writer_add_tensor(w, name, ne1 > 0 ? 2 : 1, ne, type, NULL);
}

static em_status build(const spec *sp, const char *out, char *err, size_t errlen)
{
    gguf_writer *w;
    em_status st = gguf_writer_create(32, &w);
    if (st != EM_OK)
        return st;
    long hd = sp->dim / sp->heads;
    const uint32_t F32 = KERN_F32, T = sp->type, TE = tensor_type(sp, "token_embd.weight");
    (void)((st = gguf_writer_set_str(w, "general.architecture", "llama")) ||
           (st = gguf_writer_set_str(w, "general.name", "emserve-random")) ||
           (st = gguf_writer_set_u32(w, "general.alignment", 32)) ||
           (st = gguf_writer_set_u32(w, "llama.context_length", (uint32_t)sp->ctx)) ||
           (st = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)sp->dim)) ||
           (st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)sp->layers)) ||
           (st = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)sp->ffn)) ||
           (st = gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd)) ||
           (st = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)sp->heads)) ||
           (st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sp->kv_heads)) ||
           (st = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", sp->eps)) ||
           (st = gguf_writer_set_f32(w, "llama.rope.freq_base", sp->rope_base)) ||
           (st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
           (st = add_vocab(w, sp->vocab)) ||
           (st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
           (st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
           (st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
           (st = add_mat(w, "token_embd.weight", sp->dim, sp->vocab, TE)) ||
           (st = add_mat(w, "output_norm.weight", sp->dim, 0, F32)) ||
           (st = add_mat(w, "output.weight", sp->dim, sp->vocab, TE)));
    for (long l = 0; l < sp->layers && st == EM_OK; l++) {
        char nm[9][64];
        static const char *const parts[9] = {"attn_q",      "attn_k",    "attn_v",
                                             "attn_output", "attn_norm", "ffn_gate",
                                             "ffn_down",    "ffn_up",    "ffn_norm"};
        for (int k = 0; k < 9; k++)
            snprintf(nm[k], sizeof nm[k], "blk.%ld.%s.weight", l, parts[k]);
        (void)((st = add_mat(w, nm[0], sp->dim, sp->heads * hd, T)) ||
               (st = add_mat(w, nm[1], sp->dim, sp->kv_heads * hd, T)) ||
               (st = add_mat(w, nm[2], sp->dim, sp->kv_heads * hd, T)) ||
               (st = add_mat(w, nm[3], sp->heads * hd, sp->dim, T)) ||
               (st = add_mat(w, nm[4], sp->dim, 0, F32)) ||
               (st = add_mat(w, nm[5], sp->dim, sp->ffn, T)) ||
               (st = add_mat(w, nm[6], sp->ffn, sp->dim, T)) ||
               (st = add_mat(w, nm[7], sp->dim, sp->ffn, T)) ||
               (st = add_mat(w, nm[8], sp->dim, 0, F32)));
    }
    if (st != EM_OK) {
        snprintf(err, errlen, "building the header failed: %s", em_status_str(st));
    } else {
        fill_ctx c = {sp, (int)sp->layers};
        st = gguf_writer_write_file(w, out, fill_tensor, &c, err, errlen);
    }
    gguf_writer_free(w);
    return st;
}

/* ---------------------------------------------------------------- flags */

/* A decimal integer in [lo, hi]; EM_EINVAL for anything else. */
static em_status parse_long(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return EM_EINVAL;
    *v = x;
    return EM_OK;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: make_model --out PATH [--preset stories15M|stories110M|long32k]\n"
        "       [--dim N] [--layers N] [--heads N] [--kv-heads N] [--ffn N] [--vocab N] [--ctx N]\n"
        "       [--type f32|f16|q8_0|q4_0|q4_1] [--embd-type T (token_embd/output; default "
        "--type)]\n"
        "       [--seed N]\n");
}

int main(int argc, char **argv)
{
    spec sp = k_presets[0].s;
    const char *out = NULL;
    /* Presets first so explicit flags override them regardless of order. */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--preset") != 0)
            continue;
        size_t k = 0, np = sizeof k_presets / sizeof k_presets[0];
        while (k < np && strcmp(k_presets[k].name, argv[i + 1]) != 0)
            k++;
        if (k == np) {
            fprintf(stderr, "make_model: unknown preset '%s'\n", argv[i + 1]);
            return 2;
        }
        sp = k_presets[k].s;
    }
    static const struct {
        const char *flag;
        size_t off;
        long lo, hi;
    } k_ints[] = {
        {"--dim", offsetof(spec, dim), 2, 1 << 16},
        {"--layers", offsetof(spec, layers), 1, 1024},
        {"--heads", offsetof(spec, heads), 1, 1024},
        {"--kv-heads", offsetof(spec, kv_heads), 1, 1024},
        {"--ffn", offsetof(spec, ffn), 1, 1 << 18},
        {"--vocab", offsetof(spec, vocab), 259, 1 << 22},
        {"--ctx", offsetof(spec, ctx), 1, 1 << 24},
    };
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage();
            return 0;
        }
        if (!v) {
            fprintf(stderr, "make_model: %s needs a value\n", f);
            usage();
            return 2;
        }
        i++;
        if (!strcmp(f, "--preset"))
            continue;
        if (!strcmp(f, "--out")) {
            out = v;
            continue;
        }
        if (!strcmp(f, "--type") || !strcmp(f, "--embd-type")) {
            size_t k = 0, nt = sizeof k_types / sizeof k_types[0];
            while (k < nt && strcmp(kern_dtype_name(k_types[k]), v) != 0)
                k++;
            if (k == nt) {
                fprintf(stderr, "make_model: %s must be f32, f16, q8_0, q4_0 or q4_1\n", f);
                return 2;
            }
            if (!strcmp(f, "--type"))
                sp.type = k_types[k];
            else
                sp.embd_type = (int32_t)k_types[k];
            continue;
        }
        if (!strcmp(f, "--seed")) {
            char *end;
            errno = 0;
            sp.seed = strtoull(v, &end, 10);
            if (errno || end == v || *end) {
                fprintf(stderr, "make_model: bad --seed '%s'\n", v);
                return 2;
            }
            continue;
        }
        size_t k = 0, nk = sizeof k_ints / sizeof k_ints[0];
        while (k < nk && strcmp(k_ints[k].flag, f) != 0)
            k++;
        if (k == nk) {
            fprintf(stderr, "make_model: unknown flag '%s'\n", f);
            usage();
            return 2;
        }
        if (parse_long(v, k_ints[k].lo, k_ints[k].hi, (long *)((char *)&sp + k_ints[k].off)) !=
            EM_OK) {
            fprintf(stderr, "make_model: %s must be an integer in [%ld, %ld]\n", f, k_ints[k].lo,
                    k_ints[k].hi);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "make_model: --out is required\n");
        usage();
        return 2;
    }
    long hd = sp.dim / sp.heads;
    if (sp.dim % sp.heads || hd % 2 || sp.heads % sp.kv_heads) {
        fprintf(stderr,
                "make_model: need dim %% heads == 0, an even head size and heads %% kv-heads == 0 "
                "(dim %ld heads %ld kv-heads %ld)\n",
                sp.dim, sp.heads, sp.kv_heads);
        return 2;
    }
    kern_dtype te = tensor_type(&sp, "token_embd.weight");
    if ((kern_dtype_is_quant((kern_dtype)sp.type) &&
         (sp.dim % 32 || sp.ffn % 32 || (sp.heads * hd) % 32)) ||
        (kern_dtype_is_quant(te) && sp.dim % 32)) {
        fprintf(stderr, "make_model: %s needs dim and ffn to be multiples of 32\n",
                kern_dtype_name(kern_dtype_is_quant((kern_dtype)sp.type) ? (int)sp.type : (int)te));
        return 2;
    }
    char err[512] = "";
    em_status st = build(&sp, out, err, sizeof err);
    if (st != EM_OK) {
        fprintf(stderr, "make_model: %s\n", err);
        return 1;
    }
    printf("wrote %s: dim %ld layers %ld heads %ld/%ld ffn %ld vocab %ld ctx %ld type %s embd %s "
           "seed %llu\n",
           out, sp.dim, sp.layers, sp.heads, sp.kv_heads, sp.ffn, sp.vocab, sp.ctx,
           kern_dtype_name((int)sp.type), kern_dtype_name((int)te), (unsigned long long)sp.seed);
    return 0;
}
