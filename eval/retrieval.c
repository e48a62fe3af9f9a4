/* Retrieval cases: "Once upon a time, there was a little girl named NAME." + neutral filler of
 * a given length in tokens + " One day," -> the model should continue with NAME (it copies
 * names it has seen). Success = every name token is the greedy choice, teacher-forced. */
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "eval/eval.h"

static const char *const k_girls[] = {"Lily", "Sue",  "Kitty", "Anna",
                                      "Mia",  "Lucy", "Sara",  "Jane"};
static const char *const k_boys[] = {"Max", "Ben", "Tom", "Sam", "Jack", "Bob", "Timmy", "Spot"};

/* %s = pronoun (She/He), %p = possessive (her/his) */
static const char *const k_fill[] = {
    "%s liked to play outside in the sun.",
    "%s had a big red ball and a small toy car.",
    "Every day %l went to the park with %p mom.",
    "The sky was blue and the birds were singing.",
    "%s saw a little dog under a tree.",
    "The dog was happy and wagged its tail.",
    "%s ate an apple and drank some milk.",
    "Then %l ran to the swing and played for a long time.",
    "The flowers were pretty and smelled nice.",
    "%s found a shiny stone near the pond.",
    "At night %l looked at the stars with %p dad.",
    "It was a warm and happy day.",
};
#define N_FILL (int)(sizeof k_fill / sizeof k_fill[0])

static void fill_sentence(char *out, size_t cap, const char *tmpl, int girl)
{
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 8 < cap; p++) {
        if (*p == '%' && p[1]) {
            const char *r = p[1] == 's'   ? (girl ? "She" : "He")
                            : p[1] == 'l' ? (girl ? "she" : "he")
                                          : (girl ? "her" : "his");
            o += (size_t)snprintf(out + o, cap - o, "%s", r);
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = 0;
}

/* s as ids (with BOS when the model adds one) into ids[cap]; *n their count. */
static em_status encode(const tokenizer *tok, const char *s, int32_t *ids, int cap, int *n)
{
    *n = 0;
    return tok_encode_ex(tok, s, strlen(s), tok_add_bos_default(tok) ? TOK_ADD_BOS : 0, ids, cap,
                         n);
}

/* "Once upon a time ... <name>.", filler sentences until the name is `distance` tokens back,
 * then the cue " One day," (prompt, np ids in a) and the cue + " <name>" (nf ids in b). */
static em_status make_texts(const tokenizer *tok, int ni, int distance, int32_t *a, int32_t *b,
                            int cap, int *np, int *nf, int *dist)
{
    static char text[8192], intro[256], tmp[256];
    int girl = ni < 8, n_intro, n;
    const char *name = girl ? k_girls[ni] : k_boys[ni - 8];
    snprintf(intro, sizeof intro, "Once upon a time, there was a little %s named %s.",
             girl ? "girl" : "boy", name);
    em_status st = encode(tok, intro, a, cap, &n_intro);
    snprintf(text, sizeof text, "%s", intro);
    *dist = 0;
    for (int k = 0; st == EM_OK && *dist < distance && k < 200; k++) {
        fill_sentence(tmp, sizeof tmp, k_fill[(ni + k) % N_FILL], girl);
        strncat(text, " ", sizeof text - strlen(text) - 1);
        strncat(text, tmp, sizeof text - strlen(text) - 1);
        st = encode(tok, text, a, cap, &n);
        *dist = n - n_intro;
    }
    strncat(text, " One day,", sizeof text - strlen(text) - 1);
    if (st == EM_OK)
        st = encode(tok, text, a, cap, np);
    strncat(text, " ", sizeof text - strlen(text) - 1);
    strncat(text, name, sizeof text - strlen(text) - 1);
    return st == EM_OK ? encode(tok, text, b, cap, nf) : st;
}

em_status ev_retrieval_cases(const tokenizer *tok, const int *distances, int n_dist, ev_rcase *out,
                             int cap, int *n_out)
{
    static int32_t a[2048], b[2048];
    int nc = 0;
    *n_out = 0;
    for (int di = 0; di < n_dist; di++) {
        for (int ni = 0; ni < 16 && nc < cap; ni++) {
            int np, nf, dist;
            em_status st = make_texts(tok, ni, distances[di], a, b, 2048, &np, &nf, &dist);
            if (st != EM_OK)
                return st;
            if (np <= 0 || nf <= np || nf > (int)(sizeof out->ids / sizeof out->ids[0]) ||
                memcmp(a, b, sizeof(int32_t) * (size_t)np) != 0) {
                continue; /* the name did not tokenize as a clean suffix */
            }
            ev_rcase *rc = &out[nc++];
            memcpy(rc->ids, b, sizeof(int32_t) * (size_t)nf);
            rc->n_prompt = np;
            rc->n_name = nf - np;
            rc->distance = dist;
            rc->dist_idx = di;
            snprintf(rc->name, sizeof rc->name, "%s", ni < 8 ? k_girls[ni] : k_boys[ni - 8]);
        }
    }
    *n_out = nc;
    return EM_OK;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[b])
            b = i;
    }
    return b;
}

em_status ev_retrieval_run(engine *e, const ems_config *cfg, const ev_rcase *rc, int stream,
                           int *ok)
{
    const model_hparams *hp = engine_hparams(e);
    ems_cache *c = NULL;
    *ok = 0;
    em_status st = engine_cache_create(e, ems_config_w_loc(cfg), ems_config_wants_stats(cfg),
                                       cfg->group_max, &c);
    float *logits = malloc(sizeof(float) * hp->n_vocab);
    int32_t pos[600], seq[600] = {0};
    for (int i = 0; i < 600; i++)
        pos[i] = i;
    if (st == EM_OK && !logits)
        st = EM_ENOMEM;
    if (st == EM_OK && stream) {
        for (int i = 0; i < rc->n_prompt && st == EM_OK; i++) {
            engine_batch b = {1, rc->ids + i, pos + i, seq, NULL};
            st = engine_forward(e, &b, &c, logits);
            if (st == EM_OK)
                st = ems_policy_step(c, cfg, EMS_PHASE_DECODE, NULL);
        }
    } else if (st == EM_OK) {
        engine_batch b = {rc->n_prompt, rc->ids, pos, seq, NULL};
        st = engine_forward(e, &b, &c, logits);
        if (st == EM_OK)
            st = ems_policy_step(c, cfg, EMS_PHASE_PREFILL_END, NULL);
    }
    int good = 1;
    for (int t = 0; t < rc->n_name && st == EM_OK && good; t++) {
        int i = rc->n_prompt + t;
        good = argmax(logits, hp->n_vocab) == rc->ids[i];
        if (!good || t + 1 == rc->n_name)
            break;
        engine_batch b = {1, rc->ids + i, pos + i, seq, NULL};
        st = engine_forward(e, &b, &c, logits);
        if (st == EM_OK)
            st = ems_policy_step(c, cfg, EMS_PHASE_DECODE, NULL);
    }
    *ok = st == EM_OK && good;
    ems_cache_destroy(c);
    free(logits);
    return st;
}
