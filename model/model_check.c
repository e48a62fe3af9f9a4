/* Load-time sanity of a model's numbers (see model_check.h). */
#include "model/model_check.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels/quant.h"
#include "model/model.h"

em_status model_check_hparams(const model_hparams *hp, char *err, size_t errlen)
{
    const char *what = NULL;
    if (hp->n_ctx < 1 || hp->n_ctx > MODEL_MAX_CTX) {
        what = "context length";
    } else if (hp->n_vocab < 1 || hp->n_vocab > (1 << 24)) {
        what = "vocabulary size";
    } else if (hp->dim > MODEL_MAX_DIM || hp->ffn_dim > 4 * MODEL_MAX_DIM) {
        what = "embedding or feed-forward size";
    } else if (hp->n_kv_head < 1 || hp->n_kv_head > hp->n_head || hp->head_dim < 2) {
        what = "head counts";
    } else if (hp->bos_id < 0 || hp->bos_id >= hp->n_vocab || hp->eos_id < 0 ||
               hp->eos_id >= hp->n_vocab || hp->unk_id < 0 || hp->unk_id >= hp->n_vocab) {
        what = "BOS/EOS/UNK ids";
    }
    if (what) {
        snprintf(err, errlen,
                 "%s out of range (context %d, vocabulary %d, dim %d, ffn %d, heads %d/%d, "
                 "BOS %d, EOS %d, UNK %d)",
                 what, hp->n_ctx, hp->n_vocab, hp->dim, hp->ffn_dim, hp->n_head, hp->n_kv_head,
                 hp->bos_id, hp->eos_id, hp->unk_id);
        return EM_EINVAL;
    }
    return EM_OK;
}

static int f16_bad(const uint8_t *p)
{
    return (p[1] & 0x7c) == 0x7c; /* exponent all ones: Inf or NaN */
}

static int f32_bad(const uint8_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* 1 when w holds a non-finite element or block scale (*at: the index of the first), else 0. */
static int first_bad(const kern_weight *w, size_t *at)
{
    size_t bytes = kern_row_bytes(w->dtype, w->cols) * (size_t)w->rows;
    size_t bb = kern_dtype_block_bytes(w->dtype);
    const uint8_t *p = w->data;
    if (p == NULL || bb == 0) {
        return 0;
    }
    if (w->dtype == KERN_F32 || w->dtype == KERN_F16) { /* every element: a tight loop */
        for (size_t o = 0; o + bb <= bytes; o += bb) {
            if (bb == 4 ? f32_bad(p + o) : f16_bad(p + o)) {
                *at = o / bb;
                return 1;
            }
        }
        return 0;
    }
    for (size_t o = 0; o + bb <= bytes; o += bb) {
        const uint8_t *b = p + o;
        int bad = 0;
        switch (w->dtype) {
        case KERN_F32:
            bad = f32_bad(b);
            break;
        case KERN_Q4_1:
        case KERN_Q4_K:
            bad = f16_bad(b) || f16_bad(b + 2); /* d and m / dmin */
            break;
        case KERN_Q6_K:
            bad = f16_bad(b + 208);
            break;
        default: /* f16, Q4_0, Q8_0: the f16 first */
            bad = f16_bad(b);
            break;
        }
        if (bad) {
            *at = o / bb;
            return 1;
        }
    }
    return 0;
}

static em_status check(const kern_weight *w, const char *name, int layer, char *err, size_t errlen)
{
    size_t at = 0;
    if (!first_bad(w, &at)) {
        return EM_OK;
    }
    char full[64];
    if (layer >= 0) {
        snprintf(full, sizeof full, "blk.%d.%s", layer, name);
    } else {
        snprintf(full, sizeof full, "%s", name);
    }
    snprintf(err, errlen, "tensor %s holds NaN or Inf (%s %zu): the file is corrupt", full,
             kern_dtype_block_elems(w->dtype) > 1 ? "the scale of block" : "element", at);
    return EM_EINVAL;
}

em_status model_check_finite(const model *m, char *err, size_t errlen)
{
    em_status st = check(&m->tok_embd, "token_embd", -1, err, errlen);
    if (st == EM_OK) {
        st = check(&m->out_norm, "output_norm", -1, err, errlen);
    }
    if (st == EM_OK && m->output.data != m->tok_embd.data) {
        st = check(&m->output, "output", -1, err, errlen);
    }
    for (int l = 0; st == EM_OK && l < m->hp.n_layer; l++) {
        const model_layer *L = &m->layers[l];
        const struct {
            const kern_weight *w;
            const char *name;
        } t[] = {{&L->attn_norm, "attn_norm"}, {&L->ffn_norm, "ffn_norm"}, {&L->wq, "attn_q"},
                 {&L->wk, "attn_k"},           {&L->wv, "attn_v"},         {&L->wo, "attn_output"},
                 {&L->w1, "ffn_gate"},         {&L->w3, "ffn_up"},         {&L->w2, "ffn_down"}};
        for (size_t i = 0; st == EM_OK && i < sizeof t / sizeof t[0]; i++) {
            st = check(t[i].w, t[i].name, l, err, errlen);
        }
    }
    return st;
}
