/* Long-context harness core (see longctx.h): prompt cache, fork-compress-answer, passkey
 * prompt, decode-time KL stream, full-cache logits, bootstrap intervals. */
#include "eval/longctx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/timeutil.h"
#include "ems/policy.h"

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[b])
            b = i;
    }
    return b;
}

em_status lc_prompt_cache(engine *e, const int32_t *ids, int n, int w_loc, int chunk,
                          ems_cache **out)
{
    em_status st = engine_cache_create(e, w_loc, 1, 0, out);
    if (st != EM_OK)
        return st;
    st = engine_forward_seq(e, *out, ids, n, 0, chunk, NULL);
    if (st != EM_OK) {
        ems_cache_destroy(*out);
        *out = NULL;
    }
    return st;
}

static em_status forward_one(engine *e, ems_cache *c, int32_t tok, int pos, float *logits)
{
    int32_t seq = 0;
    engine_batch b = {1, &tok, &pos, &seq, NULL};
    return engine_forward(e, &b, &c, logits);
}

/* A fork of the prompt cache for cfg (ring trimmed to its w_loc, its statistics settings). */
static em_status fork_for(const ems_cache *base, const ems_config *cfg, ems_cache **out)
{
    em_status st = ems_cache_clone(base, ems_config_w_loc(cfg), out);
    if (st == EM_OK) {
        (*out)->want_stats = ems_config_wants_stats(cfg);
        (*out)->group_max = cfg->group_max;
    }
    return st;
}

/* One token through c, then a DECODE policy step; *acc += the bytes held after it, *peak the
 * largest held before it. */
static em_status decode_one(engine *e, ems_cache *c, const ems_config *cfg, int32_t tok, int pos,
                            float *logits, double *acc, uint64_t *peak)
{
    em_status st = forward_one(e, c, tok, pos, logits);
    uint64_t before = ems_cache_kv_bytes(c);
    if (st == EM_OK)
        st = ems_policy_step(c, cfg, EMS_PHASE_DECODE, NULL);
    *acc += (double)ems_cache_kv_bytes(c);
    *peak = before > *peak ? before : *peak;
    return st;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Shares of probe positions held, and held as merged centres, over every head of c. */
static void probe_shares(const ems_cache *c, const int32_t *probe, int n_probe, lc_answer *a)
{
    long held = 0, merged = 0, all = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        const ems_head *h = &c->heads[i];
        for (int p = 0; p < n_probe; p++, all++) {
            for (int j = 0; j < h->len; j++) {
                if (h->pos[j] == probe[p]) {
                    held++;
                    merged += h->mass[j] > 1.0f;
                    break;
                }
            }
        }
    }
    a->probe_kept = all ? (double)held / all : 0.0;
    a->probe_merged = held ? (double)merged / held : 0.0;
}

static em_status answer(engine *e, const ems_cache *base, const ems_config *cfg, int32_t last_tok,
                        int last_pos, int max_new, int32_t stop_id, const int32_t *probe,
                        int n_probe, lc_answer *a, float *first_logits);

em_status lc_answer_fork(engine *e, const ems_cache *base, const ems_config *cfg, int32_t last_tok,
                         int last_pos, int max_new, int32_t stop_id, lc_answer *a,
                         float *first_logits)
{
    return answer(e, base, cfg, last_tok, last_pos, max_new, stop_id, NULL, 0, a, first_logits);
}

em_status lc_answer_probe(engine *e, const ems_cache *base, const ems_config *cfg, int32_t last_tok,
                          int last_pos, int max_new, int32_t stop_id, const int32_t *probe,
                          int n_probe, lc_answer *a)
{
    return answer(e, base, cfg, last_tok, last_pos, max_new, stop_id, probe, n_probe, a, NULL);
}

static em_status answer(engine *e, const ems_cache *base, const ems_config *cfg, int32_t last_tok,
                        int last_pos, int max_new, int32_t stop_id, const int32_t *probe,
                        int n_probe, lc_answer *a, float *first_logits)
{
    memset(a, 0, sizeof *a);
    if (max_new < 1 || max_new > LC_MAX_ANSWER)
        return EM_EINVAL;
    int V = engine_hparams(e)->n_vocab;
    ems_cache *c = NULL;
    em_status st = fork_for(base, cfg, &c);
    if (st != EM_OK)
        return st;
    float *logits = malloc(sizeof(float) * V);
    if (!logits)
        st = EM_ENOMEM;
    double t0 = em_now_s(), c0 = thread_cpu_s();
    if (st == EM_OK)
        st = ems_policy_step(c, cfg, EMS_PHASE_PREFILL_END, NULL);
    a->compress_s = em_now_s() - t0;
    a->compress_cpu_s = thread_cpu_s() - c0;
    a->bytes_prompt = ems_cache_kv_bytes(c);
    a->entries_prompt = ems_cache_entries(c);
    if (st == EM_OK && n_probe > 0)
        probe_shares(c, probe, n_probe, a);
    double acc = 0.0;
    int32_t tok = last_tok;
    for (int i = 0; i < max_new && st == EM_OK; i++) {
        st = decode_one(e, c, cfg, tok, last_pos + i, logits, &acc, &a->bytes_peak);
        if (st != EM_OK)
            break;
        if (i == 0 && first_logits)
            memcpy(first_logits, logits, sizeof(float) * V);
        tok = argmax(logits, V);
        a->ids[a->n++] = tok;
        if (tok == stop_id)
            break;
    }
    a->bytes_mean = a->n ? acc / a->n : 0.0;
    free(logits);
    ems_cache_destroy(c);
    return st;
}

/* ---- passkey prompt (same text as eval/passkey/prompt.py) ---------------------------------- */

static const char k_filler[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
static const char k_system[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

static char *passkey_text(int key, int reps, double depth)
{
    int at = (int)(reps * depth);
    size_t cap = strlen(k_filler) * (size_t)(reps + 1) + 1024;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t n = (size_t)snprintf(s, cap,
                                "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\nThere is an "
                                "important piece of information hidden inside a lot of irrelevant "
                                "text. Find it and memorize it.\n\n",
                                k_system);
    for (int i = 0; i < reps; i++) {
        if (i == at)
            n += (size_t)snprintf(
                s + n, cap - n, "The pass key is %d. Remember it. %d is the pass key. ", key, key);
        memcpy(s + n, k_filler, sizeof k_filler - 1);
        n += sizeof k_filler - 1;
    }
    if (at >= reps)
        n += (size_t)snprintf(s + n, cap - n,
                              "The pass key is %d. Remember it. %d is the pass key. ", key, key);
    snprintf(s + n, cap - n,
             "\n\nWhat is the pass key? Answer with the number only.<|im_end|>\n"
             "<|im_start|>assistant\n");
    return s;
}

em_status lc_encode(const tokenizer *tok, const char *text, int32_t **ids, int *n)
{
    size_t len = strlen(text);
    *ids = malloc(sizeof(int32_t) * (len + 8));
    if (!*ids)
        return EM_ENOMEM;
    em_status st = tok_encode_ex(tok, text, len, TOK_PARSE_SPECIAL, *ids, (int)len + 8, n);
    if (st != EM_OK) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

static int count_tokens(const tokenizer *tok, int key, int reps, double depth)
{
    char *s = passkey_text(key, reps, depth);
    int32_t *ids = NULL;
    int n = -1;
    if (s && lc_encode(tok, s, &ids, &n) != EM_OK)
        n = -1;
    free(s);
    free(ids);
    return n;
}

em_status lc_passkey_prompt(const tokenizer *tok, int key, int tokens, double depth, int32_t **ids,
                            int *n)
{
    *ids = NULL;
    if (key < 10000 || key > 99999 || tokens < 64 || depth < 0 || depth > 1)
        return EM_EINVAL;
    int base = count_tokens(tok, key, 0, depth), ten = count_tokens(tok, key, 10, depth);
    if (base < 0 || ten <= base)
        return EM_EINVAL;
    double per = (ten - base) / 10.0;
    int reps = (int)((tokens - base) / per);
    if (reps < 1)
        reps = 1;
    char *s = passkey_text(key, reps, depth);
    if (!s)
        return EM_ENOMEM;
    em_status st = lc_encode(tok, s, ids, n);
    free(s);
    return st;
}

/* ---- decode-time KL -------------------------------------------------------------------- */

static void log_softmax(const float *x, int n, double *out)
{
    double mx = x[0];
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < n; i++)
        out[i] = (double)x[i] - lse;
}

static double kl_div(const float *ref, const float *q, int V, double *lp, double *lq)
{
    log_softmax(ref, V, lp);
    log_softmax(q, V, lq);
    double kl = 0.0;
    for (int v = 0; v < V; v++)
        kl += exp(lp[v]) * (lp[v] - lq[v]);
    return kl > 0 ? kl : 0.0;
}

em_status lc_stream_kl(engine *e, const ems_config *cfg, const int32_t *ids, int n, int n_pre,
                       const float *ref_logits, double *kl, uint8_t *top1, lc_stream *r)
{
    memset(r, 0, sizeof *r);
    int V = engine_hparams(e)->n_vocab;
    if (n_pre < 1 || n_pre >= n - 1)
        return EM_EINVAL;
    ems_cache *c = NULL;
    em_status st = engine_cache_create(e, ems_config_w_loc(cfg), ems_config_wants_stats(cfg),
                                       cfg->group_max, &c);
    float *logits = malloc(sizeof(float) * V);
    double *lp = malloc(sizeof(double) * V), *lq = malloc(sizeof(double) * V);
    if (st == EM_OK && (!logits || !lp || !lq))
        st = EM_ENOMEM;
    double t0 = em_now_s(), acc = 0.0;
    if (st == EM_OK)
        st = engine_forward_seq(e, c, ids, n_pre, 0, n_pre, NULL);
    for (int i = n_pre; i < n - 1 && st == EM_OK; i++) {
        st = decode_one(e, c, cfg, ids[i], i, logits, &acc, &r->bytes_peak);
        const float *ref = ref_logits + (size_t)i * V;
        kl[i - n_pre] = kl_div(ref, logits, V, lp, lq);
        top1[i - n_pre] = argmax(ref, V) == argmax(logits, V);
    }
    r->bytes_mean = acc / (n - 1 - n_pre);
    r->seconds = em_now_s() - t0;
    ems_cache_destroy(c);
    free(logits), free(lp), free(lq);
    return st;
}

em_status lc_fork_logits(engine *e, const ems_cache *base, const ems_config *cfg,
                         const int32_t *ids, int n_pre, int n_score, float *logits_out,
                         lc_stream *r)
{
    memset(r, 0, sizeof *r);
    int V = engine_hparams(e)->n_vocab;
    if (n_pre < 1 || n_score < 1 || base->n_layer < 1 || base->heads[0].len != n_pre)
        return EM_EINVAL;
    ems_cache *c = NULL;
    em_status st = fork_for(base, cfg, &c);
    if (st != EM_OK)
        return st;
    double t0 = em_now_s(), acc = 0.0;
    st = ems_policy_step(c, cfg, EMS_PHASE_PREFILL_END, NULL);
    for (int i = 0; i < n_score && st == EM_OK; i++)
        st = decode_one(e, c, cfg, ids[n_pre + i], n_pre + i, logits_out + (size_t)i * V, &acc,
                        &r->bytes_peak);
    r->bytes_mean = acc / n_score;
    r->seconds = em_now_s() - t0;
    ems_cache_destroy(c);
    return st;
}

em_status lc_row_scores(const float *ref, const float *q, const int32_t *target, int n, int V,
                        double *kl, double *top1, double *nll)
{
    double *lp = malloc(sizeof(double) * V), *lq = malloc(sizeof(double) * V);
    em_status st = lp && lq ? EM_OK : EM_ENOMEM;
    for (int i = 0; i < n && st == EM_OK; i++) {
        const float *r = ref + (size_t)i * V, *x = q + (size_t)i * V;
        kl[i] = kl_div(r, x, V, lp, lq);
        top1[i] = argmax(r, V) == argmax(x, V);
        nll[i] = -lq[target[i]];
    }
    free(lp), free(lq);
    return st;
}

em_status lc_full_logits(engine *e, const int32_t *ids, int n, int chunk, float *out)
{
    int V = engine_hparams(e)->n_vocab;
    ems_cache *c = NULL;
    em_status st = engine_cache_create(e, 0, 0, 0, &c);
    int32_t *pos = malloc(sizeof(int32_t) * chunk), *seq = calloc(chunk, sizeof(int32_t));
    uint8_t *want = malloc(chunk);
    if (st == EM_OK && (!pos || !seq || !want))
        st = EM_ENOMEM;
    if (want)
        memset(want, 1, chunk);
    for (int i0 = 0; i0 < n && st == EM_OK; i0 += chunk) {
        int m = n - i0 < chunk ? n - i0 : chunk;
        for (int i = 0; i < m; i++)
            pos[i] = i0 + i;
        engine_batch b = {m, ids + i0, pos, seq, want};
        st = engine_forward(e, &b, &c, out + (size_t)i0 * V);
    }
    ems_cache_destroy(c);
    free(pos), free(seq), free(want);
    return st;
}

/* ---- bootstrap ------------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void lc_boot_ci(const double *x, int n, int block, int reps, uint64_t seed, double *lo, double *hi)
{
    *lo = *hi = NAN;
    if (n < 1 || reps < 20)
        return;
    if (block < 1 || block > n)
        block = 1;
    int n_blocks = (n + block - 1) / block;
    double *m = malloc(sizeof(double) * reps);
    if (!m)
        return;
    uint64_t s = seed;
    for (int r = 0; r < reps; r++) {
        double sum = 0.0;
        int cnt = 0;
        for (int b = 0; b < n_blocks; b++) {
            int j0 = (int)(splitmix(&s) % (uint64_t)n_blocks) * block;
            for (int j = j0; j < j0 + block && j < n; j++)
                sum += x[j], cnt++;
        }
        m[r] = sum / cnt;
    }
    qsort(m, reps, sizeof *m, cmp_double);
    *lo = m[(int)(0.025 * (reps - 1))];
    *hi = m[(int)(0.975 * (reps - 1) + 0.5)];
    free(m);
}
