/* Texts sampled from the model with fixed seeds (full cache, temperature 1, no truncation),
 * stories chained EOS -> BOS as in the TinyStories data. Also the policy helper. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

em_status ev_policy_make(ev_policy *p, const char *name, const char *method, int B,
                         const char *const *kv)
{
    char err[256], b[16];
    em_status st;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    ems_config_default(&p->cfg);
    if ((st = ems_config_set(&p->cfg, "method", method, err, sizeof err)) != EM_OK)
        goto bad;
    snprintf(b, sizeof b, "%d", B);
    if (B > 0 && (st = ems_config_set(&p->cfg, "budget", b, err, sizeof err)) != EM_OK)
        goto bad;
    for (int i = 0; kv && kv[i]; i++) {
        if ((st = ems_config_set_kv(&p->cfg, kv[i], err, sizeof err)) != EM_OK)
            goto bad;
    }
    if ((st = ems_config_validate(&p->cfg, err, sizeof err)) != EM_OK)
        goto bad;
    return EM_OK;
bad:
    fprintf(stderr, "policy %s: %s\n", name, err);
    return st;
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    uint64_t x = *s;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

em_status ev_sample_text(engine *e, int n, uint64_t seed, int32_t *ids)
{
    const model_hparams *hp = engine_hparams(e);
    int V = hp->n_vocab;
    ems_cache *c = NULL;
    em_status st = engine_cache_create(e, 0, 0, 0, &c);
    float *logits = malloc(sizeof(float) * V);
    if (st != EM_OK || !logits) {
        ems_cache_destroy(c);
        free(logits);
        return st != EM_OK ? st : EM_ENOMEM;
    }
    uint64_t rs = seed * 7919 + 1;
    ids[0] = hp->bos_id;
    for (int i = 0; i < n - 1 && st == EM_OK; i++) {
        int32_t pos = i, sq = 0;
        engine_batch b = {1, ids + i, &pos, &sq, NULL};
        st = engine_forward(e, &b, &c, logits);
        if (ids[i] == hp->eos_id) { /* next story */
            ids[i + 1] = hp->bos_id;
            continue;
        }
        double mx = logits[0], sum = 0.0;
        for (int v = 1; v < V; v++)
            mx = logits[v] > mx ? logits[v] : mx;
        for (int v = 0; v < V; v++)
            sum += exp(logits[v] - mx);
        double u = (double)(rng_next(&rs) >> 11) / (double)(1ull << 53) * sum, acc = 0.0;
        int pick = V - 1;
        for (int v = 0; v < V; v++) {
            acc += exp(logits[v] - mx);
            if (acc >= u) {
                pick = v;
                break;
            }
        }
        ids[i + 1] = pick == hp->bos_id ? hp->eos_id : pick;
    }
    ems_cache_destroy(c);
    free(logits);
    return st;
}
