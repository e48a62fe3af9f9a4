/* Runs //tools:make_model (path in argv[1]) at small shapes and checks the output with the real
 * loader: hyper-parameters, tensor names/shapes/types, determinism per seed, weight statistics,
 * f16/q8_0 files holding the same weights as f32 within the format's rounding, q4_0/q4_1 files
 * holding exactly the f32 weights quantised by kern_quant_row (found byte for byte in the file;
 * the loader does not read q4 yet), a tokenizer round trip over the synthetic vocabulary, and
 * refusal of bad flags. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kernels/quant.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testutil/testutil.h"

static const char *g_tool;

static int run_tool(const char *args, const char *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --out '%s/%s' %s >/dev/null 2>&1", g_tool, tu_tmpdir(), out,
             args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *name, size_t *n)
{
    char path[1024];
    tu_tmp_path(path, sizeof path, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc(*n ? *n : 1);
    *n = fread(b, 1, *n, fp);
    fclose(fp);
    return b;
}

static model *load(const char *name)
{
    char path[1024], err[512] = "";
    tu_tmp_path(path, sizeof path, name);
    model *m = NULL;
    em_status st = model_load(path, &m, err, sizeof err);
    CHECK(st == EM_OK, "model_load %s: %s", name, err);
    return st == EM_OK ? m : NULL;
}

/* Element i of a tensor as f32 (f32, f16 or q8_0 blocks of 34 bytes). */
static float elem(const gguf_tensor_info *t, size_t i)
{
    if (t->type == GGML_TYPE_F32)
        return ((const float *)t->data)[i];
    if (t->type == GGML_TYPE_F16)
        return kern_f16_to_f32(((const uint16_t *)t->data)[i]);
    const uint8_t *b = (const uint8_t *)t->data + i / 32 * 34;
    uint16_t d;
    memcpy(&d, b, 2);
    return kern_f16_to_f32(d) * (float)(int8_t)b[2 + i % 32];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: make_model_test PATH_TO_MAKE_MODEL\n");
        return 1;
    }
    g_tool = argv[1];
    const char *shape = "--dim 64 --layers 3 --heads 4 --kv-heads 2 --ffn 96 --vocab 700 --ctx 256";
    char args[512];
    static const char *const k_types[] = {"f32", "f16", "q8_0"};
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "m_%s.gguf", k_types[k]);
        snprintf(args, sizeof args, "%s --type %s --seed 7", shape, k_types[k]);
        CHECK(run_tool(args, name) == 0, "make_model %s", args);
    }
    snprintf(args, sizeof args, "%s --type f32 --seed 7", shape);
    CHECK(run_tool(args, "m_f32_again.gguf") == 0, "rerun");
    snprintf(args, sizeof args, "%s --type f32 --seed 8", shape);
    CHECK(run_tool(args, "m_seed8.gguf") == 0, "seed 8");

    /* determinism: same seed -> same bytes; another seed -> other weights, same size */
    size_t n1 = 0, n2 = 0, n3 = 0;
    char *a = slurp("m_f32.gguf", &n1), *b = slurp("m_f32_again.gguf", &n2),
         *c = slurp("m_seed8.gguf", &n3);
    CHECK(a && b && c && n1 == n2 && n1 == n3 && n1 > 100000, "sizes %zu %zu %zu", n1, n2, n3);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "same seed, different bytes");
    CHECK(a && c && n1 == n3 && memcmp(a, c, n1) != 0, "different seeds, same bytes");
    free(a);
    free(b);
    free(c);

    model *m[3] = {load("m_f32.gguf"), load("m_f16.gguf"), load("m_q8_0.gguf")};
    if (m[0]) {
        const model_hparams *hp = &m[0]->hp;
        CHECK(hp->n_vocab == 700 && hp->dim == 64 && hp->n_layer == 3 && hp->n_head == 4 &&
                  hp->n_kv_head == 2 && hp->head_dim == 16 && hp->ffn_dim == 96 &&
                  hp->n_ctx == 256 && hp->rope_dim == 16 && fabsf(hp->norm_eps - 1e-5f) < 1e-9f &&
                  hp->bos_id == 1 && hp->eos_id == 2 && hp->unk_id == 0,
              "hparams");
        gguf_file *f = m[0]->gguf;
        CHECK(f->n_tensors == 3 + 9 * 3 && f->alignment == 32, "tensors %llu",
              (unsigned long long)f->n_tensors);
        /* names and shapes (ne[0] = input dim) like a llama.cpp conversion */
        static const struct {
            const char *name;
            uint64_t ne0, ne1;
        } k_shape[] = {{"token_embd.weight", 64, 700},       {"output_norm.weight", 64, 1},
                       {"output.weight", 64, 700},           {"blk.2.attn_q.weight", 64, 64},
                       {"blk.2.attn_k.weight", 64, 32},      {"blk.2.attn_v.weight", 64, 32},
                       {"blk.2.attn_output.weight", 64, 64}, {"blk.2.attn_norm.weight", 64, 1},
                       {"blk.2.ffn_gate.weight", 64, 96},    {"blk.2.ffn_down.weight", 96, 64},
                       {"blk.2.ffn_up.weight", 64, 96},      {"blk.2.ffn_norm.weight", 64, 1}};
        for (size_t i = 0; i < sizeof k_shape / sizeof k_shape[0]; i++) {
            for (int k = 0; k < 3; k++) {
                const gguf_tensor_info *t =
                    m[k] ? gguf_find_tensor(m[k]->gguf, k_shape[i].name) : NULL;
                int is_norm = k_shape[i].ne1 == 1;
                uint32_t want = is_norm || k == 0 ? GGML_TYPE_F32
                                : k == 1          ? GGML_TYPE_F16
                                                  : GGML_TYPE_Q8_0;
                CHECK(!m[k] || (t && t->ne[0] == k_shape[i].ne0 && t->ne[1] == k_shape[i].ne1 &&
                                t->type == want),
                      "%s in %s", k_shape[i].name, k_types[k]);
            }
        }
        uint32_t u;
        CHECK(gguf_get_u32(f, "llama.context_length", &u) == EM_OK && u == 256, "context_length");
        /* statistics: norms are 1, matrices N(0, 0.02) (ffn_down scaled by 1/sqrt(2*layers)) */
        const gguf_tensor_info *t = gguf_find_tensor(f, "blk.1.attn_norm.weight");
        int ones = 1;
        for (size_t i = 0; t && i < 64; i++)
            ones &= elem(t, i) == 1.0f;
        CHECK(t && ones, "norm weights are 1");
        static const struct {
            const char *name;
            double std;
        } k_std[] = {{"token_embd.weight", 0.02},
                     {"blk.0.attn_q.weight", 0.02},
                     {"blk.1.ffn_down.weight", 0.02 / sqrt(6.0)}};
        for (size_t s = 0; s < sizeof k_std / sizeof k_std[0]; s++) {
            t = gguf_find_tensor(f, k_std[s].name);
            size_t n = t ? t->nbytes / 4 : 0;
            double sum = 0, sq = 0;
            for (size_t i = 0; i < n; i++)
                sum += elem(t, i), sq += (double)elem(t, i) * elem(t, i);
            double mean = n ? sum / n : 1, sd = n ? sqrt(sq / n - mean * mean) : 0;
            /* n >= 6144 samples: the sample std is within 5% and the mean within 5 sigma/sqrt(n) */
            CHECK(n > 0 && fabs(sd / k_std[s].std - 1) < 0.05 &&
                      fabs(mean) < 5 * k_std[s].std / sqrt((double)n),
                  "%s: mean %g std %g (want %g)", k_std[s].name, mean, sd, k_std[s].std);
        }
        /* f16 and q8_0 hold the same weights: |f16 - f32| <= 2^-11 |x|, q8_0 within its block
         * rounding */
        for (int k = 1; k < 3; k++) {
            if (!m[k])
                continue;
            const gguf_tensor_info *r = gguf_find_tensor(f, "blk.0.ffn_gate.weight");
            const gguf_tensor_info *q = gguf_find_tensor(m[k]->gguf, "blk.0.ffn_gate.weight");
            double worst = 0;
            for (size_t i = 0; r && q && i < r->nbytes / 4; i++) {
                double amax =
                    0; /* of x's q8_0 block: rounding <= amax/254, f16 scale <= amax/2048 */
                for (size_t j = i / 32 * 32; j < i / 32 * 32 + 32; j++)
                    amax = fmax(amax, fabs(elem(r, j)));
                double x = elem(r, i), y = elem(q, i);
                double tol = k == 1 ? fabs(x) / 2048 + 1e-7 : amax / 254 + amax / 2048 + 1e-7;
                if (fabs(x - y) / tol > worst)
                    worst = fabs(x - y) / tol;
            }
            CHECK(r && q && worst <= 1.0, "%s vs f32: worst error / tolerance = %g", k_types[k],
                  worst);
        }
        /* the synthetic vocabulary works with the tokenizer */
        tokenizer *tk = NULL;
        char err[256] = "";
        CHECK(tok_create(f, &tk, err, sizeof err) == EM_OK, "tok_create: %s", err);
        if (tk) {
            const char *text = "Once upon a time, Lily (7) said: \"hi!\" \xe2\x98\x83 ok\n";
            int32_t ids[256];
            int n = 0;
            CHECK(tok_encode(tk, text, strlen(text), 1, ids, 256, &n) == EM_OK && n > 5,
                  "encode n %d", n);
            int normal = 0;
            for (int i = 1; i < n; i++)
                normal += ids[i] >= 259;
            CHECK(normal > n / 3, "mostly vocabulary pieces (%d of %d)", normal, n);
            char out[512];
            size_t o = 0;
            tok_stream s;
            tok_stream_init(&s, tk, ids[0]);
            for (int i = 1; i < n; i++)
                o += tok_stream_feed(&s, ids[i], out + o, sizeof out - o);
            tok_stream_flush(&s, out + o, sizeof out - o);
            CHECK(strcmp(out, text) == 0, "round trip '%s'", out);
            tok_free(tk);
        }
    }
    /* q4_0 / q4_1 (embeddings q8_0): each tensor is the f32 file's tensor quantised */
    static const char *const k_q4[] = {"q4_0", "q4_1"};
    static const kern_dtype k_q4t[] = {KERN_Q4_0, KERN_Q4_1};
    static const struct {
        const char *name;
        int embd;
    } k_qt[] = {{"token_embd.weight", 1},
                {"output.weight", 1},
                {"blk.0.ffn_gate.weight", 0},
                {"blk.2.attn_output.weight", 0},
                {"blk.1.ffn_down.weight", 0}};
    for (int k = 0; k < 2 && m[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "m_%s.gguf", k_q4[k]);
        snprintf(args, sizeof args, "%s --type %s --embd-type q8_0 --seed 7", shape, k_q4[k]);
        CHECK(run_tool(args, name) == 0, "make_model %s", args);
        size_t n = 0;
        char *file = slurp(name, &n);
        CHECK(file != NULL, "%s missing", name);
        for (size_t i = 0; file && i < sizeof k_qt / sizeof k_qt[0]; i++) {
            const gguf_tensor_info *t = gguf_find_tensor(m[0]->gguf, k_qt[i].name);
            kern_dtype dt = k_qt[i].embd ? KERN_Q8_0 : k_q4t[k];
            int cols = (int)t->ne[0], rows = (int)t->ne[1];
            size_t rb = kern_row_bytes(dt, cols);
            uint8_t *want = malloc(rb * (size_t)rows);
            for (int r = 0; r < rows; r++)
                kern_quant_row(dt, (const float *)t->data + (size_t)r * cols, want + r * rb, cols);
            CHECK(memmem(file, n, want, rb * (size_t)rows) != NULL,
                  "%s: %s is not the f32 tensor as %s", name, k_qt[i].name, kern_dtype_name(dt));
            free(want);
        }
        free(file);
    }
    for (int k = 0; k < 3; k++)
        model_free(m[k]);

    /* bad flags: usage error (2), nothing written */
    static const char *const k_bad[] = {"--dim 64 --heads 5",
                                        "--dim 64 --heads 4 --kv-heads 3",
                                        "--vocab 100",
                                        "--type q5_0",
                                        "--dim abc",
                                        "--layers 0",
                                        "--preset nope",
                                        "--dim 48 --heads 4 --type q8_0",
                                        "--bogus 1",
                                        "--dim",
                                        "--dim 48 --heads 4 --kv-heads 2 --type q4_1",
                                        "--dim 48 --heads 4 --kv-heads 2 --embd-type q4_0",
                                        "--embd-type f8"};
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        CHECK(run_tool(k_bad[i], "bad.gguf") == 2, "flags '%s' accepted", k_bad[i]);
        size_t n = 0;
        char *x = slurp("bad.gguf", &n);
        CHECK(x == NULL, "flags '%s' wrote a file", k_bad[i]);
        free(x);
    }
    TEST_END();
}
