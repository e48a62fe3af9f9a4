/* Binds a llama GGUF to model weights: reads hyper-parameters, checks every tensor's shape and
 * type, keeps matrices in the mapping in their own type (f32, f16, q4_0, q4_1, q8_0, q4_K,
 * q6_K: kernels compute on the quantized blocks) and makes f32 copies of the norm vectors. */
#include "model/model.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kern.h"
#include "kernels/quant.h"
#include "model/ggml_types.h"
#include "model/model_check.h"

static em_status get_u32(const gguf_file *f, const char *key, int required, int def, int *out,
                         char *err, size_t errlen)
{
    uint32_t v;
    if (gguf_get_u32(f, key, &v) != EM_OK) {
        if (required || gguf_find_kv(f, key)) {
            snprintf(err, errlen, "missing or invalid metadata '%s'", key);
            return EM_EINVAL;
        }
        *out = def;
        return EM_OK;
    }
    if (v > (1u << 24)) {
        snprintf(err, errlen, "metadata '%s' = %u is out of range", key, v);
        return EM_EINVAL;
    }
    *out = (int)v;
    return EM_OK;
}

static em_status read_hparams(const gguf_file *f, model_hparams *hp, char *err, size_t errlen)
{
    const gguf_kv *arch = gguf_find_kv(f, "general.architecture");
    gguf_str a;
    if (!arch || gguf_get_arr_str(f, arch, 0, &a) != EM_OK || a.len != 5 ||
        memcmp(a.data, "llama", 5) != 0) {
        snprintf(err, errlen, "general.architecture is not 'llama'");
        return EM_EINVAL;
    }
    em_status st;
    if ((st = get_u32(f, "llama.embedding_length", 1, 0, &hp->dim, err, errlen)) ||
        (st = get_u32(f, "llama.block_count", 1, 0, &hp->n_layer, err, errlen)) ||
        (st = get_u32(f, "llama.attention.head_count", 1, 0, &hp->n_head, err, errlen)) ||
        (st = get_u32(f, "llama.feed_forward_length", 1, 0, &hp->ffn_dim, err, errlen)) ||
        (st = get_u32(f, "llama.context_length", 0, 2048, &hp->n_ctx, err, errlen)) ||
        (st = get_u32(f, "llama.attention.head_count_kv", 0, 0, &hp->n_kv_head, err, errlen)) ||
        (st = get_u32(f, "tokenizer.ggml.bos_token_id", 0, 1, &hp->bos_id, err, errlen)) ||
        (st = get_u32(f, "tokenizer.ggml.eos_token_id", 0, 2, &hp->eos_id, err, errlen)) ||
        (st = get_u32(f, "tokenizer.ggml.unknown_token_id", 0, 0, &hp->unk_id, err, errlen))) {
        return st;
    }
    if (hp->n_kv_head == 0)
        hp->n_kv_head = hp->n_head;
    if (hp->dim <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->ffn_dim <= 0 || hp->n_ctx <= 0 ||
        hp->dim % hp->n_head || hp->n_head % hp->n_kv_head || hp->n_layer > 1024) {
        snprintf(err, errlen,
                 "inconsistent hyper-parameters (dim %d, layers %d, heads %d/%d, ffn %d)", hp->dim,
                 hp->n_layer, hp->n_head, hp->n_kv_head, hp->ffn_dim);
        return EM_EINVAL;
    }
    hp->head_dim = hp->dim / hp->n_head;
    if ((st = get_u32(f, "llama.rope.dimension_count", 0, hp->head_dim, &hp->rope_dim, err,
                      errlen))) {
        return st;
    }
    if (hp->rope_dim <= 0 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2) {
        snprintf(err, errlen, "bad rope dimension %d for head size %d", hp->rope_dim, hp->head_dim);
        return EM_EINVAL;
    }
    hp->norm_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    if (gguf_find_kv(f, "llama.attention.layer_norm_rms_epsilon") &&
        gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &hp->norm_eps) != EM_OK) {
        snprintf(err, errlen, "bad llama.attention.layer_norm_rms_epsilon");
        return EM_EINVAL;
    }
    if (gguf_find_kv(f, "llama.rope.freq_base") &&
        gguf_get_f32(f, "llama.rope.freq_base", &hp->rope_base) != EM_OK) {
        snprintf(err, errlen, "bad llama.rope.freq_base");
        return EM_EINVAL;
    }
    if (!(hp->norm_eps > 0.0f && hp->norm_eps < 1.0f) || !(hp->rope_base > 1.0f)) {
        snprintf(err, errlen, "norm epsilon or rope base out of range");
        return EM_EINVAL;
    }
    return EM_OK;
}

/* An f32 copy owned by the model (vectors stored in another type). */
static float *own_f32(model *m, size_t n)
{
    float *dst = malloc(n * sizeof(float));
    void **no = realloc(m->owned, sizeof(void *) * (size_t)(m->n_owned + 1));
    if (!dst || !no) {
        free(dst);
        if (no)
            m->owned = no;
        return NULL;
    }
    m->owned = no;
    m->owned[m->n_owned++] = dst;
    return dst;
}

/* Binds tensor `name` of shape (rows, cols). Matrices stay in the mapping in their own type
 * (f32, f16 or a block format of kernels/quant.h); vectors (vec_only) become f32. */
static em_status bind(model *m, const char *name, int optional, int rows, int cols, int vec_only,
                      kern_weight *w, char *err, size_t errlen)
{
    const gguf_tensor_info *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (optional)
            return EM_OK;
        snprintf(err, errlen, "missing tensor '%s'", name);
        return EM_EINVAL;
    }
    if (t->ne[0] != (uint64_t)cols || t->ne[1] != (uint64_t)rows || t->ne[2] != 1 ||
        t->ne[3] != 1) {
        snprintf(err, errlen, "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%d, %d]",
                 name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                 (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], cols, rows);
        return EM_EINVAL;
    }
    if (!kern_dtype_valid((int)t->type)) {
        ggml_type_info ti = ggml_type_get(t->type);
        snprintf(err, errlen,
                 "tensor '%s' has type %s (ggml type %u), which emserve cannot compute with "
                 "(supported: f32 f16 q4_0 q4_1 q8_0 q4_K q6_K)",
                 name, ti.name ? ti.name : "?", t->type);
        return EM_EUNSUPPORTED;
    }
    kern_dtype dt = (kern_dtype)t->type;
    if (kern_row_bytes(dt, cols) == 0 || kern_row_bytes(dt, cols) * (size_t)rows != t->nbytes) {
        snprintf(err, errlen, "tensor '%s': %d columns are not whole %s blocks", name, cols,
                 kern_dtype_name(dt));
        return EM_EINVAL;
    }
    w->rows = rows;
    w->cols = cols;
    if (!vec_only || dt == KERN_F32) {
        w->data = t->data;
        w->dtype = dt;
        return EM_OK;
    }
    float *dst = own_f32(m, (size_t)rows * cols);
    if (!dst)
        return EM_ENOMEM;
    for (int r = 0; r < rows; r++) {
        kern_dequant_row(dt, (const char *)t->data + (size_t)r * kern_row_bytes(dt, cols),
                         dst + (size_t)r * cols, cols);
    }
    w->data = dst;
    w->dtype = KERN_F32;
    return EM_OK;
}

/* Column slices of ffn_down per unit must be whole blocks: the FFN split's granularity. */
static int ffn_align(const model *m)
{
    int a = 1;
    for (int l = 0; l < m->hp.n_layer; l++) {
        int b = kern_dtype_block_elems(m->layers[l].w2.dtype);
        if (b > a)
            a = b;
    }
    return a;
}

static em_status bind_all(model *m, char *err, size_t errlen)
{
    const model_hparams *hp = &m->hp;
    int hd = hp->head_dim, dq = hp->n_head * hd, dkv = hp->n_kv_head * hd;
    em_status st;
    if ((st =
             bind(m, "token_embd.weight", 0, hp->n_vocab, hp->dim, 0, &m->tok_embd, err, errlen)) ||
        (st = bind(m, "output_norm.weight", 0, 1, hp->dim, 1, &m->out_norm, err, errlen)) ||
        (st = bind(m, "output.weight", 1, hp->n_vocab, hp->dim, 0, &m->output, err, errlen))) {
        return st;
    }
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings */
    for (int l = 0; l < hp->n_layer; l++) {
        model_layer *L = &m->layers[l];
        char nm[96];
#define B(field, suffix, rows, cols, vec)                                        \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, suffix);                      \
    if ((st = bind(m, nm, 0, rows, cols, vec, &L->field, err, errlen)) != EM_OK) \
        return st;
        B(attn_norm, "attn_norm", 1, hp->dim, 1)
        B(wq, "attn_q", dq, hp->dim, 0)
        B(wk, "attn_k", dkv, hp->dim, 0)
        B(wv, "attn_v", dkv, hp->dim, 0)
        B(wo, "attn_output", hp->dim, dq, 0)
        B(ffn_norm, "ffn_norm", 1, hp->dim, 1)
        B(w1, "ffn_gate", hp->ffn_dim, hp->dim, 0)
        B(w3, "ffn_up", hp->ffn_dim, hp->dim, 0)
        B(w2, "ffn_down", hp->dim, hp->ffn_dim, 0)
#undef B
    }
    return EM_OK;
}

/* Under `bazel run` the process runs in its runfiles tree; a relative path the user typed is
 * relative to BUILD_WORKING_DIRECTORY. */
static const char *resolve_path(const char *path, char *buf, size_t cap)
{
    const char *wd = getenv("BUILD_WORKING_DIRECTORY");
    if (path[0] == '/' || access(path, F_OK) == 0 || !wd || !*wd)
        return path;
    snprintf(buf, cap, "%s/%s", wd, path);
    return access(buf, F_OK) == 0 ? buf : path;
}

em_status model_load(const char *path, model **out, char *err, size_t errlen)
{
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m)
        return EM_ENOMEM;
    char rbuf[4096];
    path = resolve_path(path, rbuf, sizeof rbuf);
    em_status st = gguf_open(path, &m->gguf, err, errlen);
    if (st == EM_OK)
        st = read_hparams(m->gguf, &m->hp, err, errlen);
    if (st == EM_OK) {
        const gguf_tensor_info *te = gguf_find_tensor(m->gguf, "token_embd.weight");
        const gguf_kv *toks = gguf_find_kv(m->gguf, "tokenizer.ggml.tokens");
        if (!te || te->ne[1] > INT_MAX) {
            snprintf(err, errlen, "missing tensor 'token_embd.weight'");
            st = EM_EINVAL;
        } else {
            m->hp.n_vocab = (int)te->ne[1];
            if (toks && toks->arr_len != (uint64_t)m->hp.n_vocab) {
                snprintf(err, errlen, "vocabulary has %llu tokens but token_embd has %d rows",
                         (unsigned long long)toks->arr_len, m->hp.n_vocab);
                st = EM_EINVAL;
            }
        }
    }
    if (st == EM_OK && (m->hp.bos_id >= m->hp.n_vocab || m->hp.eos_id >= m->hp.n_vocab)) {
        snprintf(err, errlen, "BOS/EOS ids out of the vocabulary");
        st = EM_EINVAL;
    }
    if (st == EM_OK)
        st = model_check_hparams(&m->hp, err, errlen); /* issue 12: sanity */
    if (st == EM_OK) {
        m->layers = calloc((size_t)m->hp.n_layer, sizeof *m->layers);
        st = m->layers ? bind_all(m, err, errlen) : EM_ENOMEM;
    }
    if (st == EM_OK)
        st = model_check_finite(m, err, errlen); /* issue 12: no NaN/Inf */
    if (st == EM_OK) {
        m->hp.ffn_align = ffn_align(m);
        if (m->hp.ffn_dim % m->hp.ffn_align != 0) {
            snprintf(err, errlen, "feed-forward size %d is not whole blocks of %d", m->hp.ffn_dim,
                     m->hp.ffn_align);
            st = EM_EINVAL;
        }
    }
    if (st != EM_OK) {
        model_free(m);
        return st;
    }
    *out = m;
    return EM_OK;
}

void model_free(model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    gguf_close(m->gguf);
    free(m);
}

/* Looks for shared/models/stories260K.gguf in dir and its ancestors (dir is modified). */
static const char *search_up(char *dir, char *buf, size_t cap)
{
    for (int depth = 0; depth < 12; depth++) {
        snprintf(buf, cap, "%s/shared/models/stories260K.gguf", dir);
        if (access(buf, R_OK) == 0)
            return buf;
        snprintf(buf, cap, "%s/../shared/models/stories260K.gguf", dir);
        if (access(buf, R_OK) == 0)
            return buf;
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
            break;
        *slash = '\0';
    }
    return NULL;
}

const char *model_find_default(void)
{
    static char path[4096];
    const char *env = getenv("EMSERVE_MODEL");
    if (env && *env)
        return env;
    const char *dir = getenv("EMSERVE_MODEL_DIR");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : MODEL_INSTALL_DIR, MODEL_DEFAULT_FILE);
    return access(path, R_OK) == 0 ? path : NULL;
}

const char *model_find_test_small(void)
{
    static char path[4096];
    const char *env = getenv("EMSERVE_TEST_MODEL");
    if (env && *env)
        return env;
    char dir[4096];
    const char *wd = getenv("BUILD_WORKING_DIRECTORY"); /* set by `bazel run` */
    if (wd && *wd) {
        snprintf(dir, sizeof dir, "%s", wd);
        if (search_up(dir, path, sizeof path))
            return path;
    }
    if (getcwd(dir, sizeof dir) && search_up(dir, path, sizeof path))
        return path;
    /* Under Bazel the cwd is the runfiles tree; the executable's real path lies in the
     * output base, so also search upward from the workspace the runfiles link back to. */
    const char *srcdir = getenv("TEST_SRCDIR");
    if (srcdir) {
        char ws[4096];
        snprintf(dir, sizeof dir, "%s/emserve/WORKSPACE", srcdir);
        if (realpath(dir, ws)) {
            char *slash = strrchr(ws, '/');
            if (slash)
                *slash = '\0';
            if (search_up(ws, path, sizeof path))
                return path;
        }
    }
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n > 0) {
        dir[n] = '\0';
        if (search_up(dir, path, sizeof path))
            return path;
    }
    return NULL;
}
