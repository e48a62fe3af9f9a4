/* Long-context harness on a real model (SmolLM2): end-of-prompt compression with the answer
 * predicted from the compressed cache only, decode-time KL streaming, bootstrap intervals.
 *
 * End-of-prompt protocol (lc_prompt_cache + lc_answer_fork):
 *   1. tokens ids[0, n-1) of the prompt are prefilled ONCE with the full cache, attention
 *      statistics on and a ring of recent attention rows large enough for every method;
 *   2. per method the cache is forked (ems_cache_clone, ring trimmed to the method's w_loc) and
 *      compressed with ems_policy_step(EMS_PHASE_PREFILL_END);
 *   3. the LAST prompt token ids[n-1] is then run through the compressed cache (its query sees
 *      only what the policy kept, plus its own K/V); its logits give the first answer token,
 *      followed by ems_policy_step(EMS_PHASE_DECODE), and greedy decoding continues with a
 *      DECODE step after every token. No logit of the answer ever sees the uncompressed prompt.
 * KV bytes are read with ems_cache_kv_bytes (packed codes + f16 scales + f32 residual when
 * quantized) after every policy step of the answer (mean and peak over the answer). */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "ems/config.h"
#include "ems/kv_cache.h"
#include "engine/engine.h"
#include "model/tokenizer.h"

#define LC_MAX_ANSWER 64

/* Prefills ids[0, n) with the full cache, statistics on, ring w_loc, in calls of `chunk`. */
em_status lc_prompt_cache(engine *e, const int32_t *ids, int n, int w_loc, int chunk,
                          ems_cache **out);

typedef struct lc_answer {
    int32_t ids[LC_MAX_ANSWER];
    int n;
    double bytes_mean;     /* KV bytes after each policy step of the answer, averaged */
    uint64_t bytes_peak;   /* largest of them, and of the caches right before those steps */
    uint64_t bytes_prompt; /* right after the prefill-end compression */
    uint64_t entries_prompt;
    double compress_s;     /* inside the prefill-end step (wall time) */
    double compress_cpu_s; /* the same, thread CPU time (robust to a loaded machine) */
    /* lc_answer_probe only: over every (layer, KV head) and probe position, the share held
     * right after the prefill-end step, and the share of those held as merged centres (mass
     * > 1: other entries were averaged into them) */
    double probe_kept, probe_merged;
} lc_answer;

/* Steps 2-3 above: base = lc_prompt_cache of ids[0, last_pos); last_tok at last_pos.
 * Greedy, at most max_new (<= LC_MAX_ANSWER) tokens, stops after stop_id (-1: none).
 * first_logits (may be NULL) receives the logits of the first answer token. */
em_status lc_answer_fork(engine *e, const ems_cache *base, const ems_config *cfg, int32_t last_tok,
                         int last_pos, int max_new, int32_t stop_id, lc_answer *a,
                         float *first_logits);

/* lc_answer_fork, also filling probe_kept / probe_merged for the prompt positions
 * probe[0..n_probe) (e.g. the key's digit tokens). */
em_status lc_answer_probe(engine *e, const ems_cache *base, const ems_config *cfg, int32_t last_tok,
                          int last_pos, int max_new, int32_t stop_id, const int32_t *probe,
                          int n_probe, lc_answer *a);

/* text tokenized with special tokens parsed (a chat prompt) into *ids (owned by the caller;
 * NULL on error). */
em_status lc_encode(const tokenizer *tok, const char *text, int32_t **ids, int *n);

/* The passkey prompt of eval/passkey/prompt.py (SmolLM2's ChatML with its default system
 * message): repetitive filler with the needle at `depth` (0..1), about `tokens` tokens.
 * *ids (owned by the caller) gets the ids with special tokens parsed. */
em_status lc_passkey_prompt(const tokenizer *tok, int key, int tokens, double depth, int32_t **ids,
                            int *n);

/* Decode-time mode over one window ids[0, n): ids[0, n_pre) prefilled in one call with no
 * prefill-end step (n_pre <= budget: nothing is due; n_pre > budget, longctx --kl-prefill: the
 * first DECODE step compresses the prefix, and SimLayerKV decides there), then ids[n_pre, n-1)
 * streamed one token at a time with ems_policy_step(DECODE) after each. For every streamed token i
 * (prediction of i + 1) kl[i - n_pre] = KL(ref || this) and top1[..] = argmax agreement with
 * ref_logits
 * ([n-1][n_vocab], full-cache logits of every position). bytes_mean / peak as in lc_answer. */
typedef struct lc_stream {
    double bytes_mean;
    uint64_t bytes_peak;
    double seconds;
} lc_stream;
em_status lc_stream_kl(engine *e, const ems_config *cfg, const int32_t *ids, int n, int n_pre,
                       const float *ref_logits, double *kl, uint8_t *top1, lc_stream *r);

/* Teacher-forced continuation from a prompt cache (the kl-long task): base = the full cache
 * of ids[0, n_pre) (lc_prompt_cache); a fork of it is compressed once
 * (ems_policy_step(PREFILL_END)), then ids[n_pre, n_pre + n_score) are fed one at a time with
 * a DECODE step after each, and the logits of each (the prediction of the next text token) go
 * to logits_out[n_score][n_vocab]. The full cache (cfg "full") gives the reference. bytes as in
 * lc_answer (after each policy step; peak also before it). */
em_status lc_fork_logits(engine *e, const ems_cache *base, const ems_config *cfg,
                         const int32_t *ids, int n_pre, int n_score, float *logits_out,
                         lc_stream *r);

/* Per row i < n of q[n][V] against ref[n][V]: kl[i] = KL(ref || q), top1[i] = 1 when their
 * argmaxes agree, nll[i] = -log q(target[i]). EM_ENOMEM when scratch cannot be allocated. */
em_status lc_row_scores(const float *ref, const float *q, const int32_t *target, int n, int V,
                        double *kl, double *top1, double *nll);

/* Full-cache logits of every position of ids[0, n) into out[n][n_vocab] (prefill chunks). */
em_status lc_full_logits(engine *e, const int32_t *ids, int n, int chunk, float *out);

/* Percentile bootstrap 95 % interval of the mean of x[0, n) (resampling blocks of `block`
 * consecutive values; 1 = iid), reps resamples, fixed seed. */
void lc_boot_ci(const double *x, int n, int block, int reps, uint64_t seed, double *lo, double *hi);
