/* model_load on well-formed GGUF files with hostile or inconsistent llama metadata and tensors
 * (built with gguf_write from a tiny valid base): wrong architecture, bad or missing
 * hyper-parameters, shapes that disagree with them, missing tensors, vocabulary mismatches,
 * and (issue 12 item 7: corrupt files that loaded and produced garbage) a context or UNK id out
 * of range, NaN/Inf in a norm vector or a matrix, a NaN block scale in a Q4_1 tensor.
 * Table-driven: each row changes one thing and states whether the load must succeed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf_write.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testutil/testutil.h"

/* kind: 'u' u32 value, 'i' i32, 'f' f32, 's' string, '-' drop the key/tensor, 'n' tensor ne[1],
 * 't' tensor type, 'v' vocabulary size of the tokens array, 'x' f32 element 3 of the tensor set
 * to num, 'q' the tensor in Q4_1 with block 1's scale a NaN. NULL key = the unchanged base. */
typedef struct {
    const char *key;
    char kind;
    double num;
    const char *str;
    int ok;
} mcase;

static const mcase k_cases[] = {
    {NULL, 0, 0, NULL, 1},
    {"general.architecture", 's', 0, "gpt2", 0},
    {"general.architecture", '-', 0, NULL, 0},
    {"general.architecture", 'u', 7, NULL, 0},
    {"llama.embedding_length", '-', 0, NULL, 0},
    {"llama.embedding_length", 's', 0, "32", 0},
    {"llama.embedding_length", 'u', 30, NULL, 0}, /* not divisible by 4 heads */
    {"llama.embedding_length", 'u', 64, NULL, 0}, /* tensors are 32 wide */
    {"llama.embedding_length", 'u', 0xffffffffu, NULL, 0},
    {"llama.attention.head_count", 'u', 0, NULL, 0},
    {"llama.attention.head_count", 'u', 3, NULL, 0},
    {"llama.attention.head_count_kv", 'u', 3, NULL, 0},
    {"llama.attention.head_count_kv", 'u', 8, NULL, 0}, /* more KV heads than heads */
    {"llama.attention.head_count_kv", 'u', 4, NULL, 0}, /* attn_k is 2 heads wide */
    {"llama.attention.head_count_kv", 'i', -2, NULL, 0},
    {"llama.block_count", 'u', 2, NULL, 0}, /* blk.1.* missing */
    {"llama.block_count", 'u', 0, NULL, 0},
    {"llama.block_count", 'u', 5000, NULL, 0},
    {"llama.block_count", 'u', (1 << 24) + 1, NULL, 0},
    {"llama.feed_forward_length", 'u', 48, NULL, 0},
    {"llama.context_length", 'u', 0, NULL, 0},
    {"llama.rope.dimension_count", 'u', 3, NULL, 0},
    {"llama.rope.dimension_count", 'u', 16, NULL, 0}, /* > head size 8 */
    {"llama.rope.dimension_count", 'u', 4, NULL, 1},  /* partial rotary is allowed */
    {"llama.attention.layer_norm_rms_epsilon", 'f', -1, NULL, 0},
    {"llama.attention.layer_norm_rms_epsilon", 'f', NAN, NULL, 0},
    {"llama.attention.layer_norm_rms_epsilon", 's', 0, "1e-5", 0},
    {"llama.rope.freq_base", 'f', 0.5, NULL, 0},
    {"llama.rope.freq_base", 'f', 500000, NULL, 1},
    {"tokenizer.ggml.bos_token_id", 'u', 260, NULL, 0},
    {"tokenizer.ggml.eos_token_id", 'u', 1000000, NULL, 0},
    {"tokenizer.ggml.tokens", 'v', 259, NULL, 0}, /* embedding has 260 rows */
    {"token_embd.weight", '-', 0, NULL, 0},
    {"token_embd.weight", 'n', 261, NULL, 0},
    {"output.weight", '-', 0, NULL, 1}, /* tied embeddings */
    {"output.weight", 'n', 100, NULL, 0},
    {"output_norm.weight", '-', 0, NULL, 0},
    {"blk.0.attn_k.weight", 'n', 32, NULL, 0},
    {"blk.0.ffn_up.weight", '-', 0, NULL, 0},
    {"blk.0.ffn_down.weight", 'n', 48, NULL, 0},
    {"blk.0.attn_q.weight", 't', GGML_TYPE_Q8_0, NULL, 1},
    {"blk.0.attn_q.weight", 't', GGML_TYPE_Q4_0, NULL, 1},
    {"blk.0.attn_q.weight", 't', GGML_TYPE_Q4_1, NULL, 1},
    {"blk.0.ffn_down.weight", 't', GGML_TYPE_Q4_1, NULL, 0}, /* 40 columns: not whole blocks */
    {"blk.0.attn_q.weight", 't', 6, "q5_0", 0},              /* a ggml type we cannot compute */
    {"blk.0.attn_q.weight", 't', 30, "bf16", 0},
    {"blk.0.attn_norm.weight", 't', GGML_TYPE_F16, NULL, 1},
    {"token_embd.weight", 't', GGML_TYPE_F16, NULL, 1},
    {"llama.context_length", 'u', 0x7fffffff, NULL, 0},
    {"tokenizer.ggml.unknown_token_id", 'u', 5000, NULL, 0},
    {"blk.0.attn_norm.weight", 'x', NAN, NULL, 0},
    {"output_norm.weight", 'x', INFINITY, NULL, 0},
    {"blk.0.ffn_up.weight", 'x', -INFINITY, NULL, 0},
    {"token_embd.weight", 'x', NAN, NULL, 0},
    {"blk.0.attn_q.weight", 'q', 0, NULL, 0},
    {"blk.0.attn_q.weight", 'x', 1e30, NULL, 1}, /* large but finite */
};

static const mcase *g_c;

static int is(const char *key)
{
    return g_c->key && strcmp(g_c->key, key) == 0;
}

static void meta_u32(gguf_writer *w, const char *key, uint32_t v)
{
    if (!is(key)) {
        gguf_writer_set_u32(w, key, v);
        return;
    }
    switch (g_c->kind) {
    case 'u':
        gguf_writer_set_u32(w, key, (uint32_t)g_c->num);
        break;
    case 'i':
        gguf_writer_set_i32(w, key, (int32_t)g_c->num);
        break;
    case 'f':
        gguf_writer_set_f32(w, key, (float)g_c->num);
        break;
    case 's':
        gguf_writer_set_str(w, key, g_c->str);
        break;
    default:
        break; /* '-' */
    }
}

static void meta_f32(gguf_writer *w, const char *key, float v)
{
    if (!is(key)) {
        gguf_writer_set_f32(w, key, v);
        return;
    }
    if (g_c->kind == 'f')
        gguf_writer_set_f32(w, key, (float)g_c->num);
    if (g_c->kind == 's')
        gguf_writer_set_str(w, key, g_c->str);
}

static void meta_str(gguf_writer *w, const char *key, const char *v)
{
    if (!is(key)) {
        gguf_writer_set_str(w, key, v);
        return;
    }
    if (g_c->kind == 's')
        gguf_writer_set_str(w, key, g_c->str);
    if (g_c->kind == 'u')
        gguf_writer_set_u32(w, key, (uint32_t)g_c->num);
}

static void tensor(gguf_writer *w, const char *name, uint64_t ne0, uint64_t ne1)
{
    uint32_t type = GGML_TYPE_F32;
    if (is(name)) {
        if (g_c->kind == '-')
            return;
        if (g_c->kind == 'n')
            ne1 = (uint64_t)g_c->num;
        if (g_c->kind == 't')
            type = (uint32_t)g_c->num;
        if (g_c->kind == 'q')
            type = GGML_TYPE_Q4_1;
    }
    uint64_t ne[2] = {ne0, ne1};
    CHECK(gguf_writer_add_tensor(w, name, ne1 > 1 ? 2 : 1, ne, type, NULL) == EM_OK, "add %s",
          name);
}

static em_status fill(void *user, int idx, const char *name, void *dst, size_t nbytes)
{
    (void)user;
    (void)name;
    for (size_t i = 0; i < nbytes; i++)
        ((uint8_t *)dst)[i] = (uint8_t)(i * 7 + (size_t)idx) & 0x3f; /* finite f32/f16 */
    if (g_c->key && strcmp(name, g_c->key) == 0 && g_c->kind == 'x' && nbytes >= 16) {
        float v = (float)g_c->num;
        memcpy((uint8_t *)dst + 12, &v, 4);
    }
    if (g_c->key && strcmp(name, g_c->key) == 0 && g_c->kind == 'q' && nbytes >= 40) {
        ((uint8_t *)dst)[20] = 0x00; /* block 1's f16 scale d = 0x7e00, a NaN */
        ((uint8_t *)dst)[21] = 0x7e;
    }
    return EM_OK;
}

/* Base: dim 32, 1 layer, 4 heads (size 8), 2 KV heads, ffn 40, vocab 260 (specials, bytes, "▁"). */
static void build(gguf_writer *w)
{
    meta_str(w, "general.architecture", "llama");
    meta_u32(w, "llama.context_length", 128);
    meta_u32(w, "llama.embedding_length", 32);
    meta_u32(w, "llama.block_count", 1);
    meta_u32(w, "llama.feed_forward_length", 40);
    meta_u32(w, "llama.rope.dimension_count", 8);
    meta_u32(w, "llama.attention.head_count", 4);
    meta_u32(w, "llama.attention.head_count_kv", 2);
    meta_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (is("llama.rope.freq_base"))
        meta_f32(w, "llama.rope.freq_base", 10000.f);
    meta_str(w, "tokenizer.ggml.model", "llama");
    int nv = is("tokenizer.ggml.tokens") ? (int)g_c->num : 260;
    char *toks[260], names[260][8];
    float scores[260] = {0};
    int32_t types[260];
    for (int i = 0; i < nv; i++) {
        if (i < 3)
            snprintf(names[i], 8, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259)
            snprintf(names[i], 8, "<0x%02X>", i - 3);
        else
            snprintf(names[i], 8, "\xe2\x96\x81");
        toks[i] = names[i];
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)nv);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)nv);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)nv);
    meta_u32(w, "tokenizer.ggml.bos_token_id", 1);
    meta_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (is("tokenizer.ggml.unknown_token_id"))
        meta_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    tensor(w, "token_embd.weight", 32, 260);
    tensor(w, "output_norm.weight", 32, 1);
    tensor(w, "output.weight", 32, 260);
    tensor(w, "blk.0.attn_q.weight", 32, 32);
    tensor(w, "blk.0.attn_k.weight", 32, 16);
    tensor(w, "blk.0.attn_v.weight", 32, 16);
    tensor(w, "blk.0.attn_output.weight", 32, 32);
    tensor(w, "blk.0.attn_norm.weight", 32, 1);
    tensor(w, "blk.0.ffn_gate.weight", 32, 40);
    tensor(w, "blk.0.ffn_down.weight", 40, 32);
    tensor(w, "blk.0.ffn_up.weight", 32, 40);
    tensor(w, "blk.0.ffn_norm.weight", 32, 1);
}

/* A Q4_1 tensor cut in the middle (file truncated inside its data): a clear error. */
static void test_truncated_quant(const char *path)
{
    static const mcase q41 = {"blk.0.attn_q.weight", 't', GGML_TYPE_Q4_1, NULL, 1};
    char err[512] = "";
    g_c = &q41;
    gguf_writer *w;
    if (gguf_writer_create(32, &w) != EM_OK)
        return;
    build(w);
    CHECK(gguf_writer_write_file(w, path, fill, NULL, err, sizeof err) == EM_OK, "write: %s", err);
    gguf_writer_free(w);
    gguf_file *f = NULL;
    CHECK(gguf_open(path, &f, err, sizeof err) == EM_OK, "open: %s", err);
    if (!f)
        return;
    const gguf_tensor_info *t = gguf_find_tensor(f, "blk.0.attn_q.weight");
    long cut = t ? (long)((const char *)t->data - (const char *)f->map) + (long)t->nbytes / 2 : 0;
    CHECK(t && t->type == GGML_TYPE_Q4_1 && t->nbytes == 32 * 20,
          "q4_1 tensor of 32 rows x 1 block");
    gguf_close(f);
    CHECK(cut > 0 && truncate(path, cut) == 0, "truncate");
    model *m = NULL;
    err[0] = 0;
    em_status st = model_load(path, &m, err, sizeof err);
    CHECK(st != EM_OK && m == NULL && err[0], "truncated q4_1 tensor loaded (status %d)", st);
    printf("truncated q4_1 tensor: %s\n", err);
    model_free(m);
}

int main(void)
{
    char path[1024], err[512];
    tu_tmp_path(path, sizeof path, "hostile_model.gguf");
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        g_c = &k_cases[i];
        gguf_writer *w;
        if (gguf_writer_create(32, &w) != EM_OK)
            return 1;
        build(w);
        err[0] = 0;
        CHECK(gguf_writer_write_file(w, path, fill, NULL, err, sizeof err) == EM_OK, "write: %s",
              err);
        gguf_writer_free(w);
        model *m = NULL;
        err[0] = 0;
        em_status st = model_load(path, &m, err, sizeof err);
        const char *what = g_c->key ? g_c->key : "(base)";
        if (g_c->ok) {
            CHECK(st == EM_OK, "case %zu %s %c: rejected: %s", i, what, g_c->kind, err);
            if (m) {
                CHECK(m->hp.n_vocab == 260 && m->hp.dim == 32 && m->hp.n_kv_head == 2 &&
                          m->hp.head_dim == 8 && m->output.data != NULL,
                      "case %zu hparams", i);
                tokenizer *t = NULL;
                CHECK(tok_create(m->gguf, &t, err, sizeof err) == EM_OK, "case %zu tok_create: %s",
                      i, err);
                tok_free(t);
            }
        } else {
            CHECK(st != EM_OK && err[0], "case %zu %s %c: accepted (status %d)", i, what, g_c->kind,
                  st);
            if (g_c->kind == 'x' || g_c->kind == 'q') { /* the error names the tensor */
                char base[64];
                snprintf(base, sizeof base, "%.*s", (int)(strlen(g_c->key) - 7), g_c->key);
                CHECK(strstr(err, "NaN or Inf") && strstr(err, base), "case %zu: message '%s'", i,
                      err);
                printf("%s: %s\n", g_c->key, err);
            }
            if (g_c->kind == 't' && g_c->str) { /* the error names the tensor and its type */
                CHECK(st == EM_EUNSUPPORTED && strstr(err, g_c->key) && strstr(err, g_c->str),
                      "case %zu: unsupported type message '%s'", i, err);
            }
        }
        model_free(m);
    }
    test_truncated_quant(path);
    remove(path);
    printf("model_hostile_test: %zu cases\n", sizeof k_cases / sizeof k_cases[0]);
    TEST_END();
}
