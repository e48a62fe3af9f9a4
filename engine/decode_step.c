/* One sequence's per-token decode step (see decode_step.h). */
#include "engine/decode_step.h"

#include <stdlib.h>
#include <string.h>

#include "common/assert.h"

/* Bytes tok_stream_feed can write for one token: up to 7 held bytes of an unfinished character
 * plus the piece, each byte at worst one U+FFFD (3 bytes), and the NUL. */
static size_t piece_cap_for(const tokenizer *tok)
{
    return tok ? 3 * (sizeof(((tok_stream *)0)->pend) + tok_max_piece_bytes(tok)) + 1 : 1;
}

em_status decode_seq_init(decode_seq *d, const model_hparams *hp, const tokenizer *tok,
                          const sampler_params *sp, const stop_params *stop, const int32_t *prompt,
                          int n_prompt)
{
    memset(d, 0, sizeof *d);
    if (n_prompt <= 0 || n_prompt >= hp->n_ctx) {
        return EM_EINVAL;
    }
    d->tok = tok;
    d->n_prompt = d->n_hist = n_prompt;
    d->max_new = stop->max_tokens < hp->n_ctx - n_prompt ? stop->max_tokens : hp->n_ctx - n_prompt;
    d->piece_cap = piece_cap_for(tok);
    d->hist = malloc(sizeof(int32_t) * (size_t)(n_prompt + d->max_new + 1));
    d->piece = malloc(d->piece_cap);
    em_status st = d->hist && d->piece ? EM_OK : EM_ENOMEM;
    if (st == EM_OK) {
        st = sampler_init(&d->smp, sp, hp->n_vocab);
        d->have_smp = st == EM_OK;
    }
    if (st == EM_OK) {
        st = stop_state_init(&d->ss, stop, hp->eos_id);
        d->have_ss = st == EM_OK;
    }
    if (st != EM_OK) {
        decode_seq_free(d);
        return st;
    }
    memcpy(d->hist, prompt, sizeof(int32_t) * (size_t)n_prompt);
    if (tok) {
        tok_stream_init(&d->ts, tok, prompt[n_prompt - 1]);
    }
    return EM_OK;
}

void decode_seq_free(decode_seq *d)
{
    if (d->have_smp) {
        sampler_free(&d->smp);
    }
    if (d->have_ss) {
        stop_state_free(&d->ss);
    }
    free(d->hist);
    free(d->piece);
    memset(d, 0, sizeof *d);
}

const int32_t *decode_seq_ids(const decode_seq *d)
{
    return d->hist + d->n_prompt;
}

int decode_seq_n_ids(const decode_seq *d)
{
    return d->n_hist - d->n_prompt;
}

/* A finished generation: the detokenizer's held bytes (an unfinished character) become text,
 * which may still complete a stop string. */
static stop_reason flush_text(decode_seq *d, stop_reason why)
{
    if (!d->tok || why == STOP_STRING) {
        return why;
    }
    size_t n = tok_stream_flush(&d->ts, d->piece, d->piece_cap);
    if (n && stop_state_append_text(&d->ss, d->piece, n) == STOP_STRING) {
        return STOP_STRING;
    }
    return why;
}

void decode_seq_step(decode_seq *d, float *logits, decode_token *out)
{
    EM_ASSERT(decode_seq_n_ids(d) < d->max_new);
    int32_t id = sampler_sample(&d->smp, logits, d->hist, d->n_hist);
    d->hist[d->n_hist++] = id;
    size_t plen = d->tok ? tok_stream_feed(&d->ts, id, d->piece, d->piece_cap) : 0;
    stop_reason why = stop_state_feed(&d->ss, id, d->piece, plen);
    if (why == STOP_NONE && decode_seq_n_ids(d) >= d->max_new) {
        why = STOP_LENGTH;
    }
    if (why != STOP_NONE) {
        why = flush_text(d, why);
    }
    memset(out, 0, sizeof *out);
    out->id = id;
    out->reason = why;
    stop_state_take(&d->ss, why != STOP_NONE, &out->text, &out->text_len);
    if (why == STOP_STRING && d->ss.matched >= 0) {
        out->matched_stop = d->ss.p->stop[d->ss.matched];
    }
}
